//! End-to-end tests of the gateway's promises (README, docs/worker-protocol.md): a real nats-server, the real `openim-gateway` binary and
//! real or scripted workers, driven over HTTP with the bytes OpenIM's Go client sends.
//!
//! Every test starts its own nats-server and gateway on fresh ports, so tests run in
//! parallel and share nothing. Every wait is bounded; timing assertions use generous bounds
//! (speed is the benchmark's business, lateness is a test's). The modules follow the
//! sections of those documents.

mod after_callbacks;
mod after_stream;
mod after_stream_kit;
mod bad_input;
mod browser;
mod cli;
mod concurrency;
mod config;
mod connections;
mod decisions;
mod defaults;
mod every_command;
mod failover;
mod fallbacks;
mod fidelity;
mod forwarding;
mod healthcheck;
mod idle;
mod invalid_replies;
mod lifecycle;
mod logging;
mod nats_outage;
mod nats_security;
mod observe;
mod openim_webhooks;
mod plain_routes;
mod policy;
mod routing;
mod scale;
mod status_page;
mod takeover;
mod traces;
mod worker_example;
mod worker_example_settings;
mod worker_kit;

use std::time::Duration;

/// The seed command.
const SET_MEMBER: &str = openim_gateway_tests::fixtures::SET_MEMBER;

/// `GATEWAY_CALLBACK_TIMEOUT_MS=600` and `GATEWAY_SAFETY_MARGIN_MS=100`: a 500 ms budget,
/// short enough to wait for and long enough to tell from "at once".
const SHORT_BUDGET_SETTINGS: [(&str, &str); 2] = [
    ("GATEWAY_CALLBACK_TIMEOUT_MS", "600"),
    ("GATEWAY_SAFETY_MARGIN_MS", "100"),
];
/// The budget [`SHORT_BUDGET_SETTINGS`] give.
const SHORT_BUDGET: Duration = Duration::from_millis(500);
/// The budget of the default settings (5000 - 250 ms).
const DEFAULT_BUDGET: Duration = Duration::from_millis(4750);
/// What "at once" means: far below any budget, far above any scheduling hiccup.
const AT_ONCE: Duration = Duration::from_secs(1);
/// The slack allowed past a deadline, measured at the client on a loaded 2-core machine.
const LATE_SLACK: Duration = Duration::from_millis(500);
/// How long recovery (reconnecting to a restarted nats-server) may take.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

/// Sends `request` while every worker hangs, so that the command's budget decides: the answer
/// (checked to be the default, `fallback:timeout`) and how long it took.
async fn answered_by_the_budget(
    stack: &openim_gateway_tests::Stack,
    request: &openim_gateway_tests::HttpRequest,
) -> (openim_gateway_tests::HttpResponse, Duration) {
    let start = std::time::Instant::now();
    let response = stack.send(request).await;
    let took = start.elapsed();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.source(),
        Some(openim_gateway_proto::DecisionSource::Timeout.as_str()),
        "{response:?}"
    );
    (response, took)
}

/// Finds the node of `cluster` the gateway is connected to (a client given several URLs picks
/// one at random), starts a worker on each of the two others, and waits until `seed` gets a
/// worker's decision (interest crosses the routes asynchronously): that node then holds only
/// the gateway, so stopping or freezing it tests the gateway's failover alone. Returns the
/// node and the workers.
async fn workers_beside_the_gateway(
    cluster: &mut openim_gateway_tests::NatsCluster,
    gateway: &openim_gateway_tests::Gateway,
    seed: &openim_gateway_tests::HttpRequest,
) -> (usize, Vec<openim_gateway_tests::Worker>) {
    use openim_gateway_proto::DecisionSource;
    use std::time::Instant;
    let deadline = Instant::now() + RECOVERY_BOUND;
    let gateway_node = loop {
        if let Some(node) = cluster.node_of_connection("openim-gateway").await {
            break node;
        }
        assert!(Instant::now() < deadline, "the gateway never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut workers = Vec::new();
    for node in (0..3).filter(|node| *node != gateway_node) {
        workers.push(openim_gateway_tests::Worker::start(&cluster.url(node), &[]).await);
    }
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let response = openim_gateway_tests::http::send(gateway.address(), seed).await;
        if matches!(&response, Ok(response) if response.source() == Some(DecisionSource::Worker.header_value()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no decision through the cluster: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (gateway_node, workers)
}

/// The gateway's default decision for a plain command with `GATEWAY_DEFAULT_DECISION=allow`.
fn default_allow() -> serde_json::Value {
    openim_gateway_tests::allow()
}
