//! The catalog of every callback command OpenIM sends, from v3.5 to main.
//!
//! Read from openimsdk/open-im-server `pkg/callbackstruct/constant.go` on main (52 commands)
//! and v3.6.0 (the 16 names that changed since), plus v3.5's `callbackTransferGroupOwnerAfter`. The kind comes from this table, never from
//! the name: `callbackBeforeAfterMsgCommand` is an after-callback.
//!
//! The table also holds every per-command fact the gateway depends on: the answer struct
//! with how OpenIM applies each field (`crate::openim::answers`), the versions that send the
//! command, and whether anything sends it at all (docs/openim.md says where each comes from).

use crate::openim::answers::{self, AnswerField, Applied};

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

/// One OpenIM callback command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    /// The name OpenIM appends to the webhook URL and puts in the body's `callbackCommand`.
    pub name: &'static str,
    /// Before (decides) or after (notification).
    pub kind: CallbackKind,
    /// The command-specific fields of OpenIM's answer struct, with how OpenIM applies each
    /// and what the gateway checks (`crate::openim::answers`). Empty for after-callbacks and
    /// for before-callbacks whose answer is only allow or refuse.
    pub answer: &'static [AnswerField],
    /// The OpenIM versions that send this command under this name (docs/openim.md, 1.7).
    pub versions: &'static str,
    /// Defined as a constant but sent by no code path in the versions above: the route
    /// exists so that a future caller is answered, nothing more.
    pub never_sent: bool,
}

/// Answer keys that name who or what the operation is about. When a command's answer struct
/// does not have one, OpenIM ignores it; a reply that changes one is still refused, because
/// the worker means a redirect that would not happen.
pub const IDENTITY_FIELDS: &[&str] = &["groupID", "userID", "sendID", "recvID"];

/// The seed command: a group member's nickname, avatar, role or extra data is about to change.
pub const BEFORE_SET_GROUP_MEMBER_INFO: &str = "callbackBeforeSetGroupMemberInfoCommand";

/// Sent by every version from v3.5.0 to main.
const ALL: &str = "v3.5.0 to main";
/// Since the v3.7.0 renames.
const V37: &str = "v3.7.0 to main";
/// Only the v3.5/v3.6 name.
const LEGACY: &str = "v3.5.x and v3.6.x";
/// Only on main (after v3.8.3-patch.16).
const MAIN: &str = "main only";
/// Defined in every version, called by OpenIM only since v3.8.1 (docs/openim.md, 1.7).
const V381: &str = "v3.8.1 to main";

const fn before(
    name: &'static str,
    answer: &'static [AnswerField],
    versions: &'static str,
) -> Command {
    Command {
        name,
        kind: CallbackKind::Before,
        answer,
        versions,
        never_sent: false,
    }
}

const fn after(name: &'static str, versions: &'static str) -> Command {
    Command {
        name,
        kind: CallbackKind::After,
        answer: &[],
        versions,
        never_sent: false,
    }
}

const fn never_sent(mut command: Command) -> Command {
    command.never_sent = true;
    command
}

/// Every command: main's 52 first, then the 16 v3.5/v3.6 names and v3.5's
/// `callbackTransferGroupOwnerAfter`.
///
/// In v3.6.0 a before-callback's refusal is only logged (`pkg/common/http/http_client.go`
/// `callBackPostReturn`): the gateway answers the same way, OpenIM just does not act on it.
pub const COMMANDS: &[Command] = &[
    // main: before (23)
    before(
        "callbackBeforeSendSingleMsgCommand",
        answers::COMMON_ONLY,
        ALL,
    ),
    before(
        "callbackBeforeSendGroupMsgCommand",
        answers::COMMON_ONLY,
        ALL,
    ),
    before("callbackBeforeMsgModifyCommand", answers::MSG_MODIFY, V37),
    before(
        "callbackBeforeUpdateUserInfoCommand",
        answers::UPDATE_USER_INFO,
        ALL,
    ),
    before(
        "callbackBeforeUpdateUserInfoExCommand",
        answers::UPDATE_USER_INFO_EX,
        ALL,
    ),
    before(
        "callbackBeforeUserRegisterCommand",
        answers::USER_REGISTER,
        ALL,
    ),
    before(
        "callbackBeforeCreateGroupCommand",
        answers::CREATE_GROUP,
        ALL,
    ),
    before(
        "callbackBeforeMembersJoinGroupCommand",
        answers::MEMBERS_JOIN_GROUP,
        "v3.8.0 to main",
    ),
    before(
        BEFORE_SET_GROUP_MEMBER_INFO,
        answers::SET_GROUP_MEMBER_INFO,
        ALL,
    ),
    before("callbackBeforeJoinGroupCommand", answers::COMMON_ONLY, ALL),
    before(
        "callbackBeforeInviteJoinGroupCommand",
        answers::INVITE_USER_TO_GROUP,
        ALL,
    ),
    before(
        "callbackBeforeSetGroupInfoCommand",
        answers::SET_GROUP_INFO,
        ALL,
    ),
    before(
        "callbackBeforeSetGroupInfoExCommand",
        answers::SET_GROUP_INFO_EX,
        "v3.8.1 to main",
    ),
    before("callbackBeforeAddFriendCommand", answers::COMMON_ONLY, ALL),
    before("callbackBeforeAddBlackCommand", answers::COMMON_ONLY, V381),
    before(
        "callbackBeforeAddFriendAgreeCommand",
        answers::COMMON_ONLY,
        ALL,
    ),
    before(
        "callbackBeforeImportFriendsCommand",
        answers::IMPORT_FRIENDS,
        ALL,
    ),
    before(
        "callbackBeforeSetFriendRemarkCommand",
        answers::SET_FRIEND_REMARK,
        V37,
    ),
    before("callbackBeforeOnlinePushCommand", answers::ONLINE_PUSH, V37),
    before(
        "callbackBeforeGroupOnlinePushCommand",
        answers::GROUP_ONLINE_PUSH,
        V37,
    ),
    before(
        "callbackBeforeOfflinePushCommand",
        answers::OFFLINE_PUSH,
        V37,
    ),
    before(
        "callbackBeforeCreateSingleChatConversationsCommand",
        answers::CREATE_CONVERSATIONS,
        MAIN,
    ),
    before(
        "callbackBeforeCreateGroupChatConversationsCommand",
        answers::CREATE_CONVERSATIONS,
        MAIN,
    ),
    // main: after (29)
    after("callbackAfterSendSingleMsgCommand", ALL),
    after("callbackAfterSendGroupMsgCommand", ALL),
    after("callbackAfterMsgSaveDBCommand", MAIN),
    after("callbackAfterSingleMsgReadCommand", V37),
    after("callbackAfterGroupMsgReadCommand", V37),
    // The revoke notification: constant CallbackAfterRevokeMsgCommand, value "Before...".
    after("callbackBeforeAfterMsgCommand", ALL),
    after("callbackAfterUserOnlineCommand", V37),
    after("callbackAfterUserOfflineCommand", V37),
    // `webhookAfterUserKickOff` has no caller on main or v3.8.3-patch.16.
    never_sent(after("callbackAfterUserKickOffCommand", V37)),
    after("callbackAfterUpdateUserInfoCommand", ALL),
    after("callbackAfterUpdateUserInfoExCommand", ALL),
    after("callbackAfterUserRegisterCommand", ALL),
    after("callbackAfterCreateGroupCommand", ALL),
    after("callbackAfterJoinGroupCommand", ALL),
    after("callbackAfterQuitGroupCommand", V37),
    after("callbackAfterKickGroupCommand", V37),
    after("callbackAfterDisMissGroupCommand", V37),
    after("callbackAfterSetGroupInfoCommand", ALL),
    after("callbackAfterSetGroupInfoExCommand", "v3.8.1 to main"),
    after("callbackAfterSetGroupMemberInfoCommand", ALL),
    after("callbackAfterTransferGroupOwnerCommand", V37),
    after("callbackAfterAddFriendCommand", ALL),
    after("callbackAfterAddFriendAgreeCommand", "v3.8.1 to main"),
    after("callbackAfterDeleteFriendCommand", ALL),
    after("callbackAfterImportFriendsCommand", ALL),
    after("callbackAfterRemoveBlackCommand", V381),
    after("callbackAfterSetFriendRemarkCommand", V37),
    after("callbackAfterCreateSingleChatConversationsCommand", MAIN),
    after("callbackAfterCreateGroupChatConversationsCommand", MAIN),
    // v3.5 / v3.6 names, renamed in v3.7 (MemberJoinGroup in v3.8)
    before(
        "callbackMsgModifyCommand",
        answers::MSG_MODIFY_LEGACY,
        LEGACY,
    ),
    before(
        "callbackBeforeMemberJoinGroupCommand",
        answers::MEMBER_JOIN_GROUP_LEGACY,
        "v3.5.0 to v3.7.1",
    ),
    before(
        "callbackBeforeSetFriendRemark",
        answers::SET_FRIEND_REMARK_LEGACY,
        LEGACY,
    ),
    before("callbackOnlinePushCommand", answers::ONLINE_PUSH, LEGACY),
    before("callbackOfflinePushCommand", answers::OFFLINE_PUSH, LEGACY),
    before(
        "callbackSuperGroupOnlinePushCommand",
        answers::GROUP_ONLINE_PUSH,
        LEGACY,
    ),
    // Synchronous in v3.5/v3.6, called after the change is stored: an answer cannot undo it.
    after("callbackAfterSetFriendRemark", LEGACY),
    after("callbackAfterTransferGroupOwner", "v3.6.x"),
    after("callbackQuitGroupCommand", LEGACY),
    after("callbackKillGroupCommand", LEGACY),
    after("callbackDisMissGroupCommand", LEGACY),
    // Skipped unless `contentType == 101`, but it holds the conversation type (1-4).
    never_sent(after("callbackSingleMsgRead", LEGACY)),
    never_sent(after("callbackGroupMsgReadCommand", LEGACY)),
    after("callbackUserOnlineCommand", LEGACY),
    after("callbackUserOfflineCommand", LEGACY),
    // Defined, no caller.
    never_sent(after("callbackUserKickOffCommand", LEGACY)),
    // v3.5's name, called synchronously after the transfer is committed
    // (`internal/rpc/group/callback.go` `CallbackTransferGroupOwnerAfter` at v3.5.0): a
    // refusal would refuse something already done.
    after("callbackTransferGroupOwnerAfter", "v3.5.x"),
];

impl Command {
    /// The catalog entry for `name`, matched exactly (OpenIM sends the constant verbatim).
    pub fn lookup(name: &str) -> Option<&'static Self> {
        COMMANDS.iter().find(|command| command.name == name)
    }

    /// Whether OpenIM overwrites some of its request with the answer even when the answer
    /// leaves a field out, so that every answer, defaults included, must echo the request.
    pub fn echoes_request(&self) -> bool {
        self.answer
            .iter()
            .any(|field| field.applied == Applied::Always)
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
        assert_eq!(COMMANDS.len(), 52 + 16 + 1);
        let before = COMMANDS[..52]
            .iter()
            .filter(|c| c.kind == CallbackKind::Before)
            .count();
        assert_eq!(before, 23, "main has 23 before-callbacks");
        assert!(COMMANDS
            .iter()
            .filter(|c| c.kind == CallbackKind::After)
            .all(|c| c.answer.is_empty()));
    }

    #[test]
    fn v35_transfer_and_never_sent_commands_are_recorded() {
        let transfer = Command::lookup("callbackTransferGroupOwnerAfter").unwrap();
        assert_eq!(transfer.kind, CallbackKind::After);
        assert_eq!(transfer.versions, "v3.5.x");
        let never: Vec<_> = COMMANDS
            .iter()
            .filter(|c| c.never_sent)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            never,
            [
                "callbackAfterUserKickOffCommand",
                "callbackSingleMsgRead",
                "callbackGroupMsgReadCommand",
                "callbackUserKickOffCommand"
            ]
        );
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
    fn answer_fields_are_matched_like_go_matches_keys() {
        let seed = Command::lookup(BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        assert_eq!(answers::find(seed.answer, "roleLevel"), Some(3));
        assert_eq!(answers::find(seed.answer, "NICKNAME"), Some(1));
        assert_eq!(answers::find(seed.answer, "groupName"), None);
    }

    #[test]
    fn only_the_commands_that_overwrite_from_the_answer_echo_the_request() {
        let echoing: Vec<_> = COMMANDS
            .iter()
            .filter(|c| c.echoes_request())
            .map(|c| c.name)
            .collect();
        assert_eq!(
            echoing,
            [
                "callbackBeforeSetGroupInfoCommand",
                "callbackBeforeSetGroupInfoExCommand",
                "callbackBeforeSetFriendRemark"
            ]
        );
    }
}
