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

use openim_gateway_proto::{CallbackKind, Command};

use super::{suggest::closest_command, table::OPENIM_TIMEOUT_CAP_MS};

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
    /// The mode in the policy file's words.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Shadow => "shadow",
            Self::Off => "off",
        }
    }

    /// The mode a policy file names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "enforce" => Some(Self::Enforce),
            "shadow" => Some(Self::Shadow),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// One section of the file, checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
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

/// The keys of a section and the rule each value must follow. The types are checked here,
/// key by key, rather than by serde, so that `timeout_ms = 2.5` names the key and says what
/// it must be, and so that every mistake of the file is found in one pass.
const SECTION_KEYS: &[(&str, &str)] = &[
    ("mode", "must be enforce, shadow or off"),
    ("default", "must be allow or reject"),
    (
        "reject_err_code",
        "must be an integer in 5000..=9999, OpenIM's range for custom error codes",
    ),
    ("reject_err_msg", "must be a string that is not empty"),
    (
        "timeout_ms",
        "must be an integer in 1..=15000: OpenIM caps every callback at 15 s",
    ),
];

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

/// A value as the operator wrote it, on one line: a string quoted, a table by its kind.
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => format!("{text:?}"),
        toml::Value::Integer(number) => number.to_string(),
        toml::Value::Float(number) => number.to_string(),
        toml::Value::Boolean(value) => value.to_string(),
        toml::Value::Datetime(_) => "a date".to_owned(),
        toml::Value::Array(_) => "an array".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    }
}

impl PolicyFile {
    /// Reads and checks the file at `path`. Each error is a rule (the key and what it must
    /// be), on one line; every mistake of the file is reported, not just the first.
    pub fn read(path: &str) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| vec![format!("must be a readable TOML file ({error})")])?;
        Self::parse(&text)
    }

    /// Checks `text`; see [`Self::read`].
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let table: toml::Table = toml::from_str(text).map_err(|error| {
            // Not TOML at all: there is no key to name, only where the parser stopped.
            let at = error
                .span()
                .map(|span| format!("line {}: ", line_of(text, span.start)))
                .unwrap_or_default();
            vec![format!("{at}{}", error.message().replace('\n', " "))]
        })?;
        let mut errors = Vec::new();
        let mut global = Section::default();
        let mut commands = Vec::new();
        for (key, value) in &table {
            match (key.as_str(), value) {
                ("global", toml::Value::Table(section)) => {
                    global = check_section("global", section, &mut errors);
                }
                ("commands", toml::Value::Table(sections)) => {
                    for (name, value) in sections {
                        let key = format!("commands.{name}");
                        let Some(command) = Command::lookup(name) else {
                            let hint = closest_command(name)
                                .map(|meant| format!("; did you mean {meant}?"))
                                .unwrap_or_default();
                            errors.push(format!(
                                "{key}: unknown command: must be one of OpenIM's callback commands{hint}"
                            ));
                            continue;
                        };
                        let toml::Value::Table(section) = value else {
                            errors.push(format!(
                                "{key} = {}: must be a section, [{key}]",
                                shown(value)
                            ));
                            continue;
                        };
                        let section = check_section(&key, section, &mut errors);
                        if command.kind == CallbackKind::After
                            && section.mode.as_deref() == Some("shadow")
                        {
                            errors.push(format!(
                                "{key}.mode = \"shadow\": must not be shadow: an after-callback is never decided by a worker"
                            ));
                        }
                        commands.push((command, section));
                    }
                }
                ("global" | "commands", value) => errors.push(format!(
                    "{key} = {}: must be a section, [{key}]",
                    shown(value)
                )),
                (key, _) => errors.push(format!(
                    "{key}: unknown key: the file has a [global] section and [commands.<command>] sections"
                )),
            }
        }
        if errors.is_empty() {
            Ok(Self { global, commands })
        } else {
            Err(errors)
        }
    }

    /// The section of `command`, if the file has one.
    pub fn section(&self, command: &Command) -> Option<&Section> {
        self.commands
            .iter()
            .find(|(known, _)| known.name == command.name)
            .map(|(_, section)| section)
    }
}

/// The section named `key`, each of its keys checked; a key in error is left unset and its
/// mistake added to `errors`.
fn check_section(key: &str, table: &toml::Table, errors: &mut Vec<String>) -> Section {
    let mut section = Section::default();
    for (name, value) in table {
        let Some((_, rule)) = SECTION_KEYS.iter().find(|(known, _)| known == name) else {
            let known: Vec<&str> = SECTION_KEYS.iter().map(|(known, _)| *known).collect();
            errors.push(format!(
                "{key}.{name}: unknown key: must be one of {}",
                known.join(", ")
            ));
            continue;
        };
        let valid = match (name.as_str(), value) {
            ("mode", toml::Value::String(mode)) if Mode::parse(mode).is_some() => {
                section.mode = Some(mode.clone());
                true
            }
            ("default", toml::Value::String(default))
                if default == "allow" || default == "reject" =>
            {
                section.default = Some(default.clone());
                true
            }
            ("reject_err_code", toml::Value::Integer(code)) if (5000..=9999).contains(code) => {
                section.reject_err_code = Some(*code);
                true
            }
            ("reject_err_msg", toml::Value::String(message)) if !message.trim().is_empty() => {
                section.reject_err_msg = Some(message.clone());
                true
            }
            ("timeout_ms", toml::Value::Integer(timeout))
                if *timeout > 0 && timeout.unsigned_abs() <= OPENIM_TIMEOUT_CAP_MS =>
            {
                section.timeout_ms = Some(*timeout);
                true
            }
            _ => false,
        };
        if !valid {
            errors.push(format!("{key}.{name} = {}: {rule}", shown(value)));
        }
    }
    section
}

/// The global reject code and message, validated, whatever the global default is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectFallback {
    /// `errCode` of a default reject.
    pub err_code: i32,
    /// `errMsg` of a default reject.
    pub err_msg: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBER: &str = "callbackBeforeSetGroupMemberInfoCommand";

    #[test]
    fn every_mistake_names_the_key_and_the_rule() {
        let cases = [
            ("[global]\nmodee = \"off\"\n", "global.modee: unknown key"),
            (
                "[commands.callbackNopeCommand]\nmode = \"off\"\n",
                "commands.callbackNopeCommand: unknown command",
            ),
            (
                &format!("[commands.{MEMBER}]\nmode = \"loud\"\n") as &str,
                "mode = \"loud\": must be enforce, shadow or off",
            ),
            (
                &format!("[commands.{MEMBER}]\nreject_err_code = 42\n"),
                "reject_err_code = 42: must be an integer in 5000..=9999",
            ),
            (
                &format!("[commands.{MEMBER}]\nreject_err_code = \"5001\"\n"),
                &format!(
                    "commands.{MEMBER}.reject_err_code = \"5001\": must be an integer in 5000..=9999"
                ),
            ),
            (
                &format!("[commands.{MEMBER}]\ntimeout_ms = 2.5\n"),
                &format!("commands.{MEMBER}.timeout_ms = 2.5: must be an integer in 1..=15000"),
            ),
            (
                &format!("[commands.{MEMBER}]\nmode = 1\n"),
                "mode = 1: must be enforce, shadow or off",
            ),
            (
                &format!("[commands.{MEMBER}]\nreject_err_msg = \" \"\n"),
                "reject_err_msg = \" \": must be a string that is not empty",
            ),
            (
                &format!("[commands.{MEMBER}]\ndefault = \"maybe\"\n"),
                "default = \"maybe\": must be allow or reject",
            ),
            (
                &format!("[commands.{MEMBER}]\ntimeout_ms = 20000\n"),
                "15 s",
            ),
            (
                "[commands.callbackAfterSendSingleMsgCommand]\nmode = \"shadow\"\n",
                "after-callback",
            ),
            ("[other]\n", "other: unknown key"),
            ("mode = \"off\"\n", "mode: unknown key"),
            ("global = 1\n", "global = 1: must be a section"),
            (
                &format!("[commands]\n{MEMBER} = \"off\"\n"),
                "must be a section",
            ),
            ("[global\n", "line 1"),
        ];
        for (text, shown) in cases {
            let errors = PolicyFile::parse(text).unwrap_err();
            assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
            assert!(errors[0].contains(shown), "{text:?}: {errors:?}");
            assert!(!errors[0].contains('\n'), "{errors:?}");
        }
    }

    #[test]
    fn a_misspelled_command_gets_a_did_you_mean() {
        let errors =
            PolicyFile::parse("[commands.callbackBeforeSendSingelMsgCommand]\nmode = \"off\"\n")
                .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].ends_with("did you mean callbackBeforeSendSingleMsgCommand?"),
            "{errors:?}"
        );
        let errors =
            PolicyFile::parse("[commands.callbackNopeCommand]\nmode = \"off\"\n").unwrap_err();
        assert!(!errors[0].contains("did you mean"), "{errors:?}");
    }

    #[test]
    fn every_mistake_of_the_file_is_reported_at_once() {
        let errors = PolicyFile::parse(&format!(
            "[global]\nmode = \"sideways\"\ntimeout_ms = 0\n\n[commands.{MEMBER}]\nreject_err_code = 42\ntimeout_ms = 2.5\nloud = true\n\n[commands.callbackNopeCommand]\nmode = \"off\"\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = errors
            .iter()
            .map(|error| error.split([' ', ':']).next().unwrap_or_default())
            .collect();
        let mut expected = vec![
            "global.mode".to_owned(),
            "global.timeout_ms".to_owned(),
            "commands.callbackNopeCommand".to_owned(),
            format!("commands.{MEMBER}.loud"),
            format!("commands.{MEMBER}.reject_err_code"),
            format!("commands.{MEMBER}.timeout_ms"),
        ];
        let mut found: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected, "{errors:#?}");
    }
}
