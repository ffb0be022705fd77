//! What an operator watches: the latency histogram resolves the budget and OpenIM's timeout,
//! an answer after its budget is counted as late, and every metric the Grafana dashboard and
//! the Prometheus alert rules (deploy/) name is one a running gateway exports.

use std::collections::BTreeSet;

use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{binaries, metrics, Behaviour, HttpRequest, Stack};

use crate::SET_MEMBER;

/// The files whose PromQL must name only exported metrics.
const OBSERVING_FILES: [&str; 3] = [
    "deploy/grafana/openim-gateway.json",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts.test.yml",
];

/// Every `openim_gateway_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let prefix = "openim_gateway_";
    text.match_indices(prefix)
        .filter(|(at, _)| {
            // A whole name, not the tail of a longer identifier.
            !text[..*at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(|(at, _)| {
            text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alert_rules_name_only_exported_metrics() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    let member = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    let after = HttpRequest::openim(
        "/callbackExample",
        "callbackAfterSetGroupMemberInfoCommand",
        AFTER_SET_MEMBER,
    );
    for _ in 0..3 {
        assert_eq!(stack.send(&member).await.status, 200);
        assert_eq!(stack.send(&after).await.status, 200);
    }
    let exported: BTreeSet<String> = stack
        .metrics()
        .await
        .into_iter()
        .map(|sample| sample.name)
        .collect();
    let root = binaries::workspace_root();
    let mut checked = 0;
    for file in OBSERVING_FILES {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|error| panic!("cannot read {file}: {error}"));
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric of the gateway");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the gateway does not export: {unknown:?}\nexported: {exported:?}"
        );
        checked += names.len();
    }
    assert!(checked > 10, "only {checked} names checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_its_budget_is_counted_late() {
    // A 1 ms budget (2 ms timeout, 1 ms margin) and a worker that never replies: the timer
    // that ends the wait fires on a millisecond tick, so most answers leave after 1 ms. Each
    // one is late exactly when the histogram put it above its 1 ms bucket.
    const CALLBACKS: usize = 40;
    let stack = Stack::start(&[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "2"),
        ("GATEWAY_SAFETY_MARGIN_MS", "1"),
    ])
    .await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let member = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    for _ in 0..CALLBACKS {
        // A 408 (the body not read within 1 ms on a loaded machine) is counted elsewhere.
        stack.send(&member).await;
    }
    let samples = stack.metrics().await;
    let command = [("command", SET_MEMBER)];
    let late = metrics::sum(&samples, "openim_gateway_late_answers_total", &command);
    let answered = metrics::sum(
        &samples,
        "openim_gateway_callback_duration_seconds_count",
        &command,
    );
    let in_budget = metrics::sum(
        &samples,
        "openim_gateway_callback_duration_seconds_bucket",
        &[("command", SET_MEMBER), ("le", "0.001")],
    );
    assert!(answered >= 1.0, "{answered} answered");
    assert!(late >= 1.0, "no late answer counted of {answered}");
    assert!(
        (late - (answered - in_budget)).abs() < f64::EPSILON,
        "{late} late, but {answered} answered and {in_budget} within 1 ms"
    );
    // Another command, answered in time, counts none.
    let others = metrics::sum(
        &samples,
        "openim_gateway_late_answers_total",
        &[("command", "callbackBeforeSendSingleMsgCommand")],
    );
    assert!(others.abs() < f64::EPSILON, "{others}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_buckets_resolve_the_budget_and_openims_timeout() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    let member = HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    assert_eq!(stack.send(&member).await.status, 200);
    let samples = stack.metrics().await;
    let bounds: BTreeSet<String> = samples
        .iter()
        .filter(|sample| sample.name == "openim_gateway_callback_duration_seconds_bucket")
        .filter_map(|sample| sample.labels.get("le").cloned())
        .collect();
    // The default budget (5000 - 250 ms), OpenIM's default timeout, OpenIM's cap, and a
    // local worker's reply.
    for bound in ["4.75", "5.0", "15.0", "0.001"] {
        assert!(bounds.contains(bound), "no {bound} bucket in {bounds:?}");
    }
}
