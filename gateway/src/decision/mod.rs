//! Decisions, pure (no I/O, no clock): the default answer ([`default`]), a worker's reply
//! judged ([`judge`]), and each command's answer fields decoded and guarded as OpenIM's Go code
//! reads them (`fields`), from the mirror of OpenIM's answer structs in
//! `proto/src/openim/answers.rs`: how OpenIM applies each field (when not `null`, always, when
//! not empty, never) and what the gateway checks before a value may reach OpenIM. Nothing here
//! invents a modification: every field written comes from the worker or from the request.

mod compare;
pub mod default;
#[cfg(test)]
mod fidelity_props;
mod fields;
#[cfg(test)]
mod go_oracle;
pub mod judge;

use serde_json::{Map, Value};

pub use compare::{effect, Effect};
pub use default::{default_answer, DefaultDecision};
pub use judge::{judge_reply, normalise_reply, refuses};

/// A parsed callback body: always a JSON object.
pub type Body = Map<String, Value>;
