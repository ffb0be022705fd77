//! The request struct of every before-callback (`pkg/callbackstruct/*.go` on main, 7848d7c),
//! as OpenIM's encoder writes it: keys in struct order, embedded structs flattened, nil
//! pointers and slices as `null`, an embedded nil struct pointer contributing no keys.
//!
//! The gateway forwards requests byte for byte and reads only a few of their values (the
//! originals the answer rules compare with); this mirror says what those values are, and
//! the tests hold it against the bodies in `fixtures/openim/`. After-callback requests are
//! not mirrored: the gateway never reads them.

use super::answers::{OFFLINE_PUSH_INFO, USER_INFO};
use super::go::{field, GoField, GoType};

const STR: GoType = GoType::Str;
const INT32: GoType = GoType::Int32;
/// Go `int`, `int64` and `uint32` alike: the gateway never does arithmetic on them.
const INT: GoType = GoType::Int64;
const BOOL: GoType = GoType::Bool;
const P_STR: GoType = GoType::Ptr(&GoType::Str);
const P_INT32: GoType = GoType::Ptr(&GoType::Int32);
const STRINGS: GoType = GoType::Slice(&GoType::Str);

macro_rules! message_request {
    ($($extra:expr),* $(,)?) => {
        &[
            // `CommonCallbackReq` (`pkg/callbackstruct/common.go`).
            field("sendID", STR),
            field("callbackCommand", STR),
            field("serverMsgID", STR),
            field("clientMsgID", STR),
            field("operationID", STR),
            field("senderPlatformID", INT32),
            field("senderNickname", STR),
            field("sessionType", INT32),
            field("msgFrom", INT32),
            field("contentType", INT32),
            field("status", INT32),
            field("sendTime", INT),
            field("createTime", INT),
            field("content", STR),
            field("seq", INT),
            field("atUserList", STRINGS),
            field("faceURL", STR),
            field("ex", STR),
            $($extra,)*
        ]
    };
}

/// `CallbackBeforeSendSingleMsgReq`.
pub const SEND_SINGLE_MSG: &[GoField] = message_request!(field("recvID", STR));
/// `CallbackBeforeSendGroupMsgReq`.
pub const SEND_GROUP_MSG: &[GoField] = message_request!(field("groupID", STR));
/// `CallbackMsgModifyCommandReq`: the common part only (no `recvID`, `groupID` or push info).
pub const MSG_MODIFY: &[GoField] = message_request!();

/// `CallbackBeforeUpdateUserInfoReq` and its Ex sibling (wrappers marshal as the value).
pub const UPDATE_USER_INFO: &[GoField] = &[
    field("callbackCommand", STR),
    field("userID", STR),
    field("nickName", P_STR),
    field("faceURL", P_STR),
    field("ex", P_STR),
];

/// `CallbackBeforeUserRegisterReq`.
pub const USER_REGISTER: &[GoField] = &[
    field("callbackCommand", STR),
    field(
        "users",
        GoType::Slice(&GoType::Ptr(&GoType::Struct(USER_INFO))),
    ),
];

/// `apistruct.GroupAddMemberInfo`.
const GROUP_ADD_MEMBER_INFO: &[GoField] = &[field("userID", STR), field("roleLevel", INT32)];

/// `CallbackBeforeCreateGroupReq`: `operationID`, `callbackCommand`, the embedded
/// `sdkws.GroupInfo`, `initMemberList`.
pub const CREATE_GROUP: &[GoField] = &[
    field("operationID", STR),
    field("callbackCommand", STR),
    field("groupID", STR),
    field("groupName", STR),
    field("notification", STR),
    field("introduction", STR),
    field("faceURL", STR),
    field("ownerUserID", STR),
    field("createTime", INT),
    field("memberCount", INT),
    field("ex", STR),
    field("status", INT32),
    field("creatorUserID", STR),
    field("groupType", INT32),
    field("needVerification", INT32),
    field("lookMemberInfo", INT32),
    field("applyMemberFriend", INT32),
    field("notificationUpdateTime", INT),
    field("notificationUserID", STR),
    field(
        "initMemberList",
        GoType::Slice(&GoType::Ptr(&GoType::Struct(GROUP_ADD_MEMBER_INFO))),
    ),
];

/// `CallbackGroupMember`.
const GROUP_MEMBER: &[GoField] = &[field("userID", STR), field("ex", STR)];

/// `CallbackBeforeMembersJoinGroupReq`.
pub const MEMBERS_JOIN_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field(
        "memberList",
        GoType::Slice(&GoType::Ptr(&GoType::Struct(GROUP_MEMBER))),
    ),
    field("groupEx", STR),
];

/// v3.5.0 to v3.7.1 `CallbackBeforeMemberJoinGroupReq`: one member per call.
pub const MEMBER_JOIN_GROUP_LEGACY: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("userID", STR),
    field("ex", STR),
    field("groupEx", STR),
];

/// `CallbackBeforeSetGroupMemberInfoReq`.
pub const SET_GROUP_MEMBER_INFO: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("userID", STR),
    field("nickName", P_STR),
    field("faceURL", P_STR),
    field("roleLevel", P_INT32),
    field("ex", P_STR),
];

/// `CallbackJoinGroupReq`: `groupType` is `string(int32)`, one character.
pub const JOIN_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("groupType", STR),
    field("applyID", STR),
    field("reqMessage", STR),
    field("ex", STR),
];

/// `CallbackBeforeInviteUserToGroupReq`.
pub const INVITE_USER_TO_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("groupID", STR),
    field("reason", STR),
    field("invitedUserIDs", STRINGS),
];

/// `CallbackBeforeSetGroupInfoReq`: unset wrappers flattened into `""` and 0.
pub const SET_GROUP_INFO: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("groupID", STR),
    field("groupName", STR),
    field("notification", STR),
    field("introduction", STR),
    field("faceURL", STR),
    field("ex", STR),
    field("needVerification", INT32),
    field("lookMemberInfo", INT32),
    field("applyMemberFriend", INT32),
];

/// `CallbackBeforeSetGroupInfoExReq`: wrappers, `null` when not changed.
pub const SET_GROUP_INFO_EX: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("groupID", STR),
    field("groupName", P_STR),
    field("notification", P_STR),
    field("introduction", P_STR),
    field("faceURL", P_STR),
    field("ex", P_STR),
    field("needVerification", P_INT32),
    field("lookMemberInfo", P_INT32),
    field("applyMemberFriend", P_INT32),
];

/// `CallbackBeforeAddFriendReq`.
pub const ADD_FRIEND: &[GoField] = &[
    field("callbackCommand", STR),
    field("fromUserID", STR),
    field("toUserID", STR),
    field("reqMsg", STR),
    field("ex", STR),
];

/// `CallbackBeforeAddBlackReq`.
pub const ADD_BLACK: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserID", STR),
    field("blackUserID", STR),
];

/// `CallbackBeforeAddFriendAgreeReq`: the responder under `blackUserID`.
pub const ADD_FRIEND_AGREE: &[GoField] = &[
    field("callbackCommand", STR),
    field("fromUserID", STR),
    field("blackUserID", STR),
    field("HandleResult", INT32),
    field("HandleMsg", STR),
];

/// `CallbackBeforeImportFriendsReq`.
pub const IMPORT_FRIENDS: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserID", STR),
    field("friendUserIDs", STRINGS),
];

/// `CallbackBeforeSetFriendRemarkReq`.
pub const SET_FRIEND_REMARK: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserID", STR),
    field("friendUserID", STR),
    field("remark", STR),
];

/// `CallbackBeforePushReq`: `UserStatusBatchCallbackReq`, then the embedded
/// `*sdkws.OfflinePushInfo` (no keys when nil), then the message's fields.
pub const PUSH: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("platformID", INT),
    field("platform", STR),
    field("userIDList", STRINGS),
    OFFLINE_PUSH_INFO[0],
    OFFLINE_PUSH_INFO[1],
    OFFLINE_PUSH_INFO[2],
    OFFLINE_PUSH_INFO[3],
    OFFLINE_PUSH_INFO[4],
    OFFLINE_PUSH_INFO[5],
    field("clientMsgID", STR),
    field("sendID", STR),
    field("groupID", STR),
    field("contentType", INT32),
    field("sessionType", INT32),
    field("atUserIDList", STRINGS),
    field("content", STR),
];

/// `CallbackBeforeSuperGroupOnlinePushReq`: no `userIDList`.
pub const GROUP_ONLINE_PUSH: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("platformID", INT),
    field("platform", STR),
    field("clientMsgID", STR),
    field("sendID", STR),
    field("groupID", STR),
    field("contentType", INT32),
    field("sessionType", INT32),
    field("atUserIDList", STRINGS),
    field("content", STR),
    field("seq", INT),
];

/// `CallbackBeforeCreateSingleChatConversationsReq`: keys spelled `...Id`.
pub const CREATE_SINGLE_CHAT_CONVERSATIONS: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserId", STR),
    field("conversationId", STR),
    field("conversationType", INT32),
    field("userId", STR),
    field("recvMsgOpt", INT32),
    field("isPinned", BOOL),
    field("isPrivateChat", BOOL),
    field("burnDuration", INT32),
    field("groupAtType", INT32),
    field("attachedInfo", STR),
    field("ex", STR),
];

/// `CallbackBeforeCreateGroupChatConversationsReq`: `groupId` where the single one has
/// `userId`.
pub const CREATE_GROUP_CHAT_CONVERSATIONS: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserId", STR),
    field("conversationId", STR),
    field("conversationType", INT32),
    field("groupId", STR),
    field("recvMsgOpt", INT32),
    field("isPinned", BOOL),
    field("isPrivateChat", BOOL),
    field("burnDuration", INT32),
    field("groupAtType", INT32),
    field("attachedInfo", STR),
    field("ex", STR),
];

/// The request struct of a before-callback, by command name (v3.5/v3.6 names included).
pub fn before_request(command: &str) -> Option<&'static [GoField]> {
    Some(match command {
        "callbackBeforeSendSingleMsgCommand" => SEND_SINGLE_MSG,
        "callbackBeforeSendGroupMsgCommand" => SEND_GROUP_MSG,
        "callbackBeforeMsgModifyCommand" | "callbackMsgModifyCommand" => MSG_MODIFY,
        "callbackBeforeUpdateUserInfoCommand" | "callbackBeforeUpdateUserInfoExCommand" => {
            UPDATE_USER_INFO
        }
        "callbackBeforeUserRegisterCommand" => USER_REGISTER,
        "callbackBeforeCreateGroupCommand" => CREATE_GROUP,
        "callbackBeforeMembersJoinGroupCommand" => MEMBERS_JOIN_GROUP,
        "callbackBeforeMemberJoinGroupCommand" => MEMBER_JOIN_GROUP_LEGACY,
        "callbackBeforeSetGroupMemberInfoCommand" => SET_GROUP_MEMBER_INFO,
        "callbackBeforeJoinGroupCommand" => JOIN_GROUP,
        "callbackBeforeInviteJoinGroupCommand" => INVITE_USER_TO_GROUP,
        "callbackBeforeSetGroupInfoCommand" => SET_GROUP_INFO,
        "callbackBeforeSetGroupInfoExCommand" => SET_GROUP_INFO_EX,
        "callbackBeforeAddFriendCommand" => ADD_FRIEND,
        "callbackBeforeAddBlackCommand" => ADD_BLACK,
        "callbackBeforeAddFriendAgreeCommand" => ADD_FRIEND_AGREE,
        "callbackBeforeImportFriendsCommand" => IMPORT_FRIENDS,
        "callbackBeforeSetFriendRemarkCommand" | "callbackBeforeSetFriendRemark" => {
            SET_FRIEND_REMARK
        }
        "callbackBeforeOnlinePushCommand"
        | "callbackOnlinePushCommand"
        | "callbackBeforeOfflinePushCommand"
        | "callbackOfflinePushCommand" => PUSH,
        "callbackBeforeGroupOnlinePushCommand" | "callbackSuperGroupOnlinePushCommand" => {
            GROUP_ONLINE_PUSH
        }
        "callbackBeforeCreateSingleChatConversationsCommand" => CREATE_SINGLE_CHAT_CONVERSATIONS,
        "callbackBeforeCreateGroupChatConversationsCommand" => CREATE_GROUP_CHAT_CONVERSATIONS,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CallbackKind, COMMANDS};
    use crate::openim::go::decode_struct;
    use serde_json::{Map, Value};
    use std::path::Path;

    #[test]
    fn every_before_command_has_a_request_struct() {
        for command in COMMANDS.iter().filter(|c| c.kind == CallbackKind::Before) {
            assert!(before_request(command.name).is_some(), "{}", command.name);
        }
    }

    /// Every before-callback fixture decodes into its mirror, and its keys are exactly the
    /// mirror's tags, in the mirror's order (Go writes keys in struct order).
    #[test]
    fn the_fixtures_are_written_in_the_mirrors_shape() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/openim");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let body: Map<String, Value> =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let command = body["callbackCommand"].as_str().unwrap();
            let Some(fields) = before_request(command) else {
                continue;
            };
            let name = path.display();
            assert!(decode_struct(fields, &body).is_ok(), "{name}");
            let order: Vec<&str> = fields
                .iter()
                .map(|f| f.name)
                .filter(|n| body.contains_key(*n))
                .collect();
            let keys: Vec<&str> = body.keys().map(String::as_str).collect();
            assert_eq!(keys, order, "{name}");
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} before-callback fixtures");
    }
}
