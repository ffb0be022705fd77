//! The status page's figures as one value, and how they are written: JSON for
//! `/status.json`, and one HTML page with inline CSS, no script and no external asset, that
//! refreshes itself and reads on a phone.
//!
//! Nothing here comes from a request body or a credential: the figures are counts, times,
//! the rules in force and the NATS servers' addresses without user information.

use std::{fmt::Write as _, time::Duration};

use openim_gateway_proto::{CallbackKind, Command, DecisionSource};
use serde::Serialize;

use super::window::{CommandFigures, Counts};
use crate::outcome::ShadowOutcome;

/// How often the page reloads itself, in seconds.
pub const REFRESH_SECONDS: u32 = 5;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This gateway.
    pub gateway: GatewayStatus,
    /// The connection to NATS.
    pub nats: NatsStatus,
    /// The workers, as far as the gateway can tell.
    pub workers: WorkersStatus,
    /// The length of the "last 5 minutes" window, in seconds.
    pub window_seconds: u64,
    /// Every catalog command, in the catalog's order.
    pub commands: Vec<CommandStatus>,
    /// Requests refused before anything was asked, since start, by reason.
    pub bad_requests: Vec<ReasonCount>,
}

/// This gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayStatus {
    /// The crate's version.
    pub version: &'static str,
    /// The git commit it was built from, when the build knew it.
    pub commit: Option<&'static str>,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Shutting down: `/readyz` answers 503.
    pub draining: bool,
    /// Whether OpenIM's `webhooks.yml` is read (`GATEWAY_OPENIM_WEBHOOKS`): without it, which
    /// callbacks OpenIM calls is not known.
    pub webhooks_known: bool,
}

/// The connection to NATS.
#[derive(Debug, Clone, Serialize)]
pub struct NatsStatus {
    /// The configured servers, `scheme://host:port` without user information.
    pub servers: Vec<String>,
    /// Connected right now.
    pub connected: bool,
    /// The connected server's name.
    pub server_name: Option<String>,
    /// The connected server's version.
    pub server_version: Option<String>,
    /// The address the connected server says it listens on.
    pub server_address: Option<String>,
    /// The last measured round trip (PING to PONG), in milliseconds.
    pub rtt_ms: Option<f64>,
    /// How long ago the round trip was measured, in seconds.
    pub rtt_measured_seconds_ago: Option<u64>,
    /// Before-callbacks waiting for a worker's reply right now.
    pub pending_replies: usize,
}

/// The workers.
#[derive(Debug, Clone, Serialize)]
pub struct WorkersStatus {
    /// Workers that answered the NATS service API's discovery (`$SRV.INFO`) with an
    /// endpoint on one of this gateway's subjects.
    pub registered: Vec<RegisteredWorker>,
    /// How long ago the discovery ran, in seconds.
    pub discovered_seconds_ago: Option<u64>,
    /// Worker replies carry no identity; per command, `last_worker_reply_seconds_ago` says
    /// when any worker last replied.
    pub note: &'static str,
}

/// A worker found by discovery.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredWorker {
    /// Its service name.
    pub name: String,
    /// Its instance id.
    pub id: String,
    /// Its version.
    pub version: String,
    /// The commands it serves.
    pub commands: Vec<&'static str>,
}

/// A count of refused requests.
#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    /// The `reason` label of `openim_gateway_bad_requests_total`.
    pub reason: &'static str,
    /// Since start.
    pub count: u64,
}

/// One command.
#[derive(Debug, Clone, Serialize)]
pub struct CommandStatus {
    /// The OpenIM command.
    pub command: &'static str,
    /// `before` or `after`.
    pub kind: &'static str,
    /// Whether OpenIM's `webhooks.yml` enables it; `null` when the file is not read.
    pub enabled: Option<bool>,
    /// `enforce`, `shadow` or `off`.
    pub mode: &'static str,
    /// `allow` or `reject`.
    pub default: &'static str,
    /// With a `reject` default: its `errCode`.
    pub reject_err_code: Option<i32>,
    /// With a `reject` default: its `errMsg`.
    pub reject_err_msg: Option<String>,
    /// From arrival to answer, in milliseconds.
    pub budget_ms: u64,
    /// Whether any callback of it was answered since start.
    pub seen: bool,
    /// How long ago a worker last replied to it (in time, valid or not), in seconds.
    pub last_worker_reply_seconds_ago: Option<f64>,
    /// The last five minutes.
    pub last_5m: Period,
    /// Since start.
    pub since_start: Period,
}

/// The figures of one command over one span of time.
#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// Callbacks answered.
    pub answered: u64,
    /// Answers by decision source (the sources of the command's kind, zeros included).
    pub by_source: serde_json::Map<String, serde_json::Value>,
    /// Answers that were the default because something failed or the command is off.
    pub fallbacks: u64,
    /// `fallbacks / answered`; `null` before any answer.
    pub fallback_share: Option<f64>,
    /// Half of the answers took at most this long from arrival, in milliseconds (the upper
    /// bound of a histogram bucket: within a quarter).
    pub latency_p50_ms: Option<f64>,
    /// 99 in 100 answers took at most this long, in milliseconds.
    pub latency_p99_ms: Option<f64>,
    /// `latency_p99_ms / budget_ms`.
    pub latency_p99_of_budget: Option<f64>,
    /// Shadow-mode outcomes (before-callbacks; every outcome, zeros included).
    pub shadow: serde_json::Map<String, serde_json::Value>,
}

impl Period {
    /// The figures of `counts` for a command of `kind` with `budget`.
    pub fn of(counts: &Counts, kind: CallbackKind, budget: Duration) -> Self {
        let answered = counts.answered();
        let fallbacks = counts.fallbacks();
        let sources: &[DecisionSource] = DecisionSource::of_kind(kind);
        let by_source = sources
            .iter()
            .map(|source| (source.as_str().to_owned(), counts.of(*source).into()))
            .collect();
        let shadow = match kind {
            CallbackKind::Before => ShadowOutcome::ALL
                .iter()
                .zip(counts.shadow)
                .map(|(outcome, count)| (outcome.as_str().to_owned(), count.into()))
                .collect(),
            CallbackKind::After => serde_json::Map::new(),
        };
        let p99 = counts.latency_quantile(0.99);
        Self {
            answered,
            by_source,
            fallbacks,
            fallback_share: (answered > 0).then(|| fallbacks as f64 / answered as f64),
            latency_p50_ms: counts.latency_quantile(0.5).map(millis),
            latency_p99_ms: p99.map(millis),
            latency_p99_of_budget: p99
                .filter(|_| !budget.is_zero())
                .map(|p99| p99.as_secs_f64() / budget.as_secs_f64()),
            shadow,
        }
    }

    fn count(&self, source: DecisionSource) -> u64 {
        self.by_source
            .get(source.as_str())
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// What a command's rules say, as the page shows them.
#[derive(Debug, Clone)]
pub struct CommandRulesShown {
    /// Whether `webhooks.yml` enables it, when read.
    pub enabled: Option<bool>,
    /// `enforce`, `shadow` or `off`.
    pub mode: &'static str,
    /// The default: `None` for allow, else the reject code and message.
    pub reject: Option<(i32, String)>,
    /// The budget.
    pub budget: Duration,
}

impl CommandStatus {
    /// One command's line of the page.
    pub fn new(
        command: &'static Command,
        rules: CommandRulesShown,
        figures: &CommandFigures,
    ) -> Self {
        let (reject_err_code, reject_err_msg) = match rules.reject {
            Some((code, message)) => (Some(code), Some(message)),
            None => (None, None),
        };
        Self {
            command: command.name,
            kind: command.kind.as_str(),
            enabled: rules.enabled,
            mode: rules.mode,
            default: if reject_err_code.is_some() {
                "reject"
            } else {
                "allow"
            },
            reject_err_code,
            reject_err_msg,
            budget_ms: u64::try_from(rules.budget.as_millis()).unwrap_or(u64::MAX),
            seen: figures.since_start.answered() > 0,
            last_worker_reply_seconds_ago: figures
                .last_worker_reply
                .map(|ago| (ago.as_secs_f64() * 10.0).round() / 10.0),
            last_5m: Period::of(&figures.window, command.kind, rules.budget),
            since_start: Period::of(&figures.since_start, command.kind, rules.budget),
        }
    }

    /// Shown in full: called since start, enabled in `webhooks.yml`, or given a mode other
    /// than enforce. The others are folded into one list.
    fn stands_out(&self) -> bool {
        self.seen || self.enabled == Some(true) || self.mode != "enforce"
    }
}

impl Status {
    /// The figures as JSON.
    pub fn to_json(&self) -> String {
        // Every field is a string, a number, a boolean or a map of those: it serialises.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| String::from("{}"))
    }

    /// The page.
    pub fn to_html(&self) -> String {
        let mut html = String::with_capacity(32 * 1024);
        // Writing into a String cannot fail.
        let _ = self.write_html(&mut html);
        html
    }

    fn write_html(&self, out: &mut String) -> std::fmt::Result {
        let gateway = &self.gateway;
        writeln!(
            out,
            "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\n\
             <link rel=\"icon\" href=\"data:,\">\n\
             <title>openim-gateway status</title>\n<style>{STYLE}</style>\n</head>\n<body>"
        )?;
        write!(
            out,
            "<header><h1>openim-gateway</h1><p>version {}",
            esc(gateway.version)
        )?;
        if let Some(commit) = gateway.commit {
            write!(out, " · commit <code>{}</code>", esc(commit))?;
        }
        write!(
            out,
            " · up <span id=\"uptime\">{}</span>",
            human_duration(gateway.uptime_seconds)
        )?;
        if gateway.draining {
            out.push_str(" · <strong class=\"bad\">shutting down</strong>");
        }
        out.push_str(if self.nats.connected {
            " · NATS <span class=\"badge ok\">connected</span>"
        } else {
            " · NATS <span class=\"badge bad\">disconnected</span>"
        });
        writeln!(
            out,
            " · refreshes every {REFRESH_SECONDS} s · <a href=\"status.json\">JSON</a></p></header>"
        )?;
        // What an operator comes for first: the callbacks, who decided them, what failed.
        self.write_commands(out)?;
        self.write_nats(out)?;
        self.write_workers(out)?;
        self.write_bad_requests(out)?;
        out.push_str("</body>\n</html>\n");
        Ok(())
    }

    fn write_nats(&self, out: &mut String) -> std::fmt::Result {
        let nats = &self.nats;
        out.push_str("<section id=\"nats\"><h2>NATS</h2><dl>");
        let (class, state) = if nats.connected {
            ("ok", "connected")
        } else {
            ("bad", "disconnected: callbacks get the default decision")
        };
        write!(
            out,
            "<dt>state</dt><dd><span class=\"badge {class}\" id=\"nats-state\">{state}</span></dd>"
        )?;
        write!(
            out,
            "<dt>servers</dt><dd>{}</dd>",
            esc(&nats.servers.join(", "))
        )?;
        if let (Some(name), Some(version)) = (&nats.server_name, &nats.server_version) {
            write!(
                out,
                "<dt>server</dt><dd>{} (nats-server {})",
                esc(name),
                esc(version)
            )?;
            if let Some(address) = &nats.server_address {
                write!(out, " at {}", esc(address))?;
            }
            out.push_str("</dd>");
        }
        match (nats.rtt_ms, nats.rtt_measured_seconds_ago) {
            (Some(rtt), Some(ago)) => write!(
                out,
                "<dt>round trip</dt><dd>{rtt:.2} ms <small>({ago} s ago)</small></dd>"
            )?,
            _ => out.push_str("<dt>round trip</dt><dd>not measured</dd>"),
        }
        writeln!(
            out,
            "<dt>waiting for a reply</dt><dd>{}</dd></dl></section>",
            nats.pending_replies
        )
    }

    fn write_workers(&self, out: &mut String) -> std::fmt::Result {
        let workers = &self.workers;
        out.push_str("<section id=\"workers\"><h2>Workers</h2>");
        if workers.registered.is_empty() {
            out.push_str("<p>No worker answered service discovery ($SRV.INFO).</p>");
        } else {
            out.push_str(
                "<div class=\"scroll\"><table><thead><tr><th>name</th><th>version</th><th>id</th><th>commands</th></tr></thead><tbody>",
            );
            for worker in &workers.registered {
                write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
                    esc(&worker.name),
                    esc(&worker.version),
                    esc(&worker.id),
                    esc(&worker.commands.join(", "))
                )?;
            }
            out.push_str("</tbody></table></div>");
        }
        if let Some(ago) = workers.discovered_seconds_ago {
            write!(out, "<p><small>Discovery ran {ago} s ago.</small></p>")?;
        }
        writeln!(out, "<p><small>{}</small></p></section>", esc(workers.note))
    }

    fn write_commands(&self, out: &mut String) -> std::fmt::Result {
        write!(
            out,
            "<section id=\"commands\"><h2>Callbacks</h2><p><small>Over the last {} minutes and \
             since start. p50 / p99: time from arrival to answer (amber from half the budget, red \
             from 80 %). Fallback: the default answered because something failed or the command \
             is off.</small></p>",
            self.window_seconds / 60
        )?;
        if !self.gateway.webhooks_known {
            out.push_str("<p><small>OpenIM's webhooks.yml is not read (GATEWAY_OPENIM_WEBHOOKS): which callbacks OpenIM calls is not known.</small></p>");
        }
        let (shown, folded): (Vec<&CommandStatus>, Vec<&CommandStatus>) = self
            .commands
            .iter()
            .partition(|command| command.stands_out());
        if shown.is_empty() {
            out.push_str("<p>No callback answered yet, and none enabled.</p>");
        }
        for command in shown {
            write_command(out, command)?;
        }
        write!(
            out,
            "<details id=\"other-commands\"><summary>{} other commands: never called since start, not enabled</summary>\
             <div class=\"scroll\"><table><thead><tr><th>command</th><th>kind</th><th>enabled</th><th>mode</th><th>default</th><th>budget</th></tr></thead><tbody>",
            folded.len()
        )?;
        for command in folded {
            write!(
                out,
                "<tr data-command=\"{name}\"><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>",
                command.kind,
                enabled_text(command.enabled),
                command.mode,
                default_text(command),
                command.budget_ms,
                name = esc(command.command),
            )?;
        }
        out.push_str("</tbody></table></div></details></section>\n");
        Ok(())
    }

    fn write_bad_requests(&self, out: &mut String) -> std::fmt::Result {
        out.push_str("<section id=\"refused\"><h2>Refused requests</h2>");
        let refused: Vec<&ReasonCount> = self
            .bad_requests
            .iter()
            .filter(|reason| reason.count > 0)
            .collect();
        if refused.is_empty() {
            out.push_str("<p>None since start.</p>");
        } else {
            out.push_str("<p>");
            for (index, reason) in refused.iter().enumerate() {
                if index > 0 {
                    out.push_str(" · ");
                }
                write!(
                    out,
                    "{}: <span data-figure=\"refused-{}\">{}</span>",
                    reason.reason, reason.reason, reason.count
                )?;
            }
            out.push_str(" <small>(since start)</small></p>");
        }
        out.push_str("</section>\n");
        Ok(())
    }
}

fn write_command(out: &mut String, command: &CommandStatus) -> std::fmt::Result {
    let name = esc(command.command);
    write!(
        out,
        "<article class=\"cmd\" id=\"{name}\" data-command=\"{name}\"><h3>{name}</h3><p class=\"rules\">\
         <span class=\"badge {}\">{}</span> {} · mode <b>{}</b> · default <b>{}</b> · budget {} ms",
        match command.enabled {
            Some(true) => "ok",
            Some(false) => "off",
            None => "unknown",
        },
        enabled_text(command.enabled),
        command.kind,
        command.mode,
        default_text(command),
        command.budget_ms
    )?;
    if let Some(ago) = command.last_worker_reply_seconds_ago {
        write!(out, " · a worker replied {ago} s ago")?;
    } else if command.kind == CallbackKind::Before.as_str() {
        out.push_str(" · no worker reply since start");
    }
    out.push_str("</p><div class=\"scroll\"><table><thead><tr><th></th><th>answered</th>");
    let main_source = if command.kind == CallbackKind::Before.as_str() {
        DecisionSource::Worker
    } else {
        DecisionSource::Ack
    };
    write!(
        out,
        "<th>{}</th><th>fallback</th><th>p50 / p99</th>",
        main_source.as_str()
    )?;
    // The shadow column only where shadow mode is or was at work: a phone's width is short.
    let shadowed = command.mode == "shadow"
        || command
            .since_start
            .shadow
            .values()
            .any(|count| count.as_u64().unwrap_or(0) > 0);
    if shadowed {
        out.push_str("<th>shadow</th>");
    }
    out.push_str("</tr></thead><tbody>");
    for (label, key, period) in [
        ("5 min", "5m", &command.last_5m),
        ("total", "total", &command.since_start),
    ] {
        write!(
            out,
            "<tr><th>{label}</th><td data-figure=\"answered-{key}\">{}</td><td data-figure=\"{}-{key}\">{}</td>",
            period.answered,
            main_source.as_str(),
            period.count(main_source)
        )?;
        let share = period.fallback_share.unwrap_or(0.0);
        let class = if period.fallbacks == 0 {
            ""
        } else if share >= 0.05 {
            " class=\"bad\""
        } else {
            " class=\"warn\""
        };
        write!(
            out,
            "<td{class} data-figure=\"fallback-{key}\">{} ({:.0}%)</td>",
            period.fallbacks,
            share * 100.0
        )?;
        let p99_class = match period.latency_p99_of_budget {
            Some(share) if share >= 0.8 => " class=\"bad\"",
            Some(share) if share >= 0.5 => " class=\"warn\"",
            _ => "",
        };
        write!(
            out,
            "<td{p99_class} title=\"budget {} ms\">{} / {} ms</td>",
            command.budget_ms,
            latency_number(period.latency_p50_ms),
            latency_number(period.latency_p99_ms),
        )?;
        if shadowed {
            out.push_str("<td>");
            let mut first = true;
            for (outcome, count) in &period.shadow {
                let count = count.as_u64().unwrap_or(0);
                if count == 0 {
                    continue;
                }
                if !first {
                    out.push_str(", ");
                }
                first = false;
                write!(out, "{} {count}", esc(outcome))?;
            }
            if first {
                out.push('–');
            }
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    // Every source that answered in the window, by name: what failed, at a glance.
    let sources: Vec<String> = command
        .last_5m
        .by_source
        .iter()
        .filter_map(|(source, count)| {
            let count = count.as_u64().unwrap_or(0);
            (count > 0).then(|| format!("{} {count}", esc(source)))
        })
        .collect();
    if !sources.is_empty() {
        write!(
            out,
            "<p class=\"sources\">last 5 min by source: {}</p>",
            sources.join(" · ")
        )?;
    }
    out.push_str("</article>\n");
    Ok(())
}

fn enabled_text(enabled: Option<bool>) -> &'static str {
    match enabled {
        Some(true) => "enabled",
        Some(false) => "not enabled",
        None => "enabled?",
    }
}

fn default_text(command: &CommandStatus) -> String {
    match (command.reject_err_code, &command.reject_err_msg) {
        (Some(code), Some(message)) => format!("reject {code} {}", esc(message)),
        (Some(code), None) => format!("reject {code}"),
        _ => String::from("allow"),
    }
}

fn latency_number(ms: Option<f64>) -> String {
    match ms {
        None => String::from("–"),
        Some(ms) if ms < 10.0 => format!("{ms:.2}"),
        Some(ms) => format!("{ms:.0}"),
    }
}

fn human_duration(seconds: u64) -> String {
    let (days, hours, minutes, seconds) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds} s"),
        (0, 0, _) => format!("{minutes} min {seconds} s"),
        (0, _, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h"),
    }
}

/// `text` with the characters HTML gives a meaning escaped.
fn esc(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The page's style: one column, readable from a phone's width up.
const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif}\
body{margin:0 auto;padding:.75rem;max-width:60rem;line-height:1.4}\
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.2rem 0 .4rem;border-bottom:1px solid #8884}\
h3{font-size:.95rem;margin:0 0 .2rem;word-break:break-all}\
header p,.rules,.sources{margin:.2rem 0;font-size:.9rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:0}dt{font-weight:600}dd{margin:0;word-break:break-all}\
.cmd{border:1px solid #8886;border-radius:.4rem;padding:.5rem .6rem;margin:.5rem 0}\
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;min-width:100%}\
th,td{padding:.2rem .35rem;text-align:right;white-space:nowrap;border-bottom:1px solid #8883}\
th:first-child,td:first-child{text-align:left}\
.badge{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.8rem;border:1px solid currentColor}\
.ok{color:#1a7f37}.bad{color:#cf222e}.warn{color:#9a6700}.off,.unknown{color:#6e7781}\
details{margin:.6rem 0}summary{cursor:pointer}small{color:#6e7781}\
@media (max-width:32rem){body{padding:.4rem}table{font-size:.8rem}th,td{padding:.15rem .2rem}}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::window::{Recorder, WINDOW};
    use openim_gateway_proto::catalog;

    fn status(recorder: &Recorder) -> Status {
        let commands = recorder
            .snapshot()
            .into_iter()
            .map(|(command, figures)| {
                let rules = CommandRulesShown {
                    enabled: Some(command.name == catalog::BEFORE_SET_GROUP_MEMBER_INFO),
                    mode: "enforce",
                    reject: (command.name == "callbackBeforeSendSingleMsgCommand")
                        .then(|| (5101, String::from("<not> \"now\""))),
                    budget: Duration::from_millis(4750),
                };
                CommandStatus::new(command, rules, &figures)
            })
            .collect();
        Status {
            gateway: GatewayStatus {
                version: "0.1.0",
                commit: Some("abc1234"),
                uptime_seconds: 3725,
                draining: false,
                webhooks_known: true,
            },
            nats: NatsStatus {
                servers: vec![String::from("nats://127.0.0.1:4222")],
                connected: true,
                server_name: Some(String::from("<script>")),
                server_version: Some(String::from("2.11.0")),
                server_address: Some(String::from("0.0.0.0:4222")),
                rtt_ms: Some(0.25),
                rtt_measured_seconds_ago: Some(1),
                pending_replies: 0,
            },
            workers: WorkersStatus {
                registered: Vec::new(),
                discovered_seconds_ago: None,
                note: "note",
            },
            window_seconds: WINDOW.as_secs(),
            commands,
            bad_requests: Vec::new(),
        }
    }

    #[test]
    fn the_page_shows_called_and_enabled_commands_and_folds_the_others() {
        let recorder = Recorder::new();
        let single = Command::lookup("callbackBeforeSendSingleMsgCommand").unwrap();
        recorder.answered(single, DecisionSource::Worker, Duration::from_millis(2));
        recorder.answered(single, DecisionSource::Timeout, Duration::from_millis(4700));
        let html = status(&recorder).to_html();
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("http-equiv=\"refresh\""));
        // Escaped, never markup.
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("reject 5101 &lt;not&gt; &quot;now&quot;"));
        let article = |name: &str| format!("<article class=\"cmd\" id=\"{name}\"");
        assert!(html.contains(&article("callbackBeforeSendSingleMsgCommand")));
        assert!(html.contains(&article(catalog::BEFORE_SET_GROUP_MEMBER_INFO)));
        assert!(!html.contains(&article("callbackAfterSendSingleMsgCommand")));
        assert!(html.contains("<tr data-command=\"callbackAfterSendSingleMsgCommand\">"));
        assert!(
            html.contains("data-figure=\"fallback-5m\">1 (50%)"),
            "{html}"
        );
        assert!(html.contains("1 h 2 min"));
    }

    #[test]
    fn the_json_holds_every_command_with_its_figures() {
        let recorder = Recorder::new();
        let seed = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        recorder.answered(
            seed,
            DecisionSource::NoResponders,
            Duration::from_micros(300),
        );
        let json: serde_json::Value = serde_json::from_str(&status(&recorder).to_json()).unwrap();
        let commands = json["commands"].as_array().unwrap();
        assert_eq!(commands.len(), catalog::COMMANDS.len());
        let seed = commands
            .iter()
            .find(|command| command["command"] == catalog::BEFORE_SET_GROUP_MEMBER_INFO)
            .unwrap();
        assert_eq!(seed["last_5m"]["by_source"]["fallback:no_responders"], 1);
        assert_eq!(seed["last_5m"]["by_source"]["worker"], 0);
        assert_eq!(seed["since_start"]["fallback_share"], 1.0);
        assert_eq!(seed["enabled"], true);
        assert!(seed["last_5m"]["shadow"].as_object().unwrap().len() == ShadowOutcome::ALL.len());
        assert_eq!(json["window_seconds"], 300);
    }
}
