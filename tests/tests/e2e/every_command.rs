//! Every command, end to end: each of OpenIM's request bodies in `fixtures/openim/` goes
//! through the real gateway and a real nats-server to one scripted worker, which returns
//! each hazard in turn (docs/openim.md, section 3):
//!
//! - after-callbacks are acknowledged (`ack`, the plain allow) whatever the worker does, and
//!   published byte for byte;
//! - for a before-callback, (a) an empty allow comes back from the worker as exactly the
//!   answer the rules give, (b) the request sent back as the reply (the shape that wipes
//!   data where OpenIM reads "unset" values as changes) comes back as the exact answer
//!   written below, (c) a wrongly typed value in any answer field, however deep, is an
//!   invalid reply, (d) a `null` where OpenIM dereferences is an invalid reply, (e) a changed
//!   value in a field that names who or what the operation is about is an invalid reply
//!   (unless OpenIM lets the webhook choose it, and the request left it unset), as is a
//!   changed identity key the answer struct does not even have, (f) a value of a field
//!   OpenIM never reads, and an empty value of one it reads only when not empty, is dropped,
//!   and (g) a value OpenIM would refuse in a way that loses the whole update is an invalid
//!   reply.
//!
//! The fields of (c) to (g) come from the proto mirror, so a field added there is tested
//! here; the outcomes are written down as facts about OpenIM, never computed by the
//! gateway's code. The default decision is "reject", so a fallback can never pass for the
//! worker's allow, and every fallback is matched to its reason in the metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openim_gateway_proto::catalog::{COMMANDS, IDENTITY_FIELDS};
use openim_gateway_proto::openim::answers::{AnswerField, Applied, Guard};
use openim_gateway_proto::openim::go::{decode_struct, field, GoField, GoType};
use openim_gateway_proto::{CallbackKind, Command, DecisionSource};
use openim_gateway_tests::check::differences;
use openim_gateway_tests::{
    allow, http, reject, Behaviour, Expect, ExpectBody, HttpRequest, Reply, Stack,
};
use serde_json::{json, Map, Value};

const REJECT_SETTINGS: [(&str, &str); 3] = [
    ("GATEWAY_DEFAULT_DECISION", "reject"),
    ("GATEWAY_REJECT_ERR_CODE", "5099"),
    ("GATEWAY_REJECT_ERR_MSG", "paused"),
];

/// `CommonCallbackResp` (`pkg/callbackstruct/common.go`): the first fields of every answer.
const COMMON: &[GoField] = &[
    field("actionCode", GoType::Int32),
    field("errCode", GoType::Int32),
    field("errMsg", GoType::Str),
    field("errDlt", GoType::Str),
    field("nextCode", GoType::Int32),
];

/// The catalog's commands that no fixture shows: the v3.5/v3.6 names, whose bodies were
/// not captured (v3.5's `callbackTransferGroupOwnerAfter` is).
const WITHOUT_FIXTURE: [&str; 16] = [
    "callbackMsgModifyCommand",
    "callbackBeforeMemberJoinGroupCommand",
    "callbackBeforeSetFriendRemark",
    "callbackOnlinePushCommand",
    "callbackOfflinePushCommand",
    "callbackSuperGroupOnlinePushCommand",
    "callbackAfterSetFriendRemark",
    "callbackAfterTransferGroupOwner",
    "callbackQuitGroupCommand",
    "callbackKillGroupCommand",
    "callbackDisMissGroupCommand",
    "callbackSingleMsgRead",
    "callbackGroupMsgReadCommand",
    "callbackUserOnlineCommand",
    "callbackUserOfflineCommand",
    "callbackUserKickOffCommand",
];

/// The answer fields OpenIM dereferences without a nil check (docs/openim.md, the "deref"
/// column), for the commands with a fixture: entries of the two lists, and the pointers of
/// its own request that a non-`null` answer value is written through.
const DEREFERENCED: [(&str, &str); 6] = [
    ("callbackBeforeMsgModifyCommand", "offlinePushInfo"),
    ("callbackBeforeUpdateUserInfoExCommand", "nickName"),
    ("callbackBeforeUpdateUserInfoExCommand", "faceURL"),
    ("callbackBeforeUpdateUserInfoExCommand", "ex"),
    ("callbackBeforeUserRegisterCommand", "users"),
    (
        "callbackBeforeMembersJoinGroupCommand",
        "memberCallbackList",
    ),
];

/// SetGroupInfo's four fields OpenIM overwrites whatever the answer says.
const SET_GROUP_INFO_ALWAYS: &[&str] = &["groupID", "groupName", "introduction", "faceURL"];
/// SetGroupInfoEx's eight.
const SET_GROUP_INFO_EX_ALWAYS: &[&str] = &[
    "groupID",
    "groupName",
    "introduction",
    "faceURL",
    "ex",
    "needVerification",
    "lookMemberInfo",
    "applyMemberFriend",
];

/// (a) What an empty allow `{}` must come back with besides the common fields: the request's
/// values of the fields OpenIM overwrites even when the answer leaves them out, `null`s
/// included, so that "absent" keeps them.
fn empty_allow_keeps(file: &str) -> &'static [&'static str] {
    if file.starts_with("before_set_group_info_ex") {
        SET_GROUP_INFO_EX_ALWAYS
    } else if file.starts_with("before_set_group_info") {
        SET_GROUP_INFO_ALWAYS
    } else {
        &[]
    }
}

/// (b) What the request sent back as the reply must come back with besides the common
/// fields, each with the request's own value. Every fixture's echo turns out to be
/// forwardable; why, per body:
fn echo_keeps(file: &str) -> &'static [&'static str] {
    match file {
        // Allow or refuse only: nothing else is read; the identity keys are unchanged.
        "before_send_single_msg.json"
        | "before_send_group_msg.json"
        | "before_join_group.json"
        | "before_add_friend.json"
        | "before_add_black.json"
        | "before_add_friend_agree.json"
        // `refusedMembersAccount` is not in the request.
        | "before_invite_join_group.json"
        // `memberCallbackList` is not in the request.
        | "before_members_join_group.json"
        // Neither field is read.
        | "before_online_push.json"
        // The request has no `userIDList`.
        | "before_group_online_push.json"
        // A `remark` of "" is skipped by OpenIM: the client's clearing goes through.
        | "before_set_friend_remark.clear_remark.json" => &[],
        // Every value is the message's own, copied onto itself. The request's `atUserList`
        // and `faceURL` are not the answer's `atUserIDList` and `senderFaceURL`.
        "before_msg_modify.json" | "before_msg_modify.group.json" => &[
            "content",
            "clientMsgID",
            "serverMsgID",
            "senderPlatformID",
            "senderNickname",
            "sessionType",
            "msgFrom",
            "contentType",
            "status",
            "ex",
        ],
        // The strings are always strings here, and an answer's "" is skipped by the update:
        // the stored value stays. `ex` is `null`.
        "before_update_user_info.json" => &["nickName", "faceURL"],
        // Wrappers: the `null` ones stay unset.
        "before_update_user_info_ex.json" => &["nickName"],
        "before_update_user_info_ex.face_only.json" => &["faceURL"],
        // The same users, each once.
        "before_user_register.json" => &["users"],
        // The group info is copied onto itself; "" and 0 are its real values here, not
        // markers. `applyMemberFriend` is never copied. A `groupID` of "" lets OpenIM
        // generate one, as before.
        "before_create_group.json" | "before_create_group.with_group_id.json" => &[
            "groupID",
            "groupName",
            "notification",
            "introduction",
            "faceURL",
            "ownerUserID",
            "ex",
            "status",
            "creatorUserID",
            "groupType",
            "needVerification",
            "lookMemberInfo",
        ],
        // Wrappers: `null` keeps, a value (a clearing "" included) is the client's change.
        "before_set_group_member_info.all_fields.json" => &["nickName", "faceURL", "roleLevel", "ex"],
        "before_set_group_member_info.clear_nickname.json"
        | "before_set_group_member_info.nickname_only.json" => &["nickName"],
        "before_set_group_member_info.role_only.json" => &["roleLevel"],
        // The request's `ex` "" and flags 0 mean "not set": sending them back would store
        // them, so they must not come back. The four always-overwritten fields do.
        "before_set_group_info.json" => SET_GROUP_INFO_ALWAYS,
        // Every value is a real one here: all eight fields come back (the same eight names
        // SetGroupInfoEx always overwrites).
        "before_set_group_info.all_fields.json" => SET_GROUP_INFO_EX_ALWAYS,
        // Always overwritten: the wrappers come back as they were, `null` included.
        "before_set_group_info_ex.json" | "before_set_group_info_ex.all_fields.json" => {
            SET_GROUP_INFO_EX_ALWAYS
        }
        "before_import_friends.json" => &["friendUserIDs"],
        "before_set_friend_remark.json" => &["remark"],
        // The same targets; the flattened push info is not the answer's `offlinePushInfo`.
        "before_offline_push.json" | "before_offline_push.no_offline_push_info.json" => {
            &["userIDList"]
        }
        // A new conversation's settings, at their zero values, copied onto themselves.
        "before_create_single_chat_conversations.json"
        | "before_create_group_chat_conversations.json" => &[
            "recvMsgOpt",
            "isPinned",
            "isPrivateChat",
            "burnDuration",
            "groupAtType",
            "attachedInfo",
            "ex",
        ],
        other => panic!("no fact written down for {other}: add it to echo_keeps"),
    }
}

/// Keys that name who or what an operation is about: an answer may carry them only with
/// the request's value.
const IDENTITY_KEYS: &[&str] = &[
    "groupID",
    "userID",
    "sendID",
    "recvID",
    "clientMsgID",
    "serverMsgID",
    "sessionType",
    "ownerUserID",
    "groupType",
];

/// Request fields where OpenIM flattens "not set" into a zero value (`""`, 0): an answer
/// that carries the zero back would store it, so no worker answer in this test may.
const UNSET_AS_ZERO: &[(&str, &[&str])] = &[(
    "callbackBeforeSetGroupInfoCommand",
    &[
        "ex",
        "needVerification",
        "lookMemberInfo",
        "applyMemberFriend",
    ],
)];

/// One of OpenIM's request bodies.
struct Fixture {
    file: String,
    bytes: Vec<u8>,
    body: Map<String, Value>,
    command: &'static Command,
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/openim");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/openim exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable fixture");
            let body: Map<String, Value> = serde_json::from_slice(&bytes).expect("JSON");
            let name = body["callbackCommand"].as_str().expect("a command");
            let command = Command::lookup(name)
                .unwrap_or_else(|| panic!("{} names an unknown command", path.display()));
            Fixture {
                file: path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .expect("a UTF-8 name")
                    .to_owned(),
                bytes,
                body,
                command,
            }
        })
        .collect()
}

/// What the scripted worker replies with.
#[derive(Clone)]
enum Script {
    /// The request's own bytes.
    Echo,
    /// These bytes.
    Fixed(Vec<u8>),
}

/// What the gateway must answer.
enum Outcome {
    /// `ack`, the plain allow (after-callbacks).
    Ack,
    /// `worker`, with exactly this body.
    Worker(Value),
    /// `fallback:invalid_reply` with the reject default, counted under this reason.
    Invalid(&'static str),
}

/// The stack, the worker's script and every failure so far.
struct Run {
    stack: Stack,
    script: Arc<Mutex<Script>>,
    /// Invalid replies expected so far, by command and reason.
    invalid: BTreeMap<String, BTreeMap<String, f64>>,
    failures: Vec<String>,
    exchanges: usize,
}

impl Run {
    /// Sends `fixture` with the worker scripted to answer `script`; a failure is recorded in
    /// one paragraph (what differs, the worker's reply, the answer), and the run goes on.
    async fn exchange(&mut self, case: &str, fixture: &Fixture, script: Script, outcome: Outcome) {
        let reply = match &script {
            Script::Echo => "the request itself".to_owned(),
            Script::Fixed(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        };
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
        self.exchanges += 1;
        let case = format!("{} ({}): {case}", fixture.command.name, fixture.file);
        let request = HttpRequest::openim(
            "/callbackExample",
            fixture.command.name,
            fixture.bytes.clone(),
        );
        let expect = match &outcome {
            Outcome::Ack => Expect::ack(),
            Outcome::Worker(body) => Expect {
                body: ExpectBody::Exact(body.clone()),
                ..Expect::worker(json!({}))
            },
            Outcome::Invalid(_) => {
                // The refusal keeps what OpenIM overwrites regardless (v3.6 applies it).
                let mut refusal = reject(5099, "paused");
                for field in fixture.command.answer {
                    if let (Applied::Always, Some(value)) =
                        (field.applied, fixture.body.get(field.name))
                    {
                        refusal[field.name] = value.clone();
                    }
                }
                Expect::fallback(DecisionSource::InvalidReply, refusal)
            }
        };
        let response = match http::send(self.stack.gateway.address(), &request).await {
            Ok(response) => response,
            Err(error) => {
                self.failures
                    .push(format!("{case}: the exchange failed: {error}"));
                return;
            }
        };
        let mut problems = differences(&response, &expect);
        match outcome {
            Outcome::Worker(_) if problems.is_empty() => {
                if let Err(problem) =
                    decodes_into_mirror(fixture, &response.json().unwrap_or_default())
                {
                    problems.push(problem);
                }
            }
            Outcome::Invalid(reason) => {
                if let Some(problem) = self.count_invalid(fixture.command.name, reason).await {
                    problems.push(problem);
                }
            }
            Outcome::Ack | Outcome::Worker(_) => {}
        }
        if !problems.is_empty() {
            self.failures.push(format!(
                "{case}\n  worker replied: {reply}\n  OpenIM got: {} {}\n  {}",
                response.source().unwrap_or("(no source)"),
                response.text(),
                problems.join("\n  ")
            ));
        }
    }

    /// Checks that the gateway counted one more invalid reply of `command` for `reason`, and
    /// none for another reason; on a mismatch, says so and starts from the counted values.
    async fn count_invalid(&mut self, command: &str, reason: &str) -> Option<String> {
        let expected = self.invalid.entry(command.to_owned()).or_default();
        *expected.entry(reason.to_owned()).or_default() += 1.0;
        let samples = self.stack.metrics().await;
        let counted: BTreeMap<String, f64> = samples
            .iter()
            .filter(|sample| sample.name == "openim_gateway_invalid_replies_total")
            .filter(|sample| sample.labels.get("command").map(String::as_str) == Some(command))
            .filter(|sample| sample.value > 0.0)
            .filter_map(|sample| Some((sample.labels.get("reason")?.clone(), sample.value)))
            .collect();
        if counted == *expected {
            return None;
        }
        let problem = format!("invalid replies counted {counted:?}, expected {expected:?}");
        *expected = counted;
        Some(problem)
    }
}

/// The allow answer plus `keys` with the request's values.
fn allow_keeping(fixture: &Fixture, keys: &[&str]) -> Value {
    let mut answer = allow();
    for key in keys {
        let value = fixture
            .body
            .get(*key)
            .unwrap_or_else(|| panic!("{} has no {key}", fixture.file));
        answer[*key] = value.clone();
    }
    answer
}

/// A worker answer must be what OpenIM decodes into the command's answer struct: every key
/// one of its tags, spelled as the tag, every value of its Go type; no identity key
/// changed, and no "not set" marker of the request sent back as a value.
fn decodes_into_mirror(fixture: &Fixture, answer: &Value) -> Result<(), String> {
    let Value::Object(answer) = answer else {
        return Err(format!("the answer is not an object: {answer}"));
    };
    let tags: Vec<&str> = COMMON
        .iter()
        .map(|f| f.name)
        .chain(fixture.command.answer.iter().map(|f| f.name))
        .collect();
    if let Some(key) = answer.keys().find(|key| !tags.contains(&key.as_str())) {
        return Err(format!(
            "answer key {key:?} is not a tag of the answer struct"
        ));
    }
    let fields: Vec<GoField> = COMMON
        .iter()
        .copied()
        .chain(fixture.command.answer.iter().map(|f| field(f.name, f.ty)))
        .collect();
    decode_struct(&fields, answer)
        .map_err(|error| format!("the answer does not decode: {error:?}"))?;
    for key in IDENTITY_KEYS {
        // OpenIM generates a group id only when the request's is "": the webhook may choose.
        let chosen = fixture
            .command
            .answer
            .iter()
            .any(|f| f.name == *key && f.guard == Guard::ChosenWhenUnset);
        if let (Some(sent), Some(original)) = (answer.get(*key), fixture.body.get(*key)) {
            if sent != original && !(chosen && original == &json!("")) {
                return Err(format!("identity {key} changed from {original} to {sent}"));
            }
        }
    }
    let markers = UNSET_AS_ZERO
        .iter()
        .filter(|(command, _)| *command == fixture.command.name)
        .flat_map(|(_, keys)| keys.iter());
    for key in markers {
        let zero = |value: &Value| value == &json!("") || value == &json!(0);
        if let (Some(sent), Some(original)) = (answer.get(*key), fixture.body.get(*key)) {
            if zero(original) && zero(sent) {
                return Err(format!(
                    "{key}: the request's \"not set\" {original} sent back as {sent}"
                ));
            }
        }
    }
    Ok(())
}

/// A value of the wrong JSON type for `ty`.
fn wrong_value(ty: GoType) -> Value {
    match ty {
        GoType::Str | GoType::Bytes => json!(5),
        GoType::Int32 | GoType::Int64 => json!("5"),
        GoType::Bool => json!(1),
        GoType::Slice(_) | GoType::Struct(_) => json!("x"),
        GoType::BoolMap => json!([true]),
        GoType::Ptr(inner) => wrong_value(*inner),
    }
}

/// Every wrongly typed value for a field of type `ty`, with where it sits: the field
/// itself, an element of a list, a field of an object or a map, as deep as the type goes.
fn wrong_values(ty: GoType) -> Vec<(String, Value)> {
    if let GoType::Ptr(inner) = ty {
        return wrong_values(*inner);
    }
    let mut cases = vec![(String::new(), wrong_value(ty))];
    match ty {
        GoType::Slice(element) => {
            for (path, value) in wrong_values(*element) {
                cases.push((format!("[0]{path}"), json!([value])));
            }
        }
        GoType::Struct(fields) => {
            for sub in fields {
                for (path, value) in wrong_values(sub.ty) {
                    let mut object = Map::new();
                    object.insert(sub.name.to_owned(), value);
                    cases.push((format!(".{}{path}", sub.name), Value::Object(object)));
                }
            }
        }
        GoType::BoolMap => cases.push((".key".to_owned(), json!({"key": 1}))),
        GoType::Str
        | GoType::Int32
        | GoType::Int64
        | GoType::Bool
        | GoType::Bytes
        | GoType::Ptr(_) => {}
    }
    cases
}

/// A value of the right type for `ty`, for the pointer fields of (d) and the fields of (f).
fn some_value(ty: GoType) -> Value {
    match ty {
        GoType::Str => json!("x"),
        GoType::Int32 | GoType::Int64 => json!(1),
        GoType::Bool => json!(true),
        GoType::Bytes => json!("aGk="),
        GoType::Slice(element) => json!([some_value(*element)]),
        GoType::BoolMap => json!({"key": true}),
        GoType::Struct(fields) => {
            let mut object = Map::new();
            if let Some(first) = fields.first() {
                object.insert(first.name.to_owned(), some_value(first.ty));
            }
            Value::Object(object)
        }
        GoType::Ptr(inner) => some_value(*inner),
    }
}

/// A value of the type `ty` that differs from the request's `original`.
fn changed_value(ty: GoType, original: Option<&Value>) -> Value {
    match ty {
        GoType::Ptr(inner) => changed_value(*inner, original),
        GoType::Int32 | GoType::Int64 => {
            json!(original.and_then(Value::as_i64).unwrap_or(0) + 1)
        }
        GoType::Slice(_) => json!(["intruder"]),
        _ => json!(format!(
            "{}-changed",
            original.and_then(Value::as_str).unwrap_or("")
        )),
    }
}

/// The empty value of a field OpenIM reads only when not empty.
fn empty_value(ty: GoType) -> Value {
    match ty {
        GoType::Ptr(inner) => empty_value(*inner),
        GoType::Str => json!(""),
        GoType::Slice(_) => json!([]),
        other => panic!("no empty value for {other:?}"),
    }
}

/// (e) for one answer field: a changed identity is refused, a chosen one accepted where
/// OpenIM lets the webhook choose it.
async fn identity_changes(run: &mut Run, fixture: &Fixture, answer_field: &AnswerField) {
    let name = answer_field.name;
    let original = fixture.body.get(name).filter(|value| !value.is_null());
    let changed = match answer_field.guard {
        Guard::SameAsRequest | Guard::ChosenWhenUnset => changed_value(answer_field.ty, original),
        // A list of the request's ids plus one it did not name.
        Guard::SubsetOf(key) => {
            let mut list = fixture
                .body
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            list.push(json!("intruder"));
            Value::Array(list)
        }
        Guard::Unverifiable => json!(["intruder"]),
        _ => return,
    };
    let outcome = if answer_field.guard == Guard::ChosenWhenUnset && original == Some(&json!("")) {
        let mut answer = allow_keeping(fixture, empty_allow_keeps(&fixture.file));
        answer[name] = changed.clone();
        Outcome::Worker(answer)
    } else {
        Outcome::Invalid("identity_changed")
    };
    run.exchange(
        &format!("{name} changed to {changed}"),
        fixture,
        reply(&json!({ name: changed })),
        outcome,
    )
    .await;
}

/// (f) and (g) for one answer field: what OpenIM never reads, or reads only when not empty,
/// is dropped; a value OpenIM would refuse by dropping the whole update is invalid.
async fn drops_and_refusals(run: &mut Run, fixture: &Fixture, answer_field: &AnswerField) {
    let name = answer_field.name;
    let dropped = match answer_field.applied {
        Applied::Ignored => Some(some_value(answer_field.ty)),
        Applied::IfNotEmpty => Some(empty_value(answer_field.ty)),
        Applied::IfNotNull | Applied::Always => None,
    };
    if let Some(value) = dropped {
        run.exchange(
            &format!("{name} {value}, which OpenIM does not read, dropped"),
            fixture,
            reply(&json!({ name: value })),
            Outcome::Worker(allow_keeping(fixture, empty_allow_keeps(&fixture.file))),
        )
        .await;
    }
    if answer_field.guard == Guard::NotBlank {
        run.exchange(
            &format!("a blank {name}"),
            fixture,
            reply(&json!({ name: " " })),
            Outcome::Invalid("blank_group_name"),
        )
        .await;
    }
}

/// (e) for the identity keys the answer struct does not have: OpenIM ignores them, so a
/// changed one is a redirect the worker means and that would not happen.
async fn unknown_identity_changes(run: &mut Run, fixture: &Fixture) {
    for key in IDENTITY_FIELDS {
        let Some(Value::String(original)) = fixture.body.get(*key) else {
            continue;
        };
        if fixture.command.answer.iter().any(|f| f.name == *key) {
            continue;
        }
        run.exchange(
            &format!("{key}, not an answer field, changed"),
            fixture,
            reply(&json!({ *key: format!("{original}-changed") })),
            Outcome::Invalid("identity_changed"),
        )
        .await;
    }
}

fn reply(value: &Value) -> Script {
    Script::Fixed(value.to_string().into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_with_every_hazard_through_the_real_gateway() {
    let fixtures = fixtures();

    // Every command of the catalog has a fixture, except the v3.5/v3.6 names listed.
    let shown: BTreeSet<&str> = fixtures.iter().map(|f| f.command.name).collect();
    let unshown: BTreeSet<&str> = COMMANDS
        .iter()
        .map(|c| c.name)
        .filter(|name| !shown.contains(name))
        .collect();
    assert_eq!(unshown, WITHOUT_FIXTURE.into_iter().collect());
    assert_eq!(shown.len(), 52 + 1, "main's 52 and v3.5's transfer");

    // The mirror's dereferenced fields are the ones OpenIM's code has.
    let dereferenced: BTreeSet<(&str, &str)> = shown
        .iter()
        .filter_map(|name| Command::lookup(name))
        .flat_map(|command| {
            command
                .answer
                .iter()
                .filter(|f| {
                    matches!(
                        f.guard,
                        Guard::RequestPointerSet | Guard::RegisteredUsers | Guard::JoiningMembers
                    )
                })
                .map(move |f| (command.name, f.name))
        })
        .collect();
    assert_eq!(dereferenced, DEREFERENCED.into_iter().collect());

    let stack = Stack::start(&REJECT_SETTINGS).await;
    let script = Arc::new(Mutex::new(Script::Echo));
    let scripted = Arc::clone(&script);
    let worker = stack
        .scripted(Behaviour::respond(move |payload| {
            let script = scripted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            Some(match script {
                Script::Echo => Reply::body(payload.to_vec()),
                Script::Fixed(bytes) => Reply::body(bytes),
            })
        }))
        .await;
    let mut run = Run {
        stack,
        script,
        invalid: BTreeMap::new(),
        failures: Vec::new(),
        exchanges: 0,
    };
    let started = std::time::Instant::now();

    let mut typed: BTreeSet<&str> = BTreeSet::new();
    for fixture in &fixtures {
        if fixture.command.kind == CallbackKind::After {
            // A worker reply OpenIM could not even parse changes nothing: OpenIM ignores it.
            run.exchange(
                "acknowledged",
                fixture,
                Script::Fixed(b"not json".to_vec()),
                Outcome::Ack,
            )
            .await;
            continue;
        }
        // (a) An empty allow.
        run.exchange(
            "empty allow",
            fixture,
            reply(&json!({})),
            Outcome::Worker(allow_keeping(fixture, empty_allow_keeps(&fixture.file))),
        )
        .await;
        // (b) The request sent back.
        run.exchange(
            "the request sent back",
            fixture,
            Script::Echo,
            Outcome::Worker(allow_keeping(fixture, echo_keeps(&fixture.file))),
        )
        .await;
        // (d) Where OpenIM dereferences.
        for answer_field in fixture.command.answer {
            null_dereferences(&mut run, fixture, answer_field).await;
        }
        // (e) Identity, (f) what OpenIM does not read, (g) what it refuses.
        for answer_field in fixture.command.answer {
            identity_changes(&mut run, fixture, answer_field).await;
            drops_and_refusals(&mut run, fixture, answer_field).await;
        }
        unknown_identity_changes(&mut run, fixture).await;
        // (c) Wrong types: they do not depend on the request, so once per command.
        if !typed.insert(fixture.command.name) {
            continue;
        }
        let fields = COMMON
            .iter()
            .copied()
            .chain(fixture.command.answer.iter().map(|f| field(f.name, f.ty)));
        for answer_field in fields {
            for (path, value) in wrong_values(answer_field.ty) {
                let mut object = Map::new();
                object.insert(answer_field.name.to_owned(), value);
                run.exchange(
                    &format!("wrong type at {}{path}", answer_field.name),
                    fixture,
                    reply(&Value::Object(object)),
                    Outcome::Invalid("wrong_type"),
                )
                .await;
            }
        }
    }
    let elapsed = started.elapsed();

    // Every after-callback reached the worker subject byte for byte.
    worker.settle().await;
    let published: Vec<(String, Vec<u8>)> = worker
        .received()
        .into_iter()
        .filter(|message| message.reply.is_none())
        .map(|message| (message.subject, message.payload.to_vec()))
        .collect();
    for fixture in fixtures
        .iter()
        .filter(|f| f.command.kind == CallbackKind::After)
    {
        let subject = format!("openim.callback.{}", fixture.command.name);
        if !published.contains(&(subject, fixture.bytes.clone())) {
            run.failures
                .push(format!("{} was not published byte for byte", fixture.file));
        }
    }
    worker.stop().await;

    assert!(
        run.failures.is_empty(),
        "{} of {} exchanges failed:\n\n{}\n\n{}",
        run.failures.len(),
        run.exchanges,
        run.failures.join("\n\n"),
        run.stack.diagnostics()
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "{} exchanges took {elapsed:?}",
        run.exchanges
    );
}

/// (d) for one answer field: a `null` entry or `userID` where OpenIM reads every entry, and
/// a value written through the request's own pointer, which is fine when the request's
/// value is set and a crash when it is `null` or absent.
async fn null_dereferences(run: &mut Run, fixture: &Fixture, answer_field: &AnswerField) {
    let name = answer_field.name;
    match answer_field.guard {
        Guard::RegisteredUsers => {
            run.exchange(
                "a null user",
                fixture,
                reply(&json!({ name: [null] })),
                Outcome::Invalid("null_entry"),
            )
            .await;
        }
        Guard::JoiningMembers => {
            for (case, list) in [
                ("a null entry", json!([null])),
                (
                    "an entry with userID null",
                    json!([{"userID": null, "nickname": "x"}]),
                ),
                ("an entry without userID", json!([{"nickname": "x"}])),
            ] {
                run.exchange(
                    case,
                    fixture,
                    reply(&json!({ name: list })),
                    Outcome::Invalid("null_entry"),
                )
                .await;
            }
        }
        Guard::RequestPointerSet => {
            let value = some_value(answer_field.ty);
            let outcome = match fixture.body.get(name) {
                Some(original) if !original.is_null() => {
                    let mut answer = allow();
                    answer[name] = value.clone();
                    Outcome::Worker(answer)
                }
                _ => Outcome::Invalid("null_pointer_field"),
            };
            run.exchange(
                &format!("{name} written through the request's pointer"),
                fixture,
                reply(&json!({ name: value })),
                outcome,
            )
            .await;
        }
        _ => {}
    }
}
