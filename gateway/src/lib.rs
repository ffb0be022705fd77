//! openim-gateway: OpenIM callbacks in, NATS requests out, a decision back in time.
//!
//! `main` only wires the parts: [`config::Config`] is parsed first, then
//! [`Gateway::build`] binds the listener and starts connecting to NATS, then
//! [`Gateway::run`] serves until the shutdown future completes. Tests call the same seam on
//! port 0.

pub mod conditions;
pub mod config;
pub mod deadline;
pub mod decision;
pub mod forward;
pub mod http;
pub mod metrics;

use std::{
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};

use crate::{
    config::Config,
    forward::{Forwarder, SetupError},
    http::AppState,
    metrics::Metrics,
};

/// Why the gateway could not start (the configuration was already valid).
#[derive(Debug, Error)]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `GATEWAY_LISTEN`.
        address: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The NATS client could not be set up.
    #[error(transparent)]
    Nats(#[from] SetupError),
}

/// The listen backlog: connections the kernel completes while the event loop is busy. The
/// default (128 on older kernels) overflows under a burst of new connections, and a dropped
/// SYN is retried only after a second, far past any callback's budget. The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// How long the start waits for NATS before opening the port anyway: long enough for a NATS
/// that is up to be connected (a few milliseconds), short enough that a NATS outage at start
/// costs OpenIM only this much before the defaults flow.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(2);
/// After the shutdown delay, how long callbacks already accepted may still take: the longest
/// budget, plus room for the answer to be written.
const DRAIN_SLACK: Duration = Duration::from_secs(1);
/// The longest the NATS connection may take to flush on the way out.
const NATS_DRAIN_BOUND: Duration = Duration::from_secs(2);

/// A bound, connected-or-connecting gateway, ready to serve.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    state: Arc<AppState>,
    /// From SIGTERM to no longer accepting (`GATEWAY_SHUTDOWN_DELAY_MS`).
    shutdown_delay: Duration,
    /// After the delay, the bound on finishing what was accepted.
    drain_bound: Duration,
}

impl Gateway {
    /// Binds the listener, connects to NATS and returns once connected, or after
    /// [`FIRST_CONNECT_WAIT`] if NATS is not reachable: then callbacks get the default
    /// decision and `/readyz` says 503 until it is.
    ///
    /// The listener is bound with `SO_REUSEPORT`, so that a new gateway can take the port
    /// while an old one still drains (an upgrade that refuses no connection).
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let listener = listen(config.listen).map_err(|source| BuildError::Bind {
            address: config.listen,
            source,
        })?;
        let metrics = Arc::new(Metrics::new());
        let forwarder = Forwarder::connect(
            config.nats_urls.clone(),
            &config.subject_prefix,
            Arc::clone(&metrics),
        )
        .await?;
        if !forwarder.wait_connected(FIRST_CONNECT_WAIT).await {
            tracing::warn!(
                waited_ms = FIRST_CONNECT_WAIT.as_millis() as u64,
                "nats is not reachable yet: opening the port anyway, callbacks get the default decision until it is"
            );
        }
        let state = Arc::new(AppState::new(&config, forwarder, metrics));
        Ok(Self {
            listener,
            state,
            shutdown_delay: config.shutdown_delay,
            drain_bound: config.callback_timeout + DRAIN_SLACK,
        })
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains:
    /// 1. at once, `/readyz` answers 503 and every answer carries `Connection: close`, so
    ///    that clients move to a new connection (to a new gateway, after an upgrade);
    /// 2. for the shutdown delay, it goes on accepting and answering as before;
    /// 3. then it stops accepting, finishes the callbacks in flight (each bounded by its
    ///    deadline; the whole step by the longest budget, whatever clients do) and drains
    ///    the NATS connection.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let state = Arc::clone(&self.state);
        let (stopped_accepting, stop_accepted) = tokio::sync::oneshot::channel();
        let shutdown_delay = self.shutdown_delay;
        let stop_accepting = async move {
            shutdown.await;
            state.start_draining();
            tracing::info!(
                delay_ms = shutdown_delay.as_millis() as u64,
                "shutting down: /readyz is 503, still answering during the shutdown delay"
            );
            tokio::time::sleep(shutdown_delay).await;
            tracing::info!("no longer accepting connections: finishing the callbacks in flight");
            let _ = stopped_accepting.send(());
        };
        let reporting = Arc::clone(&self.state);
        let reporter = tokio::spawn(async move {
            reporting.conditions().report_every_interval().await;
        });
        let app = http::router(Arc::clone(&self.state));
        let serving = axum::serve(self.listener, app)
            .with_graceful_shutdown(stop_accepting)
            .into_future();
        let drain_bound = self.drain_bound;
        let bounded_drain = async move {
            if stop_accepted.await.is_ok() {
                tokio::time::sleep(drain_bound).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = serving => served?,
            () = bounded_drain => tracing::warn!(
                bound_ms = drain_bound.as_millis() as u64,
                "connections still open after the drain bound: closing them"
            ),
        }
        reporter.abort();
        let forwarder = self.state.forwarder();
        if tokio::time::timeout(NATS_DRAIN_BOUND, forwarder.close())
            .await
            .is_err()
        {
            tracing::warn!("nats did not drain in time: closing anyway");
        }
        Ok(())
    }
}

/// A listening socket on `address` with `SO_REUSEPORT` and an explicit backlog.
fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}
