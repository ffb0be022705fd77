//! OpenIM request bodies, byte for byte as OpenIM's Go encoder writes them.
//!
//! The files are the workspace's `fixtures/openim/` (see its README), included at compile
//! time: `\u003c` escapes, `null` pointers and the trailing newline included. The hand-made bodies
//! below follow the same encoder rules for commands the shared set does not cover.

/// `callbackBeforeSetGroupMemberInfoCommand`, only `nickName` set (padded, with `<>&`).
pub const SET_MEMBER_NICKNAME_ONLY: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_member_info.nickname_only.json");
/// `callbackBeforeSetGroupMemberInfoCommand`, every field set, roleLevel 60.
pub const SET_MEMBER_ALL_FIELDS: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_member_info.all_fields.json");
/// `callbackBeforeSetGroupMemberInfoCommand`, only `roleLevel` 20 set.
pub const SET_MEMBER_ROLE_ONLY: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_member_info.role_only.json");
/// `callbackBeforeSetGroupMemberInfoCommand`, `nickName` is `""` (clearing it).
pub const SET_MEMBER_CLEAR_NICKNAME: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_member_info.clear_nickname.json");
/// `callbackAfterSetGroupMemberInfoCommand`.
pub const AFTER_SET_MEMBER: &[u8] =
    include_bytes!("../../fixtures/openim/after_set_group_member_info.json");
/// `callbackBeforeSetGroupInfoCommand`: unset strings `""`, flags `0`.
pub const SET_GROUP_INFO: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_info.json");
/// `callbackBeforeSendSingleMsgCommand`: carries `operationID` in the body.
pub const SEND_SINGLE_MSG: &[u8] =
    include_bytes!("../../fixtures/openim/before_send_single_msg.json");
/// `callbackBeforeAfterMsgCommand`: the revoke after-callback whose name says "Before".
pub const AFTER_REVOKE_MSG: &[u8] = include_bytes!("../../fixtures/openim/after_revoke_msg.json");

/// The command each shared fixture is sent as, with its body.
pub const ALL: &[(&str, &[u8])] = &[
    (SET_MEMBER, SET_MEMBER_NICKNAME_ONLY),
    (SET_MEMBER, SET_MEMBER_ALL_FIELDS),
    (SET_MEMBER, SET_MEMBER_ROLE_ONLY),
    (SET_MEMBER, SET_MEMBER_CLEAR_NICKNAME),
    ("callbackAfterSetGroupMemberInfoCommand", AFTER_SET_MEMBER),
    ("callbackBeforeSetGroupInfoCommand", SET_GROUP_INFO),
    ("callbackBeforeSendSingleMsgCommand", SEND_SINGLE_MSG),
    ("callbackBeforeAfterMsgCommand", AFTER_REVOKE_MSG),
];

/// The seed command.
pub const SET_MEMBER: &str = openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;

/// `callbackBeforeUpdateUserInfoExCommand` with `nickName` and `ex` `null` and `faceURL` set
/// (`CallbackBeforeUpdateUserInfoExReq`: `*wrapperspb.StringValue` marshals as a plain
/// string or `null`).
pub const UPDATE_USER_INFO_EX_NICKNAME_NULL: &[u8] = b"{\"callbackCommand\":\"callbackBeforeUpdateUserInfoExCommand\",\"userID\":\"5427181639\",\"nickName\":null,\"faceURL\":\"https://cdn.example.com/face/a.png\",\"ex\":null}\n";

/// `callbackBeforeUpdateUserInfoExCommand` with `nickName` set.
pub const UPDATE_USER_INFO_EX_NICKNAME_SET: &[u8] = b"{\"callbackCommand\":\"callbackBeforeUpdateUserInfoExCommand\",\"userID\":\"5427181639\",\"nickName\":\"Alice\",\"faceURL\":null,\"ex\":null}\n";

/// `callbackBeforeSetGroupInfoExCommand` (`CallbackBeforeSetGroupInfoExReq`): every wrapper
/// value-or-`null`.
pub const SET_GROUP_INFO_EX: &[u8] = b"{\"callbackCommand\":\"callbackBeforeSetGroupInfoExCommand\",\"operationID\":\"\",\"groupID\":\"3316849202\",\"groupName\":\"Rust \\u003cfans\\u003e\",\"notification\":null,\"introduction\":null,\"faceURL\":\"https://cdn.example.com/g.png\",\"ex\":null,\"needVerification\":null,\"lookMemberInfo\":1,\"applyMemberFriend\":null}\n";

/// A `callbackBeforeSetGroupMemberInfoCommand` body for member `user_id` with nickname
/// `nick_name` (JSON-escaped here), in OpenIM's key order and with its trailing newline.
pub fn set_member_body(
    user_id: &str,
    nick_name: Option<&str>,
    face_url: Option<&str>,
    role_level: Option<i32>,
) -> Vec<u8> {
    let string_or_null = |value: Option<&str>| {
        value.map_or_else(
            || "null".to_owned(),
            |text| serde_json::Value::String(text.to_owned()).to_string(),
        )
    };
    format!(
        "{{\"callbackCommand\":\"{SET_MEMBER}\",\"groupID\":\"3316849202\",\"userID\":{},\"nickName\":{},\"faceURL\":{},\"roleLevel\":{},\"ex\":null}}\n",
        serde_json::Value::String(user_id.to_owned()),
        string_or_null(nick_name),
        string_or_null(face_url),
        role_level.map_or_else(|| "null".to_owned(), |level| level.to_string()),
    )
    .into_bytes()
}
