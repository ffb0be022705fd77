//! Write an openim-gateway worker as one function.
//!
//! ```no_run
//! use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
//! use openim_gateway_proto::group_member::{MemberInfoChanges, SetGroupMemberInfoRequest};
//! use openim_worker_kit::{connect, shutdown, Decision, HandlerError, WorkerBuilder};
//!
//! fn decide(
//!     request: &SetGroupMemberInfoRequest,
//!     _: &openim_worker_kit::Context,
//! ) -> Result<Decision<MemberInfoChanges>, HandlerError> {
//!     Ok(match request.role_level {
//!         Some(100) => Decision::reject(5005, "no owner changes here"),
//!         _ => Decision::allow(),
//!     })
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = connect("my-worker", &["nats://127.0.0.1:4222".parse()?]).await?;
//! WorkerBuilder::new("my-worker", "1.0.0")
//!     .handle(BEFORE_SET_GROUP_MEMBER_INFO, decide)
//!     .run(client, shutdown::signal())
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The kit does the rest of docs/worker-protocol.md: the subject `{prefix}.{command}` in the
//! queue group `openim-workers`; skipping a request whose `X-Deadline-Unix-Ms` has passed; the
//! reply without the request's headers; a `Nats-Service-Error` reply (400 for a body that is
//! not the command's request, 500 when the handler fails) so the gateway answers its default
//! at once; at most [`DEFAULT_CONCURRENCY`] messages in flight; `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` discovery with per-command counts; and on shutdown a drain that answers
//! everything the server has already sent (async-nats's own drain does not, see
//! [`endpoint`]).
//!
//! It is a crate of its own rather than a module of `openim-gateway-proto` because it does
//! I/O (async-nats, tokio) and the gateway must not depend on a worker's runtime; the proto
//! crate stays serde-only and shared by both.
//!
//! - [`decision`]: [`Decision`], allow / reject / modify;
//! - [`handler`]: from a typed handler to the bytes of a reply, and its errors;
//! - `deadline`: the deadline header;
//! - [`endpoint`]: one command's subscription, bounded concurrency and the drain;
//! - [`service`]: `$SRV` discovery and statistics;
//! - [`worker`]: the builder and the serving loop;
//! - [`after_stream`]: after-callbacks read from the gateway's JetStream stream through a
//!   durable consumer (`GATEWAY_AFTER_STREAM`), acknowledged once handled;
//! - [`connect`] and [`shutdown`]: the connection and the SIGINT/SIGTERM future.

pub mod after_stream;
pub mod connect;
mod deadline;
pub mod decision;
pub mod endpoint;
pub mod handler;
pub mod service;
pub mod shutdown;
pub mod worker;

pub use after_stream::{
    AfterCallback, AfterStreamBuilder, AfterStreamConsumer, AfterStreamError, AfterStreamReport,
};
pub use connect::{connect, connect_with};
pub use decision::Decision;
pub use handler::{Context, HandlerError, Response};
pub use service::ServiceIdentity;
pub use worker::{
    ShutdownReport, Worker, WorkerBuilder, WorkerError, DEFAULT_CONCURRENCY, DEFAULT_SHUTDOWN_GRACE,
};
