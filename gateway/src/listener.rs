//! The listening socket: taken over from a running gateway (`GATEWAY_HANDOVER`) or bound
//! with `SO_REUSEPORT` and an explicit backlog, and the handover endpoint served for the next.
//! One gateway per address: the endpoint's name is the lock, a new socket is bound only by
//! the gateway that holds it, and a gateway that finds it held takes the socket over (once
//! NATS carries its callbacks) or does not start.

use std::{io, net::SocketAddr};

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};

#[cfg(target_os = "linux")]
use crate::handover;
use crate::settings::Config;

/// The listen backlog: connections the kernel completes while the event loop is busy. The
/// default (128 on older kernels) overflows under a burst of new connections, and a dropped
/// SYN is retried only after a second, far past any callback's budget. The kernel caps it at
/// `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;
/// The handover endpoint's name, when `GATEWAY_HANDOVER` is on and the port is not 0.
#[cfg(target_os = "linux")]
pub(crate) fn handover_name(config: &Config) -> Option<String> {
    config
        .handover
        .then(|| handover::name(config.listen))
        .flatten()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn handover_name(_config: &Config) -> Option<String> {
    None
}

/// How long a gateway waits for its turn while another one holds the address's handover
/// endpoint and has just gone away (its name not yet released) or is still starting.
#[cfg(target_os = "linux")]
const TURN_BOUND: std::time::Duration = std::time::Duration::from_secs(10);

/// The handover endpoint a gateway serves for the next one.
#[cfg(target_os = "linux")]
pub(crate) use crate::handover::Endpoint;
/// No handover outside Linux.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct Endpoint;

/// Why the gateway did not open its listening socket.
#[derive(Debug, Error)]
pub enum ListenError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// `GATEWAY_LISTEN`.
        address: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A gateway serves the address, and this one could not carry callbacks to workers: it
    /// does not take the socket, and the running one goes on serving.
    #[error("not taking over {address} from the running gateway, which keeps serving: nats is not ready: {cause}")]
    NotReady {
        /// `GATEWAY_LISTEN`.
        address: SocketAddr,
        /// Each NATS server and why it cannot be used.
        cause: String,
    },
    /// Another gateway holds the address and did not hand its socket over: one gateway per
    /// address, so this one does not start.
    #[error("another gateway holds {address} (handover endpoint @{endpoint}) and did not hand its listening socket over: {reason}; not starting a second listener beside it")]
    Busy {
        /// `GATEWAY_LISTEN`.
        address: SocketAddr,
        /// The endpoint's abstract name.
        endpoint: String,
        /// Why the exchange failed.
        reason: String,
    },
}

/// The listening socket and the handover endpoint to serve beside it.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) listener: TcpListener,
    pub(crate) endpoint: Option<Endpoint>,
}

/// Opens the listening socket on `address`, one gateway per address:
/// - without a handover endpoint (`GATEWAY_HANDOVER=off`, port 0, not Linux), a socket of its
///   own with `SO_REUSEPORT`;
/// - when the endpoint's name `handover` is free, this gateway binds it (the lock) and then a
///   socket of its own: a fresh start;
/// - when it is held, a gateway runs on the address (or is starting): the listening socket is
///   taken over from it, but only once `ready` says NATS carries callbacks; when it does not,
///   or the running gateway does not hand its socket over, this gateway does not start and
///   the running one goes on serving.
pub(crate) async fn open_listener<Ready>(
    address: SocketAddr,
    handover: Option<&str>,
    ready: impl FnOnce() -> Ready,
) -> Result<Opened, ListenError>
where
    Ready: std::future::Future<Output = Result<(), String>>,
{
    #[cfg(target_os = "linux")]
    if let Some(name) = handover {
        return open_handing_over(address, name, ready).await;
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (handover, ready);
    Ok(Opened {
        listener: listen(address)?,
        endpoint: None,
    })
}

#[cfg(target_os = "linux")]
async fn open_handing_over<Ready>(
    address: SocketAddr,
    name: &str,
    ready: impl FnOnce() -> Ready,
) -> Result<Opened, ListenError>
where
    Ready: std::future::Future<Output = Result<(), String>>,
{
    let started = tokio::time::Instant::now();
    let mut ready = Some(ready);
    loop {
        match Endpoint::bind(name.to_owned()) {
            Ok(endpoint) => {
                return Ok(Opened {
                    listener: listen(address)?,
                    endpoint: Some(endpoint),
                })
            }
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => {}
            Err(error) => {
                tracing::warn!(endpoint = name, %error, "cannot hold the handover endpoint: binding a listening socket without it (the next upgrade cannot take it over)");
                return Ok(Opened {
                    listener: listen(address)?,
                    endpoint: None,
                });
            }
        }
        // Held: a gateway serves this address, or is starting on it.
        if let Some(ready) = ready.take() {
            if let Err(cause) = ready().await {
                return Err(ListenError::NotReady { address, cause });
            }
        }
        match handover::take_over(name, address).await {
            Ok(handover::TakeOver::Taken { listener, endpoint }) => {
                let endpoint = match endpoint {
                    Some(endpoint) => Some(endpoint),
                    None => Endpoint::bind_released(name.to_owned()).await,
                };
                let listener = TcpListener::from_std(listener)
                    .map_err(|source| ListenError::Bind { address, source })?;
                return Ok(Opened { listener, endpoint });
            }
            Ok(handover::TakeOver::NoneRunning) if started.elapsed() < TURN_BOUND => {
                // Its holder is binding it or has just gone: try again.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Ok(handover::TakeOver::NoneRunning) => {
                return Err(ListenError::Busy {
                    address,
                    endpoint: name.to_owned(),
                    reason: format!(
                        "its name stayed held without an answer for {} s",
                        TURN_BOUND.as_secs()
                    ),
                })
            }
            Err(error) => {
                return Err(ListenError::Busy {
                    address,
                    endpoint: name.to_owned(),
                    reason: error.to_string(),
                })
            }
        }
    }
}

/// Serves the handover `endpoint` for `listener` in a task of its own; `handed_over` is sent
/// once a new gateway holds the socket. Aborting the task releases this process's
/// descriptors of the endpoint and of the socket.
#[cfg(target_os = "linux")]
pub(crate) fn serve_handover(
    endpoint: Endpoint,
    listener: &TcpListener,
    handed_over: tokio::sync::oneshot::Sender<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    use std::os::fd::AsFd;
    let socket = match listener.as_fd().try_clone_to_owned() {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "cannot serve the handover endpoint: the next upgrade cannot take the socket over");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        endpoint.serve(socket).await;
        let _ = handed_over.send(());
    }))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn serve_handover(
    _endpoint: Endpoint,
    _listener: &TcpListener,
    _handed_over: tokio::sync::oneshot::Sender<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// The admin listener's socket (`GATEWAY_ADMIN_LISTEN`): always bound fresh, never handed
/// over, with `SO_REUSEPORT` like the main one, so that during an upgrade the new gateway
/// binds it beside the old one and both serve it until the old one exits.
pub(crate) fn open_admin_listener(address: SocketAddr) -> io::Result<TcpListener> {
    bind_socket(address)
}

/// A listening socket on `address` with `SO_REUSEPORT` and an explicit backlog.
fn listen(address: SocketAddr) -> Result<TcpListener, ListenError> {
    bind_socket(address).map_err(|source| ListenError::Bind { address, source })
}

fn bind_socket(address: SocketAddr) -> io::Result<TcpListener> {
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
