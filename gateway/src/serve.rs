//! Serving HTTP/1.1 connections: the accept loop and what it owes OpenIM beyond the router.
//!
//! - **Slow headers time out from a request's first byte**, never while a kept-alive
//!   connection idles: OpenIM's Go client keeps idle connections forever and does not retry a
//!   POST that meets a connection closed under it, so an idle connection is left alone, and a
//!   client that starts a request and stalls (slowloris) is cut off. hyper's own header
//!   timeout starts when the connection becomes idle, which would close idle connections.
//! - **Connections are bounded.** At the bound, the connection idle the longest makes room,
//!   so that a callback on a fresh connection is still answered; a connection is refused only
//!   when none is idle.
//! - **Open connections and evictions are counted**
//!   (`openim_gateway_open_connections`, `openim_gateway_connections_evicted_total`): an
//!   evicted idle OpenIM connection can fail an operation if OpenIM picks it at that moment.
//! - **Accept errors are logged and counted** (at the open-file limit, accept fails and the
//!   callbacks waiting in the backlog are late while every other metric looks fine).
//! - **A request hyper cannot parse** (malformed, too many or too large headers) gets a
//!   valid OpenIM answer instead of hyper's empty 400/431/414: the bytes hyper writes for it
//!   are replaced on their way to the socket.
//! - **Stopping** only stops accepting: connections already open go on being served (their
//!   answers carry `Connection: close` while the gateway drains) until their client closes
//!   them or the process exits at the drain bound.
//!
//! This module knows nothing about callbacks: it serves whatever router it is given.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{body::Body, Router};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Notify,
    time::Instant,
};
use tower::ServiceExt;

use crate::{conditions::Condition, metrics::Metrics};

/// How long a connection idles (every answer flushed) before its HTTP state is dropped and
/// only its socket kept: hyper holds a read and a write buffer of 8 KiB each per connection,
/// which thousands of idle kept-alive connections would otherwise keep. A connection that
/// carries a callback more often than this keeps its state.
const PARK_AFTER: Duration = Duration::from_millis(250);

/// After a failed accept, the pause before the next: the failure (no file descriptors) does
/// not go away in a tight loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(5);

/// The whole HTTP/1.1 response (status line, headers, body) to send for a request hyper
/// refused while parsing it, given hyper's status (400, 431 or 414).
pub type ProtocolErrorAnswer = Arc<dyn Fn(u16) -> Vec<u8> + Send + Sync>;

/// What the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Open connections at most; at the bound, the longest idle one is closed to make room.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// From an answer to the next request's first byte: past it the connection is closed
    /// (`GATEWAY_IDLE_TIMEOUT_MS`); `None`, never.
    pub idle_timeout: Option<Duration>,
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Between requests: nothing received since the last answer.
    Idle = 0,
    /// Bytes of a request have arrived; its headers are not complete yet.
    ReadingHeaders = 1,
    /// The router has the request.
    Handling = 2,
}

/// One connection as the accept loop sees it.
#[derive(Debug)]
struct Connection {
    phase: AtomicU8,
    /// When the phase last changed, in milliseconds since the server started.
    since_ms: AtomicU64,
    /// Wakes the header watchdog when a request starts arriving.
    request_started: Notify,
    /// Asks the connection to close (to make room for a new one).
    evict: Notify,
    /// Asked to close and not closed yet: it no longer counts against the bound, and is not
    /// picked again.
    evicting: AtomicBool,
    /// Answers the router has produced on this connection.
    answers: AtomicU64,
    /// Of them, how many were flushed to the socket (hyper holds none of their bytes).
    flushed: AtomicU64,
    /// The server's clock origin.
    epoch: Instant,
}

impl Connection {
    fn new(epoch: Instant) -> Self {
        let connection = Self {
            phase: AtomicU8::new(Phase::Idle as u8),
            since_ms: AtomicU64::new(0),
            request_started: Notify::new(),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
            answers: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            epoch,
        };
        connection.stamp();
        connection
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::ReadingHeaders,
            _ => Phase::Handling,
        }
    }

    fn stamp(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(now, Ordering::Relaxed);
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.stamp();
    }

    /// Bytes arrived: the first ones after an answer start a request, and its header clock.
    fn received(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Idle as u8,
                Phase::ReadingHeaders as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.stamp();
            self.request_started.notify_one();
        }
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since_ms.load(Ordering::Relaxed))
    }

    /// The router answered: counted before the phase turns idle, so that an idle connection
    /// with an answer still to flush is never parked.
    fn answered(&self) {
        self.answers.fetch_add(1, Ordering::SeqCst);
        self.set(Phase::Idle);
    }

    /// Whether every answer was flushed.
    fn settled(&self) -> bool {
        self.flushed.load(Ordering::SeqCst) == self.answers.load(Ordering::SeqCst)
    }

    /// Completes once the connection has idled `delay` with every answer flushed.
    async fn parkable(&self, delay: Duration) {
        loop {
            if self.phase() == Phase::Idle && self.settled() {
                let since = self.since();
                tokio::time::sleep_until(since + delay).await;
                if self.phase() == Phase::Idle && self.since() == since && self.settled() {
                    return;
                }
            } else {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// Completes when the connection has idled `timeout` since its last answer (never when
    /// `timeout` is `None`).
    async fn idle_overdue(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        loop {
            if self.phase() != Phase::Idle {
                // Busy: the idle clock starts again at its answer.
                tokio::time::sleep(timeout).await;
                continue;
            }
            let idle_since = self.since();
            tokio::time::sleep_until(idle_since + timeout).await;
            if self.phase() == Phase::Idle && self.since() == idle_since {
                return;
            }
        }
    }

    /// Completes when a request's headers have taken longer than `timeout`.
    async fn headers_overdue(&self, timeout: Duration) {
        loop {
            self.request_started.notified().await;
            loop {
                if self.phase() != Phase::ReadingHeaders {
                    break;
                }
                let started = self.since();
                tokio::time::sleep_until(started + timeout).await;
                if self.phase() == Phase::ReadingHeaders && self.since() == started {
                    return;
                }
            }
        }
    }
}

/// The open connections, for the bound and the eviction.
#[derive(Debug, Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// Signalled when the last connection closes.
    emptied: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        // Single inserts and removes: the map stays consistent across a panic.
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a new connection if there is room, making room by evicting the connection
    /// idle the longest when at `bound`; `None` when every connection is busy.
    fn admit(self: &Arc<Self>, bound: usize, epoch: Instant) -> Option<Registered> {
        let mut connections = self.lock();
        let evicting = |connection: &&Arc<Connection>| connection.evicting.load(Ordering::Relaxed);
        let closing = connections.values().filter(evicting).count();
        if connections.len() - closing >= bound {
            // One already asked to close is not picked again: a burst of new connections
            // makes room for each of them, not once for all.
            let oldest_idle = connections
                .values()
                .filter(|connection| connection.phase() == Phase::Idle && !evicting(connection))
                .min_by_key(|connection| connection.since_ms.load(Ordering::Relaxed))?;
            oldest_idle.evicting.store(true, Ordering::Relaxed);
            oldest_idle.evict.notify_one();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(epoch));
        connections.insert(id, Arc::clone(&connection));
        Some(Registered {
            registry: Arc::clone(self),
            id,
            connection,
        })
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A connection's place in the registry, given up on drop.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
    connection: Arc<Connection>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut connections = self.registry.lock();
        connections.remove(&self.id);
        if connections.is_empty() {
            self.registry.emptied.notify_waiters();
        }
    }
}

/// Serves `router` on `listener` until `stop` completes, then stops accepting and returns
/// once every open connection has closed (the caller bounds that wait).
///
/// Stopping drops this process's descriptor of the listening socket. After a handover the
/// new gateway holds another descriptor of the same socket, so the socket stays open and the
/// connections queued on it are accepted there; without one, the socket closes and Linux
/// resets what is still queued on it.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    protocol_error: ProtocolErrorAnswer,
    metrics: Arc<Metrics>,
    accept_failed: &Condition,
    stop: impl Future<Output = ()>,
) {
    let registry = Arc::new(Registry::default());
    let epoch = Instant::now();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                metrics.accept_failed();
                accept_failed.note("", &error);
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(registered) = registry.admit(limits.max_connections, epoch) else {
            metrics.connection_refused();
            accept_failed.note("", &"every connection is busy at GATEWAY_MAX_CONNECTIONS");
            drop(stream);
            continue;
        };
        // Answers are one write each; Nagle's algorithm would only hold them back.
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            router.clone(),
            limits,
            Arc::clone(&protocol_error),
            registered,
            Arc::clone(&metrics),
        ));
    }
    drop(listener);
    let emptied = registry.emptied.notified();
    if registry.len() > 0 {
        tracing::info!(
            open = registry.len(),
            "waiting for open connections to close"
        );
        emptied.await;
    }
}

/// Why a connection's HTTP state ended.
enum Ended {
    /// The connection is done: closed, timed out, evicted.
    Closed,
    /// It idles: its socket is kept and its HTTP state dropped, until bytes arrive.
    Parked,
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ServeLimits,
    protocol_error: ProtocolErrorAnswer,
    registered: Registered,
    metrics: Arc<Metrics>,
) {
    let _open = metrics.connection_opened();
    let connection = Arc::clone(&registered.connection);
    let mut watched = Watched {
        stream,
        connection: Arc::clone(&connection),
        protocol_error,
        replacement: None,
        unread: Bytes::new(),
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true);
    loop {
        let service_connection = Arc::clone(&connection);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let router = router.clone();
            let connection = Arc::clone(&service_connection);
            connection.set(Phase::Handling);
            let answering: Answering = Box::pin(async move {
                let response = router.oneshot(request.map(Body::new)).await;
                connection.answered();
                response
            });
            answering
        });
        // On the heap: a parked connection keeps none of hyper's state (its buffers, 16 KiB).
        let mut serving = Box::new(builder.serve_connection(TokioIo::new(watched), service));
        // Boxed too: the timers of a serving connection are not kept while it is parked.
        let ended = Box::pin(async {
            tokio::select! {
            // hyper first: bytes that arrived are read (and the phase leaves idle) before a
            // timer may close the connection; parked rather than closed for idling, where
            // the socket gets a last look (the idle timeout closes an active connection only
            // when its answer cannot be written out, its client not reading).
            biased;
            // The client closed, or the answer said `Connection: close`.
            _ = std::future::poll_fn(|cx| serving.poll_without_shutdown(cx)) => Ended::Closed,
            () = connection.parkable(PARK_AFTER) => Ended::Parked,
            () = connection.headers_overdue(limits.header_timeout) => {
                tracing::debug!("a request's headers took too long: closing its connection");
                Ended::Closed
            }
            () = connection.idle_overdue(limits.idle_timeout) => {
                tracing::debug!("idle past GATEWAY_IDLE_TIMEOUT_MS: closing the connection");
                Ended::Closed
            }
            () = evicted(&connection) => {
                metrics.connection_evicted();
                tracing::debug!("closing the connection idle the longest to make room");
                Ended::Closed
            }
            }
        })
        .await;
        if matches!(ended, Ended::Closed) {
            break;
        }
        // Idle, every answer flushed: hyper holds no bytes to write, and what it read ahead
        // (pipelined bytes) is handed back.
        let parts = serving.into_parts();
        watched = parts.io.into_inner();
        // A copy: the bytes hyper hands back are a view of its whole read buffer, which an
        // empty view would keep alive.
        watched.unread = Bytes::copy_from_slice(&parts.read_buf);
        drop(parts.read_buf);
        if !watched.unread.is_empty() {
            continue;
        }
        let woken = tokio::select! {
            // Bytes first: a request that has arrived is served, never closed under.
            biased;
            // Bytes (or the client's close): hyper reads them.
            readable = watched.stream.readable() => readable.is_ok(),
            () = connection.idle_overdue(limits.idle_timeout) => {
                // The last look before closing: bytes already queued are a request.
                let waiting = has_bytes_waiting(&watched.stream);
                if !waiting {
                    tracing::debug!("idle past GATEWAY_IDLE_TIMEOUT_MS: closing the connection");
                }
                waiting
            }
            () = evicted(&connection) => {
                metrics.connection_evicted();
                tracing::debug!("closing the connection idle the longest to make room");
                false
            }
        };
        if !woken {
            break;
        }
    }
    drop(registered);
}

/// Whether bytes wait in the socket's receive queue now (peeked, not read).
fn has_bytes_waiting(stream: &TcpStream) -> bool {
    let mut byte = [0_u8; 1];
    let mut buf = ReadBuf::new(&mut byte);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    matches!(stream.poll_peek(&mut cx, &mut buf), Poll::Ready(Ok(count)) if count > 0)
}

/// The router's answer, boxed so that hyper's connection can be taken apart at rest.
type Answering = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

/// Completes when the connection is asked to make room while it idles.
async fn evicted(connection: &Connection) {
    loop {
        connection.evict.notified().await;
        if connection.phase() == Phase::Idle {
            return;
        }
        // A request came in first: it stays, and counts again.
        connection.evicting.store(false, Ordering::Relaxed);
    }
}

/// A TCP stream that tells its connection when request bytes arrive, and replaces hyper's
/// empty answer to a request it could not parse.
struct Watched {
    stream: TcpStream,
    connection: Arc<Connection>,
    protocol_error: ProtocolErrorAnswer,
    /// The answer being written instead of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Bytes hyper had read ahead when the connection was parked, read again first.
    unread: Bytes,
}

impl Watched {
    /// hyper's own answer to a request it refused while parsing: written while the router
    /// never saw the request, with a 4xx status line.
    fn refused_status(&self, buf: &[u8]) -> Option<u16> {
        if self.connection.phase() != Phase::ReadingHeaders || !buf.starts_with(b"HTTP/1.1 4") {
            return None;
        }
        std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
    }

    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some((bytes, written)) = &mut self.replacement else {
            return Poll::Ready(Ok(()));
        };
        while *written < bytes.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(count)) => *written += count,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let count = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread.split_to(count));
            self.connection.received();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.received();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.replacement.is_none() {
            if let Some(status) = self.refused_status(buf) {
                let answer = (self.protocol_error)(status);
                self.replacement = Some((answer, 0));
            }
        }
        if self.replacement.is_some() {
            // hyper's bytes are dropped: what it meant is in the replacement.
            return self.poll_replacement(cx).map_ok(|()| buf.len());
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        // Answers produced before this flush: hyper wrote them out before it flushed.
        let answers = self.connection.answers.load(Ordering::SeqCst);
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(flushed, Poll::Ready(Ok(()))) {
            self.connection.flushed.store(answers, Ordering::SeqCst);
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_clock_starts_with_the_first_byte_after_an_answer() {
        let connection = Connection::new(Instant::now());
        assert_eq!(connection.phase(), Phase::Idle);
        connection.received();
        assert_eq!(connection.phase(), Phase::ReadingHeaders);
        connection.set(Phase::Handling);
        connection.received();
        assert_eq!(
            connection.phase(),
            Phase::Handling,
            "body bytes are not a new request"
        );
        connection.set(Phase::Idle);
        assert_eq!(connection.phase(), Phase::Idle);
    }

    #[test]
    fn at_the_bound_the_longest_idle_connection_makes_room() {
        let registry = Arc::new(Registry::default());
        let epoch = Instant::now();
        let first = registry.admit(2, epoch).unwrap();
        let second = registry.admit(2, epoch).unwrap();
        second.connection.set(Phase::Handling);
        let third = registry.admit(2, epoch);
        assert!(third.is_some(), "the idle connection makes room");
        // Its eviction was signalled: a waiter sees the stored permit at once.
        let evicted = first.connection.evict.notified();
        tokio::pin!(evicted);
        assert!(futures::FutureExt::now_or_never(evicted).is_some());
        first.connection.set(Phase::Handling);
        first.connection.evicting.store(false, Ordering::Relaxed);
        drop(third);
        assert!(
            registry.admit(2, epoch).is_none(),
            "every connection busy: refused"
        );
    }

    #[test]
    fn a_burst_at_the_bound_makes_room_once_per_new_connection() {
        let registry = Arc::new(Registry::default());
        let epoch = Instant::now();
        let _idle: Vec<_> = (0..3).map(|_| registry.admit(3, epoch).unwrap()).collect();
        // Two new connections before any evicted one has closed: two distinct ones go.
        let _fourth = registry.admit(3, epoch).unwrap();
        let _fifth = registry.admit(3, epoch).unwrap();
        let asked = registry
            .lock()
            .values()
            .filter(|connection| connection.evicting.load(Ordering::Relaxed))
            .count();
        assert_eq!(asked, 2);
    }
}
