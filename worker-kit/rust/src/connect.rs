//! Connecting to NATS with settings fit for a long-running worker.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr};

/// How often the client pings the server. async-nats defaults to 60 s, which lets a half-open
/// connection look healthy for minutes while the gateway's requests go nowhere.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

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
        Event::ServerError(_) | Event::ClientError(_) => tracing::warn!(%event, "nats error"),
        Event::Connected | Event::LameDuckMode | Event::Draining | Event::Closed => {}
    }
}
