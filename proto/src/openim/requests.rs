//! The request struct of every callback, before and after, in main's shape
//! (`pkg/callbackstruct/*.go` on main, 7848d7c), as OpenIM's encoder writes it: keys in
//! struct order, embedded structs flattened, nil pointers and slices as `null`, an embedded
//! nil struct pointer contributing no keys. The v3.5/v3.6 names map to main's struct of the
//! same callback; v3.5's `callbackTransferGroupOwnerAfter` maps to
//! `CallbackTransferGroupOwnerReq` (the same at v3.5.1 and on main), and v3.5.0 to v3.7.1's
//! `callbackBeforeMemberJoinGroupCommand` to [`MEMBER_JOIN_GROUP_LEGACY`].
//!
//! Older versions send some of these structs in another shape (compared at every tag from
//! v3.5.0 to v3.8.3-patch.16; docs/openim.md, section 1.8):
//! - `CommonCallbackReq` (the message callbacks) has `sendTime` only since v3.8.1;
//! - `CallbackBeforeUserRegisterReq` and `CallbackAfterUserRegisterReq` carry `secret`
//!   between `callbackCommand` and `users` from v3.5.0 to v3.8.0;
//! - `CallbackSingleMsgReadReq` at v3.5.x is `{callbackCommand, sendID, receiveID,
//!   contentType (int64)}`, and is never sent there.
//!
//! The mirrors keep main's shape for these three: the gateway reads none of the keys that
//! differ.
//!
//! The gateway forwards requests byte for byte and reads only a few values of a
//! before-callback's request (the originals the answer rules compare with); it reads nothing
//! of an after-callback's. The after-callbacks are mirrored anyway, so that what a worker
//! receives on every subject is written down and held against the bodies in
//! `fixtures/openim/` by the tests, like the before-callbacks' requests.

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

/// A CreateGroup request: the fields given first, then the embedded `*sdkws.GroupInfo`
/// (protocol `sdkws/sdkws.pb.go`) flattened, then `initMemberList`.
macro_rules! create_group_request {
    ($($head:expr),* $(,)?) => {
        &[
            $($head,)*
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
        ]
    };
}

/// `CallbackBeforeCreateGroupReq`: `operationID` and `callbackCommand` come first.
pub const CREATE_GROUP: &[GoField] =
    create_group_request!(field("operationID", STR), field("callbackCommand", STR));

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

/// `CallbackAfterMsgSaveDBReq`: both conversation keys, one of them `""`.
pub const AFTER_MSG_SAVE_DB: &[GoField] =
    message_request!(field("recvID", STR), field("groupID", STR));

/// `CallbackSingleMsgReadReq`: the key `Seqs` starts with a capital.
pub const SINGLE_MSG_READ: &[GoField] = &[
    field("callbackCommand", STR),
    field("conversationID", STR),
    field("userID", STR),
    field("Seqs", GoType::Slice(&GoType::Int64)),
    field("contentType", INT32),
];

/// `CallbackGroupMsgReadReq` (`unreadMsgNum` and `contentType` are Go `int64`).
pub const GROUP_MSG_READ: &[GoField] = &[
    field("callbackCommand", STR),
    field("sendID", STR),
    field("receiveID", STR),
    field("unreadMsgNum", INT),
    field("contentType", INT),
];

/// `CallbackAfterRevokeMsgReq` (`revoke.go`).
pub const REVOKE_MSG: &[GoField] = &[
    field("callbackCommand", STR),
    field("conversationID", STR),
    field("seq", INT),
    field("userID", STR),
];

/// `UserStatusCallbackReq` (`common.go`), then the fields given: the presence requests of
/// `msg_gateway.go`.
macro_rules! user_status_request {
    ($($extra:expr),* $(,)?) => {
        &[
            field("callbackCommand", STR),
            field("operationID", STR),
            field("platformID", INT),
            field("platform", STR),
            field("userID", STR),
            $($extra,)*
        ]
    };
}

/// `CallbackUserOnlineReq`.
pub const USER_ONLINE: &[GoField] = user_status_request!(
    field("seq", INT),
    field("isAppBackground", BOOL),
    field("connID", STR),
);
/// `CallbackUserOfflineReq`.
pub const USER_OFFLINE: &[GoField] = user_status_request!(field("seq", INT), field("connID", STR));
/// `CallbackUserKickOffReq`.
pub const USER_KICK_OFF: &[GoField] = user_status_request!(field("seq", INT));

/// `CallbackAfterUpdateUserInfoReq`: plain strings, unlike the before-request's pointers.
pub const AFTER_UPDATE_USER_INFO: &[GoField] = &[
    field("callbackCommand", STR),
    field("userID", STR),
    field("nickName", STR),
    field("faceURL", STR),
    field("ex", STR),
];

/// `CallbackAfterCreateGroupReq`: no `operationID`, the stored group info.
pub const AFTER_CREATE_GROUP: &[GoField] = create_group_request!(field("callbackCommand", STR));

/// `CallbackAfterJoinGroupReq`.
pub const AFTER_JOIN_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("groupID", STR),
    field("reqMessage", STR),
    field("joinSource", INT32),
    field("inviterUserID", STR),
];

/// `CallbackQuitGroupReq`.
pub const QUIT_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("userID", STR),
];

/// `CallbackKillGroupMemberReq`.
pub const KICK_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("kickedUserIDs", STRINGS),
    field("reason", STR),
];

/// `CallbackDisMissGroupReq`: `groupType` is `string(int32)`, as in `CallbackJoinGroupReq`.
pub const DISMISS_GROUP: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("ownerID", STR),
    field("groupType", STR),
    field("membersID", STRINGS),
];

/// `CallbackAfterSetGroupInfoReq`: strings plain, `ex` and the flags pointers (`null` when
/// not changed), unlike the before-request that flattens them.
pub const AFTER_SET_GROUP_INFO: &[GoField] = &[
    field("callbackCommand", STR),
    field("operationID", STR),
    field("groupID", STR),
    field("groupName", STR),
    field("notification", STR),
    field("introduction", STR),
    field("faceURL", STR),
    field("ex", P_STR),
    field("needVerification", P_INT32),
    field("lookMemberInfo", P_INT32),
    field("applyMemberFriend", P_INT32),
];

/// `CallbackTransferGroupOwnerReq`, the same on main and at v3.5.1.
pub const TRANSFER_GROUP_OWNER: &[GoField] = &[
    field("callbackCommand", STR),
    field("groupID", STR),
    field("oldOwnerUserID", STR),
    field("newOwnerUserID", STR),
];

/// `CallbackAfterAddFriendReq`: the before-request without `ex`.
pub const AFTER_ADD_FRIEND: &[GoField] = &[
    field("callbackCommand", STR),
    field("fromUserID", STR),
    field("toUserID", STR),
    field("reqMsg", STR),
];

/// `CallbackAfterDeleteFriendReq`.
pub const AFTER_DELETE_FRIEND: &[GoField] = &[
    field("callbackCommand", STR),
    field("ownerUserID", STR),
    field("friendUserID", STR),
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

/// The request struct of an after-callback, by command name (v3.5/v3.6 names included).
/// Where Go has two structs of the same shape (a before- and an after-request), the same
/// table serves both.
pub fn after_request(command: &str) -> Option<&'static [GoField]> {
    Some(match command {
        // `CallbackAfterSendSingleMsgReq`, `CallbackAfterSendGroupMsgReq`.
        "callbackAfterSendSingleMsgCommand" => SEND_SINGLE_MSG,
        "callbackAfterSendGroupMsgCommand" => SEND_GROUP_MSG,
        "callbackAfterMsgSaveDBCommand" => AFTER_MSG_SAVE_DB,
        "callbackAfterSingleMsgReadCommand" | "callbackSingleMsgRead" => SINGLE_MSG_READ,
        "callbackAfterGroupMsgReadCommand" | "callbackGroupMsgReadCommand" => GROUP_MSG_READ,
        "callbackBeforeAfterMsgCommand" => REVOKE_MSG,
        "callbackAfterUserOnlineCommand" | "callbackUserOnlineCommand" => USER_ONLINE,
        "callbackAfterUserOfflineCommand" | "callbackUserOfflineCommand" => USER_OFFLINE,
        "callbackAfterUserKickOffCommand" | "callbackUserKickOffCommand" => USER_KICK_OFF,
        "callbackAfterUpdateUserInfoCommand" => AFTER_UPDATE_USER_INFO,
        // `CallbackAfterUpdateUserInfoExReq`: wrappers, as in the before-request.
        "callbackAfterUpdateUserInfoExCommand" => UPDATE_USER_INFO,
        "callbackAfterUserRegisterCommand" => USER_REGISTER,
        "callbackAfterCreateGroupCommand" => AFTER_CREATE_GROUP,
        "callbackAfterJoinGroupCommand" => AFTER_JOIN_GROUP,
        "callbackAfterQuitGroupCommand" | "callbackQuitGroupCommand" => QUIT_GROUP,
        "callbackAfterKickGroupCommand" | "callbackKillGroupCommand" => KICK_GROUP,
        "callbackAfterDisMissGroupCommand" | "callbackDisMissGroupCommand" => DISMISS_GROUP,
        "callbackAfterSetGroupInfoCommand" => AFTER_SET_GROUP_INFO,
        "callbackAfterSetGroupInfoExCommand" => SET_GROUP_INFO_EX,
        "callbackAfterSetGroupMemberInfoCommand" => SET_GROUP_MEMBER_INFO,
        "callbackAfterTransferGroupOwnerCommand"
        | "callbackAfterTransferGroupOwner"
        | "callbackTransferGroupOwnerAfter" => TRANSFER_GROUP_OWNER,
        "callbackAfterAddFriendCommand" => AFTER_ADD_FRIEND,
        "callbackAfterAddFriendAgreeCommand" => ADD_FRIEND_AGREE,
        "callbackAfterDeleteFriendCommand" => AFTER_DELETE_FRIEND,
        "callbackAfterImportFriendsCommand" => IMPORT_FRIENDS,
        // `CallbackAfterRemoveBlackReq`: owner and black user, as in AddBlack.
        "callbackAfterRemoveBlackCommand" => ADD_BLACK,
        "callbackAfterSetFriendRemarkCommand" | "callbackAfterSetFriendRemark" => SET_FRIEND_REMARK,
        "callbackAfterCreateSingleChatConversationsCommand" => CREATE_SINGLE_CHAT_CONVERSATIONS,
        "callbackAfterCreateGroupChatConversationsCommand" => CREATE_GROUP_CHAT_CONVERSATIONS,
        _ => return None,
    })
}

/// The request struct of any callback, before or after, by command name.
pub fn request(command: &str) -> Option<&'static [GoField]> {
    before_request(command).or_else(|| after_request(command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CallbackKind, COMMANDS};
    use crate::openim::go::decode_struct;
    use serde_json::{Map, Value};
    use std::path::Path;

    #[test]
    fn every_command_has_a_request_struct_of_its_kind() {
        for command in COMMANDS {
            let (own, other) = match command.kind {
                CallbackKind::Before => (before_request(command.name), after_request(command.name)),
                CallbackKind::After => (after_request(command.name), before_request(command.name)),
            };
            assert!(own.is_some(), "{} has no request struct", command.name);
            assert!(
                other.is_none(),
                "{} is mirrored as the wrong kind",
                command.name
            );
        }
    }

    /// Every fixture decodes into its command's mirror, and its keys are exactly the mirror's
    /// tags, in the mirror's order (Go writes keys in struct order, and no request struct uses
    /// `omitempty`). The one key set allowed to be missing is the push request's embedded
    /// offline push info, which contributes no keys when its pointer is nil.
    #[test]
    fn every_fixture_is_written_in_its_mirrors_shape() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/openim");
        let embedded_push_info: Vec<&str> = OFFLINE_PUSH_INFO.iter().map(|f| f.name).collect();
        let mut checked = [0_usize; 2];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = path.display();
            let body: Map<String, Value> =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let command = body["callbackCommand"].as_str().unwrap();
            let kind = crate::Command::lookup(command).unwrap().kind;
            let fields = request(command).unwrap_or_else(|| panic!("{name}: no mirror"));
            assert!(decode_struct(fields, &body).is_ok(), "{name}");
            let keys: Vec<&str> = body.keys().map(String::as_str).collect();
            let present: Vec<&str> = fields
                .iter()
                .map(|f| f.name)
                .filter(|n| body.contains_key(*n))
                .collect();
            assert_eq!(
                keys, present,
                "{name}: keys not the mirror's, or not in its order"
            );
            let missing: Vec<&str> = fields
                .iter()
                .map(|f| f.name)
                .filter(|n| !body.contains_key(*n))
                .collect();
            assert!(
                missing.is_empty() || (fields == PUSH && missing == embedded_push_info),
                "{name}: the mirror's {missing:?} are not in the body"
            );
            checked[usize::from(kind == CallbackKind::After)] += 1;
        }
        // 33 before-callback bodies, 31 after-callback bodies (v3.5's transfer included).
        assert_eq!(checked, [33, 31], "fixtures checked [before, after]");
    }
}
