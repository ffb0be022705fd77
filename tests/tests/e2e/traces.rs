//! Traces (docs/operations.md, "Traces"): with `OTEL_EXPORTER_OTLP_ENDPOINT` the gateway
//! exports a span per callback that continues OpenIM's `traceparent`, the NATS request carries
//! the span's context, and the Rust kit's worker exports its own span as the gateway span's
//! child; all decoded by a real OTLP receiver. Off, nothing is exported and only an incoming
//! `traceparent` is passed on.

use std::time::Duration;

use openim_gateway_proto::headers;
use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_NICKNAME_ONLY};
use openim_gateway_tests::http::DEFAULT_OPERATION_ID;
use openim_gateway_tests::{Behaviour, Expect, HttpRequest, OtlpReceiver, Stack};
use serde_json::{json, Value};

use crate::SET_MEMBER;

/// OpenIM's trace, as a W3C `traceparent` would carry it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "openim=t61rcWkgMzE";

/// How long an exported span may take to reach the receiver (batches leave every 100 ms
/// with `OTEL_BSP_SCHEDULE_DELAY=100`; a loaded machine is slower).
const EXPORT_BOUND: Duration = Duration::from_secs(20);

/// OpenTelemetry's `SPAN_KIND_SERVER`.
const KIND_SERVER: u64 = 2;

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
}

/// The OTEL settings of a process exporting to `receiver` as `service`.
fn exporting(receiver: &OtlpReceiver, service: &'static str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_SERVICE_NAME", service.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
}

fn borrowed<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect()
}

fn attribute<'a>(span: &'a Value, name: &str) -> &'a Value {
    &span["attributes"][name]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_span_continues_openims_trace_and_the_workers_span_is_its_child() {
    let receiver = OtlpReceiver::start().await;
    let gateway_otel = exporting(&receiver, "gateway-under-test");
    let mut stack = Stack::start(&borrowed(&gateway_otel)).await;
    let worker_otel = exporting(&receiver, "worker-under-test");
    stack.add_example_worker(&borrowed(&worker_otel)).await;
    let observer = stack.observer().await;

    let request = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_NICKNAME_ONLY)
        .header("traceparent", &traceparent())
        .header("tracestate", TRACESTATE);
    let response = stack.send(&request).await;
    assert_eq!(response.source(), Some("worker"), "{response}");

    let gateway_span = receiver
        .wait_for_span(EXPORT_BOUND, |span| {
            span["service"] == "gateway-under-test" && span["name"] == SET_MEMBER
        })
        .await
        .unwrap_or_else(|| panic!("no gateway span; {}", receiver.diagnostics()));
    let span_id = gateway_span["span_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let problems: Vec<String> = [
        (
            gateway_span["trace_id"] == TRACE_ID,
            "the trace id is OpenIM's",
        ),
        (
            gateway_span["parent_span_id"] == PARENT_SPAN_ID,
            "the parent is OpenIM's span",
        ),
        (span_id.len() == 16, "a span id of its own"),
        (gateway_span["kind"] == KIND_SERVER, "a server span"),
        (gateway_span["path"] == "/v1/traces", "POSTed to /v1/traces"),
        (gateway_span["scope"] == "openim-gateway", "its scope"),
        (
            attribute(&gateway_span, "openim.command") == SET_MEMBER,
            "the command",
        ),
        (
            attribute(&gateway_span, "openim.operation_id") == DEFAULT_OPERATION_ID,
            "the operation id",
        ),
        (
            attribute(&gateway_span, "openim_gateway.decision_source") == "worker",
            "the decision source",
        ),
        (
            // GATEWAY_CALLBACK_TIMEOUT_MS 5000 less GATEWAY_SAFETY_MARGIN_MS 250.
            attribute(&gateway_span, "openim_gateway.budget_ms") == 4750,
            "the budget",
        ),
        (
            attribute(&gateway_span, "openim_gateway.waited_ms")
                .as_f64()
                .is_some_and(|ms| ms > 0.0 && ms < 4750.0),
            "how long it waited",
        ),
        (
            Some(attribute(&gateway_span, "openim_gateway.request_id").as_str())
                == Some(response.request_id()),
            "the X-Request-Id OpenIM got",
        ),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, what)| what.to_owned())
    .collect();
    assert!(
        problems.is_empty(),
        "the gateway's span is wrong: {problems:?}\n{gateway_span:#}"
    );

    // The worker got the gateway span's context over NATS, and its kit exported a child.
    let messages = observer.wait_for(1, EXPORT_BOUND).await;
    let message = messages.first().expect("the observer saw the request");
    assert_eq!(
        message.header(headers::TRACEPARENT),
        Some(format!("00-{TRACE_ID}-{span_id}-01").as_str()),
        "the NATS request's traceparent: {:?}",
        message.headers
    );
    assert_eq!(message.header(headers::TRACESTATE), Some(TRACESTATE));
    let worker_span = receiver
        .wait_for_span(EXPORT_BOUND, |span| span["service"] == "worker-under-test")
        .await
        .unwrap_or_else(|| panic!("no worker span; {}", receiver.diagnostics()));
    assert_eq!(worker_span["trace_id"], TRACE_ID, "{worker_span:#}");
    assert_eq!(
        worker_span["parent_span_id"],
        json!(span_id),
        "the worker's span is the gateway span's child: {worker_span:#}"
    );
    assert_eq!(
        attribute(&worker_span, "openim.command"),
        SET_MEMBER,
        "{worker_span:#}"
    );

    // An after-callback: published with the context of its own span.
    let after = "callbackAfterSetGroupMemberInfoCommand";
    stack
        .check(
            &HttpRequest::openim("/callbackExample", after, AFTER_SET_MEMBER)
                .header("traceparent", &traceparent()),
            &Expect::ack(),
        )
        .await;
    let after_span = receiver
        .wait_for_span(EXPORT_BOUND, |span| span["name"] == after)
        .await
        .unwrap_or_else(|| panic!("no after-callback span; {}", receiver.diagnostics()));
    assert_eq!(after_span["trace_id"], TRACE_ID);
    assert_eq!(after_span["parent_span_id"], PARENT_SPAN_ID);
    assert_eq!(
        attribute(&after_span, "openim_gateway.decision_source"),
        "ack"
    );
    let messages = observer.wait_for(2, EXPORT_BOUND).await;
    let published = messages
        .iter()
        .find(|message| message.subject.ends_with(after))
        .expect("the after-callback was published");
    assert_eq!(
        published.header(headers::TRACEPARENT),
        Some(
            format!(
                "00-{TRACE_ID}-{}-01",
                after_span["span_id"].as_str().unwrap_or_default()
            )
            .as_str()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_a_traceparent_starts_a_trace() {
    let receiver = OtlpReceiver::start().await;
    let otel = exporting(&receiver, "gateway-under-test");
    let stack = Stack::start(&borrowed(&otel)).await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;
    let request = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_NICKNAME_ONLY);
    let response = stack.send(&request).await;
    assert_eq!(response.source(), Some("worker"), "{response}");
    let span = receiver
        .wait_for_span(EXPORT_BOUND, |span| span["name"] == SET_MEMBER)
        .await
        .unwrap_or_else(|| panic!("no gateway span; {}", receiver.diagnostics()));
    assert_eq!(span["parent_span_id"], "", "a root span: {span:#}");
    assert_eq!(attribute(&span, "openim_gateway.decision_source"), "worker");
    let messages = recorder.wait_for(1, EXPORT_BOUND).await;
    let trace_id = span["trace_id"].as_str().unwrap_or_default();
    let span_id = span["span_id"].as_str().unwrap_or_default();
    assert_eq!(
        messages
            .first()
            .and_then(|message| message.header(headers::TRACEPARENT)),
        Some(format!("00-{trace_id}-{span_id}-01").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_nothing_is_exported_and_only_an_incoming_traceparent_is_passed_on() {
    let receiver = OtlpReceiver::start().await;
    // An endpoint, but the SDK disabled: the gateway must behave as with no OTEL settings.
    let mut otel = exporting(&receiver, "gateway-under-test");
    otel.push(("OTEL_SDK_DISABLED", "true".to_owned()));
    let stack = Stack::start(&borrowed(&otel)).await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;

    let plain = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_NICKNAME_ONLY);
    stack.send(&plain).await;
    let traced = plain
        .clone()
        .header("traceparent", &traceparent())
        .header("tracestate", TRACESTATE);
    stack.send(&traced).await;
    let broken = plain.clone().header("traceparent", "00-not-a-trace-01");
    stack.send(&broken).await;

    let messages = recorder.wait_for(3, EXPORT_BOUND).await;
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let trace_headers = |index: usize| {
        (
            messages[index].header(headers::TRACEPARENT),
            messages[index].header(headers::TRACESTATE),
        )
    };
    assert_eq!(trace_headers(0), (None, None), "nothing added");
    assert_eq!(
        trace_headers(1),
        (Some(traceparent().as_str()), Some(TRACESTATE)),
        "OpenIM's passed on unchanged"
    );
    assert_eq!(trace_headers(2), (None, None), "an invalid one dropped");

    // Several export intervals: a gateway that exported anything would have sent it by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.records().is_empty(),
        "the receiver got something: {}",
        receiver.diagnostics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_after_callback_stored_in_the_stream_carries_its_spans_context() {
    use crate::after_stream::{jetstream_server, AFTER_SET_MEMBER_COMMAND, STREAM};
    let receiver = OtlpReceiver::start().await;
    let (_scratch, nats) = jetstream_server().await;
    let mut settings = exporting(&receiver, "gateway-under-test");
    settings.push(("GATEWAY_AFTER_STREAM", STREAM.to_owned()));
    // The smallest stream: a new stream reserves its size in the server's store.
    settings.push(("GATEWAY_AFTER_STREAM_MAX_BYTES", "1048576".to_owned()));
    let gateway = openim_gateway_tests::Gateway::start(&nats.url(), &borrowed(&settings)).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        AFTER_SET_MEMBER_COMMAND,
        AFTER_SET_MEMBER,
    )
    .header("traceparent", &traceparent());
    let response = openim_gateway_tests::http::send(gateway.address(), &request)
        .await
        .expect("answered");
    assert_eq!(response.source(), Some("ack"), "{response}");
    let span = receiver
        .wait_for_span(EXPORT_BOUND, |span| {
            span["name"] == AFTER_SET_MEMBER_COMMAND
        })
        .await
        .unwrap_or_else(|| panic!("no after-callback span; {}", receiver.diagnostics()));
    assert_eq!(span["parent_span_id"], PARENT_SPAN_ID, "{span:#}");
    let client = async_nats::connect(nats.url()).await.expect("connects");
    let stored = async_nats::jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the gateway created the stream")
        .get_raw_message(1)
        .await
        .expect("the after-callback is stored");
    assert_eq!(
        stored
            .headers
            .get(headers::TRACEPARENT)
            .map(|value| value.as_str().to_owned()),
        Some(format!(
            "00-{TRACE_ID}-{}-01",
            span["span_id"].as_str().unwrap_or_default()
        )),
        "the stored message's traceparent: {:?}",
        stored.headers
    );
}
