//! The figures of the status page, recorded as callbacks are answered: per command, the
//! answers by decision source, a latency histogram and the shadow outcomes, since start and
//! over a sliding window of the last five minutes, and when a worker last replied.
//!
//! Recording takes one short lock of the command's own figures and allocates nothing: every
//! array is sized at start from the catalog, the decision sources and the shadow outcomes.
//! The window is a ring of [`SLOTS`] slots of [`SLOT`] each; a slot is cleared when the clock
//! comes back to it, so the window holds between 4.5 and 5 minutes of callbacks.

use std::{
    array,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use openim_gateway_proto::{catalog, Command, DecisionSource};

use crate::outcome::{RejectReason, ShadowOutcome};

/// The length of one slot of the window.
pub const SLOT: Duration = Duration::from_secs(30);
/// The slots of the window: `SLOTS * SLOT` is five minutes.
pub const SLOTS: usize = 10;
/// The window the page calls "the last 5 minutes".
pub const WINDOW: Duration = Duration::from_secs(SLOT.as_secs() * SLOTS as u64);

const SOURCES: usize = DecisionSource::ALL.len();
const SHADOW: usize = ShadowOutcome::ALL.len();
const REASONS: usize = RejectReason::ALL.len();
/// Latency buckets: four per power of two of microseconds (see [`bucket_of`]), up to 2^26 µs
/// (67 s), far above OpenIM's 15 s cap.
pub const BUCKETS: usize = 104;

/// The bucket of a latency of `micros`: the value itself below 4 µs, else four buckets per
/// power of two (the two bits after the highest set bit), so that a bucket's upper bound is at
/// most a quarter above any value in it.
pub fn bucket_of(micros: u64) -> usize {
    if micros < 4 {
        return micros as usize;
    }
    let top = 63 - micros.leading_zeros() as usize;
    let quarter = ((micros >> (top - 2)) & 3) as usize;
    ((top - 1) * 4 + quarter).min(BUCKETS - 1)
}

/// The smallest latency, in microseconds, above every value of bucket `index`.
pub fn bucket_upper_micros(index: usize) -> u64 {
    if index < 4 {
        return index as u64 + 1;
    }
    let top = index / 4 + 1;
    let quarter = (index % 4) as u64;
    (4 + quarter + 1) << (top - 2)
}

/// Counts of one span of time (a slot, or everything since start).
#[derive(Debug, Clone)]
pub struct Counts {
    /// Answers by decision source, in the order of [`DecisionSource::ALL`].
    pub sources: [u64; SOURCES],
    /// Answers by latency bucket ([`bucket_of`]).
    pub latency: [u64; BUCKETS],
    /// Shadow-mode callbacks by outcome, in the order of [`ShadowOutcome::ALL`].
    pub shadow: [u64; SHADOW],
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            sources: [0; SOURCES],
            latency: [0; BUCKETS],
            shadow: [0; SHADOW],
        }
    }
}

impl Counts {
    fn add(&mut self, other: &Self) {
        add_into(&mut self.sources, &other.sources);
        add_into(&mut self.latency, &other.latency);
        add_into(&mut self.shadow, &other.shadow);
    }

    /// Every answer counted.
    pub fn answered(&self) -> u64 {
        self.sources.iter().sum()
    }

    /// The answers counted under `source`.
    pub fn of(&self, source: DecisionSource) -> u64 {
        DecisionSource::ALL
            .iter()
            .position(|known| *known == source)
            .map_or(0, |index| self.sources[index])
    }

    /// The answers that were the default because something failed or the command is off
    /// ([`DecisionSource::is_fallback`]).
    pub fn fallbacks(&self) -> u64 {
        DecisionSource::ALL
            .iter()
            .zip(self.sources)
            .filter(|(source, _)| source.is_fallback())
            .map(|(_, count)| count)
            .sum()
    }

    /// The latency under which `quantile` (0..=1) of the answers came, as the upper bound of
    /// its bucket; `None` before any answer.
    pub fn latency_quantile(&self, quantile: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the answer at the quantile, from 1.
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.latency.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper_micros(index)));
            }
        }
        None
    }
}

fn add_into<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (into, from) in into.iter_mut().zip(from) {
        *into += from;
    }
}

/// One command's figures.
#[derive(Debug)]
struct Figures {
    since_start: Counts,
    /// The window's slots, and the slot number (time since start / [`SLOT`]) each holds.
    slots: [(u64, Counts); SLOTS],
    /// When a worker last replied (valid or not), as time since start.
    last_worker_reply: Option<Duration>,
}

impl Default for Figures {
    fn default() -> Self {
        Self {
            since_start: Counts::default(),
            slots: array::from_fn(|_| (u64::MAX, Counts::default())),
            last_worker_reply: None,
        }
    }
}

impl Figures {
    /// The counts of slot `number`, cleared first when it held an older slot.
    fn slot(&mut self, number: u64) -> &mut Counts {
        let (held, counts) = &mut self.slots[(number % SLOTS as u64) as usize];
        if *held != number {
            *held = number;
            *counts = Counts::default();
        }
        counts
    }
}

/// One command's figures at a moment.
#[derive(Debug, Clone, Default)]
pub struct CommandFigures {
    /// Since the gateway started.
    pub since_start: Counts,
    /// Over the last five minutes ([`WINDOW`]).
    pub window: Counts,
    /// How long ago a worker last replied to this command, if one ever did.
    pub last_worker_reply: Option<Duration>,
}

/// The figures of every catalog command, and the requests refused before a command was known.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    /// In the order of [`catalog::COMMANDS`].
    commands: Vec<Mutex<Figures>>,
    /// The address of the first entry of the catalog `Command::lookup` hands entries out of
    /// (a copy of its own: a constant slice is not at one address in every crate), so that a
    /// command's place is arithmetic on its address, checked by name.
    lookup_base: Option<usize>,
    /// Each command's place in [`Self::commands`], by name, for a command from elsewhere.
    index: HashMap<&'static str, usize>,
    /// Refused requests since start, in the order of [`RejectReason::ALL`].
    bad_requests: [AtomicU64; REASONS],
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// Empty figures for every catalog command, starting now.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            commands: catalog::COMMANDS
                .iter()
                .map(|_| Mutex::new(Figures::default()))
                .collect(),
            lookup_base: catalog::COMMANDS
                .first()
                .and_then(|first| Command::lookup(first.name))
                .map(|first| std::ptr::from_ref(first).addr()),
            index: catalog::COMMANDS
                .iter()
                .enumerate()
                .map(|(index, command)| (command.name, index))
                .collect(),
            bad_requests: array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// How long the recorder (the gateway) has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    fn figures(&self, command: &Command) -> Option<&Mutex<Figures>> {
        let size = std::mem::size_of::<Command>();
        let by_address = self.lookup_base.and_then(|base| {
            let offset = std::ptr::from_ref(command).addr().checked_sub(base)?;
            let index = offset / size;
            (offset % size == 0 && catalog::COMMANDS.get(index)?.name == command.name)
                .then_some(index)
        });
        let index = match by_address {
            Some(index) => index,
            None => *self.index.get(command.name)?,
        };
        self.commands.get(index)
    }

    /// Runs `record` on the figures of `command` and on the current slot of its window.
    fn record(&self, command: &Command, record: impl Fn(&mut Counts), now: Duration) {
        let Some(figures) = self.figures(command) else {
            return;
        };
        let mut figures = figures.lock().unwrap_or_else(PoisonError::into_inner);
        record(&mut figures.since_start);
        record(figures.slot(now.as_secs() / SLOT.as_secs()));
    }

    /// An answered callback: who decided and how long it took from arrival.
    pub fn answered(&self, command: &Command, source: DecisionSource, took: Duration) {
        let Some(source) = DecisionSource::ALL
            .iter()
            .position(|known| *known == source)
        else {
            return;
        };
        let bucket = bucket_of(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        self.record(
            command,
            |counts| {
                counts.sources[source] += 1;
                counts.latency[bucket] += 1;
            },
            self.uptime(),
        );
    }

    /// A shadow-mode callback, by how the worker's decision compared with the default.
    pub fn shadow(&self, command: &Command, outcome: ShadowOutcome) {
        let Some(outcome) = ShadowOutcome::ALL
            .iter()
            .position(|known| *known == outcome)
        else {
            return;
        };
        self.record(command, |counts| counts.shadow[outcome] += 1, self.uptime());
    }

    /// A worker replied to `command` (in time, valid or not).
    pub fn worker_replied(&self, command: &Command) {
        let now = self.uptime();
        if let Some(figures) = self.figures(command) {
            figures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last_worker_reply = Some(now);
        }
    }

    /// A request refused before anything was asked.
    pub fn bad_request(&self, reason: RejectReason) {
        if let Some(index) = RejectReason::ALL.iter().position(|known| *known == reason) {
            self.bad_requests[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The refused requests since start, by reason (every reason, zeros included).
    pub fn bad_requests(&self) -> Vec<(RejectReason, u64)> {
        RejectReason::ALL
            .iter()
            .zip(&self.bad_requests)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
            .collect()
    }

    /// The figures of every catalog command now, in the catalog's order.
    pub fn snapshot(&self) -> Vec<(&'static Command, CommandFigures)> {
        self.snapshot_at(self.uptime())
    }

    fn snapshot_at(&self, now: Duration) -> Vec<(&'static Command, CommandFigures)> {
        let current = now.as_secs() / SLOT.as_secs();
        let oldest = current.saturating_sub(SLOTS as u64 - 1);
        catalog::COMMANDS
            .iter()
            .zip(&self.commands)
            .map(|(command, figures)| {
                let figures = figures.lock().unwrap_or_else(PoisonError::into_inner);
                let mut window = Counts::default();
                for (number, counts) in &figures.slots {
                    if *number != u64::MAX && (oldest..=current).contains(number) {
                        window.add(counts);
                    }
                }
                let taken = CommandFigures {
                    since_start: figures.since_start.clone(),
                    window,
                    last_worker_reply: figures.last_worker_reply.map(|at| now.saturating_sub(at)),
                };
                (command, taken)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> &'static Command {
        Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap()
    }

    #[test]
    fn buckets_are_continuous_and_bound_their_values() {
        for micros in [
            0, 1, 3, 4, 5, 7, 8, 9, 100, 999, 1000, 4_750_000, 15_000_000,
        ] {
            let index = bucket_of(micros);
            assert!(bucket_upper_micros(index) > micros, "{micros} in {index}");
            if index > 0 {
                assert!(
                    bucket_upper_micros(index - 1) <= micros,
                    "{micros} in {index}"
                );
            }
            // At most a quarter above (past the first few microseconds).
            if micros >= 4 {
                assert!(bucket_upper_micros(index) as f64 <= micros as f64 * 1.25 + 1.0);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn every_command_has_its_own_figures_however_it_was_found() {
        let recorder = Recorder::new();
        for command in catalog::COMMANDS {
            // The catalog's entry as `lookup` gives it, and this crate's copy of it.
            let looked_up = Command::lookup(command.name).unwrap();
            recorder.answered(looked_up, DecisionSource::Off, Duration::from_millis(1));
            recorder.answered(command, DecisionSource::Off, Duration::from_millis(1));
        }
        for (command, figures) in recorder.snapshot() {
            assert_eq!(figures.since_start.answered(), 2, "{}", command.name);
        }
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let recorder = Recorder::new();
        for _ in 0..98 {
            recorder.answered(seed(), DecisionSource::Worker, Duration::from_millis(1));
        }
        for _ in 0..2 {
            recorder.answered(seed(), DecisionSource::Timeout, Duration::from_millis(400));
        }
        let (_, figures) = recorder
            .snapshot()
            .into_iter()
            .find(|(command, _)| command.name == seed().name)
            .unwrap();
        let counts = figures.since_start;
        assert_eq!(counts.answered(), 100);
        assert_eq!(counts.of(DecisionSource::Worker), 98);
        assert_eq!(counts.fallbacks(), 2);
        let p50 = counts.latency_quantile(0.5).unwrap();
        let p99 = counts.latency_quantile(0.99).unwrap();
        assert!(
            p50 >= Duration::from_millis(1) && p50 <= Duration::from_micros(1250),
            "{p50:?}"
        );
        assert!(
            p99 >= Duration::from_millis(400) && p99 <= Duration::from_millis(500),
            "{p99:?}"
        );
        assert_eq!(figures.window.answered(), 100);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_five_minutes() {
        let recorder = Recorder::new();
        let record = |at: Duration| {
            recorder.record(seed(), |counts| counts.sources[0] += 1, at);
        };
        record(Duration::from_secs(10));
        record(Duration::from_secs(200));
        let window_at = |now: Duration| {
            recorder
                .snapshot_at(now)
                .into_iter()
                .find(|(command, _)| command.name == seed().name)
                .unwrap()
                .1
        };
        assert_eq!(window_at(Duration::from_secs(250)).window.answered(), 2);
        // Slot 0 (0..30 s) has left the window at 300 s; slot 6 (180..210 s) has not.
        let later = window_at(Duration::from_secs(310));
        assert_eq!(later.window.answered(), 1);
        assert_eq!(later.since_start.answered(), 2);
        assert_eq!(window_at(Duration::from_secs(600)).window.answered(), 0);
        // A slot reused by a later time starts from zero.
        record(Duration::from_secs(305));
        assert_eq!(window_at(Duration::from_secs(306)).window.answered(), 2);
        assert_eq!(
            window_at(Duration::from_secs(306)).since_start.answered(),
            3
        );
    }

    #[test]
    fn shadow_outcomes_and_worker_replies_are_kept() {
        let recorder = Recorder::new();
        for outcome in ShadowOutcome::ALL {
            recorder.shadow(seed(), outcome);
        }
        recorder.worker_replied(seed());
        recorder.bad_request(RejectReason::NotJson);
        let (_, figures) = recorder
            .snapshot()
            .into_iter()
            .find(|(command, _)| command.name == seed().name)
            .unwrap();
        assert_eq!(figures.since_start.shadow, [1; SHADOW]);
        assert!(figures.last_worker_reply.unwrap() < Duration::from_secs(5));
        assert!(recorder
            .bad_requests()
            .contains(&(RejectReason::NotJson, 1)));
    }
}
