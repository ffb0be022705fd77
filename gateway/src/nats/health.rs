//! Whether the connection to NATS is known good, shared by the client's events, the
//! watchdog and every callback: the one place that says "lost" and "good again".

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, PoisonError,
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// How long after losing the connection (closed, or stalled) callbacks wait for a good one:
/// the callbacks in flight to ask again there, the new ones to ask at all. Moving to another
/// node of a cluster takes a few milliseconds; past this, no node is known good, and every
/// callback is answered the default at once instead of holding OpenIM's connection.
pub(super) const REASK_WAIT: Duration = Duration::from_millis(250);

/// The connection's health, beyond async-nats' own state.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The watchdog saw a round trip stall on the current connection; cleared by the next
    /// round trip that comes back (on the new connection).
    stalled: AtomicBool,
    /// When the connection was last lost.
    lost_at: Mutex<Option<Instant>>,
    /// Wakes the callbacks waiting for a reply on the lost connection.
    lost: Notify,
    /// Wakes the callbacks waiting for a good connection.
    good: Notify,
    /// The watchdog's last round trip that came back, and when; `None` once the connection
    /// is lost, until one comes back.
    round_trip: Mutex<Option<(Duration, Instant)>>,
}

impl Health {
    /// The connection is gone, or stalled: every callback waiting on it is woken.
    pub(super) fn lose(&self) {
        *self.lost_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        *self
            .round_trip
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.lost.notify_waiters();
    }

    /// The watchdog's round trip stalled: the connection is lost until one comes back.
    pub(super) fn stall(&self) {
        self.stalled.store(true, Ordering::Relaxed);
        self.lose();
    }

    /// A round trip came back after `took`: the connection is good. Returns whether it was
    /// stalled.
    pub(super) fn good(&self, took: Duration) -> bool {
        *self
            .round_trip
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((took, Instant::now()));
        let was_stalled = self.stalled.swap(false, Ordering::Relaxed);
        self.good.notify_waiters();
        was_stalled
    }

    /// The last round trip that came back on the current connection, and when.
    pub(super) fn last_round_trip(&self) -> Option<(Duration, Instant)> {
        *self
            .round_trip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the watchdog saw the current connection stall.
    pub(super) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// Until when a callback waits for a good connection: [`REASK_WAIT`] after it was lost;
    /// `None` when it never was (not connected yet: nothing to wait for).
    pub(super) fn wait_until(&self) -> Option<Instant> {
        self.lost_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|at| at + REASK_WAIT)
    }

    /// Resolves when the connection is lost from now on (create it before checking the
    /// state: a loss in between still wakes it).
    pub(super) fn lost(&self) -> tokio::sync::futures::Notified<'_> {
        self.lost.notified()
    }

    /// Resolves when a round trip comes back from now on.
    pub(super) fn good_again(&self) -> tokio::sync::futures::Notified<'_> {
        self.good.notified()
    }
}
