//! The NATS side: connect, join the queue group, answer each request, drain on shutdown.
//!
//! This is the only module that talks to NATS. It owns the per-message protocol of
//! docs/worker-protocol.md: drop a request whose `X-Deadline-Unix-Ms` has passed,
//! answer a body that is not a request with a `Nats-Service-Error` (code 400) so the gateway
//! answers its default at once instead of waiting for its timeout, and otherwise reply with
//! the JSON [`decide`](crate::rules::decide) returns. It decides nothing itself.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, ConnectOptions, Event, HeaderMap, Message, ServerAddr, Subscriber};
use bytes::Bytes;
use futures::StreamExt as _;
use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
use openim_gateway_proto::group_member::{SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest};
use openim_gateway_proto::{headers, subject};

use crate::settings::NatsFiles;
use tokio::task::JoinSet;

use crate::rules::{decide, normalise_whitespace, Rules, ERR_BANNED_WORD};
use crate::settings::Settings;

/// The connection name the NATS server shows in its monitoring (`/connz`).
pub const CONNECTION_NAME: &str = "openim-worker-example";

/// How often the client pings the server. async-nats defaults to 60 s, which lets a half-open
/// connection look healthy for minutes while the gateway's requests go nowhere.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How long shutdown waits for in-flight replies and the final flush. A request older than the
/// gateway's budget (5 s by default, 15 s at most) has been answered by its fallback anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The `Nats-Service-Error-Code` of a reply to a body that is not a request.
const BAD_REQUEST_CODE: &str = "400";
/// The `Nats-Service-Error-Code` of a reply this worker failed to build (a bug).
const INTERNAL_ERROR_CODE: &str = "500";

/// A failure that stops the worker. Per-message failures are logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The subscription could not be sent to the client.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject the worker tried to join.
        subject: String,
        /// The client's reason.
        source: async_nats::SubscribeError,
    },
    /// The subscription could not be confirmed with the server.
    #[error("cannot confirm the subscription to {subject} with the server: {source}")]
    Confirm {
        /// The subject the worker tried to join.
        subject: String,
        /// The client's reason.
        source: async_nats::RequestError,
    },
    /// The subscription ended without a shutdown (the client closed): exit non-zero so that a
    /// supervisor restarts the worker.
    #[error("the subscription to {subject} ended without a shutdown")]
    SubscriptionEnded {
        /// The subject the worker was answering on.
        subject: String,
    },
    /// The readiness line could not be written; harnesses wait for it, so this is fatal.
    #[error("cannot write the ready line to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

/// Connects with settings fit for a long-running worker: it keeps retrying until the first
/// server answers and reconnects forever after.
///
/// With `retry_on_initial_connect` this returns at once; the subscription and its flush in
/// [`Worker::subscribe`] then wait until a connection is up, so readiness still means
/// "connected and subscribed".
///
/// async-nats 0.51 ignores a user, password or token written in a server URL, so the first
/// URL's credentials are handed to the options here (the same set goes to every server).
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
    if let Some(server) = servers.iter().find(|server| server.username().is_some()) {
        let user = percent_decode(server.username().unwrap_or_default());
        options = match server.password() {
            Some(password) => options.user_and_password(user, percent_decode(password)),
            None => options.token(user),
        };
    }
    options
        .name(CONNECTION_NAME)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .event_callback(|event| async move { log_connection_event(&event) })
        .connect(servers)
        .await
        .map_err(Into::into)
}

/// A URL's user or password as the server knows it (`p%40ss` is `p@ss`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| {
            bytes
                .get(at)
                .and_then(|byte| char::from(*byte).to_digit(16))
        };
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                // Two hex digits make one byte.
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// async-nats already logs every event at info; this raises the ones an operator must act on
/// to warnings, saying what they mean for callbacks.
fn log_connection_event(event: &Event) {
    match event {
        Event::Disconnected => {
            tracing::warn!(
                "disconnected from NATS: callbacks get the gateway's default until reconnected"
            );
        }
        Event::SlowConsumer(_) => {
            tracing::warn!("slow consumer: the server dropped requests meant for this worker");
        }
        Event::ServerError(_) | Event::ClientError(_) => tracing::warn!(%event, "nats error"),
        Event::Connected | Event::LameDuckMode | Event::Draining | Event::Closed => {}
    }
}

/// Subscribes, announces readiness on stdout, and answers requests until `shutdown`
/// completes; then drains and returns. A shutdown while still waiting for the first
/// connection returns at once: there is nothing to drain.
pub async fn run(
    client: Client,
    settings: &Settings,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    tokio::pin!(shutdown);
    let worker = tokio::select! {
        worker = Worker::subscribe(client, settings) => worker?,
        () = &mut shutdown => {
            tracing::info!("shut down before the worker was ready");
            return Ok(());
        }
    };
    announce_ready(worker.subject())?;
    worker.serve(shutdown).await
}

/// Prints the one line test harnesses and operators wait for, and flushes it: stdout is a
/// pipe under a harness, where Rust buffers it by line but a harness may read before exit.
fn announce_ready(subject: &str) -> Result<(), WorkerError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "worker ready on {subject} (queue {})",
        subject::QUEUE_GROUP
    )
    .and_then(|()| stdout.flush())
    .map_err(WorkerError::Stdout)
}

/// A worker subscribed to its subject in the queue group and confirmed by the server.
#[derive(Debug)]
pub struct Worker {
    /// Used to reply and, on shutdown, to flush the last replies.
    client: Client,
    /// The queue subscription every request arrives on.
    subscriber: Subscriber,
    /// `{prefix}.callbackBeforeSetGroupMemberInfoCommand`, kept for logs and readiness.
    subject: String,
    /// Shared by every in-flight message task.
    rules: Arc<Rules>,
}

impl Worker {
    /// Joins the queue group on `{prefix}.callbackBeforeSetGroupMemberInfoCommand` and waits
    /// for the server to have the subscription (a round trip), so that no request sent after
    /// this returns can miss the worker.
    pub async fn subscribe(client: Client, settings: &Settings) -> Result<Self, WorkerError> {
        let subject = subject::for_command(&settings.subject_prefix, BEFORE_SET_GROUP_MEMBER_INFO);
        let subscriber = client
            .queue_subscribe(subject.clone(), subject::QUEUE_GROUP.to_owned())
            .await
            .map_err(|source| WorkerError::Subscribe {
                subject: subject.clone(),
                source,
            })?;
        // `flush` only writes to the socket. A request to a subject nobody serves comes back
        // "no responders" once the server has processed everything this connection sent
        // before it, the subscription included: that is the confirmation.
        match client
            .request(client.new_inbox(), bytes::Bytes::new())
            .await
        {
            Ok(_) => {}
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {}
            Err(source) => {
                return Err(WorkerError::Confirm {
                    subject: subject.clone(),
                    source,
                })
            }
        }
        Ok(Self {
            client,
            subscriber,
            subject,
            rules: Arc::new(settings.rules.clone()),
        })
    }

    /// The subject this worker answers on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Answers requests, each in its own task so a slow one never holds up the others, until
    /// `shutdown` completes or the subscription ends. Then it drains: the server stops sending,
    /// messages already received are still answered, and in-flight replies get
    /// [`SHUTDOWN_GRACE`] to finish and be flushed.
    ///
    /// Returns an error only if the subscription ended on its own.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        let mut in_flight = JoinSet::new();
        tokio::pin!(shutdown);
        let subscription_ended = loop {
            tokio::select! {
                () = &mut shutdown => {
                    tracing::info!(subject = %self.subject, "shutting down: draining the subscription");
                    break false;
                }
                message = self.subscriber.next() => {
                    let Some(message) = message else {
                        tracing::error!(subject = %self.subject, "the subscription ended without a shutdown");
                        break true;
                    };
                    in_flight.spawn(handle(self.client.clone(), Arc::clone(&self.rules), message));
                }
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                    log_task_failure(finished);
                }
            }
        };

        let client = self.client.clone();
        let rules = Arc::clone(&self.rules);
        let drain = async {
            if let Err(error) = self.subscriber.drain().await {
                tracing::warn!(%error, "cannot drain the subscription");
            }
            while let Some(message) = self.subscriber.next().await {
                in_flight.spawn(handle(client.clone(), Arc::clone(&rules), message));
            }
            while let Some(finished) = in_flight.join_next().await {
                log_task_failure(finished);
            }
            client.flush().await
        };
        // Bound to a variable so the drain future, which borrows `in_flight`, is dropped before
        // the timeout branch counts what it abandoned.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, drain).await;
        match drained {
            Ok(Ok(())) => tracing::info!("drained, all replies flushed"),
            Ok(Err(error)) => tracing::warn!(%error, "drained, but the last replies may be lost"),
            Err(_) => tracing::warn!(
                abandoned = in_flight.len(),
                grace = ?SHUTDOWN_GRACE,
                "shutdown grace elapsed; abandoning unfinished replies"
            ),
        }
        if subscription_ended {
            return Err(WorkerError::SubscriptionEnded {
                subject: self.subject,
            });
        }
        Ok(())
    }
}

/// A message task only fails by panicking, which `handle` is written never to do: if it does,
/// it is a bug worth an error line.
fn log_task_failure(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(%error, "a message task failed");
    }
}

/// Answers one message, or deliberately does not (no reply subject, deadline passed).
async fn handle(client: Client, rules: Arc<Rules>, message: Message) {
    let request_id = header(message.headers.as_ref(), headers::REQUEST_ID).unwrap_or("-");
    let Some(reply_subject) = message.reply.clone() else {
        tracing::warn!(request_id, subject = %message.subject, "message without a reply subject: skipped");
        return;
    };
    if let Some(deadline) = deadline_unix_ms(message.headers.as_ref()) {
        let now = now_unix_ms();
        if is_past(deadline, now) {
            tracing::info!(
                request_id,
                late_by_ms = now - deadline,
                "deadline passed: nobody waits for this answer, not replying"
            );
            return;
        }
    }

    let published = match respond(&rules, &message.payload) {
        Response::Answer { summary, body } => {
            tracing::debug!(
                request_id,
                reject = summary.reject,
                err_code = summary.err_code,
                banned_word = summary.banned_word.as_deref(),
                rewrites_nickname = summary.rewrites_nickname,
                "decided"
            );
            client.publish(reply_subject, body).await
        }
        Response::ServiceError { code, description } => {
            if code == BAD_REQUEST_CODE {
                tracing::warn!(request_id, %description, "bad request");
            } else {
                tracing::error!(request_id, %description, "cannot build the answer");
            }
            client
                .publish_with_headers(
                    reply_subject,
                    service_error_headers(code, &description),
                    Bytes::new(),
                )
                .await
        }
    };
    if let Err(error) = published {
        tracing::warn!(request_id, %error, "cannot send the reply");
    }
}

/// What to send back for one request body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Response {
    /// A decision and its JSON, ready to publish.
    Answer {
        /// What the log line says about the decision.
        summary: DecisionSummary,
        /// The answer as JSON.
        body: Bytes,
    },
    /// An error reply in the NATS service API convention: headers, empty body.
    ServiceError {
        /// `Nats-Service-Error-Code`.
        code: &'static str,
        /// `Nats-Service-Error`; never contains a line break (header values cannot).
        description: String,
    },
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

/// Parses `payload` and decides it; everything about a message that needs no socket.
fn respond(rules: &Rules, payload: &[u8]) -> Response {
    let request: SetGroupMemberInfoRequest = match serde_json::from_slice(payload) {
        Ok(request) => request,
        Err(error) => {
            return Response::ServiceError {
                code: BAD_REQUEST_CODE,
                description: bad_request_description(&error),
            };
        }
    };
    let answer = decide(rules, &request);
    match serde_json::to_vec(&answer) {
        Ok(body) => Response::Answer {
            summary: DecisionSummary::new(rules, &request, &answer),
            body: Bytes::from(body),
        },
        // Unreachable in practice (strings and integers always serialise), but a reply that
        // says so beats a gateway waiting for its timeout.
        Err(error) => Response::ServiceError {
            code: INTERNAL_ERROR_CODE,
            description: format!("internal error: cannot serialise the answer: {error}")
                .replace(['\r', '\n'], " "),
        },
    }
}

/// A short reason naming what is wrong and where, without echoing any of the body: serde's
/// messages quote values from the input, and this text travels in a header and in logs.
fn bad_request_description(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Data => {
            "body is not a callbackBeforeSetGroupMemberInfoCommand request"
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            "body is not valid JSON"
        }
        serde_json::error::Category::Io => "body cannot be read",
    };
    format!(
        "bad request: {what} (line {}, column {})",
        error.line(),
        error.column()
    )
}

fn service_error_headers(code: &str, description: &str) -> HeaderMap {
    let mut service_error = HeaderMap::new();
    service_error.insert(headers::NATS_SERVICE_ERROR, description);
    service_error.insert(headers::NATS_SERVICE_ERROR_CODE, code);
    service_error
}

fn header<'message>(headers: Option<&'message HeaderMap>, name: &str) -> Option<&'message str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}

/// The request's deadline, if it carries one that parses. A malformed deadline is ignored
/// rather than trusted: answering a request nobody waits for costs a few microseconds, while
/// dropping one somebody waits for costs a user-visible fallback.
fn deadline_unix_ms(headers: Option<&HeaderMap>) -> Option<u64> {
    let value = header(headers, headers::DEADLINE_UNIX_MS)?;
    let parsed = value.trim().parse().ok();
    if parsed.is_none() {
        tracing::debug!(value, "ignoring a malformed {}", headers::DEADLINE_UNIX_MS);
    }
    parsed
}

/// Whether a request with this deadline is already abandoned by the gateway.
fn is_past(deadline_unix_ms: u64, now_unix_ms: u64) -> bool {
    now_unix_ms > deadline_unix_ms
}

/// The wall clock in Unix milliseconds; the gateway writes deadlines on the same scale. A
/// clock before 1970 reads as 0, so nothing looks late.
fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| {
            u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_json(response: &Response) -> &str {
        match response {
            Response::Answer { body, .. } => std::str::from_utf8(body).unwrap(),
            Response::ServiceError { .. } => panic!("expected an answer, got {response:?}"),
        }
    }

    fn service_error(response: &Response) -> (&str, &str) {
        match response {
            Response::ServiceError { code, description } => (code, description),
            Response::Answer { .. } => panic!("expected a service error, got {response:?}"),
        }
    }

    #[test]
    fn a_request_is_decided_and_serialised() {
        let body =
            include_bytes!("../../fixtures/openim/before_set_group_member_info.role_only.json");
        assert_eq!(
            answer_json(&respond(&Rules::default(), body)),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
        let body =
            include_bytes!("../../fixtures/openim/before_set_group_member_info.nickname_only.json");
        assert_eq!(
            answer_json(&respond(&Rules::default(), body)),
            r#"{"actionCode":0,"errCode":5001,"errMsg":"nickname contains a banned word","errDlt":"","nextCode":1}"#
        );
    }

    #[test]
    fn the_log_summary_names_the_banned_word_but_the_answer_does_not() {
        let body =
            include_bytes!("../../fixtures/openim/before_set_group_member_info.nickname_only.json");
        let Response::Answer { summary, body } = respond(&Rules::default(), body) else {
            panic!("expected an answer");
        };
        assert_eq!(
            summary,
            DecisionSummary {
                reject: true,
                err_code: 5001,
                banned_word: Some("admin".to_owned()),
                rewrites_nickname: false,
            }
        );
        assert!(!std::str::from_utf8(&body).unwrap().contains("admin"));
    }

    #[test]
    fn bodies_that_are_not_requests_get_a_400_service_error() {
        for (body, reason) in [
            (&b""[..], "bad request: body is not valid JSON"),
            (b"not json", "bad request: body is not valid JSON"),
            (b"{\"groupID\":", "bad request: body is not valid JSON"),
            (b"\xff\xfe", "bad request: body is not valid JSON"),
            (
                b"{\"nickName\":\"\xff\"}",
                "bad request: body is not valid JSON",
            ),
            (
                b"null",
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
            (
                b"[]",
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
            (
                b"{}",
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
            (
                br#"{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":"60"}"#,
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
            (
                br#"{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":4294967296}"#,
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
            (
                br#"{"callbackCommand":"c","groupID":"g","userID":"u","nickName":5}"#,
                "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request",
            ),
        ] {
            let response = respond(&Rules::default(), body);
            let (code, description) = service_error(&response);
            assert_eq!(code, "400", "{body:?}");
            assert!(description.starts_with(reason), "{body:?}: {description}");
            assert!(!description.contains(['\r', '\n']), "{description}");
        }
    }

    #[test]
    fn the_bad_request_reason_does_not_echo_the_body() {
        let body = br#"{"callbackCommand":"c","groupID":"g","userID":"u","nickName":["s3cret"]}"#;
        let response = respond(&Rules::default(), body);
        let (_, description) = service_error(&response);
        assert!(!description.contains("s3cret"), "{description}");
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let body =
            br#"{"callbackCommand":"c","groupID":"g","userID":"u","nickName":"Bob","future":1}"#;
        assert_eq!(
            answer_json(&respond(&Rules::default(), body)),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }

    #[test]
    fn service_error_headers_follow_the_nats_service_api() {
        let headers = service_error_headers(
            "400",
            "bad request: body is not valid JSON (line 1, column 1)",
        );
        assert_eq!(
            header(Some(&headers), "Nats-Service-Error"),
            Some("bad request: body is not valid JSON (line 1, column 1)")
        );
        assert_eq!(
            header(Some(&headers), "Nats-Service-Error-Code"),
            Some("400")
        );
    }

    #[test]
    fn deadline_is_read_from_its_header_and_malformed_ones_are_ignored() {
        let mut headers = HeaderMap::new();
        assert_eq!(deadline_unix_ms(None), None);
        assert_eq!(deadline_unix_ms(Some(&headers)), None);
        headers.insert("X-Deadline-Unix-Ms", "1732550400123");
        assert_eq!(deadline_unix_ms(Some(&headers)), Some(1_732_550_400_123));
        for malformed in ["", "soon", "-1", "1.5", "99999999999999999999999"] {
            headers.insert("X-Deadline-Unix-Ms", malformed);
            assert_eq!(deadline_unix_ms(Some(&headers)), None, "{malformed:?}");
        }
    }

    #[test]
    fn a_deadline_is_past_only_once_now_is_after_it() {
        assert!(!is_past(1_000, 999));
        assert!(!is_past(1_000, 1_000));
        assert!(is_past(1_000, 1_001));
        assert!(!is_past(u64::MAX, now_unix_ms()));
        assert!(is_past(0, now_unix_ms()));
    }

    #[test]
    fn the_clock_reads_unix_milliseconds() {
        // 2024-01-01 and 2100-01-01: a clock in seconds or microseconds would fall outside.
        let now = now_unix_ms();
        assert!(
            (1_704_067_200_000..4_102_444_800_000).contains(&now),
            "{now}"
        );
    }
}
