//! What the NATS client reports: connection events into metrics, logs and the disconnect
//! signal, and why each server could not be reached, logged once per cause and interval.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use async_nats::{ClientError, Event};
use tokio::time::Instant;

use super::health::Health;
use crate::{conditions::REPORT_INTERVAL, metrics::Metrics, settings::nats::redact_urls};

/// Keeps the connection metrics and the disconnect signal in step with the client's events.
#[derive(Debug)]
pub(super) struct ConnectionEvents {
    /// The servers, without credentials: async-nats' events do not say which server failed
    /// or what the gateway connects to, and "nats: IO error" alone helps nobody.
    pub(super) servers: String,
    pub(super) metrics: Arc<Metrics>,
    /// Whether a connection was ever made: the next one is a reconnection.
    pub(super) connected_once: AtomicBool,
    /// Told when the connection drops: it wakes the callbacks waiting for a reply.
    pub(super) health: Arc<Health>,
}

impl ConnectionEvents {
    pub(super) fn handle(&self, event: Event) {
        match event {
            Event::Connected => {
                let reconnected = self.connected_once.swap(true, Ordering::Relaxed);
                self.metrics.nats_connected(reconnected);
                tracing::info!(servers = %self.servers, "connected to nats");
            }
            Event::Disconnected => {
                self.metrics.nats_disconnected();
                self.health.lose();
                tracing::warn!(
                    servers = %self.servers,
                    "disconnected from nats: callbacks get the default decision until it is back (those in flight are asked again if it is back within 250 ms)"
                );
            }
            Event::Closed => {
                self.metrics.nats_disconnected();
                tracing::info!("nats connection closed");
            }
            // "nats: IO error" and the like, once per failed round of attempts: the cause,
            // with the server, is reported by `FailureCauses`.
            Event::ClientError(ClientError::Other(kind)) => {
                tracing::debug!(servers = %self.servers, %kind, "nats connection attempt failed");
            }
            other => tracing::warn!(servers = %self.servers, event = %other, "nats event"),
        }
    }
}

/// Logs why connecting to a server failed, as async-nats' pool records it (the error's full
/// text: "IO error: invalid peer certificate: UnknownIssuer", "IO error: Connection refused
/// (os error 111)"), at warn: each distinct cause of each server once per
/// [`REPORT_INTERVAL`], not at every attempt (one a second while NATS stays away).
#[derive(Debug, Default)]
pub(super) struct FailureCauses {
    /// When each (server, cause) was last logged.
    logged: Mutex<HashMap<(String, String), Instant>>,
}

impl FailureCauses {
    pub(super) fn report(&self, pool: &[async_nats::Server]) {
        let now = Instant::now();
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        logged.retain(|_, at| now.duration_since(*at) < REPORT_INTERVAL);
        for server in pool {
            let Some(cause) = &server.last_error else {
                continue;
            };
            // The pool holds the URLs without credentials; redacted all the same.
            let key = (redact_urls(server.addr.as_url_str()), cause.clone());
            if logged.contains_key(&key) {
                continue;
            }
            tracing::warn!(
                server = %key.0,
                failed_attempts = server.failed_attempts,
                cause = %cause,
                "cannot connect to a nats server: retrying (each cause is logged once every {} s)",
                REPORT_INTERVAL.as_secs()
            );
            logged.insert(key, now);
        }
    }
}
