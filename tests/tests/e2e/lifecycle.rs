//! Start, stop, upgrade and overload, the way a deployment meets them: the first callback
//! after a start is decided by a worker, SIGTERM keeps answering through the shutdown delay
//! and ends with exit 0 whatever clients do, a new gateway takes the listening socket over
//! under churn while the old one drains and exits by itself without failing a callback, a new
//! gateway that fails to start leaves the running one alone, and past the in-flight bound the
//! default comes at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::nats::free_port;
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{
    http, Behaviour, Gateway, HttpConnection, HttpRequest, NatsServer, ScriptedWorker, Stack,
    ALL_CALLBACKS,
};

use crate::{AT_ONCE, DEFAULT_BUDGET, LATE_SLACK, SET_MEMBER, SHORT_BUDGET, SHORT_BUDGET_SETTINGS};

const ALLOW: &str = r#"{"actionCode":0,"nextCode":0}"#;
/// How long a gateway may take to exit once it should.
pub(crate) const EXIT_BOUND: Duration = Duration::from_secs(10);

pub(crate) fn callback() -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY)
}

#[tokio::test]
async fn the_first_callback_after_a_start_is_decided_by_a_worker() {
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    // Several starts: the window in which a gateway listens before NATS is connected is a
    // few tens of milliseconds, and each start is a chance to fall into it.
    for start in 0..4 {
        let gateway = Gateway::start(&nats.url(), &[]).await;
        let response = http::send(gateway.address(), &callback())
            .await
            .unwrap_or_else(|error| panic!("start #{start}: {error}"));
        assert_eq!(
            response.source(),
            Some(DecisionSource::Worker.as_str()),
            "start #{start}: the first callback after the listening line\n{response}\n{}",
            gateway.stderr_log().tail(20)
        );
    }
}

#[tokio::test]
async fn sigterm_keeps_answering_through_the_delay_then_exits_cleanly() {
    let mut stack = Stack::start(&[("GATEWAY_SHUTDOWN_DELAY_MS", "1500")]).await;
    let _worker = stack.scripted(Behaviour::reply(ALLOW)).await;
    let mut kept_alive = HttpConnection::open(stack.gateway.address())
        .await
        .expect("the gateway accepts a connection");
    let before = kept_alive.send(&callback()).await.expect("answered");
    assert_eq!(before.header("connection"), None, "{before}");

    let terminated = Instant::now();
    stack.gateway.terminate();
    stack
        .wait_for_status("/readyz", 503, Duration::from_millis(500))
        .await;
    // During the delay: still accepting and answering, and every answer closes its
    // connection, so that clients reconnect elsewhere.
    let on_kept_alive = kept_alive.send(&callback()).await.expect("answered");
    assert_eq!(on_kept_alive.status, 200, "{on_kept_alive}");
    assert_eq!(
        on_kept_alive.source(),
        Some(DecisionSource::Worker.as_str())
    );
    assert_eq!(
        on_kept_alive.header("connection"),
        Some("close"),
        "{on_kept_alive}"
    );
    let fresh = stack.send(&callback()).await;
    assert_eq!(
        fresh.source(),
        Some(DecisionSource::Worker.as_str()),
        "{fresh}"
    );
    assert!(
        terminated.elapsed() < Duration::from_millis(1500),
        "the checks above took longer than the delay: the test proves nothing"
    );

    let code = stack.gateway.wait_for_exit(EXIT_BOUND).await;
    assert_eq!(code, Some(0), "{}", stack.gateway.stderr_log().tail(20));
    assert!(
        terminated.elapsed() >= Duration::from_millis(1500),
        "exited {:?} after SIGTERM, before the 1500 ms delay",
        terminated.elapsed()
    );
    assert!(
        http::send(stack.gateway.address(), &callback())
            .await
            .is_err(),
        "still accepting after exit"
    );
}

#[tokio::test]
async fn a_callback_in_flight_at_shutdown_is_answered_by_its_worker() {
    let mut stack = Stack::start(&[("GATEWAY_SHUTDOWN_DELAY_MS", "0")]).await;
    let _worker = stack
        .scripted(Behaviour::reply_after(Duration::from_millis(600), ALLOW))
        .await;
    let address = stack.gateway.address();
    let in_flight = tokio::spawn(async move { http::send(address, &callback()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack.gateway.terminate();
    let response = in_flight.await.expect("the client task").expect("answered");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(
        response.source(),
        Some(DecisionSource::Worker.as_str()),
        "{response}"
    );
    assert_eq!(
        stack.gateway.wait_for_exit(EXIT_BOUND).await,
        Some(0),
        "{}",
        stack.gateway.stderr_log().tail(20)
    );
}

#[tokio::test]
async fn a_client_that_stops_halfway_through_its_headers_does_not_hold_the_shutdown() {
    let mut settings = SHORT_BUDGET_SETTINGS.to_vec();
    settings.push(("GATEWAY_SHUTDOWN_DELAY_MS", "0"));
    let mut stack = Stack::start(&settings).await;
    let mut stalled = tokio::net::TcpStream::connect(stack.gateway.address())
        .await
        .expect("the gateway accepts a connection");
    tokio::io::AsyncWriteExt::write_all(
        &mut stalled,
        b"POST /callbackExample/callbackBeforeSetGroupMemberInfoCommand HTTP/1.1\r\nHost: x\r\n",
    )
    .await
    .expect("half the headers are written");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let terminated = Instant::now();
    stack.gateway.terminate();
    // The drain is bounded by the callback timeout (600 ms) and a second of slack.
    let code = stack.gateway.wait_for_exit(EXIT_BOUND).await;
    assert_eq!(code, Some(0), "{}", stack.gateway.stderr_log().tail(20));
    assert!(
        terminated.elapsed() < Duration::from_secs(4),
        "the drain took {:?}",
        terminated.elapsed()
    );
    drop(stalled);
}

/// An idle connection is never closed while it idles, not even by a shutdown: only the
/// drain bound (the longest budget + 1 s after the gateway stops accepting) ends it, so that a
/// client holding a connection it never uses cannot hold the exit.
#[tokio::test]
async fn an_idle_connection_held_across_sigterm_does_not_hold_the_exit_past_the_drain_bound() {
    let mut settings = SHORT_BUDGET_SETTINGS.to_vec();
    settings.push(("GATEWAY_SHUTDOWN_DELAY_MS", "0"));
    let mut stack = Stack::start(&settings).await;
    // Connected, never used: no request, so no header timer runs on it.
    let idle = tokio::net::TcpStream::connect(stack.gateway.address())
        .await
        .expect("the gateway accepts a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let terminated = Instant::now();
    stack.gateway.terminate();
    let code = stack.gateway.wait_for_exit(EXIT_BOUND).await;
    // The bound: the 600 ms callback timeout + 1 s, and slack for a loaded machine.
    let bound = Duration::from_millis(600) + Duration::from_secs(1) + Duration::from_millis(1400);
    assert_eq!(
        code,
        Some(0),
        "still running {:?} after SIGTERM with an idle connection open:\n{}",
        terminated.elapsed(),
        stack.gateway.stderr_log().tail(20)
    );
    assert!(
        terminated.elapsed() < bound,
        "the drain took {:?}, past {bound:?}",
        terminated.elapsed()
    );
    drop(idle);
}

/// Callbacks sent without pause, for as long as the load runs: most tasks open a new
/// connection per callback (the churn that fills a listening socket's accept queue), the
/// others keep theirs alive as OpenIM does and open a new one when an answer says
/// `Connection: close`.
pub(crate) struct Load {
    running: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

/// What one load task saw.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) answered: usize,
    /// Transport errors (refused, reset, closed before an answer) and wrong answers.
    pub(crate) failures: Vec<String>,
}

/// Tasks opening a new connection per callback, and tasks keeping theirs alive.
const CHURNING_TASKS: usize = 32;
const KEPT_ALIVE_TASKS: usize = 4;

impl Load {
    pub(crate) fn start(address: SocketAddr, budget: Duration) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let mut tasks = Vec::new();
        for _ in 0..CHURNING_TASKS {
            let running = Arc::clone(&running);
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                while running.load(Ordering::Relaxed) {
                    let answer = http::send(address, &callback()).await;
                    tally.record(
                        answer.map_err(|error| format!("new connection: {error}")),
                        budget,
                    );
                }
                tally
            }));
        }
        for _ in 0..KEPT_ALIVE_TASKS {
            let running = Arc::clone(&running);
            tasks.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut connection = None;
                while running.load(Ordering::Relaxed) {
                    if connection.is_none() {
                        match HttpConnection::open(address).await {
                            Ok(opened) => connection = Some(opened),
                            Err(error) => {
                                tally.failures.push(format!("connecting: {error}"));
                                continue;
                            }
                        }
                    }
                    let Some(open) = connection.as_mut() else {
                        continue;
                    };
                    let answer = open.send(&callback()).await;
                    let closing = answer.as_ref().map_or(true, |response| {
                        response.header("connection") == Some("close")
                    });
                    if closing {
                        connection = None;
                    }
                    tally.record(
                        answer.map_err(|error| format!("kept-alive connection: {error}")),
                        budget,
                    );
                }
                tally
            }));
        }
        Self { running, tasks }
    }

    pub(crate) async fn stop(self) -> Tally {
        self.running.store(false, Ordering::Relaxed);
        let mut total = Tally::default();
        for task in self.tasks {
            let tally = task.await.expect("load task");
            total.answered += tally.answered;
            total.failures.extend(tally.failures);
        }
        total
    }
}

impl Tally {
    fn record(&mut self, answer: Result<http::HttpResponse, String>, budget: Duration) {
        match answer {
            Ok(response)
                if response.status == 200
                    && response.source() == Some(DecisionSource::Worker.as_str())
                    && response.elapsed <= budget + LATE_SLACK =>
            {
                self.answered += 1;
            }
            Ok(response) => self.failures.push(format!(
                "late or not the worker's ({:?}): {response}",
                response.elapsed
            )),
            Err(error) => self.failures.push(error),
        }
    }
}

/// Two upgrades under churn: `old` to `new`, then `new` to `newest`, all on one address.
/// With `GATEWAY_HANDOVER=on` each new gateway takes the listening socket and the one before
/// drains and exits 0 by itself (a SIGTERM during that drain changes nothing); with `off`
/// the old one is sent SIGTERM once the new one listens, as before the handover existed.
/// Returns what the load saw.
async fn upgrade_twice_under_churn(handover: &str) -> Tally {
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut settings = SHORT_BUDGET_SETTINGS.to_vec();
    settings.extend([
        ("GATEWAY_LISTEN", listen.as_str()),
        ("GATEWAY_SHUTDOWN_DELAY_MS", "1000"),
        ("GATEWAY_HANDOVER", handover),
    ]);
    let mut old = Gateway::start(&nats.url(), &settings).await;
    let address = old.address();
    let load = Load::start(address, SHORT_BUDGET);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut exits = Vec::new();
    for upgrade in 0..2 {
        let new = Gateway::start(&nats.url(), &settings).await;
        assert_eq!(new.address(), address, "the new gateway took another port");
        if handover == "on" {
            assert!(
                logged(&old, HANDED_OVER).await,
                "upgrade #{upgrade}: the old gateway did not log the handover\n{}",
                old.stderr_log().tail(20)
            );
            assert!(
                logged(&new, TOOK_OVER).await,
                "upgrade #{upgrade}: the new gateway did not log the takeover\n{}",
                new.stderr_log().tail(20)
            );
            if upgrade == 1 {
                // Already draining: a service manager's SIGTERM on top changes nothing.
                tokio::time::sleep(Duration::from_millis(200)).await;
                old.terminate();
            }
        } else {
            old.terminate();
        }
        exits.push(old.wait_for_exit(EXIT_BOUND).await);
        old = new;
    }
    // The last drain's stop-accepting instant is behind: a little more load after it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert_eq!(exits, [Some(0), Some(0)], "{}", old.stderr_log().tail(20));
    let after = http::send(address, &callback()).await.expect("answered");
    assert_eq!(after.source(), Some(DecisionSource::Worker.as_str()));
    tally
}

/// Whether `gateway` logs a line with `text` within a few seconds.
pub(crate) async fn logged(gateway: &Gateway, text: &str) -> bool {
    gateway
        .logged(Duration::from_secs(5), |line| line.contains(text))
        .await
}

/// The old gateway's line once a new one holds its listening socket.
pub(crate) const HANDED_OVER: &str = "handed the listening socket to a new gateway";
/// The new gateway's line once it holds the socket.
pub(crate) const TOOK_OVER: &str = "took over the listening socket from the running gateway";

#[tokio::test]
async fn an_upgrade_under_churn_hands_the_socket_over_and_fails_no_callback() {
    let tally = upgrade_twice_under_churn("on").await;
    assert!(
        tally.failures.is_empty(),
        "{} of {} callbacks failed across two upgrades:\n{}",
        tally.failures.len(),
        tally.failures.len() + tally.answered,
        tally.failures.join("\n")
    );
    // Enough callbacks that the accept queue was never empty around the upgrades.
    assert!(
        tally.answered > 1000,
        "only {} callbacks answered",
        tally.answered
    );
}

#[tokio::test]
async fn a_new_gateway_that_fails_to_start_leaves_the_running_one_untouched() {
    let scratch = Scratch::new();
    // The new gateway's default GATEWAY_MAX_BODY_BYTES (1 MiB) is above this server's
    // max_payload: it fails after connecting to NATS, the last step before it would take the
    // listening socket.
    let nats = NatsServer::start_with_config(scratch.path(), "max_payload: 4096\n").await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let nats_url = nats.url();
    let settings = [
        ("GATEWAY_LISTEN", listen.as_str()),
        ("GATEWAY_SHUTDOWN_DELAY_MS", "0"),
        ("NATS_URL", nats_url.as_str()),
    ];
    let mut running = Gateway::start(
        &nats.url(),
        &[settings.as_slice(), &[("GATEWAY_MAX_BODY_BYTES", "2048")]].concat(),
    )
    .await;
    let address = running.address();
    let load = Load::start(address, DEFAULT_BUDGET);
    let after_nats = Gateway::run_expecting_exit(&settings).await;
    assert_eq!(after_nats.code, Some(2), "{after_nats:?}");
    let bad_setting = Gateway::run_expecting_exit(
        &[settings.as_slice(), &[("GATEWAY_MAX_INFLIGHT", "0")]].concat(),
    )
    .await;
    assert_eq!(bad_setting.code, Some(2), "{bad_setting:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n"));
    assert!(running.is_running(), "{}", running.stderr_log().tail(20));
    assert!(
        !running.stderr_log().all().contains(HANDED_OVER),
        "{}",
        running.stderr_log().tail(20)
    );
    assert_eq!(http::get(address, "/readyz").await.status, 200);
    // It still hands its socket to a new gateway that does start.
    let new = Gateway::start(
        &nats.url(),
        &[settings.as_slice(), &[("GATEWAY_MAX_BODY_BYTES", "2048")]].concat(),
    )
    .await;
    assert!(
        logged(&new, TOOK_OVER).await,
        "{}",
        new.stderr_log().tail(20)
    );
    assert_eq!(running.wait_for_exit(EXIT_BOUND).await, Some(0));
}

#[tokio::test]
async fn past_the_inflight_bound_the_default_comes_at_once() {
    let mut settings = SHORT_BUDGET_SETTINGS.to_vec();
    settings.push(("GATEWAY_MAX_INFLIGHT", "2"));
    let stack = Stack::start(&settings).await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let address = stack.gateway.address();
    let first_two: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { http::send(address, &callback()).await }))
        .collect();
    // Let the first two be published and waiting.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let request = callback();
    let rest = join_all((0..4).map(|_| http::send(address, &request))).await;
    for response in rest {
        let response = response.expect("answered");
        assert_eq!(
            response.source(),
            Some(DecisionSource::Overload.as_str()),
            "{response}"
        );
        assert!(response.elapsed < AT_ONCE, "{response}");
    }
    for waiting in first_two {
        let response = waiting.await.expect("client task").expect("answered");
        assert_eq!(
            response.source(),
            Some(DecisionSource::Timeout.as_str()),
            "{response}"
        );
        assert!(response.elapsed <= SHORT_BUDGET + LATE_SLACK, "{response}");
    }
    // The bound counts callbacks in flight, not callbacks ever: room again now.
    let after = stack.send(&callback()).await;
    assert_eq!(after.source(), Some(DecisionSource::Timeout.as_str()));
}
