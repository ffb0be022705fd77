//! Idle kept-alive connections: closed once they have carried no request for
//! `GATEWAY_IDLE_TIMEOUT_MS`, never while they are used; and a connection that idles long
//! enough for the gateway to drop its HTTP state and keep only its socket (a quarter of a
//! second) is answered again on the same socket.

use std::time::{Duration, Instant};

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::{Behaviour, HttpConnection, Stack};

use crate::lifecycle::callback;

const ALLOW: &str = r#"{"actionCode":0,"nextCode":0}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_used_one_is_not() {
    let idle_timeout = Duration::from_millis(2000);
    let stack = Stack::start(&[("GATEWAY_IDLE_TIMEOUT_MS", "2000")]).await;
    let _worker = stack.scripted(Behaviour::reply(ALLOW)).await;
    let address = stack.gateway.address();
    let mut idle = HttpConnection::open(address).await.expect("connects");
    let mut used = HttpConnection::open(address).await.expect("connects");
    let first = idle.send(&callback()).await.expect("answered");
    assert_eq!(first.source(), Some(DecisionSource::Worker.as_str()));
    let answered = Instant::now();
    // A callback every half of the timeout, for twice the timeout: never idle long enough.
    let using = tokio::spawn(async move {
        for round in 0..8 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let answer = used
                .send(&callback())
                .await
                .unwrap_or_else(|error| panic!("round {round}: the used connection: {error}"));
            assert_eq!(answer.source(), Some(DecisionSource::Worker.as_str()));
        }
    });
    let closed = idle.wait_closed(Duration::from_secs(15)).await;
    let idled = answered.elapsed();
    assert!(closed.is_ok(), "{closed:?}");
    assert!(
        idled >= idle_timeout - Duration::from_millis(100)
            && idled < idle_timeout + Duration::from_secs(3),
        "closed after {idled:?} idle, for a timeout of {idle_timeout:?}"
    );
    using
        .await
        .expect("the used connection was answered every time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_idles_past_a_second_is_answered_again() {
    let stack = Stack::start(&[]).await;
    let _worker = stack.scripted(Behaviour::reply(ALLOW)).await;
    let mut connection = HttpConnection::open(stack.gateway.address())
        .await
        .expect("connects");
    for round in 0..3 {
        let answer = connection
            .send(&callback())
            .await
            .unwrap_or_else(|error| panic!("round {round}: {error}"));
        assert_eq!(
            answer.source(),
            Some(DecisionSource::Worker.as_str()),
            "round {round}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
}
