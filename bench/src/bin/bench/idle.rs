//! Scenario `idle_connections`: what a kept-alive connection that idles costs the gateway.
//!
//! OpenIM's client, and any other, may hold connections open between callbacks. This opens
//! N connections, sends one callback on each (so that each has carried a request, as a
//! kept-alive connection has) and leaves them open; the gateway's RSS before and after, over
//! N, is the cost of one idle connection. The connections are closed at the end.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use openim_gateway_tests::{fixtures::SET_MEMBER_ROLE_ONLY, http::HttpRequest};
use serde_json::json;

use crate::{
    scenarios::Outcome,
    stack::{GatewaySettings, Tools},
};

/// Connections opened and closed before the "before" reading, so that the allocator's
/// first-use growth is not counted against the idle ones.
const WARM_UP: usize = 200;
/// From the last connection opened to the "after" reading.
const SETTLE_S: u64 = 10;

/// One callback on `stream`, its whole answer read; the connection stays open.
fn one_callback(stream: &mut TcpStream, wire: &[u8]) -> anyhow::Result<()> {
    stream.write_all(wire)?;
    let mut answer = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the gateway closed the connection before its answer");
        }
        answer.extend_from_slice(&chunk[..read]);
        let Some(end) = answer.windows(4).position(|window| window == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .context("an answer without content-length")?;
        if answer.len() >= end + 4 + length {
            return Ok(());
        }
    }
}

fn open(address: SocketAddr, wire: &[u8]) -> anyhow::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_nodelay(true)?;
    one_callback(&mut stream, wire)?;
    Ok(stream)
}

/// The scenario: `connections` idle kept-alive connections.
pub(crate) fn idle_connections(tools: &Tools, connections: usize) -> anyhow::Result<Outcome> {
    // Each connection is a descriptor here too. Only ever raised: the scenarios after this
    // one start their load generators from this process, and a lowered limit would leave
    // them unable to open their connections.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let wanted = (connections as u64 + 256).max(soft).min(hard);
    rlimit::setrlimit(rlimit::Resource::NOFILE, wanted, hard)?;
    let connections = connections.min(usize::try_from(wanted).unwrap_or(0).saturating_sub(256));
    let nats = tools.nats("nats-server")?;
    let gateway = tools.gateway(&nats, &GatewaySettings::quiet(5000, 250))?;
    let request = HttpRequest::openim(
        "/callbackExample",
        openim_gateway_tests::fixtures::SET_MEMBER,
        SET_MEMBER_ROLE_ONLY,
    );
    let wire = request.to_wire(&gateway.address.to_string());
    eprintln!("bench: idle_connections: {connections} kept-alive connections, one callback each");
    let warm: Vec<TcpStream> = (0..WARM_UP)
        .map(|_| open(gateway.address, &wire))
        .collect::<anyhow::Result<_>>()?;
    drop(warm);
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = gateway.guard.rss_kib()?;
    let started = Instant::now();
    let mut idle = Vec::with_capacity(connections);
    for _ in 0..connections {
        idle.push(open(gateway.address, &wire)?);
    }
    let opening_s = started.elapsed().as_secs_f64();
    // Settled: every connection idle for a while (hyper's state dropped after a second),
    // and the allocator's freed pages given back.
    std::thread::sleep(Duration::from_secs(SETTLE_S));
    let open_connections = gateway.metric("openim_gateway_open_connections")?;
    let rss_after = gateway.guard.rss_kib()?;
    let per_connection_kib =
        rss_after.saturating_sub(rss_before) as f64 / connections.max(1) as f64;
    eprintln!(
        "bench: idle_connections: RSS {rss_before} -> {rss_after} KiB for {connections}: {per_connection_kib:.1} KiB each"
    );
    drop(idle);
    let mut outcome = Outcome::default();
    outcome.summary.insert(
        "idle_connections".to_owned(),
        json!({
            "connections": connections,
            "open_connections_metric": open_connections,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_connection": (per_connection_kib * 100.0).round() / 100.0,
            "opening_s": (opening_s * 100.0).round() / 100.0,
        }),
    );
    Ok(outcome)
}
