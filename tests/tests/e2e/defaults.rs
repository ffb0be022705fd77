//! The SetGroupInfo hazard (docs/openim.md): OpenIM overwrites `groupID`, `groupName`,
//! `faceURL` and `introduction` with whatever the answer holds, `""` when absent. So the
//! default "allow" must echo them from the request, and a worker reply that leaves one out
//! gets it filled in; the flags a plain echo would clear are never sent.

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::{SET_GROUP_INFO, SET_GROUP_INFO_EX};
use openim_gateway_tests::{allow_with, Behaviour, Expect, HttpRequest, Reply, Stack};
use serde_json::{json, Value};

use crate::{AT_ONCE, LATE_SLACK, SHORT_BUDGET, SHORT_BUDGET_SETTINGS};

const SET_GROUP_INFO_COMMAND: &str = "callbackBeforeSetGroupInfoCommand";
const SET_GROUP_INFO_EX_COMMAND: &str = "callbackBeforeSetGroupInfoExCommand";

/// The fields a SetGroupInfo answer must never carry unless a worker sets them: echoing the
/// request's `""`/`0` would clear `ex` and reset the flags.
const NEVER_ECHOED: [&str; 5] = [
    "ex",
    "needVerification",
    "lookMemberInfo",
    "applyMemberFriend",
    "notification",
];

/// The default allow for the SetGroupInfo fixture: the five fields plus its four values.
fn set_group_info_default() -> Value {
    allow_with(&json!({
        "groupID": "3316849202",
        "groupName": "Rust <fans> & friends",
        "faceURL": "",
        "introduction": "",
    }))
}

fn set_group_info() -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_GROUP_INFO_COMMAND, SET_GROUP_INFO)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_allow_for_set_group_info_echoes_the_overwritten_fields() {
    let stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    stack
        .check(
            &set_group_info(),
            &Expect::fallback(DecisionSource::NoResponders, set_group_info_default())
                .without_fields(&NEVER_ECHOED)
                .within(AT_ONCE),
        )
        .await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    stack
        .check(
            &set_group_info(),
            &Expect::fallback(DecisionSource::Timeout, set_group_info_default())
                .without_fields(&NEVER_ECHOED)
                .within(SHORT_BUDGET + LATE_SLACK),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_allow_for_set_group_info_ex_echoes_all_eight_fields_nulls_included() {
    let stack = Stack::start(&[]).await;
    let expected = allow_with(&json!({
        "groupID": "3316849202",
        "groupName": "Rust <fans>",
        "faceURL": "https://cdn.example.com/g.png",
        "introduction": null,
        "ex": null,
        "needVerification": null,
        "lookMemberInfo": 1,
        "applyMemberFriend": null,
    }));
    stack
        .check(
            &HttpRequest::openim("", SET_GROUP_INFO_EX_COMMAND, SET_GROUP_INFO_EX),
            &Expect::fallback(DecisionSource::NoResponders, expected)
                .without_fields(&["notification"]),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reply_to_set_group_info_ex_is_completed_from_the_request() {
    let stack = Stack::start(&[]).await;
    let _worker = stack
        .scripted(Behaviour::reply(
            r#"{"actionCode":0,"nextCode":0,"groupName":"Renamed","needVerification":2}"#,
        ))
        .await;
    stack
        .check(
            &HttpRequest::openim("", SET_GROUP_INFO_EX_COMMAND, SET_GROUP_INFO_EX),
            &Expect::worker(allow_with(&json!({
                "groupID": "3316849202",
                "groupName": "Renamed",
                "faceURL": "https://cdn.example.com/g.png",
                "introduction": null,
                "ex": null,
                "needVerification": 2,
                "lookMemberInfo": 1,
                "applyMemberFriend": null,
            }))),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reply_to_set_group_info_is_completed_from_the_request() {
    let stack = Stack::start(&[]).await;
    // Keyed by the request's groupName, so one worker serves both cases.
    let _worker = stack
        .scripted(Behaviour::respond(|payload| {
            let body: Value = serde_json::from_slice(payload).ok()?;
            let reply = if body["groupName"] == "Rust <fans> & friends" {
                r#"{"actionCode":0,"nextCode":0,"faceURL":"https://cdn.example.com/new.png"}"#
            } else {
                // A value replaces, even "": the worker clears the introduction on purpose.
                r#"{"actionCode":0,"nextCode":0,"groupName":"Renamed","introduction":""}"#
            };
            Some(Reply::body(reply))
        }))
        .await;
    stack
        .check(
            &set_group_info(),
            &Expect::worker(allow_with(&json!({
                "groupID": "3316849202",
                "groupName": "Rust <fans> & friends",
                "faceURL": "https://cdn.example.com/new.png",
                "introduction": "",
            })))
            .without_fields(&NEVER_ECHOED),
        )
        .await;
    let second = br#"{"callbackCommand":"callbackBeforeSetGroupInfoCommand","operationID":"","groupID":"3316849202","groupName":"Old name","notification":"","introduction":"Hello","faceURL":"https://cdn.example.com/g.png","ex":"","needVerification":0,"lookMemberInfo":0,"applyMemberFriend":0}
"#;
    stack
        .check(
            &HttpRequest::openim("", SET_GROUP_INFO_COMMAND, second.to_vec()),
            &Expect::worker(allow_with(&json!({
                "groupID": "3316849202",
                "groupName": "Renamed",
                "faceURL": "https://cdn.example.com/g.png",
                "introduction": "",
            })))
            .without_fields(&NEVER_ECHOED),
        )
        .await;
}
