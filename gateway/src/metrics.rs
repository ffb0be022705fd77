//! Prometheus metrics: what the gateway did, by command and by who decided.
//!
//! Label values are `&'static str` from the catalog and the decision sources, so recording a
//! callback allocates nothing and an unknown command on the path cannot add series: those
//! are counted under `openim_gateway_bad_requests_total{reason="unknown_command"}`.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};

/// Labels of `openim_gateway_callbacks_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    /// The OpenIM command.
    pub command: &'static str,
    /// `before` or `after`.
    pub kind: &'static str,
    /// The `X-Decision-Source` of the answer (`unpublished` for a lost after-callback).
    pub source: &'static str,
}

/// Labels of the per-command histograms.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The OpenIM command.
    pub command: &'static str,
}

/// Labels of `openim_gateway_bad_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why the request was refused.
    pub reason: &'static str,
}

/// Every metric, registered once at start.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Callbacks answered, by command, kind and decision source.
    pub callbacks: Family<CallbackLabels, Counter>,
    /// Arrival to answer.
    pub callback_duration: Family<CommandLabels, Histogram>,
    /// Publish to reply.
    pub worker_duration: Family<CommandLabels, Histogram>,
    /// Before-callbacks being decided right now.
    pub inflight: Gauge,
    /// Entries in the reply map (set when scraped): flat when timeouts leave nothing behind.
    pub pending_replies: Gauge,
    /// 1 while connected to NATS.
    pub nats_connected: Gauge,
    /// Reconnections after the first connection.
    pub nats_reconnects: Counter,
    /// Requests refused before anything was asked, by reason.
    pub bad_requests: Family<ReasonLabels, Counter>,
    /// Replies that arrived but could not be forwarded, by command.
    pub invalid_replies: Family<CommandLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s: from a local worker's reply to OpenIM's 15 s cap.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
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
        let invalid_replies = Family::<CommandLabels, Counter>::default();
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
            "Worker replies that could not be forwarded to OpenIM, by command",
            invalid_replies.clone(),
        );
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
        }
    }

    /// The OpenMetrics text exposition of every metric (what Prometheus asks for first).
    pub fn encode_openmetrics(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
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

    /// Counts a request refused before anything was asked.
    pub fn bad_request(&self, reason: &'static str) {
        self.bad_requests
            .get_or_create(&ReasonLabels { reason })
            .inc();
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
    fn classic_text_names_counter_families_by_their_samples() {
        let metrics = Metrics::new();
        metrics
            .callbacks
            .get_or_create(&CallbackLabels {
                command: "callbackBeforeSetGroupMemberInfoCommand",
                kind: "before",
                source: "worker",
            })
            .inc();
        metrics.bad_request("not_json");
        metrics
            .callback_duration
            .get_or_create(&CommandLabels {
                command: "callbackBeforeSetGroupMemberInfoCommand",
            })
            .observe(0.001);
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
}
