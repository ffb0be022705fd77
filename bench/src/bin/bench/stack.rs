//! The processes under test and the load runs, as the scenarios use them: nats-server on a
//! free port (killable and restartable on the same port), the example worker, the hung
//! worker, the direct server, the gateway, and the load generators (`loadgen`,
//! `nats-floor client`) whose JSON result lines come back as [`RunResult`]s.
//!
//! Every process is a [`Guard`]: killed when the scenario that started it ends. Every
//! subject is under a prefix unique to this driver (`bench.p<pid>`), so a driver can never
//! answer, or be answered by, anyone else's processes even on a shared nats-server.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use openim_gateway_bench::result::RunResult;

use crate::{machine, process::Guard};

/// Where the binaries are and where logs go.
#[derive(Debug)]
pub(crate) struct Tools {
    /// `target/release`: the driver's own directory.
    pub(crate) bin_dir: PathBuf,
    /// The nats-server executable.
    pub(crate) nats_server: PathBuf,
    /// One log file per process name.
    pub(crate) log_dir: PathBuf,
    /// The subject prefix every process of this driver uses.
    pub(crate) prefix: String,
    /// `/proc` clock ticks per second.
    pub(crate) ticks_per_second: f64,
}

/// A load run's result and how much CPU other work on the machine took meanwhile.
#[derive(Debug)]
pub(crate) struct Measured {
    /// The load generator's result line.
    pub(crate) result: RunResult,
    /// CPU cores busy with work that is neither the stack under test nor the load generator,
    /// averaged over the run (0.0 on a quiet machine; 2.0 would be a machine fully taken).
    pub(crate) background_cores: f64,
    /// Time the hypervisor gave this machine's cores to someone else during the run (steal,
    /// in ms summed over the cores): while it lasts nothing here runs, so a stall of the
    /// whole machine shows up here and not as background load.
    pub(crate) steal_ms: f64,
    /// CPU seconds each process of the stack, and the load generator, used during the run.
    pub(crate) cpu_s: BTreeMap<String, f64>,
}

impl Tools {
    fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// A nats-server on a free port.
    pub(crate) fn nats(&self, name: &str) -> anyhow::Result<Nats> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port()?;
            let mut nats = Nats {
                name: name.to_owned(),
                port,
                guard: None,
            };
            match nats.start(self) {
                Ok(()) => return Ok(nats),
                Err(error) if attempts < 3 => {
                    eprintln!("bench: {error:#}; trying another port");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The example worker (`openim-worker-example`), ready.
    pub(crate) fn worker(&self, nats: &Nats) -> anyhow::Result<Guard> {
        self.worker_named(nats, "openim-worker-example")
    }

    /// One more example worker in the queue group, named `name` in the logs and the CPU
    /// accounting.
    pub(crate) fn worker_named(&self, nats: &Nats, name: &str) -> anyhow::Result<Guard> {
        let mut command = Command::new(self.bin("openim-worker-example"));
        command
            .env("NATS_URL", nats.url())
            .env("WORKER_SUBJECT_PREFIX", &self.prefix);
        let mut guard = Guard::spawn(name, command, &self.log_dir)?;
        guard.wait_for_line("worker ready", Duration::from_secs(15))?;
        Ok(guard)
    }

    /// A worker that never answers, ready.
    pub(crate) fn hung_worker(&self, nats: &Nats) -> anyhow::Result<Guard> {
        let mut command = Command::new(self.bin("hung-worker"));
        command
            .arg("--nats-url")
            .arg(nats.url())
            .arg("--prefix")
            .arg(&self.prefix);
        let mut guard = Guard::spawn("hung-worker", command, &self.log_dir)?;
        guard.wait_for_line("hung-worker ready", Duration::from_secs(15))?;
        Ok(guard)
    }

    /// The direct server and its URL.
    pub(crate) fn direct(&self) -> anyhow::Result<(Guard, String)> {
        let mut command = Command::new(self.bin("direct-server"));
        command.arg("--listen").arg("127.0.0.1:0");
        let mut guard = Guard::spawn("direct-server", command, &self.log_dir)?;
        let line = guard.wait_for_line("direct-server listening on", Duration::from_secs(15))?;
        let url = url_in(&line)?;
        Ok((guard, url))
    }

    /// The OTLP sink (`otlp-sink`) and its base URL.
    pub(crate) fn otlp_sink(&self) -> anyhow::Result<(Guard, String)> {
        let mut command = Command::new(self.bin("otlp-sink"));
        command.arg("--listen").arg("127.0.0.1:0");
        let mut guard = Guard::spawn("otlp-sink", command, &self.log_dir)?;
        let line = guard.wait_for_line("otlp-sink listening on", Duration::from_secs(15))?;
        let url = url_in(&line)?;
        Ok((guard, url))
    }

    /// A gateway configured by `settings`, connected to `nats` and ready.
    pub(crate) fn gateway(
        &self,
        nats: &Nats,
        settings: &GatewaySettings<'_>,
    ) -> anyhow::Result<Gateway> {
        let mut command = Command::new(self.bin("openim-gateway"));
        command
            .env("GATEWAY_LISTEN", "127.0.0.1:0")
            .env("NATS_URL", nats.url())
            .env("GATEWAY_SUBJECT_PREFIX", &self.prefix)
            .env(
                "GATEWAY_CALLBACK_TIMEOUT_MS",
                settings.timeout_ms.to_string(),
            )
            .env("GATEWAY_SAFETY_MARGIN_MS", settings.margin_ms.to_string())
            .env("RUST_LOG", settings.log_filter);
        if let Some(bound) = settings.max_inflight {
            command.env("GATEWAY_MAX_INFLIGHT", bound.to_string());
        }
        if let Some(threads) = settings.runtime_threads {
            command.env("GATEWAY_RUNTIME_THREADS", threads.to_string());
        }
        if let Some(endpoint) = settings.otlp_endpoint {
            command
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_SERVICE_NAME", settings.name);
        }
        let mut guard = Guard::spawn(settings.name, command, &self.log_dir)?;
        let line = guard.wait_for_line("openim-gateway listening on", Duration::from_secs(15))?;
        let url = url_in(&line)?;
        let address: SocketAddr = url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("bad gateway address in {line:?}"))?;
        let gateway = Gateway {
            guard,
            url,
            address,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !matches!(http_get(address, "/readyz"), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!("the gateway never became ready (/readyz 200)");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(gateway)
    }

    /// Runs `loadgen` against `url` with `args`; `stack` are the pids of the processes under
    /// test, for the CPU accounting.
    pub(crate) fn loadgen(
        &self,
        url: &str,
        args: &[String],
        stack: &[&Guard],
    ) -> anyhow::Result<Measured> {
        let mut command = Command::new(self.bin("loadgen"));
        command.arg("--url").arg(url).args(args);
        self.measure("loadgen", command, args, stack)
    }

    /// Runs `nats-floor client` through `nats` with `args`.
    pub(crate) fn nats_client(
        &self,
        nats: &Nats,
        args: &[String],
        stack: &[&Guard],
    ) -> anyhow::Result<Measured> {
        let mut command = Command::new(self.bin("nats-floor"));
        command
            .arg("--nats-url")
            .arg(nats.url())
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("client")
            .args(args);
        self.measure("nats-floor-client", command, args, stack)
    }

    /// Starts a load run; `finish` waits for it.
    pub(crate) fn start_loadgen(
        &self,
        url: &str,
        args: &[String],
        stack: &[&Guard],
    ) -> anyhow::Result<Running> {
        let mut command = Command::new(self.bin("loadgen"));
        command.arg("--url").arg(url).args(args);
        Ok(Running {
            guard: Guard::spawn("loadgen", command, &self.log_dir)?,
            busy_before: machine::machine_busy_ticks(),
            steal_before: machine::machine_steal_ticks(),
            stack_before: stack_ticks(stack),
            started: Instant::now(),
            timeout: run_timeout(args),
        })
    }

    /// Waits for a load run started by `start_loadgen`.
    pub(crate) fn finish(
        &self,
        mut running: Running,
        stack: &[&Guard],
    ) -> anyhow::Result<Measured> {
        let stdout = running.guard.wait_for_exit(running.timeout)?;
        let result = RunResult::from_output(&stdout).context("no result line from the load run")?;
        let busy = machine::machine_busy_ticks().saturating_sub(running.busy_before) as f64;
        let mut cpu_s = BTreeMap::new();
        let mut stack_used = 0.0;
        for guard in stack {
            let before = running
                .stack_before
                .get(guard.name())
                .copied()
                .unwrap_or_default();
            let used = guard.cpu_ticks().saturating_sub(before) as f64;
            stack_used += used;
            cpu_s.insert(guard.name().to_owned(), used / self.ticks_per_second);
        }
        let loadgen_used = result.process_cpu_s.unwrap_or_default() * self.ticks_per_second;
        cpu_s.insert(
            "load generator".to_owned(),
            result.process_cpu_s.unwrap_or_default(),
        );
        let wall = running.started.elapsed().as_secs_f64().max(0.001);
        let background_cores =
            ((busy - stack_used - loadgen_used) / self.ticks_per_second / wall).max(0.0);
        let steal_ms = machine::machine_steal_ticks().saturating_sub(running.steal_before) as f64
            * 1e3
            / self.ticks_per_second;
        eprintln!(
            "bench:   {} (background load {background_cores:.2} cores, steal {steal_ms:.0} ms)",
            result.summary()
        );
        Ok(Measured {
            result,
            background_cores,
            steal_ms,
            cpu_s,
        })
    }

    fn measure(
        &self,
        name: &str,
        command: Command,
        args: &[String],
        stack: &[&Guard],
    ) -> anyhow::Result<Measured> {
        let running = Running {
            busy_before: machine::machine_busy_ticks(),
            steal_before: machine::machine_steal_ticks(),
            stack_before: stack_ticks(stack),
            guard: Guard::spawn(name, command, &self.log_dir)?,
            started: Instant::now(),
            timeout: run_timeout(args),
        };
        self.finish(running, stack)
    }
}

/// A load run in progress.
#[derive(Debug)]
pub(crate) struct Running {
    guard: Guard,
    busy_before: u64,
    steal_before: u64,
    /// CPU ticks of each process of the stack at the start, by name.
    stack_before: BTreeMap<String, u64>,
    started: Instant,
    timeout: Duration,
}

impl Running {
    /// Whether the load generator has exited.
    pub(crate) fn is_done(&mut self) -> bool {
        self.guard.has_exited()
    }

    /// When it was started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }
}

fn stack_ticks(stack: &[&Guard]) -> BTreeMap<String, u64> {
    stack
        .iter()
        .map(|guard| (guard.name().to_owned(), guard.cpu_ticks()))
        .collect()
}

/// How long a run with `args` may take: its warm-up and duration, its request timeout, and
/// a minute of slack.
fn run_timeout(args: &[String]) -> Duration {
    let value = |flag: &str| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|index| args.get(index + 1))
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_default()
    };
    Duration::from_secs_f64(
        value("--warmup-s") + value("--duration-s") + value("--timeout-ms") / 1e3 + 60.0,
    )
}

/// How to run a gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatewaySettings<'a> {
    /// The process name (log file, CPU accounting).
    pub(crate) name: &'a str,
    /// `GATEWAY_CALLBACK_TIMEOUT_MS`.
    pub(crate) timeout_ms: u64,
    /// `GATEWAY_SAFETY_MARGIN_MS`.
    pub(crate) margin_ms: u64,
    /// `RUST_LOG`.
    pub(crate) log_filter: &'a str,
    /// `GATEWAY_RUNTIME_THREADS`, when set (the gateway's default: one event loop).
    pub(crate) runtime_threads: Option<usize>,
    /// `GATEWAY_MAX_INFLIGHT`, when set (the gateway's default: 10000).
    pub(crate) max_inflight: Option<usize>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, when set: traces on, exported there.
    pub(crate) otlp_endpoint: Option<&'a str>,
}

impl<'a> GatewaySettings<'a> {
    /// The gateway with this timeout and margin, logging errors only: at the rates of the
    /// overload and memory scenarios a line per condition would measure the logger.
    pub(crate) fn quiet(timeout_ms: u64, margin_ms: u64) -> Self {
        Self {
            log_filter: "error",
            ..Self::new(timeout_ms, margin_ms)
        }
    }

    /// The gateway as shipped, with this timeout and margin.
    pub(crate) fn new(timeout_ms: u64, margin_ms: u64) -> Self {
        Self {
            name: "openim-gateway",
            timeout_ms,
            margin_ms,
            log_filter: "info",
            runtime_threads: None,
            max_inflight: None,
            otlp_endpoint: None,
        }
    }
}

/// A running gateway.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// The process.
    pub(crate) guard: Guard,
    /// `http://ADDR`.
    pub(crate) url: String,
    /// Its listen address.
    pub(crate) address: SocketAddr,
}

impl Gateway {
    /// A gauge or counter from `/metrics`, summed over its label sets.
    pub(crate) fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (status, body) = http_get(self.address, "/metrics")?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let mut found = None;
        for line in body.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                *found.get_or_insert(0.0) += value;
            }
        }
        found.with_context(|| format!("no {name} in /metrics"))
    }
}

/// A nats-server of the driver's, on its own port.
#[derive(Debug)]
pub(crate) struct Nats {
    name: String,
    port: u16,
    guard: Option<Guard>,
}

impl Nats {
    /// `nats://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process, while running.
    pub(crate) fn guard(&self) -> Option<&Guard> {
        self.guard.as_ref()
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub(crate) fn kill(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill();
        }
    }

    /// Starts the server again on the same port.
    pub(crate) fn start(&mut self, tools: &Tools) -> anyhow::Result<()> {
        let log = tools.log_dir.join(format!("{}.log", self.name));
        let offset = std::fs::metadata(&log).map_or(0, |meta| meta.len());
        let mut command = Command::new(&tools.nats_server);
        command
            .arg("-a")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string());
        let mut guard = Guard::spawn(&self.name, command, &tools.log_dir)?;
        // Ready when *this* process says so in its log: a connect alone could reach someone
        // else's server if the port was taken meanwhile.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = read_from(&log, offset);
            if text.contains("Server is ready") {
                break;
            }
            if text.contains("[FTL]") || guard.has_exited() {
                bail!(
                    "nats-server could not start on port {}; see {}",
                    self.port,
                    log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("nats-server not ready after 15 s; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.guard = Some(guard);
        Ok(())
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(text.len());
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn url_in(line: &str) -> anyhow::Result<String> {
    line.split_whitespace()
        .find(|word| word.starts_with("http://"))
        .map(str::to_owned)
        .with_context(|| format!("no http:// address in {line:?}"))
}

/// A plain HTTP/1.1 GET with `Connection: close`: the status and the body.
pub(crate) fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer from {address}{path}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
