//! Logging never holds up an answer: with its stderr a pipe nobody reads (a stuck log
//! shipper), the gateway goes on answering a stream of callbacks that each log a line (at
//! debug level), long after the pipe's buffer is full. And a condition that every callback
//! meets (no worker, a worker that never replies, an unknown command, a malformed request) is
//! warned about once, then counted once per interval, not once per callback.

use std::{process::Stdio, time::Duration};

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::{binaries, http, Behaviour, HttpRequest, NatsServer, Stack};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{AT_ONCE, SET_MEMBER, SHORT_BUDGET_SETTINGS};

/// How often the gateway reports a condition's count (its `REPORT_INTERVAL`).
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Each of these callbacks logs a debug line of about 200 bytes (nobody subscribes), so this
/// many write far more than a pipe's 64 KiB buffer.
const CALLBACKS: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_stderr_does_not_stop_the_answers() {
    let nats = NatsServer::start().await;
    let mut child = tokio::process::Command::new(binaries::gateway())
        .env("GATEWAY_LISTEN", "127.0.0.1:0")
        .env("NATS_URL", nats.url())
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the gateway binary runs");
    // Held open and never read: writes to it block once its buffer is full.
    let _stuck_stderr = child.stderr.take().expect("stderr is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let listening = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .expect("the gateway prints its address in time")
        .expect("stdout is readable")
        .expect("the gateway prints a line");
    let address = listening
        .trim_start_matches("openim-gateway listening on http://")
        .parse()
        .unwrap_or_else(|error| panic!("no address in {listening:?}: {error}"));

    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    let mut connection = http::HttpConnection::open(address)
        .await
        .expect("the gateway accepts a connection");
    // The first answers may come before the gateway's NATS connection is up.
    for index in 0..CALLBACKS {
        let response = tokio::time::timeout(AT_ONCE, connection.send(&request))
            .await
            .unwrap_or_else(|_| {
                panic!("callback #{index} was not answered within {AT_ONCE:?}: logging blocks")
            })
            .unwrap_or_else(|error| panic!("callback #{index}: {error}"));
        assert_eq!(response.status, 200, "callback #{index}");
        let source = response.source().unwrap_or_default();
        assert!(
            DecisionSource::from_name(source).is_some_and(DecisionSource::is_fallback),
            "callback #{index}: {source}"
        );
    }
}

#[tokio::test]
async fn a_condition_every_callback_meets_is_warned_about_once() {
    let stack = Stack::start(&[]).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    for _ in 0..40 {
        let response = stack.send(&request).await;
        assert_eq!(
            response.source(),
            Some(DecisionSource::NoResponders.as_str())
        );
    }
    let warnings: Vec<String> = stack
        .gateway
        .stderr_log()
        .lines()
        .into_iter()
        .filter(|line| line.contains("WARN") && line.contains("no worker subscribes"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "40 callbacks without a worker should warn once, then count:\n{}",
        warnings.join("\n")
    );
}

/// The gateway's WARN lines in `stack`'s stderr that contain `text`.
fn warnings(stack: &Stack, text: &str) -> Vec<String> {
    stack
        .gateway
        .stderr_log()
        .lines()
        .into_iter()
        .filter(|line| line.contains("WARN") && line.contains(text))
        .collect()
}

/// Waits (bounded) until `stack`'s stderr has a WARN line containing `text`.
async fn wait_for_warning(stack: &Stack, text: &str, bound: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        let found = warnings(stack, text);
        if !found.is_empty() || std::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn callbacks_for_an_unknown_command_are_warned_about_once_with_the_command() {
    const UNKNOWN: &str = "callbackBeforeSomethingNewCommand";
    let stack = Stack::start(&[]).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        UNKNOWN,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    for _ in 0..30 {
        let response = stack.send(&request).await;
        assert_eq!(response.status, 404, "{:?}", response.text());
    }
    // The refusals have been answered; give their log lines a moment to be written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warned = warnings(&stack, "does not know");
    assert_eq!(
        warned.len(),
        1,
        "30 callbacks for an unknown command should warn once, then count:\n{}",
        stack.gateway.stderr_log().tail(40)
    );
    assert!(
        warned[0].contains(UNKNOWN),
        "the command is named: {}",
        warned[0]
    );
}

#[tokio::test]
async fn malformed_requests_are_warned_about_once() {
    let stack = Stack::start(&[]).await;
    let request = HttpRequest::openim("/callbackExample", SET_MEMBER, b"not json".as_slice());
    for _ in 0..30 {
        let response = stack.send(&request).await;
        assert_eq!(response.status, 400, "{:?}", response.text());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let warned = warnings(&stack, "refused as malformed");
    assert_eq!(
        warned.len(),
        1,
        "30 malformed requests should warn once, then count:\n{}",
        stack.gateway.stderr_log().tail(40)
    );
    assert!(
        warned[0].contains("not_json"),
        "the reason is named: {}",
        warned[0]
    );
}

/// A worker that never replies: the first timeout is warned about at once, the rest are
/// counted, and the count comes in one line when the interval ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_warned_about_once_then_counted_once_per_interval() {
    const CALLBACKS: usize = 6;
    const TIMED_OUT: &str = "no worker reply before the deadline";
    let started = std::time::Instant::now();
    let stack = Stack::start(&SHORT_BUDGET_SETTINGS).await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    let answers = futures::future::join_all(
        (0..CALLBACKS).map(|_| http::send(stack.gateway.address(), &request)),
    )
    .await;
    for answer in answers {
        let response = answer.expect("the gateway answers");
        assert_eq!(response.source(), Some(DecisionSource::Timeout.as_str()));
    }
    assert!(
        started.elapsed() < REPORT_INTERVAL / 2,
        "the callbacks took too long to fit in the first interval: {:?}",
        started.elapsed()
    );
    // The log thread writes the warning a moment after the answer: wait for it (bounded).
    let first = wait_for_warning(&stack, TIMED_OUT, Duration::from_secs(2)).await;
    assert_eq!(
        first.len(),
        1,
        "{CALLBACKS} timeouts before the interval ends should warn once:\n{}",
        stack.gateway.stderr_log().tail(40)
    );
    let count = format!("{CALLBACKS} occurrences in the last interval");
    let counted = wait_for_warning(&stack, &count, REPORT_INTERVAL + Duration::from_secs(5)).await;
    assert_eq!(
        counted.len(),
        1,
        "one line with the count after the interval:\n{}",
        stack.gateway.stderr_log().tail(40)
    );
    assert!(counted[0].contains(TIMED_OUT), "{}", counted[0]);
    assert_eq!(warnings(&stack, TIMED_OUT).len(), 2);
}

/// With `GATEWAY_LOG_FORMAT=json` every stderr line is one JSON object, and at debug each
/// answered callback has a line with its request id, command, decision source and latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line_and_each_callback_line_carries_its_fields() {
    let mut stack = openim_gateway_tests::Stack::start(&[
        ("GATEWAY_LOG_FORMAT", "json"),
        ("RUST_LOG", "debug"),
    ])
    .await;
    stack.add_example_worker(&[]).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    let response = http::send(stack.gateway.address(), &request)
        .await
        .expect("the gateway answers");
    let request_id = response.request_id().expect("an X-Request-Id").to_owned();
    let source = response.source().expect("an X-Decision-Source").to_owned();
    let log = stack.gateway.stderr_log();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log.all().contains(&request_id) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = log.lines();
    let objects: Vec<serde_json::Value> = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .filter(serde_json::Value::is_object)
                .unwrap_or_else(|| panic!("not a JSON object: {line:?}"))
        })
        .collect();
    assert!(objects.len() > 3, "{lines:?}");
    let answered: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|object| object["fields"]["request_id"] == request_id.as_str())
        .collect();
    assert_eq!(answered.len(), 1, "{lines:?}");
    let fields = &answered[0]["fields"];
    assert_eq!(fields["command"], SET_MEMBER, "{fields}");
    assert_eq!(fields["source"], source.as_str(), "{fields}");
    assert!(fields["latency_us"].is_u64(), "{fields}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_warnings_leave_empty_fields_out() {
    // An unknown command has no catalog command, and no responders has no detail: neither
    // is written as an empty field.
    let stack = Stack::start(&[("GATEWAY_LOG_FORMAT", "json")]).await;
    let unknown = HttpRequest::openim(
        "/callbackExample",
        "callbackBeforeSomethingNewCommand",
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    assert_eq!(stack.send(&unknown).await.status, 404);
    let member = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY,
    );
    assert_eq!(
        stack.send(&member).await.source(),
        Some(DecisionSource::NoResponders.as_str())
    );
    for text in ["does not know", "no worker subscribes"] {
        assert!(
            !wait_for_warning(&stack, text, Duration::from_secs(5))
                .await
                .is_empty(),
            "{text}: {}",
            stack.gateway.stderr_log().all()
        );
    }
    let objects: Vec<serde_json::Value> = stack
        .gateway
        .stderr_log()
        .lines()
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    for object in &objects {
        let fields = object["fields"].as_object().expect("fields");
        for (key, value) in fields {
            assert_ne!(value, "", "empty field {key:?} in {object}");
        }
    }
    let warning = |text: &str| {
        objects
            .iter()
            .find(|object| {
                object["fields"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(text))
            })
            .unwrap_or_else(|| panic!("no {text:?} line"))
            .clone()
    };
    let unknown = warning("does not know");
    assert!(unknown["fields"].get("command").is_none(), "{unknown}");
    assert!(
        unknown["fields"]["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("callbackBeforeSomethingNewCommand")),
        "{unknown}"
    );
    let nobody = warning("no worker subscribes");
    assert_eq!(nobody["fields"]["command"], SET_MEMBER, "{nobody}");
    assert!(nobody["fields"].get("detail").is_none(), "{nobody}");
}
