//! After-callbacks that are not lost: with `GATEWAY_AFTER_STREAM`, the gateway creates a
//! JetStream stream on the after-callback subjects and acknowledges OpenIM once the stream
//! has stored each callback, so a worker that starts later still gets them, through a
//! durable consumer. Before-callbacks are untouched by the stream.

use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;
use openim_gateway_proto::{headers, CallbackKind, Command, DecisionSource};
use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{
    http, metrics, Behaviour, Gateway, HttpRequest, NatsServer, ScriptedWorker, ALL_CALLBACKS,
};

use crate::SET_MEMBER;

pub(crate) const AFTER_SET_MEMBER_COMMAND: &str = "callbackAfterSetGroupMemberInfoCommand";
pub(crate) const STREAM: &str = "OPENIM_AFTER";

/// A nats-server with JetStream, its store in a scratch directory kept as long as it runs.
pub(crate) async fn jetstream_server() -> (Scratch, NatsServer) {
    let scratch = Scratch::new();
    let store = scratch.path().join("jetstream");
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "jetstream {{ store_dir: {:?} }}\n",
            store.display().to_string()
        ),
    )
    .await;
    (scratch, nats)
}

/// POSTs an after-callback as OpenIM does; returns the gateway's request id once the gateway
/// has acknowledged it (so it is in the stream).
pub(crate) async fn post(gateway: &Gateway, body: &[u8]) -> String {
    let response = http::send(
        gateway.address(),
        &HttpRequest::openim("/callbackExample", AFTER_SET_MEMBER_COMMAND, body.to_vec()),
    )
    .await
    .expect("answered");
    assert_eq!(
        response.source(),
        Some(DecisionSource::Ack.as_str()),
        "{response}"
    );
    response.request_id().expect("a request id").to_owned()
}

#[tokio::test]
async fn after_callbacks_wait_in_the_stream_for_a_worker_that_starts_later() {
    let (_scratch, nats) = jetstream_server().await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    let mut sent_ids = Vec::new();
    for _ in 0..3 {
        sent_ids.push(post(&gateway, AFTER_SET_MEMBER).await);
    }
    let metrics = http::get(gateway.address(), "/metrics").await.text();
    assert!(
        !metrics
            .lines()
            .any(|line| line.contains("source=\"unpublished\"") && !line.ends_with(" 0")),
        "an after-callback was not stored:\n{metrics}"
    );

    // A worker that starts now, with a durable consumer.
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let context = jetstream::new(client);
    let stream = context
        .get_stream(STREAM)
        .await
        .expect("the gateway created the stream");
    let consumer = stream
        .get_or_create_consumer(
            "late-worker",
            jetstream::consumer::pull::Config {
                durable_name: Some("late-worker".to_owned()),
                ..Default::default()
            },
        )
        .await
        .expect("a durable consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(3)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let mut received_ids = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.expect("a message");
        assert_eq!(&message.payload[..], AFTER_SET_MEMBER, "byte for byte");
        let message_headers = message.headers.clone().expect("headers");
        assert_eq!(
            message_headers
                .get(headers::CALLBACK_COMMAND)
                .map(|value| value.as_str().to_owned())
                .as_deref(),
            Some(AFTER_SET_MEMBER_COMMAND)
        );
        received_ids.push(
            message_headers
                .get(headers::REQUEST_ID)
                .expect("a request id")
                .as_str()
                .to_owned(),
        );
        message.ack().await.expect("acked");
    }
    assert_eq!(received_ids, sent_ids);
}

#[tokio::test]
async fn before_callbacks_are_not_captured_by_the_stream() {
    let (_scratch, nats) = jetstream_server().await;
    let _worker = ScriptedWorker::start(
        &nats.url(),
        ALL_CALLBACKS,
        Behaviour::reply(r#"{"actionCode":0,"nextCode":0}"#),
    )
    .await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    let response = http::send(
        gateway.address(),
        &HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY),
    )
    .await
    .expect("answered");
    assert_eq!(
        response.source(),
        Some(DecisionSource::Worker.as_str()),
        "{response}"
    );
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let mut stream = jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the stream exists");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 0, "a before-callback was stored");
    for subject in &info.config.subjects {
        let command = subject
            .strip_prefix("openim.callback.")
            .and_then(Command::lookup)
            .unwrap_or_else(|| panic!("the stream holds {subject:?}, not a callback subject"));
        assert_eq!(command.kind, CallbackKind::After, "{subject}");
    }
}

/// `callbacks_total{source="unpublished"}` for the after-callback the tests post.
async fn unpublished(gateway: &Gateway) -> f64 {
    let text = http::get(gateway.address(), "/metrics").await.text();
    metrics::sum(
        &metrics::parse(&text),
        "openim_gateway_callbacks_total",
        &[
            ("command", AFTER_SET_MEMBER_COMMAND),
            ("source", DecisionSource::Unpublished.as_str()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_callback_the_stream_does_not_store_is_acked_in_time_counted_and_explained() {
    let (_scratch, nats) = jetstream_server().await;
    let gateway = Gateway::start(
        &nats.url(),
        &[
            ("GATEWAY_AFTER_STREAM", STREAM),
            ("GATEWAY_CALLBACK_TIMEOUT_MS", "1000"),
            ("GATEWAY_SAFETY_MARGIN_MS", "100"),
        ],
    )
    .await;
    // NATS stays up; the stream goes away, so JetStream cannot store anything.
    let client = async_nats::connect(nats.url()).await.expect("connects");
    jetstream::new(client)
        .delete_stream(STREAM)
        .await
        .expect("the stream is deleted");

    let response = http::send(
        gateway.address(),
        &HttpRequest::openim(
            "/callbackExample",
            AFTER_SET_MEMBER_COMMAND,
            AFTER_SET_MEMBER,
        ),
    )
    .await
    .expect("answered");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(
        response.source(),
        Some(DecisionSource::Ack.as_str()),
        "{response}"
    );
    assert!(
        response.elapsed < Duration::from_millis(900) + crate::LATE_SLACK,
        "answered after {:?}, past the 900 ms budget",
        response.elapsed
    );
    assert_eq!(unpublished(&gateway).await, 1.0);

    let log = gateway.stderr_log().all();
    let line = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains("after-callback not"))
        .unwrap_or_else(|| panic!("no warning about the after-callback:\n{log}"));
    assert!(
        line.contains("not stored") && line.contains(STREAM) && line.contains("no stream found"),
        "the warning does not say the stream did not store it, nor why: {line}"
    );
    assert!(!line.contains("nats unavailable"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_drops_the_oldest_after_callbacks_instead_of_refusing_new_ones() {
    let (_scratch, nats) = jetstream_server().await;
    let max_bytes: u64 = 1 << 20;
    let gateway = Gateway::start(
        &nats.url(),
        &[
            ("GATEWAY_AFTER_STREAM", STREAM),
            ("GATEWAY_AFTER_STREAM_MAX_BYTES", &max_bytes.to_string()),
        ],
    )
    .await;
    // About 64 KiB each: 24 of them are half again the stream's size.
    let ex = "x".repeat(64 * 1024);
    let body = serde_json::json!({
        "callbackCommand": AFTER_SET_MEMBER_COMMAND,
        "groupID": "3316849202",
        "userID": "5427181639",
        "nickName": "Alice",
        "faceURL": null,
        "roleLevel": null,
        "ex": ex,
    })
    .to_string();
    for _ in 0..24 {
        post(&gateway, body.as_bytes()).await;
    }
    assert_eq!(
        unpublished(&gateway).await,
        0.0,
        "a full stream refused after-callbacks:\n{}",
        gateway.stderr_log().tail(20)
    );
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let mut stream = jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the stream exists");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.max_bytes, i64::try_from(max_bytes).unwrap());
    assert!(info.state.bytes <= max_bytes, "{:?}", info.state);
    assert_eq!(info.state.last_sequence, 24, "{:?}", info.state);
    assert!(
        info.state.first_sequence > 1,
        "the oldest were not dropped: {:?}",
        info.state
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_without_a_size_is_used_as_it_is_with_a_warning() {
    let (_scratch, nats) = jetstream_server().await;
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let context = jetstream::new(client);
    context
        .create_stream(jetstream::stream::Config {
            name: STREAM.to_owned(),
            subjects: vec![format!("openim.callback.{AFTER_SET_MEMBER_COMMAND}")],
            ..Default::default()
        })
        .await
        .expect("a stream without max_bytes");
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    post(&gateway, AFTER_SET_MEMBER).await;
    let edit = format!("nats stream edit {STREAM} --max-bytes");
    let warned = gateway
        .logged(Duration::from_secs(5), |line| {
            line.contains("WARN") && line.contains("has no max_bytes") && line.contains(&edit)
        })
        .await;
    assert!(warned, "{}", gateway.stderr_log().all());
    let mut stream = context.get_stream(STREAM).await.expect("the stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.max_bytes, -1, "the existing stream was changed");
    assert_eq!(info.state.messages, 1);
}
