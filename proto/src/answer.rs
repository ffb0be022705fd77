//! The common answer OpenIM parses from every callback (`CommonCallbackResp`).
//!
//! OpenIM refuses an operation only when `actionCode == 0 && nextCode == 1`; any other valid
//! JSON lets it through. A refusal's `errCode` reaches the end user, so it must be at least
//! 100 (OpenIM turns 0 into an internal error or a silent success; its docs suggest
//! 5000..=9999).

use serde::{Deserialize, Serialize};

/// The smallest `errCode` a refusal may carry (OPENIM.md §4).
pub const MIN_REJECT_ERR_CODE: i32 = 100;

/// `nextCode` value that, with `actionCode` 0, makes OpenIM refuse the operation.
pub const NEXT_CODE_STOP: i32 = 1;

/// The five fields every OpenIM callback answer shares. All optional on input (absent means
/// 0 or `""`, as in Go); always written on output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommonAnswer {
    /// 0 means "OpenIM should read this answer"; anything else makes OpenIM ignore it.
    pub action_code: i32,
    /// The error code the end user sees when the operation is refused.
    pub err_code: i32,
    /// The message the end user sees when the operation is refused.
    pub err_msg: String,
    /// Detail attached to the refusal error.
    pub err_dlt: String,
    /// 1 (with `actionCode` 0) refuses the operation; 0 lets it through.
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
