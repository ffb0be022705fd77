//! Scale and failover: several workers in the queue group, a worker killed under load, two
//! gateways on one worker pool, and a three-node NATS cluster losing the gateway's node.
//!
//! Who answered how many is read from the workers' `$SRV.STATS` (one reply per instance), so
//! "each callback answered once" is counted by the workers themselves, not inferred.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_nats::service::Stats;
use bytes::Bytes;
use futures::StreamExt as _;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::{http, Gateway, HttpRequest, NatsCluster, Stack};

use crate::{LATE_SLACK, RECOVERY_BOUND, SET_MEMBER, SHORT_BUDGET, SHORT_BUDGET_SETTINGS};

/// The example worker's `$SRV` name.
const WORKER_SERVICE: &str = "openim-worker-example";

fn seed() -> HttpRequest {
    HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        SET_MEMBER_ROLE_ONLY.to_vec(),
    )
}

async fn client(url: &str) -> async_nats::Client {
    tokio::time::timeout(Duration::from_secs(10), async_nats::connect(url))
        .await
        .expect("connecting in time")
        .expect("connecting to the test's nats-server")
}

/// Every worker instance's `$SRV.STATS`: the request goes to all of them, each answers.
async fn stats_of_every_worker(client: &async_nats::Client, expected: usize) -> Vec<Stats> {
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.expect("subscribing");
    client
        .publish_with_reply(format!("$SRV.STATS.{WORKER_SERVICE}"), inbox, Bytes::new())
        .await
        .expect("asking for stats");
    let mut stats = Vec::new();
    let collect = async {
        while let Some(reply) = replies.next().await {
            let parsed: Stats = serde_json::from_slice(&reply.payload).expect("a STATS answer");
            stats.push(parsed);
            if stats.len() == expected {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    stats
}

/// Callbacks answered by each instance, in the order the replies came.
fn answered_per_worker(stats: &[Stats]) -> Vec<usize> {
    stats
        .iter()
        .map(|instance| {
            instance
                .endpoints
                .iter()
                .map(|endpoint| endpoint.requests)
                .sum()
        })
        .collect()
}

/// One callback's outcome under load.
#[derive(Debug, Clone)]
struct Outcome {
    /// When it was sent, from the start of the load.
    sent_at: Duration,
    /// How long its answer took.
    took: Duration,
    /// `X-Decision-Source`, or the transport error.
    source: Result<String, String>,
}

/// `callers` concurrent callers, each sending the seed callback back to back to the gateways
/// in turn for `duration`.
async fn load(gateways: &[SocketAddr], callers: usize, duration: Duration) -> Vec<Outcome> {
    let start = Instant::now();
    let callers = (0..callers).map(|caller| {
        let gateways = gateways.to_vec();
        async move {
            let request = seed();
            let mut outcomes = Vec::new();
            let mut turn = caller;
            while start.elapsed() < duration {
                let gateway = gateways[turn % gateways.len()];
                turn += 1;
                let sent_at = start.elapsed();
                let sent = Instant::now();
                let source = http::send(gateway, &request).await.map(|response| {
                    response
                        .source()
                        .unwrap_or("(no X-Decision-Source)")
                        .to_owned()
                });
                outcomes.push(Outcome {
                    sent_at,
                    took: sent.elapsed(),
                    source,
                });
            }
            outcomes
        }
    });
    futures::future::join_all(callers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn count(outcomes: &[Outcome], source: DecisionSource) -> usize {
    outcomes
        .iter()
        .filter(|outcome| outcome.source.as_deref() == Ok(source.header_value()))
        .count()
}

/// Panics listing the outcomes that are not `allowed` or took longer than `bound`.
fn assert_all(outcomes: &[Outcome], allowed: &[DecisionSource], bound: Duration, what: &str) {
    let wrong: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| {
            outcome.took > bound
                || !allowed
                    .iter()
                    .any(|source| outcome.source.as_deref() == Ok(source.header_value()))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{what}: {} of {} callbacks were late (over {bound:?}) or not {allowed:?}; the first: {:?}",
        wrong.len(),
        outcomes.len(),
        &wrong[..wrong.len().min(10)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_the_queue_group_share_the_load_and_answer_each_callback_once() {
    const WORKERS: usize = 3;
    let mut stack = Stack::start(&[]).await;
    for _ in 0..WORKERS {
        stack.add_example_worker(&[]).await;
    }
    let outcomes = load(&[stack.gateway.address()], 8, Duration::from_secs(2)).await;
    assert_all(
        &outcomes,
        &[DecisionSource::Worker],
        crate::DEFAULT_BUDGET,
        "three workers",
    );

    let stats = stats_of_every_worker(&client(&stack.nats.url()).await, WORKERS).await;
    let per_worker = answered_per_worker(&stats);
    assert_eq!(per_worker.len(), WORKERS, "STATS answers: {per_worker:?}");
    assert!(
        per_worker.iter().all(|answered| *answered > 0),
        "a worker got nothing: {per_worker:?}"
    );
    assert_eq!(
        per_worker.iter().sum::<usize>(),
        outcomes.len(),
        "the workers answered {per_worker:?} for {} callbacks: each exactly once",
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_under_load_loses_only_what_it_held() {
    const CALLERS: usize = 8;
    let mut stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    for _ in 0..3 {
        stack.add_example_worker(&[]).await;
    }
    let targets = [stack.gateway.address()];
    let kill_at = Duration::from_secs(1);
    let origin = Instant::now();
    let (outcomes, killed_at) =
        tokio::join!(load(&targets, CALLERS, Duration::from_secs(3)), async {
            tokio::time::sleep(kill_at).await;
            stack.workers[0].kill();
            // The worker is dead and reaped: its connection is closed, so the server sends
            // it nothing sent from here on.
            origin.elapsed()
        });

    // Each callback is answered in time: by a worker, or by the default when the killed
    // worker held it.
    assert_all(
        &outcomes,
        &[DecisionSource::Worker, DecisionSource::Timeout],
        SHORT_BUDGET + LATE_SLACK,
        "a worker killed under load",
    );
    // The killed worker held at most one callback per caller, and only callbacks sent before
    // it died: nothing sent later is lost. (`sent_at` counts from the load's start, a moment
    // after `origin`; the slack covers the server reading the dead connection's end.)
    let timeouts = count(&outcomes, DecisionSource::Timeout);
    assert!(
        timeouts <= CALLERS,
        "{timeouts} defaults for {CALLERS} callers: more than the killed worker can have held"
    );
    for outcome in &outcomes {
        if outcome.source.as_deref() == Ok(DecisionSource::Timeout.header_value()) {
            assert!(
                outcome.sent_at <= killed_at + Duration::from_millis(50),
                "a callback sent {:?} after the start got the default, though the worker died at {killed_at:?}",
                outcome.sent_at
            );
        }
    }
    // Once the server has dropped the dead worker, the others take everything.
    let settled = kill_at + SHORT_BUDGET + LATE_SLACK;
    let after: Vec<Outcome> = outcomes
        .iter()
        .filter(|outcome| outcome.sent_at > settled)
        .cloned()
        .collect();
    assert!(!after.is_empty(), "no load after the kill");
    assert_all(
        &after,
        &[DecisionSource::Worker],
        crate::DEFAULT_BUDGET,
        "after the kill",
    );
}

/// SIGTERM under load is not a kill: the stopping worker answers everything the server sent
/// it, so no callback falls back to the default, and it exits 0. The worker is paused for a
/// moment first, so that callbacks are waiting in its socket when the signal comes, as they
/// are behind a busy worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_under_load_drains_without_a_single_default() {
    let mut stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    for _ in 0..3 {
        stack.add_example_worker(&[]).await;
    }
    let targets = [stack.gateway.address()];
    let (outcomes, ()) = tokio::join!(load(&targets, 8, Duration::from_secs(3)), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = stack.workers[0].pid();
        openim_gateway_tests::process::signal(pid, "STOP");
        tokio::time::sleep(Duration::from_millis(150)).await;
        stack.workers[0].terminate();
        openim_gateway_tests::process::signal(pid, "CONT");
    });
    assert_all(
        &outcomes,
        &[DecisionSource::Worker],
        SHORT_BUDGET + LATE_SLACK,
        "a worker stopped with SIGTERM under load",
    );
    let code = stack.workers[0]
        .wait_for_exit(Duration::from_secs(10))
        .await;
    assert_eq!(code, Some(0), "the stopped worker's exit code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_answer_from_the_same_worker_pool() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    stack.add_example_worker(&[]).await;
    let second = Gateway::start(&stack.nats.url(), &[]).await;
    // Ready once connected: a plain command nobody serves is answered at once either way,
    // so wait for a real decision through the second gateway.
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        let response = http::send(second.address(), &seed()).await;
        if matches!(&response, Ok(response) if response.source() == Some(DecisionSource::Worker.header_value()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second gateway never answered from a worker: {response:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let outcomes = load(
        &[stack.gateway.address(), second.address()],
        8,
        Duration::from_secs(2),
    )
    .await;
    assert_all(
        &outcomes,
        &[DecisionSource::Worker],
        crate::DEFAULT_BUDGET,
        "two gateways",
    );
    let stats = stats_of_every_worker(&client(&stack.nats.url()).await, 2).await;
    let per_worker = answered_per_worker(&stats);
    assert!(
        per_worker.len() == 2 && per_worker.iter().all(|answered| *answered > 0),
        "{per_worker:?}"
    );
    // The readiness probe above was answered by a worker too.
    assert_eq!(
        per_worker.iter().sum::<usize>(),
        outcomes.len() + 1,
        "{per_worker:?} for {} callbacks plus the probe",
        outcomes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_moves_to_another_cluster_node_when_its_node_stops() {
    let mut cluster = NatsCluster::start().await;
    let gateway = Gateway::start(&cluster.urls_from(0), &SHORT_BUDGET_SETTINGS).await;
    // The workers on the two other nodes: the stopped node holds only the gateway.
    let (gateway_node, mut workers) =
        crate::workers_beside_the_gateway(&mut cluster, &gateway, &seed()).await;

    let stop_at = Duration::from_secs(1);
    let targets = [gateway.address()];
    let (outcomes, ()) = tokio::join!(load(&targets, 4, Duration::from_secs(8)), async {
        tokio::time::sleep(stop_at).await;
        cluster.nodes[gateway_node].stop();
    });

    // In the gap, defaults; every answer in time.
    assert_all(
        &outcomes,
        &[
            DecisionSource::Worker,
            DecisionSource::Timeout,
            DecisionSource::Unavailable,
        ],
        SHORT_BUDGET + LATE_SLACK,
        "the gateway's node stopped",
    );
    let before = outcomes
        .iter()
        .filter(|outcome| outcome.sent_at + outcome.took < stop_at)
        .count();
    assert!(before > 0, "no decision before the stop");
    // The gateway reconnects to a surviving node and decisions continue.
    let last = outcomes
        .iter()
        .filter(|outcome| outcome.sent_at > Duration::from_secs(6))
        .collect::<Vec<_>>();
    assert!(!last.is_empty(), "no load at the end");
    assert!(
        last.iter()
            .all(|outcome| outcome.source.as_deref() == Ok(DecisionSource::Worker.header_value())),
        "decisions did not resume on another node: {:?}",
        &last[..last.len().min(10)]
    );
    let moved_to = cluster.node_of_connection("openim-gateway").await;
    assert!(
        moved_to.is_some() && moved_to != Some(gateway_node),
        "the gateway is on node {moved_to:?}, it was on {gateway_node}"
    );
    for worker in &mut workers {
        assert!(worker.is_running());
    }
}
