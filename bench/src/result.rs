//! The result of one load run: the JSON line `loadgen` and `nats-floor client` print last on
//! stdout, which the driver reads back. Serialisable on purpose: it crosses a process
//! boundary. Latencies are microseconds, lateness milliseconds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// How many answers the distribution holds.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// The slowest answer.
    pub max_us: u64,
    /// The mean.
    pub mean_us: f64,
}

/// What answered (by `X-Decision-Source`) and what failed in one slice of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineBucket {
    /// The slice's start, from the run's `t0`, by scheduled (open loop) or actual (closed loop)
    /// start of the requests.
    pub start_ms: u64,
    /// Answers by source.
    pub sources: BTreeMap<String, u64>,
    /// Requests without an answer (connect, timeout, status, ...).
    pub errors: u64,
    /// Requests (answered or not) slower than budget + tolerance.
    pub late: u64,
}

/// One run, as printed on the JSON line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// What was measured (`direct`, `gateway`, `nats_rr`, ...), given on the command line.
    pub label: String,
    /// `open` (fixed start rate) or `closed` (callers back to back).
    pub mode: String,
    /// Closed loop: the number of callers. Open loop: the most connections allowed at once.
    pub connections: usize,
    /// Connections (or, for NATS, callers) opened during the run, first ones included.
    pub connections_opened: u64,
    /// Open loop: the requested start rate per second.
    pub target_rate: Option<f64>,
    /// Requests finished (answered or failed) per second of the measured window.
    pub rate: f64,
    /// The measured window, after the warm-up, in seconds.
    pub duration_s: f64,
    /// Requests started in the measured window.
    pub sent: u64,
    /// Requests answered with 200 and a JSON object.
    pub answered: u64,
    /// Latency of the answered requests: from the scheduled start in open loop (stalls
    /// included: no coordinated omission), from the send in closed loop. Flattened: the line
    /// carries `p50_us`, `p99_us`, ... at the top level.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Answers by `X-Decision-Source` (`direct` for the direct server, `worker` for NATS).
    pub sources: BTreeMap<String, u64>,
    /// Latency of the answers of each source.
    pub source_latency: BTreeMap<String, Percentiles>,
    /// Requests without an answer, by kind: `connect`, `timeout`, `status`, `io`, `body`,
    /// `no_responders`.
    pub errors: BTreeMap<String, u64>,
    /// The budget the late check used, when one was given.
    pub budget_ms: Option<f64>,
    /// Requests (answered or not) that took longer than budget + tolerance.
    pub late: u64,
    /// The slowest request (answered or not) minus the budget, in ms; negative when every
    /// request finished inside the budget.
    pub worst_late_ms: Option<f64>,
    /// Open loop: from each request's scheduled start to its send (after taking or opening a
    /// connection): the load generator's own share of the latency.
    pub dispatch_delay: Option<Percentiles>,
    /// Open loop: requests late even counted from their send, so not explained by the load
    /// generator's own delays.
    pub late_after_send: u64,
    /// Open loop: `worst_late_ms` counted from the send.
    pub worst_late_after_send_ms: Option<f64>,
    /// The run's `t0` (the first scheduled start), as Unix milliseconds.
    pub t0_unix_ms: u64,
    /// The width of a timeline bucket, when a timeline was asked for.
    pub timeline_ms: Option<u64>,
    /// Answers and errors by slice of the run.
    pub timeline: Vec<TimelineBucket>,
    /// CPU time (user + system) the load generator process used, in seconds, so that the
    /// driver can tell the machine's other work from the run's own.
    pub process_cpu_s: Option<f64>,
}

/// CPU time (user + system) this process has used so far, in seconds, from
/// `/proc/self/stat` (Linux; `None` elsewhere). Assumes Linux's fixed 100 ticks per second.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

impl RunResult {
    /// Late requests counted from their arrival at the target: from the send in open loop
    /// (the load generator's own delays in sending are not the target's), else from the start.
    pub fn late_from_arrival(&self) -> u64 {
        if self.dispatch_delay.is_some() {
            self.late_after_send
        } else {
            self.late
        }
    }

    /// Every request without an answer.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Answers from `source`.
    pub fn source_count(&self, source: &str) -> u64 {
        self.sources.get(source).copied().unwrap_or_default()
    }

    /// Reads the result from a process's stdout: the last line that parses.
    pub fn from_output(stdout: &str) -> Option<Self> {
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line.trim()).ok())
    }

    /// The one-line human summary printed on stderr.
    pub fn summary(&self) -> String {
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|(source, count)| format!("{source}={count}"))
            .collect();
        let mut text = format!(
            "{label}: {mode} {rate:.0}/s sent={sent} p50={p50}us p99={p99}us p99.9={p999}us max={max}us [{sources}] errors={errors}",
            label = self.label,
            mode = self.mode,
            rate = self.rate,
            sent = self.sent,
            p50 = self.latency.p50_us,
            p99 = self.latency.p99_us,
            p999 = self.latency.p999_us,
            max = self.latency.max_us,
            sources = sources.join(" "),
            errors = self.error_count(),
        );
        if let (Some(budget), Some(worst)) = (self.budget_ms, self.worst_late_ms) {
            text.push_str(&format!(
                " late={late} (budget {budget}ms, worst {worst:+.1}ms)",
                late = self.late
            ));
        }
        if let (Some(dispatch), Some(worst)) = (self.dispatch_delay, self.worst_late_after_send_ms)
        {
            text.push_str(&format!(
                " dispatch p99={}us max={}us, from send: late={} worst {worst:+.1}ms",
                dispatch.p99_us, dispatch.max_us, self.late_after_send
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_json_line_wins() {
        let result = RunResult {
            label: "x".to_owned(),
            sent: 3,
            ..RunResult::default()
        };
        let output = format!(
            "noise\n{}\nmore noise\n",
            serde_json::to_string(&result).unwrap()
        );
        assert_eq!(RunResult::from_output(&output), Some(result));
        assert_eq!(RunResult::from_output("nothing"), None);
    }
}
