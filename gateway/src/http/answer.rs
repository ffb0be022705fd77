//! Answers: the bytes OpenIM reads and the response around them. Every answer on a callback
//! route is a valid OpenIM answer, because OpenIM ignores the HTTP status and parses the
//! body: a 4xx carries the default decision and an `error` field, and a caught panic the
//! default decision.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use openim_gateway_proto::DecisionSource;
use serde_json::Value;

use super::accept::Rejection;
use crate::decision::{self, Body, DefaultDecision};
use crate::outcome::RejectReason;

/// The `error` field a refused request's answer carries besides the default decision.
const ERROR_FIELD: &str = "error";

/// The response's own header names, built once (HTTP/1 sends names in lower case anyway; a
/// name given as a mixed-case `&str` is lowered into a new allocation on every insert).
const DECISION_SOURCE_HEADER: header::HeaderName =
    header::HeaderName::from_static("x-decision-source");
const REQUEST_ID_HEADER: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// Answers serialised once at start.
#[derive(Debug, Clone)]
pub(super) struct Prebuilt {
    /// The allow answer: every after-callback's acknowledgement.
    pub(super) allow: Bytes,
    /// The default decision without anything from a request: the panic answer, and the
    /// answer when another could not be serialised.
    pub(super) default: Bytes,
}

impl Prebuilt {
    pub(super) fn new(default_decision: &DefaultDecision) -> Self {
        // The allow answer's five fields always serialise; an empty body would not be a
        // valid OpenIM answer, so a failure here is a bug worth a panic at start.
        let common = |decision: &DefaultDecision| {
            serde_json::to_vec(&decision::default_answer(decision, None, None))
                .map(Bytes::from)
                .unwrap_or_else(|error| unreachable!("a common answer serialises: {error}"))
        };
        Self {
            allow: common(&DefaultDecision::Allow),
            default: common(default_decision),
        }
    }

    /// `answer` as JSON bytes; the prebuilt default when it cannot be serialised (a map of
    /// JSON values always can, so this only guards against a bug).
    pub(super) fn encode(&self, answer: &Body) -> Bytes {
        match serde_json::to_vec(answer) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                tracing::error!(%error, "an answer could not be serialised: answering the default");
                self.default.clone()
            }
        }
    }
}

/// A 200 (or the given status) JSON answer marked with who decided it.
pub(super) fn json_response(
    status: StatusCode,
    source: DecisionSource,
    request_id: Option<uuid::Uuid>,
    body: Bytes,
) -> Response {
    let mut response = (status, body).into_response();
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(
        DECISION_SOURCE_HEADER,
        HeaderValue::from_static(source.header_value()),
    );
    if let Some(request_id) = request_id {
        let mut buffer = uuid::Uuid::encode_buffer();
        if let Ok(value) = HeaderValue::from_str(request_id.hyphenated().encode_lower(&mut buffer))
        {
            response_headers.insert(REQUEST_ID_HEADER, value);
        }
    }
    response
}

/// The caller's fault: a 4xx carrying the default decision and what was wrong.
pub(super) fn refused(
    prebuilt: &Prebuilt,
    default_decision: &DefaultDecision,
    rejection: Rejection,
    request_id: uuid::Uuid,
) -> Response {
    let mut answer = decision::default_answer(default_decision, rejection.command, None);
    answer.insert(ERROR_FIELD.to_owned(), Value::String(rejection.message));
    let mut response = json_response(
        rejection.reason.status(),
        DecisionSource::BadRequest,
        Some(request_id),
        prebuilt.encode(&answer),
    );
    if rejection.reason == RejectReason::Method {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// The whole HTTP/1.1 response for a request hyper refused while parsing it (`status` is
/// hyper's: 400, 431 or 414): the default decision and what was wrong, and the connection
/// closes after it, as hyper would have closed it.
pub(super) fn protocol_error(
    prebuilt: &Prebuilt,
    default_decision: &DefaultDecision,
    status: u16,
    request_id: uuid::Uuid,
) -> Vec<u8> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let reason = status.canonical_reason().unwrap_or("Bad Request");
    let mut answer = decision::default_answer(default_decision, None, None);
    answer.insert(
        ERROR_FIELD.to_owned(),
        Value::String(format!(
            "the request could not be read: {} {reason}",
            status.as_u16()
        )),
    );
    let body = prebuilt.encode(&answer);
    let mut response = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\n{}: {}\r\n{}: {request_id}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        DECISION_SOURCE_HEADER.as_str(),
        DecisionSource::BadRequest.header_value(),
        REQUEST_ID_HEADER.as_str(),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
}

/// A bug in a handler: the default decision, so OpenIM still gets a valid answer.
pub(super) fn internal_error(prebuilt: &Prebuilt) -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        DecisionSource::InternalError,
        None,
        prebuilt.default.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use openim_gateway_proto::headers;

    #[test]
    fn prebuilt_header_names_are_the_protocol_names() {
        for (built, name) in [
            (DECISION_SOURCE_HEADER.as_str(), headers::DECISION_SOURCE),
            (REQUEST_ID_HEADER.as_str(), headers::REQUEST_ID),
        ] {
            assert!(built.eq_ignore_ascii_case(name), "{built} vs {name}");
        }
    }

    #[test]
    fn the_prebuilt_default_follows_the_setting() {
        let reject = DefaultDecision::Reject {
            err_code: 5099,
            err_msg: "later".to_owned(),
        };
        let prebuilt = Prebuilt::new(&reject);
        assert_eq!(
            &prebuilt.default[..],
            br#"{"actionCode":0,"errCode":5099,"errMsg":"later","errDlt":"","nextCode":1}"#
        );
        assert_eq!(
            &prebuilt.allow[..],
            br#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }
}
