//! [`OtlpReceiver`]: a real OTLP/HTTP traces receiver (`tests/otlp/receiver.py`), which
//! decodes every export with OpenTelemetry's own protobuf classes and prints each span as a
//! JSON line; a test reads the spans an exporter really sent.
//!
//! It runs on the repository's `.venv` Python (`scripts/test` installs
//! `tests/otlp/requirements.txt` there), or on `$OTLP_RECEIVER_PYTHON`.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::binaries;
use crate::process::{self, OutputLog};

/// How long the receiver may take to print its port.
const READY_BOUND: Duration = Duration::from_secs(20);

/// A running receiver, killed on drop.
#[derive(Debug)]
pub struct OtlpReceiver {
    child: Child,
    port: u16,
    stdout: OutputLog,
    stderr: OutputLog,
}

/// The Python that has `opentelemetry-proto`.
fn python() -> PathBuf {
    std::env::var_os("OTLP_RECEIVER_PYTHON").map_or_else(
        || binaries::workspace_root().join(".venv/bin/python"),
        PathBuf::from,
    )
}

impl OtlpReceiver {
    /// Starts the receiver on a free port and waits until it listens.
    pub async fn start() -> Self {
        let python = python();
        let script = binaries::workspace_root().join("tests/otlp/receiver.py");
        let mut command = process::clean_command(&python);
        command.arg(&script);
        let stdout = OutputLog::default();
        let stderr = OutputLog::default();
        let mut spawned = process::spawn(&mut command, stdout.clone(), stderr.clone())
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {} (scripts/test installs tests/otlp/requirements.txt into .venv; \
                     or set OTLP_RECEIVER_PYTHON): {error}",
                    python.display()
                )
            });
        let line = process::wait_for_line(&mut spawned.stdout_lines, READY_BOUND, |line| {
            line.starts_with("otlp receiver listening on ")
        })
        .await;
        let Some(port) = line.and_then(|line| line.rsplit(' ').next()?.parse().ok()) else {
            process::kill(&mut spawned.child);
            stderr.wait_closed(Duration::from_secs(2)).await;
            panic!(
                "the OTLP receiver did not start ({} {}; scripts/test installs \
                 tests/otlp/requirements.txt into .venv);\nstderr:\n{}",
                python.display(),
                script.display(),
                stderr.tail(40)
            );
        };
        Self {
            child: spawned.child,
            port,
            stdout,
            stderr,
        }
    }

    /// The base endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far, each with `path` (where it was POSTed) beside its fields.
    pub fn spans(&self) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter_map(|record| {
                let mut span = record.get("span")?.clone();
                span["path"] = record.get("path").cloned().unwrap_or(Value::Null);
                Some(span)
            })
            .collect()
    }

    /// Every line the receiver printed after its first: spans and anything unexpected.
    pub fn records(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits (bounded) until some received span satisfies `wanted`, and returns it.
    pub async fn wait_for_span(
        &self,
        bound: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| wanted(span)) {
                return Some(span);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the receiver printed, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "receiver stdout:\n{}\nreceiver stderr:\n{}",
            self.stdout.tail(60),
            self.stderr.tail(20)
        )
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        process::kill(&mut self.child);
    }
}
