//! `openim-gateway healthcheck`: asks a running gateway's `/readyz` on its `GATEWAY_LISTEN`
//! address and says whether it is ready, as an exit code. It is the container healthcheck of
//! an image that has no shell and no HTTP client: Docker and Compose run the binary itself.
//!
//! A gateway listening on every interface (`0.0.0.0`, `[::]`) is asked on the loopback
//! address of the same family. Everything is bounded by [`TIMEOUT`]: a gateway that accepts
//! but does not answer is not ready.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// The whole exchange: connecting, writing the request, reading the status line.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The exit code when `/readyz` answered 200.
pub const READY: u8 = 0;
/// The exit code otherwise: nothing listens, no answer in time, or an answer other than 200.
pub const NOT_READY: u8 = 1;

/// The address to ask for a gateway listening on `listen`: the unspecified address becomes
/// the loopback address of its family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Asks `/readyz` of the gateway listening on `listen` and returns the exit code
/// ([`READY`] or [`NOT_READY`]), after one line on stderr when it is not ready.
pub fn run(listen: SocketAddr) -> u8 {
    let address = target(listen);
    match ask(address) {
        Ok(200) => READY,
        Ok(status) => {
            // A closed stderr is no reason to panic: the exit code says it all.
            let _ = writeln!(
                std::io::stderr(),
                "openim-gateway healthcheck: http://{address}/readyz answered {status}"
            );
            NOT_READY
        }
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "openim-gateway healthcheck: http://{address}/readyz: {error}"
            );
            NOT_READY
        }
    }
}

/// The status code of `GET /readyz` at `address`.
fn ask(address: SocketAddr) -> std::io::Result<u16> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    let left = |started: Instant| {
        TIMEOUT
            .checked_sub(started.elapsed())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))
    };
    stream.set_write_timeout(Some(left(started)?))?;
    let request =
        format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nUser-Agent: openim-gateway-healthcheck\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    // Only the status line is needed: read until its end (or the connection's).
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream.set_read_timeout(Some(left(started)?))?;
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    status_of(&head).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer does not start with an HTTP status line",
        )
    })
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_of(head: &[u8]) -> Option<u16> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?;
    (status.len() == 3).then(|| status.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_asked_on_loopback() {
        let ask = |listen: &str| target(listen.parse().unwrap()).to_string();
        assert_eq!(ask("0.0.0.0:10006"), "127.0.0.1:10006");
        assert_eq!(ask("[::]:10006"), "[::1]:10006");
        assert_eq!(ask("10.1.2.3:10006"), "10.1.2.3:10006");
        assert_eq!(ask("[::1]:7"), "[::1]:7");
    }

    #[test]
    fn the_status_line_is_read() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            status_of(b"HTTP/1.1 503 Service Unavailable\r\ncontent"),
            Some(503)
        );
        assert_eq!(status_of(b"HTTP/1.0 200"), Some(200));
        assert_eq!(status_of(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_of(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_of(b""), None);
    }
}
