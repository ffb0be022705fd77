//! The common answer OpenIM parses from every callback (`CommonCallbackResp`).
//!
//! OpenIM refuses an operation only when `actionCode == 0 && nextCode == 1`; any other valid
//! JSON lets it through (`CommonCallbackResp.Parse`, `pkg/callbackstruct/common.go`). A refusal's `errCode` reaches the end user, so it must be at least
//! 100 (OpenIM turns 0 into an internal error or a silent success; its docs suggest
//! 5000..=9999).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The JSON names of the common answer's fields, as OpenIM's Go struct tags spell them.
pub mod fields {
    /// Not 0: OpenIM ignores a refusal (`nextCode` 1); the command fields still apply.
    pub const ACTION_CODE: &str = "actionCode";
    /// The code of a refusal.
    pub const ERR_CODE: &str = "errCode";
    /// The message of a refusal.
    pub const ERR_MSG: &str = "errMsg";
    /// The detail of a refusal.
    pub const ERR_DLT: &str = "errDlt";
    /// 1 (with `actionCode` 0): refuse the operation.
    pub const NEXT_CODE: &str = "nextCode";
    /// The integer fields (Go `int32` in `CommonCallbackResp`, `pkg/callbackstruct/common.go`,
    /// in every version).
    pub const INTEGERS: [&str; 3] = [ACTION_CODE, ERR_CODE, NEXT_CODE];
    /// The string fields.
    pub const STRINGS: [&str; 2] = [ERR_MSG, ERR_DLT];

    /// Whether `key` names a common field the way Go matches keys (ignoring case).
    pub fn is_common(key: &str) -> bool {
        INTEGERS
            .iter()
            .chain(STRINGS.iter())
            .any(|field| crate::openim::go::go_key_matches(field, key))
    }
}

/// The smallest `errCode` a refusal may carry: OpenIM turns 0 into an internal error, and
/// codes under 100 collide with its own (docs/openim.md).
pub const MIN_REJECT_ERR_CODE: i32 = 100;

/// `nextCode` value that, with `actionCode` 0, makes OpenIM refuse the operation.
pub const NEXT_CODE_STOP: i32 = 1;

/// The five fields every OpenIM callback answer shares. All optional on input (absent or
/// `null` means 0 or `""`, as in Go); always written on output.
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommonAnswer {
    /// OpenIM's own flag: the gateway always sends OpenIM 0, whatever the reply says. Send 0.
    #[cfg_attr(test, schemars(transform = crate::schema::read_as_int32_or_null))]
    pub action_code: i32,
    /// The error code the end user sees when the operation is refused.
    #[cfg_attr(test, schemars(transform = crate::schema::read_as_int32_or_null))]
    pub err_code: i32,
    /// The message the end user sees when the operation is refused.
    #[cfg_attr(test, schemars(transform = crate::schema::read_as_string_or_null))]
    pub err_msg: String,
    /// Detail attached to the refusal error.
    #[cfg_attr(test, schemars(transform = crate::schema::read_as_string_or_null))]
    pub err_dlt: String,
    /// 1 refuses the operation, whatever `actionCode` says; anything else lets it through.
    #[cfg_attr(test, schemars(transform = crate::schema::read_as_int32_or_null))]
    pub next_code: i32,
}

impl CommonAnswer {
    /// Let the operation through unchanged.
    pub fn allow() -> Self {
        Self::default()
    }

    /// Refuse the operation with `err_code` (at least [`MIN_REJECT_ERR_CODE`]) and a message.
    pub fn reject(err_code: i32, err_msg: impl Into<String>) -> Self {
        Self {
            action_code: 0,
            err_code,
            err_msg: err_msg.into(),
            err_dlt: String::new(),
            next_code: NEXT_CODE_STOP,
        }
    }

    /// Whether OpenIM reads this answer as a refusal (its `Parse()` rule since v3.7).
    pub fn is_reject(&self) -> bool {
        self.action_code == 0 && self.next_code == NEXT_CODE_STOP
    }

    /// The answer as a JSON object, fields in OpenIM's order, ready for command fields to be
    /// added after them.
    pub fn into_object(self) -> Map<String, Value> {
        let mut object = Map::with_capacity(8);
        object.insert(fields::ACTION_CODE.to_owned(), self.action_code.into());
        object.insert(fields::ERR_CODE.to_owned(), self.err_code.into());
        object.insert(fields::ERR_MSG.to_owned(), self.err_msg.into());
        object.insert(fields::ERR_DLT.to_owned(), self.err_dlt.into());
        object.insert(fields::NEXT_CODE.to_owned(), self.next_code.into());
        object
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_serialises_all_five_fields() {
        assert_eq!(
            serde_json::to_string(&CommonAnswer::allow()).unwrap(),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }

    #[test]
    fn the_object_and_the_serde_form_agree() {
        for answer in [
            CommonAnswer::allow(),
            CommonAnswer::reject(5001, "no <way>"),
        ] {
            assert_eq!(
                serde_json::to_string(&answer.clone().into_object()).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
        assert!(fields::is_common("ERRCODE"));
        assert!(!fields::is_common("nickName"));
    }

    #[test]
    fn reject_is_action_zero_next_one() {
        let answer = CommonAnswer::reject(5001, "nickname not allowed");
        assert!(answer.is_reject());
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"actionCode":0,"errCode":5001,"errMsg":"nickname not allowed","errDlt":"","nextCode":1}"#
        );
    }

    #[test]
    fn absent_fields_read_as_zero_and_action_code_one_is_not_a_refusal() {
        let empty: CommonAnswer = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, CommonAnswer::allow());
        let ignored: CommonAnswer =
            serde_json::from_str(r#"{"actionCode":1,"nextCode":1}"#).unwrap();
        assert!(!ignored.is_reject());
    }
}
