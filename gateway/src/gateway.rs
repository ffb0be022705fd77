//! The gateway as a whole: [`Gateway::build`] connects and opens the listener,
//! [`Gateway::run`] serves until shutdown and drains; [`Reloader`] applies a new configuration.

use std::{future::Future, io, net::SocketAddr, sync::Arc, time::Duration};

use openim_gateway_proto::Command;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::{
    http,
    http::AppState,
    listener::{handover_name, open_admin_listener, open_listener, serve_handover},
    metrics::Metrics,
    nats::{Forwarder, SetupError},
    serve,
    serve::ServeLimits,
    settings::Config,
    startup::{check_max_payload_once_connected, connection_bound, warn_unserved},
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
    /// The admin listen address could not be bound.
    #[error("cannot listen on {address} (GATEWAY_ADMIN_LISTEN): {source}")]
    AdminBind {
        /// `GATEWAY_ADMIN_LISTEN`.
        address: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// `GATEWAY_MAX_BODY_BYTES` allows bodies the NATS server would refuse to carry.
    #[error(
        "GATEWAY_MAX_BODY_BYTES=\"{max_body_bytes}\" is not valid: must be at most the nats server's max_payload ({max_payload})"
    )]
    BodyAboveMaxPayload {
        /// The setting.
        max_body_bytes: usize,
        /// The server's limit, from its INFO.
        max_payload: usize,
    },
    /// The NATS client could not be set up.
    #[error(transparent)]
    Nats(#[from] SetupError),
}

/// How long the start waits for NATS before opening the port anyway: long enough for a NATS
/// that is up to be connected (a few milliseconds), short enough that a NATS outage at start
/// costs OpenIM only this much before the defaults flow.
const FIRST_CONNECT_WAIT: Duration = Duration::from_secs(2);
/// After the shutdown delay, how long callbacks already accepted may still take: the longest
/// budget, plus room for the answer to be written.
const DRAIN_SLACK: Duration = Duration::from_secs(1);
/// The longest the NATS connection may take to flush on the way out.
const NATS_DRAIN_BOUND: Duration = Duration::from_secs(2);

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
    /// With `GATEWAY_ADMIN_LISTEN`: the listener of the status page and `/metrics`.
    admin: Option<TcpListener>,
    /// The handover endpoint's name, served while the gateway accepts (`GATEWAY_HANDOVER`).
    handover: Option<String>,
    state: Arc<AppState>,
    /// From SIGTERM to no longer accepting (`GATEWAY_SHUTDOWN_DELAY_MS`).
    shutdown_delay: Duration,
    /// What the accept loop enforces.
    limits: ServeLimits,
    /// Counters the accept loop updates.
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// Connects to NATS (returning once connected, or after [`FIRST_CONNECT_WAIT`] if NATS
    /// is not reachable: then callbacks get the default decision and `/readyz` says 503
    /// until it is), then, with everything else ready, opens the listener.
    ///
    /// The listener is the running gateway's own listening socket when one serves the same
    /// address and hands it over (`GATEWAY_HANDOVER`, see [`crate::handover`]): the old one then
    /// drains and exits by itself, and no queued connection is reset. Otherwise a new socket
    /// is bound, with `SO_REUSEPORT`, so that a new gateway can still share the port while an
    /// old one drains. Every check that can stop the start comes before: a new gateway that
    /// fails to start leaves the running one serving, untouched.
    pub async fn build(config: Config) -> Result<Self, BuildError> {
        let metrics = Arc::new(Metrics::new());
        let forwarder =
            Forwarder::connect(&config.nats, &config.subject_prefix, Arc::clone(&metrics)).await?;
        if !forwarder.wait_connected(FIRST_CONNECT_WAIT).await {
            tracing::warn!(
                waited_ms = FIRST_CONNECT_WAIT.as_millis() as u64,
                "nats is not reachable yet: opening the port anyway, callbacks get the default decision until it is"
            );
        }
        let forwarder = match &config.after_stream {
            Some(name) => {
                forwarder
                    .with_after_stream(name, config.after_stream_max_bytes)
                    .await?
            }
            None => forwarder,
        };
        if !forwarder.is_connected() {
            tokio::spawn(check_max_payload_once_connected(
                forwarder.clone(),
                config.max_body_bytes,
            ));
        } else if config.max_body_bytes > forwarder.max_payload() {
            return Err(BuildError::BodyAboveMaxPayload {
                max_body_bytes: config.max_body_bytes,
                max_payload: forwarder.max_payload(),
            });
        }
        if let Some(webhooks) = &config.openim_webhooks {
            // By the file's key: one key may drive two commands (an old and a new name), and
            // a worker serving either serves the key.
            let mut enabled: Vec<(&str, Vec<&'static Command>)> = Vec::new();
            for callback in webhooks
                .callbacks
                .iter()
                .filter(|callback| callback.enabled)
            {
                match enabled.iter_mut().find(|(key, _)| *key == callback.key) {
                    Some((_, commands)) => commands.push(callback.command),
                    None => enabled.push((&callback.key, vec![callback.command])),
                }
            }
            let enabled = enabled.into_iter().map(|(_, commands)| commands).collect();
            tokio::spawn(warn_unserved(
                forwarder.clone(),
                enabled,
                config.after_stream.clone(),
            ));
        }
        let limits = ServeLimits {
            max_connections: connection_bound(config.max_connections),
            header_timeout: config.callback_timeout,
        };
        let state = Arc::new(AppState::new(&config, forwarder, Arc::clone(&metrics)));
        let admin = config
            .admin_listen
            .map(|address| {
                open_admin_listener(address)
                    .map_err(|source| BuildError::AdminBind { address, source })
            })
            .transpose()?;
        let handover = handover_name(&config);
        let listener = open_listener(config.listen, handover.as_deref())
            .await
            .map_err(|source| BuildError::Bind {
                address: config.listen,
                source,
            })?;
        Ok(Self {
            listener,
            admin,
            handover,
            state,
            shutdown_delay: config.shutdown_delay,
            limits,
            metrics,
        })
    }

    /// A handle that applies a reloaded policy file to this gateway while it runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::clone(&self.state))
    }

    /// The bound address (the real port when the configuration asked for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's bound address, with `GATEWAY_ADMIN_LISTEN`.
    pub fn admin_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.admin.as_ref().map(TcpListener::local_addr)
    }

    /// Serves until `shutdown` completes or a new gateway takes the listening socket over,
    /// then drains:
    /// 1. at once, `/readyz` answers 503 and every answer carries `Connection: close`, so
    ///    that clients move to a new connection (to a new gateway, after an upgrade);
    /// 2. for the shutdown delay, it goes on accepting and answering as before;
    /// 3. then it stops accepting, finishes the callbacks in flight (each bounded by its
    ///    deadline; the whole step by the longest budget, whatever clients do) and drains
    ///    the NATS connection.
    ///
    /// The handover endpoint is served until the gateway stops accepting (during the shutdown
    /// delay too, so that a gateway started after a SIGTERM still takes the socket), and its
    /// descriptor of the socket is closed at the same moment as the accept loop's.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> io::Result<()> {
        let state = Arc::clone(&self.state);
        let (stopped_accepting, stop_accepted) = tokio::sync::oneshot::channel();
        let (handed_over, taken) = tokio::sync::oneshot::channel::<()>();
        let endpoint = self
            .handover
            .clone()
            .and_then(|name| serve_handover(name, &self.listener, handed_over));
        let shutdown_delay = self.shutdown_delay;
        let stop_accepting = async move {
            tokio::select! {
                () = shutdown => {}
                Ok(()) = taken => {}
            }
            state.start_draining();
            tracing::info!(
                delay_ms = shutdown_delay.as_millis() as u64,
                "shutting down: /readyz is 503, still answering during the shutdown delay"
            );
            tokio::time::sleep(shutdown_delay).await;
            if let Some(endpoint) = endpoint {
                endpoint.abort();
                let _ = endpoint.await;
            }
            tracing::info!("no longer accepting connections: finishing the callbacks in flight");
            let _ = stopped_accepting.send(());
        };
        let reporting = Arc::clone(&self.state);
        let reporter = tokio::spawn(async move {
            reporting.conditions().report_every_interval().await;
        });
        let probe = tokio::spawn(http::probe_nats(Arc::clone(&self.state)));
        // With an admin listener, the status page and /metrics are served there (until the
        // process exits, the drain included) and OpenIM's listener serves only callbacks and
        // the probes.
        let (app, admin) = match self.admin {
            Some(listener) => {
                let admin_app = http::admin_router(Arc::clone(&self.state));
                let admin = tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, admin_app).await {
                        tracing::error!(%error, "the admin listener stopped");
                    }
                });
                (http::openim_router(Arc::clone(&self.state)), Some(admin))
            }
            None => (http::router(Arc::clone(&self.state)), None),
        };
        let serving = serve::serve(
            self.listener,
            app,
            self.limits,
            http::protocol_error_answer(&self.state),
            Arc::clone(&self.metrics),
            &self.state.conditions().accept_failed,
            stop_accepting,
        );
        // Read now, not at start: a reload may have raised a command's timeout.
        let state = Arc::clone(&self.state);
        let bounded_drain = async move {
            if stop_accepted.await.is_ok() {
                let bound = state.longest_timeout() + DRAIN_SLACK;
                tokio::time::sleep(bound).await;
                bound
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            () = serving => {}
            drain_bound = bounded_drain => tracing::warn!(
                bound_ms = drain_bound.as_millis() as u64,
                "connections still open after the drain bound: closing them"
            ),
        }
        reporter.abort();
        probe.abort();
        if let Some(admin) = admin {
            admin.abort();
        }
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
