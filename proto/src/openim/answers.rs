//! The answer struct of every before-callback (`pkg/callbackstruct/*.go` on main, 7848d7c),
//! field by field: its JSON tag and Go type, how OpenIM applies it, and what the gateway must
//! check before it lets a worker's value through.
//!
//! The five common fields (`CommonCallbackResp`, [`COMMON`]) come first in every answer and
//! are not repeated in each command's list. Paths are in openimsdk/open-im-server on main unless a
//! version is named; `sdkws.*` is openimsdk/protocol's `sdkws/sdkws.pb.go`.

use super::go::{field, GoField, GoType};
use crate::answer::fields;

/// How OpenIM applies an answer field to its own request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Copied only when the answer has a non-`null` value (`NotNilReplace(&req.X, resp.X)`
    /// with a pointer, or an explicit `!= nil`).
    IfNotNull,
    /// Copied whatever the answer says (`NotNilReplace(&req.X, &resp.X)`): a missing field
    /// overwrites the request with `""`, `0` or nil.
    Always,
    /// Copied only when a list has elements or a string is not `""`.
    IfNotEmpty,
    /// Decoded, then never read.
    Ignored,
}

/// What the gateway checks before a worker's non-`null` value may reach OpenIM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing beyond the type.
    Free,
    /// Names who or what the operation is about and is applied after OpenIM's permission
    /// checks: it must equal the request's value under the same key (absent there: unset).
    SameAsRequest,
    /// Like [`Guard::SameAsRequest`], except that when the request's value is `""` OpenIM
    /// lets the webhook choose it.
    ChosenWhenUnset,
    /// OpenIM writes through its own pointer: allowed only when the request's value under the
    /// same key is not `null`.
    RequestPointerSet,
    /// The request flattens "not set" into the zero value: a value equal to the request's
    /// zero value would turn "not set" into a change, so it is dropped.
    DropUnsetEcho,
    /// A list of user ids: every element must be in the request's list under this key.
    SubsetOf(&'static str),
    /// A list that OpenIM applies unchecked and the request gives nothing to check it
    /// against: refused when not empty.
    Unverifiable,
    /// Message content: OpenIM refuses the send unless it unmarshals into a Go struct.
    JsonObjectText,
    /// A name OpenIM refuses when it is blank after `strings.TrimSpace`, in a way that drops
    /// the whole update without an error: refused unless the request's own value is already
    /// blank (then OpenIM drops the update whatever the answer says).
    NotBlank,
    /// `users` of UserRegister: entries are dereferenced, ids must be the request's, each
    /// once, and an entry's missing fields would be stored as zero values.
    RegisteredUsers,
    /// `memberCallbackList`: every entry and its `userID` are dereferenced; entries for
    /// users not joining are skipped by OpenIM.
    JoiningMembers,
}

/// One command-specific answer field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerField {
    /// The JSON tag.
    pub name: &'static str,
    /// The Go type (a pointer for "null means not set").
    pub ty: GoType,
    /// How OpenIM applies it.
    pub applied: Applied,
    /// What the gateway checks.
    pub guard: Guard,
}

const fn answer(name: &'static str, ty: GoType, applied: Applied, guard: Guard) -> AnswerField {
    AnswerField {
        name,
        ty,
        applied,
        guard,
    }
}

const STR: GoType = GoType::Str;
const P_STR: GoType = GoType::Ptr(&GoType::Str);
const P_INT32: GoType = GoType::Ptr(&GoType::Int32);
const P_INT64: GoType = GoType::Ptr(&GoType::Int64);
const P_BOOL: GoType = GoType::Ptr(&GoType::Bool);
const STRINGS: GoType = GoType::Slice(&GoType::Str);

use Applied::{Always, IfNotEmpty, IfNotNull, Ignored};
use Guard::{
    ChosenWhenUnset, DropUnsetEcho, Free, JoiningMembers, JsonObjectText, NotBlank,
    RegisteredUsers, RequestPointerSet, SameAsRequest, SubsetOf, Unverifiable,
};

/// `CommonCallbackResp` (`pkg/callbackstruct/common.go`), embedded first in every answer
/// struct: `int32` and `string` fields, so `null` leaves them at 0 and `""`.
pub const COMMON: &[GoField] = &[
    field(fields::ACTION_CODE, GoType::Int32),
    field(fields::ERR_CODE, GoType::Int32),
    field(fields::ERR_MSG, GoType::Str),
    field(fields::ERR_DLT, GoType::Str),
    field(fields::NEXT_CODE, GoType::Int32),
];

/// `sdkws.OfflinePushInfo`: plain fields.
pub const OFFLINE_PUSH_INFO: &[GoField] = &[
    field("title", GoType::Str),
    field("desc", GoType::Str),
    field("ex", GoType::Str),
    field("iOSPushSound", GoType::Str),
    field("iOSBadgeCount", GoType::Bool),
    field("signalInfo", GoType::Str),
];
const P_OFFLINE_PUSH_INFO: GoType = GoType::Ptr(&GoType::Struct(OFFLINE_PUSH_INFO));

/// `sdkws.UserInfo`: plain fields, so a missing key is a zero value.
pub const USER_INFO: &[GoField] = &[
    field("userID", GoType::Str),
    field("nickname", GoType::Str),
    field("faceURL", GoType::Str),
    field("ex", GoType::Str),
    field("createTime", GoType::Int64),
    field("appMangerLevel", GoType::Int32),
    field("globalRecvMsgOpt", GoType::Int32),
];

/// `MemberJoinGroupCallBack` (`pkg/callbackstruct/group.go`): all pointers.
pub const MEMBER_JOIN_GROUP_CALLBACK: &[GoField] = &[
    field("userID", P_STR),
    field("nickname", P_STR),
    field("faceURL", P_STR),
    field("roleLevel", P_INT32),
    field("muteEndTime", P_INT64),
    field("ex", P_STR),
];

/// Only the common fields: allow or refuse (send single/group message, apply to join,
/// add friend, add to blacklist, agree to a friend request).
pub const COMMON_ONLY: &[AnswerField] = &[];

/// `CallbackBeforeInviteUserToGroupResp`: the refused-members list is decoded and its
/// handling is commented out (`internal/rpc/group/callback.go` `webhookBeforeInviteUserToGroup`).
pub const INVITE_USER_TO_GROUP: &[AnswerField] =
    &[answer("refusedMembersAccount", STRINGS, Ignored, Free)];

/// `CallbackMsgModifyCommandResp`, applied in `internal/rpc/msg/callback.go`
/// `webhookBeforeMsgModify`: every field copied when non-null into the message.
pub const MSG_MODIFY: &[AnswerField] = &[
    // Replaced, then `json.Unmarshal(content, &struct{}{})` must succeed or the send fails
    // with ErrArgs (callback.go:160-164).
    answer("content", P_STR, IfNotNull, JsonObjectText),
    // Copied after the permission and blacklist checks; a change would deliver the message
    // to a conversation the sender was never checked against (callback.go:167-168).
    answer("recvID", P_STR, IfNotNull, SameAsRequest),
    answer("groupID", P_STR, IfNotNull, SameAsRequest),
    // The message's ids: a change would make it collide with, or lose, another message.
    answer("clientMsgID", P_STR, IfNotNull, SameAsRequest),
    answer("serverMsgID", P_STR, IfNotNull, SameAsRequest),
    answer("senderPlatformID", P_INT32, IfNotNull, Free),
    answer("senderNickname", P_STR, IfNotNull, Free),
    answer("senderFaceURL", P_STR, IfNotNull, Free),
    // Single or group chat: decides which conversation the message is stored in, after the
    // checks made for the original one.
    answer("sessionType", P_INT32, IfNotNull, SameAsRequest),
    answer("msgFrom", P_INT32, IfNotNull, Free),
    answer("contentType", P_INT32, IfNotNull, Free),
    answer("status", P_INT32, IfNotNull, Free),
    answer("options", GoType::Ptr(&GoType::BoolMap), IfNotNull, Free),
    // `NotNilReplace(msg.MsgData.OfflinePushInfo, resp.OfflinePushInfo)` writes through the
    // message's pointer, nil when the client sent none; the request never carries it
    // (callback.go:166).
    answer(
        "offlinePushInfo",
        P_OFFLINE_PUSH_INFO,
        IfNotNull,
        RequestPointerSet,
    ),
    answer(
        "atUserIDList",
        GoType::Ptr(&GoType::Slice(&GoType::Str)),
        IfNotNull,
        Free,
    ),
    // Decoded (base64) and never used.
    answer("msgDataList", GoType::Ptr(&GoType::Bytes), Ignored, Free),
    answer("attachedInfo", P_STR, IfNotNull, Free),
    answer("ex", P_STR, IfNotNull, Free),
];

/// v3.5/v3.6 `callbackMsgModifyCommand`: the same answer, without the content check
/// (`internal/rpc/msg/callback.go` `callbackMsgModify` at v3.6.0).
pub const MSG_MODIFY_LEGACY: &[AnswerField] = &[
    answer("content", P_STR, IfNotNull, Free),
    answer("recvID", P_STR, IfNotNull, SameAsRequest),
    answer("groupID", P_STR, IfNotNull, SameAsRequest),
    answer("clientMsgID", P_STR, IfNotNull, SameAsRequest),
    answer("serverMsgID", P_STR, IfNotNull, SameAsRequest),
    answer("senderPlatformID", P_INT32, IfNotNull, Free),
    answer("senderNickname", P_STR, IfNotNull, Free),
    answer("senderFaceURL", P_STR, IfNotNull, Free),
    answer("sessionType", P_INT32, IfNotNull, SameAsRequest),
    answer("msgFrom", P_INT32, IfNotNull, Free),
    answer("contentType", P_INT32, IfNotNull, Free),
    answer("status", P_INT32, IfNotNull, Free),
    answer("options", GoType::Ptr(&GoType::BoolMap), IfNotNull, Free),
    answer(
        "offlinePushInfo",
        P_OFFLINE_PUSH_INFO,
        IfNotNull,
        RequestPointerSet,
    ),
    answer(
        "atUserIDList",
        GoType::Ptr(&GoType::Slice(&GoType::Str)),
        IfNotNull,
        Free,
    ),
    answer("msgDataList", GoType::Ptr(&GoType::Bytes), Ignored, Free),
    answer("attachedInfo", P_STR, IfNotNull, Free),
    answer("ex", P_STR, IfNotNull, Free),
];

/// `CallbackBeforeUpdateUserInfoResp` (`internal/rpc/user/callback.go`
/// `webhookBeforeUpdateUserInfo`): copied when non-null into plain strings; the update
/// then skips `""` (`pkg/common/convert/user.go` `UserPb2DBMap`).
pub const UPDATE_USER_INFO: &[AnswerField] = &[
    answer("nickName", P_STR, IfNotNull, Free),
    answer("faceURL", P_STR, IfNotNull, Free),
    answer("ex", P_STR, IfNotNull, Free),
];

/// `CallbackBeforeUpdateUserInfoExResp` (`webhookBeforeUpdateUserInfoEx`):
/// `NotNilReplace(req.UserInfo.X, resp.X)` writes through the client's own wrappers, nil
/// when the client did not set the field. The request's `ex` is never filled, so it is
/// always `null` and an answer `ex` is always refused.
pub const UPDATE_USER_INFO_EX: &[AnswerField] = &[
    answer("nickName", P_STR, IfNotNull, RequestPointerSet),
    answer("faceURL", P_STR, IfNotNull, RequestPointerSet),
    answer("ex", P_STR, IfNotNull, RequestPointerSet),
];

/// `CallbackBeforeUserRegisterResp` (`webhookBeforeUserRegister`): a non-empty list replaces
/// the users to register, after the id checks (`internal/rpc/user/user.go` `UserRegister`),
/// and each entry is dereferenced to build the rows.
pub const USER_REGISTER: &[AnswerField] = &[answer(
    "users",
    GoType::Slice(&GoType::Ptr(&GoType::Struct(USER_INFO))),
    IfNotEmpty,
    RegisteredUsers,
)];

/// `CallbackBeforeCreateGroupResp` (`internal/rpc/group/callback.go`
/// `webhookBeforeCreateGroup`): twelve pointers copied when non-null into the group info.
pub const CREATE_GROUP: &[AnswerField] = &[
    // OpenIM generates an id after the callback only when it is still "", so the webhook may
    // choose one (`internal/rpc/group/group.go` `GenGroupID`); a client's own id stays.
    answer("groupID", P_STR, IfNotNull, ChosenWhenUnset),
    answer("groupName", P_STR, IfNotNull, Free),
    answer("notification", P_STR, IfNotNull, Free),
    answer("introduction", P_STR, IfNotNull, Free),
    answer("faceURL", P_STR, IfNotNull, Free),
    // Copied into the group info, but the stored owner is the RPC's own ownerUserID
    // (`pkg/common/convert/group.go` `Pb2DBGroupInfo`): a change would not happen.
    answer("ownerUserID", P_STR, IfNotNull, SameAsRequest),
    answer("ex", P_STR, IfNotNull, Free),
    answer("status", P_INT32, IfNotNull, Free),
    // Stored as given (`Pb2DBGroupInfo`), and never set or checked by OpenIM: it is
    // whatever the client sent, and nothing reads it for permissions, so a worker's value
    // bypasses no check.
    answer("creatorUserID", P_STR, IfNotNull, Free),
    // Checked (must be 2) before the callback and not again (`group.go` `CreateGroup`).
    answer("groupType", P_INT32, IfNotNull, SameAsRequest),
    answer("needVerification", P_INT32, IfNotNull, Free),
    answer("lookMemberInfo", P_INT32, IfNotNull, Free),
    // Decoded, never copied.
    answer("applyMemberFriend", P_INT32, Ignored, Free),
];

/// `CallbackBeforeMembersJoinGroupResp` (`webhookBeforeMembersJoinGroup`): per entry whose
/// `userID` is a joining member, non-null fields are copied; `*entry.UserID` is read with
/// no nil check (callback.go:130-141).
pub const MEMBERS_JOIN_GROUP: &[AnswerField] = &[answer(
    "memberCallbackList",
    GoType::Slice(&GoType::Ptr(&GoType::Struct(MEMBER_JOIN_GROUP_CALLBACK))),
    IfNotNull,
    JoiningMembers,
)];

/// v3.5.0 to v3.7.1 `callbackBeforeMemberJoinGroupCommand`: one member per call, the same
/// fields at the top level, copied when non-null.
pub const MEMBER_JOIN_GROUP_LEGACY: &[AnswerField] = &[
    answer("nickname", P_STR, IfNotNull, Free),
    answer("faceURL", P_STR, IfNotNull, Free),
    answer("roleLevel", P_INT32, IfNotNull, Free),
    answer("muteEndTime", P_INT64, IfNotNull, Free),
    answer("ex", P_STR, IfNotNull, Free),
];

/// `CallbackBeforeSetGroupMemberInfoResp` (`webhookBeforeSetGroupMemberInfo`): copied when
/// non-null as new wrappers, so nothing is dereferenced.
pub const SET_GROUP_MEMBER_INFO: &[AnswerField] = &[
    answer("ex", P_STR, IfNotNull, Free),
    answer("nickName", P_STR, IfNotNull, Free),
    answer("faceURL", P_STR, IfNotNull, Free),
    answer("roleLevel", P_INT32, IfNotNull, Free),
];

/// `CallbackBeforeSetGroupInfoResp` (`webhookBeforeSetGroupInfo`, callback.go:319-334).
pub const SET_GROUP_INFO: &[AnswerField] = &[
    // Always overwritten; another id would redirect the update to a group the caller was
    // not checked against.
    answer("groupID", STR, Always, SameAsRequest),
    answer("groupName", STR, Always, Free),
    // Decoded, never copied.
    answer("notification", STR, Ignored, Free),
    answer("introduction", STR, Always, Free),
    answer("faceURL", STR, Always, Free),
    // The request flattens the client's nil wrapper into "" and 0 (callback.go:300-312);
    // a non-null answer becomes a new wrapper and is stored, "" and 0 included.
    answer("ex", P_STR, IfNotNull, DropUnsetEcho),
    answer("needVerification", P_INT32, IfNotNull, DropUnsetEcho),
    answer("lookMemberInfo", P_INT32, IfNotNull, DropUnsetEcho),
    answer("applyMemberFriend", P_INT32, IfNotNull, DropUnsetEcho),
];

/// `CallbackBeforeSetGroupInfoExResp` (`webhookBeforeSetGroupInfoEx`, callback.go:395-402):
/// eight fields always overwritten; `null` there is the client's "not changed".
pub const SET_GROUP_INFO_EX: &[AnswerField] = &[
    answer("groupID", STR, Always, SameAsRequest),
    // A non-null name that is blank after trimming makes `UpdateGroupInfoExMap`
    // (`internal/rpc/group/db_map.go`) return an error with an empty map, and
    // `SetGroupInfoEx` (`group.go`) then answers success without updating anything: every
    // other change of the request is lost silently.
    answer("groupName", P_STR, Always, NotBlank),
    answer("notification", P_STR, Ignored, Free),
    answer("introduction", P_STR, Always, Free),
    answer("faceURL", P_STR, Always, Free),
    answer("ex", P_STR, Always, Free),
    answer("needVerification", P_INT32, Always, Free),
    answer("lookMemberInfo", P_INT32, Always, Free),
    answer("applyMemberFriend", P_INT32, Always, Free),
];

/// `CallbackBeforeImportFriendsResp` (`internal/rpc/relation/callback.go`
/// `webhookBeforeImportFriends`): a non-empty list replaces the friends to import, after
/// the existence, self and duplicate checks, which are not repeated.
pub const IMPORT_FRIENDS: &[AnswerField] = &[answer(
    "friendUserIDs",
    STRINGS,
    IfNotEmpty,
    SubsetOf("friendUserIDs"),
)];

/// `CallbackBeforeSetFriendRemarkResp` (`webhookBeforeSetFriendRemark`): copied when not "".
pub const SET_FRIEND_REMARK: &[AnswerField] = &[answer("remark", STR, IfNotEmpty, Free)];

/// v3.5/v3.6 `callbackBeforeSetFriendRemark`: `NotNilReplace(&req.Remark, &resp.Remark)`,
/// always overwritten (`internal/rpc/friend/callback.go` at v3.6.0).
pub const SET_FRIEND_REMARK_LEGACY: &[AnswerField] = &[answer("remark", STR, Always, Free)];

/// `CallbackBeforePushResp` for online push: decoded, nothing read
/// (`internal/push/callback.go` `webhookBeforeOnlinePush`).
pub const ONLINE_PUSH: &[AnswerField] = &[
    answer("userIDList", STRINGS, Ignored, Free),
    answer("offlinePushInfo", P_OFFLINE_PUSH_INFO, Ignored, Free),
];

/// `CallbackBeforeSuperGroupOnlinePushResp` (`webhookBeforeGroupOnlinePush`).
pub const GROUP_ONLINE_PUSH: &[AnswerField] = &[
    // A non-empty list replaces the group's members as push targets, unchecked; the request
    // carries no member list to check it against.
    answer("userIDList", STRINGS, IfNotEmpty, Unverifiable),
    answer("offlinePushInfo", P_OFFLINE_PUSH_INFO, Ignored, Free),
];

/// `CallbackBeforePushResp` for offline push (`webhookBeforeOfflinePush`).
pub const OFFLINE_PUSH: &[AnswerField] = &[
    // A non-empty list replaces the users to push to, unchecked.
    answer("userIDList", STRINGS, IfNotEmpty, SubsetOf("userIDList")),
    // Replaces the message's pointer itself: no dereference.
    answer("offlinePushInfo", P_OFFLINE_PUSH_INFO, IfNotNull, Free),
];

/// `CallbackBeforeCreate{Single,Group}ChatConversationsResp`
/// (`internal/rpc/conversation/callback.go`): seven pointers copied when non-null.
pub const CREATE_CONVERSATIONS: &[AnswerField] = &[
    answer("recvMsgOpt", P_INT32, IfNotNull, Free),
    answer("isPinned", P_BOOL, IfNotNull, Free),
    answer("isPrivateChat", P_BOOL, IfNotNull, Free),
    answer("burnDuration", P_INT32, IfNotNull, Free),
    answer("groupAtType", P_INT32, IfNotNull, Free),
    answer("attachedInfo", P_STR, IfNotNull, Free),
    answer("ex", P_STR, IfNotNull, Free),
];

/// The index of the answer field `key` names for Go: the exact tag, else one equal
/// ignoring case as Go folds it.
pub fn find(fields: &[AnswerField], key: &str) -> Option<usize> {
    super::go::position_by_tag(fields, key, |field| field.name)
}
