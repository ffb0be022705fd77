//! When no valid reply can arrive in time, OpenIM still gets a valid answer before the
//! budget ends: the default decision, marked with why (`fallback:timeout`,
//! `fallback:no_responders`).

use std::time::Duration;

use futures::future::join_all;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::check::differences;
use openim_gateway_tests::fixtures::{SET_MEMBER_NICKNAME_ONLY, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{
    allow, http, metrics, reject, Behaviour, Expect, HttpConnection, HttpRequest, Stack,
};

use crate::{
    default_allow, AT_ONCE, DEFAULT_BUDGET, LATE_SLACK, SET_MEMBER, SHORT_BUDGET,
    SHORT_BUDGET_SETTINGS,
};

fn seed(body: &[u8]) -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, body)
}

/// A timeout fallback: the default body, not before most of the budget, not after it plus
/// the slack.
fn timeout_fallback(body: serde_json::Value) -> Expect {
    Expect::fallback(DecisionSource::Timeout, body)
        .not_before(SHORT_BUDGET - Duration::from_millis(100))
        .within(SHORT_BUDGET + LATE_SLACK)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_worker_gets_the_timeout_fallback_by_the_deadline() {
    let stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    let slow = stack
        .scripted(Behaviour::reply_after(
            Duration::from_millis(1500),
            allow().to_string(),
        ))
        .await;
    stack
        .check(
            &seed(SET_MEMBER_NICKNAME_ONLY),
            &timeout_fallback(default_allow()),
        )
        .await;
    // The request did reach the worker: this was a timeout, not a missing subscriber.
    slow.wait_for(1, Duration::from_secs(2)).await;
    // The late reply arrives after the gateway gave up; it must not confuse the next one.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    stack
        .check(
            &seed(SET_MEMBER_ROLE_ONLY),
            &timeout_fallback(default_allow()),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_worker_gets_the_timeout_fallback_by_the_deadline_even_in_a_burst() {
    let stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    let hung = stack.scripted(Behaviour::Hang).await;
    stack
        .check(
            &seed(SET_MEMBER_NICKNAME_ONLY),
            &timeout_fallback(default_allow()),
        )
        .await;
    hung.wait_for(1, Duration::from_secs(2)).await;

    // Twenty at once: every one is answered by its own deadline, none waits for another.
    let request = seed(SET_MEMBER_ROLE_ONLY);
    let expect = timeout_fallback(default_allow());
    let answers = join_all((0..20).map(|_| http::send(stack.gateway.address(), &request))).await;
    let mut failures = Vec::new();
    for (index, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(response) => {
                let problems = differences(&response, &expect);
                if !problems.is_empty() {
                    failures.push(format!("#{index}: {}\n{response}", problems.join("; ")));
                }
            }
            Err(error) => failures.push(format!("#{index}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        stack.report(&failures.join("\n"), &request, None)
    );

    // Timeouts are the normal failure mode: every abandoned request must leave the reply
    // map, so that memory stays flat (ARCHITECTURE.md's invariants).
    let pending = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_pending_replies",
        &[],
    );
    assert_eq!(
        pending, 0.0,
        "openim_gateway_pending_replies after 21 timeouts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_mid_upload_is_answered_by_the_deadline() {
    // Reading the body counts against the budget: a client that announces 166 bytes and
    // sends 20 still gets the default decision before the budget ends, and nothing reaches
    // NATS.
    let stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    let observer = stack.observer().await;
    let request = seed(SET_MEMBER_ROLE_ONLY);
    let mut connection = HttpConnection::open(stack.gateway.address())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let response = match connection.send_partial(&request, 20).await {
        Ok(response) => response,
        Err(error) => panic!("{}", stack.report(&error, &request, None)),
    };
    let mut problems = Vec::new();
    if !(400..500).contains(&response.status) && response.status != 200 {
        problems.push(format!("status {}", response.status));
    }
    if response.elapsed > SHORT_BUDGET + LATE_SLACK {
        problems.push(format!("answered after {:?}", response.elapsed));
    }
    match response.json() {
        Ok(mut body) => {
            if let Some(object) = body.as_object_mut() {
                object.remove("error");
            }
            if body != default_allow() {
                problems.push(format!("body {body} is not the default decision"));
            }
        }
        Err(problem) => problems.push(problem),
    }
    assert!(
        problems.is_empty(),
        "{}",
        stack.report(&problems.join("\n"), &request, Some(&response))
    );
    observer.settle().await;
    assert!(observer.received().is_empty(), "{:#?}", observer.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_responders_is_answered_at_once() {
    // The default budget is 4.75 s: an answer within 1 s cannot be a timeout.
    let stack = Stack::start(&[]).await;
    stack
        .check(
            &seed(SET_MEMBER_NICKNAME_ONLY),
            &Expect::fallback(DecisionSource::NoResponders, default_allow()).within(AT_ONCE),
        )
        .await;
    assert!(AT_ONCE < DEFAULT_BUDGET);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_reject_decision_is_used_for_every_fallback() {
    let mut settings = SHORT_BUDGET_SETTINGS.to_vec();
    settings.extend([
        ("GATEWAY_DEFAULT_DECISION", "reject"),
        ("GATEWAY_REJECT_ERR_CODE", "5099"),
        ("GATEWAY_REJECT_ERR_MSG", "paused for maintenance"),
    ]);
    let stack = Stack::start(&settings).await;
    let rejected = reject(5099, "paused for maintenance");

    stack
        .check(
            &seed(SET_MEMBER_ROLE_ONLY),
            &Expect::fallback(DecisionSource::NoResponders, rejected.clone()).within(AT_ONCE),
        )
        .await;

    let hung = stack.scripted(Behaviour::Hang).await;
    stack
        .check(
            &seed(SET_MEMBER_NICKNAME_ONLY),
            &timeout_fallback(rejected.clone()),
        )
        .await;
    hung.stop().await;

    let invalid = stack.scripted(Behaviour::reply("not json")).await;
    stack
        .check(
            &seed(SET_MEMBER_ROLE_ONLY),
            &Expect::fallback(DecisionSource::InvalidReply, rejected.clone()),
        )
        .await;
    invalid.stop().await;

    // A bad request carries the default decision too, with its error.
    stack
        .check(&seed(b"not json"), &Expect::bad(400, rejected.clone()))
        .await;
}
