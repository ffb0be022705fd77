//! The only module that talks to NATS: connection, publishing, reply routing, the deadline.
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

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use async_nats::{
    connection::State, Client, ConnectOptions, Event, HeaderMap, Message, StatusCode, Subject,
};
use bytes::Bytes;
use futures::StreamExt;
use tokio::{
    sync::{oneshot, Notify},
    time::Instant,
};

use crate::metrics::Metrics;

/// How often the client pings the server. async-nats' default of 60 s lets a half-open
/// connection look connected for minutes; two missed pings at this interval mark it down.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// The longest pause between reconnect attempts, so a restarted NATS is used within a second.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// How long a connect attempt may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// What came of asking the workers.
#[derive(Debug)]
pub enum Outcome {
    /// A worker replied (not yet validated).
    Reply {
        /// The reply message.
        message: Message,
        /// From publish to reply.
        waited: Duration,
    },
    /// The deadline passed first.
    Timeout,
    /// Nobody subscribes to the subject.
    NoResponders,
    /// Not connected, or the request could not be handed to the client.
    Unavailable,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Message>>>;

/// Sends callbacks to the workers and routes their replies back.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client,
    /// `{inbox}.` : a reply subject is this prefix plus the request number.
    reply_prefix: Arc<str>,
    /// Callbacks waiting for a reply, by request number.
    pending: Arc<Pending>,
    /// The next request number.
    next_id: Arc<AtomicU64>,
    /// Wakes every waiting callback when the connection drops: a reply published during the
    /// outage is lost, so waiting for it only makes OpenIM wait.
    disconnected: Arc<Notify>,
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
        servers: Vec<async_nats::ServerAddr>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, async_nats::ConnectError> {
        let event_metrics = Arc::clone(&metrics);
        let connected_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let disconnected = Arc::new(Notify::new());
        let event_disconnected = Arc::clone(&disconnected);
        let options = ConnectOptions::new()
            .name("openim-gateway")
            .ping_interval(PING_INTERVAL)
            .connection_timeout(CONNECTION_TIMEOUT)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                (Duration::from_millis(50) * attempts).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let metrics = Arc::clone(&event_metrics);
                let connected_once = Arc::clone(&connected_once);
                let disconnected = Arc::clone(&event_disconnected);
                async move {
                    match event {
                        Event::Connected => {
                            metrics.nats_connected.set(1);
                            if connected_once.swap(true, Ordering::Relaxed) {
                                metrics.nats_reconnects.inc();
                            }
                            tracing::info!("connected to nats");
                        }
                        Event::Disconnected => {
                            metrics.nats_connected.set(0);
                            disconnected.notify_waiters();
                            tracing::warn!("disconnected from nats: callbacks get the default decision until it is back");
                        }
                        Event::Closed => {
                            metrics.nats_connected.set(0);
                            tracing::info!("nats connection closed");
                        }
                        other => tracing::warn!(event = %other, "nats event"),
                    }
                }
            });
        let client = options.connect(servers).await?;
        let inbox = client.new_inbox();
        let subscriber = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|error| {
                async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, error)
            })?;
        let pending: Arc<Pending> = Arc::default();
        tokio::spawn(route_replies(subscriber, Arc::clone(&pending)));
        Ok(Self {
            client,
            reply_prefix: format!("{inbox}.").into(),
            pending,
            next_id: Arc::default(),
            disconnected,
        })
    }

    /// Whether the connection to NATS is up right now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// How many callbacks wait for a reply right now (the reply map's size).
    pub fn pending_len(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Publishes a before-callback and waits for one reply, never past `deadline`.
    pub async fn ask(
        &self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
        deadline: Instant,
    ) -> Outcome {
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
        let published_at = Instant::now();
        let exchange = async {
            if let Err(error) = self
                .client
                .publish_with_reply_and_headers(subject, reply_subject, headers, payload)
                .await
            {
                tracing::warn!(%error, "could not publish a callback to nats");
                return Outcome::Unavailable;
            }
            let reply = tokio::select! {
                reply = receiver => reply,
                () = disconnected => return Outcome::Unavailable,
            };
            match reply {
                Ok(message) if message.status == Some(StatusCode::NO_RESPONDERS) => {
                    Outcome::NoResponders
                }
                Ok(message) => Outcome::Reply {
                    message,
                    waited: published_at.elapsed(),
                },
                // The router dropped the sender: the subscription ended (client closed).
                Err(_) => Outcome::Unavailable,
            }
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .unwrap_or(Outcome::Timeout)
    }

    /// Publishes an after-callback without waiting for anyone, never past `deadline`.
    pub async fn notify(
        &self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
        deadline: Instant,
    ) -> bool {
        if !self.is_connected() {
            return false;
        }
        matches!(
            tokio::time::timeout_at(
                deadline,
                self.client.publish_with_headers(subject, headers, payload)
            )
            .await,
            Ok(Ok(()))
        )
    }

    /// Sends what is buffered and closes the connection (graceful shutdown).
    pub async fn close(&self) {
        if let Err(error) = self.client.drain().await {
            tracing::debug!(%error, "nats drain on shutdown");
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
