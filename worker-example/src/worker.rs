//! The worker on the kit: one handler, [`decide`](crate::rules::decide), and its log line.
//!
//! Everything about NATS (subject and queue group, deadlines, replies without headers,
//! service errors for bodies that are not requests, bounded concurrency, `$SRV` discovery and
//! the drain on shutdown) is `openim-worker-kit`'s. This module only says what the worker is
//! called, which command it answers, and what a decision's debug line shows.

use std::future::Future;
use std::sync::Arc;

use async_nats::{Client, ConnectOptions, ServerAddr};
use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
use openim_gateway_proto::group_member::{SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest};
use openim_worker_kit::{Context, HandlerError, ShutdownReport, WorkerBuilder, WorkerError};

use crate::rules::{decide, normalise_whitespace, Rules, ERR_BANNED_WORD};
use crate::settings::{NatsFiles, Settings};

/// The connection name the NATS server shows in its monitoring (`/connz`), and the service
/// name `$SRV.PING` and `nats micro ls` show.
pub const CONNECTION_NAME: &str = "openim-worker-example";

/// Connects with the kit's settings for a long-running worker (retry until the first server
/// answers, reconnect forever, ping every 5 s).
pub async fn connect(
    servers: &[ServerAddr],
    files: &NatsFiles,
) -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    let mut options = ConnectOptions::new();
    if let Some(creds) = &files.creds {
        options = options.credentials_file(creds).await?;
    }
    if let Some(nkey) = &files.nkey {
        options = options.nkey(std::fs::read_to_string(nkey)?.trim().to_owned());
    }
    if let Some(ca) = &files.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &files.tls_client {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    // async-nats does not read credentials from a URL: they go into the options.
    if let Some(server) = servers.iter().find(|server| server.username().is_some()) {
        let user = percent_decode(server.username().unwrap_or_default());
        options = match server.password() {
            Some(password) => options.user_and_password(user, percent_decode(password)),
            None => options.token(user),
        };
    }
    openim_worker_kit::connect_with(options, CONNECTION_NAME, servers)
        .await
        .map_err(Into::into)
}

/// A URL's user or password as the server knows it (`p%40ss` is `p@ss`).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The worker, ready to start: its one command and the settings that shape it.
pub fn builder(settings: &Settings) -> WorkerBuilder {
    let rules = Arc::new(settings.rules.clone());
    WorkerBuilder::new(CONNECTION_NAME, env!("CARGO_PKG_VERSION"))
        .description("the example worker for callbackBeforeSetGroupMemberInfoCommand")
        .prefix(&settings.subject_prefix)
        .concurrency(settings.concurrency)
        .handle(
            BEFORE_SET_GROUP_MEMBER_INFO,
            move |request: &SetGroupMemberInfoRequest, context: &Context| {
                Ok::<_, HandlerError>(decide_and_log(&rules, request, context))
            },
        )
}

/// Subscribes, announces readiness on stdout, and answers requests until `shutdown`
/// completes; then drains and returns.
pub async fn run(
    client: Client,
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, WorkerError> {
    builder(settings).run(client, shutdown).await
}

fn decide_and_log(
    rules: &Rules,
    request: &SetGroupMemberInfoRequest,
    context: &Context,
) -> SetGroupMemberInfoAnswer {
    let answer = decide(rules, request);
    if tracing::enabled!(tracing::Level::DEBUG) {
        let summary = DecisionSummary::new(rules, request, &answer);
        tracing::debug!(
            request_id = context.request_id.as_deref().unwrap_or("-"),
            reject = summary.reject,
            err_code = summary.err_code,
            banned_word = summary.banned_word.as_deref(),
            rewrites_nickname = summary.rewrites_nickname,
            "decided"
        );
    }
    answer
}

/// The facts about one decision worth a debug line; never the nickname itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DecisionSummary {
    /// Whether OpenIM will refuse the change.
    reject: bool,
    /// The refusal code, 0 when allowed.
    err_code: i32,
    /// The word that matched, for a 5001: the operator may know it, the end user is not told.
    banned_word: Option<String>,
    /// Whether the answer rewrites the nickname.
    rewrites_nickname: bool,
}

impl DecisionSummary {
    fn new(
        rules: &Rules,
        request: &SetGroupMemberInfoRequest,
        answer: &SetGroupMemberInfoAnswer,
    ) -> Self {
        let banned_word = if answer.common.err_code == ERR_BANNED_WORD {
            request.nick_name.as_deref().and_then(|nickname| {
                rules
                    .banned_word_in(&normalise_whitespace(nickname))
                    .map(str::to_owned)
            })
        } else {
            None
        };
        Self {
            reject: answer.common.is_reject(),
            err_code: answer.common.err_code,
            banned_word,
            rewrites_nickname: answer.nick_name.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &[u8]) -> SetGroupMemberInfoRequest {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn the_log_summary_names_the_banned_word_but_the_answer_does_not() {
        let rules = Rules::default();
        let request = request(include_bytes!(
            "../../fixtures/openim/before_set_group_member_info.nickname_only.json"
        ));
        let answer = decide(&rules, &request);
        assert_eq!(
            DecisionSummary::new(&rules, &request, &answer),
            DecisionSummary {
                reject: true,
                err_code: 5001,
                banned_word: Some("admin".to_owned()),
                rewrites_nickname: false,
            }
        );
        assert!(!serde_json::to_string(&answer).unwrap().contains("admin"));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let request = request(
            br#"{"callbackCommand":"c","groupID":"g","userID":"u","nickName":"Bob","future":1}"#,
        );
        assert_eq!(
            serde_json::to_string(&decide(&Rules::default(), &request)).unwrap(),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }
}
