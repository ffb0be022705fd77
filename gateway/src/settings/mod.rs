//! Settings: the environment variables of the settings table ([`table`]), OpenIM's
//! `webhooks.yml` ([`webhooks`]), the policy file ([`policy`]) and the NATS options
//! ([`nats`]), parsed and validated before anything binds, and again on `SIGHUP`.
//!
//! Nothing else in the gateway reads the environment. Settings are read through a lookup
//! function, so tests pass a map instead of touching the process environment. Every error
//! names the variable, the value and the rule, on one line, so that a bad deployment stops
//! with a message an operator can act on.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use openim_gateway_proto::subject;
use thiserror::Error;

pub mod nats;
pub mod policy;
pub mod suggest;
pub mod table;
pub mod traces;
pub mod webhooks;

use self::{
    nats::{NatsAuth, NatsSettings},
    policy::{Mode, PolicyFile, RejectFallback},
    table::*,
    traces::TraceSettings,
    webhooks::OpenImWebhooks,
};
use crate::decision::DefaultDecision;

/// One message of the largest size a default NATS server carries.
const MIN_AFTER_STREAM_MAX_BYTES: u64 = 1 << 20;
const MIN_BODY_BYTES: usize = 1024;
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;
const MIN_SECRET_CHARS: usize = 16;
const MAX_RUNTIME_THREADS: u64 = 256;
const MAX_SHUTDOWN_DELAY_MS: u64 = 600_000;
const MAX_MAX_INFLIGHT: u64 = 10_000_000;
const MIN_MAX_CONNECTIONS: u64 = 16;
const MAX_MAX_CONNECTIONS: u64 = 1_000_000;
/// `GATEWAY_IDLE_TIMEOUT_MS`: 0 (never), or from a second to a day.
const MIN_IDLE_TIMEOUT_MS: u64 = 1000;
const MAX_IDLE_TIMEOUT_MS: u64 = 86_400_000;

/// A setting that is not valid: the variable, its value and the rule it breaks.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{variable}={value:?} is not valid: {rule}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: String,
    /// The value as given (a secret's value is never shown).
    pub value: String,
    /// What a valid value looks like.
    pub rule: String,
}

/// Every bad setting of one start, in the order of the settings: an operator fixes them all
/// in one go instead of one restart each. Never empty.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// The errors, one per bad setting.
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }
}

/// Every `GATEWAY_*` name the gateway knows.
fn known_gateway_names() -> impl Iterator<Item = &'static str> {
    ALL.iter()
        .map(|setting| setting.name)
        .filter(|name| name.starts_with(GATEWAY_PREFIX))
}

/// The known setting closest to `name`, when one is close enough to be the likely intent.
/// Names are compared without the shared `GATEWAY_` prefix, which would make every pair look
/// alike, and also against the known name's trailing words, so that a name missing a word
/// (`TIMEOUT_MS` of `CALLBACK_TIMEOUT_MS`, even mistyped) still finds it.
pub fn closest_setting(name: &str) -> Option<&'static str> {
    let short = |name: &str| name.strip_prefix(GATEWAY_PREFIX).unwrap_or(name).to_owned();
    let wanted = short(name);
    suggest::closest(known_gateway_names(), |known| {
        let candidate = short(known);
        let whole = suggest::similarity(&wanted, &candidate);
        let tail = candidate
            .match_indices('_')
            .map(|(index, _)| &candidate[index + 1..])
            .filter(|tail| wanted.len() >= 4 && tail.len() >= 4)
            .map(|tail| suggest::similarity(&wanted, tail))
            .fold(0.0, f64::max);
        whole.max(tail)
    })
}

/// Whether `name=value` is one of the variables Kubernetes puts in every pod for a Service
/// whose name starts with `gateway` (service links: a Service `gateway` gives
/// `GATEWAY_SERVICE_HOST`, `GATEWAY_PORT=tcp://10.0.0.1:10006`,
/// `GATEWAY_PORT_10006_TCP_ADDR`, ...). Those are not settings, and a gateway deployed as
/// `gateway` would otherwise refuse to start. Only the exact shapes are recognised, value
/// included, so that a mistyped setting is still refused.
pub fn is_kubernetes_service_link(name: &str, value: &str) -> bool {
    let Some(rest) = name.strip_prefix("GATEWAY") else {
        return false;
    };
    // The Service's name after `gateway` (upper case, `-` as `_`) ends at one of the `_`.
    rest.match_indices('_').any(|(index, _)| {
        let service = &rest[..index];
        service
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && is_service_link_suffix(&rest[index + 1..], value)
    })
}

/// `suffix` (what follows `<SERVICE>_`) and `value` as Kubernetes writes them.
fn is_service_link_suffix(suffix: &str, value: &str) -> bool {
    let is_ip = |text: &str| text.parse::<std::net::IpAddr>().is_ok();
    let is_port = |text: &str| text.parse::<u16>().is_ok_and(|port| port > 0);
    // `tcp://10.0.0.1:10006`, the protocol in lower case.
    let is_link_url = |text: &str, protocol: Option<&str>, port: Option<&str>| {
        let Some((scheme, address)) = text.split_once("://") else {
            return false;
        };
        let Ok(address) = address.parse::<SocketAddr>() else {
            return false;
        };
        matches!(scheme, "tcp" | "udp" | "sctp")
            && protocol.is_none_or(|protocol| protocol.eq_ignore_ascii_case(scheme))
            && port.is_none_or(|port| port.parse() == Ok(address.port()))
    };
    match suffix {
        "SERVICE_HOST" => is_ip(value),
        "SERVICE_PORT" => is_port(value),
        "PORT" => is_link_url(value, None, None),
        _ => {
            if let Some(port_name) = suffix.strip_prefix("SERVICE_PORT_") {
                return !port_name.is_empty()
                    && port_name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                    && is_port(value);
            }
            let Some(link) = suffix.strip_prefix("PORT_") else {
                return false;
            };
            let mut parts = link.split('_');
            let (Some(port), Some(protocol)) = (parts.next(), parts.next()) else {
                return false;
            };
            if !is_port(port) || !matches!(protocol, "TCP" | "UDP" | "SCTP") {
                return false;
            }
            match (parts.next(), parts.next()) {
                (None, _) => is_link_url(value, Some(protocol), Some(port)),
                (Some("ADDR"), None) => is_ip(value),
                (Some("PORT"), None) => value == port,
                (Some("PROTO"), None) => value.eq_ignore_ascii_case(protocol),
                _ => false,
            }
        }
    }
}

/// Errors for the `GATEWAY_*` names among `names` that are no setting of the gateway. The
/// value is not shown: a mistyped secret's name must not print the secret.
pub fn unknown_settings<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<ConfigError> {
    let mut unknown: Vec<&str> = names
        .into_iter()
        .filter(|name| name.starts_with(GATEWAY_PREFIX))
        .filter(|name| !known_gateway_names().any(|known| known == *name))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    unknown
        .into_iter()
        .map(|name| {
            let hint = match closest_setting(name) {
                Some(known) => format!("did you mean {known}?"),
                None => "openim-gateway --help lists every setting".to_owned(),
            };
            ConfigError {
                variable: name.to_owned(),
                value: "<not shown>".to_owned(),
                rule: format!("unknown setting: {hint}"),
            }
        })
        .collect()
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

/// The shape of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// What `GATEWAY_LOG_FORMAT` asks for, when it names a format: used to print the
    /// settings' own errors in the requested shape before the settings are valid.
    pub fn requested(value: Option<&str>) -> Option<Self> {
        match value.map(str::trim) {
            Some("text") => Some(Self::Text),
            Some("json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// Every setting of the gateway, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// NATS servers to connect to (any of them), credentials and TLS.
    pub nats: NatsSettings,
    /// The HTTP listen address; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The admin listener's address (the status page and `/metrics`), when set.
    pub admin_listen: Option<SocketAddr>,
    /// Subjects are `{subject_prefix}.{command}`.
    pub subject_prefix: String,
    /// OpenIM's timeout for a callback.
    pub callback_timeout: Duration,
    /// How long before OpenIM's timeout the answer must leave.
    pub safety_margin: Duration,
    /// The percentage of a callback's budget after which it is asked once more; 0: never.
    pub hedge_after_percent: u32,
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
    /// A connection idle this long between requests is closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// The JetStream stream after-callbacks are stored in, when set.
    pub after_stream: Option<String>,
    /// The `max_bytes` of the after-callback stream when the gateway creates it.
    pub after_stream_max_bytes: u64,
    /// Take the listening socket from a gateway running on the same address, and hand it to
    /// a newer one.
    pub handover: bool,
    /// The tracing filter directive (`RUST_LOG`).
    pub log_filter: String,
    /// Text or JSON lines.
    pub log_format: LogFormat,
    /// Where spans are exported (`OTEL_*`); `None`: traces are off.
    pub traces: Option<TraceSettings>,
    /// OpenIM's `webhooks.yml`, when `GATEWAY_OPENIM_WEBHOOKS` names it.
    pub openim_webhooks: Option<OpenImWebhooks>,
    /// The policy file, when `GATEWAY_CONFIG` names it.
    pub policy_file: Option<PolicyFile>,
    /// The mode of the commands the policy file does not name.
    pub mode: Mode,
    /// The global reject code and message, kept even when the default is allow: a policy
    /// file's section that rejects without its own falls back to them.
    pub reject: RejectFallback,
}

impl Config {
    /// What is valid but likely wrong, one line each, for the start (and a reload) to log as
    /// warnings and `check-config` to print.
    ///
    /// Without `GATEWAY_OPENIM_WEBHOOKS` the gateway does not know OpenIM's timeout for each
    /// command, only `GATEWAY_CALLBACK_TIMEOUT_MS`: a policy file's `timeout_ms` above it
    /// cannot be checked, and is only right if OpenIM's `timeout` for that command is as long.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.openim_webhooks.is_some() {
            return warnings;
        }
        let global_ms = self.callback_timeout.as_millis();
        for (command, section) in self.policy_file.iter().flat_map(|file| &file.commands) {
            let Some(timeout_ms) = section.timeout_ms else {
                continue;
            };
            if u128::from(timeout_ms.unsigned_abs()) > global_ms {
                warnings.push(format!(
                    "{GATEWAY_CONFIG}: commands.{}.timeout_ms = {timeout_ms} is above {GATEWAY_CALLBACK_TIMEOUT_MS} ({global_ms}); without {GATEWAY_OPENIM_WEBHOOKS} the gateway cannot check it against OpenIM's own timeout for the command: if OpenIM gives up first, the answers arrive too late",
                    command.name
                ));
            }
        }
        warnings
    }

    /// Reads the settings from the process environment. A value that is not UTF-8 is
    /// refused, not taken for unset: the operator set something, and it is not what they
    /// meant. A `GATEWAY_*` variable the gateway does not know is refused too.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        // Kubernetes' service links are not settings: they are left out before the check.
        let names: Vec<String> = std::env::vars_os()
            .filter(|(name, value)| match (name.to_str(), value.to_str()) {
                (Some(name), Some(value)) => !is_kubernetes_service_link(name, value),
                _ => true,
            })
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        let mut errors: Vec<ConfigError> = ALL
            .iter()
            .map(|setting| setting.name)
            .filter_map(|variable| match std::env::var(variable) {
                Err(std::env::VarError::NotUnicode(value)) => Some(not_unicode(variable, &value)),
                _ => None,
            })
            .collect();
        errors.extend(unknown_settings(names.iter().map(String::as_str)));
        let lookup = |name: &str| std::env::var(name).ok();
        match (Self::from_lookup(lookup), errors.is_empty()) {
            (Ok(config), true) => Ok(config),
            (Ok(_), false) => Err(ConfigErrors(errors)),
            (Err(ConfigErrors(more)), _) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Reads the settings from a map of variables (tests), refusing unknown `GATEWAY_*`
    /// names as [`Self::from_env`] does.
    pub fn from_map(
        variables: &std::collections::HashMap<String, String>,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = unknown_settings(
            variables
                .iter()
                .filter(|(name, value)| !is_kubernetes_service_link(name, value))
                .map(|(name, _)| name.as_str()),
        );
        match Self::from_lookup(|name| variables.get(name).cloned()) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(errors)),
            Err(ConfigErrors(more)) => {
                errors.extend(more);
                Err(ConfigErrors(errors))
            }
        }
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests). Every bad
    /// setting is reported, not just the first.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        // A bad value is recorded and replaced by its default, so that the checks after it
        // still run and report their own mistakes.
        let mut errors = Collected::default();
        // One line per mistake of the file, each naming the file.
        let policy_file = lookup(GATEWAY_CONFIG.name).and_then(|path| {
            PolicyFile::read(&path)
                .map_err(|rules| {
                    for rule in rules {
                        errors.fail(ConfigError {
                            variable: GATEWAY_CONFIG.name.to_owned(),
                            value: path.clone(),
                            rule,
                        });
                    }
                })
                .ok()
        });
        let file_global = policy_file
            .as_ref()
            .map(|file| file.global.clone())
            .unwrap_or_default();
        // For the global settings the environment wins over the file's [global] section.
        let lookup = |name: &str| {
            lookup(name).or_else(|| match name {
                name if name == GATEWAY_DEFAULT_DECISION.name => file_global.default.clone(),
                name if name == GATEWAY_REJECT_ERR_CODE.name => {
                    file_global.reject_err_code.map(|code| code.to_string())
                }
                name if name == GATEWAY_REJECT_ERR_MSG.name => file_global.reject_err_msg.clone(),
                name if name == GATEWAY_CALLBACK_TIMEOUT_MS.name => {
                    file_global.timeout_ms.map(|ms| ms.to_string())
                }
                _ => None,
            })
        };
        let setting = |setting: table::Setting| {
            let name = setting.name;
            let value =
                lookup(name).unwrap_or_else(|| setting.default.unwrap_or_default().to_owned());
            Raw { name, value }
        };

        let nats_urls = errors.check(setting(NATS_URL).nats_urls());
        let nats = nats_urls.and_then(|urls| nats_security(urls, &lookup, &mut errors));
        let listen = errors.check(
            setting(GATEWAY_LISTEN)
                .parse::<SocketAddr>("a socket address such as 127.0.0.1:10006 or 0.0.0.0:10006"),
        );
        let admin_listen = lookup(GATEWAY_ADMIN_LISTEN.name).and_then(|value| {
            let raw = Raw {
                name: GATEWAY_ADMIN_LISTEN.name,
                value,
            };
            let address = errors.check(raw.parse::<SocketAddr>(
                "a socket address such as 127.0.0.1:10007 or 0.0.0.0:10007",
            ))?;
            if listen == Some(address) && address.port() != 0 {
                errors.fail(raw.invalid(&format!(
                    "must differ from {GATEWAY_LISTEN} ({address}): the admin listener is a second port"
                )));
                return None;
            }
            Some(address)
        });
        let subject_prefix = setting(GATEWAY_SUBJECT_PREFIX);
        if !subject::is_valid_publish_subject(&subject_prefix.value) {
            errors.fail(subject_prefix.invalid(
                "must be a NATS subject of dot-separated tokens without wildcards or spaces",
            ));
        }
        let timeout_ms = errors.check(setting(GATEWAY_CALLBACK_TIMEOUT_MS).integer_in(
            1..=OPENIM_TIMEOUT_CAP_MS,
            "OpenIM caps every callback at 15 s",
        ));
        let margin = setting(GATEWAY_SAFETY_MARGIN_MS);
        let margin_ms = errors.check(margin.integer_in(0..=u64::MAX, ""));
        if let (Some(timeout_ms), Some(margin_ms)) = (timeout_ms, margin_ms) {
            if margin_ms >= timeout_ms {
                errors.fail(margin.invalid(&format!(
                    "must be smaller than {GATEWAY_CALLBACK_TIMEOUT_MS} ({timeout_ms})"
                )));
            }
        }
        // The reject settings are validated even when the default is allow: a typo there
        // should not wait for the day someone switches to reject.
        let reject_err_code = errors.check(
            setting(GATEWAY_REJECT_ERR_CODE)
                .integer_in(5000..=9999, "OpenIM's range for custom error codes"),
        );
        let reject_err_msg = setting(GATEWAY_REJECT_ERR_MSG);
        if reject_err_msg.value.trim().is_empty() {
            errors.fail(reject_err_msg.invalid("must not be empty"));
        }
        let reject = RejectFallback {
            // The range check above makes this conversion lossless.
            // Not used when the code is in error: the start stops.
            err_code: reject_err_code.map_or(0, |code| code as i32),
            err_msg: reject_err_msg.value,
        };
        let default_decision = match setting(GATEWAY_DEFAULT_DECISION) {
            decision if decision.value == "allow" => Some(DefaultDecision::Allow),
            decision if decision.value == "reject" => Some(DefaultDecision::Reject {
                err_code: reject.err_code,
                err_msg: reject.err_msg.clone(),
            }),
            decision => {
                errors.fail(decision.invalid("must be allow or reject"));
                None
            }
        };
        let webhook_secret = lookup(GATEWAY_WEBHOOK_SECRET.name)
            .and_then(|value| errors.check(validate_secret(value)));
        let max_body_bytes = errors.check(
            setting(GATEWAY_MAX_BODY_BYTES)
                .integer_in(MIN_BODY_BYTES as u64..=MAX_BODY_BYTES as u64, ""),
        );
        let runtime_threads = errors.check(setting(GATEWAY_RUNTIME_THREADS).integer_in(
            1..=MAX_RUNTIME_THREADS,
            "1 runs one event loop, more a multi-thread runtime",
        ));
        let shutdown_delay_ms = errors
            .check(setting(GATEWAY_SHUTDOWN_DELAY_MS).integer_in(0..=MAX_SHUTDOWN_DELAY_MS, ""));
        let max_inflight =
            errors.check(setting(GATEWAY_MAX_INFLIGHT).integer_in(1..=MAX_MAX_INFLIGHT, ""));
        let hedge_after_percent = errors
            .check(setting(GATEWAY_HEDGE_AFTER_PERCENT).integer_in(0..=99, "0 never asks again"));
        let max_connections = errors.check(
            setting(GATEWAY_MAX_CONNECTIONS)
                .integer_in(MIN_MAX_CONNECTIONS..=MAX_MAX_CONNECTIONS, ""),
        );
        let idle_timeout_setting = setting(GATEWAY_IDLE_TIMEOUT_MS);
        let idle_timeout = match idle_timeout_setting.value.parse::<u64>() {
            Ok(0) => Some(None),
            Ok(ms) if (MIN_IDLE_TIMEOUT_MS..=MAX_IDLE_TIMEOUT_MS).contains(&ms) => {
                Some(Some(Duration::from_millis(ms)))
            }
            _ => {
                errors.fail(idle_timeout_setting.invalid(&format!(
                    "must be 0 or an integer in {MIN_IDLE_TIMEOUT_MS}..={MAX_IDLE_TIMEOUT_MS}"
                )));
                None
            }
        };
        let after_stream =
            lookup(GATEWAY_AFTER_STREAM.name).and_then(|value| {
                let name = Raw {
                    name: GATEWAY_AFTER_STREAM.name,
                    value,
                };
                let valid = !name.value.is_empty()
                    && name.value.len() <= 255
                    && name
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if valid {
                    Some(name.value)
                } else {
                    errors.fail(name.invalid(
                        "must be a JetStream stream name: 1 to 255 letters, digits, - and _",
                    ));
                    None
                }
            });
        let after_stream_max_bytes = errors.check(
            setting(GATEWAY_AFTER_STREAM_MAX_BYTES)
                .integer_in(MIN_AFTER_STREAM_MAX_BYTES..=u64::MAX, ""),
        );
        let handover = match setting(GATEWAY_HANDOVER) {
            handover if handover.value == "on" => Some(true),
            handover if handover.value == "off" => Some(false),
            handover => {
                errors.fail(handover.invalid("must be on or off"));
                None
            }
        };
        let log_filter = setting(RUST_LOG);
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&log_filter.value) {
            errors.fail(log_filter.invalid(&format!(
                "must be a tracing filter such as info or openim_gateway=debug ({error})"
            )));
        }

        let openim_webhooks = lookup(GATEWAY_OPENIM_WEBHOOKS.name).and_then(|path| {
            let invalid = |rule: String| ConfigError {
                variable: GATEWAY_OPENIM_WEBHOOKS.name.to_owned(),
                value: path.clone(),
                rule,
            };
            let webhooks = errors.check(OpenImWebhooks::read(&path).map_err(invalid))?;
            let shortest = webhooks.callbacks.iter().min_by_key(|callback| callback.timeout);
            match (shortest, margin_ms) {
                (Some(shortest), Some(margin_ms))
                    if shortest.timeout <= Duration::from_millis(margin_ms) =>
                {
                    errors.fail(invalid(format!(
                        "{}'s timeout ({} ms) must be above {GATEWAY_SAFETY_MARGIN_MS} ({margin_ms})",
                        shortest.key,
                        shortest.timeout.as_millis()
                    )));
                    None
                }
                _ => Some(webhooks),
            }
        });
        if let (Some(file), Some(margin_ms)) = (&policy_file, margin_ms) {
            for (command, section) in &file.commands {
                let Some(timeout_ms) = section.timeout_ms else {
                    continue;
                };
                let openim = openim_webhooks.as_ref().and_then(|webhooks| {
                    webhooks
                        .callbacks
                        .iter()
                        .find(|callback| callback.command.name == command.name)
                });
                let path = lookup(GATEWAY_CONFIG.name).unwrap_or_default();
                let rule = if timeout_ms.unsigned_abs() <= margin_ms {
                    Some(format!(
                        "commands.{}.timeout_ms = {timeout_ms}: must be above {GATEWAY_SAFETY_MARGIN_MS} ({margin_ms})",
                        command.name
                    ))
                } else {
                    openim
                        .filter(|callback| Duration::from_millis(timeout_ms.unsigned_abs()) > callback.timeout)
                        .map(|callback| {
                            format!(
                                "commands.{}.timeout_ms = {timeout_ms}: must not be above OpenIM's own timeout for it ({} ms, {} in webhooks.yml): OpenIM gives up first",
                                command.name,
                                callback.timeout.as_millis(),
                                callback.key
                            )
                        })
                };
                if let Some(rule) = rule {
                    errors.fail(ConfigError {
                        variable: GATEWAY_CONFIG.name.to_owned(),
                        value: path,
                        rule,
                    });
                }
            }
        }
        let mode = file_global
            .mode
            .as_deref()
            .map_or(Mode::Enforce, |mode| match mode {
                "shadow" => Mode::Shadow,
                "off" => Mode::Off,
                _ => Mode::Enforce,
            });
        let log_format_setting = setting(GATEWAY_LOG_FORMAT);
        let log_format = LogFormat::requested(Some(&log_format_setting.value));
        if log_format.is_none() {
            errors.fail(log_format_setting.invalid("must be text or json"));
        }
        let (traces, invalid) = traces::traces(&lookup);
        for bad in invalid {
            errors.fail(ConfigError {
                variable: bad.variable.to_owned(),
                value: bad.value,
                rule: bad.rule,
            });
        }

        match (
            nats,
            listen,
            timeout_ms,
            margin_ms,
            default_decision,
            max_body_bytes,
            runtime_threads,
            shutdown_delay_ms,
            max_inflight,
            max_connections,
        ) {
            (
                Some(nats),
                Some(listen),
                Some(timeout_ms),
                Some(margin_ms),
                Some(default_decision),
                Some(max_body_bytes),
                Some(runtime_threads),
                Some(shutdown_delay_ms),
                Some(max_inflight),
                Some(max_connections),
            ) if errors.0.is_empty() => Ok(Self {
                nats,
                listen,
                admin_listen,
                subject_prefix: subject_prefix.value,
                callback_timeout: Duration::from_millis(timeout_ms),
                safety_margin: Duration::from_millis(margin_ms),
                hedge_after_percent: hedge_after_percent
                    .and_then(|percent| u32::try_from(percent).ok())
                    .unwrap_or(0),
                default_decision,
                webhook_secret,
                max_body_bytes: max_body_bytes as usize,
                runtime_threads: runtime_threads as usize,
                shutdown_delay: Duration::from_millis(shutdown_delay_ms),
                max_inflight: max_inflight as usize,
                max_connections: max_connections as usize,
                idle_timeout: idle_timeout.flatten(),
                after_stream,
                after_stream_max_bytes: after_stream_max_bytes
                    .unwrap_or(MIN_AFTER_STREAM_MAX_BYTES),
                handover: handover.unwrap_or(true),
                log_filter: log_filter.value,
                log_format: log_format.unwrap_or(LogFormat::Text),
                traces,
                openim_webhooks,
                policy_file,
                mode,
                reject,
            }),
            _ => Err(ConfigErrors(errors.0)),
        }
    }
}

/// The errors found so far by [`Config::from_lookup`].
#[derive(Default)]
struct Collected(Vec<ConfigError>);

impl Collected {
    /// The value, or `None` with the error recorded.
    fn check<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.0.push(error)).ok()
    }

    /// Records `error`.
    fn fail(&mut self, error: ConfigError) {
        self.0.push(error);
    }
}

/// One variable and its raw value, with the checks that turn it into a typed setting.
struct Raw {
    name: &'static str,
    value: String,
}

impl Raw {
    fn invalid(&self, rule: &str) -> ConfigError {
        ConfigError {
            variable: self.name.to_owned(),
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

    /// The URLs as given (credentials still in them). An error shows the value with its
    /// passwords and tokens hidden.
    fn nats_urls(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        let rule = "must be a NATS URL such as nats://127.0.0.1:4222, or a comma-separated list";
        let invalid = |rule: &str| ConfigError {
            variable: self.name.to_owned(),
            value: nats::redact_urls(&self.value),
            rule: rule.to_owned(),
        };
        let urls = self
            .value
            .split(',')
            .map(str::trim)
            .map(|url| {
                if url.is_empty() {
                    return Err(invalid(rule));
                }
                let server = url
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|error| invalid(&format!("{rule} ({error})")))?;
                if nats::has_more_than_an_authority(&server) {
                    return Err(invalid(nats::UNENCODED_RULE));
                }
                Ok(server)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(urls)
    }
}

fn not_unicode(variable: &str, value: &std::ffi::OsStr) -> ConfigError {
    ConfigError {
        variable: variable.to_owned(),
        value: if variable == GATEWAY_WEBHOOK_SECRET.name || variable == NATS_URL.name {
            "<not shown>".to_owned()
        } else {
            value.to_string_lossy().into_owned()
        },
        rule: "must be valid UTF-8".to_owned(),
    }
}

/// The credentials and TLS settings, checked against each other and against the URLs. The
/// files are read now: a wrong path stops the start instead of every connection attempt.
fn nats_security(
    urls: Vec<async_nats::ServerAddr>,
    lookup: &impl Fn(&str) -> Option<String>,
    errors: &mut Collected,
) -> Option<NatsSettings> {
    let count_before = errors.0.len();
    let invalid = |variable: Setting, value: &str, rule: &str| ConfigError {
        variable: variable.name.to_owned(),
        value: value.to_owned(),
        rule: rule.to_owned(),
    };
    let mut servers = Vec::with_capacity(urls.len());
    let mut url_auth = NatsAuth::None;
    for url in urls {
        let (server, auth) = nats::split_credentials(url);
        servers.push(server);
        if auth == NatsAuth::None {
            continue;
        }
        if url_auth == NatsAuth::None {
            url_auth = auth;
        } else if url_auth != auth {
            let value = lookup(NATS_URL.name).unwrap_or_default();
            errors.fail(invalid(
                NATS_URL,
                &nats::redact_urls(&value),
                "every URL must carry the same credentials, or none: the client sends one set to whichever server it reaches",
            ));
            break;
        }
    }
    let mut auth = url_auth;
    let mut auth_from = NATS_URL;
    for variable in [GATEWAY_NATS_CREDS, GATEWAY_NATS_NKEY] {
        let Some(path) = lookup(variable.name) else {
            continue;
        };
        let read = if variable == GATEWAY_NATS_CREDS {
            nats::read_creds(&path).map(NatsAuth::Creds)
        } else {
            nats::read_nkey(&path).map(NatsAuth::Nkey)
        };
        match read {
            Err(rule) => errors.fail(invalid(variable, &path, &rule)),
            Ok(_) if auth != NatsAuth::None => errors.fail(invalid(
                variable,
                &path,
                &format!("must not be combined with the credentials of {auth_from}: a server accepts one way to authenticate"),
            )),
            Ok(file_auth) => {
                auth = file_auth;
                auth_from = variable;
            }
        }
    }
    let tls_ca = lookup(GATEWAY_NATS_TLS_CA.name).and_then(|path| {
        errors.check(
            nats::check_pem(&path, "CERTIFICATE")
                .map_err(|rule| invalid(GATEWAY_NATS_TLS_CA, &path, &rule)),
        )
    });
    let tls_client = match (
        lookup(GATEWAY_NATS_TLS_CERT.name),
        lookup(GATEWAY_NATS_TLS_KEY.name),
    ) {
        (None, None) => None,
        (Some(cert), None) => {
            errors.fail(invalid(
                GATEWAY_NATS_TLS_CERT,
                &cert,
                &format!("must come with {GATEWAY_NATS_TLS_KEY}, the certificate's private key"),
            ));
            None
        }
        (None, Some(key)) => {
            errors.fail(invalid(
                GATEWAY_NATS_TLS_KEY,
                &key,
                &format!("must come with {GATEWAY_NATS_TLS_CERT}, the certificate it belongs to"),
            ));
            None
        }
        (Some(cert), Some(key)) => {
            let cert = errors.check(
                nats::check_pem(&cert, "CERTIFICATE")
                    .map_err(|rule| invalid(GATEWAY_NATS_TLS_CERT, &cert, &rule)),
            );
            let key = errors.check(
                nats::check_pem(&key, "PRIVATE KEY")
                    .map_err(|rule| invalid(GATEWAY_NATS_TLS_KEY, &key, &rule)),
            );
            cert.zip(key)
        }
    };
    (errors.0.len() == count_before).then_some(NatsSettings {
        servers,
        auth,
        tls_ca,
        tls_client,
    })
}

fn validate_secret(value: String) -> Result<WebhookSecret, ConfigError> {
    let invalid = |rule: &str| ConfigError {
        variable: GATEWAY_WEBHOOK_SECRET.name.to_owned(),
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

    fn all_errors(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_map(&map)
    }

    /// The first error only, for the tests of one bad setting.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        all_errors(pairs).map_err(|mut errors| {
            assert_eq!(errors.0.len(), 1, "{errors}");
            errors.0.remove(0)
        })
    }

    #[test]
    fn every_setting_is_in_the_table_once_and_in_the_help() {
        let mut names: Vec<&str> = ALL.iter().map(|setting| setting.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a setting is listed twice");
        let help = help();
        for setting in ALL {
            assert!(
                !setting.rule.is_empty() && !setting.meaning.is_empty(),
                "{setting}"
            );
            assert!(
                help.contains(setting.name) && help.contains(setting.rule),
                "{help}"
            );
        }
    }

    #[test]
    fn every_default_in_the_table_is_valid() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.listen.to_string(), GATEWAY_LISTEN.default.unwrap());
        assert_eq!(
            config.callback_timeout.as_millis().to_string(),
            GATEWAY_CALLBACK_TIMEOUT_MS.default.unwrap()
        );
        assert_eq!(
            config.reject.err_msg,
            GATEWAY_REJECT_ERR_MSG.default.unwrap()
        );
    }

    #[test]
    fn the_idle_timeout_is_ten_minutes_by_default_and_0_never_closes() {
        let config = all_errors(&[]).unwrap();
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
        let never = all_errors(&[(GATEWAY_IDLE_TIMEOUT_MS.name, "0")]).unwrap();
        assert_eq!(never.idle_timeout, None);
        let second = all_errors(&[(GATEWAY_IDLE_TIMEOUT_MS.name, "1000")]).unwrap();
        assert_eq!(second.idle_timeout, Some(Duration::from_secs(1)));
    }

    #[test]
    fn an_unknown_gateway_variable_is_refused_with_the_closest_name() {
        let errors = all_errors(&[("GATEWAY_TIMEOUT_MS", "2000")]).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{errors}");
        let line = errors.to_string();
        assert!(line.starts_with("GATEWAY_TIMEOUT_MS="), "{line}");
        assert!(
            line.contains("did you mean GATEWAY_CALLBACK_TIMEOUT_MS?"),
            "{line}"
        );
        // The value of an unknown variable may be a secret under a mistyped name.
        assert!(!line.contains("2000"), "{line}");
        let line = all_errors(&[("GATEWAY_WEBHOK_SECRET", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            line.contains("did you mean GATEWAY_WEBHOOK_SECRET?"),
            "{line}"
        );
        for (typo, meant) in [
            ("GATEWAY_TIMOUT_MS", GATEWAY_CALLBACK_TIMEOUT_MS.name),
            ("GATEWAY_CALLBACK_TIMEOUT", GATEWAY_CALLBACK_TIMEOUT_MS.name),
            ("GATEWAY_MARGIN_MS", GATEWAY_SAFETY_MARGIN_MS.name),
            ("GATEWAY_NATS_TLS_CERTIFICATE", GATEWAY_NATS_TLS_CERT.name),
            ("GATEWAY_LOGFORMAT", GATEWAY_LOG_FORMAT.name),
            ("GATEWAY_SECRET", GATEWAY_WEBHOOK_SECRET.name),
        ] {
            assert_eq!(closest_setting(typo), Some(meant), "{typo}");
        }
        let line = all_errors(&[("GATEWAY_ZZZ", "x")]).unwrap_err().to_string();
        assert!(line.contains("--help"), "{line}");
        // Not the gateway's prefix: other programs' variables are none of its business.
        assert!(all_errors(&[("NATS_USER", "x"), ("HOME", "/root")]).is_ok());
        for setting in ALL.iter().map(|setting| setting.name) {
            assert!(
                unknown_settings([setting]).is_empty(),
                "{setting} must be known"
            );
        }
    }

    #[test]
    fn kubernetes_service_links_are_not_taken_for_settings() {
        // What a Service `gateway` with a port named `http` (and one UDP port) injects.
        let links = [
            ("GATEWAY_SERVICE_HOST", "10.96.0.12"),
            ("GATEWAY_SERVICE_PORT", "10006"),
            ("GATEWAY_SERVICE_PORT_HTTP", "10006"),
            ("GATEWAY_PORT", "tcp://10.96.0.12:10006"),
            ("GATEWAY_PORT_10006_TCP", "tcp://10.96.0.12:10006"),
            ("GATEWAY_PORT_10006_TCP_PROTO", "tcp"),
            ("GATEWAY_PORT_10006_TCP_PORT", "10006"),
            ("GATEWAY_PORT_10006_TCP_ADDR", "10.96.0.12"),
            ("GATEWAY_PORT_53_UDP", "udp://10.96.0.12:53"),
            ("GATEWAY_PORT_53_UDP_PROTO", "udp"),
            ("GATEWAY_PORT_9_SCTP_ADDR", "fd00::12"),
            ("GATEWAY_SERVICE_HOST", "fd00::12"),
            ("GATEWAY_PORT", "tcp://[fd00::12]:10006"),
            // A Service `gateway-metrics`.
            ("GATEWAY_METRICS_SERVICE_HOST", "10.96.0.13"),
            ("GATEWAY_METRICS_PORT", "tcp://10.96.0.13:9090"),
        ];
        for (name, value) in links {
            assert!(is_kubernetes_service_link(name, value), "{name}={value}");
        }
        let config = all_errors(&links);
        assert!(config.is_ok(), "{:?}", config.err());
        // The names with values Kubernetes never writes, or shapes it never makes, are still
        // unknown settings.
        for (name, value) in [
            ("GATEWAY_SERVICE_HOST", "gateway.local"),
            ("GATEWAY_SERVICE_PORT", "http"),
            ("GATEWAY_SERVICE_PORT", "0"),
            ("GATEWAY_PORT", "10006"),
            ("GATEWAY_PORT", "http://10.96.0.12:10006"),
            ("GATEWAY_PORT", "tcp://gateway:10006"),
            ("GATEWAY_PORT_10006_TCP", "tcp://10.96.0.12:10007"),
            ("GATEWAY_PORT_10006_TCP", "udp://10.96.0.12:10006"),
            ("GATEWAY_PORT_10006_HTTP", "tcp://10.96.0.12:10006"),
            ("GATEWAY_PORT_10006_TCP_PORT", "10007"),
            ("GATEWAY_PORT_10006_TCP_HOST", "10.96.0.12"),
            ("GATEWAY_PORT_X_TCP_ADDR", "10.96.0.12"),
            ("GATEWAY_SERVICE_PORT_", "10006"),
            ("GATEWAY_SERVICE_PORT_http", "10006"),
            ("GATEWAY_LISTEN_PORT", "10006"),
            ("GATEWAY_timeout_PORT", "tcp://10.96.0.12:10006"),
        ] {
            assert!(!is_kubernetes_service_link(name, value), "{name}={value}");
            let errors = all_errors(&[(name, value)]).unwrap_err();
            assert!(errors.to_string().contains("unknown setting"), "{errors}");
        }
    }

    #[test]
    fn the_admin_listener_is_off_unless_set_and_must_be_another_address() {
        assert_eq!(config(&[]).unwrap().admin_listen, None);
        let admin = config(&[(GATEWAY_ADMIN_LISTEN.name, "0.0.0.0:10007")]).unwrap();
        assert_eq!(admin.admin_listen, Some("0.0.0.0:10007".parse().unwrap()));
        // Port 0 on both (tests): two different ports once bound.
        let both_free = config(&[
            (GATEWAY_LISTEN.name, "127.0.0.1:0"),
            (GATEWAY_ADMIN_LISTEN.name, "127.0.0.1:0"),
        ])
        .unwrap();
        assert_eq!(both_free.admin_listen, Some("127.0.0.1:0".parse().unwrap()));
        let error = config(&[(GATEWAY_ADMIN_LISTEN.name, "10007")]).unwrap_err();
        assert_eq!(error.variable, GATEWAY_ADMIN_LISTEN.name);
        assert_eq!(error.value, "10007");
        assert!(error.rule.contains("socket address"), "{error}");
        let error = config(&[
            (GATEWAY_LISTEN.name, "127.0.0.1:10006"),
            (GATEWAY_ADMIN_LISTEN.name, "127.0.0.1:10006"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, GATEWAY_ADMIN_LISTEN.name);
        assert!(
            error.rule.contains("must differ from GATEWAY_LISTEN"),
            "{error}"
        );
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let errors = all_errors(&[
            ("GATEWAY_TIMEOUT_MS", "2000"),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "0"),
            (GATEWAY_DEFAULT_DECISION.name, "maybe"),
            (GATEWAY_REJECT_ERR_CODE.name, "42"),
            (GATEWAY_LISTEN.name, "nope"),
        ])
        .unwrap_err();
        let variables: Vec<&str> = errors.iter().map(|error| error.variable.as_str()).collect();
        assert_eq!(
            variables,
            [
                "GATEWAY_TIMEOUT_MS",
                GATEWAY_LISTEN.name,
                GATEWAY_CALLBACK_TIMEOUT_MS.name,
                GATEWAY_REJECT_ERR_CODE.name,
                GATEWAY_DEFAULT_DECISION.name,
            ]
        );
        assert_eq!(errors.to_string().lines().count(), 5);
    }

    #[test]
    fn defaults_match_the_contract() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen, "127.0.0.1:10006".parse().unwrap());
        assert_eq!(config.subject_prefix, "openim.callback");
        assert_eq!(config.callback_timeout, Duration::from_millis(5000));
        assert_eq!(config.safety_margin, Duration::from_millis(250));
        assert_eq!(
            crate::rules::Rules::new(&config).global_budget(),
            Duration::from_millis(4750)
        );
        assert_eq!(config.default_decision, DefaultDecision::Allow);
        assert_eq!(config.webhook_secret, None);
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.runtime_threads, 1);
        assert_eq!(config.shutdown_delay, Duration::from_millis(5000));
        assert_eq!(config.max_inflight, 10_000);
        assert_eq!(config.hedge_after_percent, 50);
        assert_eq!(config.max_connections, 10_000);
        assert!(config.handover);
        assert_eq!(config.nats.servers.len(), 1);
    }

    #[test]
    fn the_environment_overrides_the_policy_files_global_section() {
        let path = std::env::temp_dir().join(format!(
            "openim-gateway-global-over-env-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "[global]\ndefault = \"reject\"\nreject_err_code = 5100\nreject_err_msg = \"file msg\"\ntimeout_ms = 3000\n",
        )
        .unwrap();
        let path = path.to_str().unwrap().to_owned();
        // The environment unset: [global] applies.
        let from_file = config(&[(GATEWAY_CONFIG.name, &path)]).unwrap();
        assert_eq!(from_file.callback_timeout, Duration::from_millis(3000));
        assert_eq!(
            from_file.default_decision,
            DefaultDecision::Reject {
                err_code: 5100,
                err_msg: "file msg".to_owned()
            }
        );
        // Each variable set wins over its key; the keys it does not name stay the file's.
        let from_env = config(&[
            (GATEWAY_CONFIG.name, &path),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "4000"),
            (GATEWAY_REJECT_ERR_CODE.name, "5200"),
        ])
        .unwrap();
        assert_eq!(from_env.callback_timeout, Duration::from_millis(4000));
        assert_eq!(
            from_env.default_decision,
            DefaultDecision::Reject {
                err_code: 5200,
                err_msg: "file msg".to_owned()
            }
        );
        let allow = config(&[
            (GATEWAY_CONFIG.name, &path),
            (GATEWAY_DEFAULT_DECISION.name, "allow"),
            (GATEWAY_REJECT_ERR_MSG.name, "env msg"),
        ])
        .unwrap();
        assert_eq!(allow.default_decision, DefaultDecision::Allow);
        assert_eq!(
            allow.reject,
            RejectFallback {
                err_code: 5100,
                err_msg: "env msg".to_owned()
            }
        );
        // A bad value from the environment is refused even though the file's is good.
        let error = config(&[
            (GATEWAY_CONFIG.name, &path),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "0"),
        ])
        .unwrap_err();
        assert_eq!(error.variable, GATEWAY_CALLBACK_TIMEOUT_MS.name);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_policy_timeout_above_the_global_one_is_a_warning_without_webhooks_yml() {
        let path = std::env::temp_dir().join(format!(
            "openim-gateway-timeout-warning-{}.toml",
            std::process::id()
        ));
        std::fs::write(
            &path,
            "[commands.callbackBeforeAddFriendCommand]\ntimeout_ms = 12000\n\n[commands.callbackBeforeSendSingleMsgCommand]\ntimeout_ms = 5000\n",
        )
        .unwrap();
        let path = path.to_str().unwrap().to_owned();
        let warnings = config(&[(GATEWAY_CONFIG.name, &path)]).unwrap().warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("commands.callbackBeforeAddFriendCommand.timeout_ms = 12000")
                && warnings[0].contains("GATEWAY_CALLBACK_TIMEOUT_MS (5000)")
                && warnings[0].contains(GATEWAY_OPENIM_WEBHOOKS.name),
            "{warnings:?}"
        );
        let raised = config(&[
            (GATEWAY_CONFIG.name, &path),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "12000"),
        ])
        .unwrap()
        .warnings();
        assert!(raised.is_empty(), "{raised:?}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reject_default_carries_code_and_message() {
        let config = config(&[
            (GATEWAY_DEFAULT_DECISION.name, "reject"),
            (GATEWAY_REJECT_ERR_CODE.name, "5099"),
            (GATEWAY_REJECT_ERR_MSG.name, "try later"),
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
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "0"),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "15001"),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "abc"),
            (GATEWAY_CALLBACK_TIMEOUT_MS.name, "-5"),
            (GATEWAY_SAFETY_MARGIN_MS.name, "5000"),
            (GATEWAY_SAFETY_MARGIN_MS.name, "x"),
            (GATEWAY_DEFAULT_DECISION.name, "maybe"),
            (GATEWAY_REJECT_ERR_CODE.name, "4999"),
            (GATEWAY_REJECT_ERR_CODE.name, "10000"),
            (GATEWAY_REJECT_ERR_MSG.name, ""),
            (GATEWAY_REJECT_ERR_MSG.name, "   "),
            (GATEWAY_MAX_BODY_BYTES.name, "1023"),
            (GATEWAY_MAX_BODY_BYTES.name, "67108865"),
            (GATEWAY_IDLE_TIMEOUT_MS.name, "999"),
            (GATEWAY_IDLE_TIMEOUT_MS.name, "86400001"),
            (GATEWAY_IDLE_TIMEOUT_MS.name, "-1"),
            (GATEWAY_LISTEN.name, "nope"),
            (GATEWAY_SUBJECT_PREFIX.name, "a.*"),
            (GATEWAY_SUBJECT_PREFIX.name, "a..b"),
            (GATEWAY_SUBJECT_PREFIX.name, ""),
            (NATS_URL.name, ""),
            (NATS_URL.name, "nats://a:4222,,nats://b:4222"),
            (RUST_LOG.name, "=[bad"),
            (GATEWAY_RUNTIME_THREADS.name, "0"),
            (GATEWAY_RUNTIME_THREADS.name, "257"),
            (GATEWAY_RUNTIME_THREADS.name, "two"),
            (GATEWAY_SHUTDOWN_DELAY_MS.name, "-1"),
            (GATEWAY_SHUTDOWN_DELAY_MS.name, "600001"),
            (GATEWAY_MAX_INFLIGHT.name, "0"),
            (GATEWAY_HEDGE_AFTER_PERCENT.name, "100"),
            (GATEWAY_HEDGE_AFTER_PERCENT.name, "-1"),
            (GATEWAY_HEDGE_AFTER_PERCENT.name, "half"),
            (GATEWAY_MAX_CONNECTIONS.name, "15"),
            (GATEWAY_AFTER_STREAM.name, ""),
            (GATEWAY_AFTER_STREAM.name, "openim.after"),
            (GATEWAY_AFTER_STREAM.name, "a b"),
            (GATEWAY_AFTER_STREAM_MAX_BYTES.name, "1048575"),
            (GATEWAY_AFTER_STREAM_MAX_BYTES.name, "-1"),
            (GATEWAY_AFTER_STREAM_MAX_BYTES.name, "1G"),
            (GATEWAY_LOG_FORMAT.name, "yaml"),
            (GATEWAY_HANDOVER.name, "yes"),
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
            let error = config(&[(GATEWAY_WEBHOOK_SECRET.name, bad)]).unwrap_err();
            assert_eq!(error.variable, GATEWAY_WEBHOOK_SECRET.name);
            assert!(!error.to_string().contains(bad), "{error}");
        }
        let config = config(&[(GATEWAY_WEBHOOK_SECRET.name, "s3cr3t-Path_Token.0123~")]).unwrap();
        let secret = config.webhook_secret.unwrap();
        assert_eq!(secret.as_bytes(), b"s3cr3t-Path_Token.0123~");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_value_that_is_not_utf8_is_named_and_refused() {
        use std::os::unix::ffi::OsStrExt;
        let value = std::ffi::OsStr::from_bytes(b"50\xff0");
        let line = not_unicode(GATEWAY_CALLBACK_TIMEOUT_MS.name, value).to_string();
        assert!(
            line.starts_with(
                "GATEWAY_CALLBACK_TIMEOUT_MS=\"50\u{fffd}0\" is not valid: must be valid UTF-8"
            ),
            "{line}"
        );
        let secret = not_unicode(GATEWAY_WEBHOOK_SECRET.name, value).to_string();
        assert!(!secret.contains("50"), "{secret}");
    }

    #[test]
    fn url_credentials_go_to_the_options_and_must_agree() {
        let config = config(&[(NATS_URL.name, "nats://al:pw@h:1, nats://h:2")]).unwrap();
        assert_eq!(config.nats.servers_for_log(), "nats://h:1,nats://h:2");
        assert!(matches!(config.nats.auth, NatsAuth::UserPassword { .. }));
        assert!(!format!("{config:?}").contains("pw"));
        let error = config_error_line(&[(NATS_URL.name, "nats://al:Pw1x@h:1,nats://al:Pw2x@h:2")]);
        assert!(error.contains("the same credentials"), "{error}");
        assert!(
            !error.contains("Pw1x") && !error.contains("Pw2x"),
            "{error}"
        );
    }

    fn config_error_line(pairs: &[(&str, &str)]) -> String {
        config(pairs).unwrap_err().to_string()
    }

    #[test]
    fn several_nats_urls_are_accepted() {
        let config = config(&[(NATS_URL.name, "nats://a:4222, nats://b:4223")]).unwrap();
        assert_eq!(config.nats.servers.len(), 2);
    }
}
