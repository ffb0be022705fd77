//! `GATEWAY_OPENIM_WEBHOOKS`: OpenIM's own `webhooks.yml` gives each callback its budget. A
//! command the file names with `timeout: 1` is answered within that second, less the margin,
//! while a command it does not name keeps `GATEWAY_CALLBACK_TIMEOUT_MS`; the start logs each
//! enabled callback with its budget and warns about a `url` with a trailing slash.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use openim_gateway_tests::fixtures::{SEND_SINGLE_MSG, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{Behaviour, Gateway, HttpRequest, ScriptedWorker, Stack};

use crate::after_stream::{jetstream_server, STREAM};
use crate::{answered_by_the_budget, LATE_SLACK, SET_MEMBER};

const WEBHOOKS_YML: &str = "\
url: http://127.0.0.1:10006/callbackExample/
beforeSetGroupMemberInfo:
  enable: true
  timeout: 1
  failedContinue: true
beforeSendSingleMsg:
  enable: false
  timeout: 5
  failedContinue: true
  deniedTypes: []
";

/// How long the gateway took to answer `request` (every worker hangs: the budget decides).
async fn answered_after(stack: &Stack, request: &HttpRequest) -> Duration {
    answered_by_the_budget(stack, request).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_named_command_gets_its_own_timeout_less_the_margin() {
    let scratch = Scratch::new();
    let path = scratch.write("webhooks.yml", WEBHOOKS_YML);
    let stack = Stack::start(&[
        ("GATEWAY_OPENIM_WEBHOOKS", &path),
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "2500"),
        ("GATEWAY_SAFETY_MARGIN_MS", "250"),
    ])
    .await;
    let _hung = stack.scripted(Behaviour::Hang).await;

    // timeout: 1 less the 250 ms margin: 750 ms, not the global 2250.
    let named = answered_after(
        &stack,
        &HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY),
    )
    .await;
    assert!(
        named >= Duration::from_millis(700) && named < Duration::from_millis(750) + LATE_SLACK,
        "answered after {named:?}, expected about 750 ms"
    );
    // Named with timeout: 5 (disabled in the file, still OpenIM's timeout when enabled there).
    let five = answered_after(
        &stack,
        &HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeSendSingleMsgCommand",
            SEND_SINGLE_MSG,
        ),
    )
    .await;
    assert!(
        five >= Duration::from_millis(4700),
        "answered after {five:?}, expected about 4750 ms"
    );

    let log = stack.gateway.stderr_log().all();
    let enabled: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("callback enabled in OpenIM's webhooks.yml"))
        .collect();
    assert_eq!(enabled.len(), 1, "{log}");
    assert!(
        enabled[0].contains(SET_MEMBER) && enabled[0].contains("budget_ms=750"),
        "{}",
        enabled[0]
    );
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("ends with a slash")),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_the_file_does_not_name_keeps_the_global_timeout() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "webhooks.yml",
        "url: http://127.0.0.1:10006/callbackExample\nbeforeAddFriend:\n  enable: true\n  timeout: 1\n",
    );
    let stack = Stack::start(&[
        ("GATEWAY_OPENIM_WEBHOOKS", &path),
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "1600"),
        ("GATEWAY_SAFETY_MARGIN_MS", "100"),
    ])
    .await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let took = answered_after(
        &stack,
        &HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY),
    )
    .await;
    assert!(
        took >= Duration::from_millis(1450) && took < Duration::from_millis(1500) + LATE_SLACK,
        "answered after {took:?}, expected about 1500 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_webhooks_file_stops_the_start_naming_it() {
    let scratch = Scratch::new();
    let not_yaml = scratch.write("not.yml", "beforeSendSingleMsg:\n  timeout: soon\n");
    let one_second = scratch.write(
        "short.yml",
        "beforeAddFriend:\n  enable: true\n  timeout: 1\n",
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("GATEWAY_OPENIM_WEBHOOKS", "/nonexistent/webhooks.yml")],
            "/nonexistent/webhooks.yml",
        ),
        (&[("GATEWAY_OPENIM_WEBHOOKS", &not_yaml)], "webhooks.yml"),
        (
            &[
                ("GATEWAY_OPENIM_WEBHOOKS", &one_second),
                ("GATEWAY_CALLBACK_TIMEOUT_MS", "5000"),
                ("GATEWAY_SAFETY_MARGIN_MS", "1000"),
            ],
            "beforeAddFriend",
        ),
    ];
    for (settings, shown) in cases {
        let report = Gateway::run_expecting_exit(settings).await;
        assert_eq!(report.code, Some(2), "{settings:?}: {report:?}");
        let lines: Vec<&str> = report.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{report:?}");
        assert!(
            lines[0].contains("GATEWAY_OPENIM_WEBHOOKS=") && lines[0].contains(shown),
            "{}",
            lines[0]
        );
    }
}

#[tokio::test]
async fn enabled_callbacks_no_worker_serves_are_named_at_start() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "webhooks.yml",
        "\
url: http://127.0.0.1:10006/callbackExample
beforeSetGroupMemberInfo:
  enable: true
  timeout: 5
beforeSendSingleMsg:
  enable: true
  timeout: 5
afterSetGroupMemberInfo:
  enable: true
  timeout: 5
beforeAddFriend:
  enable: false
  timeout: 5
",
    );
    let nats = openim_gateway_tests::NatsServer::start().await;
    // A worker for the seed command only, started before the gateway.
    let worker = ScriptedWorker::start(
        &nats.url(),
        &format!("openim.callback.{SET_MEMBER}"),
        Behaviour::Hang,
    )
    .await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_OPENIM_WEBHOOKS", &path)]).await;
    let unserved = |command: &str| {
        gateway.stderr_log().lines().into_iter().any(|line| {
            line.contains("WARN") && line.contains("no worker serves it") && line.contains(command)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(unserved("callbackBeforeSendSingleMsgCommand")
        && unserved("callbackAfterSetGroupMemberInfoCommand"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gateway.stderr_log().tail(40);
    assert!(unserved("callbackBeforeSendSingleMsgCommand"), "{log}");
    assert!(unserved("callbackAfterSetGroupMemberInfoCommand"), "{log}");
    assert!(
        !unserved(SET_MEMBER),
        "the served command was named:\n{log}"
    );
    assert!(
        !unserved("callbackBeforeAddFriendCommand"),
        "a disabled callback was probed:\n{log}"
    );
    // The worker saw the probe: an empty body, marked, its deadline already past.
    let probes = worker.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(probes.len(), 1, "{probes:?}");
    assert!(probes[0].payload.is_empty());
    assert!(
        probes[0]
            .headers
            .iter()
            .any(|(name, value)| name == "X-Callback-Probe" && value == "1"),
        "{probes:?}"
    );
}

/// Whether the gateway warned that no consumer of the after-callback stream takes `command`.
fn no_consumer_warning(gateway: &Gateway, command: &str) -> bool {
    gateway.stderr_log().lines().into_iter().any(|line| {
        line.contains("WARN")
            && line.contains("no consumer of the after-callback stream")
            && line.contains(command)
            && line.contains(STREAM)
    })
}

async fn wait_for_no_consumer_warning(gateway: &Gateway, command: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !no_consumer_warning(gateway, command) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        no_consumer_warning(gateway, command),
        "no warning names {command}:\n{}",
        gateway.stderr_log().tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_after_stream_enabled_after_callbacks_are_checked_for_consumers_not_probed() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "webhooks.yml",
        "\
url: http://127.0.0.1:10006/callbackExample
afterSetGroupMemberInfo:
  enable: true
  timeout: 5
afterSendSingleMsg:
  enable: true
  timeout: 5
",
    );
    const MEMBER: &str = "callbackAfterSetGroupMemberInfoCommand";
    const SINGLE: &str = "callbackAfterSendSingleMsgCommand";
    let (_store, nats) = jetstream_server().await;
    let settings = [
        ("GATEWAY_OPENIM_WEBHOOKS", path.as_str()),
        ("GATEWAY_AFTER_STREAM", STREAM),
    ];
    let stored = || async {
        let client = async_nats::connect(nats.url()).await.expect("connects");
        let mut stream = jetstream::new(client)
            .get_stream(STREAM)
            .await
            .expect("the stream exists");
        stream.info().await.expect("stream info").state.messages
    };

    // No consumer: both are named, and nothing was written into the stream.
    let first = Gateway::start(&nats.url(), &settings).await;
    wait_for_no_consumer_warning(&first, MEMBER).await;
    wait_for_no_consumer_warning(&first, SINGLE).await;
    assert_eq!(stored().await, 0, "the start wrote into the stream");
    assert!(
        !first
            .stderr_log()
            .lines()
            .iter()
            .any(|line| line.contains("no worker serves it")),
        "{}",
        first.stderr_log().tail(30)
    );
    drop(first);

    // A durable consumer of one of them: only the other is named.
    let client = async_nats::connect(nats.url()).await.expect("connects");
    jetstream::new(client)
        .get_stream(STREAM)
        .await
        .expect("the stream exists")
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("member-worker".to_owned()),
            filter_subject: format!("openim.callback.{MEMBER}"),
            ..Default::default()
        })
        .await
        .expect("a durable consumer");
    let second = Gateway::start(&nats.url(), &settings).await;
    wait_for_no_consumer_warning(&second, SINGLE).await;
    assert!(
        !no_consumer_warning(&second, MEMBER),
        "a command a consumer takes was named:\n{}",
        second.stderr_log().tail(30)
    );
    assert_eq!(stored().await, 0, "the start wrote into the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_two_commands_is_unserved_only_when_neither_is_and_a_key_openim_never_sends_is_silent(
) {
    // beforeMemberJoinGroup drives the v3.8 and the v3.7 command; a worker serves the v3.8
    // one. afterGroupMsgRevoke is in OpenIM's stock file, but OpenIM never sends it.
    // beforeSendSingleMsg is probed last (commands are probed in name order) and unserved:
    // its warning says the probing is over.
    let scratch = Scratch::new();
    let path = scratch.write(
        "webhooks.yml",
        "\
url: http://127.0.0.1:10006/callbackExample
beforeMemberJoinGroup:
  enable: true
  timeout: 5
afterGroupMsgRevoke:
  enable: true
  timeout: 5
beforeSendSingleMsg:
  enable: true
  timeout: 5
",
    );
    let nats = openim_gateway_tests::NatsServer::start().await;
    let _worker = ScriptedWorker::start(
        &nats.url(),
        "openim.callback.callbackBeforeMembersJoinGroupCommand",
        Behaviour::Hang,
    )
    .await;
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_OPENIM_WEBHOOKS", &path)]).await;
    let unserved = |command: &str| {
        gateway.stderr_log().lines().into_iter().any(|line| {
            line.contains("WARN") && line.contains("no worker serves it") && line.contains(command)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !unserved("callbackBeforeSendSingleMsgCommand") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gateway.stderr_log().all();
    assert!(unserved("callbackBeforeSendSingleMsgCommand"), "{log}");
    assert!(!unserved("JoinGroupCommand"), "{log}");
    assert!(
        !log.lines()
            .any(|line| line.contains("WARN") && line.contains("afterGroupMsgRevoke")),
        "{log}"
    );
}
