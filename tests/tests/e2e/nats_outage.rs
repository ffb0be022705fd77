//! NATS going away, never being there, and coming back: the gateway answers
//! `fallback:unavailable` at once while disconnected (never queueing a request it cannot
//! answer in time), reports it on `/readyz` and in metrics, and recovers without a restart.

use std::time::Duration;

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::{SET_MEMBER_NICKNAME_ONLY, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{
    allow, http, metrics, Behaviour, Expect, Gateway, HttpRequest, NatsServer, Stack,
};

use crate::{default_allow, AT_ONCE, LATE_SLACK, RECOVERY_BOUND, SET_MEMBER};

/// How long the gateway may take to notice a killed nats-server (the socket closes at once;
/// a half-open connection would take a ping interval or two).
const NOTICE_BOUND: Duration = Duration::from_secs(10);

fn seed(body: &[u8]) -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, body)
}

fn unavailable() -> Expect {
    Expect::fallback(DecisionSource::Unavailable, default_allow()).within(AT_ONCE)
}

async fn gauge(stack: &Stack, name: &str) -> f64 {
    metrics::sum(&stack.metrics().await, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outage_answers_unavailable_at_once_and_recovers_without_a_restart() {
    let mut stack = Stack::start(&[]).await;
    let worker = stack.scripted(Behaviour::reply(allow().to_string())).await;
    let request = seed(SET_MEMBER_ROLE_ONLY);
    stack.check(&request, &Expect::worker(allow())).await;
    stack.wait_for_status("/readyz", 200, AT_ONCE).await;
    assert_eq!(gauge(&stack, "openim_gateway_nats_connected").await, 1.0);
    let reconnects_before = gauge(&stack, "openim_gateway_nats_reconnects_total").await;

    stack.nats.stop();
    stack.wait_for_status("/readyz", 503, NOTICE_BOUND).await;
    stack.check(&request, &unavailable()).await;
    stack
        .check(&seed(SET_MEMBER_NICKNAME_ONLY), &unavailable())
        .await;
    assert_eq!(
        gauge(&stack, "openim_gateway_nats_connected").await,
        0.0,
        "openim_gateway_nats_connected while nats-server is down"
    );

    stack.nats.restart().await;
    stack.wait_for_status("/readyz", 200, RECOVERY_BOUND).await;
    stack
        .check_eventually(&request, &Expect::worker(allow()), RECOVERY_BOUND)
        .await;
    assert!(
        worker.received().len() >= 2,
        "the worker answered after the restart"
    );
    assert!(stack.gateway.is_running(), "the gateway must not exit");
    assert_eq!(gauge(&stack, "openim_gateway_nats_connected").await, 1.0);
    let reconnects_after = gauge(&stack, "openim_gateway_nats_reconnects_total").await;
    assert!(
        reconnects_after > reconnects_before,
        "openim_gateway_nats_reconnects_total went from {reconnects_before} to {reconnects_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_starts_without_nats_and_recovers_when_it_appears() {
    let mut stack = Stack::start_without_nats(&[]).await;
    stack
        .check(&HttpRequest::get("/readyz"), &Expect::status(503))
        .await;
    stack
        .check(&HttpRequest::get("/healthz"), &Expect::status(200))
        .await;
    stack
        .check(&seed(SET_MEMBER_ROLE_ONLY), &unavailable())
        .await;

    stack.nats.restart().await;
    let _worker = stack.scripted(Behaviour::reply(allow().to_string())).await;
    stack.wait_for_status("/readyz", 200, RECOVERY_BOUND).await;
    stack
        .check_eventually(
            &seed(SET_MEMBER_ROLE_ONLY),
            &Expect::worker(allow()),
            RECOVERY_BOUND,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_while_a_request_waits_answers_it_at_once() {
    let budget = Duration::from_millis(1900);
    let mut stack = Stack::start(&[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "2000"),
        ("GATEWAY_SAFETY_MARGIN_MS", "100"),
    ])
    .await;
    let hung = stack.scripted(Behaviour::Hang).await;
    let request = seed(SET_MEMBER_ROLE_ONLY);
    let address = stack.gateway.address();
    let waiting = tokio::spawn({
        let request = request.clone();
        async move { http::send(address, &request).await }
    });
    hung.wait_for(1, Duration::from_secs(2)).await;
    stack.nats.stop();
    let response = match tokio::time::timeout(budget + Duration::from_secs(5), waiting).await {
        Ok(Ok(Ok(response))) => response,
        other => panic!(
            "{}",
            stack.report(&format!("no answer: {other:?}"), &request, None)
        ),
    };
    // The reply could only come through the server that just died: the waiting callback is
    // answered when the connection drops, not at its deadline.
    let source = response.source().unwrap_or_default().to_owned();
    let at_once = response.elapsed < budget / 2;
    let body_ok = response.json().ok() == Some(default_allow());
    assert!(
        response.status == 200
            && at_once
            && body_ok
            && source == DecisionSource::Unavailable.as_str(),
        "{}",
        stack.report(
            &format!(
                "expected 200, the default body and fallback:unavailable within {:?}",
                budget / 2
            ),
            &request,
            Some(&response)
        )
    );
    // And the next one, with NATS still down, is answered at once.
    stack.wait_for_status("/readyz", 503, NOTICE_BOUND).await;
    stack.check(&request, &unavailable()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_url_may_list_several_servers() {
    // The first server in the list is not running: the gateway uses the second.
    let nats = NatsServer::start().await;
    let absent = NatsServer::not_started();
    let list = format!("{},{}", absent.url(), nats.url());
    let gateway = Gateway::start(&list, &[]).await;
    let stack = Stack {
        nats,
        gateway,
        workers: Vec::new(),
    };
    stack.wait_for_status("/readyz", 200, RECOVERY_BOUND).await;
    let _worker = stack.scripted(Behaviour::reply(allow().to_string())).await;
    stack
        .check(&seed(SET_MEMBER_ROLE_ONLY), &Expect::worker(allow()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stay_on_time_while_nats_goes_down_and_comes_back() {
    // Four clients keep calling while nats-server is killed and restarted: every answer is
    // valid and on time; some come from the worker, some are `unavailable` in between.
    let mut stack = Stack::start(&crate::SHORT_BUDGET_SETTINGS).await;
    let _worker = stack.scripted(Behaviour::reply(allow().to_string())).await;
    let address = stack.gateway.address();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                let request = seed(SET_MEMBER_ROLE_ONLY);
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    answers.push(http::send(address, &request).await);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.nats.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stack.nats.restart().await;
    stack.wait_for_status("/readyz", 200, RECOVERY_BOUND).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut sources = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for client in clients {
        let answers = client.await.expect("a client task panicked");
        for answer in answers {
            match answer {
                Ok(response) => {
                    let source = response.source().unwrap_or("(none)").to_owned();
                    // no_responders: the gateway may be back before the worker resubscribed.
                    let valid_source = matches!(
                        DecisionSource::from_name(&source),
                        Some(
                            DecisionSource::Worker
                                | DecisionSource::Unavailable
                                | DecisionSource::Timeout
                                | DecisionSource::NoResponders
                        )
                    );
                    let on_time = response.elapsed <= crate::SHORT_BUDGET + LATE_SLACK;
                    let body_ok = response.json().ok() == Some(allow());
                    if response.status != 200 || !valid_source || !on_time || !body_ok {
                        failures.push(format!("{response}"));
                    }
                    *sources.entry(source).or_default() += 1;
                }
                Err(error) => failures.push(error),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        stack.report(
            &format!(
                "{} answers were late or wrong (sources seen {sources:?}):\n{}",
                failures.len(),
                failures.join("\n---\n")
            ),
            &seed(SET_MEMBER_ROLE_ONLY),
            None
        )
    );
    assert!(
        sources
            .get(DecisionSource::Worker.as_str())
            .copied()
            .unwrap_or_default()
            > 0
            && sources
                .get(DecisionSource::Unavailable.as_str())
                .copied()
                .unwrap_or_default()
                > 0,
        "expected worker answers and unavailable answers, saw {sources:?}"
    );
}
