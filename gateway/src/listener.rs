//! The listening socket: taken over from a running gateway (`GATEWAY_HANDOVER`) or bound
//! with `SO_REUSEPORT` and an explicit backlog, and the handover endpoint served for the next.

use std::{io, net::SocketAddr};

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

/// The running gateway's listening socket, handed over through the endpoint `handover`
/// names, or else a new one.
pub(crate) async fn open_listener(
    address: SocketAddr,
    handover: Option<&str>,
) -> io::Result<TcpListener> {
    #[cfg(target_os = "linux")]
    if let Some(name) = handover {
        if let Some(listener) = handover::take_over(name, address).await {
            return TcpListener::from_std(listener);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = handover;
    listen(address)
}

/// Serves the handover endpoint `name` for `listener` in a task of its own; `handed_over`
/// is sent once a new gateway holds the socket. Aborting the task releases the name and the
/// endpoint's descriptor of the socket.
#[cfg(target_os = "linux")]
pub(crate) fn serve_handover(
    name: String,
    listener: &TcpListener,
    handed_over: tokio::sync::oneshot::Sender<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    use std::os::fd::AsFd;
    let socket = match listener.as_fd().try_clone_to_owned() {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "cannot serve the handover endpoint: the next upgrade shares the port instead");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        if let Some(endpoint) = handover::Endpoint::bind(name, socket).await {
            endpoint.serve().await;
            let _ = handed_over.send(());
        }
    }))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn serve_handover(
    _name: String,
    _listener: &TcpListener,
    _handed_over: tokio::sync::oneshot::Sender<()>,
) -> Option<tokio::task::JoinHandle<()>> {
    None
}

/// The admin listener's socket (`GATEWAY_ADMIN_LISTEN`): always bound fresh, never handed
/// over, with `SO_REUSEPORT` like the main one, so that during an upgrade the new gateway
/// binds it beside the old one and both serve it until the old one exits.
pub(crate) fn open_admin_listener(address: SocketAddr) -> io::Result<TcpListener> {
    listen(address)
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
