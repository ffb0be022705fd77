//! The end-to-end harness: a real `nats-server`, the real `openim-gateway` binary and real
//! workers, driven over HTTP the way OpenIM's Go client drives them.
//!
//! - [`NatsServer`], [`Gateway`], [`Worker`]: RAII guards for child processes. Each waits
//!   (bounded) until its child is ready, keeps the child's stderr for failure reports, and
//!   kills the child on drop.
//! - [`NatsCluster`]: three routed nats-server nodes on loopback, for failover tests.
//! - [`ScriptedWorker`]: in-process NATS subscribers whose replies a test scripts (malformed,
//!   slow, never) and which record every message byte for byte.
//! - [`HttpRequest`] / [`http::send`]: a raw HTTP/1.1 client that writes OpenIM's exact bytes.
//! - [`Stack`] and [`Expect`]: one test's processes and the one `check` helper; a failure
//!   prints the request, the answer and every child's stderr tail.
//!
//! The tests themselves live in `tests/tests/e2e/`, one module per area. This crate does
//! not build the binaries under test: `cargo build --workspace --bins` does (scripts/test
//! runs it first).

pub mod binaries;
pub mod check;
pub mod cluster;
pub mod fixtures;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod otlp;
pub mod process;
pub mod scratch;
pub mod scripted;
pub mod stack;
pub mod worker;

pub use check::{allow, allow_with, reject, Expect, ExpectBody};
pub use cluster::NatsCluster;
pub use gateway::{ExitReport, Gateway};
pub use http::{HttpConnection, HttpRequest, HttpResponse};
pub use nats::NatsServer;
pub use otlp::OtlpReceiver;
pub use process::OutputLog;
pub use scripted::{Behaviour, Received, Reply, ScriptedWorker};
pub use stack::{Case, Stack, ALL_CALLBACKS};
pub use worker::Worker;
