//! The forwarder: one connection to NATS, a subject per command, requests with a deadline
//! and their replies, after-callbacks published or stored.

use std::{
    collections::HashMap,
    fmt,
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, SystemTime},
};

use async_nats::{
    connection::State, header::HeaderName, jetstream, Client, ConnectOptions, HeaderMap,
    StatusCode, Subject,
};
use bytes::Bytes;
use openim_gateway_proto::{catalog, headers, subject, CallbackKind, Command};
use tokio::time::Instant;

use super::{
    after_stream::{after_stream_config, ensure_stream, AfterStream},
    error::SetupError,
    events::{ConnectionEvents, FailureCauses},
    headers::{
        protocol_headers, service_error, CallbackMeta, CALLBACK_COMMAND_HEADER,
        DEADLINE_UNIX_MS_HEADER, TIMEOUT_MS_HEADER,
    },
    health::Health,
    hedge::HedgeBudget,
    options,
    probe::NotReady,
    replies::{route_replies, Inbox, Pending},
    servers::ServerChoice,
    watchdog::Watchdog,
};
use crate::{metrics::Metrics, settings::nats::NatsSettings};

/// How often the client pings the server. async-nats' default of 60 s lets a half-open
/// connection look connected for minutes; two missed pings at this interval mark it down.
/// The watchdog (`watchdog.rs`) notices a stalled connection long before that; the pings
/// remain for what it cannot see.
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
    /// The reply subjects and who waits on each.
    inbox: Arc<Inbox>,
    /// Whether the connection is known good; wakes every waiting callback when it is lost
    /// (dropped, or stalled): a reply published on a lost connection never comes, so the
    /// callback is asked again on the next one, or answered at once.
    pub(super) health: Arc<Health>,
    /// `GATEWAY_HEDGE_AFTER_PERCENT`: the share of the budget after which a callback without
    /// a reply is asked once more; `None`: never.
    hedge_after_percent: Option<u32>,
    /// How many hedges may still be sent.
    hedges: Arc<HedgeBudget>,
    metrics: Arc<Metrics>,
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
        let health = Arc::new(Health::default());
        let choice = Arc::new(ServerChoice::default());
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
            // Called before each connection attempt with what each server's last attempt
            // failed on (async-nats' own events only say "IO error"); the gateway picks the
            // server, so that one that stalled is not tried first.
            .reconnect_to_server_callback({
                let causes = Arc::new(FailureCauses::default());
                let choice = Arc::clone(&choice);
                move |pool, _info| {
                    causes.report(&pool);
                    std::future::ready(choice.choose(&pool))
                }
            })
            .event_callback({
                let events = Arc::new(ConnectionEvents {
                    servers: servers.clone(),
                    metrics: Arc::clone(&metrics),
                    connected_once: AtomicBool::new(false),
                    health: Arc::clone(&health),
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
        let inbox = Arc::new(Inbox::new(&inbox, pending));
        tokio::spawn(
            Watchdog {
                client: client.clone(),
                inbox: Arc::clone(&inbox),
                health: Arc::clone(&health),
                servers: choice,
                metrics: Arc::clone(&metrics),
            }
            .run(),
        );
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
            inbox,
            health,
            hedge_after_percent: None,
            hedges: Arc::default(),
            metrics,
            after_stream: None,
        })
    }

    /// Whether the connection to NATS is up right now, and not stalled.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected && !self.health.is_stalled()
    }

    /// Asks a callback again when no reply has come by `percent` of its budget (see
    /// [`Self::ask`]); 0 (or 100 and above): never.
    #[must_use]
    pub fn with_hedging(mut self, percent: u32) -> Self {
        self.hedge_after_percent = Some(percent).filter(|percent| (1..100).contains(percent));
        self
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

    /// One request round trip on this connection, answered within the probe's bound (see
    /// [`super::probe`]): proves the login, the publish and the reply path, as a callback
    /// needs them.
    pub async fn request_round_trip(&self, subject_prefix: &str) -> Result<Duration, NotReady> {
        if !self.is_connected() {
            return Err(NotReady::Other("not connected".to_owned()));
        }
        super::probe::round_trip(&self.client, subject_prefix).await
    }

    /// The largest message the NATS server accepts (its `max_payload`, 1 MiB until the
    /// server has said otherwise), headers included.
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// How many callbacks wait for a reply right now (the reply map's size).
    pub fn pending_len(&self) -> usize {
        self.inbox.len()
    }

    /// Publishes a before-callback and waits for one reply, never past its deadline.
    ///
    /// When the connection is lost meanwhile (dropped, or stalled as the watchdog sees it),
    /// the callback is asked again on the next connection, if one is good within
    /// [`super::health::REASK_WAIT`]; with hedging, it is asked once more when no reply has
    /// come by the configured share of the budget (while the hedge budget lasts: see
    /// `hedge.rs`). Every ask carries the same
    /// `X-Request-Id` and reply subject: the first reply wins, a later one is dropped.
    pub async fn ask(&self, meta: &CallbackMeta<'_>, payload: Bytes) -> Outcome {
        tokio::time::timeout_at(meta.deadline.at, self.exchange(meta, payload))
            .await
            .unwrap_or(Outcome::Timeout)
    }

    /// [`Self::ask`] without its deadline.
    async fn exchange(&self, meta: &CallbackMeta<'_>, payload: Bytes) -> Outcome {
        let mut waiting = self.inbox.open();
        let subject = self.subject(meta.command);
        let mut hedge_at = self.hedge_after_percent.map(|percent| {
            let budget = meta
                .deadline
                .at
                .saturating_duration_since(meta.deadline.arrival);
            meta.deadline.arrival + budget * percent / 100
        });
        let mut asked = false;
        loop {
            // Registered before the state check, so a loss right after it still wakes this
            // call.
            let lost = self.health.lost();
            if !self.is_connected() {
                if self.wait_until_good().await {
                    continue;
                }
                return Outcome::Unavailable;
            }
            if asked {
                self.metrics.reasked(meta.command);
            } else {
                self.hedges.earn();
            }
            let published_at = Instant::now();
            if let Err(error) = self
                .publish(meta, &subject, &waiting.subject, payload.clone())
                .await
            {
                return Outcome::NotPublished(error.to_string());
            }
            asked = true;
            tokio::pin!(lost);
            let reply = loop {
                let at = hedge_at;
                let hedge = async move {
                    match at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    reply = &mut waiting.receiver => break Some(reply),
                    () = &mut lost => break None,
                    () = hedge => {
                        hedge_at = None;
                        if self.is_connected()
                            && self.hedges.spend()
                            && self
                                .publish(meta, &subject, &waiting.subject, payload.clone())
                                .await
                                .is_ok()
                        {
                            self.metrics.hedged(meta.command);
                        }
                    }
                }
            };
            let Some(reply) = reply else {
                // The connection was lost: ask again on the next one. A hedge not sent yet
                // is not needed any more once the time for it has passed.
                if hedge_at.is_some_and(|at| at <= Instant::now()) {
                    hedge_at = None;
                }
                continue;
            };
            return match reply {
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
            };
        }
    }

    /// One ask: the callback's body with the protocol's headers, the time left stated now.
    async fn publish(
        &self,
        meta: &CallbackMeta<'_>,
        subject: &Subject,
        reply_subject: &str,
        payload: Bytes,
    ) -> Result<(), async_nats::PublishError> {
        let headers = protocol_headers(meta, Instant::now(), SystemTime::now());
        self.client
            .publish_with_reply_and_headers(
                subject.clone(),
                Subject::from(reply_subject),
                headers,
                payload,
            )
            .await
    }

    /// Waits for a connection known good while one is worth waiting for: until
    /// [`super::health::REASK_WAIT`] after the last one was lost. Returns whether there
    /// is one.
    async fn wait_until_good(&self) -> bool {
        let Some(until) = self.health.wait_until() else {
            return false;
        };
        loop {
            let good = self.health.good_again();
            if self.is_connected() {
                return true;
            }
            if tokio::time::timeout_at(until, good).await.is_err() {
                return self.is_connected();
            }
        }
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
