//! [`Worker`]: the real `openim-worker-example` binary in the `openim-workers` queue group.
//!
//! It decides `callbackBeforeSetGroupMemberInfoCommand` (normalises nicknames, rejects banned
//! words, long nicknames, non-https avatars, owner promotions), which is what the allow,
//! modify, reject and concurrency tests need from a worker that is not scripted by the test.

use std::process::Child;
use std::time::Duration;

use crate::binaries;
use crate::process::{self, OutputLog};

/// How long the worker may take to print `worker ready`.
const READY_BOUND: Duration = Duration::from_secs(15);

/// A running example worker, killed on drop.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stdout: OutputLog,
    stderr: OutputLog,
}

impl Worker {
    /// Starts the worker against `nats_url` with `settings` (`WORKER_SUBJECT_PREFIX`,
    /// `WORKER_BANNED_WORDS`, `WORKER_MAX_NICKNAME_CHARS`) and waits for `worker ready`.
    pub async fn start(nats_url: &str, settings: &[(&str, &str)]) -> Self {
        let mut command = process::clean_command(&binaries::example_worker());
        command.env("NATS_URL", nats_url).env("RUST_LOG", "info");
        for (name, value) in settings {
            command.env(name, value);
        }
        let stdout = OutputLog::default();
        let stderr = OutputLog::default();
        let mut spawned = process::spawn(&mut command, stdout.clone(), stderr.clone())
            .unwrap_or_else(|error| panic!("cannot run openim-worker-example: {error}"));
        let ready = process::wait_for_line(&mut spawned.stdout_lines, READY_BOUND, |line| {
            line.contains("worker ready")
        })
        .await;
        if ready.is_none() {
            process::kill(&mut spawned.child);
            stderr.wait_closed(Duration::from_secs(2)).await;
            stderr.mark_reported();
            panic!(
                "openim-worker-example did not print `worker ready` within {READY_BOUND:?} \
                 (settings {settings:?}, NATS_URL={nats_url});\nstdout:\n{}\nstderr:\n{}",
                stdout.all(),
                stderr.tail(60)
            );
        }
        // `worker ready` comes after the worker's own round trip to the server, so the
        // subscription is in place: the first callback cannot find nobody.
        Self {
            child: spawned.child,
            stdout,
            stderr,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process id, for signals a test sends itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager or `docker stop` does.
    pub fn terminate(&self) {
        process::signal(self.child.id(), "TERM");
    }

    /// Kills the process at once (SIGKILL), as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        process::kill(&mut self.child);
        self.stderr.note("--- killed by the test ---");
    }

    /// Waits (bounded) for the process to exit; its exit code, or `None` if it was still
    /// running at the bound (or died of a signal).
    pub async fn wait_for_exit(&mut self, bound: Duration) -> Option<i32> {
        process::wait_for_exit(&mut self.child, bound).await
    }

    /// The captured stderr.
    pub fn stderr_log(&self) -> &OutputLog {
        &self.stderr
    }

    /// The captured stdout.
    pub fn stdout_log(&self) -> &OutputLog {
        &self.stdout
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        process::report_on_panic("openim-worker-example", &self.stderr);
        process::kill(&mut self.child);
    }
}
