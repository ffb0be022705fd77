//! `X-Deadline-Unix-Ms`: reading it and comparing it with the wall clock.
//!
//! The gateway stops waiting at that moment and answers OpenIM with its default, so a reply
//! after it is thrown away: the kit skips such a request instead of spending a handler on it.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use openim_gateway_proto::headers;

/// The value of header `name`, if the message has it.
pub(crate) fn header<'message>(
    headers: Option<&'message HeaderMap>,
    name: &str,
) -> Option<&'message str> {
    headers?.get(name).map(async_nats::HeaderValue::as_str)
}

/// The request's deadline, if it carries one that parses. A malformed deadline is ignored
/// rather than trusted: answering a request nobody waits for costs a few microseconds, while
/// dropping one somebody waits for costs a user-visible fallback.
pub(crate) fn deadline_unix_ms(headers: Option<&HeaderMap>) -> Option<u64> {
    let value = header(headers, headers::DEADLINE_UNIX_MS)?;
    let parsed = value.trim().parse().ok();
    if parsed.is_none() {
        tracing::debug!(value, "ignoring a malformed {}", headers::DEADLINE_UNIX_MS);
    }
    parsed
}

/// Whether a request with this deadline is already abandoned by the gateway.
pub(crate) fn is_past(deadline_unix_ms: u64, now_unix_ms: u64) -> bool {
    now_unix_ms > deadline_unix_ms
}

/// The wall clock in Unix milliseconds; the gateway writes deadlines on the same scale. A
/// clock before 1970 reads as 0, so nothing looks late.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since_epoch| {
            u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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
