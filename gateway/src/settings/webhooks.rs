//! OpenIM's own `webhooks.yml` (`GATEWAY_OPENIM_WEBHOOKS`): each callback's `timeout`, so
//! that each command's budget is what OpenIM really waits for it, less the safety margin.
//!
//! OpenIM gives every callback block its own `timeout` in seconds and applies it only when it
//! is above 0; its HTTP client stops every call at 15 s anyway. So 0, a negative value, a
//! missing key or anything above 15 all mean 15 s. The gateway only reads the file: `enable`
//! and `url` are used for the start-up lines and warnings, never to refuse a callback (OpenIM
//! may be reloaded with another file than the one the gateway read).
//!
//! The file's keys are not always the command names: most are `callback` + the key with its
//! first letter raised + `Command`, and [`KEY_EXCEPTIONS`] lists the others.

use std::{collections::HashMap, time::Duration};

#[cfg(test)]
use openim_gateway_proto::catalog;
use openim_gateway_proto::Command;
use serde::Deserialize;

use super::table::OPENIM_TIMEOUT_CAP_MS;

/// The file's keys whose commands do not follow the naming rule.
const KEY_EXCEPTIONS: &[(&str, &[&str])] = &[
    // v3.8 renamed the command; v3.7 sends the old name with the same block.
    (
        "beforeMemberJoinGroup",
        &[
            "callbackBeforeMembersJoinGroupCommand",
            "callbackBeforeMemberJoinGroupCommand",
        ],
    ),
    ("beforeApplyJoinGroup", &["callbackBeforeJoinGroupCommand"]),
    (
        "beforeInviteUserToGroup",
        &["callbackBeforeInviteJoinGroupCommand"],
    ),
    ("afterKickGroupMember", &["callbackAfterKickGroupCommand"]),
    ("afterDismissGroup", &["callbackAfterDisMissGroupCommand"]),
    ("afterRevokeMsg", &["callbackBeforeAfterMsgCommand"]),
];

/// Keys of OpenIM's stock `webhooks.yml` that OpenIM never sends a callback for, with the
/// reason. They are skipped without a warning: every operator using the stock file would
/// otherwise be told about a callback that cannot happen.
pub const KNOWN_UNUSED_KEYS: &[(&str, &str)] = &[(
    "afterGroupMsgRevoke",
    "OpenIM reads the block (pkg/common/config/config.go, AfterGroupMsgRevoke) but no code of it sends a callback for it; a revoke, in a group too, drives afterRevokeMsg",
)];

/// The catalog commands a block of the file configures (none for a key this gateway does not
/// know, such as a callback newer than its catalog).
pub fn commands_of_key(key: &str) -> Vec<&'static Command> {
    if let Some((_, names)) = KEY_EXCEPTIONS.iter().find(|(known, _)| *known == key) {
        return names
            .iter()
            .filter_map(|name| Command::lookup(name))
            .collect();
    }
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return Vec::new();
    };
    let name = format!(
        "callback{}{}Command",
        first.to_ascii_uppercase(),
        chars.as_str()
    );
    Command::lookup(&name).into_iter().collect()
}

/// One callback block; the other keys (`failedContinue`, `deniedTypes`, `attentionIds`) do
/// not concern the gateway.
#[derive(Debug, Deserialize)]
struct Block {
    #[serde(default)]
    enable: bool,
    #[serde(default)]
    timeout: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    url: Option<String>,
    #[serde(flatten)]
    blocks: HashMap<String, Block>,
}

/// One callback as OpenIM's file configures it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The file's key.
    pub key: String,
    /// The command it drives.
    pub command: &'static Command,
    /// Whether OpenIM calls it.
    pub enabled: bool,
    /// How long OpenIM waits for it.
    pub timeout: Duration,
}

/// What the gateway takes from OpenIM's `webhooks.yml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenImWebhooks {
    /// OpenIM's `url`.
    pub url: Option<String>,
    /// Every block that drives a catalog command, sorted by command.
    pub callbacks: Vec<Callback>,
    /// Keys that drive no command this gateway knows.
    pub unknown_keys: Vec<String>,
}

/// OpenIM's rule: a timeout is used only above 0, and nothing waits past 15 s.
pub fn effective_timeout(seconds: Option<i64>) -> Duration {
    let cap = Duration::from_millis(OPENIM_TIMEOUT_CAP_MS);
    match seconds {
        Some(seconds) if seconds > 0 => {
            let seconds = u64::try_from(seconds).unwrap_or(u64::MAX);
            Duration::from_secs(seconds).min(cap)
        }
        _ => cap,
    }
}

impl OpenImWebhooks {
    /// Parses the file's text. The error says what is wrong without repeating the file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = serde_norway::from_str(text)
            .map_err(|error| format!("must be OpenIM's webhooks.yml ({error})"))?;
        let mut callbacks = Vec::new();
        let mut unknown_keys = Vec::new();
        for (key, block) in file.blocks {
            if KNOWN_UNUSED_KEYS.iter().any(|(unused, _)| *unused == key) {
                continue;
            }
            let commands = commands_of_key(&key);
            if commands.is_empty() {
                unknown_keys.push(key);
                continue;
            }
            for command in commands {
                callbacks.push(Callback {
                    key: key.clone(),
                    command,
                    enabled: block.enable,
                    timeout: effective_timeout(block.timeout),
                });
            }
        }
        callbacks.sort_by_key(|callback| callback.command.name);
        unknown_keys.sort();
        Ok(Self {
            url: file.url,
            callbacks,
            unknown_keys,
        })
    }

    /// The keys of the blocks OpenIM calls (`enable: true`), sorted, each once.
    pub fn enabled_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .callbacks
            .iter()
            .filter(|callback| callback.enabled)
            .map(|callback| callback.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// How many blocks of the file drive a command this gateway knows.
    pub fn known_keys(&self) -> usize {
        let mut keys: Vec<&str> = self
            .callbacks
            .iter()
            .map(|callback| callback.key.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }

    /// What the file enables, in a sentence: how many callbacks and which, or a warning
    /// (`Err`) when it enables none, as OpenIM's stock file does (every `enable: false`).
    pub fn enabled_summary(&self) -> Result<String, String> {
        let enabled = self.enabled_keys();
        if enabled.is_empty() {
            return Err(format!(
                "OpenIM's webhooks.yml enables none of its {} callbacks (every block has enable: false, as in OpenIM's stock file): OpenIM will not call the gateway at all; set enable: true on each callback a worker should decide or hear",
                self.known_keys()
            ));
        }
        Ok(format!(
            "OpenIM's webhooks.yml enables {} of {} callbacks: {}",
            enabled.len(),
            self.known_keys(),
            enabled.join(", ")
        ))
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("must be a readable file ({error})"))?;
        Self::parse(&text)
    }

    /// What is wrong with OpenIM's `url` for the gateway, if anything: OpenIM appends `/` and
    /// the command, so a trailing slash doubles it, and a query string ends up before the
    /// command, which then is no path segment at all.
    pub fn url_problem(&self) -> Option<&'static str> {
        let url = self.url.as_deref()?;
        if url.contains('?') {
            Some("has a query string: OpenIM appends /{command} after it, so the gateway sees no command")
        } else if url.ends_with('/') {
            Some("ends with a slash: OpenIM adds one before the command, and the gateway gets a doubled slash")
        } else {
            None
        }
    }
}

/// Every block key of OpenIM's shipped `webhooks.yml` on main, for the mapping test.
#[cfg(test)]
const SHIPPED_KEYS: &[&str] = &[
    "beforeSendSingleMsg",
    "beforeUpdateUserInfoEx",
    "afterUpdateUserInfoEx",
    "afterSendSingleMsg",
    "beforeSendGroupMsg",
    "beforeMsgModify",
    "afterSendGroupMsg",
    "afterMsgSaveDB",
    "afterUserOnline",
    "afterUserOffline",
    "afterUserKickOff",
    "beforeOfflinePush",
    "beforeOnlinePush",
    "beforeGroupOnlinePush",
    "beforeAddFriend",
    "beforeUpdateUserInfo",
    "afterUpdateUserInfo",
    "beforeCreateGroup",
    "afterCreateGroup",
    "beforeMemberJoinGroup",
    "beforeSetGroupMemberInfo",
    "afterSetGroupMemberInfo",
    "afterQuitGroup",
    "afterKickGroupMember",
    "afterDismissGroup",
    "beforeApplyJoinGroup",
    "afterGroupMsgRead",
    "afterSingleMsgRead",
    "beforeUserRegister",
    "afterUserRegister",
    "afterTransferGroupOwner",
    "beforeSetFriendRemark",
    "afterSetFriendRemark",
    "afterGroupMsgRevoke",
    "afterJoinGroup",
    "beforeInviteUserToGroup",
    "afterSetGroupInfo",
    "beforeSetGroupInfo",
    "afterSetGroupInfoEx",
    "beforeSetGroupInfoEx",
    "afterRevokeMsg",
    "beforeAddBlack",
    "afterAddFriend",
    "beforeAddFriendAgree",
    "afterAddFriendAgree",
    "afterDeleteFriend",
    "beforeImportFriends",
    "afterImportFriends",
    "afterRemoveBlack",
    "beforeCreateSingleChatConversations",
    "afterCreateSingleChatConversations",
    "beforeCreateGroupChatConversations",
    "afterCreateGroupChatConversations",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_key_drives_a_catalog_command() {
        for key in SHIPPED_KEYS
            .iter()
            .filter(|key| !KNOWN_UNUSED_KEYS.iter().any(|(unused, _)| unused == *key))
        {
            let commands = commands_of_key(key);
            assert!(!commands.is_empty(), "{key}");
            let before = key.starts_with("before");
            for command in commands {
                assert_eq!(
                    command.kind == catalog::CallbackKind::Before,
                    before,
                    "{key}: {}",
                    command.name
                );
            }
        }
    }

    #[test]
    fn a_stock_key_openim_never_sends_is_skipped_without_a_warning() {
        let webhooks = OpenImWebhooks::parse(
            "afterGroupMsgRevoke:\n  enable: true\n  timeout: 5\nafterSomethingNew:\n  enable: true\n",
        )
        .unwrap();
        assert_eq!(webhooks.unknown_keys, ["afterSomethingNew"]);
        assert!(webhooks.callbacks.is_empty());
        for (key, reason) in KNOWN_UNUSED_KEYS {
            assert!(SHIPPED_KEYS.contains(key), "{key}");
            assert!(commands_of_key(key).is_empty(), "{key}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn the_summary_counts_the_enabled_blocks_and_warns_when_there_is_none() {
        let none = OpenImWebhooks::parse(
            "url: http://gw:10006/x\nbeforeSendSingleMsg:\n  enable: false\nbeforeMemberJoinGroup:\n  enable: false\n",
        )
        .unwrap();
        let warning = none.enabled_summary().unwrap_err();
        assert!(
            warning.contains("enables none of its 2 callbacks"),
            "{warning}"
        );
        let some = OpenImWebhooks::parse(
            "beforeSendSingleMsg:\n  enable: true\nbeforeMemberJoinGroup:\n  enable: true\nafterSendSingleMsg:\n  enable: false\n",
        )
        .unwrap();
        // beforeMemberJoinGroup drives two commands, and counts once.
        assert_eq!(
            some.enabled_summary().unwrap(),
            "OpenIM's webhooks.yml enables 2 of 3 callbacks: beforeMemberJoinGroup, beforeSendSingleMsg"
        );
    }

    #[test]
    fn timeouts_follow_openims_rule() {
        let second = Duration::from_secs(1);
        assert_eq!(effective_timeout(Some(2)), 2 * second);
        assert_eq!(effective_timeout(Some(15)), 15 * second);
        for capped in [None, Some(0), Some(-3), Some(16), Some(i64::MAX)] {
            assert_eq!(effective_timeout(capped), 15 * second, "{capped:?}");
        }
    }

    #[test]
    fn a_url_with_a_trailing_slash_or_a_query_is_a_problem() {
        for url in ["http://gw:10006/x/", "http://gw:10006/x?token=1"] {
            let webhooks = OpenImWebhooks::parse(&format!("url: {url}\n")).unwrap();
            assert!(webhooks.url_problem().is_some(), "{url}");
        }
    }

    #[test]
    fn a_file_that_is_not_webhooks_yml_is_refused() {
        for text in [
            "- a list\n",
            "beforeSendSingleMsg: 3\n",
            "beforeSendSingleMsg:\n  timeout: soon\n",
        ] {
            assert!(OpenImWebhooks::parse(text).is_err(), "{text}");
        }
    }
}
