//! The JetStream stream after-callbacks are stored in (`GATEWAY_AFTER_STREAM`): its
//! configuration, its creation at start, and whether a consumer takes a subject.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::{jetstream, Subject};
use futures::StreamExt;
use openim_gateway_proto::{catalog, CallbackKind};

use super::error::SetupError;

/// The JetStream stream after-callbacks are stored in.
#[derive(Debug, Clone)]
pub(super) struct AfterStream {
    pub(super) context: jetstream::Context,
    /// `GATEWAY_AFTER_STREAM`.
    pub(super) name: Arc<str>,
}

/// How long the after-callback stream keeps a message when the stream is created by the
/// gateway: a week, so that a worker down over a weekend still finds what it missed.
pub const AFTER_STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The stream the gateway creates for `GATEWAY_AFTER_STREAM`: the subjects of the
/// after-callbacks only (a stream on a before-callback's subject would answer the request
/// itself with its storage acknowledgement), on disk, one replica, messages kept for
/// [`AFTER_STREAM_MAX_AGE`] and at most `max_bytes` of them. At either limit the oldest are
/// dropped to make room (`DiscardPolicy::Old`): that policy applies to the stream's own
/// limits only, so without `max_bytes` a full JetStream store would refuse new
/// after-callbacks instead.
pub(super) fn after_stream_config(
    name: &str,
    max_bytes: u64,
    subjects: &HashMap<&'static str, Subject>,
) -> jetstream::stream::Config {
    let mut after_subjects: Vec<String> = catalog::COMMANDS
        .iter()
        .filter(|command| command.kind == CallbackKind::After)
        .filter_map(|command| subjects.get(command.name))
        .map(ToString::to_string)
        .collect();
    after_subjects.sort();
    jetstream::stream::Config {
        name: name.to_owned(),
        subjects: after_subjects,
        retention: jetstream::stream::RetentionPolicy::Limits,
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        max_age: AFTER_STREAM_MAX_AGE,
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        num_replicas: 1,
        ..Default::default()
    }
}

pub(super) async fn ensure_stream(
    context: &jetstream::Context,
    config: jetstream::stream::Config,
) -> Result<(), SetupError> {
    let name = config.name.clone();
    let max_bytes = u64::try_from(config.max_bytes).unwrap_or(0);
    let stream = context
        .get_or_create_stream(config)
        .await
        .map_err(|error| SetupError::AfterStream {
            name: name.clone(),
            max_bytes,
            reason: error.to_string(),
        })?;
    let used = &stream.cached_info().config;
    tracing::info!(
        stream = %name,
        subjects = used.subjects.len(),
        max_bytes = used.max_bytes,
        max_age_s = used.max_age.as_secs(),
        replicas = used.num_replicas,
        "after-callbacks are stored in a jetstream stream"
    );
    if used.max_bytes <= 0 && used.discard == jetstream::stream::DiscardPolicy::Old {
        tracing::warn!(
            stream = %name,
            "the after-callback stream has no max_bytes: when the server's jetstream storage is full, new after-callbacks are refused (acknowledged to OpenIM, not stored) instead of the oldest being dropped; set one with `nats stream edit {name} --max-bytes <size>`"
        );
    }
    Ok(())
}

impl AfterStream {
    /// Whether a consumer of the stream takes `subject` (a consumer without a filter takes
    /// every subject of the stream).
    pub(super) async fn has_consumer_for(&self, subject: &str) -> Result<bool, String> {
        let stream = self
            .context
            .get_stream_no_info(&*self.name)
            .await
            .map_err(|error| error.to_string())?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|error| error.to_string())?;
            if consumer_takes(&info.config, subject) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether a consumer configured with `config` receives messages on `subject`.
pub(super) fn consumer_takes(config: &jetstream::consumer::Config, subject: &str) -> bool {
    let filters: Vec<&str> = std::iter::once(config.filter_subject.as_str())
        .chain(config.filter_subjects.iter().map(String::as_str))
        .filter(|filter| !filter.is_empty())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|filter| subject_matches(filter, subject))
}

/// Whether the NATS subject filter `filter` (`*` one token, `>` one or more at the end)
/// matches the subject `subject`.
pub(super) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in filter.split('.') {
        if wanted == ">" {
            return tokens.next().is_some();
        }
        match tokens.next() {
            Some(token) if wanted == "*" || wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openim_gateway_proto::{subject, Command};

    fn subjects() -> HashMap<&'static str, Subject> {
        catalog::COMMANDS
            .iter()
            .map(|command| {
                let name = subject::for_command("openim.callback", command.name);
                (command.name, Subject::from(name))
            })
            .collect()
    }

    #[test]
    fn the_after_stream_keeps_after_callbacks_on_disk_within_its_own_limits() {
        let config = after_stream_config("AFTER", 5 << 20, &subjects());
        assert_eq!(config.name, "AFTER");
        let after = catalog::COMMANDS
            .iter()
            .filter(|command| command.kind == CallbackKind::After)
            .count();
        assert_eq!(config.subjects.len(), after);
        for subject in &config.subjects {
            let name = subject.strip_prefix("openim.callback.").unwrap();
            let command = Command::lookup(name).unwrap();
            assert_eq!(command.kind, CallbackKind::After, "{subject}");
        }
        assert_eq!(config.retention, jetstream::stream::RetentionPolicy::Limits);
        assert_eq!(config.storage, jetstream::stream::StorageType::File);
        assert_eq!(config.discard, jetstream::stream::DiscardPolicy::Old);
        assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.max_bytes, 5 << 20);
        assert_eq!(config.num_replicas, 1);
        // Past what JetStream can take, the largest it can.
        assert_eq!(
            after_stream_config("AFTER", u64::MAX, &subjects()).max_bytes,
            i64::MAX
        );
    }

    #[test]
    fn subject_filters_match_as_nats_does() {
        let subject = "openim.callback.callbackAfterSendSingleMsgCommand";
        for filter in [
            subject,
            "openim.callback.*",
            "openim.>",
            ">",
            "*.callback.callbackAfterSendSingleMsgCommand",
        ] {
            assert!(subject_matches(filter, subject), "{filter}");
        }
        for filter in [
            "openim.callback",
            "openim.*",
            "openim.callback.callbackAfterSendGroupMsgCommand",
            "openim.callback.callbackAfterSendSingleMsgCommand.x",
            "openim.callback.*.>",
            "other.>",
        ] {
            assert!(!subject_matches(filter, subject), "{filter}");
        }
    }

    #[test]
    fn a_consumer_takes_its_filters_or_everything_without_one() {
        let subject = "openim.callback.callbackAfterSendSingleMsgCommand";
        let unfiltered = jetstream::consumer::Config::default();
        assert!(consumer_takes(&unfiltered, subject));
        let one = jetstream::consumer::Config {
            filter_subject: "openim.callback.callbackAfterSendGroupMsgCommand".to_owned(),
            ..Default::default()
        };
        assert!(!consumer_takes(&one, subject));
        let several = jetstream::consumer::Config {
            filter_subjects: vec![
                "openim.callback.callbackAfterSendGroupMsgCommand".to_owned(),
                "openim.callback.callbackAfterSend*".to_owned(),
                subject.to_owned(),
            ],
            ..Default::default()
        };
        assert!(consumer_takes(&several, subject));
    }
}
