//! Start, stop, upgrade and overload, the way a deployment meets them: the first callback
//! after a start is decided by a worker, SIGTERM keeps answering through the shutdown delay
//! and ends with exit 0 whatever clients do, a new gateway takes the port while the old one
//! drains, and past the in-flight bound the default comes at once.

use std::time::{Duration, Instant};

use futures::future::join_all;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::nats::free_port;
use openim_gateway_tests::{
    http, Behaviour, Gateway, HttpConnection, HttpRequest, NatsServer, ScriptedWorker, Stack,
    ALL_CALLBACKS,
};

use crate::{AT_ONCE, LATE_SLACK, SET_MEMBER, SHORT_BUDGET, SHORT_BUDGET_SETTINGS};

const ALLOW: &str = r#"{"actionCode":0,"nextCode":0}"#;
/// How long a gateway may take to exit once it should.
const EXIT_BOUND: Duration = Duration::from_secs(10);

fn callback() -> HttpRequest {
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

#[tokio::test]
async fn a_new_gateway_takes_the_port_while_the_old_one_drains() {
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let settings = [
        ("GATEWAY_LISTEN", listen.as_str()),
        ("GATEWAY_SHUTDOWN_DELAY_MS", "1000"),
    ];
    let mut old = Gateway::start(&nats.url(), &settings).await;
    let address = old.address();
    // OpenIM keeps its connections alive: one of them is in use when the upgrade starts.
    let mut kept_alive = HttpConnection::open(address).await.expect("connects");
    assert_eq!(
        kept_alive.send(&callback()).await.expect("answered").status,
        200
    );

    let new = Gateway::start(&nats.url(), &settings).await;
    assert_eq!(new.address(), address, "the new gateway took another port");
    old.terminate();
    let mut failures = Vec::new();
    let mut answered = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        // A client like OpenIM's: reuse the connection while the server keeps it, open a
        // new one when the server said `Connection: close`.
        match kept_alive.send(&callback()).await {
            Ok(response) if response.status == 200 => {
                answered += 1;
                if response.header("connection") == Some("close") {
                    kept_alive = match HttpConnection::open(address).await {
                        Ok(connection) => connection,
                        Err(error) => {
                            failures.push(format!("reconnecting: {error}"));
                            break;
                        }
                    };
                }
            }
            Ok(response) => failures.push(format!("{response}")),
            Err(error) => failures.push(error),
        }
        match http::send(address, &callback()).await {
            Ok(response) if response.status == 200 => answered += 1,
            Ok(response) => failures.push(format!("{response}")),
            Err(error) => failures.push(format!("fresh connection: {error}")),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} callbacks failed during the upgrade:\n{}\nold gateway:\n{}",
        failures.len(),
        failures.len() + answered,
        failures.join("\n"),
        old.stderr_log().tail(20)
    );
    assert_eq!(old.wait_for_exit(EXIT_BOUND).await, Some(0));
    let after = http::send(address, &callback()).await.expect("answered");
    assert_eq!(after.source(), Some(DecisionSource::Worker.as_str()));
    drop(new);
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
