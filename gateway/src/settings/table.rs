//! The settings table: every environment variable the gateway reads, defined once, with its
//! default, its rule and what it is for. `--help`, `check-config` and the settings table of
//! `docs/configuration.md` all come from [`ALL`] (a test holds the document to it), and the
//! parser in [`super`] takes each default from here. A new setting is one entry here, its
//! place in [`ALL`], and its use.

use openim_gateway_proto::subject;

/// One setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub name: &'static str,
    /// The value used when it is unset, as the operator would write it; `None`: unset means
    /// the feature is off (or, for credentials, not used).
    pub default: Option<&'static str>,
    /// What a valid value looks like.
    pub rule: &'static str,
    /// What it is for, in a few words.
    pub meaning: &'static str,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// The prefix of the gateway's own variables: a name with it that the gateway does not know
/// is a mistake (a typo leaves a setting at its default without a word otherwise).
pub const GATEWAY_PREFIX: &str = "GATEWAY_";

/// OpenIM's HTTP client has `Timeout: 15s` (openimsdk/tools `NewClientConfig`): no callback
/// waits longer, whatever `webhooks.yml` or the policy file says.
pub const OPENIM_TIMEOUT_CAP_MS: u64 = 15_000;

/// NATS server URL, or a comma-separated list of them.
pub const NATS_URL: Setting = Setting {
    name: "NATS_URL",
    default: Some("nats://127.0.0.1:4222"),
    rule: "one NATS URL (nats:// or tls://) or a comma-separated list; user:password@ or token@ in a URL authenticate",
    meaning: "the NATS servers the gateway asks workers through",
};

pub const GATEWAY_NATS_CREDS: Setting = Setting {
    name: "GATEWAY_NATS_CREDS",
    default: None,
    rule: "a creds file (user JWT and nkey seed) to authenticate with; not with other credentials",
    meaning: "NATS authentication with a creds file",
};

pub const GATEWAY_NATS_NKEY: Setting = Setting {
    name: "GATEWAY_NATS_NKEY",
    default: None,
    rule:
        "a file holding a user nkey seed (SU...) to authenticate with; not with other credentials",
    meaning: "NATS authentication with an nkey seed",
};

pub const GATEWAY_NATS_TLS_CA: Setting = Setting {
    name: "GATEWAY_NATS_TLS_CA",
    default: None,
    rule: "a PEM file of the CA that signed the server's certificate; set: TLS is required; unset: the system's roots",
    meaning: "the CA the NATS server's certificate is checked against",
};

pub const GATEWAY_NATS_TLS_CERT: Setting = Setting {
    name: "GATEWAY_NATS_TLS_CERT",
    default: None,
    rule: "a PEM client certificate, with GATEWAY_NATS_TLS_KEY; set: TLS is required",
    meaning: "the client certificate for NATS mutual TLS",
};

pub const GATEWAY_NATS_TLS_KEY: Setting = Setting {
    name: "GATEWAY_NATS_TLS_KEY",
    default: None,
    rule: "the PEM private key of GATEWAY_NATS_TLS_CERT",
    meaning: "the client certificate's private key",
};

/// Address the HTTP server binds.
pub const GATEWAY_LISTEN: Setting = Setting {
    name: "GATEWAY_LISTEN",
    default: Some("127.0.0.1:10006"),
    rule: "a socket address; 0.0.0.0:10006 when OpenIM runs on another host or in a container",
    meaning: "where OpenIM's callbacks, the probes, /metrics and the status page are served",
};

/// A second listener for the operator's pages, apart from OpenIM's.
pub const GATEWAY_ADMIN_LISTEN: Setting = Setting {
    name: "GATEWAY_ADMIN_LISTEN",
    default: None,
    rule: "a socket address other than GATEWAY_LISTEN's; set: the status page (/, /status.json) and /metrics are served there only, and GATEWAY_LISTEN serves the callbacks and /healthz, /readyz; unset: GATEWAY_LISTEN serves everything",
    meaning: "where the status page and /metrics are served, apart from OpenIM's listener",
};

/// Subjects are `{prefix}.{command}`.
pub const GATEWAY_SUBJECT_PREFIX: Setting = Setting {
    name: "GATEWAY_SUBJECT_PREFIX",
    default: Some(subject::DEFAULT_PREFIX),
    rule: "a NATS subject without wildcards: subjects are {prefix}.{command}",
    meaning: "the first tokens of every subject the gateway publishes on",
};

/// OpenIM's `timeout` for the callbacks, in milliseconds.
pub const GATEWAY_CALLBACK_TIMEOUT_MS: Setting = Setting {
    name: "GATEWAY_CALLBACK_TIMEOUT_MS",
    default: Some("5000"),
    rule: "1..=15000: OpenIM's timeout for a callback in ms (webhooks.yml's timeout x 1000)",
    meaning: "how long OpenIM waits for an answer (for the commands webhooks.yml does not name)",
};

/// The path of OpenIM's `webhooks.yml`: each command's budget is its own timeout.
pub const GATEWAY_OPENIM_WEBHOOKS: Setting = Setting {
    name: "GATEWAY_OPENIM_WEBHOOKS",
    default: None,
    rule: "the path of OpenIM's webhooks.yml: each callback it names gets its own timeout (0, absent, negative or over 15 mean 15 s) less the margin; the others keep GATEWAY_CALLBACK_TIMEOUT_MS",
    meaning: "OpenIM's own webhooks.yml, for each callback's timeout",
};

/// The path of the policy file (TOML): per-command modes, defaults and timeouts.
pub const GATEWAY_CONFIG: Setting = Setting {
    name: "GATEWAY_CONFIG",
    default: None,
    rule: "the path of a TOML policy file: [global] and [commands.<command>] sections with mode (enforce, shadow, off), default, reject_err_code, reject_err_msg, timeout_ms; the environment overrides [global]",
    meaning: "the policy file: each command's mode, default decision and timeout",
};

/// How long before OpenIM's timeout the answer must leave.
pub const GATEWAY_SAFETY_MARGIN_MS: Setting = Setting {
    name: "GATEWAY_SAFETY_MARGIN_MS",
    default: Some("250"),
    rule: "an integer smaller than the timeout: the answer leaves this long before OpenIM gives up",
    meaning: "how long before OpenIM's timeout the answer leaves",
};

/// The share of the budget after which a callback without a reply is asked once more.
pub const GATEWAY_HEDGE_AFTER_PERCENT: Setting = Setting {
    name: "GATEWAY_HEDGE_AFTER_PERCENT",
    default: Some("50"),
    rule: "0..=99: a before-callback with no reply by this percentage of its budget is asked once more, with the same X-Request-Id, and the first reply wins; 0: never",
    meaning: "hedging: when a callback a worker lost is asked again; on by default, since a healthy worker answers long before half the budget (operations.md, Faults)",
};

/// `allow` or `reject`: the answer when no valid worker reply arrives in time.
pub const GATEWAY_DEFAULT_DECISION: Setting = Setting {
    name: "GATEWAY_DEFAULT_DECISION",
    default: Some("allow"),
    rule: "allow or reject: the answer when no valid worker reply arrives in time",
    meaning: "what OpenIM is answered when no worker decides in time",
};

/// `errCode` of the default reject.
pub const GATEWAY_REJECT_ERR_CODE: Setting = Setting {
    name: "GATEWAY_REJECT_ERR_CODE",
    default: Some("5000"),
    rule: "5000..=9999: errCode of the default reject",
    meaning: "the errCode of the default reject",
};

/// `errMsg` of the default reject.
pub const GATEWAY_REJECT_ERR_MSG: Setting = Setting {
    name: "GATEWAY_REJECT_ERR_MSG",
    default: Some("rejected: decision service unavailable"),
    rule: "not empty: errMsg of the default reject",
    meaning: "the errMsg of the default reject: what the end user reads",
};

/// A path segment OpenIM's URL must carry before the command.
pub const GATEWAY_WEBHOOK_SECRET: Setting = Setting {
    name: "GATEWAY_WEBHOOK_SECRET",
    default: None,
    rule: "at least 16 URL-safe characters: the path segment OpenIM's URL must carry before the command",
    meaning: "a secret path segment that OpenIM's URL must carry",
};

/// The largest request body accepted.
pub const GATEWAY_MAX_BODY_BYTES: Setting = Setting {
    name: "GATEWAY_MAX_BODY_BYTES",
    default: Some("1048576"),
    rule: "1024..=67108864: larger request bodies get 413",
    meaning: "the largest callback body accepted",
};

/// Runtime threads: 1 runs one event loop; more run tokio's multi-thread scheduler.
pub const GATEWAY_RUNTIME_THREADS: Setting = Setting {
    name: "GATEWAY_RUNTIME_THREADS",
    default: Some("1"),
    rule: "1..=256: 1 runs one event loop, more a multi-thread runtime",
    meaning: "how many threads run the event loop",
};

/// After SIGTERM: `/readyz` 503 at once, keep accepting and answering this long, then drain.
pub const GATEWAY_SHUTDOWN_DELAY_MS: Setting = Setting {
    name: "GATEWAY_SHUTDOWN_DELAY_MS",
    default: Some("5000"),
    rule: "0..=600000: after SIGTERM, /readyz is 503 and the gateway goes on accepting and answering this long before it stops accepting and drains",
    meaning: "how long a stopping gateway keeps answering before it drains",
};

/// The most before-callbacks decided at once; past it, the default at once.
pub const GATEWAY_MAX_INFLIGHT: Setting = Setting {
    name: "GATEWAY_MAX_INFLIGHT",
    default: Some("10000"),
    rule: "1..=10000000: before-callbacks decided at once; past it, the default at once (fallback:overload)",
    meaning: "how many before-callbacks are decided at once",
};

/// The most open HTTP connections; at the bound the longest idle one makes room.
pub const GATEWAY_MAX_CONNECTIONS: Setting = Setting {
    name: "GATEWAY_MAX_CONNECTIONS",
    default: Some("10000"),
    rule: "16..=1000000: open HTTP connections; at the bound the one idle the longest is closed to make room; lowered to what the open-file limit allows",
    meaning: "how many HTTP connections may be open",
};

/// A JetStream stream that stores after-callbacks before they are acknowledged.
pub const GATEWAY_AFTER_STREAM: Setting = Setting {
    name: "GATEWAY_AFTER_STREAM",
    default: None,
    rule: "a JetStream stream name (letters, digits, - and _): after-callbacks are stored there (created when missing) and acknowledged once stored",
    meaning: "a JetStream stream that stores after-callbacks for workers",
};

/// The size of the after-callback stream the gateway creates: past it the oldest are dropped.
pub const GATEWAY_AFTER_STREAM_MAX_BYTES: Setting = Setting {
    name: "GATEWAY_AFTER_STREAM_MAX_BYTES",
    default: Some("1073741824"),
    rule: "at least 1048576: the size of the after-callback stream when the gateway creates it; past it (or 7 days) the oldest are dropped; an existing stream keeps its own",
    meaning: "the size of that stream when the gateway creates it",
};

/// How long an HTTP connection may idle between requests before it is closed.
pub const GATEWAY_IDLE_TIMEOUT_MS: Setting = Setting {
    name: "GATEWAY_IDLE_TIMEOUT_MS",
    default: Some("600000"),
    rule: "0 or 1000..=86400000: a kept-alive HTTP connection that has carried no request for this long since its last answer is closed; 0 never closes one",
    meaning: "how long an idle HTTP connection is kept open",
};

/// `on` or `off`: hand the listening socket to a new gateway on the same address.
pub const GATEWAY_HANDOVER: Setting = Setting {
    name: "GATEWAY_HANDOVER",
    default: Some("on"),
    rule: "on or off: on, a new gateway started on the same GATEWAY_LISTEN takes this one's listening socket (same user, Linux), and this one drains and exits by itself; off, a new gateway binds a socket of its own beside it",
    meaning: "whether an upgrade hands the listening socket to the new gateway",
};

/// The tracing filter.
pub const RUST_LOG: Setting = Setting {
    name: "RUST_LOG",
    default: Some("info"),
    rule: "a tracing filter such as info or openim_gateway=debug (debug logs one line per answered callback)",
    meaning: "what is logged",
};

/// `text` or `json`: the shape of the log lines on stderr.
pub const GATEWAY_LOG_FORMAT: Setting = Setting {
    name: "GATEWAY_LOG_FORMAT",
    default: Some("text"),
    rule: "text or json: json makes every stderr line one JSON object, for log collectors",
    meaning: "the shape of the log lines on stderr",
};

/// OpenTelemetry's base endpoint: traces go to it plus `/v1/traces`.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: Setting = Setting {
    name: "OTEL_EXPORTER_OTLP_ENDPOINT",
    default: None,
    rule: "an http:// or https:// URL of an OTLP/HTTP receiver, such as http://127.0.0.1:4318: spans go to it plus /v1/traces; unset (and no OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): no traces",
    meaning: "turns traces on: a span per callback, exported over OTLP/HTTP",
};

/// OpenTelemetry's traces endpoint, used as given.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Setting = Setting {
    name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    default: None,
    rule: "an http:// or https:// URL that spans are POSTed to as they are; wins over OTEL_EXPORTER_OTLP_ENDPOINT",
    meaning: "turns traces on, with the full URL of the traces receiver",
};

/// The OTLP protocol: only `http/protobuf` is spoken.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: Setting = Setting {
    name: "OTEL_EXPORTER_OTLP_PROTOCOL",
    default: Some("http/protobuf"),
    rule: "http/protobuf, the only protocol the gateway exports with (not grpc)",
    meaning: "how spans are sent",
};

/// The `service.name` of the gateway's spans.
pub const OTEL_SERVICE_NAME: Setting = Setting {
    name: "OTEL_SERVICE_NAME",
    default: Some("openim-gateway"),
    rule: "any name; several gateways may share one",
    meaning: "the service name on the gateway's spans",
};

/// `true` switches traces off whatever the endpoints say.
pub const OTEL_SDK_DISABLED: Setting = Setting {
    name: "OTEL_SDK_DISABLED",
    default: Some("false"),
    rule: "true or false: true, no traces even with an endpoint",
    meaning: "switches traces off",
};

/// Every setting, in the order `--help` and the documentation list them.
pub const ALL: &[Setting] = &[
    NATS_URL,
    GATEWAY_NATS_CREDS,
    GATEWAY_NATS_NKEY,
    GATEWAY_NATS_TLS_CA,
    GATEWAY_NATS_TLS_CERT,
    GATEWAY_NATS_TLS_KEY,
    GATEWAY_LISTEN,
    GATEWAY_ADMIN_LISTEN,
    GATEWAY_SUBJECT_PREFIX,
    GATEWAY_CALLBACK_TIMEOUT_MS,
    GATEWAY_OPENIM_WEBHOOKS,
    GATEWAY_CONFIG,
    GATEWAY_SAFETY_MARGIN_MS,
    GATEWAY_HEDGE_AFTER_PERCENT,
    GATEWAY_DEFAULT_DECISION,
    GATEWAY_REJECT_ERR_CODE,
    GATEWAY_REJECT_ERR_MSG,
    GATEWAY_WEBHOOK_SECRET,
    GATEWAY_MAX_BODY_BYTES,
    GATEWAY_RUNTIME_THREADS,
    GATEWAY_SHUTDOWN_DELAY_MS,
    GATEWAY_MAX_INFLIGHT,
    GATEWAY_MAX_CONNECTIONS,
    GATEWAY_IDLE_TIMEOUT_MS,
    GATEWAY_AFTER_STREAM,
    GATEWAY_AFTER_STREAM_MAX_BYTES,
    GATEWAY_HANDOVER,
    RUST_LOG,
    GATEWAY_LOG_FORMAT,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_SERVICE_NAME,
    OTEL_SDK_DISABLED,
];

/// The settings part of `--help`: each variable with its default, its rule and what it is
/// for (the default on the line after the name, as it always was).
pub fn help() -> String {
    let mut text = String::from(
        "Settings (environment variables; a bad or unknown GATEWAY_* one stops the start with exit code 2):\n",
    );
    for setting in ALL {
        text.push_str(&format!(
            "  {}\n      default: {}\n      {}\n      {}\n",
            setting.name,
            setting.default.unwrap_or("unset"),
            setting.rule,
            setting.meaning
        ));
    }
    text
}

/// The settings table of `docs/configuration.md`, as Markdown: one row per setting.
pub fn markdown_table() -> String {
    let cell = |text: &str| text.replace('|', "\\|");
    let mut table = String::from("| Setting | Default | Rule | Meaning |\n|---|---|---|---|\n");
    for setting in ALL {
        let default = setting.default.map_or_else(
            || "unset".to_owned(),
            |default| format!("`{}`", cell(default)),
        );
        table.push_str(&format!(
            "| `{}` | {default} | {} | {} |\n",
            setting.name,
            cell(setting.rule),
            cell(setting.meaning)
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGIN: &str = "<!-- settings-table:begin -->\n";
    const END: &str = "<!-- settings-table:end -->";

    /// The table of `docs/configuration.md` is [`markdown_table`], row for row. Run with
    /// `OPENIM_GATEWAY_UPDATE_DOCS=1` to write it there after changing a setting.
    #[test]
    fn the_documented_settings_table_is_this_table() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let document = std::fs::read_to_string(&path).expect("docs/configuration.md");
        let begin = document
            .find(BEGIN)
            .expect("the settings-table:begin marker")
            + BEGIN.len();
        let end = document.find(END).expect("the settings-table:end marker");
        let documented = &document[begin..end];
        let table = markdown_table();
        if documented == table {
            return;
        }
        if std::env::var_os("OPENIM_GATEWAY_UPDATE_DOCS").is_some() {
            let updated = format!("{}{table}{}", &document[..begin], &document[end..]);
            std::fs::write(&path, updated).expect("write docs/configuration.md");
            return;
        }
        let differing: Vec<_> = documented
            .lines()
            .zip(table.lines())
            .filter(|(documented, generated)| documented != generated)
            .take(3)
            .collect();
        panic!(
            "docs/configuration.md's settings table differs from settings/table.rs \
             ({} documented rows, {} settings); first differences (documented, table): \
             {differing:#?}\nrun OPENIM_GATEWAY_UPDATE_DOCS=1 cargo test -p openim-gateway \
             the_documented_settings_table to write it",
            documented.lines().count().saturating_sub(2),
            ALL.len(),
        );
    }

    /// Every setting is in [`ALL`] once.
    #[test]
    fn every_setting_is_listed_once() {
        let mut names: Vec<_> = ALL.iter().map(|setting| setting.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a setting is listed twice in ALL");
    }
}
