//! [`WorkerBuilder`] and [`Worker`]: the handlers of a worker, its subscriptions, and
//! serving them until shutdown.
//!
//! A worker is its handlers: [`WorkerBuilder::handle`] takes one per command, and
//! [`WorkerBuilder::run`] subscribes to `{prefix}.{command}` in the queue group
//! `openim-workers`, registers the worker for `$SRV` discovery, prints the ready line, answers
//! until the shutdown future completes, and drains.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Subscriber};
use openim_gateway_proto::subject;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::endpoint::{self, Endpoint, EndpointReport};
use crate::handler::{Context, Handle, HandlerError, Typed};
use crate::service::{self, EndpointStats, Registry, ServiceIdentity};

/// How many messages are handled at once by default, across all commands: the same default
/// as the Python and Node kits' `WORKER_CONCURRENCY`.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// How long shutdown waits for the drain and in-flight replies. A request older than the
/// gateway's budget (5 s by default, 15 s at most) has been answered by its fallback anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A failure that stops the worker. Per-message failures are logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The builder has no handler: there is nothing to subscribe to.
    #[error("no command to handle: add one with WorkerBuilder::handle")]
    NoHandler,
    /// The service name breaks the service API's rule.
    #[error("service name {0:?} is not valid: only letters, digits, - and _")]
    ServiceName(String),
    /// A subscription could not be sent to the client.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject the worker tried to join.
        subject: String,
        /// The client's reason.
        source: async_nats::SubscribeError,
    },
    /// The subscriptions could not be confirmed with the server.
    #[error("cannot confirm the subscriptions with the server: {0}")]
    Confirm(#[source] async_nats::RequestError),
    /// A subscription ended without a shutdown (the client closed): exit non-zero so that a
    /// supervisor restarts the worker.
    #[error("the subscription to {subject} ended without a shutdown")]
    SubscriptionEnded {
        /// The subject the worker was answering on.
        subject: String,
    },
    /// The readiness line could not be written; harnesses wait for it, so this is fatal.
    #[error("cannot write the ready line to stdout: {0}")]
    Stdout(#[source] std::io::Error),
}

/// What a finished worker did, for its last log line and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Messages received, over all commands.
    pub received: u64,
    /// Replies sent (answers and service errors).
    pub replied: u64,
    /// Requests skipped because their deadline had passed.
    pub skipped_late: u64,
    /// Message tasks abandoned when the shutdown grace ran out.
    pub abandoned: usize,
}

/// The handlers and settings of a worker, before it connects.
pub struct WorkerBuilder {
    identity: ServiceIdentity,
    prefix: String,
    concurrency: usize,
    grace: Duration,
    handlers: Vec<(String, Arc<dyn Handle>)>,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WorkerBuilder")
            .field("identity", &self.identity)
            .field("prefix", &self.prefix)
            .field("concurrency", &self.concurrency)
            .field("grace", &self.grace)
            .field(
                "commands",
                &self
                    .handlers
                    .iter()
                    .map(|(command, _)| command)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl WorkerBuilder {
    /// A worker named `name` (letters, digits, `-`, `_`: its `$SRV` service name) at
    /// `version`, with the default prefix, concurrency and grace, and no handler yet.
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            identity: ServiceIdentity {
                name: name.to_owned(),
                version: version.to_owned(),
                description: "an openim-gateway worker".to_owned(),
            },
            prefix: subject::DEFAULT_PREFIX.to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
            grace: DEFAULT_SHUTDOWN_GRACE,
            handlers: Vec::new(),
        }
    }

    /// The description `$SRV.INFO` shows.
    #[must_use]
    pub fn description(mut self, description: &str) -> Self {
        description.clone_into(&mut self.identity.description);
        self
    }

    /// The subject prefix; must equal the gateway's `GATEWAY_SUBJECT_PREFIX`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How many messages are handled at once, across all commands (at least 1). Messages
    /// beyond it wait in the client's buffer.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long shutdown may take.
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Answers `command` with `handler`, which reads the body parsed as `Request` and returns
    /// any serialisable answer: a [`crate::Decision`] or the command's answer type.
    #[must_use]
    pub fn handle<Request, Answer, F>(self, command: &str, handler: F) -> Self
    where
        Request: DeserializeOwned + Send + 'static,
        Answer: Serialize + Send + 'static,
        F: Fn(&Request, &Context) -> Result<Answer, HandlerError> + Send + Sync + 'static,
    {
        self.handle_async(command, move |request: Request, context: Context| {
            std::future::ready(handler(&request, &context))
        })
    }

    /// [`Self::handle`] for a handler that awaits (a database, another service); it owns the
    /// request, since its future outlives the call. Bound its
    /// waits by [`Context::deadline_unix_ms`]: past it, nobody reads the answer.
    #[must_use]
    pub fn handle_async<Request, Answer, F, Fut>(mut self, command: &str, handler: F) -> Self
    where
        Request: DeserializeOwned + Send + 'static,
        Answer: Serialize + Send + 'static,
        F: Fn(Request, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Answer, HandlerError>> + Send + 'static,
    {
        self.handlers
            .push((command.to_owned(), Arc::new(Typed::new(handler))));
        self
    }

    /// Subscribes every command and the `$SRV` verbs, and waits until the server has them
    /// (a round trip), so that no request sent after this returns can miss the worker.
    pub async fn start(self, client: Client) -> Result<Worker, WorkerError> {
        if self.handlers.is_empty() {
            return Err(WorkerError::NoHandler);
        }
        if !ServiceIdentity::is_valid_name(&self.identity.name) {
            return Err(WorkerError::ServiceName(self.identity.name));
        }
        let mut endpoints = Vec::with_capacity(self.handlers.len());
        for (command, handler) in self.handlers {
            let subject = subject::for_command(&self.prefix, &command);
            let subscriber = client
                .queue_subscribe(subject.clone(), subject::QUEUE_GROUP.to_owned())
                .await
                .map_err(|source| WorkerError::Subscribe {
                    subject: subject.clone(),
                    source,
                })?;
            endpoints.push(Endpoint {
                stats: Arc::new(EndpointStats::new(&command, &subject)),
                command,
                subscriber,
                handler,
            });
        }
        let registry = Arc::new(Registry {
            identity: self.identity,
            id: uuid::Uuid::now_v7().simple().to_string(),
            queue_group: subject::QUEUE_GROUP.to_owned(),
            started: async_nats::datetime::now(),
            endpoints: endpoints
                .iter()
                .map(|endpoint| Arc::clone(&endpoint.stats))
                .collect(),
        });
        let discovery = service::subscribe(&client, &registry)
            .await
            .map_err(|source| WorkerError::Subscribe {
                subject: "$SRV.*".to_owned(),
                source,
            })?;
        endpoint::fence(&client)
            .await
            .map_err(WorkerError::Confirm)?;
        Ok(Worker {
            client,
            endpoints,
            registry,
            discovery,
            concurrency: self.concurrency,
            grace: self.grace,
        })
    }

    /// [`Self::start`], the ready line on stdout, then [`Worker::serve`] until `shutdown`
    /// completes. A shutdown while still waiting for the first connection returns at once:
    /// there is nothing to drain.
    pub async fn run(
        self,
        client: Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, WorkerError> {
        tokio::pin!(shutdown);
        let worker = tokio::select! {
            worker = self.start(client) => worker?,
            () = &mut shutdown => {
                tracing::info!("shut down before the worker was ready");
                return Ok(ShutdownReport::default());
            }
        };
        worker.announce_ready()?;
        worker.serve(shutdown).await
    }
}

/// A worker subscribed to its subjects and confirmed by the server.
#[derive(Debug)]
pub struct Worker {
    client: Client,
    endpoints: Vec<Endpoint>,
    registry: Arc<Registry>,
    discovery: Vec<Subscriber>,
    concurrency: usize,
    grace: Duration,
}

impl Worker {
    /// The subjects this worker answers on, one per command.
    pub fn subjects(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|endpoint| endpoint.stats.subject.clone())
            .collect()
    }

    /// This instance's `$SRV` id.
    pub fn service_id(&self) -> &str {
        &self.registry.id
    }

    /// Prints the one line harnesses and operators wait for, and flushes it: stdout is a
    /// pipe under a harness, where Rust buffers it by line but a harness may read before exit.
    pub fn announce_ready(&self) -> Result<(), WorkerError> {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "worker ready on {} (queue {})",
            self.subjects().join(", "),
            subject::QUEUE_GROUP
        )
        .and_then(|()| stdout.flush())
        .map_err(WorkerError::Stdout)
    }

    /// Answers requests until `shutdown` completes or a subscription ends, then drains each
    /// subscription without losing what the server has already sent (see
    /// [`crate::endpoint`]) and flushes the replies, all within the shutdown grace.
    ///
    /// Returns an error only if a subscription ended on its own.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, WorkerError> {
        crate::trace::start_exporting(&self.registry.identity.name);
        let semaphore = Arc::new(Semaphore::new(self.concurrency));
        let (stop, stopped) = watch::channel(false);
        let discovery = tokio::spawn(service::serve(
            self.client.clone(),
            Arc::clone(&self.registry),
            self.discovery,
        ));
        let mut serving = JoinSet::new();
        for endpoint in self.endpoints {
            let subject = endpoint.stats.subject.clone();
            let served = endpoint.serve(
                self.client.clone(),
                Arc::clone(&semaphore),
                stopped.clone(),
                self.grace,
            );
            serving.spawn(async move { (subject, served.await) });
        }

        tokio::pin!(shutdown);
        let mut reports: Vec<(String, EndpointReport)> = Vec::new();
        tokio::select! {
            () = &mut shutdown => tracing::info!("shutting down: draining"),
            Some(ended) = serving.join_next() => {
                // One subscription ended on its own: stop the others too.
                if let Ok(report) = ended {
                    reports.push(report);
                }
            }
        }
        let _ = stop.send(true);
        // Off discovery first: a draining worker should not be found any more.
        discovery.abort();
        while let Some(ended) = serving.join_next().await {
            match ended {
                Ok(report) => reports.push(report),
                Err(error) => tracing::error!(%error, "an endpoint task failed"),
            }
        }
        let flushed = tokio::time::timeout(self.grace, self.client.flush()).await;
        // The spans of the last requests, when traces are exported.
        let _ = tokio::task::spawn_blocking(crate::trace::flush).await;

        let mut report = ShutdownReport::default();
        for stats in &self.registry.endpoints {
            report.replied += stats.requests();
            report.skipped_late += stats.skipped_late();
        }
        let mut ended_subject = None;
        for (subject, endpoint_report) in &reports {
            report.received += endpoint_report.received;
            report.abandoned += endpoint_report.abandoned;
            if endpoint_report.ended_on_its_own {
                ended_subject = Some(subject.clone());
            }
        }
        match flushed {
            Ok(Ok(())) if report.abandoned == 0 => tracing::info!(
                received = report.received,
                replied = report.replied,
                skipped_late = report.skipped_late,
                "drained, all replies flushed"
            ),
            Ok(Ok(())) => tracing::warn!(
                abandoned = report.abandoned,
                grace = ?self.grace,
                "shutdown grace elapsed; abandoned unfinished replies"
            ),
            Ok(Err(error)) => tracing::warn!(%error, "drained, but the last replies may be lost"),
            Err(_) => tracing::warn!("drained, but the final flush did not finish in time"),
        }
        match ended_subject {
            Some(subject) => Err(WorkerError::SubscriptionEnded { subject }),
            None => Ok(report),
        }
    }
}
