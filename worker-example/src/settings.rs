//! Settings: the environment variables the worker reads, their defaults and their rules.
//!
//! This is the only module that reads the environment, and it reads it through a lookup
//! function so that tests pass a map instead of mutating the process environment. It parses
//! and validates everything before anything connects: a bad value is one [`SettingsError`]
//! line naming the variable, the value and the rule, and `main` turns it into exit code 2.

use async_nats::ServerAddr;
use openim_gateway_proto::nats_url::redact_urls;
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
/// A creds file (user JWT and nkey seed) to authenticate to NATS with.
pub const WORKER_NATS_CREDS: &str = "WORKER_NATS_CREDS";
/// A file holding a user nkey seed to authenticate to NATS with.
pub const WORKER_NATS_NKEY: &str = "WORKER_NATS_NKEY";
/// The PEM CA file that signed the NATS server's certificate.
pub const WORKER_NATS_TLS_CA: &str = "WORKER_NATS_TLS_CA";
/// A PEM client certificate, with [`WORKER_NATS_TLS_KEY`].
pub const WORKER_NATS_TLS_CERT: &str = "WORKER_NATS_TLS_CERT";
/// The PEM key of [`WORKER_NATS_TLS_CERT`].
pub const WORKER_NATS_TLS_KEY: &str = "WORKER_NATS_TLS_KEY";

/// Every variable this module reads, so that [`Settings::from_env`] can refuse a value that is
/// not UTF-8 instead of silently treating it as unset.
pub const ALL_VARIABLES: [&str; 11] = [
    NATS_URL,
    WORKER_NATS_CREDS,
    WORKER_NATS_NKEY,
    WORKER_NATS_TLS_CA,
    WORKER_NATS_TLS_CERT,
    WORKER_NATS_TLS_KEY,
    WORKER_SUBJECT_PREFIX,
    WORKER_BANNED_WORDS,
    WORKER_MAX_NICKNAME_CHARS,
    WORKER_CONCURRENCY,
    RUST_LOG,
];

/// Every variable with its default and its rule, as `--help` lists them.
pub const VARIABLE_DOCS: [(&str, &str, &str); 11] = [
    (
        NATS_URL,
        DEFAULT_NATS_URL,
        "one NATS URL (nats:// or tls://) or a comma-separated list",
    ),
    (
        WORKER_SUBJECT_PREFIX,
        subject::DEFAULT_PREFIX,
        "a NATS subject without wildcards; must match the gateway's GATEWAY_SUBJECT_PREFIX",
    ),
    (
        WORKER_BANNED_WORDS,
        "admin,official,openim",
        "comma-separated words refused in nicknames, case-insensitively; empty: none",
    ),
    (
        WORKER_MAX_NICKNAME_CHARS,
        "32",
        "1..=255: the longest nickname allowed, in characters",
    ),
    (
        WORKER_CONCURRENCY,
        "64",
        "1..=10000: requests handled at once; more wait in the NATS client",
    ),
    (
        RUST_LOG,
        DEFAULT_LOG_FILTER,
        "a tracing filter such as info or openim_worker_example=debug",
    ),
    (
        WORKER_NATS_CREDS,
        "unset",
        "a creds file (user JWT and nkey seed); not with an nkey",
    ),
    (
        WORKER_NATS_NKEY,
        "unset",
        "a file holding a user nkey seed (SU...); not with a creds file",
    ),
    (
        WORKER_NATS_TLS_CA,
        "unset (the system's roots)",
        "a PEM CA file; set: TLS is required",
    ),
    (
        WORKER_NATS_TLS_CERT,
        "unset",
        "a PEM client certificate, with WORKER_NATS_TLS_KEY",
    ),
    (
        WORKER_NATS_TLS_KEY,
        "unset",
        "the PEM private key of WORKER_NATS_TLS_CERT",
    ),
];

/// The settings part of `--help`.
pub fn settings_help() -> String {
    let mut text = String::from(
        "Settings (environment variables; a bad one stops the start with exit code 2):\n",
    );
    for (variable, default, rule) in VARIABLE_DOCS {
        text.push_str(&format!(
            "  {variable}\n      default: {default}\n      {rule}\n"
        ));
    }
    text
}

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
    /// Credentials and TLS files for the NATS connection.
    pub nats_files: NatsFiles,
}

/// Files the NATS connection reads: paths only, so that no secret is held in (or printed
/// with) the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsFiles {
    /// A creds file.
    pub creds: Option<std::path::PathBuf>,
    /// An nkey seed file.
    pub nkey: Option<std::path::PathBuf>,
    /// A CA file.
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate and its key.
    pub tls_client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// A file setting: it must name a readable file.
fn file_setting(
    lookup: &impl Fn(&'static str) -> Option<String>,
    variable: &'static str,
) -> Result<Option<std::path::PathBuf>, SettingsError> {
    let Some(path) = lookup(variable) else {
        return Ok(None);
    };
    match std::fs::File::open(&path) {
        Ok(_) => Ok(Some(path.into())),
        Err(error) => Err(SettingsError::invalid(
            variable,
            &path,
            format!("must be a readable file ({error})"),
        )),
    }
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
    /// A `WORKER_*` variable is set that is no setting of this worker.
    #[error("{variable} is not a setting of this worker: {}", match suggestion {
        Some(known) => format!("did you mean {known}?"),
        None => "--help lists every setting".to_owned(),
    })]
    Unknown {
        /// The variable's name.
        variable: String,
        /// The setting it is most likely a typo of.
        suggestion: Option<&'static str>,
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
    /// Reads the process environment: every bad value, and every `WORKER_*` variable that is
    /// no setting (a typo would otherwise be silently ignored), is reported at once.
    pub fn from_env() -> Result<Self, SettingsErrors> {
        let mut errors = Vec::new();
        for variable in ALL_VARIABLES {
            if let Err(std::env::VarError::NotUnicode(raw)) = std::env::var(variable) {
                errors.push(SettingsError::invalid(
                    variable,
                    &raw.to_string_lossy(),
                    "must be valid UTF-8",
                ));
            }
        }
        let names: Vec<String> = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        errors.extend(unknown_settings(names.iter().map(String::as_str)));
        let read = Self::from_lookup(|variable| std::env::var(variable).ok());
        match read {
            Ok(settings) if errors.is_empty() => Ok(settings),
            Ok(_) => Err(SettingsErrors(errors)),
            Err(SettingsErrors(more)) => {
                // A non-UTF-8 variable reads as unset, so it is not reported twice.
                errors.extend(more);
                Err(SettingsErrors(errors))
            }
        }
    }

    /// Reads the settings through `lookup`, which returns a variable's value or `None` when it
    /// is unset. Checks every variable and reports every bad one, in a fixed order.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, SettingsErrors> {
        let mut errors = Vec::new();
        let nats_servers = keep(
            &mut errors,
            parse_nats_servers(lookup(NATS_URL).as_deref().unwrap_or(DEFAULT_NATS_URL)),
        );
        let subject_prefix = keep(
            &mut errors,
            parse_subject_prefix(
                lookup(WORKER_SUBJECT_PREFIX)
                    .as_deref()
                    .unwrap_or(subject::DEFAULT_PREFIX),
            ),
        );
        let max_nickname_chars = match lookup(WORKER_MAX_NICKNAME_CHARS) {
            Some(value) => keep(&mut errors, parse_max_nickname_chars(&value)),
            None => Some(DEFAULT_MAX_NICKNAME_CHARS),
        };
        let concurrency = match lookup(WORKER_CONCURRENCY) {
            Some(value) => keep(&mut errors, parse_concurrency(&value)),
            None => Some(openim_worker_kit::DEFAULT_CONCURRENCY),
        };
        let log_filter = match lookup(RUST_LOG) {
            Some(value) if !value.trim().is_empty() => keep(&mut errors, parse_log_filter(&value)),
            _ => Some(DEFAULT_LOG_FILTER.to_owned()),
        };
        let creds = keep(&mut errors, file_setting(&lookup, WORKER_NATS_CREDS)).flatten();
        let nkey = keep(&mut errors, file_setting(&lookup, WORKER_NATS_NKEY)).flatten();
        if let (Some(_), Some(nkey)) = (&creds, &nkey) {
            keep(&mut errors, Err::<(), _>(SettingsError::invalid(
                WORKER_NATS_NKEY,
                &nkey.to_string_lossy(),
                format!("must not be set with {WORKER_NATS_CREDS}: a server accepts one way to authenticate"),
            )));
        }
        let tls_ca = keep(&mut errors, file_setting(&lookup, WORKER_NATS_TLS_CA)).flatten();
        let cert = keep(&mut errors, file_setting(&lookup, WORKER_NATS_TLS_CERT));
        let key = keep(&mut errors, file_setting(&lookup, WORKER_NATS_TLS_KEY));
        let tls_client = match (cert.clone().flatten(), key.clone().flatten()) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(cert), None) if key.is_some() => {
                keep(
                    &mut errors,
                    Err::<(), _>(SettingsError::invalid(
                        WORKER_NATS_TLS_CERT,
                        &cert.to_string_lossy(),
                        format!("must come with {WORKER_NATS_TLS_KEY}"),
                    )),
                );
                None
            }
            (None, Some(key)) if cert.is_some() => {
                keep(
                    &mut errors,
                    Err::<(), _>(SettingsError::invalid(
                        WORKER_NATS_TLS_KEY,
                        &key.to_string_lossy(),
                        format!("must come with {WORKER_NATS_TLS_CERT}"),
                    )),
                );
                None
            }
            _ => None,
        };
        match (
            nats_servers,
            subject_prefix,
            max_nickname_chars,
            concurrency,
            log_filter,
        ) {
            (
                Some(nats_servers),
                Some(subject_prefix),
                Some(max_nickname_chars),
                Some(concurrency),
                Some(log_filter),
            ) if errors.is_empty() => {
                let rules = match lookup(WORKER_BANNED_WORDS) {
                    Some(value) => Rules::new(value.split(','), max_nickname_chars),
                    None => Rules::new(DEFAULT_BANNED_WORDS, max_nickname_chars),
                };
                Ok(Self {
                    nats_servers,
                    subject_prefix,
                    rules,
                    concurrency,
                    log_filter,
                    nats_files: NatsFiles {
                        creds,
                        nkey,
                        tls_ca,
                        tls_client,
                    },
                })
            }
            _ => Err(SettingsErrors(errors)),
        }
    }
}

/// The value of `result`, or `None` with its error added to `errors`.
fn keep<T>(errors: &mut Vec<SettingsError>, result: Result<T, SettingsError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(error) => {
            errors.push(error);
            None
        }
    }
}

/// Every bad setting found, in the order the settings are checked: one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsErrors(pub Vec<SettingsError>);

impl SettingsErrors {
    /// The lines to print, one per bad setting.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(ToString::to_string)
    }
}

impl std::fmt::Display for SettingsErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.lines().collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for SettingsErrors {}

/// Errors for the `WORKER_*` names among `names` that are no setting of this worker, each
/// with the closest setting's name when one is close. The value is not shown: a mistyped
/// secret's name must not print the secret.
pub fn unknown_settings<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<SettingsError> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|name| name.starts_with("WORKER_") && !ALL_VARIABLES.contains(name))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    unknown
        .into_iter()
        .map(|name| SettingsError::Unknown {
            variable: name.to_owned(),
            suggestion: closest_setting(name),
        })
        .collect()
}

/// The known variable nearest to `name`, if it is near enough to be a typo of it.
fn closest_setting(name: &str) -> Option<&'static str> {
    ALL_VARIABLES
        .iter()
        .map(|known| (strsim::damerau_levenshtein(name, known), *known))
        .filter(|(distance, known)| *distance <= 3.max(known.len() / 5))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// `nats://host:port`, `tls://...`, `ws://...`, `wss://...` or a bare `host:port`, one or a
/// comma-separated list, spaces around commas allowed.
fn parse_nats_servers(value: &str) -> Result<Vec<ServerAddr>, SettingsError> {
    const RULE: &str =
        "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list of them";
    // A URL may carry a password or a token: errors show it hidden.
    let shown = redact_urls(value);
    value
        .split(',')
        .map(|entry| {
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(SettingsError::invalid(NATS_URL, &shown, RULE));
            }
            let server = entry.parse::<ServerAddr>().map_err(|error| {
                // The entry is named only as it appears in the hidden value: a comma in a
                // password splits it, and a piece alone would show part of the password.
                let entry = redact_urls(entry);
                let rule = if shown.contains(&entry) {
                    format!("{RULE} ({entry:?}: {error})")
                } else {
                    format!("{RULE} ({error})")
                };
                SettingsError::invalid(NATS_URL, &shown, rule)
            })?;
            // A NATS URL has no path, query or fragment: one is most likely a password with
            // an unencoded / ? or # that moved the host, so it is refused, not connected to.
            let url = server.clone().into_inner();
            if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some()
            {
                return Err(SettingsError::invalid(
                    NATS_URL,
                    &shown,
                    "must not have a path, query or fragment: a / ? # or @ in a password or token must be percent-encoded (%2F %3F %23 %40)",
                ));
            }
            Ok(server)
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

    fn settings(variables: &[(&'static str, &str)]) -> Result<Settings, SettingsErrors> {
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
    fn every_bad_value_is_reported_at_once() {
        let errors = settings(&[
            (NATS_URL, "http://a:1"),
            (WORKER_MAX_NICKNAME_CHARS, "0"),
            (WORKER_CONCURRENCY, "many"),
            (RUST_LOG, "info,["),
            (WORKER_NATS_CREDS, "/nonexistent/creds"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = errors
            .0
            .iter()
            .map(|error| match error {
                SettingsError::Invalid { variable, .. } => variable,
                SettingsError::Unknown { .. } => "unknown",
            })
            .collect();
        assert_eq!(
            variables,
            [
                NATS_URL,
                WORKER_MAX_NICKNAME_CHARS,
                WORKER_CONCURRENCY,
                RUST_LOG,
                WORKER_NATS_CREDS
            ]
        );
        assert_eq!(errors.to_string().lines().count(), 5, "{errors}");
    }

    #[test]
    fn a_misspelled_setting_is_named_with_the_nearest_one() {
        let errors = unknown_settings([
            "WORKER_BANED_WORDS",
            "WORKER_CONCURENCY",
            "PATH",
            "WORKER_ZZZ",
        ]);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?",
                "WORKER_CONCURENCY is not a setting of this worker: did you mean WORKER_CONCURRENCY?",
                "WORKER_ZZZ is not a setting of this worker: --help lists every setting",
            ]
        );
        assert!(unknown_settings(ALL_VARIABLES).is_empty());
    }

    #[test]
    fn help_lists_every_variable_with_its_default() {
        assert_eq!(DEFAULT_BANNED_WORDS.join(","), VARIABLE_DOCS[2].1);
        assert_eq!(DEFAULT_MAX_NICKNAME_CHARS.to_string(), VARIABLE_DOCS[3].1);
        let help = settings_help();
        for variable in ALL_VARIABLES {
            assert!(help.contains(variable), "{variable}: {help}");
        }
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
    fn a_bad_nats_url_never_shows_its_password() {
        let line = error_line(&[(NATS_URL, "nats://bob:Hunter2x@h:nope,tok3nX@h:1")]);
        assert!(
            !line.contains("Hunter2x") && !line.contains("tok3nX"),
            "{line}"
        );
        assert!(line.contains("bob:***@"), "{line}");
        // Unencoded / ? # and , in a password.
        for value in [
            "nats://bob:Hun/ter2x@h:1",
            "nats://bob:Hun?ter2x@h:1",
            "nats://bob:Hun#ter2x@h:1",
            "nats://bob:Hun,ter2x@h:1",
            "nats://bob:4222/ter2x@h:1",
        ] {
            let line = error_line(&[(NATS_URL, value)]);
            assert!(
                !line.contains("Hun") && !line.contains("ter2x"),
                "{value}: {line}"
            );
            assert!(line.contains("bob:***@"), "{line}");
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
