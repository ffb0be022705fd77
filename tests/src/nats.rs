//! [`NatsServer`]: a real nats-server on a free loopback port, killed on drop.
//!
//! Recovery tests need to take NATS away and bring it back where the gateway expects it, so
//! the guard keeps its port across [`NatsServer::stop`] and [`NatsServer::restart`], and can
//! be created without a running server ([`NatsServer::not_started`]) for "NATS absent at
//! start" tests.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::binaries;
use crate::process::{self, OutputLog};

/// How long nats-server may take to say it is ready.
const READY_BOUND: Duration = Duration::from_secs(10);
/// How many free ports [`NatsServer::start`] tries before giving up (another test may take
/// the port between choosing it and nats-server binding it).
const PORT_ATTEMPTS: usize = 5;

/// A nats-server process (or the port of one that is stopped).
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// A configuration file given with `-c` (authorization, TLS).
    config_file: Option<PathBuf>,
    /// Whether `config_file` itself says where to listen (a cluster node): then the flags
    /// that would override it are left out.
    listen_in_config: bool,
    child: Option<Child>,
    stderr: OutputLog,
}

impl NatsServer {
    /// Starts nats-server on a free loopback port and waits until it accepts connections.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts nats-server with `config` (nats-server's configuration format: authorization,
    /// TLS) written to a file in `directory`; the port is still chosen by the guard.
    pub async fn start_with_config(directory: &std::path::Path, config: &str) -> Self {
        let path = directory.join("nats-server.conf");
        std::fs::write(&path, config)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        Self::start_with(Some(path)).await
    }

    async fn start_with(config_file: Option<PathBuf>) -> Self {
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut server = Self::not_started();
            server.config_file.clone_from(&config_file);
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "nats-server did not start after {PORT_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// A guard holding a free port with no server running: [`Self::restart`] starts one there.
    pub fn not_started() -> Self {
        Self {
            binary: binaries::nats_server(),
            port: free_port(),
            config_file: None,
            listen_in_config: false,
            child: None,
            stderr: OutputLog::default(),
        }
    }

    /// [`Self::not_started`], with `config` written to a file in `directory` for the server
    /// [`Self::restart`] starts (see [`Self::start_with_config`]).
    pub fn not_started_with_config(directory: &std::path::Path, config: &str) -> Self {
        let path = directory.join("nats-server.conf");
        std::fs::write(&path, config)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
        let mut server = Self::not_started();
        server.config_file = Some(path);
        server
    }

    /// `{scheme}://{userinfo}127.0.0.1:PORT`, for URLs with credentials or `tls://`.
    pub fn url_with(&self, scheme: &str, userinfo: &str) -> String {
        format!("{scheme}://{userinfo}127.0.0.1:{}", self.port)
    }

    /// Starts a nats-server whose configuration file `config` makes it listen on
    /// 127.0.0.1:`port` (a cluster node, with its routes), and waits until it accepts
    /// connections.
    pub async fn start_cluster_node(port: u16, config: PathBuf) -> Self {
        let mut server = Self {
            binary: binaries::nats_server(),
            port,
            config_file: Some(config),
            listen_in_config: true,
            child: None,
            stderr: OutputLog::default(),
        };
        if let Err(failure) = server.spawn_and_wait().await {
            panic!("nats-server did not start: {failure}");
        }
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port, kept across stop and restart.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether a server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the server (as a crash would: no lame-duck mode) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill(&mut child);
            self.stderr.note("--- nats-server killed by the test ---");
        }
    }

    /// Freezes the server (SIGSTOP), as a hung host or a partition looks to its clients: its
    /// sockets stay open and the kernel still completes TCP handshakes, but nothing is read
    /// or answered. [`Self::thaw`] resumes it; a frozen server is still killed on drop.
    pub fn freeze(&mut self) {
        if let Some(child) = &self.child {
            process::signal(child.id(), "STOP");
            self.stderr
                .note("--- nats-server frozen (SIGSTOP) by the test ---");
        }
    }

    /// Resumes a server frozen by [`Self::freeze`] (SIGCONT).
    pub fn thaw(&mut self) {
        if let Some(child) = &self.child {
            process::signal(child.id(), "CONT");
            self.stderr
                .note("--- nats-server resumed (SIGCONT) by the test ---");
        }
    }

    /// Starts a server on the same port (after [`Self::stop`] or [`Self::not_started`]) and
    /// waits until it accepts connections. Retries for a few seconds while the port is still
    /// held by the previous process.
    pub async fn restart(&mut self) {
        self.stop();
        let mut failures = Vec::new();
        for _ in 0..10 {
            match self.spawn_and_wait().await {
                Ok(()) => return,
                Err(failure) => {
                    failures.push(failure);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        panic!(
            "nats-server did not restart on port {}:\n{}",
            self.port,
            failures.join("\n---\n")
        );
    }

    /// The last `count` lines nats-server wrote to stderr (all runs on this port).
    pub fn stderr_tail(&self, count: usize) -> String {
        self.stderr.tail(count)
    }

    /// The captured stderr, for failure reports.
    pub fn stderr_log(&self) -> &OutputLog {
        &self.stderr
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = process::clean_command(&self.binary);
        if !self.listen_in_config {
            command.args(["-a", "127.0.0.1", "-p", &port]);
        }
        if let Some(config_file) = &self.config_file {
            command.arg("-c").arg(config_file);
        }
        self.stderr
            .note(&format!("--- nats-server starting on port {port} ---"));
        let mut spawned = process::spawn(&mut command, OutputLog::default(), self.stderr.clone())
            .map_err(|error| {
            format!(
                "cannot run {}: {error} (install: scripts/install-nats)",
                self.binary.display()
            )
        })?;
        let ready = process::wait_for_line(&mut spawned.stderr_lines, READY_BOUND, |line| {
            line.contains("Server is ready")
        })
        .await;
        let connected = ready.is_some() && self.accepts_connections();
        let alive = matches!(spawned.child.try_wait(), Ok(None));
        if ready.is_some() && connected && alive {
            self.child = Some(spawned.child);
            return Ok(());
        }
        process::kill(&mut spawned.child);
        self.stderr.wait_closed(Duration::from_secs(2)).await;
        Err(format!(
            "nats-server on port {port}: ready line seen: {}, accepts connections: {connected}, \
             still running: {alive}; its stderr:\n{}",
            ready.is_some(),
            self.stderr.tail(30)
        ))
    }

    fn accepts_connections(&self) -> bool {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        process::report_on_panic(&format!("nats-server :{}", self.port), &self.stderr);
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("cannot bind an ephemeral loopback port")
}
