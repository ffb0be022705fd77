//! The policy file (`GATEWAY_CONFIG`, TOML): per command, whether the worker decides
//! (`enforce`), is only heard (`shadow`) or not asked at all (`off`), and the command's own
//! default decision and timeout.
//!
//! ```toml
//! [global]                      # optional; the environment overrides it
//! mode = "enforce"
//! default = "allow"
//! reject_err_code = 5000
//! reject_err_msg = "rejected: decision service unavailable"
//! timeout_ms = 5000
//!
//! [commands.callbackBeforeSendSingleMsgCommand]
//! mode = "shadow"
//! default = "reject"
//! reject_err_code = 5001
//! reject_err_msg = "message refused"
//! timeout_ms = 2000
//! ```
//!
//! Shadow mode exists to try a new worker on real traffic without letting it decide: the
//! gateway counts how often the worker would have answered differently from the default.
//! Every mistake (an unknown key or command, a wrong type, a code outside 5000..=9999, an
//! unknown mode) stops the start naming the file, the key and the rule.

use std::collections::{BTreeMap, HashMap};

use openim_gateway_proto::{CallbackKind, Command};
use serde::Deserialize;

use crate::decision::DefaultDecision;

/// How a command's callbacks are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The worker decides (the gateway's behaviour without a policy file).
    Enforce,
    /// The worker is asked and its decision counted and logged; the default is answered.
    Shadow,
    /// Nobody is asked; the default is answered at once.
    Off,
}

impl Mode {
    fn parse(value: &str) -> Option<Self> {
        match value {
            "enforce" => Some(Self::Enforce),
            "shadow" => Some(Self::Shadow),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// One section of the file, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// `enforce`, `shadow` or `off`.
    pub mode: Option<String>,
    /// `allow` or `reject`.
    pub default: Option<String>,
    /// 5000..=9999.
    pub reject_err_code: Option<i64>,
    /// Not empty.
    pub reject_err_msg: Option<String>,
    /// OpenIM's timeout for the command, in ms (the budget is this less the margin).
    pub timeout_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    global: Section,
    #[serde(default)]
    commands: BTreeMap<String, Section>,
}

/// The file, parsed and checked key by key (not yet merged with the environment).
#[derive(Debug, Clone, Default)]
pub struct PolicyFile {
    /// The `[global]` section.
    pub global: Section,
    /// The `[commands.*]` sections, by catalog command.
    pub commands: Vec<(&'static Command, Section)>,
}

/// A line of the file's text where `offset` falls (1-based).
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

impl PolicyFile {
    /// Reads and checks the file at `path`. The error is a rule (the key and what it must
    /// be), on one line.
    pub fn read(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("must be a readable TOML file ({error})"))?;
        Self::parse(&text)
    }

    /// Checks `text`; see [`Self::read`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|error| {
            let at = error
                .span()
                .map(|span| format!("line {}: ", line_of(text, span.start)))
                .unwrap_or_default();
            format!("{at}{}", error.message().replace('\n', " "))
        })?;
        check_section("global", &file.global)?;
        let mut commands = Vec::new();
        for (name, section) in file.commands {
            let key = format!("commands.{name}");
            let command = Command::lookup(&name).ok_or_else(|| {
                format!("{key}: unknown command: must be one of OpenIM's callback commands")
            })?;
            if command.kind == CallbackKind::After && section.mode.as_deref() == Some("shadow") {
                return Err(format!(
                    "{key}.mode: must not be shadow: an after-callback is never decided by a worker"
                ));
            }
            check_section(&key, &section)?;
            commands.push((command, section));
        }
        Ok(Self {
            global: file.global,
            commands,
        })
    }

    /// The section of `command`, if the file has one.
    pub fn section(&self, command: &Command) -> Option<&Section> {
        self.commands
            .iter()
            .find(|(known, _)| known.name == command.name)
            .map(|(_, section)| section)
    }
}

fn check_section(key: &str, section: &Section) -> Result<(), String> {
    if let Some(mode) = &section.mode {
        if Mode::parse(mode).is_none() {
            return Err(format!(
                "{key}.mode = {mode:?}: must be enforce, shadow or off"
            ));
        }
    }
    if let Some(default) = &section.default {
        if default != "allow" && default != "reject" {
            return Err(format!(
                "{key}.default = {default:?}: must be allow or reject"
            ));
        }
    }
    if let Some(code) = section.reject_err_code {
        if !(5000..=9999).contains(&code) {
            return Err(format!(
                "{key}.reject_err_code = {code}: must be in 5000..=9999, OpenIM's range for custom error codes"
            ));
        }
    }
    if let Some(message) = &section.reject_err_msg {
        if message.trim().is_empty() {
            return Err(format!("{key}.reject_err_msg: must not be empty"));
        }
    }
    if let Some(timeout) = section.timeout_ms {
        if !(1..=15_000).contains(&timeout) {
            return Err(format!(
                "{key}.timeout_ms = {timeout}: must be in 1..=15000: OpenIM caps every callback at 15 s"
            ));
        }
    }
    Ok(())
}

/// The global reject code and message, validated, whatever the global default is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectFallback {
    /// `errCode` of a default reject.
    pub err_code: i32,
    /// `errMsg` of a default reject.
    pub err_msg: String,
}

impl Default for RejectFallback {
    fn default() -> Self {
        Self {
            err_code: crate::config::DEFAULT_REJECT_ERR_CODE,
            err_msg: crate::config::DEFAULT_REJECT_ERR_MSG.to_owned(),
        }
    }
}

/// What one command's callbacks get: its mode and its default decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandPolicy {
    /// Who decides.
    pub mode: Mode,
    /// The answer when the worker does not decide.
    pub default: DefaultDecision,
}

/// Every command's policy, resolved: the file's command section over the global one (the
/// environment already merged into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    global: CommandPolicy,
    by_command: HashMap<&'static str, CommandPolicy>,
}

impl Policies {
    /// The same policy for every command (no policy file).
    pub fn uniform(global: CommandPolicy) -> Self {
        Self {
            global,
            by_command: HashMap::new(),
        }
    }

    /// `global` for every command the file does not name; the others with their section's
    /// values over `global`'s. `reject` is the global reject code and message (`[global]`'s
    /// or the environment's), which a section that rejects without its own falls back to,
    /// even when the global default is allow.
    pub fn from_file(global: CommandPolicy, reject: &RejectFallback, file: &PolicyFile) -> Self {
        let by_command = file
            .commands
            .iter()
            .map(|(command, section)| {
                let mode = section
                    .mode
                    .as_deref()
                    .and_then(Mode::parse)
                    .unwrap_or(global.mode);
                let (global_code, global_msg) = (reject.err_code, reject.err_msg.clone());
                let rejects = match section.default.as_deref() {
                    Some(default) => default == "reject",
                    None => global.default != DefaultDecision::Allow,
                };
                let default = if rejects {
                    DefaultDecision::Reject {
                        // Checked to be in 5000..=9999.
                        err_code: section
                            .reject_err_code
                            .map_or(global_code, |code| code as i32),
                        err_msg: section.reject_err_msg.clone().unwrap_or(global_msg),
                    }
                } else {
                    DefaultDecision::Allow
                };
                (command.name, CommandPolicy { mode, default })
            })
            .collect();
        Self { global, by_command }
    }

    /// The policy of `command`.
    pub fn of(&self, command: &Command) -> &CommandPolicy {
        self.by_command.get(command.name).unwrap_or(&self.global)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "callbackBeforeSetGroupMemberInfoCommand";

    #[test]
    fn a_command_section_overrides_the_global_one() {
        let file = PolicyFile::parse(&format!(
            "[global]\nmode = \"enforce\"\n\n[commands.{MEMBER}]\nmode = \"shadow\"\ndefault = \"reject\"\nreject_err_code = 5001\n"
        ))
        .unwrap();
        let global = CommandPolicy {
            mode: Mode::Enforce,
            default: DefaultDecision::Allow,
        };
        let policies = Policies::from_file(global.clone(), &RejectFallback::default(), &file);
        let member = policies.of(Command::lookup(MEMBER).unwrap());
        assert_eq!(member.mode, Mode::Shadow);
        assert_eq!(
            member.default,
            DefaultDecision::Reject {
                err_code: 5001,
                err_msg: crate::config::DEFAULT_REJECT_ERR_MSG.to_owned()
            }
        );
        let other = policies.of(Command::lookup("callbackBeforeAddFriendCommand").unwrap());
        assert_eq!(other, &global);
    }

    #[test]
    fn a_rejecting_section_falls_back_to_the_global_code_and_message_when_the_global_default_allows(
    ) {
        let file = PolicyFile::parse(&format!(
            "[commands.{MEMBER}]\ndefault = \"reject\"\n\n[commands.callbackBeforeAddFriendCommand]\ndefault = \"reject\"\nreject_err_msg = \"own msg\"\n"
        ))
        .unwrap();
        let global = CommandPolicy {
            mode: Mode::Enforce,
            default: DefaultDecision::Allow,
        };
        let reject = RejectFallback {
            err_code: 5100,
            err_msg: "global msg".to_owned(),
        };
        let policies = Policies::from_file(global, &reject, &file);
        assert_eq!(
            policies.of(Command::lookup(MEMBER).unwrap()).default,
            DefaultDecision::Reject {
                err_code: 5100,
                err_msg: "global msg".to_owned()
            }
        );
        assert_eq!(
            policies
                .of(Command::lookup("callbackBeforeAddFriendCommand").unwrap())
                .default,
            DefaultDecision::Reject {
                err_code: 5100,
                err_msg: "own msg".to_owned()
            }
        );
    }

    #[test]
    fn every_mistake_names_the_key_and_the_rule() {
        let cases = [
            ("[global]\nmodee = \"off\"\n", "modee"),
            (
                "[commands.callbackNopeCommand]\nmode = \"off\"\n",
                "commands.callbackNopeCommand",
            ),
            (
                &format!("[commands.{MEMBER}]\nmode = \"loud\"\n") as &str,
                "mode",
            ),
            (
                &format!("[commands.{MEMBER}]\nreject_err_code = 42\n"),
                "5000..=9999",
            ),
            (
                &format!("[commands.{MEMBER}]\nreject_err_code = \"5001\"\n"),
                "line 2",
            ),
            (
                &format!("[commands.{MEMBER}]\ndefault = \"maybe\"\n"),
                "allow or reject",
            ),
            (
                &format!("[commands.{MEMBER}]\ntimeout_ms = 20000\n"),
                "15 s",
            ),
            (
                "[commands.callbackAfterSendSingleMsgCommand]\nmode = \"shadow\"\n",
                "after-callback",
            ),
            ("[other]\n", "other"),
        ];
        for (text, shown) in cases {
            let error = PolicyFile::parse(text).unwrap_err();
            assert!(error.contains(shown), "{text:?}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }
}
