//! Whether NATS can carry a callback now: logged in, and a request answered.
//!
//! A connection that is up proves little: a server that refuses the password, or a port where
//! nothing listens, leaves the client retrying in the background while every callback gets
//! the default. The probe is a request to a subject nobody subscribes to (a fresh token under
//! `{prefix}._probe`, a subject the gateway may publish on wherever it may publish callbacks):
//! a server with headers support answers it at once with "no responders" (503), which proves
//! the login, the publish and the reply path in one round trip. A reply from a subscriber of
//! a wildcard is as good. Silence until the bound is a failure.
//!
//! Used before a new gateway takes the listening socket from a running one (a gateway that
//! cannot reach its workers must not replace one that can), and by `check-config --connect`.

use std::{fmt, io, time::Duration};

use async_nats::{Client, ConnectErrorKind, ConnectOptions, RequestErrorKind};
use bytes::Bytes;
use tokio::time::Instant;

use super::options;
use crate::settings::nats::{redact_urls, NatsSettings};

/// How long a probe's connect attempt may take, and then its round trip.
pub const PROBE_BOUND: Duration = Duration::from_secs(2);

/// Why NATS cannot carry a callback, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The server refused the credentials (or the gateway could not sign its nonce).
    AuthFailed(String),
    /// Nothing listens at the server's address.
    ConnectionRefused,
    /// No answer within the bound: to the connection attempt, or to the request.
    TimedOut(&'static str),
    /// The TLS handshake failed.
    Tls(String),
    /// Anything else the client reported.
    Other(String),
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AuthFailed(detail) => write!(f, "authentication failed ({detail})"),
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::TimedOut(what) => write!(f, "timed out ({what})"),
            Self::Tls(detail) => write!(f, "tls failed ({detail})"),
            Self::Other(detail) => f.write_str(detail),
        }
    }
}

/// One server's probe: its URL without credentials, and the round trip or why not.
#[derive(Debug, Clone)]
pub struct ServerProbe {
    /// The URL, credentials removed.
    pub server: String,
    /// The request's round trip, or the cause.
    pub result: Result<Duration, NotReady>,
}

impl fmt::Display for ServerProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(round_trip) => write!(
                f,
                "{}: logged in, request answered in {:.1} ms",
                self.server,
                round_trip.as_secs_f64() * 1000.0
            ),
            Err(cause) => write!(f, "{}: {cause}", self.server),
        }
    }
}

/// The probe's subject: nobody subscribes to a fresh token.
fn probe_subject(client: &Client, prefix: &str) -> String {
    let inbox = client.new_inbox();
    let token = inbox.rsplit('.').next().unwrap_or("probe");
    format!("{prefix}._probe.{token}")
}

/// One request on `client`'s connection, answered (by "no responders" or a reply) within
/// [`PROBE_BOUND`]: its round trip.
pub(super) async fn round_trip(client: &Client, prefix: &str) -> Result<Duration, NotReady> {
    let subject = probe_subject(client, prefix);
    let started = Instant::now();
    match tokio::time::timeout(PROBE_BOUND, client.request(subject, Bytes::new())).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(error)) if error.kind() == RequestErrorKind::NoResponders => Ok(started.elapsed()),
        Ok(Err(error)) if error.kind() == RequestErrorKind::TimedOut => {
            Err(NotReady::TimedOut("no answer to a request"))
        }
        Ok(Err(error)) => Err(NotReady::Other(format!("request failed: {error}"))),
        Err(_) => Err(NotReady::TimedOut("no answer to a request")),
    }
}

fn cause(error: &async_nats::ConnectError) -> NotReady {
    match error.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            NotReady::AuthFailed(error.to_string())
        }
        ConnectErrorKind::TimedOut => NotReady::TimedOut("no connection"),
        ConnectErrorKind::Tls => NotReady::Tls(error.to_string()),
        ConnectErrorKind::Io => {
            let refused = std::error::Error::source(error)
                .and_then(|source| source.downcast_ref::<io::Error>())
                .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused)
                || error.to_string().contains("Connection refused");
            if refused {
                NotReady::ConnectionRefused
            } else {
                NotReady::Other(error.to_string())
            }
        }
        _ => NotReady::Other(error.to_string()),
    }
}

/// Each server of `settings` on its own: one connect attempt with the gateway's credentials
/// and TLS, then one request. Nothing is retried: the answer is about now.
pub async fn probe_servers(settings: &NatsSettings, prefix: &str) -> Vec<ServerProbe> {
    let mut probes = Vec::with_capacity(settings.servers.len());
    for server in &settings.servers {
        let shown = redact_urls(server.as_url_str());
        let result = probe_server(settings, server.clone(), prefix).await;
        probes.push(ServerProbe {
            server: shown,
            result,
        });
    }
    probes
}

async fn probe_server(
    settings: &NatsSettings,
    server: async_nats::ServerAddr,
    prefix: &str,
) -> Result<Duration, NotReady> {
    let options = options::with_settings(settings, ConnectOptions::new())
        .map_err(|error| NotReady::Other(format!("cannot use the nats credentials: {error}")))?
        .name("openim-gateway probe")
        .connection_timeout(PROBE_BOUND)
        // One attempt at once, no retry in the background once the probe is done.
        .reconnect_delay_callback(|_| Duration::ZERO)
        .max_reconnects(1);
    let connecting = options.connect(server);
    let client = match tokio::time::timeout(PROBE_BOUND + PROBE_BOUND, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(error)) => return Err(cause(&error)),
        Err(_) => return Err(NotReady::TimedOut("no connection")),
    };
    let result = round_trip(&client, prefix).await;
    drop(client);
    result
}

/// The servers' causes on one line: `url: cause; url: cause`.
pub fn causes_line(probes: &[ServerProbe]) -> String {
    probes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
