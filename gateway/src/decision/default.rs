//! The default answer: what the gateway answers when no valid worker decision arrives in
//! time.

use openim_gateway_proto::{answer::CommonAnswer, Command};

use super::{fields, Body};

/// What the gateway answers when no valid worker decision arrives in time
/// (`GATEWAY_DEFAULT_DECISION`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultDecision {
    /// Let the operation through unchanged (fail open).
    Allow,
    /// Refuse it with this code and message (fail closed).
    Reject {
        /// 5000..=9999.
        err_code: i32,
        /// Non-empty.
        err_msg: String,
    },
}

impl DefaultDecision {
    /// The common answer of this decision.
    pub fn common_answer(&self) -> CommonAnswer {
        match self {
            Self::Allow => CommonAnswer::allow(),
            Self::Reject { err_code, err_msg } => CommonAnswer::reject(*err_code, err_msg.clone()),
        }
    }
}

/// The default answer for `command`: the configured decision, plus, for the commands whose
/// answer OpenIM always writes back, the request's own values (so "allow" lets the change
/// through unchanged). A refusal carries them too: OpenIM v3.6 only logs a refusal and then
/// applies the answer, so without them it would store `""` over the user's data; the other
/// versions ignore an answer's fields when they refuse. `request` is `None` when the body
/// could not be parsed.
pub fn default_answer(
    decision: &DefaultDecision,
    command: Option<&Command>,
    request: Option<&Body>,
) -> Body {
    let mut answer = decision.common_answer().into_object();
    if let (Some(command), Some(request)) = (command, request) {
        fields::echo_always_applied(command, request, &mut answer);
    }
    answer
}
