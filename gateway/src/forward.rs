//! The only module that talks to NATS: the connection, subjects, headers, publishing, reply
//! routing and the deadline. Nothing outside it sees an async-nats type.
//!
//! Replies are routed by the gateway itself: one wildcard subscription on a private inbox,
//! and a map from request number to the waiting callback. A callback that gives up (its
//! deadline passed, or OpenIM hung up) removes its entry on drop, so timeouts, the gateway's
//! normal failure mode, leave nothing behind (async-nats' own `request` keeps an entry per
//! timed-out request for the life of the client, nats-io/nats.rs#1617).
//!
//! Every call is bounded by the caller's deadline as a whole: async-nats starts its own
//! request timeout only once the request has left its command channel, which is not read
//! while reconnecting. And a request is not even attempted while the connection is down.
//!
//! This module does not judge replies: it hands back the payload and whether the worker
//! flagged an error, and the callback path decides what that means for OpenIM.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, SystemTime},
};

use async_nats::{
    connection::State, header::HeaderName, jetstream, Client, ClientError, ConnectOptions, Event,
    HeaderMap, Message, StatusCode, Subject,
};
use bytes::Bytes;
use futures::StreamExt;
use openim_gateway_proto::{catalog, headers, subject, CallbackKind, Command};
use thiserror::Error;
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

use crate::{
    conditions::REPORT_INTERVAL,
    deadline::Deadline,
    metrics::Metrics,
    settings::nats::{redact_urls, NatsSettings},
};

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

/// The worker protocol's header names, built once: a name given as a `&str` is validated and
/// copied on every insert.
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(headers::REQUEST_ID);
const CALLBACK_COMMAND_HEADER: HeaderName = HeaderName::from_static(headers::CALLBACK_COMMAND);
const OPERATION_ID_HEADER: HeaderName = HeaderName::from_static(headers::OPERATION_ID);
const DEADLINE_UNIX_MS_HEADER: HeaderName = HeaderName::from_static(headers::DEADLINE_UNIX_MS);
const TIMEOUT_MS_HEADER: HeaderName = HeaderName::from_static(headers::TIMEOUT_MS);

/// Why the NATS client could not be set up (the settings were already valid).
#[derive(Debug, Error)]
pub enum SetupError {
    /// The client could not be created.
    #[error("cannot set up the nats client for {servers}: {source}")]
    Connect {
        /// The servers, without credentials.
        servers: String,
        /// async-nats' reason.
        source: async_nats::ConnectError,
    },
    /// The credentials could not be handed to the client.
    #[error("cannot use the nats credentials: {0}")]
    Credentials(#[from] std::io::Error),
    /// The subscription that routes replies could not be made.
    #[error("cannot subscribe to the reply inbox: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The after-callback stream could not be found or created.
    #[error("GATEWAY_AFTER_STREAM={name:?}: cannot find or create the jetstream stream: {reason} (a new stream reserves GATEWAY_AFTER_STREAM_MAX_BYTES={max_bytes} in the server's jetstream store)")]
    AfterStream {
        /// The stream's name.
        name: String,
        /// The size the gateway asked for when creating it.
        max_bytes: u64,
        /// What the server said.
        reason: String,
    },
}

/// What the forwarder needs to know about a callback besides its body.
#[derive(Debug, Clone, Copy)]
pub struct CallbackMeta<'a> {
    /// The catalog command (its subject is `{prefix}.{name}`).
    pub command: &'static Command,
    /// `X-Request-Id`: the same id OpenIM gets on the answer.
    pub request_id: uuid::Uuid,
    /// `X-Operation-Id`, when OpenIM sent one.
    pub operation_id: Option<&'a str>,
    /// When the gateway stops waiting.
    pub deadline: Deadline,
}

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

type Pending = Mutex<HashMap<u64, oneshot::Sender<Message>>>;

/// Sends callbacks to the workers and routes their replies back.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client,
    /// `{GATEWAY_SUBJECT_PREFIX}.{command}` for every catalog command, built once.
    subjects: Arc<HashMap<&'static str, Subject>>,
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

/// The JetStream stream after-callbacks are stored in.
#[derive(Debug, Clone)]
struct AfterStream {
    context: jetstream::Context,
    /// `GATEWAY_AFTER_STREAM`.
    name: Arc<str>,
}

/// Removes a pending entry when its callback stops waiting, whatever the reason.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
    // The map stays consistent across a panic (single insert/remove calls), so a poisoned
    // lock is still usable.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
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
        let options = settings
            .apply(ConnectOptions::new())?
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

/// How long the after-callback stream keeps a message when the stream is created by the
/// gateway: a week, so that a worker down over a weekend still finds what it missed.
pub const AFTER_STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The stream the gateway creates for `GATEWAY_AFTER_STREAM`: the subjects of the
/// after-callbacks only (a stream on a before-callback's subject would answer the request
/// itself with its storage acknowledgement), on disk, one replica, messages kept for
/// [`AFTER_STREAM_MAX_AGE`] and at most `max_bytes` of them. At either limit the oldest are
/// dropped to make room (`DiscardPolicy::Old`): that policy applies to the stream's own
/// limits only, so without `max_bytes` a full JetStream store would refuse new
/// after-callbacks instead.
fn after_stream_config(
    name: &str,
    max_bytes: u64,
    subjects: &HashMap<&'static str, Subject>,
) -> jetstream::stream::Config {
    let mut after_subjects: Vec<String> = catalog::COMMANDS
        .iter()
        .filter(|command| command.kind == CallbackKind::After)
        .filter_map(|command| subjects.get(command.name))
        .map(ToString::to_string)
        .collect();
    after_subjects.sort();
    jetstream::stream::Config {
        name: name.to_owned(),
        subjects: after_subjects,
        retention: jetstream::stream::RetentionPolicy::Limits,
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        max_age: AFTER_STREAM_MAX_AGE,
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        num_replicas: 1,
        ..Default::default()
    }
}

async fn ensure_stream(
    context: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<(), SetupError> {
    let name = config.name.clone();
    let max_bytes = u64::try_from(config.max_bytes).unwrap_or(0);
    let stream = context
        .get_or_create_stream(config)
        .await
        .map_err(|error| SetupError::AfterStream {
            name: name.clone(),
            max_bytes,
            reason: error.to_string(),
        })?;
    let used = &stream.cached_info().config;
    tracing::info!(
        stream = %name,
        subjects = used.subjects.len(),
        max_bytes = used.max_bytes,
        max_age_s = used.max_age.as_secs(),
        replicas = used.num_replicas,
        "after-callbacks are stored in a jetstream stream"
    );
    if used.max_bytes <= 0 && used.discard == jetstream::stream::DiscardPolicy::Old {
        tracing::warn!(
            stream = %name,
            "the after-callback stream has no max_bytes: when the server's jetstream storage is full, new after-callbacks are refused (acknowledged to OpenIM, not stored) instead of the oldest being dropped; set one with `nats stream edit {name} --max-bytes <size>`"
        );
    }
    Ok(())
}

impl AfterStream {
    /// Whether a consumer of the stream takes `subject` (a consumer without a filter takes
    /// every subject of the stream).
    async fn has_consumer_for(&self, subject: &str) -> Result<bool, String> {
        let stream = self
            .context
            .get_stream_no_info(&*self.name)
            .await
            .map_err(|error| error.to_string())?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|error| error.to_string())?;
            if consumer_takes(&info.config, subject) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether a consumer configured with `config` receives messages on `subject`.
fn consumer_takes(config: &jetstream::consumer::Config, subject: &str) -> bool {
    let filters: Vec<&str> = std::iter::once(config.filter_subject.as_str())
        .chain(config.filter_subjects.iter().map(String::as_str))
        .filter(|filter| !filter.is_empty())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|filter| subject_matches(filter, subject))
}

/// Whether the NATS subject filter `filter` (`*` one token, `>` one or more at the end)
/// matches the subject `subject`.
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in filter.split('.') {
        if wanted == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(token) if wanted == "*" || wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// The headers of the worker protocol for `meta`, stated at `now` (`wall_now` on the wall
/// clock): the time left is what the worker really has when the request leaves.
fn protocol_headers(meta: &CallbackMeta<'_>, now: Instant, wall_now: SystemTime) -> HeaderMap {
    let left = meta.deadline.left(now);
    let deadline_unix_ms = meta.deadline.unix_ms(now, wall_now);
    // Collected from an iterator whose length is known, so the map is sized once.
    [
        (REQUEST_ID_HEADER, meta.request_id.to_string().into()),
        (CALLBACK_COMMAND_HEADER, meta.command.name.into()),
        (DEADLINE_UNIX_MS_HEADER, deadline_unix_ms.to_string().into()),
        (TIMEOUT_MS_HEADER, left.as_millis().to_string().into()),
    ]
    .into_iter()
    .chain(meta.operation_id.map(|id| (OPERATION_ID_HEADER, id.into())))
    .collect()
}

/// The NATS service API's error header, when the worker set it.
fn service_error(message: &Message) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|map| map.get(headers::NATS_SERVICE_ERROR))
        .map(|value| value.as_str().to_owned())
}

/// Keeps the connection metrics and the disconnect signal in step with the client's events.
#[derive(Debug)]
struct ConnectionEvents {
    /// The servers, without credentials: async-nats' events do not say which server failed
    /// or what the gateway connects to, and "nats: IO error" alone helps nobody.
    servers: String,
    metrics: Arc<Metrics>,
    /// Whether a connection was ever made: the next one is a reconnection.
    connected_once: AtomicBool,
    /// Wakes the callbacks waiting for a reply.
    disconnected: Arc<Notify>,
}

impl ConnectionEvents {
    fn handle(&self, event: Event) {
        match event {
            Event::Connected => {
                let reconnected = self.connected_once.swap(true, Ordering::Relaxed);
                self.metrics.nats_connected(reconnected);
                tracing::info!(servers = %self.servers, "connected to nats");
            }
            Event::Disconnected => {
                self.metrics.nats_disconnected();
                self.disconnected.notify_waiters();
                tracing::warn!(
                    servers = %self.servers,
                    "disconnected from nats: callbacks get the default decision until it is back"
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
struct FailureCauses {
    /// When each (server, cause) was last logged.
    logged: Mutex<HashMap<(String, String), Instant>>,
}

impl FailureCauses {
    fn report(&self, pool: &[async_nats::Server]) {
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

/// Hands each reply to the callback waiting for it; replies nobody waits for any more are
/// dropped.
async fn route_replies(mut subscriber: async_nats::Subscriber, pending: Arc<Pending>) {
    while let Some(message) = subscriber.next().await {
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|token| token.parse::<u64>().ok());
        let Some(id) = id else { continue };
        let waiting = lock(&pending).remove(&id);
        if let Some(sender) = waiting {
            // The receiver may have given up in the meantime: nothing to do then.
            let _ = sender.send(message);
        }
    }
    // The subscription ended: wake every waiting callback (they answer `Unavailable`).
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn headers_state_the_callback_and_its_deadline() {
        let command = Command::lookup(catalog::BEFORE_SET_GROUP_MEMBER_INFO).unwrap();
        let arrival = Instant::now();
        let meta = CallbackMeta {
            command,
            request_id: uuid::Uuid::nil(),
            operation_id: Some("op-1"),
            deadline: Deadline::starting(arrival, Duration::from_millis(4740)),
        };
        let wall = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let map = protocol_headers(&meta, arrival + Duration::from_millis(40), wall);
        let get = |name: &str| map.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(
            get(headers::REQUEST_ID).as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        assert_eq!(
            get(headers::CALLBACK_COMMAND).as_deref(),
            Some(command.name)
        );
        assert_eq!(get(headers::OPERATION_ID).as_deref(), Some("op-1"));
        assert_eq!(get(headers::TIMEOUT_MS).as_deref(), Some("4700"));
        assert_eq!(
            get(headers::DEADLINE_UNIX_MS).as_deref(),
            Some("1700000004700")
        );
        let without = CallbackMeta {
            operation_id: None,
            ..meta
        };
        assert!(protocol_headers(&without, arrival, wall)
            .get(headers::OPERATION_ID)
            .is_none());
    }

    fn subjects() -> HashMap<&'static str, Subject> {
        catalog::COMMANDS
            .iter()
            .map(|command| {
                let name = subject::for_command("openim.callback", command.name);
                (command.name, Subject::from(name))
            })
            .collect()
    }

    #[test]
    fn the_after_stream_keeps_after_callbacks_on_disk_within_its_own_limits() {
        let config = after_stream_config("AFTER", 5 << 20, &subjects());
        assert_eq!(config.name, "AFTER");
        let after = catalog::COMMANDS
            .iter()
            .filter(|command| command.kind == CallbackKind::After)
            .count();
        assert_eq!(config.subjects.len(), after);
        for subject in &config.subjects {
            let name = subject.strip_prefix("openim.callback.").unwrap();
            let command = Command::lookup(name).unwrap();
            assert_eq!(command.kind, CallbackKind::After, "{subject}");
        }
        assert_eq!(config.retention, jetstream::stream::RetentionPolicy::Limits);
        assert_eq!(config.storage, jetstream::stream::StorageType::File);
        assert_eq!(config.discard, jetstream::stream::DiscardPolicy::Old);
        assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.max_bytes, 5 << 20);
        assert_eq!(config.num_replicas, 1);
        // Past what JetStream can take, the largest it can.
        assert_eq!(
            after_stream_config("AFTER", u64::MAX, &subjects()).max_bytes,
            i64::MAX
        );
    }

    #[test]
    fn subject_filters_match_as_nats_does() {
        let subject = "openim.callback.callbackAfterSendSingleMsgCommand";
        for filter in [
            subject,
            "openim.callback.*",
            "openim.>",
            ">",
            "*.callback.callbackAfterSendSingleMsgCommand",
        ] {
            assert!(subject_matches(filter, subject), "{filter}");
        }
        for filter in [
            "openim.callback",
            "openim.*",
            "openim.callback.callbackAfterSendGroupMsgCommand",
            "openim.callback.callbackAfterSendSingleMsgCommand.x",
            "openim.callback.*.>",
            "other.>",
        ] {
            assert!(!subject_matches(filter, subject), "{filter}");
        }
    }

    #[test]
    fn a_consumer_takes_its_filters_or_everything_without_one() {
        let subject = "openim.callback.callbackAfterSendSingleMsgCommand";
        let unfiltered = jetstream::consumer::Config::default();
        assert!(consumer_takes(&unfiltered, subject));
        let one = jetstream::consumer::Config {
            filter_subject: "openim.callback.callbackAfterSendGroupMsgCommand".to_owned(),
            ..Default::default()
        };
        assert!(!consumer_takes(&one, subject));
        let several = jetstream::consumer::Config {
            filter_subjects: vec![
                "openim.callback.callbackAfterSendGroupMsgCommand".to_owned(),
                "openim.callback.callbackAfterSend*".to_owned(),
                subject.to_owned(),
            ],
            ..Default::default()
        };
        assert!(consumer_takes(&several, subject));
    }
}
