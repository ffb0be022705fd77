//! `openim-gateway healthcheck`, the container healthcheck of an image without a shell: it
//! reads `GATEWAY_LISTEN` as the gateway does, asks that gateway's `/readyz` (on loopback when
//! it listens on every interface) and exits 0 when it answers 200, 1 otherwise, never 2.

use std::time::{Duration, Instant};

use openim_gateway_tests::nats::free_port;
use openim_gateway_tests::{http, ExitReport, Gateway, NatsServer};

/// The subcommand's own bound (2 s) and the time to start a process on a loaded machine.
const HEALTHCHECK_BOUND: Duration = Duration::from_secs(5);

async fn healthcheck(listen: &str) -> ExitReport {
    Gateway::run_args_expecting_exit(&["healthcheck"], &[("GATEWAY_LISTEN", listen)]).await
}

fn assert_exit(report: &ExitReport, code: i32, what: &str) {
    assert!(!report.killed, "{what}: it kept running: {report:?}");
    assert_eq!(report.code, Some(code), "{what}: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_gateway_on_every_interface_is_healthy() {
    let nats = NatsServer::start().await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_LISTEN", "0.0.0.0:0")]).await;
    let port = gateway.address().port();
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(http::get(local, "/readyz").await.status, 200);
    // The operator's setting, as the container has it: asked on 127.0.0.1.
    let report = healthcheck(&format!("0.0.0.0:{port}")).await;
    assert_exit(&report, 0, "ready, listening on 0.0.0.0");
    let report = healthcheck(&format!("127.0.0.1:{port}")).await;
    assert_exit(&report, 0, "ready, listening on 127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_nats_is_not_healthy() {
    // Listening and answering, but /readyz is 503 while NATS is unreachable.
    let nats = NatsServer::not_started();
    let gateway = Gateway::start(&nats.url(), &[]).await;
    assert_eq!(http::get(gateway.address(), "/readyz").await.status, 503);
    let report = healthcheck(&gateway.address().to_string()).await;
    assert_exit(&report, 1, "not ready");
    assert!(report.stderr.contains("503"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_is_not_healthy() {
    let report = healthcheck(&format!("0.0.0.0:{}", free_port())).await;
    assert_exit(&report, 1, "nothing listens");
    assert!(report.stderr.contains("/readyz"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_is_not_healthy_within_the_bound() {
    // Accepts (the kernel's backlog does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let started = Instant::now();
    let report = healthcheck(&silent.local_addr().expect("address").to_string()).await;
    assert_exit(&report, 1, "silent listener");
    assert!(
        started.elapsed() < HEALTHCHECK_BOUND,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_is_unhealthy_not_a_usage_error() {
    let report = healthcheck("nope").await;
    assert_exit(&report, 1, "bad GATEWAY_LISTEN");
    assert!(report.stderr.contains("GATEWAY_LISTEN"), "{report:?}");
}
