//! A worker's reply judged: the answer for OpenIM, or why it cannot be forwarded. Reads the
//! common fields and decides allow or refuse; [`super::fields`] decodes the reply as OpenIM's
//! Go code would and applies each command field's rule.

use openim_gateway_proto::{
    answer::{fields as answer_fields, CommonAnswer, NEXT_CODE_STOP},
    Command,
};

use super::{fields, Body};
use crate::outcome::InvalidReply;

/// Whether a judged answer refuses the operation: judged answers say so in `nextCode` alone
/// (an allow is `nextCode 0`, a refusal `nextCode 1`, both with `actionCode 0`).
pub fn refuses(answer: &Body) -> bool {
    answer
        .get(answer_fields::NEXT_CODE)
        .and_then(serde_json::Value::as_i64)
        == Some(i64::from(NEXT_CODE_STOP))
}

/// Judges a worker's reply: the answer for OpenIM, or why it cannot be forwarded. A reply
/// that carries the NATS service API's error header (`service_error`) is the worker saying
/// it failed, whatever its body.
pub fn judge_reply(
    command: &Command,
    request: &Body,
    service_error: Option<&str>,
    reply: &[u8],
) -> Result<Body, InvalidReply> {
    if let Some(error) = service_error {
        return Err(InvalidReply::ServiceError(error.to_owned()));
    }
    normalise_reply(command, request, reply)
}

/// Turns a worker's reply into the answer for OpenIM, or says why it cannot be forwarded.
///
/// Allow comes out as `actionCode 0, nextCode 0` with the worker's non-null fields; reject as
/// `actionCode 0, nextCode 1` with the common fields and, where OpenIM overwrites some of
/// its request whatever the answer says, the request's own values there. A reply with `nextCode 1` is a
/// refusal whatever its `actionCode`: OpenIM would ignore `actionCode 1, nextCode 1`, but the
/// worker's intent is plain, and letting an operation through that a worker refused is the
/// worse mistake.
pub fn normalise_reply(
    command: &Command,
    request: &Body,
    reply: &[u8],
) -> Result<Body, InvalidReply> {
    let reply = fields::decode(command, request, reply)?;

    if reply.refuses() {
        if !reply.err_code_refuses() {
            return Err(InvalidReply::RejectCodeTooSmall(i64::from(reply.err_code)));
        }
        let mut refusal = CommonAnswer::reject(reply.err_code, reply.err_msg);
        refusal.err_dlt = reply.err_dlt;
        // As in `default_answer`: v3.6 applies a refusal's fields.
        let mut refusal = refusal.into_object();
        fields::echo_always_applied(command, request, &mut refusal);
        return Ok(refusal);
    }

    let allow = CommonAnswer {
        err_code: reply.err_code,
        err_msg: reply.err_msg,
        err_dlt: reply.err_dlt,
        ..CommonAnswer::allow()
    };
    let mut answer = allow.into_object();
    fields::apply(command, request, reply.fields, &mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{default_answer, DefaultDecision};
    use serde_json::{json, Value};

    #[test]
    fn a_judged_answer_says_whether_it_refuses() {
        let command =
            Command::lookup(openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        let request = Body::new();
        let judge = |reply: &str| judge_reply(command, &request, None, reply.as_bytes()).unwrap();
        assert!(!refuses(&judge(r#"{"actionCode":0,"nextCode":0}"#)));
        assert!(refuses(&judge(
            r#"{"actionCode":0,"nextCode":1,"errCode":5001,"errMsg":"no"}"#
        )));
        // A refusal whatever its actionCode, as the judge reads it.
        assert!(refuses(&judge(
            r#"{"actionCode":1,"nextCode":1,"errCode":5001,"errMsg":"no"}"#
        )));
        let reject = DefaultDecision::Reject {
            err_code: 5000,
            err_msg: "x".to_owned(),
        };
        assert!(refuses(&default_answer(&reject, None, None)));
        assert!(!refuses(&default_answer(
            &DefaultDecision::Allow,
            None,
            None
        )));
    }

    const SEED: &str = openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;

    fn command(name: &str) -> &'static Command {
        Command::lookup(name).unwrap()
    }

    fn object(value: Value) -> Body {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn member_request() -> Body {
        object(json!({
            "callbackCommand": SEED, "groupID": "g1", "userID": "u1",
            "nickName": "  Alice  ", "faceURL": null, "roleLevel": null, "ex": null
        }))
    }

    fn normalise(name: &str, request: &Body, reply: &Value) -> Result<Value, InvalidReply> {
        normalise_reply(command(name), request, reply.to_string().as_bytes()).map(Value::Object)
    }

    #[test]
    fn default_allow_is_the_five_common_fields() {
        let answer = default_answer(
            &DefaultDecision::Allow,
            Some(command(SEED)),
            Some(&member_request()),
        );
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }

    #[test]
    fn default_reject_carries_the_configured_code() {
        let decision = DefaultDecision::Reject {
            err_code: 5099,
            err_msg: "later".to_owned(),
        };
        let answer = default_answer(
            &decision,
            Some(command("callbackBeforeSetGroupInfoCommand")),
            None,
        );
        assert_eq!(
            Value::Object(answer),
            json!({"actionCode":0,"errCode":5099,"errMsg":"later","errDlt":"","nextCode":1})
        );
    }

    #[test]
    fn default_allow_for_set_group_info_echoes_the_four_overwritten_fields() {
        let request = object(json!({
            "callbackCommand": "callbackBeforeSetGroupInfoCommand", "operationID": "",
            "groupID": "g1", "groupName": "Rust <fans>", "notification": "", "introduction": "",
            "faceURL": "", "ex": "", "needVerification": 0, "lookMemberInfo": 0, "applyMemberFriend": 0
        }));
        let answer = default_answer(
            &DefaultDecision::Allow,
            Some(command("callbackBeforeSetGroupInfoCommand")),
            Some(&request),
        );
        assert_eq!(
            Value::Object(answer),
            json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,
                   "groupID":"g1","groupName":"Rust <fans>","faceURL":"","introduction":""})
        );
    }

    #[test]
    fn default_allow_for_set_group_info_ex_echoes_all_eight_nulls_included() {
        let request = object(json!({
            "callbackCommand": "callbackBeforeSetGroupInfoExCommand", "groupID": "g1",
            "groupName": "new", "notification": null, "introduction": null, "faceURL": null,
            "ex": null, "needVerification": 1, "lookMemberInfo": null, "applyMemberFriend": null
        }));
        let answer = default_answer(
            &DefaultDecision::Allow,
            Some(command("callbackBeforeSetGroupInfoExCommand")),
            Some(&request),
        );
        assert_eq!(answer.len(), 5 + 8);
        assert_eq!(answer["groupName"], json!("new"));
        assert_eq!(answer["needVerification"], json!(1));
        assert_eq!(answer["ex"], Value::Null);
        assert!(!answer.contains_key("notification"));
    }

    #[test]
    fn allow_with_modification_is_forwarded() {
        let answer = normalise(
            SEED,
            &member_request(),
            &json!({"actionCode":0,"nextCode":0,"nickName":"Alice"}),
        )
        .unwrap();
        assert_eq!(
            answer,
            json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Alice"})
        );
    }

    #[test]
    fn nulls_in_a_reply_mean_keep_and_are_dropped() {
        let answer =
            normalise(SEED, &member_request(), &json!({"nickName":null,"ex":null})).unwrap();
        assert_eq!(
            answer,
            json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0})
        );
    }

    #[test]
    fn reject_is_forwarded_as_action_zero_next_one_without_fields() {
        let answer = normalise(
            SEED,
            &member_request(),
            &json!({"actionCode":0,"nextCode":1,"errCode":5001,"errMsg":"banned","nickName":"x"}),
        )
        .unwrap();
        assert_eq!(
            answer,
            json!({"actionCode":0,"errCode":5001,"errMsg":"banned","errDlt":"","nextCode":1})
        );
        let mistaken = normalise(
            SEED,
            &member_request(),
            &json!({"actionCode":1,"nextCode":1,"errCode":5001}),
        )
        .unwrap();
        assert_eq!(mistaken["actionCode"], json!(0));
        assert_eq!(mistaken["nextCode"], json!(1));
    }

    #[test]
    fn invalid_replies_are_named() {
        let request = member_request();
        let cases: Vec<(&[u8], InvalidReply)> = vec![
            (b"not json", InvalidReply::NotJson(String::new())),
            (b"", InvalidReply::NotJson(String::new())),
            (b"[1]", InvalidReply::NotObject),
            (b"null", InvalidReply::NotObject),
            (
                br#"{"actionCode":"0"}"#,
                InvalidReply::WrongType {
                    field: "actionCode".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"errCode":2147483648}"#,
                InvalidReply::WrongType {
                    field: "errCode".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"nextCode":1.0}"#,
                InvalidReply::WrongType {
                    field: "nextCode".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"errMsg":5}"#,
                InvalidReply::WrongType {
                    field: "errMsg".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"roleLevel":"60"}"#,
                InvalidReply::WrongType {
                    field: "roleLevel".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"nickName":1}"#,
                InvalidReply::WrongType {
                    field: "nickName".to_owned(),
                    expected: "",
                },
            ),
            (
                br#"{"nextCode":1,"errCode":0}"#,
                InvalidReply::RejectCodeTooSmall(0),
            ),
            (
                br#"{"nextCode":1,"errCode":99}"#,
                InvalidReply::RejectCodeTooSmall(99),
            ),
            (br#"{"nextCode":1}"#, InvalidReply::RejectCodeTooSmall(0)),
            (
                br#"{"groupID":"g2"}"#,
                InvalidReply::IdentityChanged("groupID".to_owned()),
            ),
            (
                br#"{"userid":"u2"}"#,
                InvalidReply::IdentityChanged("userid".to_owned()),
            ),
            (
                br#"{"sendID":"s"}"#,
                InvalidReply::IdentityChanged("sendID".to_owned()),
            ),
            (
                br#"{"nickName":5,"nickName":"a"}"#,
                InvalidReply::WrongType {
                    field: "nickName".to_owned(),
                    expected: "",
                },
            ),
        ];
        for (reply, expected) in cases {
            let error = normalise_reply(command(SEED), &request, reply).unwrap_err();
            assert_eq!(
                std::mem::discriminant(&error),
                std::mem::discriminant(&expected),
                "{}: {error}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn a_repeated_key_is_read_as_go_reads_it() {
        let request = member_request();
        let normalise = |reply: &str| normalise_reply(command(SEED), &request, reply.as_bytes());
        // Go keeps the first type error and fails the decode, whatever comes after it, at
        // every depth and for the common fields too.
        for (reply, field) in [
            (r#"{"nickName":5,"nickName":"Alice"}"#, "nickName"),
            (r#"{"NickName":5,"nickName":"Alice"}"#, "NickName"),
            (r#"{"nickName":"Alice","NICKNAME":[]}"#, "NICKNAME"),
            (r#"{"errCode":"1","errCode":0}"#, "errCode"),
            (
                r#"{"nextCode":1.0,"NextCode":1,"errCode":5000}"#,
                "nextCode",
            ),
        ] {
            match normalise(reply) {
                Err(InvalidReply::WrongType { field: named, .. }) => assert_eq!(named, field),
                other => panic!("{reply}: {other:?}"),
            }
        }
        let modify = "callbackBeforeMsgModifyCommand";
        let modify_request = object(
            json!({"callbackCommand":modify,"sendID":"s","content":"{}","offlinePushInfo":null}),
        );
        for reply in [
            r#"{"options":{"history":1},"options":{"history":true}}"#,
            r#"{"options":{"history":1,"history":true}}"#,
            r#"{"atUserIDList":[5],"atUserIDList":["u"]}"#,
        ] {
            assert!(
                matches!(
                    normalise_reply(command(modify), &modify_request, reply.as_bytes()),
                    Err(InvalidReply::WrongType { .. })
                ),
                "{reply}"
            );
        }
        // Values that all decode: the last one in the text wins, whatever its spelling.
        for (reply, nickname) in [
            (r#"{"nickName":"a","nickName":"b"}"#, "b"),
            (r#"{"NickName":"a","nickName":"b","NickName":"c"}"#, "c"),
            (r#"{"nickName":"a","NICKNAME":"b"}"#, "b"),
        ] {
            assert_eq!(
                normalise(reply).unwrap()["nickName"],
                json!(nickname),
                "{reply}"
            );
        }
        assert!(!normalise(r#"{"nickName":"a","nickName":null}"#)
            .unwrap()
            .contains_key("nickName"));
        // `errCode` is a plain int32: a later `null` leaves it as it was.
        let refusal = normalise(r#"{"nextCode":1,"errCode":5001,"errCode":null}"#).unwrap();
        assert_eq!(refusal["errCode"], json!(5001));
        // An identity key the answer struct lacks is checked at each occurrence.
        assert_eq!(
            normalise(r#"{"groupID":"g2","groupID":"g1"}"#).unwrap_err(),
            InvalidReply::IdentityChanged("groupID".to_owned())
        );
    }

    #[test]
    fn minus_zero_is_an_integer_zero_as_for_go() {
        let request = member_request();
        let answer =
            normalise_reply(command(SEED), &request, br#"{"roleLevel":-0,"errCode":-0}"#).unwrap();
        assert_eq!(answer["roleLevel"], json!(0));
        assert_eq!(answer["errCode"], json!(0));
        for reply in [&br#"{"roleLevel":-0.0}"#[..], br#"{"roleLevel":0e0}"#] {
            assert!(matches!(
                normalise_reply(command(SEED), &request, reply),
                Err(InvalidReply::WrongType { .. })
            ));
        }
    }

    #[test]
    fn a_service_error_is_invalid_whatever_the_body() {
        let reply = br#"{"actionCode":0,"nextCode":0}"#;
        assert_eq!(
            judge_reply(command(SEED), &member_request(), Some("500 boom"), reply).unwrap_err(),
            InvalidReply::ServiceError("500 boom".to_owned())
        );
        assert!(judge_reply(command(SEED), &member_request(), None, reply).is_ok());
    }

    #[test]
    fn echoing_identity_fields_unchanged_is_fine() {
        // Not in the seed's answer struct: OpenIM ignores them, so they are dropped.
        let answer = normalise(
            SEED,
            &member_request(),
            &json!({"groupID":"g1","userID":"u1"}),
        )
        .unwrap();
        assert_eq!(
            answer,
            json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0})
        );
    }

    #[test]
    fn setting_a_field_openim_dereferences_through_a_null_pointer_is_invalid() {
        let request = object(json!({
            "callbackCommand": "callbackBeforeUpdateUserInfoExCommand", "userID": "u1",
            "nickName": null, "faceURL": "https://x/y.png", "ex": null
        }));
        let name = "callbackBeforeUpdateUserInfoExCommand";
        assert_eq!(
            normalise(name, &request, &json!({"nickName":"Bob"})).unwrap_err(),
            InvalidReply::SetsNullPointerField("nickName".to_owned())
        );
        assert!(normalise(name, &request, &json!({"faceURL":"https://x/z.png"})).is_ok());
        let modify = object(
            json!({"callbackCommand":"callbackBeforeMsgModifyCommand","sendID":"s","content":"{}"}),
        );
        assert!(normalise(
            "callbackBeforeMsgModifyCommand",
            &modify,
            &json!({"offlinePushInfo":{"title":"t"}})
        )
        .is_err());
        assert!(normalise(
            "callbackBeforeMsgModifyCommand",
            &modify,
            &json!({"content":"{\"a\":1}"})
        )
        .is_ok());
    }

    #[test]
    fn set_group_info_reply_is_filled_from_the_request() {
        let request = object(json!({
            "callbackCommand": "callbackBeforeSetGroupInfoCommand", "groupID": "g1",
            "groupName": "Rust", "notification": "", "introduction": "hi", "faceURL": "",
            "ex": "", "needVerification": 0, "lookMemberInfo": 0, "applyMemberFriend": 0
        }));
        let answer = normalise(
            "callbackBeforeSetGroupInfoCommand",
            &request,
            &json!({"introduction":"hello","groupName":null}),
        )
        .unwrap();
        assert_eq!(answer["groupID"], json!("g1"));
        assert_eq!(answer["groupName"], json!("Rust"));
        assert_eq!(answer["introduction"], json!("hello"));
        assert_eq!(answer["faceURL"], json!(""));
        assert!(!answer.as_object().unwrap().contains_key("ex"));
    }

    #[test]
    fn generic_commands_keep_the_request_types() {
        let request = object(
            json!({"callbackCommand":"callbackBeforeSetFriendRemarkCommand","ownerUserID":"o","friendUserID":"f","remark":"r"}),
        );
        let name = "callbackBeforeSetFriendRemarkCommand";
        assert!(normalise(name, &request, &json!({"remark":"new"})).is_ok());
        assert!(matches!(
            normalise(name, &request, &json!({"remark":5})),
            Err(InvalidReply::WrongType { .. })
        ));
    }
}
