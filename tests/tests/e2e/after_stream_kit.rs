//! `openim-worker-kit`'s durable consumer on the gateway's after-callback stream, against a
//! real JetStream nats-server and the real gateway with `GATEWAY_AFTER_STREAM`: what was
//! stored while no worker ran arrives once each, byte for byte and in order, and is
//! acknowledged (a second run gets nothing again); a failing handler gets its message again;
//! a body that does not parse is dropped for good; a stop lets running handlers finish.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use openim_gateway_proto::group_member::SetGroupMemberInfoRequest;
use openim_gateway_proto::headers;
use openim_gateway_tests::fixtures::AFTER_SET_MEMBER;
use openim_gateway_tests::{Gateway, NatsServer};
use openim_worker_kit::{AfterCallback, AfterStreamBuilder, AfterStreamReport, HandlerError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::after_stream::{jetstream_server, post, AFTER_SET_MEMBER_COMMAND, STREAM};

/// The subject the gateway publishes the seed after-callback on.
const SUBJECT: &str = "openim.callback.callbackAfterSetGroupMemberInfoCommand";

/// Short enough that a message left unacknowledged comes back within a test.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// The bound on every wait for a message.
const RECEIVE_BOUND: Duration = Duration::from_secs(10);

/// What a handler saw of one delivery.
#[derive(Debug, Clone)]
struct Seen {
    command: String,
    body: Bytes,
    request_id: Option<String>,
    operation_id: Option<String>,
    delivered: u64,
}

impl Seen {
    fn of<Body>(callback: &AfterCallback<Body>, body: Bytes) -> Self {
        Self {
            command: callback.command.clone(),
            body,
            request_id: callback.request_id().map(str::to_owned),
            operation_id: callback.operation_id().map(str::to_owned),
            delivered: callback.delivered,
        }
    }
}

/// The seed after-callback with nickname `nick_name`, so that each one is told apart.
fn after_set_member(nick_name: &str) -> Vec<u8> {
    let text = std::str::from_utf8(AFTER_SET_MEMBER).expect("the fixture is UTF-8");
    let changed = text.replace(
        r#""nickName":"Alice""#,
        &format!(r#""nickName":"{nick_name}""#),
    );
    assert_ne!(changed, text, "the fixture changes the nickname");
    changed.into_bytes()
}

async fn client(nats: &NatsServer) -> async_nats::Client {
    tokio::time::timeout(Duration::from_secs(10), async_nats::connect(nats.url()))
        .await
        .expect("connecting in time")
        .expect("connecting to the test's nats-server")
}

/// A consumer serving in the background, stopped through its shutdown future.
struct Running {
    stop: oneshot::Sender<()>,
    serving: JoinHandle<AfterStreamReport>,
}

impl Running {
    async fn start(nats: &NatsServer, builder: AfterStreamBuilder) -> Self {
        let consumer = builder
            .start(client(nats).await)
            .await
            .expect("the consumer starts");
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(consumer.serve(async move {
            let _ = stopped.await;
        }));
        Self { stop, serving }
    }

    async fn stop(self) -> AfterStreamReport {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.serving)
            .await
            .expect("the consumer stops in time")
            .expect("the consumer does not panic")
    }
}

/// A raw handler that reports every delivery on `seen`.
fn recording(durable: &str, seen: mpsc::UnboundedSender<Seen>) -> AfterStreamBuilder {
    AfterStreamBuilder::new(STREAM, durable)
        .commands(&[AFTER_SET_MEMBER_COMMAND])
        .concurrency(1)
        .ack_wait(ACK_WAIT)
        .handle_raw(move |callback: AfterCallback<Bytes>| {
            let _ = seen.send(Seen::of(&callback, callback.body.clone()));
            std::future::ready(Ok(()))
        })
}

async fn receive(seen: &mut mpsc::UnboundedReceiver<Seen>, count: usize) -> Vec<Seen> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        match tokio::time::timeout(RECEIVE_BOUND, seen.recv()).await {
            Ok(Some(one)) => received.push(one),
            Ok(None) => panic!("the handler is gone after {received:?}"),
            Err(_) => panic!("only {} of {count} in time: {received:?}", received.len()),
        }
    }
    received
}

/// Every one of `count` after-callbacks was handled and acknowledged, and the durable
/// consumer `durable` holds none unacknowledged.
async fn assert_all_acked(
    report: AfterStreamReport,
    nats: &NatsServer,
    durable: &str,
    count: usize,
) {
    assert_eq!(
        report,
        AfterStreamReport {
            acked: count as u64,
            ..AfterStreamReport::default()
        }
    );
    let info = consumer_info(nats, durable).await;
    assert_eq!(info.num_ack_pending, 0, "unacknowledged: {info:?}");
    assert_eq!(info.ack_floor.stream_sequence, count as u64, "{info:?}");
}

async fn consumer_info(nats: &NatsServer, durable: &str) -> jetstream::consumer::Info {
    let mut consumer: jetstream::consumer::PullConsumer = jetstream::new(client(nats).await)
        .get_stream(STREAM)
        .await
        .expect("the stream exists")
        .get_consumer(durable)
        .await
        .expect("the durable consumer exists");
    consumer.info().await.expect("consumer info").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_consumer_reads_what_was_stored_while_no_worker_ran_once_each_in_order() {
    const CALLBACKS: usize = 5;
    const DURABLE: &str = "kit-late";
    let (_scratch, nats) = jetstream_server().await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    let mut sent = Vec::new();
    for index in 0..CALLBACKS {
        let body = after_set_member(&format!("Alice {index}"));
        let request_id = post(&gateway, &body).await;
        sent.push((request_id, body));
    }

    let (record, mut seen) = mpsc::unbounded_channel();
    let first = Running::start(&nats, recording(DURABLE, record)).await;
    let received = receive(&mut seen, CALLBACKS).await;
    let report = first.stop().await;
    for (index, ((request_id, body), got)) in sent.iter().zip(&received).enumerate() {
        assert_eq!(
            got.body,
            body.as_slice(),
            "message {index} byte for byte, in order"
        );
        assert_eq!(got.request_id.as_deref(), Some(request_id.as_str()));
        assert_eq!(got.command, AFTER_SET_MEMBER_COMMAND);
        assert!(got.operation_id.is_some(), "{got:?}");
        assert_eq!(got.delivered, 1, "delivered once: {got:?}");
    }
    assert!(seen.try_recv().is_err(), "a message arrived twice");
    assert_all_acked(report, &nats, DURABLE, CALLBACKS).await;
    let info = consumer_info(&nats, DURABLE).await;
    assert_eq!(info.num_pending, 0, "left in the stream: {info:?}");

    // Again with the same durable, past the ack wait: nothing old comes back, and a new
    // callback (proof that this run does consume) is the only one it gets.
    let (record, mut seen) = mpsc::unbounded_channel();
    let second = Running::start(&nats, recording(DURABLE, record)).await;
    tokio::time::sleep(ACK_WAIT + Duration::from_secs(1)).await;
    assert!(
        seen.try_recv().is_err(),
        "the second run got an old message again"
    );
    let body = after_set_member("Bob");
    let request_id = post(&gateway, &body).await;
    let received = receive(&mut seen, 1).await;
    assert_eq!(received[0].body, body.as_slice());
    assert_eq!(received[0].request_id.as_deref(), Some(request_id.as_str()));
    let report = second.stop().await;
    assert_eq!(
        report,
        AfterStreamReport {
            acked: 1,
            ..AfterStreamReport::default()
        }
    );
    assert!(seen.try_recv().is_err(), "more than the new message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_consumer_delivers_a_failed_message_again_and_drops_a_body_that_does_not_parse() {
    const DURABLE: &str = "kit-retry";
    let (_scratch, nats) = jetstream_server().await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    let flaky = post(&gateway, &after_set_member("Flaky")).await;
    // Not a request: stored under the same subject, as a misbehaving publisher could.
    let mut not_json = async_nats::HeaderMap::new();
    not_json.insert(headers::CALLBACK_COMMAND, AFTER_SET_MEMBER_COMMAND);
    not_json.insert(headers::REQUEST_ID, "not-json");
    jetstream::new(client(&nats).await)
        .publish_with_headers(SUBJECT, not_json, Bytes::from_static(b"not json"))
        .await
        .expect("published")
        .await
        .expect("stored");
    let steady = post(&gateway, &after_set_member("Steady")).await;

    let (record, mut seen) = mpsc::unbounded_channel();
    let failing_first_time = flaky.clone();
    let builder = AfterStreamBuilder::new(STREAM, DURABLE)
        .ack_wait(ACK_WAIT)
        .nak_delay(Duration::from_millis(200))
        .handle(move |callback: &AfterCallback<SetGroupMemberInfoRequest>| {
            let body = Bytes::from(callback.body.nick_name.clone().unwrap_or_default());
            let _ = record.send(Seen::of(callback, body));
            if callback.request_id() == Some(failing_first_time.as_str()) && callback.delivered == 1
            {
                return Err(HandlerError::new("the store is down"));
            }
            Ok(())
        });
    let running = Running::start(&nats, builder).await;
    let received = receive(&mut seen, 3).await;
    // The retry comes back after its delay; give a wrong extra delivery the time to show.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = running.stop().await;
    assert!(seen.try_recv().is_err(), "an extra delivery");

    let deliveries_of = |request_id: &str| {
        received
            .iter()
            .filter(|one| one.request_id.as_deref() == Some(request_id))
            .map(|one| (one.delivered, one.body.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        deliveries_of(&flaky),
        [(1, Bytes::from("Flaky")), (2, Bytes::from("Flaky"))],
        "{received:?}"
    );
    assert_eq!(
        deliveries_of(&steady),
        [(1, Bytes::from("Steady"))],
        "{received:?}"
    );
    assert!(deliveries_of("not-json").is_empty(), "{received:?}");
    assert_eq!(
        report,
        AfterStreamReport {
            acked: 2,
            retried: 1,
            refused: 1,
            ..AfterStreamReport::default()
        }
    );
    let info = consumer_info(&nats, DURABLE).await;
    assert_eq!(info.num_ack_pending, 0, "unacknowledged: {info:?}");
    assert_eq!(info.num_pending, 0, "left in the stream: {info:?}");
    assert_eq!(info.ack_floor.stream_sequence, 3, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_consumer_stop_lets_running_handlers_finish_and_acknowledges_them() {
    const DURABLE: &str = "kit-stop";
    const CALLBACKS: usize = 3;
    let (_scratch, nats) = jetstream_server().await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_AFTER_STREAM", STREAM)]).await;
    for index in 0..CALLBACKS {
        post(&gateway, &after_set_member(&format!("Slow {index}"))).await;
    }
    let (started, mut starts) = mpsc::unbounded_channel();
    let started = Arc::new(started);
    let builder = AfterStreamBuilder::new(STREAM, DURABLE)
        .ack_wait(ACK_WAIT)
        .handle_raw(move |callback: AfterCallback<Bytes>| {
            let started = Arc::clone(&started);
            async move {
                let _ = started.send(Seen::of(&callback, callback.body.clone()));
                tokio::time::sleep(Duration::from_millis(700)).await;
                Ok(())
            }
        });
    let running = Running::start(&nats, builder).await;
    receive(&mut starts, CALLBACKS).await;
    // All three are running: stop now, while none has finished.
    let report = running.stop().await;
    assert_all_acked(report, &nats, DURABLE, CALLBACKS).await;
}
