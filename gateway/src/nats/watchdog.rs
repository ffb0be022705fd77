//! The watchdog: a round trip through the NATS server every [`PROBE_EVERY`], so that a
//! stalled connection (a frozen nats-server, a partition that drops packets) is noticed in
//! well under a second instead of after async-nats' missed pings (seconds).
//!
//! A probe is a message to the gateway's own inbox: the server routes it back to the
//! gateway's reply subscription, so it comes back only if the server reads and writes on
//! this connection. When one has not come back within [`STALL_AFTER`], the connection is
//! marked stalled (callbacks stop using it, and those waiting on it are asked again on the
//! next one), its server is put under suspicion ([`ServerChoice`]), and the client is made
//! to reconnect to another server. The next probe that comes back marks the connection good
//! again.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use async_nats::{connection::State, Client};
use bytes::Bytes;
use tokio::time::Instant;

use super::{health::Health, replies::Inbox, servers::ServerChoice};
use crate::{metrics::Metrics, settings::nats::redact_urls};

/// How often a round trip is made while the connection is good.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(100);
/// How long a round trip may take before the connection counts as stalled: far above a
/// healthy round trip (well under a millisecond on a LAN), far below OpenIM's budget.
pub(super) const STALL_AFTER: Duration = Duration::from_millis(350);
/// How often the state is looked at while the client is not connected.
const DOWN_POLL: Duration = Duration::from_millis(5);
/// How long the client may take to take the reconnection request and leave the stalled
/// connection.
const LEAVE_WAIT: Duration = Duration::from_secs(1);

/// What the watchdog needs, all shared with the forwarder.
#[derive(Debug)]
pub(super) struct Watchdog {
    pub(super) client: Client,
    pub(super) inbox: Arc<Inbox>,
    pub(super) health: Arc<Health>,
    pub(super) servers: Arc<ServerChoice>,
    pub(super) metrics: Arc<Metrics>,
}

/// What came of one round trip.
enum RoundTrip {
    /// Back within [`STALL_AFTER`].
    Back,
    /// Not back within [`STALL_AFTER`].
    Stalled,
    /// Not sent: the client is closed, or not connected any more.
    NotSent,
}

impl Watchdog {
    /// Runs for as long as the client lives.
    pub(super) async fn run(self) {
        // Whether the connection must be confirmed good (a probe back) before it is trusted
        // again: at start, after a disconnection and after a stall.
        let mut unconfirmed = true;
        loop {
            if self.client.connection_state() != State::Connected {
                unconfirmed = true;
                tokio::time::sleep(DOWN_POLL).await;
                continue;
            }
            let sent = Instant::now();
            match self.round_trip().await {
                RoundTrip::Back => {
                    if self.health.good(sent.elapsed()) {
                        tracing::info!(
                            "nats round trips come back again: callbacks are asked on the new connection"
                        );
                    }
                    unconfirmed = false;
                    tokio::time::sleep_until(sent + PROBE_EVERY).await;
                }
                // Unless a disconnection raced it: the client is moving already.
                RoundTrip::Stalled if self.client.connection_state() == State::Connected => {
                    // A connection never confirmed (a new one, to a server that may still be
                    // frozen) is left too, without counting or logging a new stall.
                    self.leave_stalled_connection(!unconfirmed).await;
                    unconfirmed = true;
                }
                RoundTrip::Stalled => unconfirmed = true,
                RoundTrip::NotSent => tokio::time::sleep(DOWN_POLL).await,
            }
        }
    }

    /// One message to the gateway's own inbox, and its way back.
    async fn round_trip(&self) -> RoundTrip {
        let waiting = self.inbox.open_probe();
        if self
            .client
            .publish(waiting.subject.clone(), Bytes::new())
            .await
            .is_err()
        {
            return RoundTrip::NotSent;
        }
        match tokio::time::timeout(STALL_AFTER, waiting.receiver).await {
            Ok(Ok(_)) => RoundTrip::Back,
            // The reply routing ended: the client is closing.
            Ok(Err(_)) => RoundTrip::NotSent,
            Err(_) => RoundTrip::Stalled,
        }
    }

    /// The current connection stalled: stop using it, wake what waits on it, and move.
    async fn leave_stalled_connection(&self, report: bool) {
        self.health.stall();
        let server = self
            .servers
            .suspect_current()
            .map_or_else(String::new, |addr| redact_urls(addr.as_url_str()));
        if report {
            self.metrics.nats_stalled();
            tracing::warn!(
                %server,
                stall_after_ms = STALL_AFTER.as_millis(),
                "nats server did not answer a round trip in time: moving to another server; callbacks in flight are asked again there, the others answered the default until one answers"
            );
        }
        self.reconnect().await;
    }

    /// Asks the client to reconnect (to the server [`ServerChoice`] picks), and waits until
    /// it has left the current connection, so that the next probe goes to the next one. (The
    /// state alone does not tell: moving to a live node takes a few milliseconds, less than
    /// the state is looked at; the count of connections made does.)
    async fn reconnect(&self) {
        let statistics = self.client.statistics();
        let connects = || statistics.connects.load(Ordering::Relaxed);
        let before = connects();
        match tokio::time::timeout(LEAVE_WAIT, self.client.force_reconnect()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, "nats reconnect request refused");
                return;
            }
            Err(_) => {
                tracing::debug!("nats client did not take the reconnect request in time");
                return;
            }
        }
        let deadline = Instant::now() + LEAVE_WAIT;
        while self.client.connection_state() == State::Connected
            && connects() == before
            && Instant::now() < deadline
        {
            tokio::time::sleep(DOWN_POLL).await;
        }
    }
}
