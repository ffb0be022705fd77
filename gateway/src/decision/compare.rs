//! How a worker's judged answer compares with the default answer: for shadow mode, which
//! only counts the comparison. Pure; no I/O.

use openim_gateway_proto::{answer::fields::is_common, Command};

use super::{default_answer, judge::refuses, Body, DefaultDecision};

/// What a judged answer would have done to the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Lets it through as the request has it: the answer's command fields are those of the
    /// default allow (none, or the request's own values where OpenIM always writes them back).
    Allows,
    /// Lets it through with changes: a command field holds a value that is neither the
    /// default allow's nor the request's own, so OpenIM would have stored or sent something
    /// else than the user asked for.
    Modifies,
    /// Refuses it.
    Refuses,
}

/// The effect of `answer`, a worker's reply judged for `command` and `request`. The five
/// common fields are not compared: an allow's `errCode`, `errMsg` and `errDlt` change nothing
/// OpenIM does. A field set to the request's own value (the same key, the same value) changes
/// nothing either.
pub fn effect(command: &Command, request: &Body, answer: &Body) -> Effect {
    if refuses(answer) {
        return Effect::Refuses;
    }
    let allow = default_answer(&DefaultDecision::Allow, Some(command), Some(request));
    let changed = answer
        .iter()
        .filter(|(key, _)| !is_common(key))
        .any(|(key, value)| allow.get(key) != Some(value) && request.get(key) != Some(value));
    let dropped = allow
        .keys()
        .filter(|key| !is_common(key))
        .any(|key| !answer.contains_key(key));
    if changed || dropped {
        Effect::Modifies
    } else {
        Effect::Allows
    }
}

#[cfg(test)]
mod tests {
    use openim_gateway_proto::catalog;
    use serde_json::{json, Value};

    use super::*;
    use crate::decision::judge_reply;

    fn object(value: Value) -> Body {
        match value {
            Value::Object(map) => map,
            _ => Body::new(),
        }
    }

    fn effect_of(name: &str, request: &Value, reply: &Value) -> Effect {
        let command = Command::lookup(name).unwrap();
        let request = object(request.clone());
        let answer = judge_reply(command, &request, None, reply.to_string().as_bytes()).unwrap();
        effect(command, &request, &answer)
    }

    #[test]
    fn an_allow_with_a_changed_field_modifies_and_one_without_allows() {
        let member = json!({
            "callbackCommand": catalog::BEFORE_SET_GROUP_MEMBER_INFO, "groupID": "g1",
            "userID": "u1", "nickName": "Alice", "faceURL": null, "roleLevel": null, "ex": null
        });
        let seed = catalog::BEFORE_SET_GROUP_MEMBER_INFO;
        assert_eq!(
            effect_of(seed, &member, &json!({"actionCode": 0, "nextCode": 0})),
            Effect::Allows
        );
        // An allow's own code and message change nothing OpenIM does.
        assert_eq!(
            effect_of(
                seed,
                &member,
                &json!({"actionCode": 0, "nextCode": 0, "errCode": 0, "errMsg": "fine"})
            ),
            Effect::Allows
        );
        assert_eq!(
            effect_of(
                seed,
                &member,
                &json!({"actionCode": 0, "nextCode": 0, "nickName": "Bob"})
            ),
            Effect::Modifies
        );
        // The request's own value again: no change.
        assert_eq!(
            effect_of(
                seed,
                &member,
                &json!({"actionCode": 0, "nextCode": 0, "nickName": "Alice"})
            ),
            Effect::Allows
        );
        assert_eq!(
            effect_of(
                seed,
                &member,
                &json!({"actionCode": 0, "nextCode": 1, "errCode": 5001, "errMsg": "no"})
            ),
            Effect::Refuses
        );
    }

    #[test]
    fn echoing_the_request_where_openim_writes_it_back_is_no_change() {
        // SetGroupInfo's answer is always written back: the default allow echoes the
        // request, so a worker that echoes it too changes nothing.
        let command = catalog::COMMANDS
            .iter()
            .find(|command| command.echoes_request())
            .unwrap();
        let request =
            json!({"callbackCommand": command.name, "groupID": "g1", "groupName": "Team"});
        let allow = Value::Object(default_answer(
            &DefaultDecision::Allow,
            Some(command),
            Some(&object(request.clone())),
        ));
        assert_eq!(effect_of(command.name, &request, &allow), Effect::Allows);
    }
}
