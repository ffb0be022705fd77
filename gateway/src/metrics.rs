//! Prometheus metrics: what the gateway did, by command and by who decided.
//!
//! Label values are `&'static str` from the catalog, the decision sources and the reject
//! reasons, so recording a callback allocates nothing and an unknown command on the path
//! cannot add series: those are counted under
//! `openim_gateway_bad_requests_total{reason="unknown_command"}`. The fields are private:
//! the rest of the gateway records through the methods, which name what happened.

use std::{sync::atomic::AtomicU64, time::Duration};

use openim_gateway_proto::{catalog, CallbackKind, Command, DecisionSource};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    outcome::{InvalidReply, RejectReason, ShadowOutcome},
    rules::Rules,
    status::Recorder,
};

/// Labels of `openim_gateway_callbacks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    /// The OpenIM command.
    command: &'static str,
    /// `before` or `after`.
    kind: &'static str,
    /// Who decided the answer (`unpublished` for an after-callback NATS did not take).
    source: &'static str,
}

/// Labels of the shadow-mode comparison.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    /// The catalog command.
    command: &'static str,
    /// `agree`, `disagree` or `no_decision`.
    outcome: &'static str,
}

/// Labels of the per-command metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    /// The OpenIM command.
    command: &'static str,
}

/// Labels of `openim_gateway_invalid_replies_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InvalidReplyLabels {
    /// The OpenIM command.
    command: &'static str,
    /// Why the reply could not be forwarded (`InvalidReply::reason`).
    reason: &'static str,
}

/// Labels of `openim_gateway_bad_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// Why the request was refused.
    reason: &'static str,
}

/// Every metric, registered once at start. Written only through the methods below, so that
/// each metric's labels are chosen in one place.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Callbacks answered, by command, kind and decision source.
    callbacks: Family<CallbackLabels, Counter>,
    /// Arrival to answer.
    callback_duration: Family<CommandLabels, Histogram>,
    /// Publish to reply.
    worker_duration: Family<CommandLabels, Histogram>,
    /// Before-callbacks being decided right now.
    inflight: Gauge,
    /// Entries in the reply map (set when scraped): flat when timeouts leave nothing behind.
    pending_replies: Gauge,
    /// 1 while connected to NATS.
    nats_connected: Gauge,
    /// Reconnections after the first connection.
    nats_reconnects: Counter,
    /// Requests refused before anything was asked, by reason.
    bad_requests: Family<ReasonLabels, Counter>,
    /// Replies that arrived but could not be forwarded, by command and reason.
    invalid_replies: Family<InvalidReplyLabels, Counter>,
    /// Failed accepts (for example at the open-file limit).
    accept_errors: Counter,
    /// Connections closed at once because every connection was busy at the bound.
    connections_refused: Counter,
    /// HTTP connections open right now.
    open_connections: Gauge,
    /// Idle connections closed to make room at the bound.
    connections_evicted: Counter,
    /// Shadow-mode callbacks by how the worker's decision compared with the default.
    shadow: Family<ShadowLabels, Counter>,
    /// Answers that left after their command's budget.
    late_answers: Family<CommandLabels, Counter>,
    /// Each before-callback command's budget in seconds, as the rules in force say.
    budgets: Family<CommandLabels, Gauge<f64, AtomicU64>>,
    /// The status page's figures, recorded with the counters they share.
    status: Recorder,
    /// Failover: stalls, callbacks asked again.
    failover: FailoverCounters,
}

/// What the NATS failover did: connections left because a round trip stalled, callbacks
/// asked again on a new connection, callbacks asked once more by hedging.
#[derive(Debug, Default)]
struct FailoverCounters {
    nats_stalls: Counter,
    reasked: Family<CommandLabels, Counter>,
    hedged: Family<CommandLabels, Counter>,
}

impl FailoverCounters {
    fn register(registry: &mut Registry) -> Self {
        let counters = Self::default();
        registry.register(
            "nats_stalls",
            "Connections to NATS left because a round trip through the server did not come back in time (a frozen or unreachable server)",
            counters.nats_stalls.clone(),
        );
        registry.register(
            "reasked_callbacks",
            "Before-callbacks asked again on a new NATS connection after theirs was lost, by command",
            counters.reasked.clone(),
        );
        registry.register(
            "hedged_callbacks",
            "Before-callbacks asked a second time because no reply had come by GATEWAY_HEDGE_AFTER_PERCENT of the budget, by command",
            counters.hedged.clone(),
        );
        for command in catalog::COMMANDS {
            if command.kind == CallbackKind::Before {
                let labels = CommandLabels {
                    command: command.name,
                };
                drop(counters.reasked.get_or_create(&labels));
                drop(counters.hedged.get_or_create(&labels));
            }
        }
        counters
    }
}

/// The upper bounds of the latency histograms, in seconds. Fine below 50 ms, where a worker
/// on the same network answers (a local one in well under a millisecond); then coarse up to
/// a second; then bounds on the moments that matter to OpenIM: the stock budget (4.75 s:
/// OpenIM's 5 s timeout less the default 250 ms margin) and that timeout itself, the same two
/// for a 10 s timeout, and for OpenIM's 15 s cap. An answer between 4.75 and 5 s was late for
/// the gateway, one above 5 s late for OpenIM too. Doubling buckets (the previous ones) jumped
/// from 3.3 s to 6.6 s and could show neither. 24 buckets: one observation is a search of
/// them, and each command that has been called exports 26 lines per histogram.
pub const LATENCY_BUCKETS: [f64; 24] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0,
    4.0, 4.5, 4.75, 5.0, 7.5, 9.75, 10.0, 12.5, 14.75, 15.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric. The counters whose label sets are bounded start at
    /// 0 for every label value, so that an alert sees the series before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("openim_gateway");
        let callbacks = Family::<CallbackLabels, Counter>::default();
        let callback_duration = Family::<CommandLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let worker_duration = Family::<CommandLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let inflight = Gauge::default();
        let nats_connected = Gauge::default();
        let pending_replies = Gauge::default();
        let nats_reconnects = Counter::default();
        let bad_requests = Family::<ReasonLabels, Counter>::default();
        let invalid_replies = Family::<InvalidReplyLabels, Counter>::default();
        let accept_errors = Counter::default();
        let connections_refused = Counter::default();
        let open_connections = Gauge::default();
        let connections_evicted = Counter::default();
        let shadow = Family::<ShadowLabels, Counter>::default();
        let late_answers = Family::<CommandLabels, Counter>::default();
        let budgets = Family::<CommandLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "callbacks",
            "Callbacks answered, by command, kind (before/after) and decision source",
            callbacks.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Time from a callback's arrival to its answer",
            callback_duration.clone(),
        );
        registry.register(
            "worker_duration_seconds",
            "Time from publishing a before-callback to the worker's reply",
            worker_duration.clone(),
        );
        registry.register(
            "inflight_callbacks",
            "Before-callbacks waiting for a decision",
            inflight.clone(),
        );
        registry.register(
            "pending_replies",
            "Callbacks in the reply map, waiting for a worker's reply",
            pending_replies.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the gateway is connected to NATS, else 0",
            nats_connected.clone(),
        );
        registry.register(
            "nats_reconnects",
            "Reconnections to NATS after the first connection",
            nats_reconnects.clone(),
        );
        registry.register(
            "bad_requests",
            "Requests refused before anything was asked (4xx), by reason",
            bad_requests.clone(),
        );
        registry.register(
            "invalid_replies",
            "Worker replies that could not be forwarded to OpenIM, by command and reason",
            invalid_replies.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accepts of a new connection (for example at the open-file limit)",
            accept_errors.clone(),
        );
        registry.register(
            "connections_refused",
            "New connections closed at once because every connection was busy at GATEWAY_MAX_CONNECTIONS",
            connections_refused.clone(),
        );
        registry.register(
            "open_connections",
            "HTTP connections open right now (bounded by GATEWAY_MAX_CONNECTIONS)",
            open_connections.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle connections closed to make room for a new one at GATEWAY_MAX_CONNECTIONS",
            connections_evicted.clone(),
        );
        registry.register(
            "shadow_decisions",
            "Callbacks of commands in shadow mode, by how the worker's decision compared with the default answered instead (agree, disagree, no_decision)",
            shadow.clone(),
        );
        registry.register(
            "late_answers",
            "Callbacks answered after their command's budget (OpenIM's timeout less GATEWAY_SAFETY_MARGIN_MS), by command: never expected, any is worth an alert",
            late_answers.clone(),
        );
        registry.register(
            "budget_seconds",
            "Each before-callback command's budget (OpenIM's timeout for it less GATEWAY_SAFETY_MARGIN_MS), as the rules in force say: what its callback_duration_seconds compares against",
            budgets.clone(),
        );
        let failover = FailoverCounters::register(&mut registry);
        // `get_or_create` creates the series; the guard it returns is dropped at once.
        for reason in RejectReason::ALL {
            drop(bad_requests.get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            }));
        }
        for command in catalog::COMMANDS {
            let sources: &[DecisionSource] = DecisionSource::of_kind(command.kind);
            for source in sources {
                drop(callbacks.get_or_create(&callback_labels(command, *source)));
            }
            drop(late_answers.get_or_create(&CommandLabels {
                command: command.name,
            }));
            if command.kind == CallbackKind::Before {
                for outcome in ShadowOutcome::ALL {
                    drop(shadow.get_or_create(&ShadowLabels {
                        command: command.name,
                        outcome: outcome.as_str(),
                    }));
                }
                for reason in InvalidReply::possible_reasons(command) {
                    drop(invalid_replies.get_or_create(&InvalidReplyLabels {
                        command: command.name,
                        reason,
                    }));
                }
            }
        }
        Self {
            registry,
            callbacks,
            callback_duration,
            worker_duration,
            inflight,
            pending_replies,
            nats_connected,
            nats_reconnects,
            bad_requests,
            invalid_replies,
            accept_errors,
            connections_refused,
            open_connections,
            connections_evicted,
            shadow,
            late_answers,
            budgets,
            status: Recorder::new(),
            failover,
        }
    }

    /// Records every before-callback command's budget from `rules` (at start and on each
    /// reload).
    pub fn budgets(&self, rules: &Rules) {
        for command in catalog::COMMANDS
            .iter()
            .filter(|command| command.kind == CallbackKind::Before)
        {
            self.budgets
                .get_or_create(&CommandLabels {
                    command: command.name,
                })
                .set(rules.of(command).budget.as_secs_f64());
        }
    }

    /// The status page's figures: fed by the methods below, read by the status page.
    pub fn status(&self) -> &Recorder {
        &self.status
    }

    /// Counts a shadow-mode callback by how the worker's decision compared with the default.
    pub fn shadow(&self, command: &'static Command, outcome: ShadowOutcome) {
        self.shadow
            .get_or_create(&ShadowLabels {
                command: command.name,
                outcome: outcome.as_str(),
            })
            .inc();
        self.status.shadow(command, outcome);
    }

    /// The OpenMetrics text exposition of every metric (what Prometheus asks for first).
    pub fn encode_openmetrics(&self) -> String {
        let mut text = String::with_capacity(64 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and parsers that do not
    /// speak OpenMetrics: the same samples, with counter families named by their `_total`
    /// samples and no `# EOF`.
    pub fn encode_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.encode_openmetrics())
    }

    /// Counts an answered callback under who decided it, observes arrival to answer, and
    /// counts it as late when that took longer than the command's `budget`.
    pub fn answered(
        &self,
        command: &'static Command,
        source: DecisionSource,
        took: Duration,
        budget: Duration,
    ) {
        self.callbacks
            .get_or_create(&callback_labels(command, source))
            .inc();
        let labels = CommandLabels {
            command: command.name,
        };
        self.callback_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if took > budget {
            self.late_answers.get_or_create(&labels).inc();
        }
        self.status.answered(command, source, took);
    }

    /// Observes the time from publish to a worker's reply (valid or not).
    pub fn worker_replied(&self, command: &'static Command, waited: Duration) {
        self.worker_duration
            .get_or_create(&CommandLabels {
                command: command.name,
            })
            .observe(waited.as_secs_f64());
        self.status.worker_replied(command);
    }

    /// Counts a reply that could not be forwarded to OpenIM, by why (`InvalidReply::reason`).
    pub fn invalid_reply(&self, command: &'static Command, reason: &'static str) {
        self.invalid_replies
            .get_or_create(&InvalidReplyLabels {
                command: command.name,
                reason,
            })
            .inc();
    }

    /// Counts a request refused before anything was asked.
    pub fn bad_request(&self, reason: RejectReason) {
        self.bad_requests
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        self.status.bad_request(reason);
    }

    /// Counts a before-callback in flight until the guard drops, even if OpenIM hangs up and
    /// the handler is dropped with it. The guard knows how many were in flight before it,
    /// which is what `GATEWAY_MAX_INFLIGHT` is checked against: one counter for both.
    pub fn inflight(&self) -> InflightGuard<'_> {
        let before = self.inflight.inc();
        InflightGuard {
            gauge: &self.inflight,
            before: usize::try_from(before).unwrap_or_default(),
        }
    }

    /// Records the reply map's size (read when scraped).
    pub fn pending_replies(&self, count: usize) {
        self.pending_replies
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The connection to NATS is up; `reconnected` when it is not the first time.
    pub fn nats_connected(&self, reconnected: bool) {
        self.nats_connected.set(1);
        if reconnected {
            self.nats_reconnects.inc();
        }
    }

    /// A new connection could not be accepted.
    pub fn accept_failed(&self) {
        self.accept_errors.inc();
    }

    /// A new connection was closed at once: every connection was busy at the bound.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts an open HTTP connection until the guard drops.
    pub fn connection_opened(&self) -> OpenConnection {
        self.open_connections.inc();
        OpenConnection(self.open_connections.clone())
    }

    /// An idle connection was closed to make room for a new one at the bound.
    pub fn connection_evicted(&self) {
        self.connections_evicted.inc();
    }

    /// The connection to NATS is down.
    pub fn nats_disconnected(&self) {
        self.nats_connected.set(0);
    }

    /// A round trip through the NATS server stalled: the connection was left.
    pub fn nats_stalled(&self) {
        self.failover.nats_stalls.inc();
    }

    /// A callback was asked again on a new connection after its own was lost.
    pub fn reasked(&self, command: &'static Command) {
        self.failover
            .reasked
            .get_or_create(&CommandLabels {
                command: command.name,
            })
            .inc();
    }

    /// A callback was asked a second time by hedging.
    pub fn hedged(&self, command: &'static Command) {
        self.failover
            .hedged
            .get_or_create(&CommandLabels {
                command: command.name,
            })
            .inc();
    }
}

fn callback_labels(command: &'static Command, source: DecisionSource) -> CallbackLabels {
    CallbackLabels {
        command: command.name,
        kind: command.kind.as_str(),
        source: source.as_str(),
    }
}

/// A before-callback in flight: decrements the gauge when dropped.
#[derive(Debug)]
pub struct InflightGuard<'a> {
    gauge: &'a Gauge,
    /// The callbacks in flight when this one was counted.
    before: usize,
}

impl InflightGuard<'_> {
    /// How many other callbacks were in flight when this one was counted.
    pub fn others(&self) -> usize {
        self.before
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// An open HTTP connection: decrements the gauge when dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Rewrites OpenMetrics text into the classic format: a counter family `x` (samples `x_total`)
/// becomes `x_total` in its `# HELP` and `# TYPE` lines, and `# EOF` and `# UNIT` go.
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let family_line = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters.contains(&name).then_some((prefix, name, tail))
        });
        match family_line {
            Some((prefix, name, tail)) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_counters_start_at_zero() {
        let text = Metrics::new().encode_prometheus_text();
        for reason in RejectReason::ALL {
            let sample = format!(
                "openim_gateway_bad_requests_total{{reason=\"{}\"}} 0\n",
                reason.as_str()
            );
            assert!(text.contains(&sample), "{sample} missing");
        }
        assert!(text.contains("openim_gateway_callbacks_total{command=\"callbackBeforeSetGroupMemberInfoCommand\",kind=\"before\",source=\"fallback:timeout\"} 0\n"));
        assert!(text.contains("openim_gateway_callbacks_total{command=\"callbackAfterSetGroupMemberInfoCommand\",kind=\"after\",source=\"unpublished\"} 0\n"));
        assert!(text.contains(
            "openim_gateway_invalid_replies_total{command=\"callbackBeforeSetGroupInfoCommand\",reason=\"identity_changed\"} 0\n"
        ));
        assert!(text.contains(
            "openim_gateway_invalid_replies_total{command=\"callbackBeforeMembersJoinGroupCommand\",reason=\"null_entry\"} 0\n"
        ));
        assert!(!text.contains("kind=\"after\",source=\"worker\""));
        assert!(text.contains("openim_gateway_shadow_decisions_total{command=\"callbackBeforeSendSingleMsgCommand\",outcome=\"disagree\"} 0\n"), "{text}");
    }

    #[test]
    fn classic_text_names_counter_families_by_their_samples() {
        let metrics = Metrics::new();
        let seed = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        metrics.answered(
            seed,
            DecisionSource::Worker,
            Duration::from_millis(1),
            Duration::from_millis(4750),
        );
        metrics.bad_request(RejectReason::NotJson);
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains("# TYPE openim_gateway_callbacks_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP openim_gateway_callbacks_total "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE openim_gateway_bad_requests_total counter\n"),
            "{text}"
        );
        assert!(text.contains("openim_gateway_callbacks_total{command=\"callbackBeforeSetGroupMemberInfoCommand\",kind=\"before\",source=\"worker\"} 1\n"), "{text}");
        assert!(
            text.contains("# TYPE openim_gateway_callback_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE openim_gateway_inflight_callbacks gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn every_before_callbacks_budget_is_exported() {
        let metrics = Metrics::new();
        let variables = [("GATEWAY_CALLBACK_TIMEOUT_MS", "2000")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let config = crate::settings::Config::from_map(&variables).unwrap();
        metrics.budgets(&Rules::new(&config));
        let text = metrics.encode_prometheus_text();
        assert!(
            text.contains(
                "openim_gateway_budget_seconds{command=\"callbackBeforeSetGroupMemberInfoCommand\"} 1.75\n"
            ),
            "{text}"
        );
        assert!(
            !text.contains(
                "openim_gateway_budget_seconds{command=\"callbackAfterSetGroupMemberInfoCommand\"}"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_answer_after_the_budget_is_late_and_the_buckets_show_it() {
        let metrics = Metrics::new();
        let seed = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        let budget = Duration::from_millis(4750);
        let late = "openim_gateway_late_answers_total{command=\"callbackBeforeSetGroupMemberInfoCommand\"}";
        assert!(
            metrics
                .encode_prometheus_text()
                .contains(&format!("{late} 0\n")),
            "every command's series starts at 0"
        );
        for took_ms in [1, 4740, 4750] {
            metrics.answered(
                seed,
                DecisionSource::Timeout,
                Duration::from_millis(took_ms),
                budget,
            );
        }
        let text = metrics.encode_prometheus_text();
        assert!(text.contains(&format!("{late} 0\n")), "{text}");
        metrics.answered(
            seed,
            DecisionSource::Timeout,
            Duration::from_millis(4800),
            budget,
        );
        metrics.answered(
            seed,
            DecisionSource::Timeout,
            Duration::from_millis(5100),
            budget,
        );
        let text = metrics.encode_prometheus_text();
        assert!(text.contains(&format!("{late} 2\n")), "{text}");
        // The budget and OpenIM's timeout are bucket bounds: 3 answers by the budget, 4 by
        // the timeout, 5 in all.
        let bucket = |le: &str| {
            format!("openim_gateway_callback_duration_seconds_bucket{{le=\"{le}\",command=\"callbackBeforeSetGroupMemberInfoCommand\"}}")
        };
        assert!(text.contains(&format!("{} 3\n", bucket("4.75"))), "{text}");
        assert!(text.contains(&format!("{} 4\n", bucket("5.0"))), "{text}");
        assert!(text.contains(&format!("{} 5\n", bucket("7.5"))), "{text}");
    }
}
