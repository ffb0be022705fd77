//! Warnings about a condition, not about each callback: when workers time out or nobody
//! serves a command, every callback meets the same condition, and a line per callback makes
//! the log the outage (200k timeouts once wrote 45 MB). The first occurrence is logged at
//! once; the rest are counted and reported once per interval with their number. Each
//! callback's own line stays at debug level.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, PoisonError,
    },
    time::Duration,
};

use crate::outcome::ShadowOutcome;

/// How often a condition's count is reported while it lasts.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// One condition the log should mention, with what to say about it.
#[derive(Debug)]
pub struct Condition {
    /// What happened, in the words of a log line.
    what: &'static str,
    /// Occurrences since the last report.
    unreported: AtomicU64,
}

impl Condition {
    const fn new(what: &'static str) -> Self {
        Self {
            what,
            unreported: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; the first since the last report is logged at once, with the
    /// callback's command and `detail` (a reason). An empty command or detail is left out of
    /// the line rather than written as an empty field.
    pub fn note(&self, command: &'static str, detail: &dyn std::fmt::Display) {
        if self.unreported.fetch_add(1, Ordering::Relaxed) == 0 {
            // Only the first occurrence of an interval gets here: formatting is cheap enough.
            let detail = detail.to_string();
            let command = (!command.is_empty()).then_some(command);
            let detail = (!detail.is_empty()).then_some(detail.as_str());
            tracing::warn!(
                command,
                detail,
                "{}; further occurrences are counted and reported every {} s",
                self.what,
                REPORT_INTERVAL.as_secs()
            );
        }
    }

    /// Reports the occurrences since the last report, if there were more than the one
    /// logged at once, and starts counting afresh.
    fn report(&self) {
        let count = self.unreported.swap(0, Ordering::Relaxed);
        if count > 1 {
            tracing::warn!(
                count,
                interval_s = REPORT_INTERVAL.as_secs(),
                "{}: {count} occurrences in the last interval",
                self.what
            );
        }
    }

    /// Occurrences not yet reported.
    pub fn unreported(&self) -> u64 {
        self.unreported.load(Ordering::Relaxed)
    }
}

/// A shadowed command's outcomes in one interval.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShadowCounts {
    /// The worker decided as the default does.
    pub agree: u64,
    /// The worker decided otherwise.
    pub disagree: u64,
    /// The worker allowed with changes.
    pub modify: u64,
    /// No valid reply in time.
    pub no_decision: u64,
}

/// Shadow mode's decisions, summed per command and logged at info once per interval: each
/// callback's own line is at debug, and shadow mode must show at the default log level
/// without a line per callback.
#[derive(Debug, Default)]
pub struct ShadowTally {
    counts: Mutex<BTreeMap<&'static str, ShadowCounts>>,
}

impl ShadowTally {
    /// Counts one shadowed callback of `command` with its `outcome`.
    pub fn note(&self, command: &'static str, outcome: ShadowOutcome) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let counts = counts.entry(command).or_default();
        match outcome {
            ShadowOutcome::Agree => counts.agree += 1,
            ShadowOutcome::Disagree => counts.disagree += 1,
            ShadowOutcome::Modify => counts.modify += 1,
            ShadowOutcome::NoDecision => counts.no_decision += 1,
        }
    }

    /// The counts since the last call, per command, and a fresh start.
    pub fn take(&self) -> BTreeMap<&'static str, ShadowCounts> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Logs one line per command shadowed in the last interval.
    fn report(&self) {
        for (command, counts) in self.take() {
            tracing::info!(
                command,
                agree = counts.agree,
                disagree = counts.disagree,
                modify = counts.modify,
                no_decision = counts.no_decision,
                interval_s = REPORT_INTERVAL.as_secs(),
                "shadow mode: the worker's decisions against the default answered, in the last interval"
            );
        }
    }
}

/// Every condition the callback path reports.
#[derive(Debug)]
pub struct Conditions {
    /// No worker reply before the deadline.
    pub timeout: Condition,
    /// No worker subscribes to a command.
    pub no_responders: Condition,
    /// A worker's reply could not be forwarded.
    pub invalid_reply: Condition,
    /// NATS is not connected.
    pub unavailable: Condition,
    /// Too many callbacks in flight.
    pub overload: Condition,
    /// An after-callback could not be published.
    pub unpublished: Condition,
    /// An after-callback was not stored in the after-callback stream while NATS was up.
    pub unstored: Condition,
    /// A new connection could not be accepted, or was refused at the bound.
    pub accept_failed: Condition,
    /// A callback could not be handed to the NATS client.
    pub publish_failed: Condition,
    /// A callback for a command the catalog does not have (a newer OpenIM?).
    pub unknown_command: Condition,
    /// A request refused with a 4xx answer for any other reason (path, method, body).
    pub bad_request: Condition,
    /// An answer left after its command's budget (`openim_gateway_late_answers_total`).
    pub late: Condition,
    /// Shadow mode's decisions (not a warning: a summary at info).
    pub shadow: ShadowTally,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            timeout: Condition::new("no worker reply before the deadline: answering the default"),
            no_responders: Condition::new(
                "no worker subscribes to this callback: answering the default",
            ),
            invalid_reply: Condition::new("invalid worker reply: answering the default"),
            unavailable: Condition::new("nats unavailable: answering the default"),
            overload: Condition::new(
                "too many callbacks in flight (GATEWAY_MAX_INFLIGHT): answering the default",
            ),
            unpublished: Condition::new("after-callback not published: nats unavailable"),
            unstored: Condition::new(
                "after-callback not stored in its jetstream stream: acknowledged to OpenIM anyway, counted as unpublished",
            ),
            accept_failed: Condition::new("a new connection could not be served"),
            publish_failed: Condition::new(
                "a callback could not be published to nats: answering the default",
            ),
            unknown_command: Condition::new(
                "callbacks for a command this gateway does not know (a newer OpenIM?): answering the default",
            ),
            bad_request: Condition::new("callback requests refused as malformed (4xx)"),
            late: Condition::new(
                "a callback answered after its budget: OpenIM may have given up on it (the machine is overloaded, or a bug)",
            ),
            shadow: ShadowTally::default(),
        }
    }
}

impl Conditions {
    fn all(&self) -> impl Iterator<Item = &Condition> {
        [
            &self.timeout,
            &self.no_responders,
            &self.invalid_reply,
            &self.unavailable,
            &self.overload,
            &self.unpublished,
            &self.unstored,
            &self.accept_failed,
            &self.publish_failed,
            &self.unknown_command,
            &self.bad_request,
            &self.late,
        ]
        .into_iter()
    }

    /// Reports every condition once per [`REPORT_INTERVAL`], for as long as it runs.
    pub async fn report_every_interval(&self) {
        // The first report one interval from now: `interval` would tick at once.
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + REPORT_INTERVAL,
            REPORT_INTERVAL,
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            for condition in self.all() {
                condition.report();
            }
            self.shadow.report();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_are_counted_until_reported() {
        let condition = Condition::new("test");
        for _ in 0..5 {
            condition.note("callbackX", &"");
        }
        assert_eq!(condition.unreported(), 5);
        condition.report();
        assert_eq!(condition.unreported(), 0);
    }

    #[test]
    fn shadow_outcomes_are_summed_per_command_until_taken() {
        let tally = ShadowTally::default();
        for outcome in [
            ShadowOutcome::Agree,
            ShadowOutcome::Disagree,
            ShadowOutcome::Disagree,
            ShadowOutcome::Modify,
            ShadowOutcome::NoDecision,
        ] {
            tally.note("callbackX", outcome);
        }
        tally.note("callbackY", ShadowOutcome::Agree);
        let counts = tally.take();
        assert_eq!(
            counts.get("callbackX"),
            Some(&ShadowCounts {
                agree: 1,
                disagree: 2,
                modify: 1,
                no_decision: 1
            })
        );
        assert_eq!(
            counts.get("callbackY"),
            Some(&ShadowCounts {
                agree: 1,
                ..ShadowCounts::default()
            })
        );
        assert!(tally.take().is_empty(), "a quiet interval logs nothing");
    }
}
