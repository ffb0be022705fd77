//! The worker protocol's headers on a request, and the service error header on a reply.

use std::time::SystemTime;

use async_nats::{header::HeaderName, HeaderMap, Message};
use openim_gateway_proto::headers;
use tokio::time::Instant;

use openim_gateway_proto::Command;

use crate::deadline::Deadline;

/// The worker protocol's header names, built once: a name given as a `&str` is validated and
/// copied on every insert.
/// What the forwarder needs to know about a callback besides its body.
#[derive(Debug, Clone, Copy)]
pub struct CallbackMeta<'a> {
    /// The catalog command (its subject is `{prefix}.{name}`).
    pub command: &'static Command,
    /// `X-Request-Id`: the same id OpenIM gets on the answer.
    pub request_id: uuid::Uuid,
    /// `X-Operation-Id`, when OpenIM sent one.
    pub operation_id: Option<&'a str>,
    /// When the gateway stops waiting.
    pub deadline: Deadline,
}

pub(super) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
pub(super) const CALLBACK_COMMAND_HEADER: HeaderName =
    HeaderName::from_static(headers::CALLBACK_COMMAND);
pub(super) const OPERATION_ID_HEADER: HeaderName = HeaderName::from_static(headers::OPERATION_ID);
pub(super) const DEADLINE_UNIX_MS_HEADER: HeaderName =
    HeaderName::from_static(headers::DEADLINE_UNIX_MS);
pub(super) const TIMEOUT_MS_HEADER: HeaderName = HeaderName::from_static(headers::TIMEOUT_MS);

/// The headers of the worker protocol for `meta`, stated at `now` (`wall_now` on the wall
/// clock): the time left is what the worker really has when the request leaves.
pub(super) fn protocol_headers(
    meta: &CallbackMeta<'_>,
    now: Instant,
    wall_now: SystemTime,
) -> HeaderMap {
    let left = meta.deadline.left(now);
    let deadline_unix_ms = meta.deadline.unix_ms(now, wall_now);
    // Collected from an iterator whose length is known, so the map is sized once.
    [
        (REQUEST_ID_HEADER, meta.request_id.to_string().into()),
        (CALLBACK_COMMAND_HEADER, meta.command.name.into()),
        (DEADLINE_UNIX_MS_HEADER, deadline_unix_ms.to_string().into()),
        (TIMEOUT_MS_HEADER, left.as_millis().to_string().into()),
    ]
    .into_iter()
    .chain(meta.operation_id.map(|id| (OPERATION_ID_HEADER, id.into())))
    .collect()
}

/// The NATS service API's error header, when the worker set it.
pub(super) fn service_error(message: &Message) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|map| map.get(headers::NATS_SERVICE_ERROR))
        .map(|value| value.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    use openim_gateway_proto::{catalog, Command};

    use crate::deadline::Deadline;

    #[test]
    fn headers_state_the_callback_and_its_deadline() {
        let command = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        let arrival = Instant::now();
        let meta = CallbackMeta {
            command,
            request_id: uuid::Uuid::nil(),
            operation_id: Some("op-1"),
            deadline: Deadline::starting(arrival, Duration::from_millis(4740)),
        };
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let map = protocol_headers(&meta, arrival + Duration::from_millis(40), wall);
        let get = |name: &str| map.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(
            get(headers::REQUEST_ID).as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            get(headers::CALLBACK_COMMAND).as_deref(),
            Some(command.name)
        );
        assert_eq!(get(headers::OPERATION_ID).as_deref(), Some("op-1"));
        assert_eq!(get(headers::TIMEOUT_MS).as_deref(), Some("4700"));
        assert_eq!(
            get(headers::DEADLINE_UNIX_MS).as_deref(),
            Some("1700000004700")
        );
        let without = CallbackMeta {
            operation_id: None,
            ..meta
        };
        assert!(protocol_headers(&without, arrival, wall)
            .get(headers::OPERATION_ID)
            .is_none());
    }
}
