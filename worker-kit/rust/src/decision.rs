//! [`Decision`]: what a handler answers, in the three shapes OpenIM understands.
//!
//! A handler may return any serialisable answer (the seed command's
//! `SetGroupMemberInfoAnswer` is one); `Decision` is the generic one, for commands without a
//! typed answer or handlers that prefer to say what they mean: allow, reject with a code and
//! a message, or allow with fields to change. It always writes the five common fields first,
//! in OpenIM's order, and the changed fields after them.

use openim_gateway_proto::CommonAnswer;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// An answer to one callback.
///
/// `M` holds the fields a modification changes: any type that serialises to a JSON object
/// (a struct with `#[serde(skip_serializing_if = "Option::is_none")]` on every field, or a
/// [`Map`]). A field it leaves out keeps what the client asked for; see "Modify" in
/// docs/worker-protocol.md for why a `null` request field must never be echoed as `""`.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<M = Map<String, Value>> {
    /// Let the operation through as the client asked: `{"actionCode":0,...,"nextCode":0}`.
    Allow,
    /// Refuse the operation; the user's client receives the code and the message.
    Reject {
        /// At least 100: the gateway treats a smaller one as an invalid reply, so the kit
        /// answers such a decision with a service error instead (the mistake then shows in
        /// the worker's log rather than as a silent default).
        err_code: i32,
        /// The message the user's client receives.
        err_msg: String,
    },
    /// Let the operation through with these fields replaced.
    Modify(M),
}

impl<M> Decision<M> {
    /// Let the operation through unchanged.
    pub fn allow() -> Self {
        Self::Allow
    }

    /// Refuse the operation with `err_code` (100 or more) and `err_msg`.
    pub fn reject(err_code: i32, err_msg: impl Into<String>) -> Self {
        Self::Reject {
            err_code,
            err_msg: err_msg.into(),
        }
    }

    /// Let the operation through with `fields` replaced.
    pub fn modify(fields: M) -> Self {
        Self::Modify(fields)
    }
}

/// The wire form: the common fields, then the modified ones.
#[derive(Serialize)]
struct Wire<'decision, M> {
    #[serde(flatten)]
    common: CommonAnswer,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    fields: Option<&'decision M>,
}

impl<M: Serialize> Serialize for Decision<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (common, fields) = match self {
            Self::Allow => (CommonAnswer::allow(), None),
            Self::Reject { err_code, err_msg } => {
                (CommonAnswer::reject(*err_code, err_msg.clone()), None)
            }
            Self::Modify(fields) => (CommonAnswer::allow(), Some(fields)),
        };
        Wire { common, fields }.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use openim_gateway_proto::group_member::MemberInfoChanges;

    use super::*;

    fn json(decision: &Decision<MemberInfoChanges>) -> String {
        serde_json::to_string(decision).unwrap()
    }

    #[test]
    fn allow_reject_and_modify_write_the_common_fields_first() {
        assert_eq!(
            json(&Decision::allow()),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
        assert_eq!(
            json(&Decision::reject(5001, "nickname not allowed")),
            r#"{"actionCode":0,"errCode":5001,"errMsg":"nickname not allowed","errDlt":"","nextCode":1}"#
        );
        let changes = MemberInfoChanges {
            nick_name: Some("Ada".to_owned()),
            ..MemberInfoChanges::default()
        };
        assert_eq!(
            json(&Decision::modify(changes)),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Ada"}"#
        );
    }

    #[test]
    fn a_map_modifies_any_command() {
        let mut fields = Map::new();
        fields.insert("groupName".to_owned(), Value::from("Readers"));
        let written = serde_json::to_string(&Decision::modify(fields)).unwrap();
        assert!(
            written.ends_with(r#""nextCode":0,"groupName":"Readers"}"#),
            "{written}"
        );
    }
}
