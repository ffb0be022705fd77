//! Connections and sizes as a hostile or careless client meets them: a request that stalls
//! in its headers is cut off while idle kept-alive connections stay, the connection bound
//! makes room for a fresh callback by closing the connection idle the longest (below the
//! open-file limit, where accept would fail unseen; that limit is raised from soft to hard
//! at start), and a body the NATS server cannot carry is refused like any body that is too
//! large.

use std::time::{Duration, Instant};

use openim_gateway_proto::{headers, DecisionSource};
use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{
    http, metrics, Behaviour, Gateway, HttpConnection, HttpRequest, NatsServer, ScriptedWorker,
    ALL_CALLBACKS,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{AT_ONCE, SET_MEMBER, SHORT_BUDGET_SETTINGS};

const ALLOW: &str = r#"{"actionCode":0,"nextCode":0}"#;

fn callback() -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY)
}

/// A seed-command body of about `size` bytes (a long nickname).
fn body_of(size: usize) -> Vec<u8> {
    let nickname = "n".repeat(size.saturating_sub(150));
    format!(
        r#"{{"callbackCommand":"{SET_MEMBER}","groupID":"3316849202","userID":"5427181639","nickName":"{nickname}","faceURL":null,"roleLevel":null,"ex":null}}"#
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_stalled_in_its_headers_is_cut_off_while_idle_connections_stay() {
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    // A 600 ms callback timeout: headers get as long as OpenIM waits.
    let gateway = Gateway::start(&nats.url(), &SHORT_BUDGET_SETTINGS).await;
    let address = gateway.address();

    let mut used_then_idle = HttpConnection::open(address).await.expect("connects");
    assert_eq!(
        used_then_idle
            .send(&callback())
            .await
            .expect("answered")
            .status,
        200
    );
    let mut never_used = HttpConnection::open(address).await.expect("connects");
    let mut stalled = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stalled
        .write_all(b"POST /callbackExample/callbackBeforeSetGroupMemberInfoCommand HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half the headers are written");

    // Well past the header timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut buffer = [0_u8; 64];
    let read = tokio::time::timeout(AT_ONCE, stalled.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the stalled request's connection is still open: {read:?}\n{}",
        gateway.stderr_log().tail(20)
    );
    for (name, connection) in [
        ("used then idle", &mut used_then_idle),
        ("never used", &mut never_used),
    ] {
        let response = connection
            .send(&callback())
            .await
            .unwrap_or_else(|error| panic!("the {name} connection was closed while idle: {error}"));
        assert_eq!(
            response.source(),
            Some(DecisionSource::Worker.as_str()),
            "{name}: {response}"
        );
    }
}

#[tokio::test]
async fn at_the_connection_bound_the_longest_idle_connection_makes_room() {
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    // 200 files: the gateway keeps 64 for itself and serves at most 136 connections.
    let gateway = Gateway::start_with_file_limit(&nats.url(), &[], 200).await;
    let address = gateway.address();
    let mut idle = Vec::new();
    for index in 0..260 {
        let mut connection = HttpConnection::open(address)
            .await
            .unwrap_or_else(|error| panic!("connection #{index}: {error}"));
        if index % 2 == 0 {
            // Some used once, as OpenIM's pool does; the rest never.
            let response = tokio::time::timeout(AT_ONCE, connection.send(&callback()))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "connection #{index} was not served within {AT_ONCE:?}\n{}",
                        gateway.stderr_log().tail(20)
                    )
                })
                .unwrap_or_else(|error| panic!("connection #{index}: {error}"));
            assert_eq!(response.status, 200, "connection #{index}: {response}");
        }
        idle.push(connection);
    }
    let response = tokio::time::timeout(AT_ONCE, http::send(address, &callback()))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a callback on a fresh connection was not answered within {AT_ONCE:?} with {} idle connections open\n{}",
                idle.len(),
                gateway.stderr_log().tail(20)
            )
        })
        .expect("answered");
    assert_eq!(
        response.source(),
        Some(DecisionSource::Worker.as_str()),
        "{response}"
    );
    // An operator sees how close the bound is, and each idle connection closed for room.
    let samples = metrics::parse(&http::get(address, "/metrics").await.text());
    let open = metrics::sum(&samples, "openim_gateway_open_connections", &[]);
    assert!(
        (100.0..=137.0).contains(&open),
        "open_connections {open} with 136 allowed"
    );
    let evicted = metrics::sum(&samples, "openim_gateway_connections_evicted_total", &[]);
    assert!(
        evicted >= (260 - 136) as f64,
        "connections_evicted_total {evicted}"
    );
    drop(idle);
}

#[tokio::test]
async fn a_body_the_nats_server_cannot_carry_is_refused_like_one_too_large() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(scratch.path(), "max_payload: 4096\n").await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_MAX_BODY_BYTES", "4096")]).await;
    let address = gateway.address();
    let small = http::send(
        address,
        &HttpRequest::openim("/callbackExample", SET_MEMBER, body_of(1000)),
    )
    .await
    .expect("answered");
    assert_eq!(
        small.source(),
        Some(DecisionSource::Worker.as_str()),
        "{small}"
    );
    // Within GATEWAY_MAX_BODY_BYTES, but not within max_payload with the protocol's headers.
    for (name, request) in [
        (
            "before",
            HttpRequest::openim("/callbackExample", SET_MEMBER, body_of(3900)),
        ),
        (
            "after",
            HttpRequest::openim(
                "/callbackExample",
                "callbackAfterSetGroupMemberInfoCommand",
                {
                    let mut body = AFTER_SET_MEMBER.to_vec();
                    body.truncate(body.len() - 2);
                    body.extend(format!(",\"pad\":\"{}\"}}", "p".repeat(3600)).bytes());
                    body
                },
            ),
        ),
    ] {
        let response = http::send(address, &request).await.expect("answered");
        assert_eq!(response.status, 413, "{name}: {response}");
        assert_eq!(
            response.source(),
            Some(DecisionSource::BadRequest.as_str()),
            "{name}: {response}"
        );
    }
}

#[tokio::test]
async fn a_body_limit_above_the_nats_max_payload_stops_the_start() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(scratch.path(), "max_payload: 4096\n").await;
    let url = nats.url();
    let report = Gateway::run_expecting_exit(&[("NATS_URL", url.as_str())]).await;
    assert_eq!(report.code, Some(2), "{report:?}");
    let line = report
        .stderr
        .lines()
        .find(|line| line.contains("GATEWAY_MAX_BODY_BYTES"))
        .unwrap_or_else(|| panic!("no line names the setting: {report:?}"));
    assert!(line.contains("max_payload (4096)"), "{line}");
}

/// When NATS is not reachable at start, the same check runs once it connects, and warns
/// (the gateway already serves by then).
#[tokio::test]
async fn a_body_limit_above_the_max_payload_of_a_nats_that_comes_late_is_warned_about() {
    let scratch = Scratch::new();
    let mut nats = NatsServer::not_started_with_config(scratch.path(), "max_payload: 4096\n");
    let gateway = Gateway::start(&nats.url(), &[]).await;
    nats.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let warning = loop {
        let found =
            gateway.stderr_log().lines().into_iter().find(|line| {
                line.contains("WARN") && line.contains("GATEWAY_MAX_BODY_BYTES is above")
            });
        if found.is_some() || std::time::Instant::now() >= deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let warning = warning.unwrap_or_else(|| {
        panic!(
            "no warning once nats connected:\n{}",
            gateway.stderr_log().tail(20)
        )
    });
    assert!(warning.contains("max_payload=4096"), "{warning}");
}

/// Writes `wire` on a fresh connection and reads until the server closes it.
async fn raw_exchange(address: std::net::SocketAddr, wire: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream.write_all(wire).await.expect("written");
    let mut answer = Vec::new();
    tokio::time::timeout(AT_ONCE, stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes in time")
        .expect("readable");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_hyper_cannot_parse_still_gets_a_valid_openim_answer() {
    let nats = NatsServer::start().await;
    let gateway = Gateway::start(&nats.url(), &[]).await;
    let many_headers: String = (0..150).map(|n| format!("X-Extra-{n}: {n}\r\n")).collect();
    let body = SET_MEMBER_ROLE_ONLY;
    let too_many = format!(
        "POST /callbackExample/{SET_MEMBER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{many_headers}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let mut too_many = too_many.into_bytes();
    too_many.extend_from_slice(body);
    for (name, wire, status) in [
        ("too many headers", too_many, 431),
        ("malformed", b"GARBAGE\r\n\r\n".to_vec(), 400),
    ] {
        let answer = raw_exchange(gateway.address(), &wire).await;
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{name}: no header end in {answer:?}"));
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {head}"
        );
        let source_line = format!(
            "{}: {}",
            headers::DECISION_SOURCE,
            DecisionSource::BadRequest.as_str()
        );
        assert!(
            head.to_ascii_lowercase()
                .contains(&source_line.to_ascii_lowercase()),
            "{name}: {head}"
        );
        let request_id = head
            .lines()
            .find_map(|line| {
                let (header, value) = line.split_once(':')?;
                header
                    .eq_ignore_ascii_case(headers::REQUEST_ID)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("{name}: no {} in {head}", headers::REQUEST_ID));
        assert!(
            uuid::Uuid::parse_str(&request_id).is_ok(),
            "{name}: {request_id:?}"
        );
        let mut answer: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|error| panic!("{name}: the body is not JSON ({error}): {body:?}"));
        let error = answer
            .as_object_mut()
            .and_then(|object| object.remove("error"))
            .unwrap_or_else(|| panic!("{name}: no error field in {body}"));
        assert!(error
            .as_str()
            .is_some_and(|text| text.contains(&status.to_string())));
        assert_eq!(answer, openim_gateway_tests::allow(), "{name}");
    }
}

/// Started with a low soft open-file limit under a higher hard one (a common default: 1024
/// soft), the gateway raises the soft limit to the hard one, and serves more connections at
/// once than the soft limit would have let it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
    const SOFT: u64 = 64;
    const HARD: u64 = 4096;
    const CONNECTIONS: usize = 300;
    let nats = NatsServer::start().await;
    let _worker = ScriptedWorker::start(&nats.url(), ALL_CALLBACKS, Behaviour::reply(ALLOW)).await;
    let gateway = Gateway::start_with_file_limits(&nats.url(), &[], SOFT, HARD).await;
    assert_eq!(
        gateway.file_limits(),
        (HARD, HARD),
        "the soft limit was not raised:\n{}",
        gateway.stderr_log().tail(20)
    );
    let mut connections = Vec::with_capacity(CONNECTIONS);
    for index in 0..CONNECTIONS {
        let connection = HttpConnection::open(gateway.address())
            .await
            .unwrap_or_else(|error| panic!("connection #{index}: {error}"));
        connections.push(connection);
    }
    // Every connection open at once, each with a callback in it.
    let request = callback();
    let answers = futures::future::join_all(
        connections
            .iter_mut()
            .map(|connection| connection.send(&request)),
    )
    .await;
    let failures: Vec<String> = answers
        .into_iter()
        .enumerate()
        .filter_map(|(index, answer)| match answer {
            Ok(response) if response.source() == Some(DecisionSource::Worker.as_str()) => None,
            Ok(response) => Some(format!("#{index}: {response}")),
            Err(error) => Some(format!("#{index}: {error}")),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {CONNECTIONS} connections held at once were not answered by the worker:\n{}\n{}",
        failures.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        gateway.stderr_log().tail(20)
    );
}

#[tokio::test]
async fn accept_errors_at_the_open_file_limit_are_logged_once_and_counted() {
    let nats = NatsServer::start().await;
    // So few files that a burst of connections runs the process out of them before the
    // connection bound can make room.
    let gateway = Gateway::start_with_file_limit(&nats.url(), &[], 24).await;
    // The connections wait in the listen backlog while the gateway is stopped, so that it
    // meets them all at once, however busy the machine is.
    openim_gateway_tests::process::signal(gateway.pid(), "STOP");
    let mut burst = Vec::new();
    for _ in 0..60 {
        if let Ok(stream) = tokio::net::TcpStream::connect(gateway.address()).await {
            burst.push(stream);
        }
    }
    openim_gateway_tests::process::signal(gateway.pid(), "CONT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(burst);
    let warnings = || -> Vec<String> {
        gateway
            .stderr_log()
            .lines()
            .into_iter()
            .filter(|line| {
                line.contains("WARN") && line.contains("a new connection could not be served")
            })
            .collect()
    };
    // The log has a thread of its own: on a busy machine its line may come a while later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while warnings().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warnings = warnings();
    assert_eq!(
        warnings.len(),
        1,
        "{warnings:#?}\n{}",
        gateway.stderr_log().tail(20)
    );
    assert!(
        warnings[0].contains("Too many open files"),
        "{}",
        warnings[0]
    );
    let metrics = http::get(gateway.address(), "/metrics").await.text();
    let accept_errors: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("openim_gateway_accept_errors_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accept_errors_total in:\n{metrics}"));
    assert!(accept_errors > 0.0, "{metrics}");
}
