//! Who may take the listening socket: a new gateway takes it from a running one only once
//! NATS has logged it in and answered a request (a wrong port or a rotated password leaves
//! the running one serving, and the new one exits naming the server and the cause); one
//! gateway per address (two started at once end with one listener); and
//! `check-config --connect` tries the login and a request the same way.

use std::time::Duration;

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::nats::free_port;
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{http, Gateway, NatsServer, Worker};

use crate::lifecycle::{logged, Load, EXIT_BOUND, HANDED_OVER, TOOK_OVER};
use crate::DEFAULT_BUDGET;

/// A NATS server with the gateway's user and the worker's.
const TWO_USERS: &str = "authorization { users: [ { user: gateway, password: right-one }, { user: worker, password: w0rker } ] }\n";

/// The number of listening TCP sockets on 127.0.0.1:`port` (one line each in
/// `/proc/net/tcp`, however many processes hold a descriptor of it).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_that_nats_refuses_does_not_take_the_socket_and_says_why() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(scratch.path(), TWO_USERS).await;
    let _worker = Worker::start(&nats.url_with("nats", "worker:w0rker@"), &[]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let good_url = nats.url_with("nats", "gateway:right-one@");
    let settings = [
        ("GATEWAY_LISTEN", listen.as_str()),
        ("GATEWAY_SHUTDOWN_DELAY_MS", "500"),
    ];
    let mut running = Gateway::start(&good_url, &settings).await;
    let address = running.address();
    // Callbacks all along: each must get the worker's decision from the running gateway.
    let load = Load::start(address, DEFAULT_BUDGET);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let nobody = free_port();
    let attempts = [
        (
            "a rotated password",
            nats.url_with("nats", "gateway:Wr0ngPassw0rd@"),
            format!("127.0.0.1:{}", nats.port()),
            "authentication failed",
        ),
        (
            "a wrong port",
            format!("nats://gateway:right-one@127.0.0.1:{nobody}"),
            format!("127.0.0.1:{nobody}"),
            "connection refused",
        ),
    ];
    for (what, url, server, cause) in attempts {
        let report = Gateway::run_expecting_exit(
            &[settings.as_slice(), &[("NATS_URL", url.as_str())]].concat(),
        )
        .await;
        assert!(
            !report.killed && report.code.is_some_and(|code| code != 0),
            "{what}: the new gateway did not exit non-zero: {report:?}"
        );
        assert!(
            !report.stdout.contains("listening on"),
            "{what}: it listened: {report:?}"
        );
        let line = report
            .stderr
            .lines()
            .find(|line| line.contains("not taking over"))
            .unwrap_or_else(|| panic!("{what}: no line says it did not take over: {report:?}"));
        assert!(
            line.contains(&server) && line.contains(cause),
            "{what}: the line does not name {server} and {cause:?}: {line}"
        );
        assert!(
            !line.contains("Wr0ngPassw0rd"),
            "the password is shown: {line}"
        );
        assert!(running.is_running(), "{}", running.stderr_log().tail(20));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tally = load.stop().await;
    assert!(
        tally.failures.is_empty(),
        "{} of {} callbacks failed or lost the worker's decision:\n{}",
        tally.failures.len(),
        tally.failures.len() + tally.answered,
        tally.failures.join("\n")
    );
    assert!(tally.answered > 100, "only {} answered", tally.answered);
    assert!(
        !running.stderr_log().all().contains(HANDED_OVER),
        "{}",
        running.stderr_log().tail(20)
    );
    assert_eq!(listening_sockets(address.port()), 1);
    // A new gateway with the right password still takes over.
    let new = Gateway::start(&good_url, &settings).await;
    assert!(
        logged(&new, TOOK_OVER).await,
        "{}",
        new.stderr_log().tail(20)
    );
    assert_eq!(running.wait_for_exit(EXIT_BOUND).await, Some(0));
    let after = http::send(address, &crate::lifecycle::callback())
        .await
        .expect("answered");
    assert_eq!(after.source(), Some(DecisionSource::Worker.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_started_at_once_leave_one_listener() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(scratch.path(), TWO_USERS).await;
    let _worker = Worker::start(&nats.url_with("nats", "worker:w0rker@"), &[]).await;
    let url = nats.url_with("nats", "gateway:right-one@");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let settings = [
        ("GATEWAY_LISTEN", listen.as_str()),
        ("GATEWAY_SHUTDOWN_DELAY_MS", "300"),
    ];
    let mut survivors = Vec::new();
    for round in 0..3 {
        let (mut first, mut second) = tokio::join!(
            Gateway::start(&url, &settings),
            Gateway::start(&url, &settings)
        );
        // One of the two took the socket from the other, which drains and exits by itself.
        let until = std::time::Instant::now() + EXIT_BOUND;
        let (mut gone, mut stayed) = loop {
            if !first.is_running() {
                break (first, second);
            }
            if !second.is_running() {
                break (second, first);
            }
            assert!(
                std::time::Instant::now() < until,
                "round {round}: both still run\nfirst:\n{}\nsecond:\n{}",
                first.stderr_log().tail(20),
                second.stderr_log().tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            gone.wait_for_exit(EXIT_BOUND).await,
            Some(0),
            "round {round}\n{}",
            gone.stderr_log().tail(20)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            stayed.is_running(),
            "round {round}: neither runs\n{}",
            stayed.stderr_log().tail(20)
        );
        assert!(
            logged(&gone, HANDED_OVER).await,
            "round {round}\n{}",
            gone.stderr_log().tail(20)
        );
        assert_eq!(
            listening_sockets(port),
            1,
            "round {round}: listeners on {listen}"
        );
        let answer = http::send(stayed.address(), &crate::lifecycle::callback())
            .await
            .expect("answered");
        assert_eq!(answer.source(), Some(DecisionSource::Worker.as_str()));
        survivors.push(stayed);
        // The survivor of the round before was taken over by this round's first starter,
        // or it took over from it: either way only this round's survivor listens.
        for (earlier, survivor) in survivors.iter_mut().enumerate() {
            if earlier < round {
                assert_eq!(
                    survivor.wait_for_exit(EXIT_BOUND).await,
                    Some(0),
                    "round {round}: the gateway of round {earlier} is still running"
                );
            }
        }
    }
    assert_eq!(listening_sockets(port), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_connect_logs_in_and_sends_a_request() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(scratch.path(), TWO_USERS).await;
    let nobody = free_port();
    let check = |url: String| async move {
        Gateway::run_args_expecting_exit(&["check-config", "--connect"], &[("NATS_URL", &url)])
            .await
    };
    let good = check(nats.url_with("nats", "gateway:right-one@")).await;
    assert_eq!(good.code, Some(0), "{good:?}");
    assert!(good.stdout.contains("request answered"), "{good:?}");
    let wrong_password = check(nats.url_with("nats", "gateway:Wr0ngPassw0rd@")).await;
    assert_eq!(wrong_password.code, Some(1), "{wrong_password:?}");
    let server = format!("127.0.0.1:{}", nats.port());
    assert!(
        wrong_password
            .stderr
            .lines()
            .any(|line| line.contains(&server) && line.contains("authentication failed")),
        "{wrong_password:?}"
    );
    assert!(!wrong_password.stderr.contains("Wr0ngPassw0rd"));
    let wrong_port = check(format!("nats://gateway:right-one@127.0.0.1:{nobody}")).await;
    assert_eq!(wrong_port.code, Some(1), "{wrong_port:?}");
    assert!(
        wrong_port
            .stderr
            .contains(&format!("127.0.0.1:{nobody}: connection refused")),
        "{wrong_port:?}"
    );
    // Without --connect, the settings alone are checked, as before.
    let offline =
        Gateway::run_args_expecting_exit(&["check-config"], &[("NATS_URL", "nats://127.0.0.1:1")])
            .await;
    assert_eq!(offline.code, Some(0), "{offline:?}");
}
