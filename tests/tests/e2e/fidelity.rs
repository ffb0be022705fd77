//! OpenIM fidelity: what the gateway forwards as `worker` is an answer OpenIM decodes and
//! applies as the worker meant (docs/openim.md, section 3). One test per hazard, each with
//! OpenIM's own request bodies (`fixtures/openim/`) and a worker that returns the hazard.
//!
//! The default decision is "reject" here, so a fallback can never pass for the worker's
//! allow.

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::{
    allow, allow_with, metrics, reject, Behaviour, Expect, HttpRequest, Stack,
};
use serde_json::{json, Value};

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!("../../../fixtures/openim/", $file)).as_slice()
    };
}

const SET_GROUP_INFO: &[u8] = fixture!("before_set_group_info.json");
const SET_GROUP_INFO_EX: &[u8] = fixture!("before_set_group_info_ex.json");
const IMPORT_FRIENDS: &[u8] = fixture!("before_import_friends.json");
const MSG_MODIFY: &[u8] = fixture!("before_msg_modify.json");
const MEMBERS_JOIN: &[u8] = fixture!("before_members_join_group.json");
const USER_REGISTER: &[u8] = fixture!("before_user_register.json");
const CREATE_GROUP: &[u8] = fixture!("before_create_group.json");
const GROUP_ONLINE_PUSH: &[u8] = fixture!("before_group_online_push.json");
const ONLINE_PUSH: &[u8] = fixture!("before_online_push.json");
const SET_FRIEND_REMARK: &[u8] = fixture!("before_set_friend_remark.json");
const TRANSFER_OWNER_AFTER: &[u8] = fixture!("transfer_group_owner_after.json");

const REJECT_SETTINGS: [(&str, &str); 3] = [
    ("GATEWAY_DEFAULT_DECISION", "reject"),
    ("GATEWAY_REJECT_ERR_CODE", "5099"),
    ("GATEWAY_REJECT_ERR_MSG", "paused"),
];

/// The default refusal with the request's own values of `keys`.
fn refusal_keeping(body: &[u8], keys: &[&str]) -> Value {
    let body: Value = serde_json::from_slice(body).expect("fixtures are JSON");
    let mut refusal = reject(5099, "paused");
    for key in keys {
        refusal[*key] = body[*key].clone();
    }
    refusal
}

fn invalid() -> Expect {
    Expect::fallback(DecisionSource::InvalidReply, reject(5099, "paused"))
}

/// One exchange: OpenIM's body for a command, what the worker replies, what OpenIM must get.
struct Row {
    name: &'static str,
    body: &'static [u8],
    reply: Value,
    expect: Expect,
}

fn row(name: &'static str, body: &'static [u8], reply: Value, expect: Expect) -> Row {
    Row {
        name,
        body,
        reply,
        expect,
    }
}

fn command_of(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).expect("fixtures are JSON");
    body["callbackCommand"]
        .as_str()
        .expect("fixtures name their command")
        .to_owned()
}

/// Runs the rows one after the other, each with its own worker, and fails listing every row
/// that did not get its expected answer.
async fn run(stack: &Stack, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for row in rows {
        let worker = stack
            .scripted(Behaviour::reply(row.reply.to_string().into_bytes()))
            .await;
        let request = HttpRequest::openim("/callbackExample", &command_of(row.body), row.body);
        if let Err(report) = stack.try_check(&request, &row.expect).await {
            failures.push(format!("{}: {report}", row.name));
        }
        worker.stop().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_1_unset_values_echoed_back_do_not_reach_openim() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    let echo = json!({"actionCode":0,"nextCode":0,"groupID":"3316849202",
        "groupName":"Rust <fans> & friends","notification":"","introduction":"","faceURL":"",
        "ex":"","needVerification":0,"lookMemberInfo":0,"applyMemberFriend":0});
    run(
        &stack,
        vec![
            row(
                "SetGroupInfo: the request sent back",
                SET_GROUP_INFO,
                echo,
                Expect::worker(allow_with(&json!({"groupID":"3316849202",
                    "groupName":"Rust <fans> & friends","introduction":"","faceURL":""})))
                .without_fields(&[
                    "ex",
                    "needVerification",
                    "lookMemberInfo",
                    "applyMemberFriend",
                ]),
            ),
            row(
                "SetGroupInfo: a real change still goes through",
                SET_GROUP_INFO,
                json!({"needVerification":1}),
                Expect::worker_fields(json!({"needVerification":1})),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_2_values_openim_cannot_decode_are_invalid() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    run(
        &stack,
        vec![
            row(
                "ImportFriends: numbers in a []string",
                IMPORT_FRIENDS,
                json!({"friendUserIDs":[2,3]}),
                invalid(),
            ),
            row(
                "MsgModify: a key the request does not carry, wrongly typed",
                MSG_MODIFY,
                json!({"senderFaceURL":5}),
                invalid(),
            ),
            row(
                "MembersJoinGroup: a nested value wrongly typed",
                MEMBERS_JOIN,
                json!({"memberCallbackList":[{"userID":"6640217793","roleLevel":"60"}]}),
                invalid(),
            ),
            row(
                "MsgModify: Go takes an array of bytes for a []byte (never read: dropped)",
                MSG_MODIFY,
                json!({"msgDataList":[104,105]}),
                Expect::worker(allow()),
            ),
            row(
                "ImportFriends: strings are fine",
                IMPORT_FRIENDS,
                json!({"friendUserIDs":["9911842207"]}),
                Expect::worker(allow_with(&json!({"friendUserIDs":["9911842207"]}))),
            ),
        ],
    )
    .await;
    let samples = stack.metrics().await;
    let wrong = metrics::sum(
        &samples,
        "openim_gateway_invalid_replies_total",
        &[("reason", "wrong_type")],
    );
    assert!(
        (wrong - 3.0).abs() < f64::EPSILON,
        "wrong_type counted {wrong}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_3_answers_that_would_crash_openim_are_invalid() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    run(
        &stack,
        vec![
            row(
                "MembersJoinGroup: an entry without userID",
                MEMBERS_JOIN,
                json!({"memberCallbackList":[{"nickname":"x"}]}),
                invalid(),
            ),
            row(
                "MembersJoinGroup: a null entry",
                MEMBERS_JOIN,
                json!({"memberCallbackList":[null]}),
                invalid(),
            ),
            row(
                "UserRegister: a null user",
                USER_REGISTER,
                json!({"users":[null]}),
                invalid(),
            ),
            row(
                "MembersJoinGroup: a complete entry is fine",
                MEMBERS_JOIN,
                json!({"memberCallbackList":[{"userID":"6640217793","nickname":"Dan"}]}),
                Expect::worker(allow_with(
                    &json!({"memberCallbackList":[{"userID":"6640217793","nickname":"Dan"}]}),
                )),
            ),
        ],
    )
    .await;
    let samples = stack.metrics().await;
    let null_entries = metrics::sum(
        &samples,
        "openim_gateway_invalid_replies_total",
        &[
            ("command", "callbackBeforeMembersJoinGroupCommand"),
            ("reason", "null_entry"),
        ],
    );
    assert!(
        (null_entries - 2.0).abs() < f64::EPSILON,
        "null_entry counted {null_entries}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_4_content_openim_refuses_is_invalid() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    run(
        &stack,
        vec![
            row(
                "MsgModify: content that is not JSON",
                MSG_MODIFY,
                json!({"content":"hello"}),
                invalid(),
            ),
            row(
                "MsgModify: content that is a JSON array",
                MSG_MODIFY,
                json!({"content":"[1,2]"}),
                invalid(),
            ),
            row(
                "MsgModify: a JSON object is fine",
                MSG_MODIFY,
                json!({"content":"{\"content\":\"hi\"}"}),
                Expect::worker(allow_with(&json!({"content":"{\"content\":\"hi\"}"}))),
            ),
            row(
                "SetGroupInfoEx: a blank groupName would drop the whole update",
                SET_GROUP_INFO_EX,
                json!({"groupName":"   "}),
                // The refusal keeps the eight fields OpenIM overwrites regardless.
                Expect::fallback(
                    DecisionSource::InvalidReply,
                    refusal_keeping(
                        SET_GROUP_INFO_EX,
                        &[
                            "groupID",
                            "groupName",
                            "introduction",
                            "faceURL",
                            "ex",
                            "needVerification",
                            "lookMemberInfo",
                            "applyMemberFriend",
                        ],
                    ),
                ),
            ),
            row(
                "SetGroupInfoEx: a new groupName is fine",
                SET_GROUP_INFO_EX,
                json!({"groupName":"Rustaceans"}),
                Expect::worker_fields(json!({"groupName":"Rustaceans"})),
            ),
        ],
    )
    .await;
    let samples = stack.metrics().await;
    let blank = metrics::sum(
        &samples,
        "openim_gateway_invalid_replies_total",
        &[
            ("command", "callbackBeforeSetGroupInfoExCommand"),
            ("reason", "blank_group_name"),
        ],
    );
    assert!(
        (blank - 1.0).abs() < f64::EPSILON,
        "blank_group_name counted {blank}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_5_identity_rules_follow_openims_code() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    run(
        &stack,
        vec![
            row(
                "CreateGroup: the webhook may choose the id when the request's is empty",
                CREATE_GROUP,
                json!({"groupID":"chosen-by-worker"}),
                Expect::worker(allow_with(&json!({"groupID":"chosen-by-worker"}))),
            ),
            row(
                "CreateGroup: ownerUserID is not the worker's to change",
                CREATE_GROUP,
                json!({"ownerUserID":"mallory"}),
                invalid(),
            ),
            row(
                "CreateGroup: creatorUserID is the client's unchecked value, the worker's to set",
                CREATE_GROUP,
                json!({"creatorUserID":"7702315586"}),
                Expect::worker(allow_with(&json!({"creatorUserID":"7702315586"}))),
            ),
            row(
                "ImportFriends: a friend the request did not name",
                IMPORT_FRIENDS,
                json!({"friendUserIDs":["9911842207","mallory"]}),
                invalid(),
            ),
            row(
                "UserRegister: a user the request did not name",
                USER_REGISTER,
                json!({"users":[{"userID":"mallory","nickname":"M"}]}),
                invalid(),
            ),
            row(
                "GroupOnlinePush: push targets the request gives nothing to check against",
                GROUP_ONLINE_PUSH,
                json!({"userIDList":["mallory"]}),
                invalid(),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_6_fields_openim_ignores_are_dropped() {
    let stack = Stack::start(&REJECT_SETTINGS).await;
    run(
        &stack,
        vec![
            row(
                "CreateGroup: applyMemberFriend is never copied",
                CREATE_GROUP,
                json!({"applyMemberFriend":1}),
                Expect::worker(allow()),
            ),
            row(
                "SetFriendRemark: an empty remark is not applied",
                SET_FRIEND_REMARK,
                json!({"remark":""}),
                Expect::worker(allow()),
            ),
            row(
                "OnlinePush: neither field is read",
                ONLINE_PUSH,
                json!({"userIDList":["9911842207"],"offlinePushInfo":{"title":"t"}}),
                Expect::worker(allow()),
            ),
            row(
                "SetGroupInfo: notification is never copied",
                SET_GROUP_INFO,
                json!({"notification":"new"}),
                Expect::worker_fields(json!({"groupID":"3316849202"}))
                    .without_fields(&["notification"]),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hazard_7_v35_transfer_after_callback_is_acknowledged_not_refused() {
    // Sent by v3.5 after the transfer is committed: a 404, or the reject default, would
    // refuse something already done.
    let stack = Stack::start(&REJECT_SETTINGS).await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    stack
        .check(
            &HttpRequest::openim(
                "/callbackExample",
                "callbackTransferGroupOwnerAfter",
                TRANSFER_OWNER_AFTER,
            ),
            &Expect::ack().within(crate::AT_ONCE),
        )
        .await;
}
