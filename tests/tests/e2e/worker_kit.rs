//! `openim-worker-kit` against a real nats-server and gateway: its concurrency bound, its
//! service errors, and `$SRV` discovery with per-command counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::service::{Info, PingResponse, Stats};
use openim_gateway_proto::group_member::SetGroupMemberInfoRequest;
use openim_gateway_proto::subject;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::{SET_MEMBER_NICKNAME_ONLY, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{allow, reject, Expect, HttpRequest, Stack};
use openim_worker_kit::{Decision, HandlerError, WorkerBuilder};

use crate::SET_MEMBER;

fn seed(body: &[u8]) -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, body.to_vec())
}

async fn client(stack: &Stack) -> async_nats::Client {
    tokio::time::timeout(
        Duration::from_secs(10),
        async_nats::connect(stack.nats.url()),
    )
    .await
    .expect("connecting in time")
    .expect("connecting to the test's nats-server")
}

/// A request to a `$SRV` subject, read back as async-nats's own service type.
async fn discover<T: serde::de::DeserializeOwned>(client: &async_nats::Client, subject: &str) -> T {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        client.request(subject.to_owned(), bytes::Bytes::new()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to {subject} in time"))
    .unwrap_or_else(|error| panic!("{subject}: {error}"));
    serde_json::from_slice(&reply.payload).unwrap_or_else(|error| {
        panic!(
            "{subject} answered {}: {error}",
            String::from_utf8_lossy(&reply.payload)
        )
    })
}

/// With a bound of 4, never more than 4 handlers run at once, and 4 do: 32 callbacks whose
/// handler takes 100 ms all get their answer, in about 8 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_runs_at_most_its_concurrency_bound_of_handlers_at_once() {
    const BOUND: usize = 4;
    const CALLBACKS: usize = 32;
    let stack = Stack::start(&[]).await;
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (running, most) = (Arc::clone(&running), Arc::clone(&most));
        WorkerBuilder::new("bounded", "1.0.0")
            .concurrency(BOUND)
            .handle_async(SET_MEMBER, move |_: SetGroupMemberInfoRequest, _| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, HandlerError>(Decision::<serde_json::Map<_, _>>::allow())
                }
            })
            .start(client(&stack).await)
            .await
            .expect("the kit worker starts")
    };
    let serving = tokio::spawn(worker.serve(std::future::pending()));

    let request = seed(SET_MEMBER_ROLE_ONLY);
    let expect = Expect::worker(allow());
    let answers =
        futures::future::join_all((0..CALLBACKS).map(|_| stack.check(&request, &expect))).await;
    assert_eq!(answers.len(), CALLBACKS);
    assert_eq!(
        most.load(Ordering::SeqCst),
        BOUND,
        "the most handlers running at once"
    );
    serving.abort();
}

/// A handler error reaches the gateway as a service error: OpenIM gets the default at once,
/// not after the gateway's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_turns_a_handler_error_into_an_immediate_default() {
    let stack = Stack::start(&[("GATEWAY_DEFAULT_DECISION", "reject")]).await;
    let worker = WorkerBuilder::new("failing", "1.0.0")
        .handle(SET_MEMBER, |_: &SetGroupMemberInfoRequest, _: &_| {
            Err::<Decision, _>(HandlerError::new("the policy store is down"))
        })
        .start(client(&stack).await)
        .await
        .expect("the kit worker starts");
    let serving = tokio::spawn(worker.serve(std::future::pending()));
    let response = stack.send(&seed(SET_MEMBER_ROLE_ONLY)).await;
    assert_eq!(
        response.source(),
        Some(DecisionSource::InvalidReply.header_value()),
        "{response}"
    );
    serving.abort();
}

/// The example worker is found by `$SRV.PING` and `$SRV.INFO` (its endpoint in the queue group
/// `openim-workers` on `{prefix}.{command}`), and `$SRV.STATS` counts what it answered through
/// the gateway, errors included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_is_discovered_and_counted_by_the_service_api() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    let client = client(&stack).await;

    stack
        .check(&seed(SET_MEMBER_ROLE_ONLY), &Expect::worker(allow()))
        .await;
    stack
        .check(
            &seed(SET_MEMBER_NICKNAME_ONLY),
            &Expect::worker(reject(5001, "nickname contains a banned word")),
        )
        .await;
    stack
        .check(&seed(SET_MEMBER_ROLE_ONLY), &Expect::worker(allow()))
        .await;
    // A body the gateway forwards but that is not this command's request: a 400 service error.
    let not_a_request = seed(br#"{"callbackCommand":"callbackBeforeSetGroupMemberInfoCommand"}"#);
    let response = stack.send(&not_a_request).await;
    assert_eq!(
        response.source(),
        Some(DecisionSource::InvalidReply.header_value()),
        "{response}"
    );

    let ping: PingResponse = discover(&client, "$SRV.PING").await;
    assert_eq!(ping.name, "openim-worker-example");
    let info: Info = discover(&client, "$SRV.INFO.openim-worker-example").await;
    let endpoint = &info.endpoints[0];
    assert_eq!(
        endpoint.subject,
        subject::for_command(subject::DEFAULT_PREFIX, SET_MEMBER)
    );
    assert_eq!(endpoint.queue_group, subject::QUEUE_GROUP);

    let stats: Stats = discover(
        &client,
        &format!("$SRV.STATS.openim-worker-example.{}", ping.id),
    )
    .await;
    assert_eq!(stats.kind, "io.nats.micro.v1.stats_response");
    let endpoint = &stats.endpoints[0];
    assert_eq!(endpoint.name, SET_MEMBER);
    assert_eq!(endpoint.requests, 4, "{:?}", stats.endpoints);
    assert_eq!(endpoint.errors, 1, "{:?}", stats.endpoints);
    assert_eq!(
        endpoint.last_error.as_ref().map(|error| error.code),
        Some(400)
    );
    assert_eq!(endpoint.queue_group, subject::QUEUE_GROUP);
}
