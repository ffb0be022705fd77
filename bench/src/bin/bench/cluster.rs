//! Scenario `cluster`: the faults an operator meets on a three-node NATS cluster, at
//! OpenIM's pace and with OpenIM's client limits, one fault per run on a fresh stack:
//!
//! - `node_killed`: the node the gateway is connected to is killed (SIGKILL);
//! - `node_frozen`: that node is frozen for 10 s (SIGSTOP, then SIGCONT), as a hung host or
//!   a partition looks to its clients;
//! - `worker_killed`: one of the two workers is killed (SIGKILL) with callbacks in hand;
//! - `wrong_password_upgrade`: every few seconds a new gateway is started on the same address
//!   with a wrong NATS password, as a botched upgrade would be (with the handover, it must
//!   not take the socket from the running gateway).
//!
//! The stack: three routed nats-server nodes with a user and password, the gateway given
//! every node's URL, and two workers in the queue group that answer in 20 ms with the
//! example worker's rules (`nats-floor worker --delay-ms 20`), each on one of the two
//! nodes the gateway is not on (so that the node faults hit the gateway, and the worker
//! fault hits a worker). `loadgen` calls the gateway as OpenIM's Go client does: open loop at
//! 1000 callbacks/s, keep-alive, at most 100 connections (a callback finding none waits, and
//! the wait counts), and OpenIM's 5 s timeout counted from the moment the callback was due.
//!
//! Per fault: `failed_operations` (answered after OpenIM's 5 s or not at all, or a connection
//! error: the user's operation fails), and `lost_decisions` (answered, but not with the
//! worker's decision).

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use openim_gateway_proto::DecisionSource;
use serde_json::{json, Value};

use crate::{
    process::Guard,
    report::Aggregate,
    scenarios::{Outcome, Plan},
    stack::{http_get, Measured, Tools},
};

/// OpenIM's HTTP client: its timeout, and its connections per host.
const OPENIM_TIMEOUT_MS: u64 = 5000;
const OPENIM_MAX_CONNECTIONS: usize = 100;
/// Callbacks per second.
const RATE: f64 = 1000.0;
/// The NATS user every client logs in as, and its password.
const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
/// How long a worker takes to answer: a worker that consults something, so that a killed
/// worker holds callbacks (about ten at this rate). At 1000 callbacks/s it keeps about 20 of
/// OpenIM's 100 connections busy; 100 ms would take all of them, and the run would measure
/// OpenIM's queue rather than the faults.
const WORKER_DELAY_MS: u64 = 20;
/// How long the frozen node stays frozen.
const FROZEN_FOR: Duration = Duration::from_secs(10);
/// How often a wrong-password upgrade is tried.
const UPGRADE_EVERY: Duration = Duration::from_secs(3);
/// How long a wrong-password gateway may run before it counts as having stayed.
const UPGRADE_WAIT: Duration = Duration::from_secs(6);

/// The faults, in the order they run.
pub(crate) const FAULTS: [&str; 4] = [
    "node_killed",
    "node_frozen",
    "worker_killed",
    "wrong_password_upgrade",
];

/// Scenario `cluster`: one run per fault.
pub(crate) fn cluster(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    // Warm-up, the measured window, and when in it the fault starts.
    let (warmup_s, run_s, fault_at_s) = if plan.quick {
        (2.0, 16.0, 3.0)
    } else {
        (2.0, 22.0, 5.0)
    };
    let mut outcome = Outcome::default();
    let mut figures = serde_json::Map::new();
    for fault in FAULTS {
        eprintln!(
            "bench: cluster: {fault} ({RATE} callbacks/s for {run_s} s, fault at {fault_at_s} s)"
        );
        let (measured, details) = one_fault(tools, fault, warmup_s, run_s, fault_at_s)?;
        let result = &measured.result;
        let worker = result.source_count(DecisionSource::Worker.as_str());
        let non_timeout_errors: u64 = result
            .errors
            .iter()
            .filter(|(kind, _)| kind.as_str() != "timeout")
            .map(|(_, count)| count)
            .sum();
        let failed = result.late + non_timeout_errors;
        let lost = result.sent.saturating_sub(worker);
        let lost_pct = if result.sent > 0 {
            (lost as f64 * 1e4 / result.sent as f64).round() / 100.0
        } else {
            0.0
        };
        eprintln!(
            "bench:   {fault}: {failed} failed operations, {lost} of {} callbacks ({lost_pct} %) without the worker's decision",
            result.sent
        );
        figures.insert(
            fault.to_owned(),
            json!({
                "sent": result.sent,
                "failed_operations": failed,
                "lost_decisions": lost,
                "lost_decisions_pct": lost_pct,
                "late_after_openim_timeout": result.late,
                "errors": result.errors,
                "sources": result.sources,
                "fault_at_s": fault_at_s,
                "details": details,
            }),
        );
        outcome.keep("cluster", &measured);
        let mut row = Aggregate::of(std::slice::from_ref(result)).row(&format!(
            "cluster: {fault}, open {RATE} rps, <= {OPENIM_MAX_CONNECTIONS} conns"
        ));
        row.answers = format!(
            "failed {failed}, lost {lost} ({lost_pct} %); {}",
            row.answers
        );
        outcome.rows.push(row);
    }
    figures.insert(
        "setup".to_owned(),
        json!({
            "nodes": 3,
            "workers": 2,
            "rate": RATE,
            "max_connections": OPENIM_MAX_CONNECTIONS,
            "openim_timeout_ms": OPENIM_TIMEOUT_MS,
            "run_s": run_s,
            "frozen_for_s": FROZEN_FOR.as_secs(),
        }),
    );
    outcome
        .summary
        .insert("cluster".to_owned(), Value::Object(figures));
    Ok(outcome)
}

/// One fault on a fresh stack: the load run and what happened.
fn one_fault(
    tools: &Tools,
    fault: &str,
    warmup_s: f64,
    run_s: f64,
    fault_at_s: f64,
) -> anyhow::Result<(Measured, Value)> {
    let mut cluster = Cluster::start(tools, fault)?;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut gateway = start_gateway(tools, "openim-gateway", listen, &cluster.urls(PASSWORD))?;
    let gateway_node = wait_for(Duration::from_secs(10), || {
        cluster.node_of_connection("openim-gateway")
    })
    .context("the gateway's connection is on no node")?;
    let mut workers = Vec::new();
    for (number, node) in (0..3).filter(|node| *node != gateway_node).enumerate() {
        workers.push(start_worker(
            tools,
            &format!("worker-{}", number + 1),
            &cluster.url(node, PASSWORD),
        )?);
    }
    let url = format!("http://{listen}");
    let args: Vec<String> = [
        "--label",
        &format!("cluster_{fault}"),
        "--mode",
        "open",
        "--rate",
        &RATE.to_string(),
        "--connections",
        &OPENIM_MAX_CONNECTIONS.to_string(),
        "--max-connections",
        &OPENIM_MAX_CONNECTIONS.to_string(),
        "--warmup-s",
        &warmup_s.to_string(),
        "--duration-s",
        &run_s.to_string(),
        "--timeout-ms",
        &OPENIM_TIMEOUT_MS.to_string(),
        "--budget-ms",
        &OPENIM_TIMEOUT_MS.to_string(),
        "--late-tolerance-ms",
        "0",
        "--timeline-ms",
        "100",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    let mut upgrades = Vec::new();
    let running = tools.start_loadgen(&url, &args, &[])?;
    let fault_at = running.started() + Duration::from_secs_f64(warmup_s + fault_at_s);
    sleep_until(fault_at);
    let details = match fault {
        "node_killed" => {
            cluster.nodes[gateway_node].kill();
            eprintln!("bench:   node {gateway_node} (the gateway's) killed");
            json!({ "node": gateway_node })
        }
        "node_frozen" => {
            cluster.nodes[gateway_node].signal("STOP")?;
            eprintln!("bench:   node {gateway_node} (the gateway's) frozen");
            sleep_until(fault_at + FROZEN_FOR);
            cluster.nodes[gateway_node].signal("CONT")?;
            eprintln!("bench:   node {gateway_node} resumed");
            json!({ "node": gateway_node, "frozen_s": FROZEN_FOR.as_secs() })
        }
        "worker_killed" => {
            workers[0].kill();
            eprintln!("bench:   worker-1 killed");
            json!({ "worker": "worker-1" })
        }
        _ => {
            let (details, stayed) = wrong_password_upgrades(
                tools,
                &cluster,
                listen,
                &mut gateway,
                fault_at + Duration::from_secs_f64(run_s - fault_at_s - 2.0),
            )?;
            // A gateway that stayed serves until the run ends.
            upgrades = stayed;
            details
        }
    };
    let measured = tools.finish(running, &[])?;
    drop(upgrades);
    Ok((measured, details))
}

/// Starts a gateway with a wrong NATS password on `listen` every [`UPGRADE_EVERY`] until
/// `until`, and says what each did: exited (and how) or stayed. A gateway that stays has
/// taken the socket (the running one then drains and exits): callbacks are its from then on.
fn wrong_password_upgrades(
    tools: &Tools,
    cluster: &Cluster,
    listen: SocketAddr,
    running: &mut Guard,
    until: Instant,
) -> anyhow::Result<(Value, Vec<Guard>)> {
    let mut attempts = Vec::new();
    let mut stayed: Vec<Guard> = Vec::new();
    let mut number = 0;
    while Instant::now() + UPGRADE_WAIT < until {
        number += 1;
        let started = Instant::now();
        let mut upgrade = start_gateway_process(
            tools,
            &format!("openim-gateway-wrong-password-{number}"),
            listen,
            &cluster.urls("not-the-password"),
        )?;
        // It listens only once it has the socket: then the running gateway hands over and
        // drains, and callbacks are the new one's.
        let listening = upgrade
            .wait_for_line("openim-gateway listening on", UPGRADE_WAIT)
            .is_ok();
        let exited = upgrade.has_exited();
        eprintln!(
            "bench:   wrong-password gateway {number}: {}",
            match (listening, exited) {
                (true, _) => "took the socket (the running gateway hands over)",
                (false, true) => "exited without taking the socket",
                (false, false) => "neither listening nor exited: stopped",
            }
        );
        attempts.push(json!({
            "took_the_socket": listening,
            "exited_by_itself": !listening && exited,
            "after_ms": started.elapsed().as_millis() as u64,
            "first_gateway_running": !running.has_exited(),
        }));
        if listening {
            stayed.push(upgrade);
        }
        sleep_until(started + UPGRADE_EVERY.max(started.elapsed()));
    }
    Ok((json!({ "attempts": attempts }), stayed))
}

/// Three routed nats-server nodes with a user and password.
struct Cluster {
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    port: u16,
    monitor: u16,
    guard: Option<Guard>,
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill();
        }
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let guard = self.guard.as_ref().context("the node is not running")?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(guard.pid().to_string())
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", guard.pid());
        Ok(())
    }
}

impl Cluster {
    fn start(tools: &Tools, run: &str) -> anyhow::Result<Self> {
        let directory = tools.log_dir.join(format!("cluster-{run}"));
        std::fs::create_dir_all(&directory)
            .with_context(|| format!("cannot create {}", directory.display()))?;
        let ports: Vec<(u16, u16, u16)> = (0..3)
            .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let mut nodes = Vec::new();
        for (index, (port, route, monitor)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, (_, route, _))| format!("\"nats-route://127.0.0.1:{route}\""))
                .collect();
            let config = format!(
                "server_name: node-{index}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\n\
                 authorization {{ user: {USER}, password: \"{PASSWORD}\" }}\n\
                 cluster {{\n  name: bench-{run}\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            let path = directory.join(format!("node-{index}.conf"));
            std::fs::write(&path, config)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let name = format!("nats-{run}-node-{index}");
            let guard = start_node(tools, &name, &path)?;
            nodes.push(Node {
                name,
                port: *port,
                monitor: *monitor,
                guard: Some(guard),
            });
        }
        let cluster = Self { nodes };
        // Formed when every node routes to the two others.
        wait_for(Duration::from_secs(20), || {
            cluster
                .nodes
                .iter()
                .all(|node| {
                    // Each peer may have a pool of route connections: at least one per peer.
                    monitor_get(node.monitor, "/routez").is_ok_and(|body| {
                        serde_json::from_str::<Value>(&body)
                            .ok()
                            .and_then(|routez| routez["routes"].as_array().cloned())
                            .is_some_and(|routes| {
                                let peers: std::collections::BTreeSet<&str> = routes
                                    .iter()
                                    .filter_map(|route| route["remote_name"].as_str())
                                    .collect();
                                peers.len() == 2
                            })
                    })
                })
                .then_some(())
        })
        .with_context(|| {
            format!(
                "the cluster did not form; see {}",
                tools.log_dir.join(&cluster.nodes[0].name).display()
            )
        })?;
        Ok(cluster)
    }

    fn url(&self, index: usize, password: &str) -> String {
        format!(
            "nats://{USER}:{password}@127.0.0.1:{}",
            self.nodes[index].port
        )
    }

    /// Every node's URL, comma separated: a client's `NATS_URL`.
    fn urls(&self, password: &str) -> String {
        (0..self.nodes.len())
            .map(|index| self.url(index, password))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The running node with a client connection named `name` (from `/connz`).
    fn node_of_connection(&self, name: &str) -> Option<usize> {
        let wanted = format!("\"{name}\"");
        self.nodes.iter().position(|node| {
            node.guard.is_some()
                && monitor_get(node.monitor, "/connz").is_ok_and(|body| body.contains(&wanted))
        })
    }
}

/// The body of a nats-server monitoring page. Asked in HTTP/1.0, so that the answer is not
/// chunked (a large page would be, in HTTP/1.1).
fn monitor_get(port: u16, path: &str) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .with_context(|| format!("not an HTTP answer from {address}{path}"))
}

fn start_node(tools: &Tools, name: &str, config: &Path) -> anyhow::Result<Guard> {
    let log = tools.log_dir.join(format!("{name}.log"));
    let mut command = Command::new(&tools.nats_server);
    command.arg("-c").arg(config);
    let mut guard = Guard::spawn(name, command, &tools.log_dir)?;
    wait_for(Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|text| text.contains("Server is ready"))
            .then_some(())
    })
    .with_context(|| format!("{name} not ready after 15 s; see {}", log.display()))?;
    if guard.has_exited() {
        bail!("{name} exited; see {}", log.display());
    }
    Ok(guard)
}

/// A gateway on `listen` with `nats_url`, ready (`/readyz` 200).
fn start_gateway(
    tools: &Tools,
    name: &str,
    listen: SocketAddr,
    nats_url: &str,
) -> anyhow::Result<Guard> {
    let mut guard = start_gateway_process(tools, name, listen, nats_url)?;
    guard.wait_for_line("openim-gateway listening on", Duration::from_secs(15))?;
    wait_for(Duration::from_secs(15), || {
        matches!(http_get(listen, "/readyz"), Ok((200, _))).then_some(())
    })
    .context("the gateway never became ready (/readyz 200)")?;
    Ok(guard)
}

/// A gateway process on `listen` with `nats_url`, as shipped (5000 ms, margin 250, the
/// handover on), not waited for.
fn start_gateway_process(
    tools: &Tools,
    name: &str,
    listen: SocketAddr,
    nats_url: &str,
) -> anyhow::Result<Guard> {
    let mut command = Command::new(tools.bin_dir.join("openim-gateway"));
    command
        .env("GATEWAY_LISTEN", listen.to_string())
        .env("NATS_URL", nats_url)
        .env("GATEWAY_SUBJECT_PREFIX", &tools.prefix)
        .env("RUST_LOG", "info");
    Guard::spawn(name, command, &tools.log_dir)
}

/// A worker of the queue group that answers each callback [`WORKER_DELAY_MS`] after it
/// arrived (`nats-floor worker`: the example worker's rules), ready.
fn start_worker(tools: &Tools, name: &str, nats_url: &str) -> anyhow::Result<Guard> {
    let mut command = Command::new(tools.bin_dir.join("nats-floor"));
    command
        .arg("--nats-url")
        .arg(nats_url)
        .arg("--prefix")
        .arg(&tools.prefix)
        .arg("worker")
        .arg("--delay-ms")
        .arg(WORKER_DELAY_MS.to_string());
    let mut guard = Guard::spawn(name, command, &tools.log_dir)?;
    guard.wait_for_line("nats-floor worker ready", Duration::from_secs(15))?;
    Ok(guard)
}

/// Polls `check` every 20 ms until it gives a value or `bound` passes.
fn wait_for<T>(bound: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sleep_until(instant: Instant) {
    std::thread::sleep(instant.saturating_duration_since(Instant::now()));
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}
