//! One command's queue subscription: receiving with bounded concurrency, answering each
//! message, and a drain that loses nothing the server has already sent.
//!
//! # Why the drain is not async-nats's `Subscriber::drain`
//!
//! A drain must go on receiving until the server has confirmed the unsubscribe: everything
//! the server routed to this worker before it processed the `UNSUB` is still on its way,
//! and in a queue group nobody else will get it. async-nats 0.51 forgets the subscription as
//! soon as the `UNSUB` is written, so those messages are dropped unseen; with 2,000 requests
//! queued and a SIGTERM at once, the worker answered only 1,379 and the rest reached their
//! gateway deadline. The kit drains in four steps instead:
//!
//! 1. a fence: a request to an inbox nobody serves comes back "no responders" only after
//!    the server has written everything it routed here before it, so when it returns, the
//!    backlog the server had already sent is in the subscription's buffer;
//! 2. it takes that whole buffer, so it knows how many messages the subscription has had;
//! 3. it sends `UNSUB` with a limit of that count plus [`DRAIN_HEADROOM`]: the server stops
//!    after exactly that many messages and the client keeps the subscription until it has
//!    received exactly as many, so under load the subscription ends with nothing in flight;
//! 4. when no message comes for [`QUIET`] and a second fence shows nothing new arrived, the
//!    subscription is closed at once (the limit will not be reached without traffic).
//!
//! What can still be lost: a message routed to this worker during the last fence's round
//! trip after a quiet period, or more than [`DRAIN_HEADROOM`] messages routed during the
//! first fence. Both need traffic that the quiet period says is not there.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use openim_gateway_proto::headers;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::deadline::{deadline_unix_ms, header, is_past, now_unix_ms};
use crate::handler::{Context, Handle, Response, BAD_REQUEST_CODE};
use crate::service::EndpointStats;
use crate::trace::RequestTrace;

/// How many messages past the fenced count the server may still send during a drain: it
/// covers what gets routed here during the fence's round trip. Under steady load the
/// subscription ends after at most this many more.
pub const DRAIN_HEADROOM: u64 = 256;

/// A drain closes the subscription after this long without a message.
pub const QUIET: Duration = Duration::from_millis(100);

/// How one endpoint's serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EndpointReport {
    /// Messages received over the endpoint's life.
    pub received: u64,
    /// Message tasks still running when the grace ran out.
    pub abandoned: usize,
    /// Whether the subscription ended without a shutdown (the client closed).
    pub ended_on_its_own: bool,
}

/// One command's subscription and what answering on it needs.
pub(crate) struct Endpoint {
    pub(crate) command: String,
    pub(crate) subscriber: Subscriber,
    pub(crate) handler: Arc<dyn Handle>,
    pub(crate) stats: Arc<EndpointStats>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Endpoint")
            .field("command", &self.command)
            .field("subject", &self.stats.subject)
            .finish_non_exhaustive()
    }
}

/// Completes when `stop` turns true, or when its sender is gone (nobody can stop us any
/// more, which only happens when the worker itself is being dropped).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

impl Endpoint {
    /// Answers messages, at most `semaphore`'s permits at a time across all endpoints, until
    /// `stop` turns true; then drains (see the module's documentation) within `grace`.
    pub(crate) async fn serve(
        mut self,
        client: Client,
        semaphore: Arc<Semaphore>,
        mut stop: watch::Receiver<bool>,
        grace: Duration,
    ) -> EndpointReport {
        let mut tasks = JoinSet::new();
        let mut received: u64 = 0;
        let ended_on_its_own = loop {
            while let Some(finished) = tasks.try_join_next() {
                log_task_failure(finished);
            }
            // A permit first: while every permit is taken, messages wait in the client's
            // subscription buffer instead of piling up here as tasks.
            let permit = tokio::select! {
                biased;
                () = stopped(&mut stop) => break false,
                permit = Arc::clone(&semaphore).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    // The worker never closes its semaphore.
                    Err(_) => break false,
                },
            };
            let message = tokio::select! {
                biased;
                () = stopped(&mut stop) => break false,
                message = self.subscriber.next() => message,
            };
            let Some(message) = message else {
                tracing::error!(subject = %self.stats.subject, "the subscription ended without a shutdown");
                break true;
            };
            received += 1;
            tasks.spawn(self.answer(client.clone(), message, Some(permit)));
        };

        let deadline = Instant::now() + grace;
        if !ended_on_its_own {
            tracing::info!(subject = %self.stats.subject, "draining the subscription");
            let drained = tokio::time::timeout_at(
                deadline,
                self.drain(&client, &semaphore, &mut tasks, &mut received),
            )
            .await;
            if drained.is_err() {
                tracing::warn!(subject = %self.stats.subject, "the drain did not finish within the shutdown grace");
            }
        }
        let finish = async {
            while let Some(finished) = tasks.join_next().await {
                log_task_failure(finished);
            }
        };
        let _ = tokio::time::timeout_at(deadline, finish).await;
        EndpointReport {
            received,
            abandoned: tasks.len(),
            ended_on_its_own,
        }
    }

    /// Steps 1-4 of the module's documentation; every message received is handed to a task
    /// that waits for a permit.
    async fn drain(
        &mut self,
        client: &Client,
        semaphore: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        received: &mut u64,
    ) {
        let mut backlog = VecDeque::new();
        if let Err(error) = fence(client).await {
            tracing::warn!(%error, "cannot fence the drain: messages in flight may be lost");
        }
        let mut ended = self.take_ready(&mut backlog);
        *received += backlog.len() as u64;
        self.spawn_all(client, semaphore, tasks, &mut backlog);
        if !ended {
            if let Err(error) = self
                .subscriber
                .unsubscribe_after(*received + DRAIN_HEADROOM)
                .await
            {
                tracing::warn!(%error, "cannot limit the subscription");
            }
        }
        while !ended {
            match tokio::time::timeout(QUIET, self.subscriber.next()).await {
                Ok(Some(message)) => {
                    *received += 1;
                    backlog.push_back(message);
                    self.spawn_all(client, semaphore, tasks, &mut backlog);
                }
                // The limit was reached: the server and the client agree nothing else comes.
                Ok(None) => ended = true,
                Err(_quiet) => {
                    if let Err(error) = fence(client).await {
                        tracing::warn!(%error, "cannot fence the end of the drain");
                    }
                    ended = self.take_ready(&mut backlog);
                    if backlog.is_empty() && !ended {
                        if let Err(error) = self.subscriber.drain().await {
                            tracing::warn!(%error, "cannot unsubscribe");
                        }
                        // Whatever the client buffered before forgetting the subscription.
                        while let Some(message) = self.subscriber.next().await {
                            backlog.push_back(message);
                        }
                        ended = true;
                    }
                    *received += backlog.len() as u64;
                    self.spawn_all(client, semaphore, tasks, &mut backlog);
                }
            }
        }
    }

    /// Moves every message already buffered for this subscription into `backlog`, without
    /// waiting; true when the subscription has ended.
    fn take_ready(&mut self, backlog: &mut VecDeque<Message>) -> bool {
        loop {
            match self.subscriber.next().now_or_never() {
                Some(Some(message)) => backlog.push_back(message),
                Some(None) => return true,
                None => return false,
            }
        }
    }

    fn spawn_all(
        &self,
        client: &Client,
        semaphore: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        backlog: &mut VecDeque<Message>,
    ) {
        for message in backlog.drain(..) {
            let answer = self.answer(client.clone(), message, None);
            let semaphore = Arc::clone(semaphore);
            tasks.spawn(async move {
                // The worker never closes its semaphore; if it did, answering anyway is
                // better than dropping the message.
                let _permit = semaphore.acquire_owned().await.ok();
                answer.await;
            });
        }
    }

    /// The task answering one message (or deliberately not: no reply subject, deadline
    /// passed). `permit` is held until the reply is published.
    fn answer(
        &self,
        client: Client,
        message: Message,
        permit: Option<OwnedSemaphorePermit>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let handler = Arc::clone(&self.handler);
        let stats = Arc::clone(&self.stats);
        let command = self.command.clone();
        async move {
            answer(client, handler, stats, command, message).await;
            drop(permit);
        }
    }
}

async fn answer(
    client: Client,
    handler: Arc<dyn Handle>,
    stats: Arc<EndpointStats>,
    command: String,
    message: Message,
) {
    let started = std::time::Instant::now();
    let message_headers = message.headers.as_ref();
    let request_id = header(message_headers, headers::REQUEST_ID).map(str::to_owned);
    let log_id = request_id.as_deref().unwrap_or("-");
    let Some(reply_subject) = message.reply.clone() else {
        tracing::warn!(request_id = log_id, subject = %message.subject, "message without a reply subject: skipped");
        return;
    };
    let deadline = deadline_unix_ms(message_headers);
    if let Some(deadline) = deadline {
        let now = now_unix_ms();
        if is_past(deadline, now) {
            stats.record_skipped_late();
            tracing::info!(
                request_id = log_id,
                late_by_ms = now - deadline,
                "deadline passed: nobody waits for this answer, not replying"
            );
            return;
        }
    }
    let trace = RequestTrace::start(message_headers, &command, &message.subject);
    let context = Context {
        command,
        operation_id: header(message_headers, headers::OPERATION_ID).map(str::to_owned),
        request_id: request_id.clone(),
        deadline_unix_ms: deadline,
        traceparent: trace.traceparent(),
    };
    let response = handler.respond(message.payload, context).await;
    let published = match &response {
        // No headers: the request's are not copied onto the reply (docs/worker-protocol.md).
        Response::Answer(body) => client.publish(reply_subject, body.clone()).await,
        Response::ServiceError { code, description } => {
            if *code == BAD_REQUEST_CODE {
                tracing::warn!(request_id = log_id, %description, "bad request");
            } else {
                tracing::error!(request_id = log_id, %description, "cannot answer");
            }
            client
                .publish_with_headers(
                    reply_subject,
                    service_error_headers(*code, description),
                    Bytes::new(),
                )
                .await
        }
    };
    trace.end(
        request_id.as_deref(),
        match &response {
            Response::Answer(_) => None,
            Response::ServiceError { code, .. } => Some(*code),
        },
    );
    match published {
        Ok(()) => stats.record(
            started.elapsed(),
            match &response {
                Response::Answer(_) => None,
                Response::ServiceError { code, description } => Some((*code, description)),
            },
        ),
        Err(error) => tracing::warn!(request_id = log_id, %error, "cannot send the reply"),
    }
}

/// A message task only fails by panicking, which `answer` is written never to do (a handler
/// might): if it does, it is a bug worth an error line.
fn log_task_failure(finished: Result<(), tokio::task::JoinError>) {
    if let Err(error) = finished {
        tracing::error!(%error, "a message task failed");
    }
}

/// The two headers of a service error reply.
pub(crate) fn service_error_headers(code: u16, description: &str) -> HeaderMap {
    let mut service_error = HeaderMap::new();
    service_error.insert(headers::NATS_SERVICE_ERROR, description);
    service_error.insert(headers::NATS_SERVICE_ERROR_CODE, code.to_string().as_str());
    service_error
}

/// Waits until the server has processed everything this client sent before and written
/// everything it routed to this client before that. `Client::flush` only writes the socket;
/// a request to an inbox nobody serves comes back "no responders" from the server, after
/// every message it queued for this connection before.
pub(crate) async fn fence(client: &Client) -> Result<(), async_nats::RequestError> {
    match client.request(client.new_inbox(), Bytes::new()).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_error_headers_follow_the_nats_service_api() {
        let headers = service_error_headers(400, "bad request: body is not valid JSON");
        assert_eq!(
            header(Some(&headers), "Nats-Service-Error"),
            Some("bad request: body is not valid JSON")
        );
        assert_eq!(
            header(Some(&headers), "Nats-Service-Error-Code"),
            Some("400")
        );
    }
}
