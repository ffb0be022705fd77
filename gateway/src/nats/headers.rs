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
    /// W3C `traceparent` for the workers: the callback's span when traces are exported,
    /// else OpenIM's own header passed on; `None` adds no header.
    pub traceparent: Option<&'a str>,
    /// W3C `tracestate`, sent only with a `traceparent`.
    pub tracestate: Option<&'a str>,
}

pub(super) const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
pub(super) const CALLBACK_COMMAND_HEADER: HeaderName =
    HeaderName::from_static(headers::CALLBACK_COMMAND);
pub(super) const OPERATION_ID_HEADER: HeaderName = HeaderName::from_static(headers::OPERATION_ID);
pub(super) const DEADLINE_UNIX_MS_HEADER: HeaderName =
    HeaderName::from_static(headers::DEADLINE_UNIX_MS);
pub(super) const TIMEOUT_MS_HEADER: HeaderName = HeaderName::from_static(headers::TIMEOUT_MS);
const TRACEPARENT_HEADER: HeaderName = HeaderName::from_static(headers::TRACEPARENT);
const TRACESTATE_HEADER: HeaderName = HeaderName::from_static(headers::TRACESTATE);

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
    .chain(trace_headers(meta))
    .collect()
}

/// `traceparent`, and `tracestate` with it when there is one: nothing without a parent.
fn trace_headers<'a>(
    meta: &CallbackMeta<'a>,
) -> impl Iterator<Item = (HeaderName, async_nats::HeaderValue)> + 'a {
    let parent = meta.traceparent;
    let state = parent
        .and(meta.tracestate)
        .filter(|state| !state.is_empty());
    parent
        .map(|parent| (TRACEPARENT_HEADER, parent.into()))
        .into_iter()
        .chain(state.map(|state| (TRACESTATE_HEADER, state.into())))
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
            traceparent: None,
            tracestate: Some("ignored=without-a-parent"),
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
        assert!(get(headers::TRACEPARENT).is_none());
        assert!(get(headers::TRACESTATE).is_none());
    }

    #[test]
    fn the_trace_context_is_carried_when_there_is_one() {
        let command = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        let arrival = Instant::now();
        let parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let meta = CallbackMeta {
            command,
            request_id: uuid::Uuid::nil(),
            operation_id: None,
            deadline: Deadline::starting(arrival, Duration::from_millis(4740)),
            traceparent: Some(parent),
            tracestate: Some("congo=t61rcWkgMzE"),
        };
        let map = protocol_headers(&meta, arrival, SystemTime::now());
        let get = |name: &str| map.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(get(headers::TRACEPARENT).as_deref(), Some(parent));
        assert_eq!(
            get(headers::TRACESTATE).as_deref(),
            Some("congo=t61rcWkgMzE")
        );
        let no_state = CallbackMeta {
            tracestate: Some(""),
            ..meta
        };
        let map = protocol_headers(&no_state, arrival, SystemTime::now());
        assert!(map.get(headers::TRACESTATE).is_none());
    }
}
