//! The operator's routes: `/healthz`, `/readyz` and `/metrics` with every family the contract
//! lists, and counters that move when callbacks happen.

use std::time::Duration;

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::{SEND_SINGLE_MSG, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::metrics::{self, Sample};
use openim_gateway_tests::{Behaviour, Expect, HttpRequest, ScriptedWorker, Stack};
use serde_json::json;

use crate::{default_allow, SET_MEMBER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_answer_200_while_connected() {
    let stack = Stack::start(&[]).await;
    let healthz = stack
        .check(&HttpRequest::get("/healthz"), &Expect::status(200))
        .await;
    let readyz = stack
        .check(&HttpRequest::get("/readyz"), &Expect::status(200))
        .await;
    assert!(healthz.elapsed < Duration::from_secs(1), "{healthz}");
    assert!(readyz.elapsed < Duration::from_secs(1), "{readyz}");
}

/// The sample names each family must show once it has been used (counters carry `_total`,
/// histograms `_count`).
const FAMILIES: [&str; 7] = [
    "openim_gateway_callbacks_total",
    "openim_gateway_callback_duration_seconds_count",
    "openim_gateway_worker_duration_seconds_count",
    "openim_gateway_inflight_callbacks",
    "openim_gateway_nats_connected",
    "openim_gateway_nats_reconnects_total",
    "openim_gateway_bad_requests_total",
];

fn worker_decided(samples: &[Sample]) -> f64 {
    metrics::sum(
        samples,
        "openim_gateway_callbacks_total",
        &[
            ("command", SET_MEMBER),
            ("kind", "before"),
            ("source", DecisionSource::Worker.as_str()),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_family_and_count_callbacks() {
    let stack = Stack::start(&[]).await;
    // A worker for the seed command only: SendSingleMsg then has no responders.
    let _worker = ScriptedWorker::start(
        &stack.nats.url(),
        &format!("openim.callback.{SET_MEMBER}"),
        Behaviour::reply("{}"),
    )
    .await;
    let seed = HttpRequest::openim("", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    stack.check(&seed, &Expect::worker_fields(json!({}))).await;
    stack
        .check(
            &HttpRequest::openim("", "callbackBeforeSendSingleMsgCommand", SEND_SINGLE_MSG),
            &Expect::fallback(DecisionSource::NoResponders, default_allow()),
        )
        .await;
    stack
        .check(
            &HttpRequest::openim("", SET_MEMBER, "nope"),
            &Expect::bad(400, default_allow()),
        )
        .await;

    let response = stack.get("/metrics").await;
    assert_eq!(response.status, 200, "{response}");
    let text = response.text();
    let samples = metrics::parse(&text);
    let missing: Vec<&str> = FAMILIES
        .iter()
        .copied()
        .filter(|family| !metrics::has(&samples, family))
        .collect();
    assert!(
        missing.is_empty(),
        "missing metric families {missing:?} in:\n{text}"
    );
    for histogram in [
        "openim_gateway_callback_duration_seconds_bucket",
        "openim_gateway_worker_duration_seconds_bucket",
    ] {
        assert!(
            samples.iter().any(|sample| sample.name == histogram
                && sample.labels.get("command").map(String::as_str) == Some(SET_MEMBER)),
            "{histogram} has no series for command {SET_MEMBER}:\n{text}"
        );
    }
    assert!(
        metrics::sum(
            &samples,
            "openim_gateway_callbacks_total",
            &[
                ("command", "callbackBeforeSendSingleMsgCommand"),
                ("kind", "before"),
                ("source", DecisionSource::NoResponders.as_str())
            ],
        ) >= 1.0,
        "no_responders was not counted:\n{text}"
    );
    assert_eq!(
        metrics::sum(&samples, "openim_gateway_inflight_callbacks", &[]),
        0.0
    );
    assert_eq!(
        metrics::sum(&samples, "openim_gateway_nats_connected", &[]),
        1.0
    );

    // One more decided callback moves its counter and its histograms by exactly one.
    let before = samples;
    let worker_count =
        |samples: &[Sample], name: &str| metrics::sum(samples, name, &[("command", SET_MEMBER)]);
    let bad_before = metrics::sum(&before, "openim_gateway_bad_requests_total", &[]);
    stack.check(&seed, &Expect::worker_fields(json!({}))).await;
    stack
        .check(
            &HttpRequest::openim("", SET_MEMBER, "[]"),
            &Expect::bad(400, default_allow()),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let after = loop {
        let after = stack.metrics().await;
        if worker_decided(&after) > worker_decided(&before)
            || tokio::time::Instant::now() >= deadline
        {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(worker_decided(&after), worker_decided(&before) + 1.0);
    for histogram in [
        "openim_gateway_callback_duration_seconds_count",
        "openim_gateway_worker_duration_seconds_count",
    ] {
        assert_eq!(
            worker_count(&after, histogram),
            worker_count(&before, histogram) + 1.0,
            "{histogram}{{command={SET_MEMBER}}}"
        );
    }
    assert_eq!(
        metrics::sum(&after, "openim_gateway_bad_requests_total", &[]),
        bad_before + 1.0,
        "openim_gateway_bad_requests_total"
    );
}
