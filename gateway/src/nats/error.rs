//! Why the NATS side of the gateway could not be set up.

use thiserror::Error;

/// Why the NATS client could not be set up (the settings were already valid).
#[derive(Debug, Error)]
pub enum SetupError {
    /// The client could not be created.
    #[error("cannot set up the nats client for {servers}: {source}")]
    Connect {
        /// The servers, without credentials.
        servers: String,
        /// async-nats' reason.
        source: async_nats::ConnectError,
    },
    /// The credentials could not be handed to the client.
    #[error("cannot use the nats credentials: {0}")]
    Credentials(#[from] std::io::Error),
    /// The subscription that routes replies could not be made.
    #[error("cannot subscribe to the reply inbox: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The after-callback stream could not be found or created.
    #[error("GATEWAY_AFTER_STREAM={name:?}: cannot find or create the jetstream stream: {reason} (a new stream reserves GATEWAY_AFTER_STREAM_MAX_BYTES={max_bytes} in the server's jetstream store)")]
    AfterStream {
        /// The stream's name.
        name: String,
        /// The size the gateway asked for when creating it.
        max_bytes: u64,
        /// What the server said.
        reason: String,
    },
}
