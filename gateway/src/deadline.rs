//! The clock of a before-callback: when the gateway stops waiting, and how that moment is
//! stated to workers. Pure arithmetic over values; no timers, no I/O.
//!
//! The budget (`GATEWAY_CALLBACK_TIMEOUT_MS - GATEWAY_SAFETY_MARGIN_MS`) starts when a
//! request reaches the handler. The gateway stops waiting [`TIMER_SLACK`] before it ends, so
//! that the answer has left when the budget ends; that moment is the callback's deadline, the
//! one every wait below the handler is bounded by and the one `X-Deadline-Unix-Ms` states.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// tokio's timers fire on the first millisecond tick after their deadline, a busy runtime
/// polls the woken task a little later still, and on a loaded machine the thread itself may
/// wait a few milliseconds for a core: the gateway stops waiting this much before the budget
/// ends. 5 ms was not always enough on the benchmark's 2 shared cores (BENCHMARKS.md); 10 ms
/// costs the worker 0.2 % of the default budget.
pub const TIMER_SLACK: Duration = Duration::from_millis(10);

/// The wait a budget allows: the budget less [`TIMER_SLACK`], or less a tenth of a very
/// small budget.
pub fn answer_within(budget: Duration) -> Duration {
    budget.saturating_sub(TIMER_SLACK.min(budget / 10))
}

/// One callback's clock, fixed at arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// When the request reached the handler.
    pub arrival: Instant,
    /// When the gateway stops waiting: `arrival + answer_within(budget)`.
    pub at: Instant,
}

impl Deadline {
    /// The clock of a callback that arrived at `arrival` with `answer_within` to answer.
    pub fn starting(arrival: Instant, answer_within: Duration) -> Self {
        Self {
            arrival,
            at: arrival + answer_within,
        }
    }

    /// The time left at `now` (zero once the deadline has passed).
    pub fn left(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// The deadline as Unix milliseconds, given the wall clock `wall_now` read at `now`
    /// (`X-Deadline-Unix-Ms`: the moment after which nobody waits for the answer).
    pub fn unix_ms(&self, now: Instant, wall_now: SystemTime) -> u128 {
        (wall_now + self.left(now))
            .duration_since(UNIX_EPOCH)
            .map(|since_epoch| since_epoch.as_millis())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_ends_before_the_budget() {
        assert_eq!(
            answer_within(Duration::from_millis(4750)),
            Duration::from_millis(4740)
        );
        assert_eq!(
            answer_within(Duration::from_millis(20)),
            Duration::from_millis(18)
        );
        assert_eq!(
            answer_within(Duration::from_millis(1)),
            Duration::from_micros(900)
        );
        assert_eq!(answer_within(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn time_left_counts_down_to_zero() {
        let arrival = Instant::now();
        let deadline = Deadline::starting(arrival, Duration::from_millis(100));
        assert_eq!(deadline.left(arrival), Duration::from_millis(100));
        assert_eq!(
            deadline.left(arrival + Duration::from_millis(30)),
            Duration::from_millis(70)
        );
        assert_eq!(
            deadline.left(arrival + Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn the_unix_deadline_is_the_wall_clock_plus_the_time_left() {
        let arrival = Instant::now();
        let deadline = Deadline::starting(arrival, Duration::from_millis(4740));
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        assert_eq!(
            deadline.unix_ms(arrival + Duration::from_millis(40), wall),
            1_700_000_004_700
        );
        assert_eq!(
            deadline.unix_ms(arrival + Duration::from_secs(9), wall),
            1_700_000_000_000
        );
    }
}
