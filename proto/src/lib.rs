//! The wire between OpenIM, the gateway and workers.
//!
//! This crate owns every name that crosses a process boundary: the catalog of OpenIM
//! callback commands and their kind, the common answer OpenIM parses, a mirror of OpenIM's
//! answer structs with a decoder that reads JSON as Go does, the typed request and
//! answer of `callbackBeforeSetGroupMemberInfoCommand`, the NATS subject naming and every
//! header name, and the values of `X-Decision-Source`; also `NATS_URL` with its credentials
//! hidden, which the gateway and workers both print. It depends on serde only and does no
//! I/O.

pub mod answer;
pub mod catalog;
pub mod group_member;
pub mod headers;
pub mod nats_url;
pub mod openim;
pub mod source;
pub mod subject;

#[cfg(test)]
mod schema;

pub use answer::CommonAnswer;
pub use catalog::{CallbackKind, Command};
pub use source::DecisionSource;
