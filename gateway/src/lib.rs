//! openim-gateway: OpenIM callbacks in, NATS requests out, a decision back in time.
//!
//! `main` only wires the parts: [`config::Config`] is parsed first, then
//! [`Gateway::build`] binds the listener and starts connecting to NATS, then
//! [`Gateway::run`] serves until the shutdown future completes. Tests call the same seam on
//! port 0.

pub mod config;
pub mod deadline;
pub mod decision;
pub mod forward;
pub mod http;
pub mod metrics;
pub mod nats_settings;
pub mod policy;
pub mod webhooks;

use std::{future::Future, io, net::SocketAddr, sync::Arc};

use thiserror::Error;
use tokio::net::TcpListener;

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

/// Applies the budgets and policies of a newly read configuration (`SIGHUP`) to a running
/// gateway; callbacks in flight keep the ones they started with.
#[derive(Debug, Clone)]
pub struct Reloader(Arc<AppState>);

impl Reloader {
    /// Takes `config`'s budgets and policies; its other settings need a restart.
    pub fn reload(&self, config: &Config) {
        self.0.reload(config);
    }
}

/// A bound, connected-or-connecting gateway, ready to serve.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Gateway {
    /// Binds the listener and starts the NATS connection. Returns before NATS is reachable:
    /// until it is, callbacks get the default decision and `/readyz` says 503.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    address: config.listen,
                    source,
                })?;
        let metrics = Arc::new(Metrics::new());
        let forwarder =
            Forwarder::connect(&config.nats, &config.subject_prefix, Arc::clone(&metrics)).await?;
        let state = Arc::new(AppState::new(&config, forwarder, metrics));
        Ok(Self { listener, state })
    }

    /// A handle that applies a reloaded policy file to this gateway while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.state))
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight callbacks finish (each is
    /// bounded by its deadline) and drains the NATS connection.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let forwarder = self.state.forwarder().clone();
        let app = http::router(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        forwarder.close().await;
        Ok(())
    }
}
