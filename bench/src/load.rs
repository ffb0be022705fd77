//! The load engine: open loop and closed loop over any [`Target`], recording every request.
//!
//! **Open loop**: a ticker thread computes request `i`'s start as `t0 + i / rate` and hands it
//! over at that moment; the request takes an idle keep-alive connection (or opens one, up to
//! `max_connections`; beyond that it waits for one) and its latency is measured from the
//! *scheduled* start, not from the moment it was sent. A stall anywhere (the system under test,
//! the network, this process) therefore shows up as latency of every request that should have
//! started during it: no coordinated omission. The ticker is an OS thread sleeping with
//! `std::thread::sleep` rather than a tokio timer, whose 1 ms granularity would add up to a
//! millisecond of false latency; what remains is the thread's wake-up jitter, typically well
//! under 0.1 ms.
//!
//! **Closed loop**: `connections` callers, each with its own connection, send back to back
//! for the duration; latency is from the send. This measures the maximum throughput, and with
//! one caller the latency of one request at a time.
//!
//! Requests started during the warm-up are executed but not recorded. The engine does not
//! judge the numbers; it only counts.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hdrhistogram::Histogram;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::result::{Percentiles, RunResult, TimelineBucket};

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The connection could not be opened.
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// An HTTP status other than 200.
    Status,
    /// The connection failed mid-request.
    Io,
    /// 200, but the body is not a JSON object.
    Body,
    /// NATS: nobody subscribes to the subject.
    NoResponders,
}

impl CallError {
    /// The key in the result's `errors`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Status => "status",
            Self::Io => "io",
            Self::Body => "body",
            Self::NoResponders => "no_responders",
        }
    }

    /// Whether the connection can carry the next request (the answer was read in full).
    pub const fn keeps_connection(self) -> bool {
        matches!(self, Self::Status | Self::Body | Self::NoResponders)
    }
}

/// Something to send requests to.
pub trait Target: Send + Sync + 'static {
    /// One connection (or whatever a caller holds between requests).
    type Conn: Send + 'static;

    /// Opens a connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, CallError>> + Send;

    /// Whether an idle connection can still be used (the server may have closed it).
    fn is_usable(&self, _conn: &Self::Conn) -> bool {
        true
    }

    /// Sends request number `sequence` and reads the whole answer; returns its source.
    fn call(
        &self,
        conn: &mut Self::Conn,
        sequence: u64,
    ) -> impl Future<Output = Result<&'static str, CallError>> + Send;
}

/// How requests are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Requests start at `rate` per second, whatever the answers do.
    Open {
        /// Starts per second.
        rate: f64,
    },
    /// `callers` callers send back to back.
    Closed {
        /// Concurrent callers, one connection each.
        callers: usize,
    },
}

/// Everything about one run but the target.
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// What the run is called in its result.
    pub label: String,
    /// Open or closed loop.
    pub mode: Mode,
    /// Open loop: connections opened before `t0`, so the first requests do not pay a connect.
    pub initial_connections: usize,
    /// Open loop: the most connections at once; a request finding none waits (and the wait
    /// counts in its latency).
    pub max_connections: usize,
    /// Executed, not recorded.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// A request without an answer after this is an error (`timeout`).
    pub timeout: Duration,
    /// When set, requests slower than `budget + late_tolerance` are counted as late.
    pub budget: Option<Duration>,
    /// See `budget`: the budgets allow 5 ms (BENCHMARKS.md).
    pub late_tolerance: Duration,
    /// When set, answers are also counted per slice of this width.
    pub timeline: Option<Duration>,
}

/// Every recorded request of one run.
#[derive(Debug)]
struct Recorder {
    /// Answered requests.
    latency: Histogram<u64>,
    /// Answered requests, by source.
    sources: BTreeMap<&'static str, Histogram<u64>>,
    errors: BTreeMap<&'static str, u64>,
    sent: u64,
    late: u64,
    /// The slowest request, answered or not.
    slowest: Duration,
    /// Open loop: from the scheduled start to the send (connection taken or opened): the
    /// load generator's own delay, which the latency includes.
    dispatch: Histogram<u64>,
    /// Requests late even when counted from their send: lateness the load generator's own
    /// delays do not explain.
    late_after_send: u64,
    /// The slowest request counted from its send.
    slowest_after_send: Duration,
    /// `budget + tolerance`, when a budget was given.
    late_after: Option<Duration>,
    timeline_width: Option<Duration>,
    timeline: Vec<TimelineBucket>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant figures: the bounds are valid, so this cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Recorder {
    fn new(settings: &LoadSettings) -> Self {
        Self {
            latency: histogram(),
            sources: BTreeMap::new(),
            errors: BTreeMap::new(),
            sent: 0,
            late: 0,
            slowest: Duration::ZERO,
            dispatch: histogram(),
            late_after_send: 0,
            slowest_after_send: Duration::ZERO,
            late_after: settings
                .budget
                .map(|budget| budget + settings.late_tolerance),
            timeline_width: settings.timeline,
            timeline: Vec::new(),
        }
    }

    /// Records one request that started `offset` after `t0` and took `latency`; in open
    /// loop, `dispatch` is how long after its scheduled start it was sent (`None` when it
    /// never was: no connection in time).
    fn record(
        &mut self,
        offset: Duration,
        latency: Duration,
        dispatch: Option<Duration>,
        outcome: Result<&'static str, CallError>,
    ) {
        self.sent += 1;
        self.slowest = self.slowest.max(latency);
        let late = self.late_after.is_some_and(|limit| latency > limit);
        if late {
            self.late += 1;
        }
        if let Some(dispatch) = dispatch {
            self.dispatch.saturating_record(micros(dispatch).max(1));
            let after_send = latency.saturating_sub(dispatch);
            self.slowest_after_send = self.slowest_after_send.max(after_send);
            if self.late_after.is_some_and(|limit| after_send > limit) {
                self.late_after_send += 1;
            }
        }
        let bucket = self.timeline_width.map(|width| {
            let index = usize::try_from(offset.as_nanos() / width.as_nanos().max(1))
                .unwrap_or(usize::MAX)
                .min(1_000_000);
            while self.timeline.len() <= index {
                let start = width * u32::try_from(self.timeline.len()).unwrap_or(u32::MAX);
                self.timeline.push(TimelineBucket {
                    start_ms: u64::try_from(start.as_millis()).unwrap_or(u64::MAX),
                    ..TimelineBucket::default()
                });
            }
            if late {
                self.timeline[index].late += 1;
            }
            index
        });
        match outcome {
            Ok(source) => {
                let value = micros(latency).max(1);
                self.latency.saturating_record(value);
                self.sources
                    .entry(source)
                    .or_insert_with(histogram)
                    .saturating_record(value);
                if let Some(index) = bucket {
                    *self.timeline[index]
                        .sources
                        .entry(source.to_owned())
                        .or_default() += 1;
                }
            }
            Err(error) => {
                *self.errors.entry(error.label()).or_default() += 1;
                if let Some(index) = bucket {
                    self.timeline[index].errors += 1;
                }
            }
        }
    }

    fn into_result(self, settings: &LoadSettings, t0_unix_ms: u64, opened: u64) -> RunResult {
        let (mode, connections, target_rate) = match settings.mode {
            Mode::Open { rate } => ("open", settings.max_connections, Some(rate)),
            Mode::Closed { callers } => ("closed", callers, None),
        };
        let duration_s = settings.duration.as_secs_f64();
        let budget_ms = settings.budget.map(|budget| budget.as_secs_f64() * 1e3);
        RunResult {
            label: settings.label.clone(),
            mode: mode.to_owned(),
            connections,
            connections_opened: opened,
            target_rate,
            rate: if duration_s > 0.0 {
                self.sent as f64 / duration_s
            } else {
                0.0
            },
            duration_s,
            sent: self.sent,
            answered: self.latency.len(),
            latency: percentiles(&self.latency),
            sources: self
                .sources
                .iter()
                .map(|(source, histogram)| ((*source).to_owned(), histogram.len()))
                .collect(),
            source_latency: self
                .sources
                .iter()
                .map(|(source, histogram)| ((*source).to_owned(), percentiles(histogram)))
                .collect(),
            errors: self
                .errors
                .iter()
                .map(|(error, count)| ((*error).to_owned(), *count))
                .collect(),
            budget_ms,
            late: self.late,
            worst_late_ms: budget_ms.map(|budget| self.slowest.as_secs_f64() * 1e3 - budget),
            dispatch_delay: (!self.dispatch.is_empty()).then(|| percentiles(&self.dispatch)),
            late_after_send: self.late_after_send,
            worst_late_after_send_ms: budget_ms
                .filter(|_| !self.dispatch.is_empty())
                .map(|budget| self.slowest_after_send.as_secs_f64() * 1e3 - budget),
            t0_unix_ms,
            timeline_ms: settings
                .timeline
                .map(|width| u64::try_from(width.as_millis()).unwrap_or(u64::MAX)),
            timeline: self.timeline,
            process_cpu_s: None,
        }
    }
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: histogram.len(),
        p50_us: histogram.value_at_quantile(0.5),
        p90_us: histogram.value_at_quantile(0.9),
        p99_us: histogram.value_at_quantile(0.99),
        p999_us: histogram.value_at_quantile(0.999),
        max_us: histogram.max(),
        mean_us: histogram.mean(),
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts connections as they are opened.
#[derive(Debug)]
struct Counted<T> {
    target: Arc<T>,
    opened: AtomicU64,
}

impl<T: Target> Counted<T> {
    async fn connect(&self) -> Result<T::Conn, CallError> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.target.connect().await
    }
}

/// Runs `settings` against `target` and returns the result (also when every request failed).
pub async fn run<T: Target>(target: Arc<T>, settings: &LoadSettings) -> RunResult {
    let counted = Arc::new(Counted {
        target,
        opened: AtomicU64::new(0),
    });
    let recorder = Arc::new(Mutex::new(Recorder::new(settings)));
    let t0_unix_ms = match settings.mode {
        Mode::Open { rate } => open_loop(&counted, settings, rate, &recorder).await,
        Mode::Closed { callers } => closed_loop(&counted, settings, callers, &recorder).await,
    };
    let opened = counted.opened.load(Ordering::Relaxed);
    let recorder = match Arc::try_unwrap(recorder) {
        Ok(mutex) => mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
        // Every task has been joined, so nobody else holds the recorder; this is not reached.
        Err(shared) => std::mem::replace(&mut *lock(&shared), Recorder::new(settings)),
    };
    recorder.into_result(settings, t0_unix_ms, opened)
}

fn unix_ms_at(instant: Instant) -> u64 {
    let now = SystemTime::now();
    let at = match instant.checked_duration_since(Instant::now()) {
        Some(ahead) => now + ahead,
        None => now - Instant::now().saturating_duration_since(instant),
    };
    at.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

async fn open_loop<T: Target>(
    counted: &Arc<Counted<T>>,
    settings: &LoadSettings,
    rate: f64,
    recorder: &Shared<Recorder>,
) -> u64 {
    let rate = rate.max(0.001);
    let max_connections = settings.max_connections.max(1);
    let pool: Shared<Vec<T::Conn>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..settings.initial_connections.min(max_connections) {
        if let Ok(conn) = counted.connect().await {
            lock(&pool).push(conn);
        }
    }
    let permits = Arc::new(Semaphore::new(max_connections));
    let total = ((settings.warmup + settings.duration).as_secs_f64() * rate).round() as u64;
    let t0 = Instant::now() + Duration::from_millis(20);
    let measured_from = t0 + settings.warmup;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let ticker = std::thread::spawn(move || {
        for sequence in 0..total {
            let scheduled = t0 + Duration::from_secs_f64(sequence as f64 / rate);
            let now = Instant::now();
            if scheduled > now {
                std::thread::sleep(scheduled - now);
            }
            if sender.send((sequence, scheduled)).is_err() {
                break;
            }
        }
    });
    let mut in_flight = JoinSet::new();
    while let Some((sequence, scheduled)) = receiver.recv().await {
        let counted = Arc::clone(counted);
        let pool = Arc::clone(&pool);
        let permits = Arc::clone(&permits);
        let recorder = Arc::clone(recorder);
        let timeout = settings.timeout;
        in_flight.spawn(async move {
            // Closed only when the engine drops it, after every task is joined.
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            let mut sent_at = None;
            let attempt = async {
                let idle = {
                    let mut idle = lock(&pool);
                    let mut found = None;
                    while let Some(conn) = idle.pop() {
                        if counted.target.is_usable(&conn) {
                            found = Some(conn);
                            break;
                        }
                    }
                    found
                };
                let mut conn = match idle {
                    Some(conn) => conn,
                    None => counted.connect().await?,
                };
                sent_at = Some(Instant::now());
                let outcome = counted.target.call(&mut conn, sequence).await;
                if outcome.is_ok() || outcome.is_err_and(CallError::keeps_connection) {
                    lock(&pool).push(conn);
                }
                outcome
            };
            let outcome = tokio::time::timeout(timeout, attempt)
                .await
                .unwrap_or(Err(CallError::Timeout));
            let latency = scheduled.elapsed();
            let dispatch = sent_at.map(|sent_at| sent_at.saturating_duration_since(scheduled));
            if scheduled >= measured_from {
                lock(&recorder).record(scheduled - t0, latency, dispatch, outcome);
            }
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
    // The ticker ended before the channel closed.
    let _ = ticker.join();
    unix_ms_at(t0)
}

async fn closed_loop<T: Target>(
    counted: &Arc<Counted<T>>,
    settings: &LoadSettings,
    callers: usize,
    recorder: &Shared<Recorder>,
) -> u64 {
    let t0 = Instant::now();
    let measured_from = t0 + settings.warmup;
    let end = measured_from + settings.duration;
    let next_sequence = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..callers.max(1) {
        let counted = Arc::clone(counted);
        let recorder = Arc::clone(recorder);
        let next_sequence = Arc::clone(&next_sequence);
        let timeout = settings.timeout;
        tasks.spawn(async move {
            let mut conn: Option<T::Conn> = None;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let sequence = next_sequence.fetch_add(1, Ordering::Relaxed);
                let outcome = tokio::time::timeout(timeout, attempt(&counted, &mut conn, sequence))
                    .await
                    .unwrap_or(Err(CallError::Timeout));
                let latency = start.elapsed();
                if let Err(error) = outcome {
                    if !error.keeps_connection() {
                        conn = None;
                    }
                    if error == CallError::Connect {
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                if start >= measured_from {
                    lock(&recorder).record(start - t0, latency, None, outcome);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    unix_ms_at(t0)
}

/// One request of a closed-loop caller, connecting first when it holds no connection.
async fn attempt<T: Target>(
    counted: &Counted<T>,
    conn: &mut Option<T::Conn>,
    sequence: u64,
) -> Result<&'static str, CallError> {
    if conn
        .as_ref()
        .is_some_and(|held| !counted.target.is_usable(held))
    {
        *conn = None;
    }
    if conn.is_none() {
        *conn = Some(counted.connect().await?);
    }
    let Some(held) = conn.as_mut() else {
        return Err(CallError::Connect);
    };
    counted.target.call(held, sequence).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use openim_gateway_proto::DecisionSource;

    /// Answers after a fixed delay; every tenth request fails.
    #[derive(Debug)]
    struct Sleepy(Duration);

    impl Target for Sleepy {
        type Conn = ();

        async fn connect(&self) -> Result<(), CallError> {
            Ok(())
        }

        async fn call(&self, _conn: &mut (), sequence: u64) -> Result<&'static str, CallError> {
            tokio::time::sleep(self.0).await;
            if sequence % 10 == 9 {
                Err(CallError::Status)
            } else {
                Ok(DecisionSource::Worker.as_str())
            }
        }
    }

    fn settings(mode: Mode) -> LoadSettings {
        LoadSettings {
            label: "test".to_owned(),
            mode,
            initial_connections: 1,
            max_connections: 64,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(300),
            timeout: Duration::from_secs(1),
            // Generous: a 1 ms sleep may take much longer on a busy machine.
            budget: Some(Duration::from_millis(200)),
            late_tolerance: Duration::from_millis(5),
            timeline: Some(Duration::from_millis(100)),
        }
    }

    #[tokio::test]
    async fn open_loop_starts_at_the_rate_and_counts_everything() {
        let result = run(
            Arc::new(Sleepy(Duration::from_millis(1))),
            &settings(Mode::Open { rate: 100.0 }),
        )
        .await;
        assert_eq!(result.sent, 30);
        assert_eq!(result.errors.get("status"), Some(&3));
        assert_eq!(result.source_count(DecisionSource::Worker.as_str()), 27);
        assert_eq!(result.late, 0, "{result:?}");
        assert_eq!(result.timeline.len(), 3);
        assert!(result.latency.p50_us >= 1000, "{result:?}");
    }

    #[tokio::test]
    async fn a_stall_counts_for_every_request_it_delays() {
        // One connection, answers taking 50 ms, a start every 10 ms: requests queue, and
        // their latency counts from their scheduled start.
        let mut settings = settings(Mode::Open { rate: 100.0 });
        settings.max_connections = 1;
        settings.budget = Some(Duration::from_millis(20));
        let result = run(Arc::new(Sleepy(Duration::from_millis(50))), &settings).await;
        assert!(result.late > 20, "{result:?}");
        assert!(result.worst_late_ms.unwrap() > 1000.0, "{result:?}");
    }

    #[tokio::test]
    async fn closed_loop_keeps_every_caller_busy() {
        let result = run(
            Arc::new(Sleepy(Duration::from_millis(10))),
            &settings(Mode::Closed { callers: 4 }),
        )
        .await;
        // 4 callers, 10 ms each, 300 ms: at most 120 requests, fewer on a busy machine.
        assert!((8..=124).contains(&result.sent), "{result:?}");
        assert_eq!(result.mode, "closed");
    }
}
