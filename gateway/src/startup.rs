//! The start-up checks that run beside serving: the body limit against the NATS server's,
//! the enabled callbacks no worker serves, and the connection bound the open-file limit allows.

use std::time::Duration;

use openim_gateway_proto::{CallbackKind, Command};

use crate::nats::Forwarder;

/// File descriptors kept for everything but connections: NATS, the log thread, the blocking
/// pool, a scrape.
const RESERVED_FILES: u64 = 64;
/// How often [`check_max_payload_once_connected`] looks at the connection.
const CONNECTED_POLL: Duration = Duration::from_millis(100);

/// The start-up check of `GATEWAY_MAX_BODY_BYTES` against the server's `max_payload`, for a
/// gateway that opened its port before NATS was reachable: once it connects, a limit above
/// the server's is warned about (the gateway is already serving, so it does not stop). Bodies
/// the server cannot carry are refused with 413 either way.
pub(crate) async fn check_max_payload_once_connected(forwarder: Forwarder, max_body_bytes: usize) {
    while !forwarder.is_connected() {
        tokio::time::sleep(CONNECTED_POLL).await;
    }
    let max_payload = forwarder.max_payload();
    if max_body_bytes > max_payload {
        tracing::warn!(
            max_body_bytes,
            max_payload,
            "GATEWAY_MAX_BODY_BYTES is above the nats server's max_payload: bodies the server cannot carry are refused with 413; lower the setting or raise max_payload"
        );
    }
}

/// Warns about each callback OpenIM's `webhooks.yml` enables but no worker serves: its
/// before-callbacks will get the default decision, its after-callbacks reach nobody. With an
/// after-callback stream (`after_stream`), an after-callback is served when a consumer of
/// the stream takes it; it is not probed. Runs beside the start, so that probing (a few
/// hundred milliseconds) delays nothing.
///
/// `enabled` holds the commands of each enabled key: a key whose commands are an old and a
/// new name (`beforeMemberJoinGroup`) is served when a worker serves either.
pub(crate) async fn warn_unserved(
    forwarder: Forwarder,
    enabled: Vec<Vec<&'static Command>>,
    after_stream: Option<String>,
) {
    for commands in enabled {
        let mut served = false;
        for command in &commands {
            match forwarder.is_served(command).await {
                Some(true) => {
                    served = true;
                    break;
                }
                Some(false) => {}
                None if forwarder.is_connected() => {
                    tracing::debug!(command = command.name, "not checked for workers");
                    // Not known to be unserved: no warning for this key.
                    served = true;
                    break;
                }
                None => {
                    tracing::debug!(
                        "nats not connected: the enabled callbacks were not checked for workers"
                    );
                    return;
                }
            }
        }
        if served {
            continue;
        }
        for command in commands {
            let stored = command.kind == CallbackKind::After && after_stream.is_some();
            if stored {
                tracing::warn!(
                    command = command.name,
                    kind = command.kind.as_str(),
                    stream = after_stream.as_deref().unwrap_or_default(),
                    "enabled in OpenIM's webhooks.yml, but no consumer of the after-callback stream takes it: its after-callbacks are stored and wait there, until the stream's limits drop them, for a worker to read them"
                );
            } else {
                tracing::warn!(
                    command = command.name,
                    kind = command.kind.as_str(),
                    "enabled in OpenIM's webhooks.yml, but no worker serves it: its callbacks get the default decision (after-callbacks reach nobody)"
                );
            }
        }
    }
}

/// `configured`, lowered to what the open-file limit allows once raised to its hard limit:
/// at the limit, accept fails and callbacks wait unseen in the backlog.
pub(crate) fn connection_bound(configured: usize) -> usize {
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            return configured;
        }
    };
    let allowed = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
    if allowed < configured {
        tracing::warn!(
            open_file_limit = files,
            max_connections = allowed,
            "GATEWAY_MAX_CONNECTIONS is above what the open-file limit allows: serving at most {allowed} connections"
        );
        allowed.max(1)
    } else {
        configured
    }
}
