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

/// OpenIM v3.6 only logs a refusal, then applies the answer as if it allowed: a refusal
/// without the fields OpenIM always overwrites would store `""` over them. So the reject
/// default and a worker's refusal carry the request's own values there, for v3.5/v3.6's
/// SetFriendRemark (whose `remark` is always overwritten) and for SetGroupInfo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_keep_the_fields_openim_always_overwrites() {
    const LEGACY_REMARK: &str = "callbackBeforeSetFriendRemark";
    let mut remark_body: Value = serde_json::from_slice(include_bytes!(
        "../../../fixtures/openim/before_set_friend_remark.json"
    ))
    .expect("fixtures are JSON");
    remark_body["callbackCommand"] = json!(LEGACY_REMARK);
    let remark_request = HttpRequest::openim(
        "/callbackExample",
        LEGACY_REMARK,
        remark_body.to_string().into_bytes(),
    );
    let with = |mut refusal: Value, fields: Value| {
        if let (Some(target), Value::Object(fields)) = (refusal.as_object_mut(), fields) {
            target.extend(fields);
        }
        refusal
    };
    let remark = json!({"remark": remark_body["remark"]});
    let group = json!({"groupID": "3316849202", "groupName": "Rust <fans> & friends",
        "faceURL": "", "introduction": ""});
    let stack = Stack::start(&[
        ("GATEWAY_DEFAULT_DECISION", "reject"),
        ("GATEWAY_REJECT_ERR_CODE", "5099"),
        ("GATEWAY_REJECT_ERR_MSG", "paused"),
    ])
    .await;
    let paused = openim_gateway_tests::reject(5099, "paused");
    stack
        .check(
            &remark_request,
            &Expect::fallback(
                DecisionSource::NoResponders,
                with(paused.clone(), remark.clone()),
            ),
        )
        .await;
    stack
        .check(
            &set_group_info(),
            &Expect::fallback(DecisionSource::NoResponders, with(paused, group.clone()))
                .without_fields(&NEVER_ECHOED),
        )
        .await;
    let _refusing = stack
        .scripted(Behaviour::reply(
            br#"{"nextCode":1,"errCode":5001,"errMsg":"no","remark":"","groupName":""}"#.to_vec(),
        ))
        .await;
    let no = openim_gateway_tests::reject(5001, "no");
    stack
        .check(&remark_request, &Expect::worker(with(no.clone(), remark)))
        .await;
    stack
        .check(
            &set_group_info(),
            &Expect::worker(with(no, group)).without_fields(&NEVER_ECHOED),
        )
        .await;
}
