//! The only module that talks to NATS: the connection, subjects, headers, publishing, reply
//! routing and the deadline. Nothing outside it sees an async-nats type.
//!
//! Replies are routed by the gateway itself: one wildcard subscription on a private inbox,
//! and a map from request number to the waiting callback. A callback that gives up (its
//! deadline passed, or OpenIM hung up) removes its entry on drop, so timeouts, the gateway's
//! normal failure mode, leave nothing behind (async-nats' own `request` keeps an entry per
//! timed-out request for the life of the client, nats-io/nats.rs#1617).
//!
//! Every call is bounded by the caller's deadline as a whole: async-nats starts its own
//! request timeout only once the request has left its command channel, which is not read
//! while reconnecting. And a request is not even attempted while the connection is down.
//!
//! This module does not judge replies: it hands back the payload and whether the worker
//! flagged an error, and the callback path decides what that means for OpenIM.

mod after_stream;
mod error;
mod events;
mod forwarder;
mod headers;
mod info;
mod options;
mod replies;

pub use after_stream::AFTER_STREAM_MAX_AGE;
pub use error::SetupError;
pub use forwarder::{Forwarder, NotDelivered, Outcome, Reply};
pub use headers::CallbackMeta;
pub use info::{ServerSummary, ServiceSeen};
