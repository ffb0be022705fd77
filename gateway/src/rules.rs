//! Each command's rules, in one place: who decides it (its mode), what OpenIM gets when no
//! worker does (its default decision) and how long the gateway waits (its budget), from the
//! environment, OpenIM's `webhooks.yml` and the policy file. Built at start and on `SIGHUP`;
//! the callback path makes one lookup, [`Rules::of`].

use std::{collections::HashMap, time::Duration};

use openim_gateway_proto::Command;

use crate::{
    deadline,
    decision::DefaultDecision,
    settings::{
        policy::{Mode, PolicyFile, RejectFallback},
        webhooks::OpenImWebhooks,
        Config,
    },
};

/// What one command's callbacks get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRules<'a> {
    /// Who decides.
    pub mode: Mode,
    /// The answer when the worker does not decide.
    pub default: &'a DefaultDecision,
    /// From arrival to answer: the command's timeout less the safety margin.
    pub budget: Duration,
}

impl CommandRules<'_> {
    /// From arrival to the moment the gateway stops waiting: the budget less the timer
    /// slack.
    pub fn answer_within(&self) -> Duration {
        deadline::answer_within(self.budget)
    }
}

/// Every command's rules, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    budgets: Budgets,
    policies: Policies,
    /// Requests refused before their command is known, and caught panics, get this.
    global_default: DefaultDecision,
    /// The longest timeout any command has: a drain that waits this long has let every
    /// accepted callback be answered.
    longest_timeout: Duration,
}

impl Rules {
    /// The rules `config` sets.
    pub fn new(config: &Config) -> Self {
        let budgets = budgets(config);
        Self {
            budgets,
            policies: policies(config),
            global_default: config.default_decision.clone(),
            longest_timeout: longest_timeout(config),
        }
    }

    /// The rules of `command`.
    pub fn of(&self, command: &Command) -> CommandRules<'_> {
        let policy = self.policies.of(command);
        CommandRules {
            mode: policy.mode,
            default: &policy.default,
            budget: self.budgets.of(command),
        }
    }

    /// The rules of the commands that neither `webhooks.yml` nor the policy file names.
    pub fn global(&self) -> CommandRules<'_> {
        CommandRules {
            mode: self.policies.global.mode,
            default: &self.policies.global.default,
            budget: self.budgets.default,
        }
    }

    /// The default decision of the requests refused before their command is known.
    pub fn global_default(&self) -> &DefaultDecision {
        &self.global_default
    }

    /// The longest timeout any command has (the global one, `webhooks.yml`'s, the policy
    /// file's).
    pub fn longest_timeout(&self) -> Duration {
        self.longest_timeout
    }

    /// The budget of the commands that neither `webhooks.yml` nor the policy file names.
    pub fn global_budget(&self) -> Duration {
        self.budgets.default
    }
}

/// The budget of the commands `webhooks.yml` does not name.
fn global_budget(config: &Config) -> Duration {
    config.callback_timeout.saturating_sub(config.safety_margin)
}

/// Each command's budget: its own timeout from the policy file, else from `webhooks.yml`
/// when the file names it, else `GATEWAY_CALLBACK_TIMEOUT_MS`; each less the margin.
fn budgets(config: &Config) -> Budgets {
    let mut budgets = match &config.openim_webhooks {
        Some(webhooks) => {
            Budgets::from_webhooks(global_budget(config), webhooks, config.safety_margin)
        }
        None => Budgets::uniform(global_budget(config)),
    };
    for (command, timeout) in policy_timeouts(config.policy_file.as_ref()) {
        budgets.set(command, timeout.saturating_sub(config.safety_margin));
    }
    budgets
}

/// The policy file's `timeout_ms` of each command that has one.
fn policy_timeouts(
    file: Option<&PolicyFile>,
) -> impl Iterator<Item = (&'static Command, Duration)> + '_ {
    file.into_iter()
        .flat_map(|file| &file.commands)
        .filter_map(|(command, section)| {
            let timeout_ms = section.timeout_ms?;
            Some((*command, Duration::from_millis(timeout_ms.unsigned_abs())))
        })
}

fn longest_timeout(config: &Config) -> Duration {
    let webhooks = config
        .openim_webhooks
        .iter()
        .flat_map(|webhooks| &webhooks.callbacks)
        .map(|callback| callback.timeout);
    let policy = policy_timeouts(config.policy_file.as_ref()).map(|(_, timeout)| timeout);
    webhooks
        .chain(policy)
        .fold(config.callback_timeout, Duration::max)
}

/// Each command's mode and default decision.
fn policies(config: &Config) -> Policies {
    let global = CommandPolicy {
        mode: config.mode,
        default: config.default_decision.clone(),
    };
    match &config.policy_file {
        Some(file) => Policies::from_file(global, &config.reject, file),
        None => Policies::uniform(global),
    }
}

/// Logs what OpenIM's `webhooks.yml` made of `rules`: one line per enabled callback with its
/// budget, and a warning for a `url` the gateway cannot serve as written.
pub fn log_webhooks(webhooks: &OpenImWebhooks, rules: &Rules) {
    let budgets = &rules.budgets;
    // The URL itself is not shown: its path may carry the webhook secret.
    if let Some(problem) = webhooks.url_problem() {
        tracing::warn!("the url in OpenIM's webhooks.yml {problem}");
    }
    for callback in webhooks
        .callbacks
        .iter()
        .filter(|callback| callback.enabled)
    {
        tracing::info!(
            command = callback.command.name,
            key = %callback.key,
            timeout_ms = u64::try_from(callback.timeout.as_millis()).unwrap_or(u64::MAX),
            budget_ms = u64::try_from(budgets.of(callback.command).as_millis()).unwrap_or(u64::MAX),
            "callback enabled in OpenIM's webhooks.yml"
        );
    }
    for key in &webhooks.unknown_keys {
        tracing::warn!(%key, "webhooks.yml block for a callback this gateway does not know: its timeout is not used");
    }
}

/// How long each command may take from arrival to answer: the file's timeout for the
/// commands it names, `GATEWAY_CALLBACK_TIMEOUT_MS` for the others, each less the margin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Budgets {
    default: Duration,
    by_command: HashMap<&'static str, Duration>,
}

impl Budgets {
    /// The same budget for every command.
    fn uniform(budget: Duration) -> Self {
        Self {
            default: budget,
            by_command: HashMap::new(),
        }
    }

    /// `default` for every command but those `webhooks` names, which get their timeout less
    /// `margin`.
    fn from_webhooks(default: Duration, webhooks: &OpenImWebhooks, margin: Duration) -> Self {
        let by_command = webhooks
            .callbacks
            .iter()
            .map(|callback| {
                (
                    callback.command.name,
                    callback.timeout.saturating_sub(margin),
                )
            })
            .collect();
        Self {
            default,
            by_command,
        }
    }

    /// Gives `command` its own budget.
    fn set(&mut self, command: &'static Command, budget: Duration) {
        self.by_command.insert(command.name, budget);
    }

    /// The budget of `command`.
    fn of(&self, command: &Command) -> Duration {
        self.by_command
            .get(command.name)
            .copied()
            .unwrap_or(self.default)
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
struct Policies {
    global: CommandPolicy,
    by_command: HashMap<&'static str, CommandPolicy>,
}

impl Policies {
    /// The same policy for every command (no policy file).
    fn uniform(global: CommandPolicy) -> Self {
        Self {
            global,
            by_command: HashMap::new(),
        }
    }

    /// `global` for every command the file does not name; the others with their section's
    /// values over `global`'s. `reject` is the global reject code and message (`[global]`'s
    /// or the environment's), which a section that rejects without its own falls back to,
    /// even when the global default is allow.
    fn from_file(global: CommandPolicy, reject: &RejectFallback, file: &PolicyFile) -> Self {
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
    fn of(&self, command: &Command) -> &CommandPolicy {
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
        let policies = Policies::from_file(
            global.clone(),
            &RejectFallback {
                err_code: 5000,
                err_msg: "rejected: decision service unavailable".to_owned(),
            },
            &file,
        );
        let member = policies.of(Command::lookup(MEMBER).unwrap());
        assert_eq!(member.mode, Mode::Shadow);
        assert_eq!(
            member.default,
            DefaultDecision::Reject {
                err_code: 5001,
                err_msg: "rejected: decision service unavailable".to_owned()
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
    fn each_named_command_gets_its_timeout_less_the_margin() {
        let webhooks = OpenImWebhooks::parse(
            "url: http://gw:10006/callbackExample\n\
             beforeSetGroupMemberInfo:\n  enable: true\n  timeout: 2\n  failedContinue: true\n\
             beforeApplyJoinGroup:\n  enable: false\n\
             afterSendSingleMsg:\n  enable: true\n  timeout: 40\n  attentionIds: []\n\
             afterSomethingNew:\n  enable: true\n  timeout: 1\n",
        )
        .unwrap();
        assert_eq!(webhooks.url_problem(), None);
        assert_eq!(webhooks.unknown_keys, ["afterSomethingNew"]);
        let margin = Duration::from_millis(250);
        let budgets = Budgets::from_webhooks(Duration::from_millis(4750), &webhooks, margin);
        let of = |name: &str| budgets.of(Command::lookup(name).unwrap()).as_millis();
        assert_eq!(of("callbackBeforeSetGroupMemberInfoCommand"), 1750);
        assert_eq!(of("callbackBeforeJoinGroupCommand"), 14_750);
        assert_eq!(of("callbackAfterSendSingleMsgCommand"), 14_750);
        assert_eq!(of("callbackBeforeSendSingleMsgCommand"), 4750);
    }
}
