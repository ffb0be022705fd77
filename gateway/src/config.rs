//! Settings: the environment variables of the README's configuration table, parsed and
//! validated before anything binds.
//!
//! Nothing else in the gateway reads the environment. Settings are read through a lookup
//! function, so tests pass a map instead of touching the process environment. Every error
//! names the variable, the value and the rule, on one line, so that a bad deployment stops
//! with a message an operator can act on.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use openim_gateway_proto::subject;
use thiserror::Error;

use crate::decision::DefaultDecision;

/// NATS server URL, or a comma-separated list of them.
pub const NATS_URL: &str = "NATS_URL";
/// Address the HTTP server binds.
pub const GATEWAY_LISTEN: &str = "GATEWAY_LISTEN";
/// Subjects are `{prefix}.{command}`.
pub const GATEWAY_SUBJECT_PREFIX: &str = "GATEWAY_SUBJECT_PREFIX";
/// OpenIM's `timeout` for the callbacks, in milliseconds.
pub const GATEWAY_CALLBACK_TIMEOUT_MS: &str = "GATEWAY_CALLBACK_TIMEOUT_MS";
/// How long before OpenIM's timeout the answer must leave.
pub const GATEWAY_SAFETY_MARGIN_MS: &str = "GATEWAY_SAFETY_MARGIN_MS";
/// `allow` or `reject`: the answer when no valid worker reply arrives in time.
pub const GATEWAY_DEFAULT_DECISION: &str = "GATEWAY_DEFAULT_DECISION";
/// `errCode` of the default reject.
pub const GATEWAY_REJECT_ERR_CODE: &str = "GATEWAY_REJECT_ERR_CODE";
/// `errMsg` of the default reject.
pub const GATEWAY_REJECT_ERR_MSG: &str = "GATEWAY_REJECT_ERR_MSG";
/// A path segment OpenIM's URL must carry before the command.
pub const GATEWAY_WEBHOOK_SECRET: &str = "GATEWAY_WEBHOOK_SECRET";
/// The largest request body accepted.
pub const GATEWAY_MAX_BODY_BYTES: &str = "GATEWAY_MAX_BODY_BYTES";
/// Runtime threads: 1 runs one event loop; more run tokio's multi-thread scheduler.
pub const GATEWAY_RUNTIME_THREADS: &str = "GATEWAY_RUNTIME_THREADS";
/// After SIGTERM: `/readyz` 503 at once, keep accepting and answering this long, then drain.
pub const GATEWAY_SHUTDOWN_DELAY_MS: &str = "GATEWAY_SHUTDOWN_DELAY_MS";
/// The most before-callbacks decided at once; past it, the default at once.
pub const GATEWAY_MAX_INFLIGHT: &str = "GATEWAY_MAX_INFLIGHT";
/// The most open HTTP connections; at the bound the longest idle one makes room.
pub const GATEWAY_MAX_CONNECTIONS: &str = "GATEWAY_MAX_CONNECTIONS";
/// A JetStream stream that stores after-callbacks before they are acknowledged.
pub const GATEWAY_AFTER_STREAM: &str = "GATEWAY_AFTER_STREAM";
/// The tracing filter.
pub const RUST_LOG: &str = "RUST_LOG";

/// Every variable the gateway reads.
pub const ALL_SETTINGS: [&str; 16] = [
    NATS_URL,
    GATEWAY_LISTEN,
    GATEWAY_SUBJECT_PREFIX,
    GATEWAY_CALLBACK_TIMEOUT_MS,
    GATEWAY_SAFETY_MARGIN_MS,
    GATEWAY_DEFAULT_DECISION,
    GATEWAY_REJECT_ERR_CODE,
    GATEWAY_REJECT_ERR_MSG,
    GATEWAY_WEBHOOK_SECRET,
    GATEWAY_MAX_BODY_BYTES,
    GATEWAY_RUNTIME_THREADS,
    GATEWAY_SHUTDOWN_DELAY_MS,
    GATEWAY_MAX_INFLIGHT,
    GATEWAY_MAX_CONNECTIONS,
    GATEWAY_AFTER_STREAM,
    RUST_LOG,
];

/// OpenIM's HTTP client has `Timeout: 15s` (openimsdk/tools `NewClientConfig`): no callback
/// waits longer, whatever `webhooks.yml` says.
pub const OPENIM_TIMEOUT_CAP_MS: u64 = 15_000;
/// 10006 is the port of the `url` in OpenIM's shipped `webhooks.yml`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:10006";
/// The NATS default port on this host.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// OpenIM's shipped `timeout: 5` (seconds).
pub const DEFAULT_CALLBACK_TIMEOUT_MS: u64 = 5_000;
/// Room for the answer to travel back and be read before OpenIM gives up.
pub const DEFAULT_SAFETY_MARGIN_MS: u64 = 250;
/// OpenIM's docs suggest custom error codes in 5000..=9999.
pub const DEFAULT_REJECT_ERR_CODE: i32 = 5000;
/// What the end user reads when the default reject applies.
pub const DEFAULT_REJECT_ERR_MSG: &str = "rejected: decision service unavailable";
/// 1 MiB: far above any OpenIM callback body, and NATS's default `max_payload`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1_048_576;
const MIN_BODY_BYTES: usize = 1024;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const MIN_SECRET_CHARS: usize = 16;
/// One event loop: on the benchmark (BENCHMARKS.md) it took less CPU per callback than a
/// work-stealing pool under the same load, in the gateway and in nats-server, because
/// publishes and replies that are ready together leave in one write instead of one each.
pub const DEFAULT_RUNTIME_THREADS: usize = 1;
const MAX_RUNTIME_THREADS: u64 = 256;
/// 5 s: long enough for a load balancer or a new gateway on the same port (an upgrade) to
/// take over, and for OpenIM's kept-alive connections to be used once more and closed after
/// their answer; short enough that the delay plus the longest budget fits in docker's and
/// Kubernetes' usual grace periods (docker-compose.yml sets 30 s).
pub const DEFAULT_SHUTDOWN_DELAY_MS: u64 = 5_000;
const MAX_SHUTDOWN_DELAY_MS: u64 = 600_000;
/// Far above what one event loop decides in a budget at the benchmark's maximum rate (about
/// 20k callbacks/s), so it only bites when callbacks pile up faster than they are answered.
pub const DEFAULT_MAX_INFLIGHT: usize = 10_000;
const MAX_MAX_INFLIGHT: u64 = 10_000_000;
/// OpenIM's client opens at most 100 connections per host (`MaxConnsPerHost`) per OpenIM
/// process: this leaves room for a hundred OpenIM processes, a balancer's probes and
/// scrapers. The gateway lowers it to what the open-file limit allows, with a warning.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const MIN_MAX_CONNECTIONS: u64 = 16;
const MAX_MAX_CONNECTIONS: u64 = 1_000_000;

/// A setting that is not valid: the variable, its value and the rule it breaks.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{variable}={value:?} is not valid: {rule}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// The value as given (the secret's value is never shown).
    pub value: String,
    /// What a valid value looks like.
    pub rule: String,
}

/// The shared secret of the webhook URL. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// The secret's bytes, for the constant-time comparison.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// Every setting of the gateway, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS servers to connect to (any of them).
    pub nats_urls: Vec<async_nats::ServerAddr>,
    /// The HTTP listen address; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Subjects are `{subject_prefix}.{command}`.
    pub subject_prefix: String,
    /// OpenIM's timeout for a callback.
    pub callback_timeout: Duration,
    /// How long before OpenIM's timeout the answer must leave.
    pub safety_margin: Duration,
    /// The answer when no valid worker decision arrives in time.
    pub default_decision: DefaultDecision,
    /// When set, the path segment before the command must equal it.
    pub webhook_secret: Option<WebhookSecret>,
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// 1: one event loop (tokio's current-thread runtime); more: a multi-thread runtime
    /// with that many workers.
    pub runtime_threads: usize,
    /// From SIGTERM to no longer accepting connections.
    pub shutdown_delay: Duration,
    /// The most before-callbacks decided at once.
    pub max_inflight: usize,
    /// The most open HTTP connections.
    pub max_connections: usize,
    /// The JetStream stream after-callbacks are stored in, when set.
    pub after_stream: Option<String>,
    /// The tracing filter directive (`RUST_LOG`).
    pub log_filter: String,
}

impl Config {
    /// The time a before-callback has from arrival to answer.
    pub fn budget(&self) -> Duration {
        self.callback_timeout.saturating_sub(self.safety_margin)
    }

    /// Reads the settings from the process environment. A value that is not UTF-8 is
    /// refused, not taken for unset: the operator set something, and it is not what they
    /// meant.
    pub fn from_env() -> Result<Self, ConfigError> {
        for variable in ALL_SETTINGS {
            if let Err(std::env::VarError::NotUnicode(value)) = std::env::var(variable) {
                return Err(not_unicode(variable, &value));
            }
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let setting = |name: &'static str, default: &str| {
            let value = lookup(name).unwrap_or_else(|| default.to_owned());
            Setting { name, value }
        };

        let nats_urls = setting(NATS_URL, DEFAULT_NATS_URL).nats_urls()?;
        let listen = setting(GATEWAY_LISTEN, DEFAULT_LISTEN)
            .parse::<SocketAddr>("a socket address such as 127.0.0.1:10006 or 0.0.0.0:10006")?;
        let subject_prefix = setting(GATEWAY_SUBJECT_PREFIX, subject::DEFAULT_PREFIX);
        if !subject::is_valid_publish_subject(&subject_prefix.value) {
            return Err(subject_prefix.invalid(
                "must be a NATS subject of dot-separated tokens without wildcards or spaces",
            ));
        }
        let timeout_ms = setting(
            GATEWAY_CALLBACK_TIMEOUT_MS,
            &DEFAULT_CALLBACK_TIMEOUT_MS.to_string(),
        )
        .integer_in(
            1..=OPENIM_TIMEOUT_CAP_MS,
            "OpenIM caps every callback at 15 s",
        )?;
        let margin = setting(
            GATEWAY_SAFETY_MARGIN_MS,
            &DEFAULT_SAFETY_MARGIN_MS.to_string(),
        );
        let margin_ms = margin.integer_in(0..=u64::MAX, "")?;
        if margin_ms >= timeout_ms {
            return Err(margin.invalid(&format!(
                "must be smaller than {GATEWAY_CALLBACK_TIMEOUT_MS} ({timeout_ms})"
            )));
        }
        // The reject settings are validated even when the default is allow: a typo there
        // should not wait for the day someone switches to reject.
        let reject_err_code = setting(
            GATEWAY_REJECT_ERR_CODE,
            &DEFAULT_REJECT_ERR_CODE.to_string(),
        )
        .integer_in(5000..=9999, "OpenIM's range for custom error codes")?;
        let reject_err_msg = setting(GATEWAY_REJECT_ERR_MSG, DEFAULT_REJECT_ERR_MSG);
        if reject_err_msg.value.trim().is_empty() {
            return Err(reject_err_msg.invalid("must not be empty"));
        }
        let default_decision = match setting(GATEWAY_DEFAULT_DECISION, "allow") {
            decision if decision.value == "allow" => DefaultDecision::Allow,
            decision if decision.value == "reject" => DefaultDecision::Reject {
                // The range check above makes this conversion lossless.
                err_code: reject_err_code as i32,
                err_msg: reject_err_msg.value,
            },
            decision => return Err(decision.invalid("must be allow or reject")),
        };
        let webhook_secret = match lookup(GATEWAY_WEBHOOK_SECRET) {
            None => None,
            Some(value) => Some(validate_secret(value)?),
        };
        let max_body_bytes = setting(GATEWAY_MAX_BODY_BYTES, &DEFAULT_MAX_BODY_BYTES.to_string())
            .integer_in(MIN_BODY_BYTES as u64..=MAX_BODY_BYTES as u64, "")?
            as usize;
        let runtime_threads = setting(
            GATEWAY_RUNTIME_THREADS,
            &DEFAULT_RUNTIME_THREADS.to_string(),
        )
        .integer_in(
            1..=MAX_RUNTIME_THREADS,
            "1 runs one event loop, more a multi-thread runtime",
        )? as usize;
        let shutdown_delay_ms = setting(
            GATEWAY_SHUTDOWN_DELAY_MS,
            &DEFAULT_SHUTDOWN_DELAY_MS.to_string(),
        )
        .integer_in(0..=MAX_SHUTDOWN_DELAY_MS, "")?;
        let max_inflight = setting(GATEWAY_MAX_INFLIGHT, &DEFAULT_MAX_INFLIGHT.to_string())
            .integer_in(1..=MAX_MAX_INFLIGHT, "")? as usize;
        let max_connections = setting(
            GATEWAY_MAX_CONNECTIONS,
            &DEFAULT_MAX_CONNECTIONS.to_string(),
        )
        .integer_in(MIN_MAX_CONNECTIONS..=MAX_MAX_CONNECTIONS, "")?
            as usize;
        let after_stream = match lookup(GATEWAY_AFTER_STREAM) {
            None => None,
            Some(value) => {
                let name = Setting {
                    name: GATEWAY_AFTER_STREAM,
                    value,
                };
                let valid = !name.value.is_empty()
                    && name.value.len() <= 255
                    && name
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(name.invalid(
                        "must be a JetStream stream name: 1 to 255 letters, digits, - and _",
                    ));
                }
                Some(name.value)
            }
        };
        let log_filter = setting(RUST_LOG, "info");
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_filter.value) {
            return Err(log_filter.invalid(&format!(
                "must be a tracing filter such as info or openim_gateway=debug ({error})"
            )));
        }

        Ok(Self {
            nats_urls,
            listen,
            subject_prefix: subject_prefix.value,
            callback_timeout: Duration::from_millis(timeout_ms),
            safety_margin: Duration::from_millis(margin_ms),
            default_decision,
            webhook_secret,
            max_body_bytes,
            runtime_threads,
            shutdown_delay: Duration::from_millis(shutdown_delay_ms),
            max_inflight,
            max_connections,
            after_stream,
            log_filter: log_filter.value,
        })
    }
}

/// One variable and its raw value, with the checks that turn it into a typed setting.
struct Setting {
    name: &'static str,
    value: String,
}

impl Setting {
    fn invalid(&self, rule: &str) -> ConfigError {
        ConfigError {
            variable: self.name,
            value: self.value.clone(),
            rule: rule.to_owned(),
        }
    }

    fn parse<T: FromStr>(&self, rule: &str) -> Result<T, ConfigError> {
        self.value
            .trim()
            .parse()
            .map_err(|_| self.invalid(&format!("must be {rule}")))
    }

    fn integer_in(
        &self,
        range: std::ops::RangeInclusive<u64>,
        why: &str,
    ) -> Result<u64, ConfigError> {
        let rule = match (range.end(), why.is_empty()) {
            (&u64::MAX, _) => format!("must be an integer of at least {}", range.start()),
            (end, true) => format!("must be an integer in {}..={end}", range.start()),
            (end, false) => format!("must be an integer in {}..={end}: {why}", range.start()),
        };
        match self.value.trim().parse::<u64>() {
            Ok(number) if range.contains(&number) => Ok(number),
            _ => Err(self.invalid(&rule)),
        }
    }

    fn nats_urls(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        let rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list";
        let urls = self
            .value
            .split(',')
            .map(str::trim)
            .map(|url| {
                if url.is_empty() {
                    return Err(self.invalid(rule));
                }
                url.parse::<async_nats::ServerAddr>()
                    .map_err(|error| self.invalid(&format!("{rule} ({error})")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(urls)
    }
}

fn not_unicode(variable: &'static str, value: &std::ffi::OsStr) -> ConfigError {
    ConfigError {
        variable,
        value: if variable == GATEWAY_WEBHOOK_SECRET {
            "<not shown>".to_owned()
        } else {
            value.to_string_lossy().into_owned()
        },
        rule: "must be valid UTF-8".to_owned(),
    }
}

fn validate_secret(value: String) -> Result<WebhookSecret, ConfigError> {
    let invalid = |rule: &str| ConfigError {
        variable: GATEWAY_WEBHOOK_SECRET,
        // The secret itself never appears in an error or a log line.
        value: format!("<{} characters>", value.chars().count()),
        rule: rule.to_owned(),
    };
    if value.chars().count() < MIN_SECRET_CHARS {
        return Err(invalid("must be at least 16 characters"));
    }
    let url_safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~');
    if !value.chars().all(url_safe) {
        return Err(invalid(
            "must be URL-safe: letters, digits and - _ . ~ only",
        ));
    }
    Ok(WebhookSecret(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:10006".parse().unwrap());
        assert_eq!(config.subject_prefix, "openim.callback");
        assert_eq!(config.callback_timeout, Duration::from_millis(5000));
        assert_eq!(config.safety_margin, Duration::from_millis(250));
        assert_eq!(config.budget(), Duration::from_millis(4750));
        assert_eq!(config.default_decision, DefaultDecision::Allow);
        assert_eq!(config.webhook_secret, None);
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.runtime_threads, 1);
        assert_eq!(config.shutdown_delay, Duration::from_millis(5000));
        assert_eq!(config.max_inflight, 10_000);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.nats_urls.len(), 1);
    }

    #[test]
    fn reject_default_carries_code_and_message() {
        let config = config(&[
            (GATEWAY_DEFAULT_DECISION, "reject"),
            (GATEWAY_REJECT_ERR_CODE, "5099"),
            (GATEWAY_REJECT_ERR_MSG, "try later"),
        ])
        .unwrap();
        assert_eq!(
            config.default_decision,
            DefaultDecision::Reject {
                err_code: 5099,
                err_msg: "try later".to_owned()
            }
        );
    }

    #[test]
    fn bad_values_name_the_variable_the_value_and_the_rule() {
        let cases: &[(&str, &str)] = &[
            (GATEWAY_CALLBACK_TIMEOUT_MS, "0"),
            (GATEWAY_CALLBACK_TIMEOUT_MS, "15001"),
            (GATEWAY_CALLBACK_TIMEOUT_MS, "abc"),
            (GATEWAY_CALLBACK_TIMEOUT_MS, "-5"),
            (GATEWAY_SAFETY_MARGIN_MS, "5000"),
            (GATEWAY_SAFETY_MARGIN_MS, "x"),
            (GATEWAY_DEFAULT_DECISION, "maybe"),
            (GATEWAY_REJECT_ERR_CODE, "4999"),
            (GATEWAY_REJECT_ERR_CODE, "10000"),
            (GATEWAY_REJECT_ERR_MSG, ""),
            (GATEWAY_REJECT_ERR_MSG, "   "),
            (GATEWAY_MAX_BODY_BYTES, "1023"),
            (GATEWAY_MAX_BODY_BYTES, "67108865"),
            (GATEWAY_LISTEN, "nope"),
            (GATEWAY_SUBJECT_PREFIX, "a.*"),
            (GATEWAY_SUBJECT_PREFIX, "a..b"),
            (GATEWAY_SUBJECT_PREFIX, ""),
            (NATS_URL, ""),
            (NATS_URL, "nats://a:4222,,nats://b:4222"),
            (RUST_LOG, "=[bad"),
            (GATEWAY_RUNTIME_THREADS, "0"),
            (GATEWAY_RUNTIME_THREADS, "257"),
            (GATEWAY_RUNTIME_THREADS, "two"),
            (GATEWAY_SHUTDOWN_DELAY_MS, "-1"),
            (GATEWAY_SHUTDOWN_DELAY_MS, "600001"),
            (GATEWAY_MAX_INFLIGHT, "0"),
            (GATEWAY_MAX_CONNECTIONS, "15"),
            (GATEWAY_AFTER_STREAM, ""),
            (GATEWAY_AFTER_STREAM, "openim.after"),
            (GATEWAY_AFTER_STREAM, "a b"),
        ];
        for (variable, value) in cases {
            let error = config(&[(variable, value)]).expect_err(&format!("{variable}={value}"));
            assert_eq!(error.variable, *variable);
            let line = error.to_string();
            assert!(
                line.starts_with(&format!("{variable}={value:?} is not valid: ")),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn secret_must_be_long_and_url_safe_and_is_never_shown() {
        for bad in [
            "short-secret-15c",
            "a/b-c-d-e-f-g-h-i-j",
            "with space in it ok?",
        ] {
            let bad = if bad.len() == 16 { &bad[..15] } else { bad };
            let error = config(&[(GATEWAY_WEBHOOK_SECRET, bad)]).unwrap_err();
            assert_eq!(error.variable, GATEWAY_WEBHOOK_SECRET);
            assert!(!error.to_string().contains(bad), "{error}");
        }
        let config = config(&[(GATEWAY_WEBHOOK_SECRET, "s3cr3t-Path_Token.0123~")]).unwrap();
        let secret = config.webhook_secret.unwrap();
        assert_eq!(secret.as_bytes(), b"s3cr3t-Path_Token.0123~");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_value_that_is_not_utf8_is_named_and_refused() {
        use std::os::unix::ffi::OsStrExt;
        let value = std::ffi::OsStr::from_bytes(b"50\xff0");
        let line = not_unicode(GATEWAY_CALLBACK_TIMEOUT_MS, value).to_string();
        assert!(
            line.starts_with(
                "GATEWAY_CALLBACK_TIMEOUT_MS=\"50\u{fffd}0\" is not valid: must be valid UTF-8"
            ),
            "{line}"
        );
        let secret = not_unicode(GATEWAY_WEBHOOK_SECRET, value).to_string();
        assert!(!secret.contains("50"), "{secret}");
    }

    #[test]
    fn several_nats_urls_are_accepted() {
        let config = config(&[(NATS_URL, "nats://a:4222, nats://b:4223")]).unwrap();
        assert_eq!(config.nats_urls.len(), 2);
    }
}
