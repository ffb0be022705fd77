//! The command-specific fields of a worker's reply: decoded as OpenIM decodes them into the
//! command's answer struct, then kept, dropped or refused by the catalog's rule for each
//! field. No I/O.
//!
//! What comes out is built from the decoded values only, with each key spelled as OpenIM's
//! struct tag spells it, so OpenIM's view of the forwarded answer is the gateway's view.
//! Fields OpenIM never reads, and values that would make OpenIM do something the worker did
//! not mean, are left out; values OpenIM would crash on, misapply after its own checks, or
//! refuse, make the reply invalid.

use openim_gateway_proto::{
    answer::{MIN_REJECT_ERR_CODE, NEXT_CODE_STOP},
    catalog::IDENTITY_FIELDS,
    openim::{
        answers::{self, AnswerField, Applied, Guard, COMMON},
        go::{self, DecodeError, GoType, Layout, ObjectError},
    },
    Command,
};
use serde_json::{value::RawValue, Value};

use super::Body;
use crate::outcome::InvalidReply;

/// A reply's command fields, decoded: the index of each field in the command's answer
/// struct and its canonical value.
pub(crate) type Decoded = Vec<(usize, Value)>;

/// A worker's reply as OpenIM decodes it: the common fields and the command's own.
pub(crate) struct Reply {
    pub(crate) err_code: i32,
    pub(crate) err_msg: String,
    pub(crate) err_dlt: String,
    pub(crate) next_code: i32,
    /// The command fields that hold a value.
    pub(crate) fields: Decoded,
}

impl Reply {
    /// Whether OpenIM reads the reply as a refusal; one with `nextCode` 1 and any
    /// `actionCode` counts (the worker's intent is plain).
    pub(crate) fn refuses(&self) -> bool {
        self.next_code == NEXT_CODE_STOP
    }

    /// Whether the refusal's `errCode` is one OpenIM shows as a refusal.
    pub(crate) fn err_code_refuses(&self) -> bool {
        self.err_code >= MIN_REJECT_ERR_CODE
    }
}

/// The struct OpenIM decodes a command's reply into: `CommonCallbackResp`'s fields first,
/// then the command's answer fields. A key naming an identity field the struct lacks is
/// kept for [`check_unknown_identity`].
struct ReplyStruct<'a> {
    answer: &'a [AnswerField],
}

impl Layout for ReplyStruct<'_> {
    fn len(&self) -> usize {
        COMMON.len() + self.answer.len()
    }

    fn ty(&self, index: usize) -> GoType {
        match index.checked_sub(COMMON.len()) {
            None => COMMON[index].ty,
            Some(index) => self.answer[index].ty,
        }
    }

    fn find(&self, key: &str) -> Option<usize> {
        // No tag of the answer structs equals a common one, even ignoring case.
        go::find_field(COMMON, key)
            .or_else(|| answers::find(self.answer, key).map(|index| index + COMMON.len()))
    }

    fn keep_unknown(&self, key: &str) -> bool {
        IDENTITY_FIELDS
            .iter()
            .any(|field| go::go_key_matches(field, key))
    }
}

/// Decodes a worker's reply as OpenIM decodes it into the command's answer struct: every
/// key in the order written, repeated keys included. A key the answer struct does not have
/// is ignored by OpenIM, so it is dropped, unless it changes an identity field: the worker
/// then means a redirect that would not happen, and is told so.
pub(crate) fn decode(
    command: &Command,
    request: &Body,
    reply: &[u8],
) -> Result<Reply, InvalidReply> {
    let decoded = go::decode_object(
        reply,
        &ReplyStruct {
            answer: command.answer,
        },
    )
    .map_err(|error| match error {
        ObjectError::NotJson(error) => InvalidReply::NotJson(error.to_string()),
        ObjectError::NotObject => InvalidReply::NotObject,
        ObjectError::Type(DecodeError::WrongType { path, expected }) => InvalidReply::WrongType {
            field: path,
            expected,
        },
    })?;
    for (key, value) in &decoded.unknown {
        check_unknown_identity(request, key, value)?;
    }
    let mut values = decoded.values;
    let fields = values
        .split_off(COMMON.len())
        .into_iter()
        .enumerate()
        .filter(|(_, value)| !value.is_null())
        .collect();
    // In `COMMON`'s order. The decoder checked the types; `null` is Go's zero value.
    let [_action_code, err_code, err_msg, err_dlt, next_code]: [Value; 5] =
        values.try_into().unwrap_or_default();
    let int = |value: Value| {
        value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .unwrap_or(0)
    };
    let text = |value: Value| match value {
        Value::String(text) => text,
        _ => String::new(),
    };
    let (err_code, err_msg, err_dlt, next_code) =
        (int(err_code), text(err_msg), text(err_dlt), int(next_code));
    Ok(Reply {
        err_code,
        err_msg,
        err_dlt,
        next_code,
        fields,
    })
}

fn check_unknown_identity(request: &Body, key: &str, value: &RawValue) -> Result<(), InvalidReply> {
    if value.get() == "null" {
        return Ok(());
    }
    // A value serde_json cannot hold (a number beyond `f64`) is no value of the request.
    let value = serde_json::from_str::<Value>(value.get()).ok();
    match (get_field(request, key), value) {
        (Some(original), Some(value)) if *original == value => Ok(()),
        _ => Err(InvalidReply::IdentityChanged(key.to_owned())),
    }
}

/// Looks a request field up the way Go matches keys: exactly, else ignoring case.
fn get_field<'a>(object: &'a Body, field: &str) -> Option<&'a Value> {
    object.get(field).or_else(|| {
        object
            .iter()
            .find(|(key, _)| go::go_key_matches(key, field))
            .map(|(_, value)| value)
    })
}

fn non_null(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

/// Applies each field's rule to an allowing reply's decoded fields and writes the ones that
/// reach OpenIM into `answer`.
pub(crate) fn apply(
    command: &Command,
    request: &Body,
    decoded: Decoded,
    answer: &mut Body,
) -> Result<(), InvalidReply> {
    for (index, value) in decoded {
        let field = &command.answer[index];
        if value.is_null() || !applied(field, &value) {
            continue;
        }
        if let Some(value) = guard(field, request, value)? {
            answer.insert(field.name.to_owned(), value);
        }
    }
    echo_always_applied(command, request, answer);
    Ok(())
}

/// Whether OpenIM reads this non-null value at all.
fn applied(field: &AnswerField, value: &Value) -> bool {
    match field.applied {
        Applied::Ignored => false,
        // `len(resp.X) != 0` / `resp.Remark != ""`.
        Applied::IfNotEmpty => match value {
            Value::Array(items) => !items.is_empty(),
            Value::String(text) => !text.is_empty(),
            _ => true,
        },
        Applied::IfNotNull | Applied::Always => true,
    }
}

/// The field's rule: the value to forward, `None` to drop it, or why the reply is invalid.
fn guard(field: &AnswerField, request: &Body, value: Value) -> Result<Option<Value>, InvalidReply> {
    let name = field.name;
    let original = || non_null(request.get(name));
    match field.guard {
        Guard::Free => Ok(Some(value)),
        Guard::SameAsRequest => same_as_request(name, original(), value),
        Guard::ChosenWhenUnset => match original() {
            None => Ok(Some(value)),
            Some(Value::String(text)) if text.is_empty() => Ok(Some(value)),
            chosen => same_as_request(name, chosen, value),
        },
        Guard::RequestPointerSet => match original() {
            Some(_) => Ok(Some(value)),
            None => Err(InvalidReply::SetsNullPointerField(name.to_owned())),
        },
        Guard::DropUnsetEcho => {
            let unset = original().is_none_or(is_zero);
            Ok((!(unset && is_zero(&value))).then_some(value))
        }
        Guard::SubsetOf(key) => {
            let allowed = request.get(key).and_then(Value::as_array);
            let inside = |item: &Value| allowed.is_some_and(|list| list.contains(item));
            match &value {
                Value::Array(items) if items.iter().all(inside) => Ok(Some(value)),
                _ => Err(InvalidReply::IdentityChanged(name.to_owned())),
            }
        }
        Guard::Unverifiable => Err(InvalidReply::IdentityChanged(name.to_owned())),
        Guard::JsonObjectText => match &value {
            Value::String(text) if go::unmarshals_into_empty_struct(text.as_bytes()) => {
                Ok(Some(value))
            }
            _ => Err(InvalidReply::ContentNotJsonObject),
        },
        Guard::NotBlank => {
            let blank = |value: &Value| value.as_str().is_some_and(|text| text.trim().is_empty());
            if blank(&value) && !original().is_some_and(blank) {
                Err(InvalidReply::BlankGroupName(name.to_owned()))
            } else {
                Ok(Some(value))
            }
        }
        Guard::RegisteredUsers => registered_users(request, value).map(Some),
        Guard::JoiningMembers => joining_members(request, value),
    }
}

fn same_as_request(
    name: &str,
    original: Option<&Value>,
    value: Value,
) -> Result<Option<Value>, InvalidReply> {
    if original == Some(&value) {
        Ok(Some(value))
    } else {
        Err(InvalidReply::IdentityChanged(name.to_owned()))
    }
}

/// Go's zero value of a scalar: what the request shows for "not set".
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_i64() == Some(0),
        Value::Bool(flag) => !flag,
        Value::Null => true,
        Value::Array(_) | Value::Object(_) => false,
    }
}

/// `users` of UserRegister, entry by entry. OpenIM reads every entry to build the rows
/// (`internal/rpc/user/user.go` `UserRegister`), so a `null` one crashes it; the id checks
/// ran before the callback and are not repeated, so only the request's ids may appear, each
/// once; and every field is a plain value, so a field the worker left out is filled from
/// the request's entry for that user instead of being stored as `""` or 0.
fn registered_users(request: &Body, value: Value) -> Result<Value, InvalidReply> {
    let Value::Array(users) = value else {
        return Ok(value);
    };
    let requested = request
        .get("users")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut seen: Vec<&str> = Vec::with_capacity(users.len());
    let mut out = Vec::with_capacity(users.len());
    for (index, user) in users.into_iter().enumerate() {
        let Value::Object(mut user) = user else {
            return Err(InvalidReply::NullEntry(format!("users[{index}]")));
        };
        let id = user.get("userID").and_then(Value::as_str).unwrap_or("");
        let Some(Value::Object(original)) = requested
            .iter()
            .find(|entry| entry.get("userID").and_then(Value::as_str) == Some(id))
        else {
            return Err(InvalidReply::IdentityChanged(format!(
                "users[{index}].userID"
            )));
        };
        let id = original
            .get("userID")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if seen.contains(&id) {
            return Err(InvalidReply::DuplicateEntry(format!(
                "users[{index}].userID"
            )));
        }
        seen.push(id);
        for (key, original_value) in original {
            if !user.contains_key(key) && !original_value.is_null() {
                user.insert(key.clone(), original_value.clone());
            }
        }
        out.push(Value::Object(user));
    }
    Ok(Value::Array(out))
}

/// `memberCallbackList` of MembersJoinGroup. OpenIM reads `*entry.UserID` of every entry with
/// no nil check (`internal/rpc/group/callback.go` `webhookBeforeMembersJoinGroup`), so a
/// `null` entry or `userID` crashes it; an entry for a user who is not joining is skipped
/// by OpenIM, so it is dropped here.
fn joining_members(request: &Body, value: Value) -> Result<Option<Value>, InvalidReply> {
    let Value::Array(entries) = value else {
        return Ok(Some(value));
    };
    let joining = request
        .get("memberList")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (index, entry) in entries.iter().enumerate() {
        match entry {
            Value::Object(member) if member.get("userID").is_some_and(Value::is_string) => {}
            Value::Object(_) => {
                return Err(InvalidReply::NullEntry(format!(
                    "memberCallbackList[{index}].userID"
                )))
            }
            _ => {
                return Err(InvalidReply::NullEntry(format!(
                    "memberCallbackList[{index}]"
                )))
            }
        }
    }
    let kept: Vec<Value> = entries
        .into_iter()
        .filter(|entry| {
            joining.iter().any(|member| {
                member.get("userID").is_some() && member.get("userID") == entry.get("userID")
            })
        })
        .collect();
    Ok((!kept.is_empty()).then_some(Value::Array(kept)))
}

/// Fills every field OpenIM overwrites unconditionally and `answer` leaves out with the
/// request's value (`null` included, when the request has `null`), so that "absent" keeps
/// the request's value there too.
pub(crate) fn echo_always_applied(command: &Command, request: &Body, answer: &mut Body) {
    for field in command.answer {
        if field.applied != Applied::Always || answer.contains_key(field.name) {
            continue;
        }
        if let Some(value) = request.get(field.name) {
            answer.insert(field.name.to_owned(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per hazard of OpenIM fidelity, each through `normalise_reply` with OpenIM's
    //! own request bodies (`fixtures/openim/`).

    use super::*;
    use crate::decision::{default_answer, normalise_reply, DefaultDecision};
    use serde_json::json;

    fn request(bytes: &[u8]) -> Body {
        serde_json::from_slice(bytes).unwrap()
    }

    fn normalise(body: &[u8], reply: &Value) -> Result<Value, InvalidReply> {
        let request = request(body);
        let name = request["callbackCommand"].as_str().unwrap().to_owned();
        let command = Command::lookup(&name).unwrap();
        normalise_reply(command, &request, reply.to_string().as_bytes()).map(Value::Object)
    }

    fn allow_with(fields: Value) -> Value {
        let mut answer = json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0});
        if let (Value::Object(answer), Value::Object(fields)) = (&mut answer, fields) {
            answer.extend(fields);
        }
        answer
    }

    const SET_GROUP_INFO: &[u8] =
        include_bytes!("../../../fixtures/openim/before_set_group_info.json");
    const SET_GROUP_INFO_ALL: &[u8] =
        include_bytes!("../../../fixtures/openim/before_set_group_info.all_fields.json");
    const IMPORT_FRIENDS: &[u8] =
        include_bytes!("../../../fixtures/openim/before_import_friends.json");
    const MSG_MODIFY: &[u8] = include_bytes!("../../../fixtures/openim/before_msg_modify.json");
    const MEMBERS_JOIN: &[u8] =
        include_bytes!("../../../fixtures/openim/before_members_join_group.json");
    const USER_REGISTER: &[u8] =
        include_bytes!("../../../fixtures/openim/before_user_register.json");
    const CREATE_GROUP: &[u8] = include_bytes!("../../../fixtures/openim/before_create_group.json");
    const CREATE_GROUP_WITH_ID: &[u8] =
        include_bytes!("../../../fixtures/openim/before_create_group.with_group_id.json");
    const OFFLINE_PUSH: &[u8] = include_bytes!("../../../fixtures/openim/before_offline_push.json");
    const ONLINE_PUSH: &[u8] = include_bytes!("../../../fixtures/openim/before_online_push.json");
    const GROUP_ONLINE_PUSH: &[u8] =
        include_bytes!("../../../fixtures/openim/before_group_online_push.json");
    const SET_FRIEND_REMARK: &[u8] =
        include_bytes!("../../../fixtures/openim/before_set_friend_remark.json");
    const INVITE: &[u8] = include_bytes!("../../../fixtures/openim/before_invite_join_group.json");
    const SET_GROUP_INFO_EX: &[u8] =
        include_bytes!("../../../fixtures/openim/before_set_group_info_ex.json");

    #[test]
    fn hazard_1_an_echo_of_the_requests_unset_values_is_dropped() {
        // The worker sends the request back: "" and 0 there mean "not set".
        let echo = json!({"groupID":"3316849202","groupName":"Rust <fans> & friends",
            "notification":"","introduction":"","faceURL":"","ex":"","needVerification":0,
            "lookMemberInfo":0,"applyMemberFriend":0});
        let answer = normalise(SET_GROUP_INFO, &echo).unwrap();
        assert_eq!(
            answer,
            allow_with(
                json!({"groupID":"3316849202","groupName":"Rust <fans> & friends",
                "introduction":"","faceURL":""})
            )
        );
        // A real change is kept, 0 included when the request had it set.
        let change = normalise(SET_GROUP_INFO, &json!({"needVerification":1,"ex":"{}"})).unwrap();
        assert_eq!(change["needVerification"], json!(1));
        assert_eq!(change["ex"], json!("{}"));
        let clear = normalise(SET_GROUP_INFO_ALL, &json!({"needVerification":0,"ex":""})).unwrap();
        assert_eq!(clear["needVerification"], json!(0));
        assert_eq!(clear["ex"], json!(""));
    }

    #[test]
    fn hazard_2_every_value_is_typed_as_openim_decodes_it() {
        let wrong = |body: &[u8], reply: Value, field: &str| {
            assert_eq!(
                normalise(body, &reply),
                Err(InvalidReply::WrongType {
                    field: field.to_owned(),
                    expected: match normalise(body, &reply).unwrap_err() {
                        InvalidReply::WrongType { expected, .. } => expected,
                        other => panic!("{other}"),
                    },
                })
            );
        };
        wrong(
            IMPORT_FRIENDS,
            json!({"friendUserIDs":[2,3]}),
            "friendUserIDs[0]",
        );
        // Not a key the request carries, but one OpenIM's answer struct has.
        wrong(MSG_MODIFY, json!({"senderFaceURL":5}), "senderFaceURL");
        wrong(
            MEMBERS_JOIN,
            json!({"memberCallbackList":[{"userID":"6640217793","roleLevel":"60"}]}),
            "memberCallbackList[0].roleLevel",
        );
        wrong(
            OFFLINE_PUSH,
            json!({"offlinePushInfo":{"title":"t","iOSBadgeCount":"yes"}}),
            "offlinePushInfo.iOSBadgeCount",
        );
        wrong(
            MSG_MODIFY,
            json!({"options":{"history":1}}),
            "options.history",
        );
        wrong(
            MSG_MODIFY,
            json!({"msgDataList":"not base64!"}),
            "msgDataList",
        );
        assert!(normalise(IMPORT_FRIENDS, &json!({"friendUserIDs":["9911842207"]})).is_ok());
    }

    #[test]
    fn hazard_3_entries_openim_dereferences_may_not_be_null() {
        for list in [
            json!([{"nickname":"x"}]),
            json!([null]),
            json!([{"userID":null}]),
        ] {
            let error = normalise(MEMBERS_JOIN, &json!({"memberCallbackList": list})).unwrap_err();
            assert!(matches!(error, InvalidReply::NullEntry(_)), "{error}");
        }
        let error = normalise(USER_REGISTER, &json!({"users":[null]})).unwrap_err();
        assert_eq!(error, InvalidReply::NullEntry("users[0]".to_owned()));
        let fine = normalise(
            MEMBERS_JOIN,
            &json!({"memberCallbackList":[{"userID":"6640217793","nickname":"Dan"}]}),
        )
        .unwrap();
        assert_eq!(
            fine["memberCallbackList"],
            json!([{"userID":"6640217793","nickname":"Dan"}])
        );
        // OpenIM writes through the message's push-info pointer; the request never shows it.
        assert_eq!(
            normalise(MSG_MODIFY, &json!({"offlinePushInfo":{"title":"t"}})).unwrap_err(),
            InvalidReply::SetsNullPointerField("offlinePushInfo".to_owned())
        );
    }

    #[test]
    fn hazard_4_content_openim_would_refuse_is_invalid() {
        for content in ["hello", "[1]", "\"text\"", "5", "{\"a\":", "{} x"] {
            assert_eq!(
                normalise(MSG_MODIFY, &json!({ "content": content })),
                Err(InvalidReply::ContentNotJsonObject),
                "{content}"
            );
        }
        // What Go's `json.Unmarshal(content, &struct{}{})` accepts, OpenIM's own check.
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        for content in [
            "{\"content\":\"hi\"}",
            " {} ",
            "null",
            "{\"a\":1e400}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00x\"}",
            &deep,
        ] {
            assert!(normalise(MSG_MODIFY, &json!({ "content": content })).is_ok());
        }
        // A blank group name makes OpenIM drop the whole SetGroupInfoEx update silently.
        // Trimmed as Go's `strings.TrimSpace` trims: Unicode white space.
        for name in ["", "   ", "\t\n", "\u{3000}\u{a0}"] {
            assert_eq!(
                normalise(SET_GROUP_INFO_EX, &json!({ "groupName": name })),
                Err(InvalidReply::BlankGroupName("groupName".to_owned())),
                "{name:?}"
            );
        }
        let renamed = normalise(SET_GROUP_INFO_EX, &json!({"groupName":" Rust "})).unwrap();
        assert_eq!(renamed["groupName"], json!(" Rust "));
        // `null` keeps the request's name; a request whose name is already blank is dropped
        // by OpenIM whatever the answer says.
        let kept = normalise(SET_GROUP_INFO_EX, &json!({"groupName":null})).unwrap();
        assert_eq!(kept["groupName"], json!("Rust <fans> & friends"));
        let mut blank = request(SET_GROUP_INFO_EX);
        blank.insert("groupName".to_owned(), json!(" "));
        let command = Command::lookup("callbackBeforeSetGroupInfoExCommand").unwrap();
        assert!(normalise_reply(command, &blank, br#"{"groupName":""}"#).is_ok());
    }

    #[test]
    fn hazard_5_identity_rules_follow_openims_code() {
        let identity = |body: &[u8], reply: Value| match normalise(body, &reply) {
            Err(InvalidReply::IdentityChanged(field)) => field,
            other => panic!("{other:?}"),
        };
        // OpenIM generates a group id only when the request's is "": the webhook may choose.
        let chosen = normalise(CREATE_GROUP, &json!({"groupID":"g-chosen"})).unwrap();
        assert_eq!(chosen["groupID"], json!("g-chosen"));
        assert_eq!(
            identity(CREATE_GROUP_WITH_ID, json!({"groupID":"other"})),
            "groupID"
        );
        assert_eq!(
            identity(CREATE_GROUP, json!({"ownerUserID":"x"})),
            "ownerUserID"
        );
        // The creator is the client's own unchecked value: a worker may set it.
        let creator = normalise(CREATE_GROUP, &json!({"creatorUserID":"x"})).unwrap();
        assert_eq!(creator["creatorUserID"], json!("x"));
        assert_eq!(identity(CREATE_GROUP, json!({"groupType":0})), "groupType");
        // Lists applied after OpenIM's checks may only shrink.
        assert_eq!(
            identity(
                IMPORT_FRIENDS,
                json!({"friendUserIDs":["9911842207","intruder"]})
            ),
            "friendUserIDs"
        );
        let fewer = normalise(IMPORT_FRIENDS, &json!({"friendUserIDs":["3829410275"]})).unwrap();
        assert_eq!(fewer["friendUserIDs"], json!(["3829410275"]));
        assert_eq!(
            identity(USER_REGISTER, json!({"users":[{"userID":"admin"}]})),
            "users[0].userID"
        );
        assert_eq!(
            identity(OFFLINE_PUSH, json!({"userIDList":["x"]})),
            "userIDList"
        );
        assert_eq!(
            identity(GROUP_ONLINE_PUSH, json!({"userIDList":["9911842207"]})),
            "userIDList"
        );
        assert_eq!(identity(MSG_MODIFY, json!({"recvID":"x"})), "recvID");
        assert_eq!(
            identity(MSG_MODIFY, json!({"sessionType":3})),
            "sessionType"
        );
        // Entries for users not joining are skipped by OpenIM: dropped, not refused.
        let dropped = normalise(
            MEMBERS_JOIN,
            &json!({"memberCallbackList":[{"userID":"nobody","nickname":"x"}]}),
        )
        .unwrap();
        assert!(!dropped
            .as_object()
            .unwrap()
            .contains_key("memberCallbackList"));
    }

    #[test]
    fn register_entries_keep_the_requests_values_for_fields_left_out() {
        let answer = normalise(
            USER_REGISTER,
            &json!({"users":[{"userID":"8153029946","NICKNAME":"Frankie"}]}),
        )
        .unwrap();
        assert_eq!(
            answer["users"],
            json!([{"userID":"8153029946","nickname":"Frankie",
                "faceURL":"https://cdn.example.com/face/frank.png","ex":"{\"dept\":\"R&D\"}",
                "createTime":0,"appMangerLevel":0,"globalRecvMsgOpt":0}])
        );
        assert_eq!(
            normalise(
                USER_REGISTER,
                &json!({"users":[{"userID":"7702315586"},{"userID":"7702315586"}]})
            ),
            Err(InvalidReply::DuplicateEntry("users[1].userID".to_owned()))
        );
    }

    #[test]
    fn hazard_6_fields_openim_ignores_are_dropped() {
        let common = allow_with(json!({}));
        for (body, reply) in [
            (SET_GROUP_INFO_ALL, json!({"notification":"new"})),
            (CREATE_GROUP, json!({"applyMemberFriend":1})),
            (SET_FRIEND_REMARK, json!({"remark":""})),
            (IMPORT_FRIENDS, json!({"friendUserIDs":[]})),
            (USER_REGISTER, json!({"users":[]})),
            (OFFLINE_PUSH, json!({"userIDList":[]})),
            (GROUP_ONLINE_PUSH, json!({"userIDList":[]})),
            (
                ONLINE_PUSH,
                json!({"userIDList":["a"],"offlinePushInfo":{"title":"t"}}),
            ),
            (INVITE, json!({"refusedMembersAccount":["a"]})),
            (MSG_MODIFY, json!({"msgDataList":"aGk=","somethingElse":1})),
        ] {
            let mut answer = normalise(body, &reply).unwrap();
            // SetGroupInfo's answer always echoes its four overwritten fields.
            for echoed in ["groupID", "groupName", "introduction", "faceURL"] {
                if body == SET_GROUP_INFO_ALL {
                    answer.as_object_mut().unwrap().remove(echoed);
                }
            }
            assert_eq!(answer, common, "{reply}");
        }
        // Ignored, but still decoded by OpenIM: a wrong type fails there.
        assert!(normalise(ONLINE_PUSH, &json!({"userIDList":[1]})).is_err());
    }

    #[test]
    fn legacy_set_friend_remark_echoes_the_remark_it_always_overwrites() {
        let mut request = request(SET_FRIEND_REMARK);
        request.insert(
            "callbackCommand".to_owned(),
            json!("callbackBeforeSetFriendRemark"),
        );
        let command = Command::lookup("callbackBeforeSetFriendRemark").unwrap();
        let answer = default_answer(&DefaultDecision::Allow, Some(command), Some(&request));
        assert_eq!(answer["remark"], json!("Bob (work)"));
        let answer = normalise_reply(command, &request, b"{}").unwrap();
        assert_eq!(answer["remark"], json!("Bob (work)"));
        // v3.6 only logs a refusal and then applies the answer: a refusal keeps the remark.
        let reject = DefaultDecision::Reject {
            err_code: 5000,
            err_msg: "paused".to_owned(),
        };
        let answer = default_answer(&reject, Some(command), Some(&request));
        assert_eq!(answer["remark"], json!("Bob (work)"));
        assert_eq!(answer["nextCode"], json!(1));
        let answer = normalise_reply(
            command,
            &request,
            br#"{"nextCode":1,"errCode":5001,"remark":""}"#,
        )
        .unwrap();
        assert_eq!(answer["remark"], json!("Bob (work)"));
        assert_eq!(answer["errCode"], json!(5001));
    }
}
