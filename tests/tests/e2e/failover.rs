//! Keeping the worker's decision through faults: a frozen NATS node is noticed in well
//! under a second and left for another (callbacks in flight are asked again there), no node
//! answering means the default at once instead of the whole budget, and a callback a worker
//! lost is asked again (hedging) with the same request id.

use std::time::{Duration, Instant};

use openim_gateway_proto::{headers, DecisionSource};
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::{
    allow, http, metrics, Behaviour, Expect, Gateway, HttpRequest, NatsCluster, Stack,
};

use crate::{default_allow, AT_ONCE, LATE_SLACK, RECOVERY_BOUND, SET_MEMBER};

/// A 2000 ms budget: long enough for a frozen node to be noticed and left with most of it
/// still ahead, short enough to wait for.
const TWO_SECOND_BUDGET: [(&str, &str); 2] = [
    ("GATEWAY_CALLBACK_TIMEOUT_MS", "2100"),
    ("GATEWAY_SAFETY_MARGIN_MS", "100"),
];
const BUDGET: Duration = Duration::from_millis(2000);
/// How soon a stalled connection must be noticed: the watchdog's bound is 450 ms (a round
/// trip every 100 ms, stalled after 350 ms); the rest is slack for a loaded machine.
const DETECTION_BOUND: Duration = Duration::from_millis(1000);

fn seed() -> HttpRequest {
    HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        SET_MEMBER_ROLE_ONLY.to_vec(),
    )
}

async fn counter(address: std::net::SocketAddr, name: &str) -> f64 {
    let response = http::get(address, "/metrics").await;
    metrics::sum(&metrics::parse(&response.text()), name, &[])
}

/// One callback's outcome under load.
#[derive(Debug)]
struct Outcome {
    sent_at: Duration,
    took: Duration,
    source: Result<String, String>,
}

/// `callers` callers sending the seed callback back to back for `duration`.
async fn load(gateway: std::net::SocketAddr, callers: usize, duration: Duration) -> Vec<Outcome> {
    let start = Instant::now();
    let callers = (0..callers).map(|_| async move {
        let request = seed();
        let mut outcomes = Vec::new();
        while start.elapsed() < duration {
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
    });
    futures::future::join_all(callers)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_node_is_left_within_a_second_and_every_callback_keeps_its_decision() {
    let mut cluster = NatsCluster::start().await;
    let gateway = Gateway::start(&cluster.urls_from(0), &TWO_SECOND_BUDGET).await;
    // The workers on the two other nodes: the frozen node holds only the gateway.
    let (gateway_node, mut workers) =
        crate::workers_beside_the_gateway(&mut cluster, &gateway, &seed()).await;
    let address = gateway.address();
    assert_eq!(
        counter(address, "openim_gateway_nats_stalls_total").await,
        0.0
    );

    let freeze_at = Duration::from_secs(1);
    let (outcomes, detected) = tokio::join!(load(address, 8, Duration::from_secs(4)), async {
        tokio::time::sleep(freeze_at).await;
        cluster.nodes[gateway_node].freeze();
        let frozen = Instant::now();
        // Noticed when the watchdog counts the stall.
        loop {
            if counter(address, "openim_gateway_nats_stalls_total").await >= 1.0 {
                break Some(frozen.elapsed());
            }
            if frozen.elapsed() > Duration::from_secs(5) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    cluster.nodes[gateway_node].thaw();

    eprintln!("frozen node noticed after {detected:?}");
    let detected = detected.unwrap_or_else(|| {
        panic!(
            "the frozen node was not noticed within 5 s; the gateway said:\n{}",
            gateway.stderr_log().tail(30)
        )
    });
    assert!(
        detected <= DETECTION_BOUND,
        "the frozen node was noticed after {detected:?}, not within {DETECTION_BOUND:?}"
    );
    // Every callback got the worker's decision, the ones in flight on the frozen node after
    // a wait of about the detection, never the whole budget.
    let wrong: Vec<&Outcome> = outcomes
        .iter()
        .filter(|outcome| {
            outcome.source.as_deref() != Ok(DecisionSource::Worker.header_value())
                || outcome.took > DETECTION_BOUND + LATE_SLACK
        })
        .collect();
    let around_freeze = outcomes
        .iter()
        .filter(|outcome| outcome.sent_at >= freeze_at && outcome.sent_at < freeze_at + detected)
        .count();
    assert!(
        wrong.is_empty(),
        "{} of {} callbacks lost the worker's decision or waited over {:?} (noticed after {detected:?}, {around_freeze} sent before that); the first: {:?}\nthe gateway said:\n{}",
        wrong.len(),
        outcomes.len(),
        DETECTION_BOUND + LATE_SLACK,
        &wrong[..wrong.len().min(10)],
        gateway.stderr_log().tail(30)
    );
    assert!(
        around_freeze > 0,
        "no callback was sent while the node was frozen"
    );
    let slowest = outcomes.iter().map(|outcome| outcome.took).max();
    eprintln!(
        "{} callbacks, every one decided by a worker; {around_freeze} sent before the stall was noticed; the slowest took {slowest:?}",
        outcomes.len()
    );
    assert!(
        counter(address, "openim_gateway_reasked_callbacks_total").await >= 1.0,
        "the callbacks in flight on the frozen node were not asked again"
    );
    for worker in &mut workers {
        assert!(worker.is_running());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_nats_node_answering_callbacks_get_the_default_at_once_not_after_the_budget() {
    // The default budget, 4750 ms: waiting it out would be plain to see.
    let mut stack = Stack::start(&[]).await;
    let _worker = stack.scripted(Behaviour::reply(allow().to_string())).await;
    let request = seed();
    stack.check(&request, &Expect::worker(allow())).await;

    stack.nats.freeze();
    // In flight while the server freezes: answered once the stall is noticed.
    stack
        .check(
            &request,
            &Expect::fallback(DecisionSource::Unavailable, default_allow())
                .within(DETECTION_BOUND + AT_ONCE),
        )
        .await;
    // From then on, at once.
    for _ in 0..5 {
        stack
            .check(
                &request,
                &Expect::fallback(DecisionSource::Unavailable, default_allow()).within(AT_ONCE),
            )
            .await;
    }
    stack.wait_for_status("/readyz", 503, AT_ONCE).await;

    stack.nats.thaw();
    stack
        .check_eventually(&request, &Expect::worker(allow()), RECOVERY_BOUND)
        .await;
}

/// The budget of [`TWO_SECOND_BUDGET`] with hedging at its default (50 %), or `extra`.
fn hedging_settings(
    extra: Option<(&'static str, &'static str)>,
) -> Vec<(&'static str, &'static str)> {
    TWO_SECOND_BUDGET.iter().copied().chain(extra).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_a_worker_lost_is_asked_again_with_the_same_request_id() {
    let stack = Stack::start(&hedging_settings(None)).await;
    let worker = stack
        .scripted(Behaviour::swallow_first(allow().to_string()))
        .await;
    // Asked again at half the budget, answered then: the worker's decision, in time.
    let response = stack
        .check(
            &seed(),
            &Expect::worker(allow())
                .not_before(BUDGET / 2 - Duration::from_millis(100))
                .within(BUDGET + LATE_SLACK),
        )
        .await;
    let received = worker.wait_for(2, AT_ONCE).await;
    assert_eq!(received.len(), 2, "{received:#?}");
    let ids: Vec<Option<&str>> = received
        .iter()
        .map(|message| message.header(headers::REQUEST_ID))
        .collect();
    assert_eq!(
        ids,
        [response.request_id(), response.request_id()],
        "both asks carry the X-Request-Id OpenIM got"
    );
    assert_eq!(received[0].payload, received[1].payload);
    let hedged = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_hedged_callbacks_total",
        &[("command", SET_MEMBER)],
    );
    assert_eq!(hedged, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hedging_off_a_lost_callback_is_asked_once_and_gets_the_default() {
    let stack = Stack::start(&hedging_settings(Some((
        "GATEWAY_HEDGE_AFTER_PERCENT",
        "0",
    ))))
    .await;
    let worker = stack
        .scripted(Behaviour::swallow_first(allow().to_string()))
        .await;
    stack
        .check(
            &seed(),
            &Expect::fallback(DecisionSource::Timeout, default_allow())
                .not_before(BUDGET - Duration::from_millis(100))
                .within(BUDGET + LATE_SLACK),
        )
        .await;
    worker.settle().await;
    assert_eq!(worker.received().len(), 1, "asked again with hedging off");
    let hedged = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_hedged_callbacks_total",
        &[("command", SET_MEMBER)],
    );
    assert_eq!(hedged, 0.0);
    // The next callback is answered by the same worker at once: one ask, one reply.
    stack
        .check(&seed(), &Expect::worker(allow()).within(AT_ONCE))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_workers_are_not_sent_twice_the_load_hedges_stay_a_tenth_after_a_burst() {
    // 300 callbacks at once to a hung worker: each would be hedged at half the budget, but
    // the hedges saved up (100) and a tenth of the asks are all there is.
    const CALLBACKS: usize = 300;
    let stack = Stack::start(&crate::SHORT_BUDGET_SETTINGS).await;
    let hung = stack.scripted(Behaviour::Hang).await;
    let request = seed();
    let answers = futures::future::join_all(
        (0..CALLBACKS).map(|_| http::send(stack.gateway.address(), &request)),
    )
    .await;
    let timeouts = answers
        .iter()
        .filter(|answer| {
            matches!(answer, Ok(response) if response.source() == Some(DecisionSource::Timeout.header_value()))
        })
        .count();
    assert_eq!(
        timeouts, CALLBACKS,
        "every callback gets the default at its deadline"
    );
    let hedged = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_hedged_callbacks_total",
        &[("command", SET_MEMBER)],
    );
    assert!(
        (100.0..=130.0).contains(&hedged),
        "{hedged} hedges for {CALLBACKS} callbacks to a hung worker: expected the burst of 100, plus at most a tenth of the asks"
    );
    hung.settle().await;
    assert_eq!(hung.received().len(), CALLBACKS + hedged as usize);
}
