//! A reply OpenIM could not use, or could be hurt by, never reaches OpenIM: the gateway
//! answers the default decision with `fallback:invalid_reply`. Each invalid case has a valid
//! neighbour answered with `worker`, so the test also fails if the gateway simply refuses
//! every reply.

use std::collections::HashMap;
use std::sync::Arc;

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::{
    set_member_body, UPDATE_USER_INFO_EX_NICKNAME_NULL, UPDATE_USER_INFO_EX_NICKNAME_SET,
};
use openim_gateway_tests::scripted::Reply;
use openim_gateway_tests::{
    allow, allow_with, reject, Behaviour, Case, Expect, HttpRequest, Stack,
};
use serde_json::{json, Value};

use crate::{default_allow, SET_MEMBER};

/// Which reply the worker sends for a request: keyed by the request's `userID`, else its
/// `sendID`, so one worker serves the whole table.
fn key_of(payload: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(payload).ok()?;
    ["userID", "sendID"]
        .iter()
        .find_map(|field| body.get(*field)?.as_str().map(str::to_owned))
}

/// One row: the request's key, the reply, and whether the gateway must accept it.
struct Row {
    name: &'static str,
    request: HttpRequest,
    key: String,
    reply: Reply,
    expect: Expect,
}

fn invalid() -> Expect {
    Expect::fallback(DecisionSource::InvalidReply, default_allow())
}

fn seed_row(name: &'static str, key: &str, reply: Reply, expect: Expect) -> Row {
    Row {
        name,
        request: HttpRequest::openim(
            "/callbackExample",
            SET_MEMBER,
            set_member_body(key, None, None, Some(20)),
        ),
        key: key.to_owned(),
        reply,
        expect,
    }
}

fn single_msg_body(send_id: &str) -> Vec<u8> {
    format!(
        "{{\"sendID\":\"{send_id}\",\"callbackCommand\":\"callbackBeforeSendSingleMsgCommand\",\"serverMsgID\":\"\",\"clientMsgID\":\"c1\",\"operationID\":\"op\",\"senderPlatformID\":2,\"senderNickname\":\"Alice\",\"sessionType\":1,\"msgFrom\":100,\"contentType\":101,\"status\":1,\"sendTime\":1732550400123,\"createTime\":1732550400120,\"content\":\"hi\",\"seq\":0,\"atUserList\":null,\"faceURL\":\"\",\"ex\":\"\",\"recvID\":\"9911842207\"}}\n"
    )
    .into_bytes()
}

/// `callbackBeforeMsgModifyCommand` for a message without `offlinePushInfo` (`null`).
fn msg_modify_body(send_id: &str) -> Vec<u8> {
    format!(
        "{{\"sendID\":\"{send_id}\",\"callbackCommand\":\"callbackBeforeMsgModifyCommand\",\"serverMsgID\":\"\",\"clientMsgID\":\"c2\",\"operationID\":\"op\",\"senderPlatformID\":2,\"senderNickname\":\"Alice\",\"sessionType\":1,\"msgFrom\":100,\"contentType\":101,\"status\":1,\"sendTime\":1732550400123,\"createTime\":1732550400120,\"content\":\"hi\",\"seq\":0,\"atUserList\":null,\"faceURL\":\"\",\"ex\":\"\",\"recvID\":\"9911842207\",\"offlinePushInfo\":null}}\n"
    )
    .into_bytes()
}

fn rows() -> Vec<Row> {
    let body = |text: &str| Reply::body(text.as_bytes().to_vec());
    let mut rows = vec![
        seed_row("not JSON", "case-not-json", body("hello"), invalid()),
        seed_row("empty reply", "case-empty", body(""), invalid()),
        seed_row(
            "a JSON array",
            "case-array",
            body(r#"[{"actionCode":0}]"#),
            invalid(),
        ),
        seed_row("a JSON string", "case-string", body(r#""ok""#), invalid()),
        seed_row("JSON null", "case-null", body("null"), invalid()),
        seed_row(
            "actionCode as a string",
            "case-action-string",
            body(r#"{"actionCode":"0","nextCode":0}"#),
            invalid(),
        ),
        seed_row(
            "nextCode not an integer",
            "case-next-fraction",
            body(r#"{"actionCode":0,"nextCode":0.5}"#),
            invalid(),
        ),
        seed_row(
            "errMsg as a number",
            "case-errmsg-number",
            body(r#"{"actionCode":0,"nextCode":0,"errMsg":5}"#),
            invalid(),
        ),
        seed_row(
            "errCode beyond int32",
            "case-errcode-overflow",
            body(r#"{"actionCode":0,"nextCode":1,"errCode":2147483648,"errMsg":"no"}"#),
            invalid(),
        ),
        seed_row(
            "errCode at int32::MAX is valid",
            "case-errcode-max",
            body(r#"{"actionCode":0,"nextCode":1,"errCode":2147483647,"errMsg":"no"}"#),
            Expect::worker(reject(2_147_483_647, "no")),
        ),
        seed_row(
            "Nats-Service-Error header",
            "case-service-error",
            Reply::with_headers(
                &[
                    ("Nats-Service-Error", "boom"),
                    ("Nats-Service-Error-Code", "500"),
                ],
                allow().to_string(),
            ),
            invalid(),
        ),
        seed_row(
            "reject with errCode 0",
            "case-reject-0",
            body(r#"{"actionCode":0,"nextCode":1,"errCode":0,"errMsg":"no"}"#),
            invalid(),
        ),
        seed_row(
            "reject without errCode",
            "case-reject-absent",
            body(r#"{"actionCode":0,"nextCode":1,"errMsg":"no"}"#),
            invalid(),
        ),
        seed_row(
            "reject with errCode 99",
            "case-reject-99",
            body(r#"{"actionCode":0,"nextCode":1,"errCode":99,"errMsg":"no"}"#),
            invalid(),
        ),
        seed_row(
            "reject with errCode 100 is valid",
            "case-reject-100",
            body(r#"{"actionCode":0,"nextCode":1,"errCode":100,"errMsg":"no"}"#),
            Expect::worker(reject(100, "no")),
        ),
        // OpenIM ignores `actionCode 1, nextCode 1` (users write it meaning "refuse", issues
        // #3049/#2166); the gateway reads nextCode 1 as the refusal the worker meant and sends
        // OpenIM the form it obeys, so the errCode rule applies to it as well.
        seed_row(
            "nextCode 1 with actionCode 1 becomes a real refusal",
            "case-action-1",
            body(r#"{"actionCode":1,"nextCode":1,"errCode":5001,"errMsg":"no"}"#),
            Expect::worker(reject(5001, "no")),
        ),
        seed_row(
            "nextCode 1 with actionCode 1 and errCode 0",
            "case-action-1-code-0",
            body(r#"{"actionCode":1,"nextCode":1,"errCode":0}"#),
            invalid(),
        ),
        seed_row(
            "an empty object allows",
            "case-empty-object",
            body("{}"),
            Expect::worker(allow()),
        ),
        seed_row(
            "changes groupID",
            "case-group-id",
            body(r#"{"actionCode":0,"nextCode":0,"groupID":"6666666666"}"#),
            invalid(),
        ),
        seed_row(
            "changes userID",
            "case-user-id",
            body(r#"{"actionCode":0,"nextCode":0,"userID":"someone-else"}"#),
            invalid(),
        ),
        seed_row(
            "echoes groupID and userID unchanged",
            "case-echo-ids",
            body(
                r#"{"actionCode":0,"nextCode":0,"groupID":"3316849202","userID":"case-echo-ids"}"#,
            ),
            Expect::worker_fields(allow()),
        ),
        // Go's encoding/json matches keys case-insensitively: OpenIM reads these as
        // groupID, nextCode and errCode.
        seed_row(
            "changes groupID through a key in another case",
            "case-group-id-case",
            body(r#"{"actionCode":0,"nextCode":0,"GroupId":"6666666666"}"#),
            invalid(),
        ),
        seed_row(
            "refuses with errCode 0 through keys in another case",
            "case-reject-0-case",
            body(r#"{"actionCode":0,"NEXTCODE":1,"errcode":0,"errMsg":"no"}"#),
            invalid(),
        ),
        seed_row(
            "refuses through keys in another case with a valid errCode",
            "case-reject-case",
            body(r#"{"ActionCode":0,"NextCode":1,"ErrCode":5001,"ErrMsg":"no"}"#),
            Expect::worker(reject(5001, "no")),
        ),
        seed_row(
            "roleLevel as a string",
            "case-role-string",
            body(r#"{"actionCode":0,"nextCode":0,"roleLevel":"60"}"#),
            invalid(),
        ),
        seed_row(
            "nickName as a number",
            "case-nickname-number",
            body(r#"{"actionCode":0,"nextCode":0,"nickName":5}"#),
            invalid(),
        ),
        // Go decodes every occurrence of a key: one of the wrong type fails the decode
        // even when a later one replaces it; when all decode, the last one wins.
        seed_row(
            "the same key twice, the first as a number",
            "case-repeated-wrong",
            body(r#"{"actionCode":0,"nextCode":0,"nickName":5,"nickName":"Alice"}"#),
            invalid(),
        ),
        seed_row(
            "errCode twice in two spellings, the first as a string",
            "case-repeated-common",
            body(r#"{"actionCode":0,"nextCode":0,"errCode":"0","ErrCode":0}"#),
            invalid(),
        ),
        seed_row(
            "the same key in two spellings: the last one wins",
            "case-repeated-fine",
            body(r#"{"actionCode":0,"nextCode":0,"nickName":"Bob","NickName":"Alice"}"#),
            Expect::worker_fields(json!({"nickName": "Alice"})),
        ),
        // Go's strconv.ParseInt reads -0 as 0.
        seed_row(
            "roleLevel -0 is 0",
            "case-role-minus-zero",
            body(r#"{"actionCode":0,"nextCode":0,"roleLevel":-0}"#),
            Expect::worker_fields(json!({"roleLevel": 0})),
        ),
    ];
    rows.push(Row {
        name: "changes sendID",
        request: HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeSendSingleMsgCommand",
            single_msg_body("case-send-id"),
        ),
        key: "case-send-id".to_owned(),
        reply: body(r#"{"actionCode":0,"nextCode":0,"sendID":"someone-else"}"#),
        expect: invalid(),
    });
    rows.push(Row {
        name: "changes recvID",
        request: HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeSendSingleMsgCommand",
            single_msg_body("case-recv-id"),
        ),
        key: "case-recv-id".to_owned(),
        reply: body(r#"{"actionCode":0,"nextCode":0,"recvID":"someone-else"}"#),
        expect: invalid(),
    });
    rows.push(Row {
        name: "MsgModify: sets offlinePushInfo the message has null (OpenIM would crash)",
        request: HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeMsgModifyCommand",
            msg_modify_body("case-msg-modify"),
        ),
        key: "case-msg-modify".to_owned(),
        reply: body(r#"{"actionCode":0,"nextCode":0,"offlinePushInfo":{"title":"x","desc":"y"}}"#),
        expect: invalid(),
    });
    rows.push(Row {
        name: "MsgModify: changing content is fine",
        request: HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeMsgModifyCommand",
            msg_modify_body("case-msg-content"),
        ),
        key: "case-msg-content".to_owned(),
        reply: body(r#"{"actionCode":0,"nextCode":0,"content":"{\"content\":\"hi!\"}"}"#),
        expect: Expect::worker_fields(json!({"content": "{\"content\":\"hi!\"}"})),
    });
    rows.push(Row {
        name: "UpdateUserInfoEx: sets nickName the request has null (OpenIM would crash)",
        request: HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeUpdateUserInfoExCommand",
            UPDATE_USER_INFO_EX_NICKNAME_NULL,
        ),
        key: "5427181639".to_owned(),
        reply: body(r#"{"actionCode":0,"nextCode":0,"nickName":"Mallory"}"#),
        expect: invalid(),
    });
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_replies_fall_back_to_the_default_and_valid_neighbours_do_not() {
    let stack = Stack::start(&[]).await;
    let rows = rows();
    let replies: Arc<HashMap<String, Reply>> = Arc::new(
        rows.iter()
            .map(|row| (row.key.clone(), row.reply.clone()))
            .collect(),
    );
    assert_eq!(replies.len(), rows.len(), "every row needs its own key");
    let _worker = stack
        .scripted(Behaviour::respond(move |payload| {
            key_of(payload).and_then(|key| replies.get(&key).cloned())
        }))
        .await;
    let cases: Vec<Case> = rows
        .into_iter()
        .map(|row| Case::new(row.name, row.request, row.expect))
        .collect();
    stack.check_all(&cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_user_info_ex_may_set_a_field_the_request_has() {
    // The valid neighbour of the UpdateUserInfoEx row above, on its own worker: the same
    // reply is fine when the request carries nickName.
    let stack = Stack::start(&[]).await;
    let _worker = stack
        .scripted(Behaviour::reply(
            r#"{"actionCode":0,"nextCode":0,"nickName":"Mallory"}"#,
        ))
        .await;
    stack
        .check(
            &HttpRequest::openim(
                "/callbackExample",
                "callbackBeforeUpdateUserInfoExCommand",
                UPDATE_USER_INFO_EX_NICKNAME_SET,
            ),
            &Expect::worker(allow_with(&json!({"nickName": "Mallory"}))),
        )
        .await;
}
