//! Discovery through the NATS service API: `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`.
//!
//! `nats micro ls`, `nats micro stats` and any client's service discovery find the worker and
//! read per-endpoint counts. The replies are async-nats's own service types
//! (`async_nats::service::{PingResponse, Info, Stats}`), so their JSON is the one every NATS
//! tool expects; the responder is the kit's own rather than async-nats's `Service`, because a
//! `Service` endpoint can only stop with an immediate unsubscribe, which loses the requests
//! the server has already sent (see [`crate::endpoint`] for the drain the kit does instead).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::service::{endpoint, error, Info, PingResponse, Stats};
use async_nats::{Client, Message, Subscriber};
use bytes::Bytes;
use futures::stream::{select_all, StreamExt as _};

/// The prefix of every service API subject.
const API_PREFIX: &str = "$SRV";
/// The three verbs, as they appear in subjects.
const VERBS: [&str; 3] = ["PING", "INFO", "STATS"];

/// How the worker names itself in discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// The service name: letters, digits, `-` and `_` only (the service API's rule).
    pub name: String,
    /// A semantic version, e.g. `0.1.0`.
    pub version: String,
    /// One line for humans.
    pub description: String,
}

impl ServiceIdentity {
    /// Whether `name` follows the service API's naming rule.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }
}

/// The counters of one endpoint (one command), shared by its message tasks and the responder.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    /// The command: the endpoint's name.
    pub(crate) name: String,
    /// `{prefix}.{command}`.
    pub(crate) subject: String,
    /// Answers and service errors sent.
    requests: AtomicU64,
    /// Service errors sent (bad requests and handler failures).
    errors: AtomicU64,
    /// Requests skipped because their deadline had passed: nobody waited for them.
    skipped_late: AtomicU64,
    /// Time spent from receiving a request to publishing its reply, in nanoseconds.
    processing_nanos: AtomicU64,
    /// The last service error, as the service API reports it.
    last_error: Mutex<Option<(u16, String)>>,
}

impl EndpointStats {
    pub(crate) fn new(name: &str, subject: &str) -> Self {
        Self {
            name: name.to_owned(),
            subject: subject.to_owned(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            skipped_late: AtomicU64::new(0),
            processing_nanos: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Counts one reply sent after `took`; `error` when it was a service error.
    pub(crate) fn record(&self, took: Duration, error: Option<(u16, &str)>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.processing_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some((code, description)) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((code, description.to_owned()));
        }
    }

    /// Counts one request skipped because its deadline had passed.
    pub(crate) fn record_skipped_late(&self) {
        self.skipped_late.fetch_add(1, Ordering::Relaxed);
    }

    /// Replies sent so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests skipped as late so far.
    pub(crate) fn skipped_late(&self) -> u64 {
        self.skipped_late.load(Ordering::Relaxed)
    }

    fn snapshot(&self, queue_group: &str) -> endpoint::Stats {
        let requests = self.requests.load(Ordering::Relaxed);
        let processing_time = Duration::from_nanos(self.processing_nanos.load(Ordering::Relaxed));
        let average_processing_time = match u32::try_from(requests) {
            Ok(0) => Duration::ZERO,
            Ok(count) => processing_time / count,
            Err(_) => processing_time.div_f64(requests as f64),
        };
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .map(|(code, status)| error::Error {
                code: usize::from(code),
                status,
            });
        endpoint::Stats {
            name: self.name.clone(),
            subject: self.subject.clone(),
            requests: usize::try_from(requests).unwrap_or(usize::MAX),
            errors: usize::try_from(self.errors.load(Ordering::Relaxed)).unwrap_or(usize::MAX),
            processing_time,
            average_processing_time,
            last_error,
            data: Some(serde_json::json!({ "skipped_late": self.skipped_late() })),
            queue_group: queue_group.to_owned(),
        }
    }
}

/// Everything the responder answers from.
#[derive(Debug)]
pub(crate) struct Registry {
    pub(crate) identity: ServiceIdentity,
    /// A fresh id per process, so that `$SRV.PING` tells instances apart.
    pub(crate) id: String,
    pub(crate) queue_group: String,
    pub(crate) started: async_nats::datetime::DateTime,
    pub(crate) endpoints: Vec<Arc<EndpointStats>>,
}

impl Registry {
    fn ping(&self) -> PingResponse {
        PingResponse {
            kind: "io.nats.micro.v1.ping_response".to_owned(),
            name: self.identity.name.clone(),
            id: self.id.clone(),
            version: self.identity.version.clone(),
            metadata: HashMap::new(),
        }
    }

    fn info(&self) -> Info {
        Info {
            kind: "io.nats.micro.v1.info_response".to_owned(),
            name: self.identity.name.clone(),
            id: self.id.clone(),
            description: self.identity.description.clone(),
            version: self.identity.version.clone(),
            metadata: HashMap::new(),
            endpoints: self
                .endpoints
                .iter()
                .map(|endpoint| endpoint::Info {
                    name: endpoint.name.clone(),
                    subject: endpoint.subject.clone(),
                    queue_group: self.queue_group.clone(),
                    metadata: HashMap::new(),
                })
                .collect(),
        }
    }

    fn stats(&self) -> Stats {
        Stats {
            kind: "io.nats.micro.v1.stats_response".to_owned(),
            name: self.identity.name.clone(),
            id: self.id.clone(),
            version: self.identity.version.clone(),
            started: self.started,
            endpoints: self
                .endpoints
                .iter()
                .map(|endpoint| endpoint.snapshot(&self.queue_group))
                .collect(),
        }
    }

    /// The JSON reply to `verb`, or `None` for a verb the API does not have.
    fn answer(&self, verb: &str) -> Option<Result<Vec<u8>, serde_json::Error>> {
        match verb {
            "PING" => Some(serde_json::to_vec(&self.ping())),
            "INFO" => Some(serde_json::to_vec(&self.info())),
            "STATS" => Some(serde_json::to_vec(&self.stats())),
            _ => None,
        }
    }
}

/// The service API subscriptions of one worker: all instances, this service's name, this
/// instance's id, for each verb. Plain subscriptions, not a queue group: every instance
/// answers discovery.
pub(crate) async fn subscribe(
    client: &Client,
    registry: &Registry,
) -> Result<Vec<Subscriber>, async_nats::SubscribeError> {
    let mut subscribers = Vec::with_capacity(VERBS.len() * 3);
    for verb in VERBS {
        for subject in [
            format!("{API_PREFIX}.{verb}"),
            format!("{API_PREFIX}.{verb}.{}", registry.identity.name),
            format!(
                "{API_PREFIX}.{verb}.{}.{}",
                registry.identity.name, registry.id
            ),
        ] {
            subscribers.push(client.subscribe(subject).await?);
        }
    }
    Ok(subscribers)
}

/// Answers discovery requests until the subscriptions end (they are dropped on shutdown).
pub(crate) async fn serve(client: Client, registry: Arc<Registry>, subscribers: Vec<Subscriber>) {
    let mut requests = select_all(subscribers);
    while let Some(request) = requests.next().await {
        answer(&client, &registry, request).await;
    }
}

async fn answer(client: &Client, registry: &Registry, request: Message) {
    let Some(reply) = request.reply else {
        return;
    };
    let verb = request
        .subject
        .as_str()
        .split('.')
        .nth(1)
        .unwrap_or_default();
    match registry.answer(verb) {
        Some(Ok(body)) => {
            if let Err(error) = client.publish(reply, Bytes::from(body)).await {
                tracing::warn!(%error, verb, "cannot answer a service API request");
            }
        }
        Some(Err(error)) => tracing::error!(%error, verb, "cannot serialise a service API answer"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        let endpoint = Arc::new(EndpointStats::new(
            "callbackBeforeSetGroupMemberInfoCommand",
            "openim.callback.callbackBeforeSetGroupMemberInfoCommand",
        ));
        endpoint.record(Duration::from_micros(30), None);
        endpoint.record(Duration::from_micros(10), Some((400, "bad request: x")));
        endpoint.record_skipped_late();
        Registry {
            identity: ServiceIdentity {
                name: "openim-worker-example".to_owned(),
                version: "0.1.0".to_owned(),
                description: "test".to_owned(),
            },
            id: "abc".to_owned(),
            queue_group: "openim-workers".to_owned(),
            started: async_nats::datetime::now(),
            endpoints: vec![endpoint],
        }
    }

    #[test]
    fn stats_read_back_as_the_service_api_type_with_the_counts() {
        let body = registry().answer("STATS").unwrap().unwrap();
        let stats: Stats = serde_json::from_slice(&body).unwrap();
        assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
        let endpoint = &stats.endpoints[0];
        assert_eq!(endpoint.requests, 2);
        assert_eq!(endpoint.errors, 1);
        assert_eq!(endpoint.queue_group, "openim-workers");
        assert_eq!(endpoint.average_processing_time, Duration::from_micros(20));
        assert_eq!(
            endpoint.last_error.as_ref().map(|error| error.code),
            Some(400)
        );
        assert_eq!(
            endpoint.data,
            Some(serde_json::json!({ "skipped_late": 1 }))
        );
    }

    #[test]
    fn ping_and_info_name_the_instance_and_its_endpoints() {
        let registry = registry();
        let ping: PingResponse =
            serde_json::from_slice(&registry.answer("PING").unwrap().unwrap()).unwrap();
        assert_eq!(
            (ping.name.as_str(), ping.id.as_str()),
            ("openim-worker-example", "abc")
        );
        let info: Info =
            serde_json::from_slice(&registry.answer("INFO").unwrap().unwrap()).unwrap();
        assert_eq!(
            info.endpoints[0].subject,
            "openim.callback.callbackBeforeSetGroupMemberInfoCommand"
        );
        assert!(registry.answer("SCHEMA").is_none());
    }

    #[test]
    fn service_names_follow_the_api_rule() {
        assert!(ServiceIdentity::is_valid_name("openim-worker_2"));
        assert!(!ServiceIdentity::is_valid_name(""));
        assert!(!ServiceIdentity::is_valid_name("openim.worker"));
    }
}
