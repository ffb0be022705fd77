//! The forwarder: one connection to NATS, a subject per command, requests with a deadline
//! and their replies, after-callbacks published or stored.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use async_nats::{
    connection::State, header::HeaderName, jetstream, Client, ConnectOptions, HeaderMap,
    StatusCode, Subject,
};
use bytes::Bytes;
use openim_gateway_proto::{catalog, headers, subject, CallbackKind, Command};
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

use super::{
    after_stream::{after_stream_config, ensure_stream, AfterStream},
    error::SetupError,
    events::{ConnectionEvents, FailureCauses},
    headers::{
        protocol_headers, service_error, CallbackMeta, CALLBACK_COMMAND_HEADER,
        DEADLINE_UNIX_MS_HEADER, TIMEOUT_MS_HEADER,
    },
    options,
    replies::{lock, route_replies, Pending, PendingGuard},
};
use crate::{metrics::Metrics, settings::nats::NatsSettings};

/// How often the client pings the server. async-nats' default of 60 s lets a half-open
/// connection look connected for minutes; two missed pings at this interval mark it down.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// The longest pause between reconnect attempts, so a restarted NATS is used within a second.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a start-up probe waits: "no responders" comes back at once, so anything slower
/// means a worker listens (and, following the protocol, does not answer a probe).
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// How long a connect attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the start-up check of the after-callback stream's consumers may take.
const STREAM_CHECK_WAIT: Duration = Duration::from_secs(2);

/// A worker's reply, not yet judged.
#[derive(Debug)]
pub struct Reply {
    /// The reply's body, as the worker sent it.
    pub payload: Bytes,
    /// The worker's `Nats-Service-Error` header: it says it failed.
    pub service_error: Option<String>,
    /// From publish to reply.
    pub waited: Duration,
}

/// What came of asking the workers.
#[derive(Debug)]
pub enum Outcome {
    /// A worker replied.
    Reply(Reply),
    /// The deadline passed first.
    Timeout,
    /// Nobody subscribes to the subject.
    NoResponders,
    /// Not connected.
    Unavailable,
    /// The client refused the request, for this reason.
    NotPublished(String),
}

/// Why an after-callback did not reach the workers (OpenIM is acknowledged all the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotDelivered {
    /// Not connected, or the connection did not take the message in time.
    Unavailable,
    /// NATS is connected, but the after-callback stream did not store the message: no
    /// such stream, storage full, no acknowledgement within the budget...
    NotStored {
        /// `GATEWAY_AFTER_STREAM`.
        stream: Arc<str>,
        /// What JetStream said.
        reason: String,
    },
}

impl fmt::Display for NotDelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable => f.write_str("nats unavailable"),
            Self::NotStored { stream, reason } => write!(f, "stream {stream}: {reason}"),
        }
    }
}

/// Sends callbacks to the workers and routes their replies back.
#[derive(Debug, Clone)]
pub struct Forwarder {
    pub(super) client: Client,
    /// `{GATEWAY_SUBJECT_PREFIX}.{command}` for every catalog command, built once.
    pub(super) subjects: Arc<HashMap<&'static str, Subject>>,
    /// `{inbox}.` : a reply subject is this prefix plus the request number.
    reply_prefix: Arc<str>,
    /// Callbacks waiting for a reply, by request number.
    pending: Arc<Pending>,
    /// The next request number.
    next_id: Arc<AtomicU64>,
    /// Wakes every waiting callback when the connection drops: a reply published during the
    /// outage is lost, so waiting for it only makes OpenIM wait.
    disconnected: Arc<Notify>,
    /// With `GATEWAY_AFTER_STREAM`: after-callbacks are stored in this JetStream stream, and
    /// acknowledged to OpenIM once stored.
    after_stream: Option<AfterStream>,
}

impl Forwarder {
    /// Starts connecting to NATS and returns at once: while NATS is unreachable the gateway
    /// still answers (with the default), and it connects as soon as NATS is there.
    pub async fn connect(
        settings: &NatsSettings,
        subject_prefix: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SetupError> {
        let disconnected = Arc::new(Notify::new());
        let servers = settings.servers_for_log();
        tracing::info!(%servers, tls = settings.tls_required(), "connecting to nats");
        let options = options::with_settings(settings, ConnectOptions::new())?
            .name("openim-gateway")
            .ping_interval(PING_INTERVAL)
            .connection_timeout(CONNECTION_TIMEOUT)
            .retry_on_initial_connect()
            .max_reconnects(None)
            // async-nats counts the first attempt as 1: no pause before it, so that a gateway
            // started beside a running NATS is connected before it opens its port.
            .reconnect_delay_callback(|attempts| {
                let failed = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
                (Duration::from_millis(50) * failed).min(MAX_RECONNECT_DELAY)
            })
            // Called before each round of connection attempts with what each server's last
            // attempt failed on; async-nats' own events only say "IO error".
            .reconnect_to_server_callback({
                let causes = Arc::new(FailureCauses::default());
                move |pool, _info| {
                    causes.report(&pool);
                    std::future::ready(None)
                }
            })
            .event_callback({
                let events = Arc::new(ConnectionEvents {
                    servers: servers.clone(),
                    metrics,
                    connected_once: AtomicBool::new(false),
                    disconnected: Arc::clone(&disconnected),
                });
                move |event| {
                    let events = Arc::clone(&events);
                    async move { events.handle(event) }
                }
            });
        let client = options
            .connect(settings.servers.clone())
            .await
            .map_err(|source| SetupError::Connect {
                servers: servers.clone(),
                source,
            })?;
        let inbox = client.new_inbox();
        let subscriber = client.subscribe(format!("{inbox}.*")).await?;
        let pending: Arc<Pending> = Arc::default();
        tokio::spawn(route_replies(subscriber, Arc::clone(&pending)));
        let subjects = catalog::COMMANDS
            .iter()
            .map(|command| {
                let name = subject::for_command(subject_prefix, command.name);
                (command.name, Subject::from(name))
            })
            .collect();
        Ok(Self {
            client,
            subjects: Arc::new(subjects),
            reply_prefix: format!("{inbox}.").into(),
            pending,
            next_id: Arc::default(),
            disconnected,
            after_stream: None,
        })
    }

    /// Whether the connection to NATS is up right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Waits until the connection is up, at most `bound`; returns whether it is.
    pub async fn wait_connected(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        while !self.is_connected() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }

    /// The largest message the NATS server accepts (its `max_payload`, 1 MiB until the
    /// server has said otherwise), headers included.
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// How many callbacks wait for a reply right now (the reply map's size).
    pub fn pending_len(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Publishes a before-callback and waits for one reply, never past its deadline.
    pub async fn ask(&self, meta: &CallbackMeta<'_>, payload: Bytes) -> Outcome {
        // Registered before the state check, so a drop right after it still wakes this call.
        let disconnected = self.disconnected.notified();
        if !self.is_connected() {
            return Outcome::Unavailable;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        lock(&self.pending).insert(id, sender);
        let _guard = PendingGuard {
            pending: &self.pending,
            id,
        };
        let reply_subject = format!("{}{id}", self.reply_prefix);
        let subject = self.subject(meta.command);
        let published_at = Instant::now();
        let headers = protocol_headers(meta, published_at, SystemTime::now());
        let exchange = async {
            if let Err(error) = self
                .client
                .publish_with_reply_and_headers(subject, reply_subject, headers, payload)
                .await
            {
                return Outcome::NotPublished(error.to_string());
            }
            let reply = tokio::select! {
                reply = receiver => reply,
                () = disconnected => return Outcome::Unavailable,
            };
            match reply {
                Ok(message) if message.status == Some(StatusCode::NO_RESPONDERS) => {
                    Outcome::NoResponders
                }
                Ok(message) => Outcome::Reply(Reply {
                    service_error: service_error(&message),
                    payload: message.payload,
                    waited: published_at.elapsed(),
                }),
                // The router dropped the sender: the subscription ended (client closed).
                Err(_) => Outcome::Unavailable,
            }
        };
        tokio::time::timeout_at(meta.deadline.at, exchange)
            .await
            .unwrap_or(Outcome::Timeout)
    }

    /// Whether any worker subscribes to `command`'s subject: `None` when it cannot be known
    /// (not connected). A probe message goes out (see [`headers::CALLBACK_PROBE`]); only the
    /// server's "no responders" counts, a reply or silence both mean someone listens.
    ///
    /// With an after-callback stream, an after-callback is never probed (the stream would
    /// store the probe and acknowledge it): it is served when a consumer of the stream takes
    /// its subject.
    pub async fn is_served(&self, command: &Command) -> Option<bool> {
        if !self.is_connected() {
            return None;
        }
        if let (CallbackKind::After, Some(stream)) = (command.kind, &self.after_stream) {
            let subject = self.subject(command);
            let checking = stream.has_consumer_for(&subject);
            return match tokio::time::timeout(STREAM_CHECK_WAIT, checking).await {
                Ok(Ok(served)) => Some(served),
                Ok(Err(error)) => {
                    tracing::warn!(stream = %stream.name, %error, "cannot list the consumers of the after-callback stream");
                    None
                }
                Err(_) => None,
            };
        }
        let probe: HeaderMap = [
            (HeaderName::from_static(headers::CALLBACK_PROBE), "1".into()),
            (CALLBACK_COMMAND_HEADER, command.name.into()),
            (DEADLINE_UNIX_MS_HEADER, "0".into()),
            (TIMEOUT_MS_HEADER, "0".into()),
        ]
        .into_iter()
        .collect();
        let asking = self
            .client
            .request_with_headers(self.subject(command), probe, Bytes::new());
        match tokio::time::timeout(PROBE_WAIT, asking).await {
            Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                Some(false)
            }
            Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::Other => None,
            _ => Some(true),
        }
    }

    /// Publishes an after-callback without waiting for anyone, never past its deadline: `Ok`
    /// once it is handed to the connection, or, with an after-callback stream, once
    /// JetStream stored it.
    pub async fn notify(
        &self,
        meta: &CallbackMeta<'_>,
        payload: Bytes,
    ) -> Result<(), NotDelivered> {
        if !self.is_connected() {
            return Err(NotDelivered::Unavailable);
        }
        let headers = protocol_headers(meta, Instant::now(), SystemTime::now());
        if let Some(stream) = &self.after_stream {
            let storing = async {
                stream
                    .context
                    .publish_with_headers(self.subject(meta.command), headers, payload)
                    .await?
                    .await
            };
            let reason = match tokio::time::timeout_at(meta.deadline.at, storing).await {
                Ok(Ok(_ack)) => return Ok(()),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "no storage acknowledgement from jetstream within the budget".to_owned(),
            };
            return Err(NotDelivered::NotStored {
                stream: Arc::clone(&stream.name),
                reason,
            });
        }
        let publishing =
            self.client
                .publish_with_headers(self.subject(meta.command), headers, payload);
        match tokio::time::timeout_at(meta.deadline.at, publishing).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(NotDelivered::Unavailable),
        }
    }

    /// Sends what is buffered and closes the connection (graceful shutdown).
    pub async fn close(&self) {
        if let Err(error) = self.client.drain().await {
            tracing::debug!(%error, "nats drain on shutdown");
        }
    }

    /// Stores after-callbacks in the JetStream stream `name` from now on, creating it when
    /// missing (see [`after_stream_config`], `max_bytes` its size); an existing stream is used
    /// as it is. When NATS is not reachable yet, the stream is created in the background once
    /// it is, and after-callbacks sent before then are acknowledged but not stored (and
    /// counted so).
    pub async fn with_after_stream(
        mut self,
        name: &str,
        max_bytes: u64,
    ) -> Result<Self, SetupError> {
        let context = jetstream::new(self.client.clone());
        let config = after_stream_config(name, max_bytes, &self.subjects);
        if self.is_connected() {
            ensure_stream(&context, config).await?;
        } else {
            let waiting = self.clone();
            let creating = context.clone();
            tokio::spawn(async move {
                while !waiting.wait_connected(Duration::from_secs(60)).await {}
                if let Err(error) = ensure_stream(&creating, config).await {
                    tracing::error!(%error, "after-callbacks will not be stored");
                }
            });
        }
        self.after_stream = Some(AfterStream {
            context,
            name: name.into(),
        });
        Ok(self)
    }

    fn subject(&self, command: &Command) -> Subject {
        self.subjects.get(command.name).cloned().unwrap_or_else(|| {
            // Every catalog command has an entry (built from the same table); a command
            // from elsewhere is a bug, answered by the panic layer's default.
            unreachable!("no subject for {}", command.name)
        })
    }
}
