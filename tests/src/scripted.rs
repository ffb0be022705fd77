//! In-process NATS subscribers scripted by a test: the behaviours the example worker cannot
//! show (a malformed reply, a sleep past the deadline, no reply at all) and a record of every
//! message, so tests can compare payloads byte for byte and read the headers the gateway set.
//!
//! A [`ScriptedWorker`] joins the `openim-workers` queue group like a real worker; an
//! [`ScriptedWorker::observer`] is a plain subscriber that sees every message on its subject
//! without answering (after-callbacks, "no NATS traffic" checks). Both are real async-nats
//! clients talking to the test's nats-server; both stop on drop.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use openim_gateway_proto::subject::QUEUE_GROUP;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// How long connecting and subscribing may take.
const SUBSCRIBE_BOUND: Duration = Duration::from_secs(10);

/// A reply a scripted worker sends.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// Reply headers, e.g. `Nats-Service-Error`.
    pub headers: Vec<(String, String)>,
    /// Reply payload, sent as is.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `body` and no headers.
    pub fn body(body: impl Into<Vec<u8>>) -> Self {
        Self {
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A reply with `headers` and `body`.
    pub fn with_headers(headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Self {
        Self {
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.into(),
        }
    }
}

/// A test's function from a request payload to the reply (`None`: never reply), for tables
/// of cases served by one worker.
#[derive(Clone)]
pub struct Responder(Arc<RespondFn>);

/// The function inside a [`Responder`].
type RespondFn = dyn Fn(&[u8]) -> Option<Reply> + Send + Sync;

impl Responder {
    /// Wraps `respond`.
    pub fn new(respond: impl Fn(&[u8]) -> Option<Reply> + Send + Sync + 'static) -> Self {
        Self(Arc::new(respond))
    }
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Responder(..)")
    }
}

/// What a scripted worker does with each request.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Replies at once.
    Reply(Reply),
    /// Sleeps, then replies (a worker slower than the budget).
    ReplyAfter(Duration, Reply),
    /// Receives and never replies (a hung member of the queue group).
    Hang,
    /// Replies whatever the test's function says for this payload.
    Respond(Responder),
}

impl Behaviour {
    /// Replies `body` at once without headers.
    pub fn reply(body: impl Into<Vec<u8>>) -> Self {
        Self::Reply(Reply::body(body))
    }

    /// Replies `body` after `delay`.
    pub fn reply_after(delay: Duration, body: impl Into<Vec<u8>>) -> Self {
        Self::ReplyAfter(delay, Reply::body(body))
    }

    /// Receives the first request and never replies to it (a worker that died holding it),
    /// then replies `body` at once to every later one.
    pub fn swallow_first(body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let seen = std::sync::atomic::AtomicBool::new(false);
        Self::respond(move |_| {
            seen.swap(true, std::sync::atomic::Ordering::Relaxed)
                .then(|| Reply::body(body.clone()))
        })
    }

    /// Replies as `respond` says.
    pub fn respond(respond: impl Fn(&[u8]) -> Option<Reply> + Send + Sync + 'static) -> Self {
        Self::Respond(Responder::new(respond))
    }
}

/// One message a scripted subscriber received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The subject it was published on.
    pub subject: String,
    /// Every header, in no particular order, names exactly as sent (NATS headers are
    /// case-sensitive on the wire).
    pub headers: Vec<(String, String)>,
    /// The payload bytes.
    pub payload: Bytes,
    /// The reply subject: `Some` for a request, `None` for a plain publish.
    pub reply: Option<String>,
    /// When it arrived, in Unix milliseconds (to compare with `X-Deadline-Unix-Ms`).
    pub received_unix_ms: u128,
}

impl Received {
    /// The header named exactly `name` (NATS header names are case-sensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Default)]
struct Record {
    messages: Mutex<Vec<Received>>,
    arrived: Notify,
}

impl Record {
    fn lock(&self) -> MutexGuard<'_, Vec<Received>> {
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A subscriber scripted by the test, stopped on drop.
#[derive(Debug)]
pub struct ScriptedWorker {
    subject: String,
    record: Arc<Record>,
    task: JoinHandle<()>,
    client: async_nats::Client,
    /// Asks the task to unsubscribe (see [`ScriptedWorker::stop`]).
    stop: Option<oneshot::Sender<()>>,
}

impl ScriptedWorker {
    /// Subscribes to `subject` (wildcards allowed) in the `openim-workers` queue group and
    /// answers every request as `behaviour` says.
    pub async fn start(nats_url: &str, subject: &str, behaviour: Behaviour) -> Self {
        Self::subscribe(nats_url, subject, Some(QUEUE_GROUP), behaviour).await
    }

    /// A plain (non-queue) subscriber to `subject` that records and never replies.
    pub async fn observer(nats_url: &str, subject: &str) -> Self {
        Self::subscribe(nats_url, subject, None, Behaviour::Hang).await
    }

    async fn subscribe(
        nats_url: &str,
        subject: &str,
        queue_group: Option<&str>,
        behaviour: Behaviour,
    ) -> Self {
        let setup = async {
            let client = async_nats::ConnectOptions::new()
                // Recovery tests restart nats-server: come back fast, as a real worker would.
                .reconnect_delay_callback(|_| Duration::from_millis(100))
                .ping_interval(Duration::from_secs(2))
                .connection_timeout(Duration::from_secs(5))
                .connect(nats_url)
                .await
                .map_err(|error| format!("connect: {error}"))?;
            let subscriber = match queue_group {
                Some(group) => client
                    .queue_subscribe(subject.to_owned(), group.to_owned())
                    .await
                    .map_err(|error| format!("queue_subscribe: {error}"))?,
                None => client
                    .subscribe(subject.to_owned())
                    .await
                    .map_err(|error| format!("subscribe: {error}"))?,
            };
            // A request sent after this reaches the subscriber instead of getting "no
            // responders": the server has processed the SUB once a later round trip returns.
            round_trip(&client).await?;
            Ok::<_, String>((client, subscriber))
        };
        let (client, mut subscriber) = match tokio::time::timeout(SUBSCRIBE_BOUND, setup).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => panic!("scripted subscriber on {subject} at {nats_url}: {error}"),
            Err(_) => panic!(
                "scripted subscriber on {subject} at {nats_url} not ready within {SUBSCRIBE_BOUND:?}"
            ),
        };
        let record = Arc::new(Record::default());
        let task_record = Arc::clone(&record);
        let task_client = client.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = subscriber.next() => message,
                    _ = &mut stopped => {
                        let _ = subscriber.unsubscribe().await;
                        let _ = round_trip(&task_client).await;
                        return;
                    }
                };
                let Some(message) = message else {
                    return;
                };
                let received = Received {
                    subject: message.subject.to_string(),
                    headers: message
                        .headers
                        .as_ref()
                        .map(header_pairs)
                        .unwrap_or_default(),
                    payload: message.payload.clone(),
                    reply: message.reply.as_ref().map(ToString::to_string),
                    received_unix_ms: unix_ms_now(),
                };
                task_record.lock().push(received);
                task_record.arrived.notify_waiters();
                if let Some(reply_to) = message.reply {
                    answer(&task_client, reply_to, &message.payload, &behaviour);
                }
            }
        });
        Self {
            subject: subject.to_owned(),
            record,
            task,
            client,
            stop: Some(stop),
        }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.record.lock().clone()
    }

    /// Waits (bounded) until at least `count` messages arrived; returns them all. Panics with
    /// what did arrive when the bound passes.
    pub async fn wait_for(&self, count: usize, bound: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let arrived = self.record.arrived.notified();
            {
                let messages = self.record.lock();
                if messages.len() >= count {
                    return messages.clone();
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let messages = self.received();
                if messages.len() >= count {
                    return messages;
                }
                panic!(
                    "subscriber on {} received {} of {count} messages within {bound:?}: {messages:#?}",
                    self.subject,
                    messages.len()
                );
            }
        }
    }

    /// Unsubscribes and waits (bounded) until the server knows: a request sent afterwards
    /// no longer reaches this subscriber. (Dropping only stops it eventually.)
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        if tokio::time::timeout(SUBSCRIBE_BOUND, task).await.is_err() {
            panic!(
                "scripted subscriber on {} did not unsubscribe within {SUBSCRIBE_BOUND:?}",
                self.subject
            );
        }
    }

    /// Makes sure everything the server already routed to this subscriber has arrived: a
    /// round trip through the server, then a short pause for the task to record it.
    pub async fn settle(&self) {
        let _ = round_trip(&self.client).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Drop for ScriptedWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends the scripted answer on its own task, so a sleeping answer never delays the next
/// request (a real worker answers concurrently too).
fn answer(
    client: &async_nats::Client,
    reply_to: async_nats::Subject,
    payload: &[u8],
    behaviour: &Behaviour,
) {
    let (delay, reply) = match behaviour {
        Behaviour::Reply(reply) => (Duration::ZERO, Some(reply.clone())),
        Behaviour::ReplyAfter(delay, reply) => (*delay, Some(reply.clone())),
        Behaviour::Hang => (Duration::ZERO, None),
        Behaviour::Respond(Responder(respond)) => (Duration::ZERO, respond(payload)),
    };
    let Some(reply) = reply else {
        return;
    };
    let client = client.clone();
    tokio::spawn(async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let body = Bytes::from(reply.body);
        // A reply that cannot be sent shows up as a fallback in the test that cares.
        let _ = if reply.headers.is_empty() {
            client.publish(reply_to, body).await
        } else {
            let mut headers = HeaderMap::new();
            for (name, value) in &reply.headers {
                headers.insert(name.as_str(), value.as_str());
            }
            client.publish_with_headers(reply_to, headers, body).await
        };
        let _ = client.flush().await;
    });
}

/// Waits until the server has processed everything this client sent before. `flush` only
/// writes the socket; a request to a subject nobody serves comes back (as "no responders")
/// only after the server has handled the commands before it, in order.
pub async fn round_trip(client: &async_nats::Client) -> Result<(), String> {
    let subject = format!("_HARNESS.barrier.{}", uuid::Uuid::now_v7().simple());
    match tokio::time::timeout(SUBSCRIBE_BOUND, client.request(subject, Bytes::new())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(error)) => Err(format!("round trip through nats-server: {error}")),
        Err(_) => Err(format!(
            "no round trip through nats-server within {SUBSCRIBE_BOUND:?}"
        )),
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for (name, values) in headers.iter() {
        for value in values {
            pairs.push((name.to_string(), value.as_str().to_owned()));
        }
    }
    pairs
}

/// Now, in Unix milliseconds.
pub fn unix_ms_now() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default()
}
