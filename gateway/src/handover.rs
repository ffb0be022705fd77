//! The listening socket's handover: an upgrade that never closes the listening socket.
//!
//! A running gateway serves a small endpoint on a Unix socket in Linux's abstract namespace,
//! named from its listen address ([`name`]). A new gateway started on the same address, once
//! it is ready to serve, asks that endpoint for the listening socket, receives it over
//! `SCM_RIGHTS` and accepts on it. Both processes then hold the one socket, with its one
//! accept queue: the old gateway drains and drops its descriptor, and the socket stays open
//! in the new one. Closing a listening socket instead (two sockets sharing the port with
//! `SO_REUSEPORT`, the old one closed after the drain) makes Linux reset every connection
//! still queued on it, and OpenIM's client does not retry a POST that meets a reset.
//!
//! The exchange, on one Unix stream connection:
//! 1. the new gateway connects and sends [`REQUEST`];
//! 2. the running one checks the peer runs as its own user (`SO_PEERCRED`) and sends
//!    [`SOCKET_LINE`] with its listening socket attached;
//! 3. the new gateway checks the peer's user too, and that the socket is a listening TCP
//!    socket bound to the address it was configured for, then answers [`TAKEN`] (or
//!    [`REFUSED`], and binds a socket of its own);
//! 4. on [`TAKEN`], the running gateway starts its shutdown by itself; the new one serves the
//!    endpoint from then on.
//!
//! The endpoint's own listening socket travels with the TCP one (a second descriptor in the
//! same message), so the name is never free while a gateway serves the address: the name is
//! the lock that keeps one gateway per address. A gateway binds a TCP socket of its own only
//! after it bound the name itself; when the name is held, it takes the socket over or does not
//! start (see `listener.rs`). A running gateway of an older version sends the TCP socket
//! alone and releases the name: the new one then binds it once it is free.
//!
//! Abstract names are not files: they vanish with the socket (no stale file after a crash),
//! and they are per network namespace, so two gateways in different containers never see each
//! other's endpoint.

use std::{
    io::{self, IoSlice, IoSliceMut},
    mem::MaybeUninit,
    net::SocketAddr,
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        linux::net::SocketAddrExt,
        unix::net::{
            SocketAddr as UnixAddr, UnixListener as StdUnixListener, UnixStream as StdUnixStream,
        },
    },
    time::Duration,
};

use rustix::net::{
    recvmsg, sendmsg, sockopt, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketType,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{UnixListener, UnixStream},
};

/// What a new gateway asks.
const REQUEST: &[u8] = b"openim-gateway handover 1\n";
/// The running gateway's answer, sent with the listening socket attached.
const SOCKET_LINE: &[u8] = b"listening socket\n";
/// The new gateway holds the socket and serves it.
const TAKEN: &[u8] = b"taken\n";
/// The new gateway did not take the socket: the running one goes on as before.
const REFUSED: &[u8] = b"refused\n";
/// The whole exchange, on either side: it is a few local messages.
const EXCHANGE_BOUND: Duration = Duration::from_secs(2);
/// How long a gateway tries to bind the endpoint's name while another process holds it (the
/// gateway it just took the socket from releases it a moment later).
const BIND_RETRY_BOUND: Duration = Duration::from_secs(3);
const BIND_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// The longest line of the exchange.
const LINE_LIMIT: usize = 64;

/// The endpoint's abstract name for a listen address, or `None` for port 0 (a port chosen
/// at random is never shared by two gateways).
pub fn name(listen: SocketAddr) -> Option<String> {
    (listen.port() != 0).then(|| format!("openim-gateway/handover/{listen}"))
}

fn abstract_address(name: &str) -> io::Result<UnixAddr> {
    UnixAddr::from_abstract_name(name.as_bytes())
}

/// Why a peer is not trusted: it runs as another user than this process.
fn check_peer(stream: impl AsFd) -> io::Result<()> {
    let peer = sockopt::socket_peercred(stream)?;
    let own = rustix::process::getuid();
    if peer.uid == own {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the peer (pid {}) runs as uid {}, this gateway as uid {}",
                peer.pid.as_raw_nonzero(),
                peer.uid.as_raw(),
                own.as_raw()
            ),
        ))
    }
}

/// Whether `socket` is a listening TCP socket bound to `listen`; the listener when it is.
pub fn check_listener(socket: OwnedFd, listen: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = sockopt::socket_domain(&socket)?;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err(invalid("not an IP socket".to_owned()));
    }
    if sockopt::socket_type(&socket)? != SocketType::STREAM
        || sockopt::socket_protocol(&socket)? != Some(rustix::net::ipproto::TCP)
    {
        return Err(invalid("not a TCP socket".to_owned()));
    }
    if !sockopt::socket_acceptconn(&socket)? {
        return Err(invalid("not a listening socket".to_owned()));
    }
    let listener = std::net::TcpListener::from(socket);
    let bound = listener.local_addr()?;
    if bound != listen {
        return Err(invalid(format!("bound to {bound}")));
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Reads one line of at most [`LINE_LIMIT`] bytes (the peer sends nothing after it until
/// answered).
async fn read_line(stream: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut line = Vec::with_capacity(LINE_LIMIT);
    let mut buffer = [0_u8; LINE_LIMIT];
    while !line.ends_with(b"\n") {
        let read = stream.read(&mut buffer[..LINE_LIMIT - line.len()]).await?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        line.extend_from_slice(&buffer[..read]);
        if line.len() >= LINE_LIMIT && !line.ends_with(b"\n") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
    Ok(line)
}

fn unexpected(line: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected message {:?}", String::from_utf8_lossy(line)),
    )
}

/// What a new gateway got from the endpoint.
#[derive(Debug)]
pub enum TakeOver {
    /// Nobody listens on the name (the gateway holding it just went away).
    NoneRunning,
    /// The running gateway's listening socket, and its endpoint when it sent it along (a
    /// gateway of an older version does not: then the name is bound once it releases it).
    Taken {
        /// The listening TCP socket, checked.
        listener: std::net::TcpListener,
        /// The endpoint, to serve for the next upgrade.
        endpoint: Option<Endpoint>,
    },
}

/// The new gateway's side: the running gateway's listening socket on `listen`, or
/// [`TakeOver::NoneRunning`] when nobody listens on `name`; an error when the exchange
/// failed (the running gateway keeps its socket and goes on serving).
pub async fn take_over(name: &str, listen: SocketAddr) -> io::Result<TakeOver> {
    let stream =
        match abstract_address(name).and_then(|address| StdUnixStream::connect_addr(&address)) {
            Ok(stream) => stream,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                tracing::debug!(
                    endpoint = name,
                    "no running gateway to take the listening socket from"
                );
                return Ok(TakeOver::NoneRunning);
            }
            Err(error) => return Err(error),
        };
    let exchange = async {
        check_peer(&stream)?;
        stream.set_nonblocking(true)?;
        let mut stream = UnixStream::from_std(stream)?;
        stream.write_all(REQUEST).await?;
        let (line, mut sockets) = receive_sockets(&stream).await?;
        if line != SOCKET_LINE {
            return Err(unexpected(&line));
        }
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no socket attached",
            ));
        }
        let socket = sockets.remove(0);
        let endpoint = sockets.pop().map(|own| Endpoint::received(name, own));
        let checked = check_listener(socket, listen).and_then(|listener| match endpoint {
            Some(Err(error)) => Err(io::Error::new(
                error.kind(),
                format!("the handover endpoint sent along: {error}"),
            )),
            Some(Ok(endpoint)) => Ok((listener, Some(endpoint))),
            None => Ok((listener, None)),
        });
        match checked {
            Ok((listener, endpoint)) => {
                if let Err(error) = stream.write_all(TAKEN).await {
                    // It went away: the socket is ours alone now, which is just as good.
                    tracing::debug!(%error, "the running gateway did not read the acknowledgement");
                }
                Ok(TakeOver::Taken { listener, endpoint })
            }
            Err(error) => {
                let _ = stream.write_all(REFUSED).await;
                Err(io::Error::new(
                    error.kind(),
                    format!(
                        "the socket handed over is not a listening TCP socket on {listen}: {error}"
                    ),
                ))
            }
        }
    };
    match tokio::time::timeout(EXCHANGE_BOUND, exchange).await {
        Ok(Ok(taken)) => {
            tracing::info!(address = %listen, "took over the listening socket from the running gateway");
            Ok(taken)
        }
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the running gateway did not hand its socket over within {} ms",
                EXCHANGE_BOUND.as_millis()
            ),
        )),
    }
}

/// Receives one message and the descriptors attached to it (at most two are kept: the
/// listening socket and the endpoint's own; any beyond are closed).
async fn receive_sockets(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    stream
        .async_io(Interest::READABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut buffer = [0_u8; LINE_LIMIT];
            let received = recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut buffer)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            let mut sockets = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(descriptors) = message {
                    for descriptor in descriptors {
                        if sockets.len() < 2 {
                            sockets.push(descriptor);
                        }
                    }
                }
            }
            if received.bytes == 0 && sockets.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok((buffer[..received.bytes.min(LINE_LIMIT)].to_vec(), sockets))
        })
        .await
}

/// Sends [`SOCKET_LINE`] with `listener` and the endpoint's own socket attached.
async fn send_sockets(
    stream: &UnixStream,
    listener: BorrowedFd<'_>,
    endpoint: BorrowedFd<'_>,
) -> io::Result<()> {
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = SendAncillaryBuffer::new(&mut space);
            let descriptors = [listener, endpoint];
            if !control.push(SendAncillaryMessage::ScmRights(&descriptors)) {
                return Err(io::Error::other("no room for the descriptor"));
            }
            Ok(sendmsg(
                stream,
                &[IoSlice::new(SOCKET_LINE)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        })
        .await?;
    if sent == SOCKET_LINE.len() {
        Ok(())
    } else {
        Err(io::ErrorKind::WriteZero.into())
    }
}

/// The running gateway's endpoint: the name, bound (which is the lock on the address).
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    listener: UnixListener,
}

impl Endpoint {
    /// Binds `name`, once: `AddrInUse` when another process holds it (a gateway runs, or
    /// starts, on the same address).
    pub fn bind(name: String) -> io::Result<Self> {
        let listener = abstract_address(&name)
            .and_then(|address| StdUnixListener::bind_addr(&address))
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                UnixListener::from_std(listener)
            })?;
        tracing::debug!(endpoint = name, "holding the handover endpoint");
        Ok(Self { name, listener })
    }

    /// Binds `name` once the gateway of an older version this one took the socket from has
    /// released it: tries again for a few seconds while it is held; `None`, with a warning,
    /// when it stays taken.
    pub async fn bind_released(name: String) -> Option<Self> {
        let started = tokio::time::Instant::now();
        loop {
            match Self::bind(name.clone()) {
                Ok(endpoint) => return Some(endpoint),
                Err(error)
                    if error.kind() == io::ErrorKind::AddrInUse
                        && started.elapsed() < BIND_RETRY_BOUND =>
                {
                    tokio::time::sleep(BIND_RETRY_PAUSE).await;
                }
                Err(error) => {
                    tracing::warn!(endpoint = name, %error, "cannot serve the handover endpoint: the next upgrade cannot take the socket over");
                    return None;
                }
            }
        }
    }

    /// The endpoint a running gateway sent along with its socket: a listening Unix stream
    /// socket bound to `name`.
    fn received(name: &str, socket: OwnedFd) -> io::Result<Self> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
        if sockopt::socket_domain(&socket)? != AddressFamily::UNIX
            || sockopt::socket_type(&socket)? != SocketType::STREAM
        {
            return Err(invalid("not a Unix stream socket"));
        }
        if !sockopt::socket_acceptconn(&socket)? {
            return Err(invalid("not a listening socket"));
        }
        let listener = StdUnixListener::from(socket);
        let bound = listener.local_addr()?;
        if bound.as_abstract_name() != Some(name.as_bytes()) {
            return Err(invalid("bound to another name"));
        }
        listener.set_nonblocking(true)?;
        Ok(Self {
            name: name.to_owned(),
            listener: UnixListener::from_std(listener)?,
        })
    }

    /// Serves until a new gateway takes `socket` (the listening socket, a descriptor of its
    /// own). This process's descriptors of the endpoint and of the socket are closed when this
    /// returns, or when the future is dropped (the gateway stops accepting); after a handover
    /// the new gateway holds both.
    pub async fn serve(self, socket: OwnedFd) {
        loop {
            let accepted = self.listener.accept().await;
            let mut stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(endpoint = self.name, %error, "handover endpoint: accept failed");
                    tokio::time::sleep(BIND_RETRY_PAUSE).await;
                    continue;
                }
            };
            match tokio::time::timeout(EXCHANGE_BOUND, self.hand_over(&mut stream, socket.as_fd()))
                .await
            {
                Ok(Ok(true)) => {
                    let peer = sockopt::socket_peercred(&stream)
                        .map(|peer| peer.pid.as_raw_nonzero().get())
                        .unwrap_or_default();
                    tracing::info!(
                        new_gateway_pid = peer,
                        "handed the listening socket to a new gateway: shutting down"
                    );
                    return;
                }
                Ok(Ok(false)) => tracing::warn!(
                    "a new gateway refused the listening socket handed over: still serving"
                ),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "handover refused or failed: still serving");
                }
                Err(_) => tracing::warn!("a handover did not finish in time: still serving"),
            }
        }
    }

    /// One exchange: whether the peer took the socket.
    async fn hand_over(&self, stream: &mut UnixStream, socket: BorrowedFd<'_>) -> io::Result<bool> {
        check_peer(&*stream)?;
        let request = read_line(stream).await?;
        if request != REQUEST {
            return Err(unexpected(&request));
        }
        send_sockets(stream, socket, self.listener.as_fd()).await?;
        match read_line(stream).await?.as_slice() {
            TAKEN => Ok(true),
            REFUSED => Ok(false),
            other => Err(unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_has_no_endpoint() {
        assert_eq!(name("127.0.0.1:0".parse().unwrap()), None);
        assert_eq!(
            name("0.0.0.0:10006".parse().unwrap()).as_deref(),
            Some("openim-gateway/handover/0.0.0.0:10006")
        );
    }

    #[test]
    fn only_a_listening_tcp_socket_on_the_configured_address_is_taken() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let same = OwnedFd::from(listener.try_clone().unwrap());
        assert!(check_listener(same, address).is_ok());
        let elsewhere = OwnedFd::from(listener.try_clone().unwrap());
        let refused = check_listener(elsewhere, other).unwrap_err();
        assert!(refused.to_string().contains("bound to"), "{refused}");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_address = udp.local_addr().unwrap();
        assert!(check_listener(OwnedFd::from(udp), udp_address).is_err());
        let connected = std::net::TcpStream::connect(address).unwrap();
        let local = connected.local_addr().unwrap();
        let refused = check_listener(OwnedFd::from(connected), local).unwrap_err();
        assert!(refused.to_string().contains("not a listening"), "{refused}");
    }

    #[tokio::test]
    async fn a_running_endpoint_hands_its_socket_and_its_name_over_and_the_name_stays_held() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let name = format!(
            "openim-gateway/handover-test/{}/{address}",
            std::process::id()
        );
        let endpoint = Endpoint::bind(name.clone()).unwrap();
        assert_eq!(
            Endpoint::bind(name.clone()).unwrap_err().kind(),
            io::ErrorKind::AddrInUse,
            "the name is the lock on the address"
        );
        let socket = listener.as_fd().try_clone_to_owned().unwrap();
        let serving = tokio::spawn(endpoint.serve(socket));
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(
            take_over(&name, other).await.is_err(),
            "a socket on another address is refused"
        );
        let Ok(TakeOver::Taken {
            listener: taken,
            endpoint: Some(next),
        }) = take_over(&name, address).await
        else {
            panic!("not taken over with the endpoint");
        };
        assert_eq!(taken.local_addr().unwrap(), address);
        serving
            .await
            .expect("the endpoint ends once it handed the socket over");
        drop(listener);
        // The socket lives on in the taker: a connection is queued on it and accepted.
        let client = std::net::TcpStream::connect(address).unwrap();
        taken.set_nonblocking(false).unwrap();
        let (accepted, _) = taken.accept().unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
        // So does the name: nobody else can bind it, and the taker serves the next upgrade.
        assert_eq!(
            Endpoint::bind(name.clone()).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        let again = tokio::spawn(next.serve(taken.as_fd().try_clone_to_owned().unwrap()));
        let Ok(TakeOver::Taken {
            listener: last,
            endpoint: Some(last_endpoint),
        }) = take_over(&name, address).await
        else {
            panic!("the second upgrade did not take over");
        };
        again.await.unwrap();
        drop((taken, last, last_endpoint));
        assert!(
            matches!(take_over(&name, address).await, Ok(TakeOver::NoneRunning)),
            "the name is free once every holder is gone"
        );
    }
}
