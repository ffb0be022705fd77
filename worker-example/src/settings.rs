//! Settings: the environment variables the worker reads, their defaults and their rules.
//!
//! This is the only module that reads the environment, and it reads it through a lookup
//! function so that tests pass a map instead of mutating the process environment. It parses
//! and validates everything before anything connects: a bad value is one [`SettingsError`]
//! line naming the variable, the value and the rule, and `main` turns it into exit code 2.

use async_nats::ServerAddr;
use openim_gateway_proto::subject;

use crate::rules::{
    Rules, DEFAULT_BANNED_WORDS, DEFAULT_MAX_NICKNAME_CHARS, MAX_NICKNAME_CHARS_LIMIT,
};

/// One NATS URL or a comma-separated list; the client picks among them and fails over.
pub const NATS_URL: &str = "NATS_URL";
/// The subject prefix; must match the gateway's `GATEWAY_SUBJECT_PREFIX`.
pub const WORKER_SUBJECT_PREFIX: &str = "WORKER_SUBJECT_PREFIX";
/// Comma-separated words refused in nicknames, case-insensitively. Set but empty: none.
pub const WORKER_BANNED_WORDS: &str = "WORKER_BANNED_WORDS";
/// The longest nickname allowed, in characters.
pub const WORKER_MAX_NICKNAME_CHARS: &str = "WORKER_MAX_NICKNAME_CHARS";
/// How many requests are handled at once; the rest wait in the client's buffer.
pub const WORKER_CONCURRENCY: &str = "WORKER_CONCURRENCY";
/// The tracing filter for the logs on stderr.
pub const RUST_LOG: &str = "RUST_LOG";

/// Every variable this module reads, so that [`Settings::from_env`] can refuse a value that is
/// not UTF-8 instead of silently treating it as unset.
pub const ALL_VARIABLES: [&str; 6] = [
    NATS_URL,
    WORKER_SUBJECT_PREFIX,
    WORKER_BANNED_WORDS,
    WORKER_MAX_NICKNAME_CHARS,
    WORKER_CONCURRENCY,
    RUST_LOG,
];

/// The largest `WORKER_CONCURRENCY`, the same as the Python and Node workers'.
pub const MAX_CONCURRENCY: usize = 10_000;

/// The NATS server a local `nats-server` listens on by default.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// The log filter when `RUST_LOG` is unset or empty.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Everything the worker needs to start, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The servers to connect to, in the order given. Never empty.
    pub nats_servers: Vec<ServerAddr>,
    /// The first part of the subject, `{prefix}.callbackBeforeSetGroupMemberInfoCommand`; a
    /// valid NATS subject without wildcards.
    pub subject_prefix: String,
    /// The policy every request is decided by.
    pub rules: Rules,
    /// How many requests are handled at once, 1..=[`MAX_CONCURRENCY`].
    pub concurrency: usize,
    /// A tracing filter that `EnvFilter::try_new` accepts.
    pub log_filter: String,
}

/// A setting that cannot be used. Its message is the whole line printed before exiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The variable is set to a value that breaks its rule.
    #[error("{variable}={value:?} is not valid: {rule}")]
    Invalid {
        /// The variable's name.
        variable: &'static str,
        /// The value as read (lossily converted if it was not UTF-8).
        value: String,
        /// What a valid value looks like, and the parser's complaint when there is one.
        rule: String,
    },
}

impl SettingsError {
    fn invalid(variable: &'static str, value: &str, rule: impl Into<String>) -> Self {
        Self::Invalid {
            variable,
            value: value.to_owned(),
            rule: rule.into(),
        }
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        for variable in ALL_VARIABLES {
            if let Err(std::env::VarError::NotUnicode(raw)) = std::env::var(variable) {
                return Err(SettingsError::invalid(
                    variable,
                    &raw.to_string_lossy(),
                    "must be valid UTF-8",
                ));
            }
        }
        Self::from_lookup(|variable| std::env::var(variable).ok())
    }

    /// Reads the settings through `lookup`, which returns a variable's value or `None` when it
    /// is unset. Checks the variables in a fixed order and reports the first bad one.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let nats_servers =
            parse_nats_servers(lookup(NATS_URL).as_deref().unwrap_or(DEFAULT_NATS_URL))?;
        let subject_prefix = parse_subject_prefix(
            lookup(WORKER_SUBJECT_PREFIX)
                .as_deref()
                .unwrap_or(subject::DEFAULT_PREFIX),
        )?;
        let max_nickname_chars = match lookup(WORKER_MAX_NICKNAME_CHARS) {
            Some(value) => parse_max_nickname_chars(&value)?,
            None => DEFAULT_MAX_NICKNAME_CHARS,
        };
        let rules = match lookup(WORKER_BANNED_WORDS) {
            Some(value) => Rules::new(value.split(','), max_nickname_chars),
            None => Rules::new(DEFAULT_BANNED_WORDS, max_nickname_chars),
        };
        let concurrency = match lookup(WORKER_CONCURRENCY) {
            Some(value) => parse_concurrency(&value)?,
            None => openim_worker_kit::DEFAULT_CONCURRENCY,
        };
        let log_filter = match lookup(RUST_LOG) {
            Some(value) if !value.trim().is_empty() => parse_log_filter(&value)?,
            _ => DEFAULT_LOG_FILTER.to_owned(),
        };
        Ok(Self {
            nats_servers,
            subject_prefix,
            rules,
            concurrency,
            log_filter,
        })
    }
}

/// `nats://host:port`, `tls://...`, `ws://...`, `wss://...` or a bare `host:port`, one or a
/// comma-separated list, spaces around commas allowed.
fn parse_nats_servers(value: &str) -> Result<Vec<ServerAddr>, SettingsError> {
    const RULE: &str =
        "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them";
    value
        .split(',')
        .map(|entry| {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(SettingsError::invalid(NATS_URL, value, RULE));
            }
            entry.parse::<ServerAddr>().map_err(|error| {
                SettingsError::invalid(NATS_URL, value, format!("{RULE} ({entry:?}: {error})"))
            })
        })
        .collect()
}

/// The prefix goes in front of the command in a subject the worker subscribes to, so it must
/// be a literal subject: a wildcard would subscribe to far more than one command.
fn parse_subject_prefix(value: &str) -> Result<String, SettingsError> {
    if subject::is_valid_publish_subject(value) {
        Ok(value.to_owned())
    } else {
        Err(SettingsError::invalid(
            WORKER_SUBJECT_PREFIX,
            value,
            "must be a NATS subject without wildcards or whitespace, such as openim.callback",
        ))
    }
}

fn parse_max_nickname_chars(value: &str) -> Result<usize, SettingsError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|chars| (1..=MAX_NICKNAME_CHARS_LIMIT).contains(chars))
        .ok_or_else(|| {
            SettingsError::invalid(
                WORKER_MAX_NICKNAME_CHARS,
                value,
                format!("must be an integer in 1..={MAX_NICKNAME_CHARS_LIMIT}"),
            )
        })
}

fn parse_concurrency(value: &str) -> Result<usize, SettingsError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|concurrency| (1..=MAX_CONCURRENCY).contains(concurrency))
        .ok_or_else(|| {
            SettingsError::invalid(
                WORKER_CONCURRENCY,
                value,
                format!("must be an integer in 1..={MAX_CONCURRENCY}"),
            )
        })
}

fn parse_log_filter(value: &str) -> Result<String, SettingsError> {
    match tracing_subscriber::EnvFilter::try_new(value) {
        Ok(_) => Ok(value.to_owned()),
        Err(error) => Err(SettingsError::invalid(
            RUST_LOG,
            value,
            format!(
                "must be a tracing filter such as info or openim_worker_example=debug ({error})"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(variables: &[(&'static str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<&str, String> = variables
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    fn error_line(variables: &[(&'static str, &str)]) -> String {
        settings(variables).unwrap_err().to_string()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let settings = settings(&[]).unwrap();
        assert_eq!(
            settings.nats_servers,
            vec!["nats://127.0.0.1:4222".parse().unwrap()]
        );
        assert_eq!(settings.subject_prefix, "openim.callback");
        assert_eq!(
            settings.rules,
            Rules::new(["admin", "official", "openim"], 32)
        );
        assert_eq!(settings.log_filter, "info");
        assert_eq!(settings.concurrency, 64);
    }

    #[test]
    fn concurrency_is_an_integer_in_range() {
        assert_eq!(
            settings(&[(WORKER_CONCURRENCY, "1")]).unwrap().concurrency,
            1
        );
        assert_eq!(
            settings(&[(WORKER_CONCURRENCY, "10000")])
                .unwrap()
                .concurrency,
            10_000
        );
        for value in ["0", "10001", "many", ""] {
            assert_eq!(
                error_line(&[(WORKER_CONCURRENCY, value)]),
                format!(
                    "WORKER_CONCURRENCY={value:?} is not valid: must be an integer in 1..=10000"
                )
            );
        }
    }

    #[test]
    fn every_variable_is_read() {
        let settings = settings(&[
            (NATS_URL, "nats://a:4222, tls://b:4443,c:1234"),
            (WORKER_SUBJECT_PREFIX, "tenant42.callbacks"),
            (WORKER_BANNED_WORDS, "Boss, ,spam"),
            (WORKER_MAX_NICKNAME_CHARS, "255"),
            (RUST_LOG, "openim_worker_example=debug,warn"),
        ])
        .unwrap();
        let hosts: Vec<(&str, u16)> = settings
            .nats_servers
            .iter()
            .map(|server| (server.host(), server.port()))
            .collect();
        assert_eq!(hosts, [("a", 4222), ("b", 4443), ("c", 1234)]);
        assert_eq!(settings.subject_prefix, "tenant42.callbacks");
        assert_eq!(settings.rules.banned_words(), ["boss", "spam"]);
        assert_eq!(settings.rules.max_nickname_chars(), 255);
        assert_eq!(settings.log_filter, "openim_worker_example=debug,warn");
    }

    #[test]
    fn empty_banned_words_means_none() {
        let settings = settings(&[(WORKER_BANNED_WORDS, "")]).unwrap();
        assert!(settings.rules.banned_words().is_empty());
    }

    #[test]
    fn empty_log_filter_means_the_default() {
        assert_eq!(settings(&[(RUST_LOG, "")]).unwrap().log_filter, "info");
        assert_eq!(settings(&[(RUST_LOG, "  ")]).unwrap().log_filter, "info");
    }

    #[test]
    fn max_nickname_chars_out_of_range_or_not_a_number_is_one_line_naming_it() {
        for value in [
            "abc",
            "0",
            "256",
            "-1",
            "",
            " 32",
            "3.5",
            "99999999999999999999999",
        ] {
            assert_eq!(
                error_line(&[(WORKER_MAX_NICKNAME_CHARS, value)]),
                format!("WORKER_MAX_NICKNAME_CHARS={value:?} is not valid: must be an integer in 1..=255"),
            );
        }
        assert_eq!(
            error_line(&[(WORKER_MAX_NICKNAME_CHARS, "abc")]),
            r#"WORKER_MAX_NICKNAME_CHARS="abc" is not valid: must be an integer in 1..=255"#
        );
        for value in ["1", "32", "255"] {
            assert!(
                settings(&[(WORKER_MAX_NICKNAME_CHARS, value)]).is_ok(),
                "{value}"
            );
        }
    }

    #[test]
    fn bad_nats_urls_are_refused() {
        for value in [
            "",
            ",",
            "nats://a:4222,,nats://b:4222",
            "http://a:4222",
            "nats://a:notaport",
        ] {
            let line = error_line(&[(NATS_URL, value)]);
            assert!(
                line.starts_with(&format!(
                    "NATS_URL={value:?} is not valid: must be a NATS URL"
                )),
                "{line}"
            );
        }
    }

    #[test]
    fn bad_subject_prefixes_are_refused() {
        for value in ["", "openim.*", "openim.>", "a..b", "has space", "trailing."] {
            assert_eq!(
                error_line(&[(WORKER_SUBJECT_PREFIX, value)]),
                format!(
                    "WORKER_SUBJECT_PREFIX={value:?} is not valid: must be a NATS subject without wildcards or whitespace, such as openim.callback"
                )
            );
        }
    }

    #[test]
    fn bad_log_filter_is_refused() {
        let line = error_line(&[(RUST_LOG, "info,[")]);
        assert!(
            line.starts_with(r#"RUST_LOG="info,[" is not valid: must be a tracing filter"#),
            "{line}"
        );
    }

    #[test]
    fn error_is_one_line_even_for_values_with_newlines() {
        let line = error_line(&[(WORKER_MAX_NICKNAME_CHARS, "3\n2")]);
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with(r#"WORKER_MAX_NICKNAME_CHARS="3\n2""#),
            "{line}"
        );
    }
}
