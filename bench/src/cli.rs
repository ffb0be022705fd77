//! The load options `loadgen` and `nats-floor client` share, parsed by clap and turned into
//! [`LoadSettings`]. Only parsing: the engine is in [`crate::load`].

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::load::{LoadSettings, Mode};

/// Open or closed loop, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Requests start at `--rate` per second; latency from the scheduled start.
    Open,
    /// `--connections` callers send back to back; latency from the send.
    Closed,
}

/// How to load the target.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Open loop (fixed start rate) or closed loop (callers back to back).
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: ModeArg,
    /// Open loop: requests started per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Closed loop: concurrent callers, one connection each. Open loop: connections opened
    /// before the first request.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    /// Open loop: the most connections at once (a request finding none waits, and the wait
    /// counts in its latency).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// The measured window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration_s: f64,
    /// Seconds of load before the measured window, not recorded.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_s: f64,
    /// A request without an answer after this many ms counts as a `timeout` error.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// The late check: count requests slower than this budget plus `--late-tolerance-ms`.
    #[arg(long)]
    pub budget_ms: Option<f64>,
    /// See `--budget-ms`; the budgets allow 5 ms (BENCHMARKS.md).
    #[arg(long, default_value_t = 5.0)]
    pub late_tolerance_ms: f64,
    /// Also count answers by source per slice of this many ms.
    #[arg(long)]
    pub timeline_ms: Option<u64>,
    /// Runtime threads of the load generator (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// The run's name in its result line.
    #[arg(long, default_value = "run")]
    pub label: String,
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

impl LoadArgs {
    /// The engine's settings.
    pub fn settings(&self) -> LoadSettings {
        LoadSettings {
            label: self.label.clone(),
            mode: match self.mode {
                ModeArg::Open => Mode::Open { rate: self.rate },
                ModeArg::Closed => Mode::Closed {
                    callers: self.connections,
                },
            },
            initial_connections: self.connections,
            max_connections: self.max_connections,
            warmup: seconds(self.warmup_s),
            duration: seconds(self.duration_s),
            timeout: Duration::from_millis(self.timeout_ms),
            budget: self.budget_ms.map(|ms| seconds(ms / 1e3)),
            late_tolerance: seconds(self.late_tolerance_ms / 1e3),
            timeline: self.timeline_ms.map(Duration::from_millis),
        }
    }
}
