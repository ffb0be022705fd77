//! [`AfterStreamBuilder`] and [`AfterStreamConsumer`]: after-callbacks read from the
//! gateway's JetStream stream through a durable pull consumer.
//!
//! With `GATEWAY_AFTER_STREAM=<name>` the gateway stores every after-callback in that stream
//! before acknowledging OpenIM. A durable consumer remembers on the server what this worker
//! has acknowledged, so a worker that was down reads what it missed when it comes back; the
//! Python and Node helpers (`consume_after_stream`, `consumeAfterStream`) behave the same way.
//!
//! - The consumer is created when missing, starting at the oldest message the stream holds,
//!   or updated to this configuration (its filter subjects) when it exists; it then continues
//!   after what it acknowledged. Several workers may share it.
//! - At most the concurrency bound of handlers run at once, and the kit never asks the
//!   server for more messages than there are free handlers: a message waiting in the client
//!   would have its ack timer running while nobody works on it.
//! - A handler returning `Ok` gets its message acknowledged, and the kit waits for the
//!   server to confirm the ack; an `Err` negatively acknowledges it with a short delay, so it
//!   comes back; a body that does not parse as the handler's type is terminated (never
//!   delivered again: it never will parse).
//! - On shutdown it stops pulling, lets the running handlers finish within the grace and
//!   acknowledges them; a handler still running past the grace is abandoned and its message
//!   is delivered again after the ack wait.

use std::future::Future;
use std::io::Write as _;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use futures::StreamExt as _;
use openim_gateway_proto::{headers, subject};
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::deadline::header;
use crate::handler::{bad_request_description, BoxFuture, HandlerError, INTERNAL_ERROR_CODE};
use crate::trace::RequestTrace;
use crate::worker::{DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE};

/// How long the server waits for an acknowledgement before delivering a message again.
/// While a handler runs, the kit tells the server it is still working every half of this, so
/// a slow handler is not raced by a second delivery.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// After a handler failed, its message comes back after this delay: long enough not to spin
/// on a dependency that is down, short enough that a hiccup costs little.
pub const DEFAULT_NAK_DELAY: Duration = Duration::from_secs(1);

/// How long one pull request waits for messages. JetStream cannot cancel a pull request, so
/// this is also how long a shutdown may wait for the last one to end.
pub const DEFAULT_FETCH_WAIT: Duration = Duration::from_secs(1);

/// How long to wait before pulling again after the server refused a pull (disconnected,
/// consumer moving to another server).
const PULL_RETRY: Duration = Duration::from_secs(1);

/// One after-callback, as the handler receives it.
#[derive(Debug, Clone)]
pub struct AfterCallback<Body> {
    /// The OpenIM command, from `X-Callback-Command` (the subject's last token when the
    /// header is missing, as for a message published by hand).
    pub command: String,
    /// The body, parsed as the handler's type, or the bytes OpenIM sent for a raw handler.
    pub body: Body,
    /// Every header the gateway set: `X-Request-Id`, `X-Callback-Command`, `X-Operation-Id`,
    /// `X-Deadline-Unix-Ms`, `X-Timeout-Ms`. The deadline has no meaning here: nobody waits.
    pub headers: HeaderMap,
    /// How many times this message has been delivered, 1 the first time. Delivery is at least
    /// once, so a handler must be idempotent; `X-Request-Id` is the same on every delivery.
    pub delivered: u64,
}

impl<Body> AfterCallback<Body> {
    /// `X-Request-Id`: log it with what the handler did, to tie the line to the gateway's.
    pub fn request_id(&self) -> Option<&str> {
        header(Some(&self.headers), headers::REQUEST_ID)
    }

    /// `X-Operation-Id`, OpenIM's id for the user's operation, when OpenIM gave one.
    pub fn operation_id(&self) -> Option<&str> {
        header(Some(&self.headers), headers::OPERATION_ID)
    }

    /// W3C `traceparent`: the gateway's span of this callback (or OpenIM's header passed on),
    /// to put on what the handler sends on; `None` when the callback carried none.
    pub fn traceparent(&self) -> Option<&str> {
        header(Some(&self.headers), headers::TRACEPARENT)
    }
}

/// A failure that stops the consumer before it runs. Per-message failures are logged and
/// counted, never returned.
#[derive(Debug, thiserror::Error)]
pub enum AfterStreamError {
    /// The builder has no handler: nothing would acknowledge the messages.
    #[error("no handler: add one with AfterStreamBuilder::handle")]
    NoHandler,
    /// A stream or consumer name JetStream would refuse, or that would change the API
    /// subject it appears in.
    #[error(
        "{what} {name:?} is not a valid name: not empty, no whitespace, '.', '*', '>', '/' or '\\'"
    )]
    Name {
        /// `stream` or `durable`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A command that does not make a valid subject with the prefix.
    #[error("{0:?} is not a command name: the filter subject would not be valid")]
    Command(String),
    /// The stream does not exist (is the gateway started with `GATEWAY_AFTER_STREAM`?) or
    /// JetStream does not answer.
    #[error("cannot find stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The server's or client's reason.
        source: jetstream::context::GetStreamError,
    },
    /// The consumer could not be created or updated, e.g. a filter subject outside the
    /// stream's subjects.
    #[error("cannot create or update consumer {durable} on stream {stream}: {source}")]
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name.
        durable: String,
        /// The server's or client's reason.
        source: jetstream::stream::ConsumerError,
    },
    /// The readiness line could not be written; harnesses wait for it, so this is fatal.
    #[error("cannot write the ready line to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

/// What a consumer did with its messages; a message delivered twice counts twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AfterStreamReport {
    /// The handler returned `Ok` and the server confirmed the ack.
    pub acked: u64,
    /// The handler returned an error: negatively acknowledged, delivered again later.
    pub retried: u64,
    /// The body did not parse: terminated, never delivered again.
    pub refused: u64,
    /// Handled, but the server did not confirm the ack: it may be delivered again.
    pub unconfirmed: u64,
    /// Still running when the shutdown grace ran out: delivered again after the ack wait.
    pub abandoned: u64,
}

/// The counts while running; shared with the message tasks.
#[derive(Debug, Default)]
struct Counters {
    acked: AtomicU64,
    retried: AtomicU64,
    refused: AtomicU64,
    unconfirmed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, abandoned: u64) -> AfterStreamReport {
        AfterStreamReport {
            acked: self.acked.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed),
            abandoned,
        }
    }
}

/// A message taken apart, before its body is parsed.
struct Delivery {
    command: String,
    payload: Bytes,
    headers: HeaderMap,
    delivered: u64,
}

/// The handler with its body type erased: `Err` carries why the body does not parse.
trait AfterHandle: Send + Sync {
    fn start(&self, delivery: Delivery) -> Result<BoxFuture<Result<(), HandlerError>>, String>;
}

/// A handler of bodies parsed as JSON into `Body`.
struct TypedAfter<Body, F> {
    handler: F,
    body: PhantomData<fn() -> Body>,
}

impl<Body, F, Fut> AfterHandle for TypedAfter<Body, F>
where
    Body: DeserializeOwned + Send + 'static,
    F: Fn(AfterCallback<Body>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn start(&self, delivery: Delivery) -> Result<BoxFuture<Result<(), HandlerError>>, String> {
        let body = serde_json::from_slice::<Body>(&delivery.payload)
            .map_err(|error| bad_request_description(&delivery.command, &error))?;
        Ok(Box::pin((self.handler)(AfterCallback {
            command: delivery.command,
            body,
            headers: delivery.headers,
            delivered: delivery.delivered,
        })))
    }
}

/// A handler of the bytes as OpenIM sent them; every body is accepted.
struct RawAfter<F> {
    handler: F,
}

impl<F, Fut> AfterHandle for RawAfter<F>
where
    F: Fn(AfterCallback<Bytes>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn start(&self, delivery: Delivery) -> Result<BoxFuture<Result<(), HandlerError>>, String> {
        Ok(Box::pin((self.handler)(AfterCallback {
            command: delivery.command,
            body: delivery.payload,
            headers: delivery.headers,
            delivered: delivery.delivered,
        })))
    }
}

/// The stream, the durable consumer, the handler and the settings, before connecting.
pub struct AfterStreamBuilder {
    stream: String,
    durable: String,
    prefix: String,
    commands: Vec<String>,
    concurrency: usize,
    grace: Duration,
    ack_wait: Duration,
    nak_delay: Duration,
    fetch_wait: Duration,
    max_deliver: Option<i64>,
    handler: Option<Arc<dyn AfterHandle>>,
}

impl std::fmt::Debug for AfterStreamBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AfterStreamBuilder")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("prefix", &self.prefix)
            .field("commands", &self.commands)
            .field("concurrency", &self.concurrency)
            .field("grace", &self.grace)
            .field("ack_wait", &self.ack_wait)
            .field("nak_delay", &self.nak_delay)
            .field("fetch_wait", &self.fetch_wait)
            .field("max_deliver", &self.max_deliver)
            .field("has_handler", &self.handler.is_some())
            .finish()
    }
}

impl AfterStreamBuilder {
    /// Reads the gateway's stream `stream` (its `GATEWAY_AFTER_STREAM`) through the durable
    /// consumer `durable`: one durable per kind of work, shared by all its replicas. Every
    /// after-callback by default; see [`Self::commands`].
    pub fn new(stream: &str, durable: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            durable: durable.to_owned(),
            prefix: subject::DEFAULT_PREFIX.to_owned(),
            commands: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            grace: DEFAULT_SHUTDOWN_GRACE,
            ack_wait: DEFAULT_ACK_WAIT,
            nak_delay: DEFAULT_NAK_DELAY,
            fetch_wait: DEFAULT_FETCH_WAIT,
            max_deliver: None,
            handler: None,
        }
    }

    /// Reads only these commands (the consumer's filter subjects); an empty list reads all.
    #[must_use]
    pub fn commands(mut self, commands: &[&str]) -> Self {
        self.commands = commands.iter().map(|&command| command.to_owned()).collect();
        self
    }

    /// The subject prefix; must equal the gateway's `GATEWAY_SUBJECT_PREFIX`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How many handlers run at once (at least 1); also the most messages pulled at once.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long a shutdown waits for the running handlers.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The consumer's ack wait (at least 100 ms): how long before an unacknowledged message
    /// is delivered again.
    #[must_use]
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait.max(Duration::from_millis(100));
        self
    }

    /// How long after a handler's error its message comes back.
    #[must_use]
    pub fn nak_delay(mut self, nak_delay: Duration) -> Self {
        self.nak_delay = nak_delay;
        self
    }

    /// How long one pull request waits for messages (at least 100 ms).
    #[must_use]
    pub fn fetch_wait(mut self, fetch_wait: Duration) -> Self {
        self.fetch_wait = fetch_wait.max(Duration::from_millis(100));
        self
    }

    /// After this many deliveries a message is given up (the server stops delivering it);
    /// unlimited by default.
    #[must_use]
    pub fn max_deliver(mut self, max_deliver: u32) -> Self {
        self.max_deliver = Some(i64::from(max_deliver.max(1)));
        self
    }

    /// Handles each message with `handler`, which gets the body parsed as JSON into `Body`
    /// (a body that does not parse is terminated) and returns without awaiting. `Ok` acknowledges the message, an error
    /// has it delivered again after the nak delay.
    #[must_use]
    pub fn handle<Body, F>(self, handler: F) -> Self
    where
        Body: DeserializeOwned + Send + 'static,
        F: Fn(&AfterCallback<Body>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.handle_async(move |callback| std::future::ready(handler(&callback)))
    }

    /// [`Self::handle`] for a handler that awaits (a database, another service).
    #[must_use]
    pub fn handle_async<Body, F, Fut>(mut self, handler: F) -> Self
    where
        Body: DeserializeOwned + Send + 'static,
        F: Fn(AfterCallback<Body>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handler = Some(Arc::new(TypedAfter {
            handler,
            body: PhantomData,
        }));
        self
    }

    /// [`Self::handle_async`] with the body as the bytes OpenIM sent, unparsed: to store or
    /// forward them as they are, or to parse them some other way.
    #[must_use]
    pub fn handle_raw<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(AfterCallback<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        self.handler = Some(Arc::new(RawAfter { handler }));
        self
    }

    /// The consumer's filter subjects, or why a command cannot be one.
    fn filter_subjects(&self) -> Result<Vec<String>, AfterStreamError> {
        self.commands
            .iter()
            .map(|command| {
                let filter = subject::for_command(&self.prefix, command);
                let one_token = !command.is_empty() && !command.contains('.');
                if one_token && subject::is_valid_publish_subject(&filter) {
                    Ok(filter)
                } else {
                    Err(AfterStreamError::Command(command.clone()))
                }
            })
            .collect()
    }

    /// Creates the durable consumer, or updates it to this configuration; returns once the
    /// server has it, so no message stored after this returns can be missed.
    pub async fn start(self, client: Client) -> Result<AfterStreamConsumer, AfterStreamError> {
        let Some(handler) = self.handler.clone() else {
            return Err(AfterStreamError::NoHandler);
        };
        for (what, name) in [("stream", &self.stream), ("durable", &self.durable)] {
            if !is_valid_name(name) {
                return Err(AfterStreamError::Name {
                    what,
                    name: name.clone(),
                });
            }
        }
        let subjects = self.filter_subjects()?;
        let mut config = pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver.unwrap_or(-1),
            ..pull::Config::default()
        };
        match subjects.as_slice() {
            [] => {}
            [only] => config.filter_subject.clone_from(only),
            several => config.filter_subjects = several.to_vec(),
        }
        let context = jetstream::new(client.clone());
        let stream =
            context
                .get_stream(&self.stream)
                .await
                .map_err(|source| AfterStreamError::Stream {
                    stream: self.stream.clone(),
                    source,
                })?;
        let consumer =
            stream
                .create_consumer(config)
                .await
                .map_err(|source| AfterStreamError::Consumer {
                    stream: self.stream.clone(),
                    durable: self.durable.clone(),
                    source,
                })?;
        Ok(AfterStreamConsumer {
            client,
            consumer,
            handler,
            stream: self.stream,
            durable: self.durable,
            prefix: self.prefix,
            subjects,
            concurrency: self.concurrency,
            grace: self.grace,
            ack_wait: self.ack_wait,
            nak_delay: self.nak_delay,
            fetch_wait: self.fetch_wait,
        })
    }

    /// [`Self::start`], the ready line on stdout, then [`AfterStreamConsumer::serve`] until
    /// `shutdown` completes. A shutdown while still waiting for the server returns at once.
    pub async fn run(
        self,
        client: Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<AfterStreamReport, AfterStreamError> {
        tokio::pin!(shutdown);
        let consumer = tokio::select! {
            consumer = self.start(client) => consumer?,
            () = &mut shutdown => {
                tracing::info!("shut down before the consumer was ready");
                return Ok(AfterStreamReport::default());
            }
        };
        consumer.announce_ready()?;
        Ok(consumer.serve(shutdown).await)
    }
}

/// A stream or consumer name: not empty, no whitespace or control characters, and none of
/// `.`, `*`, `>` (they would change the JetStream API subject the name is part of), `/` or
/// `\` (the server stores streams and consumers under their names).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|character| {
            !character.is_whitespace()
                && !character.is_control()
                && !matches!(character, '.' | '*' | '>' | '/' | '\\')
        })
}

/// The command of a message: its `X-Callback-Command`, else the subject after the prefix,
/// else the subject's last token.
fn command_of(subject: &str, message_headers: Option<&HeaderMap>, prefix: &str) -> String {
    if let Some(command) = header(message_headers, headers::CALLBACK_COMMAND) {
        if !command.is_empty() {
            return command.to_owned();
        }
    }
    subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .or_else(|| subject.rsplit('.').next())
        .unwrap_or(subject)
        .to_owned()
}

/// A durable consumer the server has confirmed, ready to serve.
pub struct AfterStreamConsumer {
    client: Client,
    consumer: PullConsumer,
    handler: Arc<dyn AfterHandle>,
    stream: String,
    durable: String,
    prefix: String,
    subjects: Vec<String>,
    concurrency: usize,
    grace: Duration,
    ack_wait: Duration,
    nak_delay: Duration,
    fetch_wait: Duration,
}

impl std::fmt::Debug for AfterStreamConsumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AfterStreamConsumer")
            .field("stream", &self.stream)
            .field("durable", &self.durable)
            .field("subjects", &self.subjects)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// What every message task needs besides its message.
#[derive(Clone)]
struct Settle {
    handler: Arc<dyn AfterHandle>,
    counters: Arc<Counters>,
    prefix: Arc<str>,
    ack_wait: Duration,
    nak_delay: Duration,
}

impl AfterStreamConsumer {
    /// The consumer's filter subjects; empty when it reads the whole stream.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Prints the line harnesses and operators wait for, and flushes it.
    pub fn announce_ready(&self) -> Result<(), AfterStreamError> {
        let subjects = if self.subjects.is_empty() {
            "all subjects".to_owned()
        } else {
            self.subjects.join(", ")
        };
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "worker ready on stream {} as durable {} ({subjects})",
            self.stream, self.durable
        )
        .and_then(|()| stdout.flush())
        .map_err(AfterStreamError::Stdout)
    }

    /// Pulls and handles messages until `shutdown` completes, then waits for the pull
    /// request still open and the running handlers (within the grace), and returns the counts.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> AfterStreamReport {
        crate::trace::start_exporting(&self.durable);
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let settle = Settle {
            handler: Arc::clone(&self.handler),
            counters: Arc::new(Counters::default()),
            prefix: Arc::from(self.prefix.as_str()),
            ack_wait: self.ack_wait,
            nak_delay: self.nak_delay,
        };
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        // Set once `shutdown` has completed: it must not be polled again.
        let mut stopping = false;
        while !stopping {
            while let Some(finished) = tasks.try_join_next() {
                log_task_failure(finished);
            }
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = Arc::clone(&semaphore).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The consumer never closes its semaphore.
                    Err(_) => break,
                },
            };
            let mut permits = vec![first];
            while let Ok(permit) = Arc::clone(&semaphore).try_acquire_owned() {
                permits.push(permit);
            }
            let pulled = self
                .consumer
                .batch()
                .max_messages(permits.len())
                .expires(self.fetch_wait)
                .messages()
                .await;
            let mut batch = match pulled {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(stream = %self.stream, durable = %self.durable, %error, "cannot pull: trying again");
                    drop(permits);
                    tokio::select! {
                        biased;
                        () = &mut shutdown => stopping = true,
                        () = tokio::time::sleep(PULL_RETRY) => {}
                    }
                    continue;
                }
            };
            // The pull request stays open on the server until it has sent as many messages
            // as asked or `fetch_wait` has passed, even after a shutdown: what it sends is
            // still handled, since dropping it would only delay it by the ack wait.
            loop {
                let next = tokio::select! {
                    biased;
                    () = &mut shutdown, if !stopping => {
                        tracing::info!("stopping: finishing the last pull and the running handlers");
                        stopping = true;
                        continue;
                    }
                    next = batch.next() => next,
                };
                match next {
                    None => break,
                    Some(Ok(message)) => {
                        let permit = permits.pop();
                        tasks.spawn(settle_one(
                            settle.clone(),
                            message,
                            permit,
                            Arc::clone(&semaphore),
                        ));
                    }
                    Some(Err(error)) => {
                        tracing::warn!(stream = %self.stream, durable = %self.durable, %error, "the pull ended with an error");
                        break;
                    }
                }
            }
        }

        if !tasks.is_empty() {
            tracing::info!(running = tasks.len(), "waiting for the running handlers");
        }
        let finish = async {
            while let Some(finished) = tasks.join_next().await {
                log_task_failure(finished);
            }
        };
        let _ = tokio::time::timeout(self.grace, finish).await;
        let abandoned = tasks.len() as u64;
        if abandoned > 0 {
            tracing::warn!(
                abandoned,
                grace = ?self.grace,
                "shutdown grace elapsed; the unacknowledged messages will be delivered again"
            );
            tasks.shutdown().await;
        }
        // The spans of the last deliveries, when traces are exported.
        let _ = tokio::task::spawn_blocking(crate::trace::flush).await;
        if let Err(error) = self.client.flush().await {
            tracing::warn!(%error, "cannot flush the last acknowledgements");
        }
        let report = settle.counters.report(abandoned);
        tracing::info!(
            acked = report.acked,
            retried = report.retried,
            refused = report.refused,
            unconfirmed = report.unconfirmed,
            abandoned = report.abandoned,
            "stopped"
        );
        report
    }
}

/// Handles one message and settles it: ack, nak or term. `permit` is `None` only if the
/// server sent more than it was asked for; the task then waits for a free one.
async fn settle_one(
    settle: Settle,
    message: jetstream::Message,
    permit: Option<OwnedSemaphorePermit>,
    semaphore: Arc<Semaphore>,
) {
    let _permit = match permit {
        Some(permit) => Some(permit),
        None => semaphore.acquire_owned().await.ok(),
    };
    let message_headers = message.headers.clone().unwrap_or_default();
    let request_id = header(Some(&message_headers), headers::REQUEST_ID)
        .unwrap_or("-")
        .to_owned();
    let delivered = message
        .info()
        .ok()
        .and_then(|info| u64::try_from(info.delivered).ok())
        .unwrap_or(1);
    let command = command_of(&message.subject, Some(&message_headers), &settle.prefix);
    // With traces on, a span per delivery: the child of the gateway's span of the callback.
    let trace = RequestTrace::start(Some(&message_headers), &command, &message.subject);
    let delivery = Delivery {
        command,
        payload: message.payload.clone(),
        headers: message_headers,
        delivered,
    };
    let command = delivery.command.clone();
    let handling = match settle.handler.start(delivery) {
        Ok(handling) => handling,
        Err(reason) => {
            tracing::warn!(request_id, %command, %reason, "terminated: it will not be delivered again");
            match message.ack_with(AckKind::Term).await {
                Ok(()) => Counters::add(&settle.counters.refused),
                Err(error) => tracing::warn!(request_id, %error, "cannot terminate the message"),
            }
            return;
        }
    };
    let outcome = keep_alive(handling, &message, settle.ack_wait / 2).await;
    trace.end(
        Some(request_id.as_str()),
        outcome.as_ref().err().map(|_| INTERNAL_ERROR_CODE),
    );
    match outcome {
        Ok(()) => match message.double_ack().await {
            Ok(()) => Counters::add(&settle.counters.acked),
            Err(error) => {
                tracing::warn!(request_id, %error, "the ack was not confirmed: the message may be delivered again");
                Counters::add(&settle.counters.unconfirmed);
            }
        },
        Err(error) => {
            tracing::error!(request_id, %command, %error, delay = ?settle.nak_delay, "the handler failed: delivered again after the delay");
            match message.ack_with(AckKind::Nak(Some(settle.nak_delay))).await {
                Ok(()) => Counters::add(&settle.counters.retried),
                Err(error) => {
                    tracing::warn!(request_id, %error, "cannot send the nak: delivered again after the ack wait")
                }
            }
        }
    }
}

/// Runs `handling` and, every `every` while it runs, tells the server the message is still
/// being worked on, so that its ack wait starts again.
async fn keep_alive(
    handling: BoxFuture<Result<(), HandlerError>>,
    message: &jetstream::Message,
    every: Duration,
) -> Result<(), HandlerError> {
    tokio::pin!(handling);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once; the message was just delivered.
    ticks.tick().await;
    loop {
        tokio::select! {
            outcome = &mut handling => return outcome,
            _ = ticks.tick() => {
                if let Err(error) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(%error, "cannot tell the server the message is in progress");
                }
            }
        }
    }
}

/// A message task only fails by panicking, i.e. the handler panicked: its message is
/// delivered again after the ack wait.
fn log_task_failure(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(%error, "a handler panicked: its message will be delivered again after the ack wait");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_when_they_would_break_the_api_subject() {
        for good in ["OPENIM_AFTER", "member-info-log", "a"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["", "a b", "a.b", "a*", "a>", "a/b", "a\\b", "tab\t", "nl\n"] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_command_comes_from_its_header_else_from_the_subject() {
        let prefix = "openim.callback";
        let subject = "openim.callback.callbackAfterSetGroupMemberInfoCommand";
        let mut message_headers = HeaderMap::new();
        message_headers.insert(headers::CALLBACK_COMMAND, "callbackAfterX");
        assert_eq!(
            command_of(subject, Some(&message_headers), prefix),
            "callbackAfterX"
        );
        assert_eq!(
            command_of(subject, None, prefix),
            "callbackAfterSetGroupMemberInfoCommand"
        );
        assert_eq!(command_of("other.prefix.cmd", None, prefix), "cmd");
    }

    #[test]
    fn commands_become_filter_subjects_and_bad_ones_are_refused() {
        let builder = AfterStreamBuilder::new("S", "d").commands(&["callbackAfterA", "b"]);
        assert_eq!(
            builder.filter_subjects().unwrap(),
            ["openim.callback.callbackAfterA", "openim.callback.b"]
        );
        for bad in ["", "a.b", "*", ">", "a b"] {
            let builder = AfterStreamBuilder::new("S", "d").commands(&[bad]);
            assert!(
                matches!(builder.filter_subjects(), Err(AfterStreamError::Command(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_typed_handler_refuses_a_body_that_does_not_parse_without_echoing_it() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[allow(dead_code)]
            group_id: String,
        }
        let handler = TypedAfter {
            handler: |_: AfterCallback<Body>| std::future::ready(Ok(())),
            body: PhantomData,
        };
        let delivery = |payload: &'static [u8]| Delivery {
            command: "callbackAfterX".to_owned(),
            payload: Bytes::from_static(payload),
            headers: HeaderMap::new(),
            delivered: 1,
        };
        assert!(handler.start(delivery(br#"{"group_id":"g"}"#)).is_ok());
        let Err(reason) = handler.start(delivery(br#"{"group_id":["s3cret"]}"#)) else {
            panic!("a body of the wrong shape parsed");
        };
        assert!(reason.starts_with("bad request: body is not a callbackAfterX request"));
        assert!(!reason.contains("s3cret"), "{reason}");
        assert!(handler.start(delivery(b"not json")).is_err());
    }
}
