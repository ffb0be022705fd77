//! Connecting to NATS with settings fit for a long-running worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, Server, ServerAddr};

/// How often the client pings the server. async-nats defaults to 60 s, which lets a half-open
/// connection look healthy for minutes while the gateway's requests go nowhere.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// A failure to reach a NATS server is logged once per server and cause in this interval:
/// the client retries several times a second, and one line per attempt buries everything else.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Connects as `name` (what the server shows in its monitoring, `/connz`) to `servers`, in
/// the order given; it keeps retrying until the first server answers and reconnects forever
/// after, to any server of the list or of the cluster the server advertises.
///
/// With `retry_on_initial_connect` this returns at once; subscribing then waits until a
/// connection is up, so [`crate::Worker::start`] returning still means "connected and
/// subscribed".
pub async fn connect(
    name: &str,
    servers: &[ServerAddr],
) -> Result<Client, async_nats::ConnectError> {
    connect_with(ConnectOptions::new(), name, servers).await
}

/// [`connect`], starting from `options` that already carry the worker's credentials or TLS
/// (a creds file, an nkey, a user and password, client certificates).
pub async fn connect_with(
    options: ConnectOptions,
    name: &str,
    servers: &[ServerAddr],
) -> Result<Client, async_nats::ConnectError> {
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .event_callback(|event| async move { log_connection_event(&event) })
        // Called before each round of connection attempts with what the last round found:
        // the place where the cause of a failure (refused, timed out, TLS, unknown host) is
        // known, with the server it belongs to. It logs and leaves the choice to the client.
        .reconnect_to_server_callback({
            let failures = FailureLog::default();
            move |pool, _info| {
                let failures = failures.clone();
                async move {
                    failures.log_pool(&pool).await;
                    None
                }
            }
        })
        .connect(servers)
        .await
}

/// async-nats already logs every event at info; this raises the ones an operator must act on
/// to warnings, saying what they mean for callbacks.
fn log_connection_event(event: &Event) {
    match event {
        Event::Disconnected => {
            tracing::warn!(
                "disconnected from NATS: callbacks get the gateway's default until reconnected"
            );
        }
        Event::SlowConsumer(_) => {
            tracing::warn!("slow consumer: the server dropped requests meant for this worker");
        }
        // "IO error" for every failed attempt, without the cause or the server: the pool
        // callback logs those, with both, once per interval.
        Event::ClientError(async_nats::ClientError::Other(_)) => {}
        Event::ServerError(_) | Event::ClientError(_) => tracing::warn!(%event, "nats error"),
        Event::Connected | Event::LameDuckMode | Event::Draining | Event::Closed => {}
    }
}

/// When each (server, cause) was last logged.
#[derive(Clone, Default)]
struct FailureLog {
    last: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

impl FailureLog {
    /// Logs each server of `pool` that failed its last attempt, unless the same cause was
    /// logged for it within [`FAILURE_LOG_INTERVAL`]. A server with no recorded error may
    /// have failed before any connection (its name does not resolve): that is checked here.
    async fn log_pool(&self, pool: &[Server]) {
        for server in pool {
            let shown = format!("{}:{}", server.addr.host(), server.addr.port());
            let cause = match &server.last_error {
                Some(error) => error.clone(),
                None => {
                    match tokio::net::lookup_host((server.addr.host(), server.addr.port())).await {
                        Ok(_) => continue,
                        Err(error) => format!("cannot resolve the host: {error}"),
                    }
                }
            };
            if self.first_in_interval(&shown, &cause, Instant::now()) {
                tracing::warn!(
                    server = %shown,
                    %cause,
                    "cannot connect to NATS: callbacks get the gateway's default until connected; retrying (logged once per server and cause every {}s)",
                    FAILURE_LOG_INTERVAL.as_secs()
                );
            }
        }
    }

    /// Whether `cause` for `server` was not logged within the interval before `now`; records
    /// `now` when so.
    fn first_in_interval(&self, server: &str, cause: &str, now: Instant) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (server.to_owned(), cause.to_owned());
        match last.get(&key) {
            Some(at) if now.duration_since(*at) < FAILURE_LOG_INTERVAL => false,
            _ => {
                last.insert(key, now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_is_logged_once_per_server_and_interval() {
        let log = FailureLog::default();
        let start = Instant::now();
        assert!(log.first_in_interval("a:1", "refused", start));
        assert!(!log.first_in_interval("a:1", "refused", start + Duration::from_secs(1)));
        assert!(log.first_in_interval("a:1", "timed out", start + Duration::from_secs(1)));
        assert!(log.first_in_interval("b:1", "refused", start + Duration::from_secs(1)));
        assert!(log.first_in_interval("a:1", "refused", start + FAILURE_LOG_INTERVAL));
    }
}
