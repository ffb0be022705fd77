//! What happened to a callback, as types: why a request was refused before anything was
//! asked, why a worker's reply could not be forwarded, and how a shadowed worker's decision
//! compared with the default answered instead. The callback path produces these; metrics,
//! the condition reports and the logs read them. Depends on nothing in the crate.

use axum::http::StatusCode;
use openim_gateway_proto::{openim::answers::Guard, Command};
use thiserror::Error;

/// Why a request was refused before anything was asked: the `reason` label of
/// `openim_gateway_bad_requests_total` and the HTTP status of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// With a secret set, the segment before the command is not the secret.
    NotFound,
    /// The path has no segment to take the command from.
    NoCommand,
    /// Not a POST.
    Method,
    /// The command is not in the catalog (a newer OpenIM?).
    UnknownCommand,
    /// The body is larger than `GATEWAY_MAX_BODY_BYTES`.
    TooLarge,
    /// The body could not be read (the connection broke).
    BodyRead,
    /// The body was not read and parsed before the deadline.
    BodyTimeout,
    /// The body is empty or whitespace.
    Empty,
    /// The body is not UTF-8.
    NotUtf8,
    /// The body is JSON, but not an object.
    NotObject,
    /// The body is not JSON.
    NotJson,
    /// hyper could not parse the request (malformed, too many or too large headers).
    Protocol,
}

impl RejectReason {
    /// Every reason, so that each counter series exists from the start.
    pub const ALL: [Self; 12] = [
        Self::NotFound,
        Self::NoCommand,
        Self::Method,
        Self::UnknownCommand,
        Self::TooLarge,
        Self::BodyRead,
        Self::BodyTimeout,
        Self::Empty,
        Self::NotUtf8,
        Self::NotObject,
        Self::NotJson,
        Self::Protocol,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::NoCommand => "no_command",
            Self::Method => "method",
            Self::UnknownCommand => "unknown_command",
            Self::TooLarge => "too_large",
            Self::BodyRead => "body_read",
            Self::BodyTimeout => "body_timeout",
            Self::Empty => "empty",
            Self::NotUtf8 => "not_utf8",
            Self::NotObject => "not_object",
            Self::NotJson => "not_json",
            Self::Protocol => "protocol",
        }
    }

    /// The HTTP status of the answer.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::NotFound | Self::NoCommand | Self::UnknownCommand => StatusCode::NOT_FOUND,
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead
            | Self::Empty
            | Self::NotUtf8
            | Self::NotObject
            | Self::NotJson
            | Self::Protocol => StatusCode::BAD_REQUEST,
        }
    }
}

/// Why a worker reply cannot be forwarded to OpenIM.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InvalidReply {
    /// The worker answered with the NATS service API's error header.
    #[error("worker reported an error: {0}")]
    ServiceError(String),
    /// Not JSON at all (OpenIM: 90007 DataError).
    #[error("reply is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("reply is not a JSON object")]
    NotObject,
    /// A field of the wrong JSON type, or an integer outside int32 (OpenIM: 90007).
    #[error("reply field {field:?} must be {expected}")]
    WrongType {
        /// The reply's key.
        field: String,
        /// What OpenIM's Go struct accepts.
        expected: &'static str,
    },
    /// A refusal with an `errCode` OpenIM turns into an internal error or a silent success.
    #[error("reply refuses with errCode {0}: a refusal needs errCode >= 100")]
    RejectCodeTooSmall(i64),
    /// A change of who or what the operation is about, applied after OpenIM's checks.
    #[error("reply changes the identity field {0:?}")]
    IdentityChanged(String),
    /// A field OpenIM would dereference through the request's own `null` pointer.
    #[error("reply sets {0:?}, which the request has null: OpenIM would crash on it")]
    SetsNullPointerField(String),
    /// A list entry, or the entry's field, that OpenIM dereferences without a nil check.
    #[error("reply has a null {0}: OpenIM would crash on it")]
    NullEntry(String),
    /// The same user twice in a list OpenIM stores unchecked.
    #[error("reply repeats {0}")]
    DuplicateEntry(String),
    /// Message content OpenIM refuses: it must be a JSON object (or `null`) as text.
    #[error("reply content is not the text of a JSON object: OpenIM would refuse the message")]
    ContentNotJsonObject,
    /// A group name that is blank after trimming, which makes OpenIM drop the whole update
    /// without an error.
    #[error("reply sets a blank {0:?}: OpenIM would drop the whole update without an error")]
    BlankGroupName(String),
}

impl InvalidReply {
    /// Every reason label, for metrics to start at 0.
    pub const REASONS: [&'static str; 11] = [
        "service_error",
        "not_json",
        "not_object",
        "wrong_type",
        "reject_code_too_small",
        "identity_changed",
        "null_pointer_field",
        "null_entry",
        "duplicate_entry",
        "content_not_json_object",
        "blank_group_name",
    ];

    /// The reasons a reply to `command` can be invalid for: the ones every command's reply
    /// can meet (the service error, the JSON and its types, the refusal's code, an identity
    /// field the answer struct lacks), and those of the guards of the command's answer
    /// fields (`decision/fields.rs` refuses a value for these reasons only under these
    /// guards). The metrics start these series at 0 and no other: a series that can never
    /// count is not exported.
    pub fn possible_reasons(command: &Command) -> impl Iterator<Item = &'static str> + '_ {
        let every_reply = [
            "service_error",
            "not_json",
            "not_object",
            "wrong_type",
            "reject_code_too_small",
            "identity_changed",
        ];
        let guarded = Self::REASONS.into_iter().filter(move |reason| {
            command.answer.iter().any(|field| match field.guard {
                Guard::RequestPointerSet => *reason == "null_pointer_field",
                Guard::JsonObjectText => *reason == "content_not_json_object",
                Guard::NotBlank => *reason == "blank_group_name",
                Guard::RegisteredUsers => *reason == "null_entry" || *reason == "duplicate_entry",
                Guard::JoiningMembers => *reason == "null_entry",
                Guard::Free
                | Guard::SameAsRequest
                | Guard::ChosenWhenUnset
                | Guard::DropUnsetEcho
                | Guard::SubsetOf(_)
                | Guard::Unverifiable => false,
            })
        });
        every_reply.into_iter().chain(guarded)
    }

    /// The reason label of `openim_gateway_invalid_replies_total`.
    pub const fn reason(&self) -> &'static str {
        match self {
            Self::ServiceError(_) => "service_error",
            Self::NotJson(_) => "not_json",
            Self::NotObject => "not_object",
            Self::WrongType { .. } => "wrong_type",
            Self::RejectCodeTooSmall(_) => "reject_code_too_small",
            Self::IdentityChanged(_) => "identity_changed",
            Self::SetsNullPointerField(_) => "null_pointer_field",
            Self::NullEntry(_) => "null_entry",
            Self::DuplicateEntry(_) => "duplicate_entry",
            Self::ContentNotJsonObject => "content_not_json_object",
            Self::BlankGroupName(_) => "blank_group_name",
        }
    }
}

/// How a shadowed worker's decision compared with the default answered instead: the
/// `outcome` label of `openim_gateway_shadow_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowOutcome {
    /// OpenIM would have received the same decision: both allow the operation unchanged, or
    /// both refuse it (the code and message may differ).
    Agree,
    /// One allows the operation, the other refuses it.
    Disagree,
    /// Both allow it, but the worker with changes (a command field that differs from the
    /// default allow's): OpenIM would have received a different answer.
    Modify,
    /// No valid reply from the worker in time.
    NoDecision,
}

impl ShadowOutcome {
    /// Every outcome, so that each counter series exists from the start.
    pub const ALL: [Self; 4] = [Self::Agree, Self::Disagree, Self::Modify, Self::NoDecision];

    /// The metric label and the log field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Agree => "agree",
            Self::Disagree => "disagree",
            Self::Modify => "modify",
            Self::NoDecision => "no_decision",
        }
    }
}

#[cfg(test)]
mod tests {
    use openim_gateway_proto::catalog;

    use super::*;

    #[test]
    fn the_possible_reasons_follow_the_guards_of_the_answer_fields() {
        let reasons = |name: &str| -> Vec<&'static str> {
            InvalidReply::possible_reasons(Command::lookup(name).unwrap()).collect()
        };
        for command in catalog::COMMANDS {
            for reason in InvalidReply::possible_reasons(command) {
                assert!(InvalidReply::REASONS.contains(&reason), "{reason}");
            }
        }
        let modify = reasons("callbackBeforeMsgModifyCommand");
        assert!(modify.contains(&"content_not_json_object"), "{modify:?}");
        assert!(!modify.contains(&"blank_group_name"), "{modify:?}");
        // A command whose answer has only the common fields: the six reasons any reply can
        // meet, and none of the guarded ones.
        assert_eq!(reasons("callbackBeforeSendSingleMsgCommand").len(), 6);
        let join = reasons("callbackBeforeMembersJoinGroupCommand");
        assert!(join.contains(&"null_entry"), "{join:?}");
        let register = reasons("callbackBeforeUserRegisterCommand");
        assert!(register.contains(&"duplicate_entry"), "{register:?}");
        let group = reasons("callbackBeforeSetGroupInfoExCommand");
        assert!(group.contains(&"blank_group_name"), "{group:?}");
        assert!(group.contains(&"identity_changed"), "{group:?}");
    }
}
