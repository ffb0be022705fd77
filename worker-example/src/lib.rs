//! A real worker for OpenIM's `callbackBeforeSetGroupMemberInfoCommand`, behind the gateway.
//!
//! The gateway turns OpenIM's HTTP callback into a NATS request on
//! `{prefix}.callbackBeforeSetGroupMemberInfoCommand`; this worker answers it. The crate is
//! split along what can be tested without a network:
//!
//! - [`rules`]: the policy, a pure function from request to answer;
//! - [`settings`]: the environment, parsed and validated before anything connects;
//! - [`worker`]: the worker on `openim-worker-kit`, which does everything about NATS
//!   (subscribe, reply, deadline, service errors, bounded concurrency, discovery, drain).
//!
//! `main.rs` only wires them: settings -> tracing -> connect -> run -> exit code.

pub mod rules;
pub mod settings;
pub mod worker;

pub use openim_worker_kit::WorkerError;
pub use rules::{decide, Rules};
pub use settings::{Settings, SettingsError};
pub use worker::run;
