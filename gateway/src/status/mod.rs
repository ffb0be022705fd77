//! The status page: what the gateway is doing, for an operator who opens `GET /` (HTML) or
//! `GET /status.json` (the same figures as JSON).
//!
//! [`window`] records, per command, who decided each answer, how long it took and the shadow
//! outcomes, since start and over the last five minutes; the metrics feed it where they
//! count. [`page`] holds the figures as one value ([`page::Status`]) and writes it as HTML or
//! JSON. What the figures are assembled from (the rules in force, the NATS connection, the
//! probe of the workers) is the HTTP layer's business: this module imports neither.

pub mod page;
pub mod window;

pub use page::Status;
pub use window::Recorder;
