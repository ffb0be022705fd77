//! Accepting a callback: the path (and secret), the method, the command, reading and parsing
//! the body. Everything here is the caller's business and needs no NATS: a request that
//! fails a check becomes a [`Rejection`] (a 4xx carrying the default decision) and causes no
//! NATS traffic.
//!
//! The order of the checks is the order a client would want to hear about them: path,
//! method, command, body. Nothing about the path is logged (it may carry the secret).

use std::sync::Arc;

use axum::{
    body::Body as HttpBody,
    http::{request::Parts, Method},
};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use openim_gateway_proto::{headers, Command};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::off_loop::off_loop;
use crate::{
    deadline::Deadline, decision::Body, outcome::RejectReason, rules::Rules,
    settings::WebhookSecret,
};

/// OpenIM's header, as `http::HeaderMap` stores names (lowercase; lookups ignore case).
const OPENIM_OPERATION_ID_HEADER: &str = "operationid";
/// Longest command name echoed in an error answer or a log line.
const MAX_ECHOED_NAME: usize = 128;

/// A request refused before anything was asked: the caller's fault.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) reason: RejectReason,
    /// The `error` field of the answer.
    pub(super) message: String,
    /// The command, when the path named a known one (its default answer may differ).
    pub(super) command: Option<&'static Command>,
}

impl Rejection {
    fn new(reason: RejectReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            command: None,
        }
    }

    fn for_command(mut self, command: &'static Command) -> Self {
        self.command = Some(command);
        self
    }
}

/// A request that passed every check.
#[derive(Debug)]
pub(super) struct Accepted {
    pub(super) command: &'static Command,
    /// The body, forwarded byte for byte.
    pub(super) payload: Bytes,
    /// The body, parsed once (shared with the blocking pool when a large reply is checked).
    pub(super) request: Arc<Body>,
    /// The callback's clock, with its command's budget.
    pub(super) deadline: Deadline,
}

/// What the checks need from the gateway's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits<'a> {
    /// Each command's rules, for its wait from arrival.
    pub(super) rules: &'a Rules,
    /// The path segment required before the command, when configured.
    pub(super) webhook_secret: Option<&'a WebhookSecret>,
    /// Larger bodies are refused with 413.
    pub(super) max_body_bytes: usize,
    /// The NATS server's `max_payload`: a body that would not fit in one message with the
    /// protocol's headers is refused with 413 too, rather than answered as if NATS were down.
    pub(super) nats_max_payload: usize,
}

/// Room kept in a NATS message for the worker-protocol headers (about 250 bytes).
const NATS_HEADER_ROOM: usize = 1024;

impl Limits<'_> {
    /// The largest body that can be accepted and forwarded.
    fn body_limit(&self) -> usize {
        body_limit(self.max_body_bytes, self.nats_max_payload)
    }
}

/// The smaller of `GATEWAY_MAX_BODY_BYTES` and what fits in one NATS message with the headers.
fn body_limit(max_body_bytes: usize, nats_max_payload: usize) -> usize {
    max_body_bytes.min(nats_max_payload.saturating_sub(NATS_HEADER_ROOM))
}

/// Checks everything about the request that does not need NATS, in the order a client
/// would want to hear about it: path, method, command, body. Reading and parsing the body
/// never run past `deadline`.
pub(super) async fn accept(
    limits: Limits<'_>,
    parts: &Parts,
    body: HttpBody,
    arrival: Instant,
) -> Result<Accepted, Rejection> {
    let name = command_from_path(parts.uri.path(), limits.webhook_secret)?;
    if parts.method != Method::POST {
        return Err(Rejection::new(
            RejectReason::Method,
            format!("method {} is not allowed: callbacks are POST", parts.method),
        ));
    }
    let Some(command) = Command::lookup(name) else {
        // Warned about once per interval by the caller, with this message (name escaped).
        let shown: String = name.chars().take(MAX_ECHOED_NAME).collect();
        return Err(Rejection::new(
            RejectReason::UnknownCommand,
            format!("unknown callback command {shown:?}"),
        ));
    };
    // The clock is the command's own: read from the path, before the body is waited for.
    let clock = Deadline::starting(arrival, limits.rules.of(command).answer_within());
    let deadline = clock.at;
    let payload = read_body(body, limits.body_limit(), deadline)
        .await
        .map_err(|rejection| rejection.for_command(command))?;
    let parsing = payload.clone();
    let parsed = off_loop(payload.len(), deadline, move || parse_body(&parsing))
        .await
        .unwrap_or_else(|| Err(body_timeout()))
        .map_err(|rejection| rejection.for_command(command))?;
    Ok(Accepted {
        command,
        payload,
        request: Arc::new(parsed),
        deadline: clock,
    })
}

/// The command is the last non-empty path segment; with a secret, the segment before it
/// must equal the secret (compared in constant time). Nothing about the path is logged.
fn command_from_path<'a>(
    path: &'a str,
    secret: Option<&WebhookSecret>,
) -> Result<&'a str, Rejection> {
    let mut segments = path.rsplit('/').filter(|segment| !segment.is_empty());
    let Some(command) = segments.next() else {
        return Err(Rejection::new(
            RejectReason::NoCommand,
            "no callback command in the path",
        ));
    };
    if let Some(secret) = secret {
        let given = segments.next().unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(secret.as_bytes())) {
            return Err(Rejection::new(
                RejectReason::NotFound,
                "no callback at this path",
            ));
        }
    }
    Ok(command)
}

async fn read_body(body: HttpBody, limit: usize, deadline: Instant) -> Result<Bytes, Rejection> {
    // A declared `Content-Length` (hyper's size hint) above the limit is refused before a byte
    // of the body is waited for: the client may never send the rest, and it would otherwise
    // get 408 at the deadline instead of 413 now.
    let declared = axum::body::HttpBody::size_hint(&body).lower();
    if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
        return Err(too_large(limit));
    }
    let reading = Limited::new(body, limit).collect();
    match tokio::time::timeout_at(deadline, reading).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large(limit)),
        Ok(Err(error)) => Err(Rejection::new(
            RejectReason::BodyRead,
            format!("body could not be read: {error}"),
        )),
        Err(_) => Err(body_timeout()),
    }
}

fn too_large(limit: usize) -> Rejection {
    Rejection::new(
        RejectReason::TooLarge,
        format!("body is larger than {limit} bytes"),
    )
}

fn body_timeout() -> Rejection {
    Rejection::new(
        RejectReason::BodyTimeout,
        "body was not read and checked before the deadline",
    )
}

fn parse_body(payload: &[u8]) -> Result<Body, Rejection> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::new(RejectReason::Empty, "body is empty"));
    }
    if std::str::from_utf8(payload).is_err() {
        return Err(Rejection::new(
            RejectReason::NotUtf8,
            "body is not valid UTF-8",
        ));
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(Rejection::new(
            RejectReason::NotObject,
            "body is not a JSON object",
        )),
        Err(error) => Err(Rejection::new(
            RejectReason::NotJson,
            format!("body is not JSON: {error}"),
        )),
    }
}

/// The operation id for `X-Operation-Id`: OpenIM's `operationID` header (any case), else the
/// body's `operationID`; empty or unprintable values count as absent.
pub(super) fn operation_id<'a>(parts: &'a Parts, body: &'a Body) -> Option<&'a str> {
    let usable = |value: &str| !value.is_empty() && !value.chars().any(char::is_control);
    parts
        .headers
        .get(OPENIM_OPERATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| usable(value))
        .or_else(|| {
            body.get(headers::OPENIM_OPERATION_ID)
                .and_then(Value::as_str)
                .filter(|value| usable(value))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Config;
    use axum::http::StatusCode;

    #[test]
    fn command_is_the_last_non_empty_segment() {
        for (path, expected) in [
            ("/callbackX", "callbackX"),
            ("/callbackExample/callbackX", "callbackX"),
            ("//callbackX", "callbackX"),
            ("/a//b/callbackX/", "callbackX"),
        ] {
            assert_eq!(command_from_path(path, None).unwrap(), expected, "{path}");
        }
        for empty in ["/", "", "//"] {
            assert_eq!(
                command_from_path(empty, None).unwrap_err().reason,
                RejectReason::NoCommand
            );
        }
    }

    #[test]
    fn secret_must_stand_just_before_the_command() {
        let config = Config::from_lookup(|name| {
            (name == crate::settings::table::GATEWAY_WEBHOOK_SECRET.name)
                .then(|| "0123456789abcdef-_".to_owned())
        })
        .unwrap();
        let secret = config.webhook_secret.as_ref();
        assert_eq!(
            command_from_path("/0123456789abcdef-_/cb", secret).unwrap(),
            "cb"
        );
        assert_eq!(
            command_from_path("/base/0123456789abcdef-_/cb", secret).unwrap(),
            "cb"
        );
        for bad in [
            "/cb",
            "/wrong/cb",
            "/0123456789abcdef-_x/cb",
            "/0123456789abcdef-_/x/cb",
            "/0123456789abcdef-_",
        ] {
            assert_eq!(
                command_from_path(bad, secret).unwrap_err().reason.status(),
                StatusCode::NOT_FOUND,
                "{bad}"
            );
        }
    }

    #[test]
    fn bodies_are_classified() {
        assert!(parse_body(b"{\"a\":1}\n").is_ok());
        for (body, reason) in [
            (&b""[..], RejectReason::Empty),
            (b" \n", RejectReason::Empty),
            (b"\xff\xfe", RejectReason::NotUtf8),
            (b"[1,2]", RejectReason::NotObject),
            (b"\"s\"", RejectReason::NotObject),
            (b"{\"a\":", RejectReason::NotJson),
            (b"{} {}", RejectReason::NotJson),
        ] {
            assert_eq!(parse_body(body).unwrap_err().reason, reason);
        }
    }

    #[test]
    fn the_body_limit_leaves_room_for_the_nats_headers() {
        assert_eq!(body_limit(1_048_576, 1_048_576), 1_048_576 - 1024);
        assert_eq!(body_limit(4096, 1_048_576), 4096);
        assert_eq!(body_limit(4096, 2048), 1024);
    }

    #[test]
    fn reasons_have_distinct_labels_and_4xx_statuses() {
        let labels: std::collections::HashSet<_> = RejectReason::ALL
            .iter()
            .map(|reason| reason.as_str())
            .collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
        for reason in RejectReason::ALL {
            assert!(reason.status().is_client_error(), "{reason:?}");
        }
    }

    #[test]
    fn the_operation_id_comes_from_the_header_then_the_body() {
        let body: Body = serde_json::from_str(r#"{"operationID":"from-body"}"#).unwrap();
        let (with_header, ()) = axum::http::Request::builder()
            .header("Operationid", "from-header")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(operation_id(&with_header, &body), Some("from-header"));
        let (without, ()) = axum::http::Request::builder()
            .header("Operationid", "")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(operation_id(&without, &body), Some("from-body"));
        assert_eq!(operation_id(&without, &Body::new()), None);
    }
}
