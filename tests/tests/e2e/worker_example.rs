//! The example worker's side of the worker protocol, spoken to directly over NATS (no
//! gateway): it drops requests whose deadline has passed, and answers a body it cannot
//! parse with a `Nats-Service-Error`, which the gateway turns into the default decision.

use std::time::Duration;

use futures::StreamExt as _;

use async_nats::HeaderMap;
use openim_gateway_proto::headers;
use openim_gateway_proto::subject;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::scripted::unix_ms_now;
use openim_gateway_tests::{NatsServer, Worker};

use crate::SET_MEMBER;

fn request_headers(deadline_unix_ms: u128) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(headers::REQUEST_ID, "0190f5f8-0000-7000-8000-000000000001");
    map.insert(headers::CALLBACK_COMMAND, SET_MEMBER);
    map.insert(
        headers::DEADLINE_UNIX_MS,
        deadline_unix_ms.to_string().as_str(),
    );
    map.insert(headers::TIMEOUT_MS, "1000");
    map
}

async fn worker_and_client() -> (NatsServer, Worker, async_nats::Client) {
    let nats = NatsServer::start().await;
    let worker = Worker::start(&nats.url(), &[]).await;
    let client = tokio::time::timeout(Duration::from_secs(10), async_nats::connect(nats.url()))
        .await
        .expect("connecting in time")
        .expect("connecting to the test's nats-server");
    (nats, worker, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_drops_requests_past_their_deadline() {
    let (_nats, _worker, client) = worker_and_client().await;
    let subject = subject::for_command(subject::DEFAULT_PREFIX, SET_MEMBER);

    let live = tokio::time::timeout(
        Duration::from_secs(5),
        client.request_with_headers(
            subject.clone(),
            request_headers(unix_ms_now() + 5000),
            SET_MEMBER_ROLE_ONLY.into(),
        ),
    )
    .await;
    let reply = match live {
        Ok(Ok(reply)) => reply,
        other => panic!("a live request got no reply: {other:?}"),
    };
    let answer: serde_json::Value =
        serde_json::from_slice(&reply.payload).expect("the reply is JSON");
    assert_eq!(answer["nextCode"], 0, "{answer}");

    let stale = tokio::time::timeout(
        Duration::from_millis(1500),
        client.request_with_headers(
            subject,
            request_headers(unix_ms_now() - 1000),
            SET_MEMBER_ROLE_ONLY.into(),
        ),
    )
    .await;
    assert!(
        !matches!(stale, Ok(Ok(_))),
        "a request past its deadline was answered: {stale:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_answers_an_unparseable_body_with_a_service_error() {
    let (_nats, _worker, client) = worker_and_client().await;
    let subject = subject::for_command(subject::DEFAULT_PREFIX, SET_MEMBER);
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request_with_headers(
            subject,
            request_headers(unix_ms_now() + 5000),
            "not json".into(),
        ),
    )
    .await;
    let reply = match reply {
        Ok(Ok(reply)) => reply,
        other => panic!("no reply to an unparseable body: {other:?}"),
    };
    let service_error = reply
        .headers
        .as_ref()
        .and_then(|map| map.get(headers::NATS_SERVICE_ERROR));
    assert!(
        service_error.is_some(),
        "expected a {} header, got {:?}",
        headers::NATS_SERVICE_ERROR,
        reply.headers
    );
}

/// How many requests the drain test has queued when it sends SIGTERM.
const QUEUED: usize = 2000;

/// SIGTERM with a burst not yet read: every request the server had already routed to the
/// worker is answered before it exits, not only those it had read from its socket. (async-nats's own
/// `Subscriber::drain` forgets the subscription before the server has confirmed the
/// unsubscribe, which lost about a third of such a burst.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_drains_a_burst_on_sigterm_without_losing_a_request() {
    let (_nats, mut worker, client) = worker_and_client().await;
    let subject = subject::for_command(subject::DEFAULT_PREFIX, SET_MEMBER);
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(format!("{inbox}.*"))
        .await
        .expect("subscribing to the reply inbox");
    openim_gateway_tests::scripted::round_trip(&client)
        .await
        .expect("the reply subscription is in place");

    // Stopped, the worker reads nothing: the burst waits in its socket and in the server's
    // buffer for it, as it does behind a busy or paused worker.
    openim_gateway_tests::process::signal(worker.pid(), "STOP");
    let deadline = unix_ms_now() + 60_000;
    for index in 0..QUEUED {
        client
            .publish_with_reply_and_headers(
                subject.clone(),
                format!("{inbox}.{index}"),
                request_headers(deadline),
                SET_MEMBER_ROLE_ONLY.into(),
            )
            .await
            .expect("publishing a request");
    }
    // Everything is with the server before the signal: what the worker has not answered yet
    // is in its socket or in the server's buffer for it.
    openim_gateway_tests::scripted::round_trip(&client)
        .await
        .expect("the burst reached the server");
    worker.terminate();
    openim_gateway_tests::process::signal(worker.pid(), "CONT");

    let mut answered = std::collections::HashSet::new();
    let collect = async {
        while let Some(reply) = replies.next().await {
            assert!(
                reply.headers.is_none(),
                "a reply carried headers: {reply:?}"
            );
            answered.insert(reply.subject.to_string());
            if answered.len() == QUEUED {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), collect).await;
    let code = worker.wait_for_exit(Duration::from_secs(10)).await;
    assert_eq!(
        answered.len(),
        QUEUED,
        "answered {} of {QUEUED} requests queued before SIGTERM; worker stderr:\n{}",
        answered.len(),
        worker.stderr_log().tail(20)
    );
    assert_eq!(code, Some(0), "the worker's exit code after SIGTERM");
}
