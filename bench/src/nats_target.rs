//! One request as a bare async-nats request/reply: the NATS floor the gateway cannot beat.
//!
//! The same body goes to the same subject and the same queue group of workers the gateway
//! uses, through `Client::request` (async-nats' own reply routing: one wildcard inbox
//! subscription), without headers and without HTTP. Every caller shares the one client, as
//! the gateway's callbacks do. A timeout is left to the engine; with workers that always
//! answer, async-nats' reply-map leak on timeouts (nats-io/nats.rs#1617) does not matter here.
//!
//! With `with_headers`, each request also carries the five headers the gateway adds
//! (request id, command, operation id, deadline, time left), so that the cost of headers on
//! the NATS hop (nats-server and the worker parse them) can be told from the gateway's own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, HeaderMap, RequestErrorKind, Subject};
use bytes::Bytes;
use openim_gateway_proto::{catalog::BEFORE_SET_GROUP_MEMBER_INFO, headers};

use crate::{
    body::{callback_body, operation_id},
    load::{CallError, Target},
};

/// The budget written in `X-Timeout-Ms` and `X-Deadline-Unix-Ms` with `with_headers`: the
/// gateway's default (5000 ms timeout minus 250 ms margin).
const HEADER_BUDGET: Duration = Duration::from_millis(4750);

/// The source counted for every valid reply.
pub const NATS_SOURCE: &str = openim_gateway_proto::DecisionSource::Worker.as_str();

/// Requests to `subject` on `client`.
#[derive(Debug, Clone)]
pub struct NatsTarget {
    client: Client,
    subject: Subject,
    /// Send the gateway's five headers with each request.
    with_headers: bool,
}

impl NatsTarget {
    /// Requests on `subject` through `client`.
    pub fn new(client: Client, subject: impl Into<Subject>) -> Self {
        Self {
            client,
            subject: subject.into(),
            with_headers: false,
        }
    }

    /// Also send the gateway's headers with each request.
    pub fn with_headers(mut self) -> Self {
        self.with_headers = true;
        self
    }
}

/// The headers the gateway adds to request number `sequence`, built the way it builds them.
fn gateway_headers(sequence: u64) -> HeaderMap {
    let deadline = SystemTime::now() + HEADER_BUDGET;
    let deadline_unix_ms = deadline
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or_default();
    let mut map = HeaderMap::new();
    map.insert(
        headers::REQUEST_ID,
        format!("01890a5d-ac96-774b-bcce-{sequence:012x}"),
    );
    map.insert(headers::CALLBACK_COMMAND, BEFORE_SET_GROUP_MEMBER_INFO);
    map.insert(headers::OPERATION_ID, operation_id(sequence));
    map.insert(headers::DEADLINE_UNIX_MS, deadline_unix_ms.to_string());
    map.insert(headers::TIMEOUT_MS, HEADER_BUDGET.as_millis().to_string());
    map
}

impl Target for NatsTarget {
    /// Callers share the client: nothing to hold between requests.
    type Conn = ();

    async fn connect(&self) -> Result<(), CallError> {
        Ok(())
    }

    async fn call(&self, _conn: &mut (), sequence: u64) -> Result<&'static str, CallError> {
        let payload = Bytes::from(callback_body(sequence));
        let reply = if self.with_headers {
            self.client
                .request_with_headers(self.subject.clone(), gateway_headers(sequence), payload)
                .await
        } else {
            self.client.request(self.subject.clone(), payload).await
        };
        let reply = reply.map_err(|error| match error.kind() {
            RequestErrorKind::NoResponders => CallError::NoResponders,
            RequestErrorKind::TimedOut => CallError::Timeout,
            _ => CallError::Io,
        })?;
        if reply.payload.starts_with(b"{") {
            Ok(NATS_SOURCE)
        } else {
            Err(CallError::Body)
        }
    }
}
