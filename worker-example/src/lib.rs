//! A real worker for OpenIM's `callbackBeforeSetGroupMemberInfoCommand`, behind the gateway.
//!
//! The gateway turns OpenIM's HTTP callback into a NATS request on
//! `{prefix}.callbackBeforeSetGroupMemberInfoCommand`; this worker answers it. The crate is
//! split along what can be tested without a network:
//!
//! - [`rules`]: the policy, a pure function from request to answer;
//! - [`settings`]: the environment, parsed and validated before anything connects;
//! - [`worker`]: the only module that talks to NATS (subscribe, reply, deadline, drain);
//! - [`shutdown`]: the SIGINT/SIGTERM future.
//!
//! `main.rs` only wires them: settings -> tracing -> connect -> run -> exit code.

pub mod rules;
pub mod settings;
pub mod shutdown;
pub mod worker;

pub use rules::{decide, Rules};
pub use settings::{Settings, SettingsError};
pub use worker::{run, Worker, WorkerError};
