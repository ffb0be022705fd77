//! The configuration in the operator's words, for `check-config`, the start-up log and a
//! reload: each command's policy as the policy file writes it (`mode = "shadow"`,
//! `default = "reject"`, `reject_err_code = 5101`), what OpenIM's `webhooks.yml` enables,
//! and what a reload changed, command by command. Text only; nothing here decides.

use openim_gateway_proto::{catalog, Command};

use crate::{
    decision::DefaultDecision,
    rules::{CommandRules, Rules},
    settings::Config,
};

/// A command's rules as the policy file would write them, and its budget:
/// `mode = "shadow", default = "reject", reject_err_code = 5101, reject_err_msg = "no", budget 4750 ms`.
pub fn rules_in_words(rules: &CommandRules<'_>) -> String {
    let default = match rules.default {
        DefaultDecision::Allow => "default = \"allow\"".to_owned(),
        DefaultDecision::Reject { err_code, err_msg } => format!(
            "default = \"reject\", reject_err_code = {err_code}, reject_err_msg = {}",
            toml_string(err_msg)
        ),
    };
    format!(
        "mode = \"{}\", {default}, budget {} ms",
        rules.mode.as_str(),
        rules.budget.as_millis()
    )
}

/// `text` as a TOML basic string, quoted and escaped as the file would hold it. JSON's string
/// escapes (`\"`, `\\`, `\n`, `\u0001`, ...) are all TOML's too.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

/// Whether OpenIM's `webhooks.yml` (when the gateway reads it) enables `command`.
fn enabled(config: &Config, command: &Command) -> Option<bool> {
    let webhooks = config.openim_webhooks.as_ref()?;
    Some(
        webhooks
            .callbacks
            .iter()
            .any(|callback| callback.command.name == command.name && callback.enabled),
    )
}

/// What `check-config` prints after its first line: what `webhooks.yml` enables, the global
/// rules, then one line per command the policy file names or `webhooks.yml` enables. Lines
/// that start with `warning: ` are warnings.
pub fn check_config_lines(config: &Config) -> Vec<String> {
    let rules = Rules::new(config);
    let mut lines = Vec::new();
    match &config.openim_webhooks {
        Some(webhooks) => match webhooks.enabled_summary() {
            Ok(summary) => lines.push(summary),
            Err(warning) => lines.push(format!("warning: {warning}")),
        },
        None => lines.push(
            "GATEWAY_OPENIM_WEBHOOKS is not set: which callbacks OpenIM calls is not known here"
                .to_owned(),
        ),
    }
    lines.push(format!(
        "global (every command not named below): {}",
        rules_in_words(&rules.global())
    ));
    for warning in config.warnings() {
        lines.push(format!("warning: {warning}"));
    }
    for command in catalog::COMMANDS {
        let named = config
            .policy_file
            .as_ref()
            .is_some_and(|file| file.section(command).is_some());
        let enabled = enabled(config, command);
        if !named && enabled != Some(true) {
            continue;
        }
        let note = match enabled {
            Some(true) => " (enabled in webhooks.yml)",
            Some(false) => " (not enabled in webhooks.yml: OpenIM does not call it)",
            None => "",
        };
        lines.push(format!(
            "{}: {}{note}",
            command.name,
            rules_in_words(&rules.of(command))
        ));
    }
    lines
}

/// Logs the policies a gateway starts with: the global one, and each command the policy
/// file names, in the file's words (what `webhooks.yml` enables is logged with it, by
/// [`log_webhooks_summary`]).
pub fn log_start(config: &Config, rules: &Rules) {
    tracing::info!(
        policy = %rules_in_words(&rules.global()),
        "the global policy (every command the policy file does not name)"
    );
    for (command, _) in config.policy_file.iter().flat_map(|file| &file.commands) {
        tracing::info!(
            command = command.name,
            policy = %rules_in_words(&rules.of(command)),
            "policy from the policy file"
        );
    }
}

/// Logs what OpenIM's `webhooks.yml` enables (how many callbacks and which), or warns when
/// it enables none.
pub fn log_webhooks_summary(config: &Config) {
    if let Some(webhooks) = &config.openim_webhooks {
        match webhooks.enabled_summary() {
            Ok(summary) => tracing::info!("{summary}"),
            Err(warning) => tracing::warn!("{warning}"),
        }
    }
}

/// One change a reload made: `None` as the command for the global rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The command whose rules changed, or `None` for the global rules.
    pub command: Option<&'static str>,
    /// Its rules before, in the policy file's words.
    pub before: String,
    /// Its rules after.
    pub after: String,
}

/// What changed from `before` to `after`: the global rules, then each command whose rules
/// changed, except those that follow the global rules both before and after (the global
/// change says it for them).
pub fn changes(before: &Rules, after: &Rules) -> Vec<Change> {
    let mut changes = Vec::new();
    let (global_before, global_after) = (before.global(), after.global());
    if global_before != global_after {
        changes.push(Change {
            command: None,
            before: rules_in_words(&global_before),
            after: rules_in_words(&global_after),
        });
    }
    for command in catalog::COMMANDS {
        let (old, new) = (before.of(command), after.of(command));
        let follows_global = old == global_before && new == global_after;
        if old != new && !follows_global {
            changes.push(Change {
                command: Some(command.name),
                before: rules_in_words(&old),
                after: rules_in_words(&new),
            });
        }
    }
    changes
}

/// Logs a reload: a line per change (`command: before -> after`), then `policy reloaded`
/// with how many changed.
pub fn log_reload(before: &Rules, after: &Rules) {
    let changes = changes(before, after);
    for change in &changes {
        let command = change.command.unwrap_or("global");
        tracing::info!(
            command,
            "policy changed by the reload: {command}: {} -> {}",
            change.before,
            change.after
        );
    }
    if changes.is_empty() {
        tracing::info!("policy reloaded: nothing changed");
    } else {
        tracing::info!(changed = changes.len(), "policy reloaded");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::settings::policy::Mode;

    #[test]
    fn rules_read_as_the_policy_file_writes_them() {
        let reject = DefaultDecision::Reject {
            err_code: 5101,
            err_msg: "paused \"for now\"".to_owned(),
        };
        let rules = CommandRules {
            mode: Mode::Shadow,
            default: &reject,
            budget: Duration::from_millis(4750),
        };
        assert_eq!(
            rules_in_words(&rules),
            r#"mode = "shadow", default = "reject", reject_err_code = 5101, reject_err_msg = "paused \"for now\"", budget 4750 ms"#
        );
        let allow = CommandRules {
            mode: Mode::Enforce,
            default: &DefaultDecision::Allow,
            budget: Duration::from_millis(500),
        };
        assert_eq!(
            rules_in_words(&allow),
            r#"mode = "enforce", default = "allow", budget 500 ms"#
        );
    }

    fn rules(pairs: &[(&str, &str)]) -> Rules {
        let variables = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let config = Config::from_map(&variables).unwrap();
        Rules::new(&config)
    }

    #[test]
    fn a_reload_names_each_change_once() {
        let before = rules(&[]);
        assert!(changes(&before, &rules(&[])).is_empty());
        let after = rules(&[("GATEWAY_DEFAULT_DECISION", "reject")]);
        let found = changes(&before, &after);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].command, None);
        assert!(
            found[0].before.contains(r#"default = "allow""#),
            "{found:?}"
        );
        assert!(
            found[0].after.contains(r#"default = "reject""#),
            "{found:?}"
        );
    }
}
