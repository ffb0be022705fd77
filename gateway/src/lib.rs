//! openim-gateway: OpenIM callbacks in, NATS requests out, a decision back in time.
//!
//! `main` only wires the parts: [`settings::Config`] is parsed first, then
//! [`Gateway::build`] connects to NATS and then takes the listening socket over from a
//! gateway running on the same address (or binds one), then [`Gateway::run`] serves until
//! the shutdown future completes or a newer gateway takes the socket. Tests call the same
//! seam on port 0.

pub mod conditions;
pub mod deadline;
pub mod decision;
pub mod describe;
mod gateway;
#[cfg(target_os = "linux")]
pub mod handover;
pub mod healthcheck;
pub mod http;
mod listener;
pub mod metrics;
pub mod nats;
pub mod outcome;
pub mod rules;
pub mod serve;
pub mod settings;
mod startup;
pub mod status;
pub mod telemetry;

pub use gateway::{BuildError, Gateway, Reloader};
pub use listener::ListenError;
