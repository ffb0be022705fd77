//! The catalog of every callback command OpenIM sends, from v3.5 to main.
//!
//! Read from openimsdk/open-im-server `pkg/callbackstruct/constant.go` on main (52 commands)
//! and v3.6.0 (the 16 names that changed since). The kind comes from this table, never from
//! the name: `callbackBeforeAfterMsgCommand` is an after-callback.
//!
//! The table also holds every per-command fact about OpenIM's answer that the gateway's
//! validation, normalisation and default answers depend on: the Go type of each answer
//! field, the fields OpenIM overwrites even when the answer leaves them out, and the fields
//! it dereferences through the request's pointer (docs/openim.md says where each comes from).

/// Whether OpenIM waits for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// `SyncPost`: OpenIM waits; the answer allows, rejects or modifies the operation.
    Before,
    /// `AsyncPost`: a notification; OpenIM ignores the answer.
    After,
}

impl CallbackKind {
    /// The label used in metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

/// The Go type of an answer field, as far as the JSON decode is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// `string` or `*string`.
    Str,
    /// `int32` or `*int32`.
    Int32,
}

impl FieldType {
    /// Whether Go's decoder accepts `value` for a field of this type. `null` is always
    /// accepted: Go leaves the field at its zero value or nil pointer.
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        match self {
            Self::Str => value.is_string() || value.is_null(),
            Self::Int32 => value.is_null() || as_int32(value).is_some(),
        }
    }

    /// What a valid value looks like, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Str => "a string or null",
            Self::Int32 => "an integer that fits int32, or null",
        }
    }
}

/// `value` as an int32, when it is an integer in range (Go refuses `1.0` for an int).
pub fn as_int32(value: &serde_json::Value) -> Option<i32> {
    value.as_i64().and_then(|number| i32::try_from(number).ok())
}

/// One OpenIM callback command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The name OpenIM appends to the webhook URL and puts in the body's `callbackCommand`.
    pub name: &'static str,
    /// Before (decides) or after (notification).
    pub kind: CallbackKind,
    /// Answer fields with a fixed Go type, so that a reply OpenIM could not decode is refused
    /// by the gateway instead of failing the user's operation with 90007.
    pub answer_fields: &'static [(&'static str, FieldType)],
    /// Answer fields OpenIM overwrites the request with even when the answer leaves them out
    /// (`NotNilReplace` on a field's address): an answer must echo them from the request.
    pub overwritten_fields: &'static [&'static str],
    /// Answer fields OpenIM dereferences through the request's own pointer: setting one the
    /// request has `null` crashes OpenIM's handler.
    pub deref_fields: &'static [&'static str],
}

/// Answer fields that name who or what the operation is about. OpenIM applies an answer after
/// its permission checks, so changing one would redirect an authorised operation.
pub const IDENTITY_FIELDS: &[&str] = &["groupID", "userID", "sendID", "recvID"];

/// The seed command: a group member's nickname, avatar, role or extra data is about to change.
pub const BEFORE_SET_GROUP_MEMBER_INFO: &str = "callbackBeforeSetGroupMemberInfoCommand";

const SET_GROUP_INFO_OVERWRITTEN: &[&str] = &["groupID", "groupName", "faceURL", "introduction"];
const SET_GROUP_INFO_EX_OVERWRITTEN: &[&str] = &[
    "groupID",
    "groupName",
    "faceURL",
    "introduction",
    "ex",
    "needVerification",
    "lookMemberInfo",
    "applyMemberFriend",
];
/// `CallbackBeforeSetGroupMemberInfoResp`: four pointers.
const SET_GROUP_MEMBER_INFO_FIELDS: &[(&str, FieldType)] = &[
    ("nickName", FieldType::Str),
    ("faceURL", FieldType::Str),
    ("roleLevel", FieldType::Int32),
    ("ex", FieldType::Str),
];
/// `CallbackBeforeSetGroupInfoResp` and its Ex sibling.
const SET_GROUP_INFO_FIELDS: &[(&str, FieldType)] = &[
    ("groupID", FieldType::Str),
    ("groupName", FieldType::Str),
    ("notification", FieldType::Str),
    ("introduction", FieldType::Str),
    ("faceURL", FieldType::Str),
    ("ex", FieldType::Str),
    ("needVerification", FieldType::Int32),
    ("lookMemberInfo", FieldType::Int32),
    ("applyMemberFriend", FieldType::Int32),
];
/// `CallbackBeforeUpdateUserInfoResp` and its Ex sibling.
const UPDATE_USER_INFO_FIELDS: &[(&str, FieldType)] = &[
    ("nickName", FieldType::Str),
    ("faceURL", FieldType::Str),
    ("ex", FieldType::Str),
];
const UPDATE_USER_INFO_EX_DEREF: &[&str] = &["nickName", "faceURL", "ex"];
const MSG_MODIFY_DEREF: &[&str] = &["offlinePushInfo"];

const fn before(name: &'static str) -> Command {
    Command {
        name,
        kind: CallbackKind::Before,
        answer_fields: &[],
        overwritten_fields: &[],
        deref_fields: &[],
    }
}

const fn after(name: &'static str) -> Command {
    Command {
        name,
        kind: CallbackKind::After,
        answer_fields: &[],
        overwritten_fields: &[],
        deref_fields: &[],
    }
}

const fn typed(mut command: Command, fields: &'static [(&'static str, FieldType)]) -> Command {
    command.answer_fields = fields;
    command
}

const fn overwrites(mut command: Command, fields: &'static [&'static str]) -> Command {
    command.overwritten_fields = fields;
    command
}

const fn derefs(mut command: Command, fields: &'static [&'static str]) -> Command {
    command.deref_fields = fields;
    command
}

/// Every command, main's 52 first, then the 16 v3.5/v3.6 names.
pub const COMMANDS: &[Command] = &[
    // main: before (23)
    before("callbackBeforeSendSingleMsgCommand"),
    before("callbackBeforeSendGroupMsgCommand"),
    derefs(before("callbackBeforeMsgModifyCommand"), MSG_MODIFY_DEREF),
    typed(
        before("callbackBeforeUpdateUserInfoCommand"),
        UPDATE_USER_INFO_FIELDS,
    ),
    typed(
        derefs(
            before("callbackBeforeUpdateUserInfoExCommand"),
            UPDATE_USER_INFO_EX_DEREF,
        ),
        UPDATE_USER_INFO_FIELDS,
    ),
    before("callbackBeforeUserRegisterCommand"),
    before("callbackBeforeCreateGroupCommand"),
    before("callbackBeforeMembersJoinGroupCommand"),
    typed(
        before(BEFORE_SET_GROUP_MEMBER_INFO),
        SET_GROUP_MEMBER_INFO_FIELDS,
    ),
    before("callbackBeforeJoinGroupCommand"),
    before("callbackBeforeInviteJoinGroupCommand"),
    typed(
        overwrites(
            before("callbackBeforeSetGroupInfoCommand"),
            SET_GROUP_INFO_OVERWRITTEN,
        ),
        SET_GROUP_INFO_FIELDS,
    ),
    typed(
        overwrites(
            before("callbackBeforeSetGroupInfoExCommand"),
            SET_GROUP_INFO_EX_OVERWRITTEN,
        ),
        SET_GROUP_INFO_FIELDS,
    ),
    before("callbackBeforeAddFriendCommand"),
    before("callbackBeforeAddBlackCommand"),
    before("callbackBeforeAddFriendAgreeCommand"),
    before("callbackBeforeImportFriendsCommand"),
    before("callbackBeforeSetFriendRemarkCommand"),
    before("callbackBeforeOnlinePushCommand"),
    before("callbackBeforeGroupOnlinePushCommand"),
    before("callbackBeforeOfflinePushCommand"),
    before("callbackBeforeCreateSingleChatConversationsCommand"),
    before("callbackBeforeCreateGroupChatConversationsCommand"),
    // main: after (29)
    after("callbackAfterSendSingleMsgCommand"),
    after("callbackAfterSendGroupMsgCommand"),
    after("callbackAfterMsgSaveDBCommand"),
    after("callbackAfterSingleMsgReadCommand"),
    after("callbackAfterGroupMsgReadCommand"),
    // The revoke notification: constant CallbackAfterRevokeMsgCommand, value "Before...".
    after("callbackBeforeAfterMsgCommand"),
    after("callbackAfterUserOnlineCommand"),
    after("callbackAfterUserOfflineCommand"),
    after("callbackAfterUserKickOffCommand"),
    after("callbackAfterUpdateUserInfoCommand"),
    after("callbackAfterUpdateUserInfoExCommand"),
    after("callbackAfterUserRegisterCommand"),
    after("callbackAfterCreateGroupCommand"),
    after("callbackAfterJoinGroupCommand"),
    after("callbackAfterQuitGroupCommand"),
    after("callbackAfterKickGroupCommand"),
    after("callbackAfterDisMissGroupCommand"),
    after("callbackAfterSetGroupInfoCommand"),
    after("callbackAfterSetGroupInfoExCommand"),
    after("callbackAfterSetGroupMemberInfoCommand"),
    after("callbackAfterTransferGroupOwnerCommand"),
    after("callbackAfterAddFriendCommand"),
    after("callbackAfterAddFriendAgreeCommand"),
    after("callbackAfterDeleteFriendCommand"),
    after("callbackAfterImportFriendsCommand"),
    after("callbackAfterRemoveBlackCommand"),
    after("callbackAfterSetFriendRemarkCommand"),
    after("callbackAfterCreateSingleChatConversationsCommand"),
    after("callbackAfterCreateGroupChatConversationsCommand"),
    // v3.5 / v3.6 names, renamed in v3.7
    derefs(before("callbackMsgModifyCommand"), MSG_MODIFY_DEREF),
    before("callbackBeforeMemberJoinGroupCommand"),
    before("callbackBeforeSetFriendRemark"),
    before("callbackOnlinePushCommand"),
    before("callbackOfflinePushCommand"),
    before("callbackSuperGroupOnlinePushCommand"),
    after("callbackAfterSetFriendRemark"),
    after("callbackAfterTransferGroupOwner"),
    after("callbackQuitGroupCommand"),
    after("callbackKillGroupCommand"),
    after("callbackDisMissGroupCommand"),
    after("callbackSingleMsgRead"),
    after("callbackGroupMsgReadCommand"),
    after("callbackUserOnlineCommand"),
    after("callbackUserOfflineCommand"),
    after("callbackUserKickOffCommand"),
];

impl Command {
    /// The catalog entry for `name`, matched exactly (OpenIM sends the constant verbatim).
    pub fn lookup(name: &str) -> Option<&'static Self> {
        COMMANDS.iter().find(|command| command.name == name)
    }

    /// The Go type of the answer field `key` (matched as Go matches keys, ignoring ASCII
    /// case), when the catalog records it.
    pub fn answer_field_type(&self, key: &str) -> Option<FieldType> {
        self.answer_fields
            .iter()
            .find(|(field, _)| key.eq_ignore_ascii_case(field))
            .map(|(_, field_type)| *field_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn catalog_holds_main_and_legacy_commands_once() {
        let names: HashSet<_> = COMMANDS.iter().map(|c| c.name).collect();
        assert_eq!(names.len(), COMMANDS.len(), "a command is listed twice");
        assert_eq!(COMMANDS.len(), 52 + 16);
        let before = COMMANDS[..52]
            .iter()
            .filter(|c| c.kind == CallbackKind::Before)
            .count();
        assert_eq!(before, 23, "main has 23 before-callbacks");
    }

    #[test]
    fn kind_comes_from_the_table_not_the_name() {
        let revoke = Command::lookup("callbackBeforeAfterMsgCommand").unwrap();
        assert_eq!(revoke.kind, CallbackKind::After);
        let seed = Command::lookup(BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        assert_eq!(seed.kind, CallbackKind::Before);
        assert_eq!(
            Command::lookup("callbackOnlinePushCommand").unwrap().kind,
            CallbackKind::Before
        );
        assert_eq!(
            Command::lookup("callbackUserOnlineCommand").unwrap().kind,
            CallbackKind::After
        );
    }

    #[test]
    fn unknown_and_differently_cased_names_are_not_found() {
        assert!(Command::lookup("callbackBeforeSomethingNewCommand").is_none());
        assert!(Command::lookup("callbackbeforesetgroupmemberinfocommand").is_none());
        assert!(Command::lookup("").is_none());
    }

    #[test]
    fn answer_field_types_are_matched_like_go_matches_keys() {
        let seed = Command::lookup(BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        assert_eq!(seed.answer_field_type("roleLevel"), Some(FieldType::Int32));
        assert_eq!(seed.answer_field_type("NICKNAME"), Some(FieldType::Str));
        assert_eq!(seed.answer_field_type("groupName"), None);
        assert!(FieldType::Int32.accepts(&serde_json::json!(60)));
        assert!(!FieldType::Int32.accepts(&serde_json::json!(60.0)));
        assert!(!FieldType::Int32.accepts(&serde_json::json!(2_147_483_648_i64)));
        assert!(FieldType::Str.accepts(&serde_json::Value::Null));
        assert!(!FieldType::Str.accepts(&serde_json::json!(1)));
    }

    #[test]
    fn set_group_info_commands_record_the_fields_openim_overwrites() {
        let info = Command::lookup("callbackBeforeSetGroupInfoCommand").unwrap();
        assert_eq!(info.overwritten_fields.len(), 4);
        let info_ex = Command::lookup("callbackBeforeSetGroupInfoExCommand").unwrap();
        assert_eq!(info_ex.overwritten_fields.len(), 8);
    }
}
