//! Spawning a child process with its stdout and stderr captured line by line.
//!
//! Every guard in this crate (nats-server, the gateway, the example worker) keeps its child's
//! output here so that a failing test can show what the child said; the benchmark driver
//! spawns its children here too, with their stderr in a log file. Pipes are drained by one
//! thread each, so a chatty child never blocks on a full pipe. This module does not decide
//! when a child is ready; the guards do, by watching the lines.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How many lines of one stream are kept. The secret test scans the whole stderr of a
/// gateway at debug level, so this is large; it only bounds a runaway child.
const KEPT_LINES: usize = 200_000;

/// The captured output of one stream (stdout or stderr) of one child, shared between the
/// reader thread and the guard.
#[derive(Debug, Clone, Default)]
pub struct OutputLog {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug, Default)]
struct LogInner {
    lines: VecDeque<String>,
    /// Lines dropped because more than [`KEPT_LINES`] arrived.
    dropped: usize,
    /// The reader saw end of file: the child closed the stream (it exited).
    closed: bool,
    /// A failure report already printed this log, so the guard's drop need not print it again.
    reported: bool,
}

impl OutputLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        // A reader thread never panics while holding the lock, but a test may; the log is
        // still readable then.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, line: String) {
        let mut inner = self.lock();
        if inner.lines.len() == KEPT_LINES {
            inner.lines.pop_front();
            inner.dropped += 1;
        }
        inner.lines.push_back(line);
    }

    /// Appends a line written by the harness itself (e.g. "--- restarted ---").
    pub fn note(&self, line: &str) {
        self.push(format!("[harness] {line}"));
    }

    /// Every kept line, joined with newlines.
    pub fn all(&self) -> String {
        let inner = self.lock();
        let mut text = String::new();
        if inner.dropped > 0 {
            text.push_str(&format!("[... {} earlier lines dropped]\n", inner.dropped));
        }
        for line in &inner.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The last `count` lines, joined with newlines.
    pub fn tail(&self, count: usize) -> String {
        let inner = self.lock();
        let skip = inner.lines.len().saturating_sub(count);
        let mut text = String::new();
        if skip > 0 || inner.dropped > 0 {
            text.push_str(&format!("[... {} earlier lines]\n", skip + inner.dropped));
        }
        for line in inner.lines.iter().skip(skip) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Every kept line.
    pub fn lines(&self) -> Vec<String> {
        self.lock().lines.iter().cloned().collect()
    }

    /// Whether the child closed this stream.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits (bounded) until the child closed this stream, so that [`Self::all`] holds
    /// everything it wrote.
    pub async fn wait_closed(&self, bound: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < bound {
            if self.is_closed() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.is_closed()
    }

    /// Marks the log as printed by a failure report.
    pub fn mark_reported(&self) {
        self.lock().reported = true;
    }

    /// Whether a failure report printed this log already.
    pub fn was_reported(&self) -> bool {
        self.lock().reported
    }
}

/// A running child with its output streams captured.
#[derive(Debug)]
pub struct Spawned {
    /// The child itself.
    pub child: Child,
    /// Every stdout line as it arrives; closed when the child closes stdout.
    pub stdout_lines: UnboundedReceiver<String>,
    /// Every stderr line as it arrives; closed when the child closes stderr (at once when
    /// stderr goes to a file).
    pub stderr_lines: UnboundedReceiver<String>,
}

/// Where a child's stderr goes.
#[derive(Debug)]
pub enum StderrTo {
    /// Captured line by line, like stdout.
    Log(OutputLog),
    /// Appended to a file (a long benchmark run writes more than is worth keeping in memory).
    File(File),
}

/// Spawns `command` with piped stdout and stderr (stdin closed) and starts one reader
/// thread per stream, appending to `stdout` and `stderr` (a guard that restarts its child
/// passes the same logs again, so they hold every run).
pub(crate) fn spawn(
    command: &mut Command,
    stdout: OutputLog,
    stderr: OutputLog,
) -> std::io::Result<Spawned> {
    spawn_with(command, stdout, StderrTo::Log(stderr))
}

/// Spawns `command` (stdin closed), its stdout read line by line into `stdout`, its stderr
/// where `stderr` says.
pub fn spawn_with(
    command: &mut Command,
    stdout: OutputLog,
    stderr: StderrTo,
) -> std::io::Result<Spawned> {
    command.stdin(Stdio::null()).stdout(Stdio::piped());
    match &stderr {
        StderrTo::Log(_) => command.stderr(Stdio::piped()),
        StderrTo::File(file) => command.stderr(file.try_clone()?),
    };
    let mut child = command.spawn()?;
    stdout.lock().closed = false;
    let (stdout_tx, stdout_lines) = unbounded_channel();
    let (stderr_tx, stderr_lines) = unbounded_channel();
    if let Some(pipe) = child.stdout.take() {
        read_lines(pipe, stdout, stdout_tx);
    }
    if let (StderrTo::Log(log), Some(pipe)) = (stderr, child.stderr.take()) {
        log.lock().closed = false;
        read_lines(pipe, log, stderr_tx);
    }
    Ok(Spawned {
        child,
        stdout_lines,
        stderr_lines,
    })
}

fn read_lines(pipe: impl Read + Send + 'static, log: OutputLog, lines: UnboundedSender<String>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    while buffer
                        .last()
                        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
                    {
                        buffer.pop();
                    }
                    let line = String::from_utf8_lossy(&buffer).into_owned();
                    log.push(line.clone());
                    // The receiver may be gone (nobody waits any more); the log keeps the line.
                    let _ = lines.send(line);
                }
            }
        }
        log.lock().closed = true;
    });
}

/// Kills the child and reaps it. Killing an exited child is not an error worth reporting.
/// Waits (bounded) for `child` to exit; its exit code, or `None` if it was still running at
/// the bound (or died of a signal).
pub async fn wait_for_exit(child: &mut Child, bound: Duration) -> Option<i32> {
    let start = std::time::Instant::now();
    while start.elapsed() < bound {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends signal `name` (`TERM`, `STOP`, `CONT`...) to process `pid` with kill(1): the crate
/// forbids unsafe code, so no libc call.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits (bounded) for a line matching `wanted` on `lines`. Returns the line, or `None` when
/// the stream closed (the child exited) or the bound passed.
pub(crate) async fn wait_for_line(
    lines: &mut UnboundedReceiver<String>,
    bound: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) if wanted(&line) => return Some(line),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Why a blocking wait for a line ended without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoLine {
    /// The stream closed: the child exited.
    Closed,
    /// The bound passed.
    Timeout,
}

/// `wait_for_line` for callers outside an async runtime (the benchmark driver): polls the
/// stream every few milliseconds until a line matches, the stream closes or `bound` passes.
pub fn wait_for_line_blocking(
    lines: &mut UnboundedReceiver<String>,
    bound: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, NoLine> {
    use tokio::sync::mpsc::error::TryRecvError;
    let deadline = Instant::now() + bound;
    loop {
        match lines.try_recv() {
            Ok(line) if wanted(&line) => return Ok(line),
            Ok(_) => {}
            Err(TryRecvError::Disconnected) => return Err(NoLine::Closed),
            Err(TryRecvError::Empty) if Instant::now() >= deadline => return Err(NoLine::Timeout),
            Err(TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// A clean environment: nothing from the test runner's environment leaks into the child but
/// `PATH`, so a developer's `RUST_LOG` or `NATS_URL` cannot change what a test sees.
pub(crate) fn clean_command(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// Prints a guard's stderr tail when the test is failing and no report printed it yet, so
/// every failure shows what the children said, even one outside `check`.
pub(crate) fn report_on_panic(name: &str, log: &OutputLog) {
    if std::thread::panicking() && !log.was_reported() {
        log.mark_reported();
        eprintln!("--- {name} stderr (last 60 lines) ---\n{}", log.tail(60));
    }
}
