//! [`Worker`]: the real `openim-worker-example` binary in the `openim-workers` queue group.
//!
//! It decides `callbackBeforeSetGroupMemberInfoCommand` (normalises nicknames, rejects banned
//! words, long nicknames, non-https avatars, owner promotions), which is what the allow,
//! modify, reject and concurrency tests need from a worker that is not scripted by the test.

use std::process::Child;
use std::time::Duration;

use bytes::Bytes;
use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
use openim_gateway_proto::{headers, subject};

use crate::binaries;
use crate::process::{self, OutputLog};
use crate::scripted::unix_ms_now;

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
        let worker = Self {
            child: spawned.child,
            stdout,
            stderr,
        };
        let prefix = settings
            .iter()
            .find(|(name, _)| *name == "WORKER_SUBJECT_PREFIX")
            .map_or(subject::DEFAULT_PREFIX, |(_, value)| *value);
        wait_until_serving(
            nats_url,
            &subject::for_command(prefix, BEFORE_SET_GROUP_MEMBER_INFO),
        )
        .await;
        worker
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
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

/// Waits (bounded) until a request on `subject` gets an answer rather than "no responders".
///
/// The worker prints `worker ready` after flushing its SUB to the socket, which does not mean
/// the server has processed it yet; a test's first callback could still find nobody. A probe
/// the worker answers (with a service error: the body is not a request) closes that window.
async fn wait_until_serving(nats_url: &str, subject: &str) {
    let probing = async {
        let client = async_nats::connect(nats_url).await.ok()?;
        loop {
            let mut probe_headers = async_nats::HeaderMap::new();
            let deadline = (unix_ms_now() + 5000).to_string();
            probe_headers.insert(headers::DEADLINE_UNIX_MS, deadline.as_str());
            let answer = client
                .request_with_headers(
                    subject.to_owned(),
                    probe_headers,
                    Bytes::from_static(b"harness readiness probe"),
                )
                .await;
            match answer {
                Ok(_) => return Some(()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    };
    if tokio::time::timeout(READY_BOUND, probing)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        panic!("openim-worker-example printed `worker ready` but did not answer on {subject} within {READY_BOUND:?}");
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        process::report_on_panic("openim-worker-example", &self.stderr);
        process::kill(&mut self.child);
    }
}
