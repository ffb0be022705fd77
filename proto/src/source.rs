//! Who decided an answer: the values of the `X-Decision-Source` header on every answer to
//! OpenIM, and of the `source` label of `openim_gateway_callbacks_total`.
//!
//! Defined once here so that the gateway, the end-to-end tests, the benchmark and workers'
//! dashboards all spell them the same way. This module does not decide which source applies;
//! the gateway's callback path does.

use crate::CallbackKind;

/// The sources a before-callback's answer can be counted under.
const BEFORE: [DecisionSource; 8] = [
    DecisionSource::Worker,
    DecisionSource::Timeout,
    DecisionSource::NoResponders,
    DecisionSource::Unavailable,
    DecisionSource::InvalidReply,
    DecisionSource::Overload,
    DecisionSource::Shadow,
    DecisionSource::Off,
];
/// The sources an after-callback's acknowledgement can be counted under.
const AFTER: [DecisionSource; 3] = [
    DecisionSource::Ack,
    DecisionSource::Unpublished,
    DecisionSource::Off,
];

/// Who decided an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionSource {
    /// A valid worker reply arrived in time: the answer is the worker's, normalised.
    Worker,
    /// An after-callback, published to NATS without waiting, acknowledged at once.
    Ack,
    /// An after-callback that could not be published (NATS down), or, with an after-callback
    /// stream, that the stream did not store. OpenIM still gets the
    /// acknowledgement (`X-Decision-Source: ack`); only the metric label differs.
    Unpublished,
    /// No reply by the deadline: the default decision.
    Timeout,
    /// Nobody subscribes to the subject (NATS says so at once): the default decision.
    NoResponders,
    /// NATS is not connected, or the request could not be sent: the default decision.
    Unavailable,
    /// The reply is not an answer OpenIM can safely apply: the default decision.
    InvalidReply,
    /// More before-callbacks in flight than the gateway's bound: the default decision at
    /// once, nobody asked.
    Overload,
    /// The request itself was refused (a 4xx): the default decision and an `error` field.
    BadRequest,
    /// A bug in the gateway (a caught panic): the default decision.
    InternalError,
    /// The command's policy is `shadow`: the worker was asked and its decision counted, but
    /// the answer is the default decision.
    Shadow,
    /// The command's policy is `off`: nobody was asked; the default decision.
    Off,
}

impl DecisionSource {
    /// Every source, in the order a table lists them.
    pub const ALL: [Self; 12] = [
        Self::Worker,
        Self::Ack,
        Self::Unpublished,
        Self::Timeout,
        Self::NoResponders,
        Self::Unavailable,
        Self::InvalidReply,
        Self::Overload,
        Self::BadRequest,
        Self::InternalError,
        Self::Shadow,
        Self::Off,
    ];

    /// The metric label (`openim_gateway_callbacks_total{source}`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Ack => "ack",
            Self::Unpublished => "unpublished",
            Self::Timeout => "fallback:timeout",
            Self::NoResponders => "fallback:no_responders",
            Self::Unavailable => "fallback:unavailable",
            Self::InvalidReply => "fallback:invalid_reply",
            Self::Overload => "fallback:overload",
            Self::BadRequest => "fallback:bad_request",
            Self::InternalError => "fallback:internal_error",
            Self::Shadow => "shadow",
            Self::Off => "fallback:off",
        }
    }

    /// The `X-Decision-Source` header value: the label, except that an unpublished
    /// after-callback is still an acknowledgement to OpenIM.
    pub const fn header_value(self) -> &'static str {
        match self {
            Self::Unpublished => Self::Ack.as_str(),
            other => other.as_str(),
        }
    }

    /// Whether the answer is the configured default rather than a worker's decision or an
    /// acknowledgement, because something failed or the command is switched off. A shadow
    /// answer is the default by design, after the worker was heard: not a fallback.
    pub const fn is_fallback(self) -> bool {
        !matches!(
            self,
            Self::Worker | Self::Ack | Self::Unpublished | Self::Shadow
        )
    }

    /// The sources an answer to a callback of `kind` can be counted under, in the order of
    /// [`Self::ALL`] (a request refused before its command is known is counted apart).
    pub const fn of_kind(kind: CallbackKind) -> &'static [Self] {
        match kind {
            CallbackKind::Before => &BEFORE,
            CallbackKind::After => &AFTER,
        }
    }

    /// The source a header or label value names, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == name)
    }
}

impl std::fmt::Display for DecisionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_round_trips_through_its_name() {
        for source in DecisionSource::ALL {
            assert_eq!(DecisionSource::from_name(source.as_str()), Some(source));
        }
        assert_eq!(DecisionSource::from_name("fallback:other"), None);
    }

    #[test]
    fn fallbacks_say_so_in_their_name() {
        for source in DecisionSource::ALL {
            assert_eq!(
                source.is_fallback(),
                source.as_str().starts_with("fallback:"),
                "{source}"
            );
        }
    }

    #[test]
    fn an_unpublished_after_callback_is_still_acknowledged() {
        assert_eq!(DecisionSource::Unpublished.header_value(), "ack");
        assert_eq!(DecisionSource::Unpublished.as_str(), "unpublished");
    }
}
