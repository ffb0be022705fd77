//! [`Gateway`]: the real `openim-gateway` binary, started the way an operator starts it.
//!
//! The child gets a clean environment (only `PATH`, the test's settings and the few the
//! harness adds), binds `127.0.0.1:0` and announces its address with exactly one stdout line,
//! `openim-gateway listening on http://127.0.0.1:PORT`, which is how the harness learns the
//! port. Bad configuration is checked with [`Gateway::run_expecting_exit`].

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::binaries;
use crate::nats::free_port;
use crate::process::{self, OutputLog};

/// How long the gateway may take to print its listening line.
const LISTEN_BOUND: Duration = Duration::from_secs(15);
/// How long a gateway given bad configuration may take to exit.
const EXIT_BOUND: Duration = Duration::from_secs(10);
/// The stdout line the gateway prints once bound, up to the address.
pub const LISTENING_PREFIX: &str = "openim-gateway listening on http://";

/// A running gateway process, killed on drop.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    address: SocketAddr,
    stdout: OutputLog,
    stderr: OutputLog,
}

/// What a gateway that was expected to refuse to start did.
#[derive(Debug, Clone)]
pub struct ExitReport {
    /// The exit code, `None` when it was killed because it did not exit in time.
    pub code: Option<i32>,
    /// Whether it had to be killed (it kept running: the configuration was accepted).
    pub killed: bool,
    /// Everything it wrote to stdout (a listening line means it bound a socket).
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// The environment every gateway child starts with, before the test's own settings.
fn base_environment(nats_url: &str) -> Vec<(String, String)> {
    vec![
        ("GATEWAY_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("NATS_URL".to_owned(), nats_url.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ]
}

fn command_with(nats_url: &str, settings: &[(&str, &str)]) -> std::process::Command {
    let mut command = process::clean_command(&binaries::gateway());
    environment(&mut command, nats_url, settings);
    command
}

fn environment(command: &mut std::process::Command, nats_url: &str, settings: &[(&str, &str)]) {
    for (name, value) in base_environment(nats_url) {
        command.env(name, value);
    }
    for (name, value) in settings {
        command.env(name, value);
    }
}

impl Gateway {
    /// Starts the gateway against `nats_url` with `settings` (which override the harness's
    /// `GATEWAY_LISTEN`, `NATS_URL` and `RUST_LOG`) and waits for its listening line.
    pub async fn start(nats_url: &str, settings: &[(&str, &str)]) -> Self {
        Self::start_command(command_with(nats_url, settings), nats_url, settings).await
    }

    /// [`Self::start`] with the process's open-file limit (soft and hard) set to `files`,
    /// through util-linux's `prlimit`.
    pub async fn start_with_file_limit(
        nats_url: &str,
        settings: &[(&str, &str)],
        files: u64,
    ) -> Self {
        Self::start_with_file_limits(nats_url, settings, files, files).await
    }

    /// [`Self::start`] with the process's open-file limit set to `soft` and `hard`, through
    /// util-linux's `prlimit` (which sets them on itself and then runs the gateway in its
    /// place, so [`Self::pid`] is the gateway's).
    pub async fn start_with_file_limits(
        nats_url: &str,
        settings: &[(&str, &str)],
        soft: u64,
        hard: u64,
    ) -> Self {
        let mut command = process::clean_command(std::path::Path::new("prlimit"));
        command
            .arg(format!("--nofile={soft}:{hard}"))
            .arg("--")
            .arg(binaries::gateway());
        environment(&mut command, nats_url, settings);
        Self::start_command(command, nats_url, settings).await
    }

    async fn start_command(
        mut command: std::process::Command,
        nats_url: &str,
        settings: &[(&str, &str)],
    ) -> Self {
        let stdout = OutputLog::default();
        let stderr = OutputLog::default();
        let mut spawned = process::spawn(&mut command, stdout.clone(), stderr.clone())
            .unwrap_or_else(|error| panic!("cannot run openim-gateway: {error}"));
        let line = process::wait_for_line(&mut spawned.stdout_lines, LISTEN_BOUND, |line| {
            line.starts_with(LISTENING_PREFIX)
        })
        .await;
        let Some(line) = line else {
            process::kill(&mut spawned.child);
            stderr.wait_closed(Duration::from_secs(2)).await;
            stderr.mark_reported();
            panic!(
                "openim-gateway did not print `{LISTENING_PREFIX}...` within {LISTEN_BOUND:?} \
                 (settings {settings:?}, NATS_URL={nats_url});\nstdout:\n{}\nstderr:\n{}",
                stdout.all(),
                stderr.tail(60)
            );
        };
        let address_text = line[LISTENING_PREFIX.len()..].trim().trim_end_matches('/');
        let address: SocketAddr = address_text.parse().unwrap_or_else(|error| {
            panic!("cannot parse the gateway's address from {line:?}: {error}")
        });
        Self {
            child: spawned.child,
            address,
            stdout,
            stderr,
        }
    }

    /// Runs the gateway with `settings` and waits (bounded) for it to exit, as it must on bad
    /// configuration. A gateway still running after the bound is killed and reported as such.
    /// `NATS_URL` defaults to a closed loopback port: bad configuration must be refused
    /// before any connection attempt.
    pub async fn run_expecting_exit(settings: &[(&str, &str)]) -> ExitReport {
        Self::run_args_expecting_exit(&[], settings).await
    }

    /// [`Self::run_expecting_exit`] with command-line arguments (`--help`, `--version`).
    pub async fn run_args_expecting_exit(args: &[&str], settings: &[(&str, &str)]) -> ExitReport {
        let nobody = format!("nats://127.0.0.1:{}", free_port());
        let mut command = command_with(&nobody, settings);
        command.args(args);
        run_to_exit(command).await
    }

    /// The process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address it listens on.    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Whether the process is still running (it must never exit on its own in a test).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's open-file limit, soft and hard (from `/proc/<pid>/limits`).
    pub fn file_limits(&self) -> (u64, u64) {
        let path = format!("/proc/{}/limits", self.child.id());
        let limits = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .unwrap_or_else(|| panic!("no open-file limit in {path}:\n{limits}"));
        let mut numbers = line["Max open files".len()..]
            .split_whitespace()
            .map(|field| {
                field
                    .parse::<u64>()
                    .unwrap_or_else(|error| panic!("{line:?}: {error}"))
            });
        match (numbers.next(), numbers.next()) {
            (Some(soft), Some(hard)) => (soft, hard),
            _ => panic!("no soft and hard limit in {line:?}"),
        }
    }

    /// How many threads of the process tokio's multi-thread runtime named as its workers
    /// (`tokio-rt-worker`, from `/proc/<pid>/task/*/comm`): 0 when the gateway runs its one
    /// event loop on the main thread.
    pub fn runtime_worker_threads(&self) -> usize {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(&tasks)
            .unwrap_or_else(|error| panic!("cannot list {tasks}: {error}"))
            .filter_map(Result::ok)
            .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "tokio-rt-worker")
            .count()
    }

    /// Sends SIGTERM, as a service manager does to stop it.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits (bounded) for the process to exit; its exit code, or `None` if it was still
    /// running at the bound (or died of a signal).
    pub async fn wait_for_exit(&mut self, bound: Duration) -> Option<i32> {
        process::wait_for_exit(&mut self.child, bound).await
    }

    /// The captured stderr (its logs).
    pub fn stderr_log(&self) -> &OutputLog {
        &self.stderr
    }

    /// Waits (bounded) until the gateway has logged a line for which `wanted` holds: lines
    /// reach stderr from the gateway's log thread, a moment after what they tell.
    pub async fn logged(&self, bound: Duration, wanted: impl Fn(&str) -> bool) -> bool {
        let until = Instant::now() + bound;
        loop {
            if self.stderr.all().lines().any(&wanted) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The captured stdout (the listening line, nothing else).
    pub fn stdout_log(&self) -> &OutputLog {
        &self.stdout
    }
}

/// Runs `program` with `args` and only `settings` (and `PATH`) in its environment, and waits
/// (bounded) for it to exit; a child still running after the bound is killed and reported.
pub async fn run_binary_to_exit(
    program: &std::path::Path,
    args: &[&str],
    settings: &[(&str, &str)],
) -> ExitReport {
    let mut command = process::clean_command(program);
    command.args(args);
    for (name, value) in settings {
        command.env(name, value);
    }
    run_to_exit(command).await
}

async fn run_to_exit(mut command: std::process::Command) -> ExitReport {
    let stdout = OutputLog::default();
    let stderr = OutputLog::default();
    let mut spawned = process::spawn(&mut command, stdout.clone(), stderr.clone())
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let start = Instant::now();
    let mut code = None;
    let mut exited = false;
    while start.elapsed() < EXIT_BOUND {
        if let Ok(Some(status)) = spawned.child.try_wait() {
            code = status.code();
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !exited {
        process::kill(&mut spawned.child);
    }
    stdout.wait_closed(Duration::from_secs(2)).await;
    stderr.wait_closed(Duration::from_secs(2)).await;
    ExitReport {
        code,
        killed: !exited,
        stdout: stdout.all(),
        stderr: stderr.all(),
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        process::report_on_panic("openim-gateway", &self.stderr);
        process::kill(&mut self.child);
    }
}
