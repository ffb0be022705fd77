//! What the status page shows about NATS: the server the connection is on, the round trip
//! to it, and the workers that register with the NATS service API.
//!
//! None of this is on a callback's path: the status page's probe calls it every few
//! seconds, each call bounded.

use std::time::Duration;

use async_nats::service::Info;
use futures::StreamExt as _;
use tokio::time::Instant;

use super::Forwarder;

/// The service API's discovery subject: every service answers it with its `Info`.
const SERVICE_INFO_SUBJECT: &str = "$SRV.INFO";

/// The NATS server the connection is on, from its `INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSummary {
    /// `server_name`.
    pub name: String,
    /// `version`.
    pub version: String,
    /// The host and port the server says it listens on.
    pub address: String,
}

/// A worker that answered the service API's discovery (`$SRV.INFO`) with at least one
/// endpoint on a callback subject of this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSeen {
    /// The service name.
    pub name: String,
    /// The service instance's id (one per process).
    pub id: String,
    /// The service version.
    pub version: String,
    /// The commands it serves (an endpoint subject of `{prefix}.{command}`).
    pub commands: Vec<&'static str>,
}

impl Forwarder {
    /// The server of the current connection; `None` while not connected.
    pub fn server(&self) -> Option<ServerSummary> {
        if !self.is_connected() {
            return None;
        }
        let info = self.client.server_info();
        Some(ServerSummary {
            name: info.server_name,
            version: info.version,
            address: format!("{}:{}", info.host, info.port),
        })
    }

    /// The last round trip through the server the watchdog made on this connection, and
    /// when it came back; `None` when not connected, or none came back since the last loss.
    pub fn last_round_trip(&self) -> Option<(Duration, Instant)> {
        if !self.is_connected() {
            return None;
        }
        self.health.last_round_trip()
    }

    /// The workers that answer `$SRV.INFO` within `wait` and serve one of this gateway's
    /// callback subjects; `None` when not connected or the request could not be sent.
    pub async fn discover_services(&self, wait: Duration) -> Option<Vec<ServiceSeen>> {
        if !self.is_connected() {
            return None;
        }
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.ok()?;
        self.client
            .publish_with_reply(SERVICE_INFO_SUBJECT, inbox, bytes::Bytes::new())
            .await
            .ok()?;
        let mut seen = Vec::new();
        let until = Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(until, replies.next()).await {
            let Ok(info) = serde_json::from_slice::<Info>(&message.payload) else {
                continue;
            };
            let mut commands: Vec<&'static str> = info
                .endpoints
                .iter()
                .filter_map(|endpoint| {
                    self.subjects
                        .iter()
                        .find(|(_, subject)| subject.as_str() == endpoint.subject)
                        .map(|(command, _)| *command)
                })
                .collect();
            if commands.is_empty() {
                continue;
            }
            commands.sort_unstable();
            commands.dedup();
            seen.push(ServiceSeen {
                name: info.name,
                id: info.id,
                version: info.version,
                commands,
            });
        }
        let _ = replies.unsubscribe().await;
        seen.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Some(seen)
    }
}
