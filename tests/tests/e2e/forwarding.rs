//! What a worker receives: OpenIM's body byte for byte, on `{prefix}.{command}`, with the
//! request id, command, operation id, deadline and budget headers of the worker protocol.

use std::time::Duration;

use openim_gateway_proto::catalog::CallbackKind;
use openim_gateway_proto::headers;
use openim_gateway_proto::Command;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::check::check_uuid_v7;
use openim_gateway_tests::fixtures::{self, SEND_SINGLE_MSG, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::http::DEFAULT_OPERATION_ID;
use openim_gateway_tests::scripted::unix_ms_now;
use openim_gateway_tests::{Behaviour, Expect, HttpRequest, ScriptedWorker, Stack};

use crate::SET_MEMBER;

/// How long a published message may take to reach a subscriber.
const DELIVERY_BOUND: Duration = Duration::from_secs(5);

/// A body no encoder would write: odd spacing, raw multi-byte UTF-8 next to `\u` escapes
/// (a surrogate pair, U+2028), an unknown field with an exponent, no trailing newline. Only a gateway that
/// forwards the bytes it read (never a re-serialisation) passes it through unchanged.
const UNUSUAL_BODY: &[u8] = "{ \"callbackCommand\" : \"callbackBeforeSetGroupMemberInfoCommand\",\n\t\"groupID\":\"3316849202\" ,\"userID\": \"5427181639\", \"nickName\": \"Zo\u{eb} \\ud83d\\ude00 \\u2028 \u{1F600}\", \"faceURL\":null,\"roleLevel\": 20 ,\"ex\":null, \"x\": 1.50e2 }".as_bytes();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_is_forwarded_byte_for_byte_on_its_subject() {
    let stack = Stack::start(&[]).await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;
    let mut sent: Vec<(&str, &[u8])> = fixtures::ALL.to_vec();
    sent.push((SET_MEMBER, UNUSUAL_BODY));
    for (command, body) in &sent {
        let kind = Command::lookup(command)
            .unwrap_or_else(|| panic!("{command} is not in the catalog"))
            .kind;
        let expect = match kind {
            CallbackKind::Before => Expect::worker_fields(serde_json::json!({})),
            CallbackKind::After => Expect::ack(),
        };
        stack
            .check(
                &HttpRequest::openim("/callbackExample", command, *body),
                &expect,
            )
            .await;
    }
    let received = recorder.wait_for(sent.len(), DELIVERY_BOUND).await;
    assert_eq!(received.len(), sent.len(), "{received:#?}");
    for ((command, body), message) in sent.iter().zip(&received) {
        assert_eq!(
            message.subject,
            format!("openim.callback.{command}"),
            "subject of {command}"
        );
        assert!(
            message.payload.as_ref() == *body,
            "payload of {command} differs:\nsent     {:?}\nforwarded {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&message.payload)
        );
        let is_before = Command::lookup(command).map(|c| c.kind) == Some(CallbackKind::Before);
        assert_eq!(
            message.reply.is_some(),
            is_before,
            "{command}: a before-callback is a request (reply subject), an after-callback a publish"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_subject_prefix_is_used_for_requests_and_publishes() {
    let stack = Stack::start(&[("GATEWAY_SUBJECT_PREFIX", "tenant42.im-callbacks")]).await;
    let recorder = ScriptedWorker::start(
        &stack.nats.url(),
        "tenant42.im-callbacks.>",
        Behaviour::reply("{}"),
    )
    .await;
    let default_prefix = stack.observer().await;
    stack
        .check(
            &HttpRequest::openim("", SET_MEMBER, SET_MEMBER_ROLE_ONLY),
            &Expect::worker_fields(serde_json::json!({})),
        )
        .await;
    stack
        .check(
            &HttpRequest::openim(
                "",
                "callbackBeforeAfterMsgCommand",
                fixtures::AFTER_REVOKE_MSG,
            ),
            &Expect::ack(),
        )
        .await;
    let received = recorder.wait_for(2, DELIVERY_BOUND).await;
    assert_eq!(
        received[0].subject,
        format!("tenant42.im-callbacks.{SET_MEMBER}")
    );
    assert_eq!(
        received[1].subject,
        "tenant42.im-callbacks.callbackBeforeAfterMsgCommand"
    );
    default_prefix.settle().await;
    assert!(
        default_prefix.received().is_empty(),
        "nothing may go to the default prefix: {:#?}",
        default_prefix.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_headers_carry_request_id_command_operation_deadline_and_budget() {
    let budget_ms: u128 = 2750;
    let stack = Stack::start(&[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "3000"),
        ("GATEWAY_SAFETY_MARGIN_MS", "250"),
    ])
    .await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;
    let sent_at = unix_ms_now();
    let response = stack
        .check(
            &HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY),
            &Expect::worker_fields(serde_json::json!({})),
        )
        .await;
    let message = &recorder.wait_for(1, DELIVERY_BOUND).await[0];
    let header = |name: &str| {
        message
            .header(name)
            .unwrap_or_else(|| panic!("NATS header {name} missing: {:?}", message.headers))
            .to_owned()
    };

    let nats_id = check_uuid_v7(Some(&header(headers::REQUEST_ID)))
        .unwrap_or_else(|problem| panic!("NATS {}: {problem}", headers::REQUEST_ID));
    let http_id = check_uuid_v7(response.request_id())
        .unwrap_or_else(|problem| panic!("HTTP {}: {problem}", headers::REQUEST_ID));
    assert_eq!(
        nats_id, http_id,
        "the same id goes to the worker and to OpenIM"
    );
    assert_eq!(header(headers::CALLBACK_COMMAND), SET_MEMBER);
    assert_eq!(header(headers::OPERATION_ID), DEFAULT_OPERATION_ID);

    // arrival is between sending and receiving, so the deadline (arrival + budget) is too.
    let deadline: u128 = header(headers::DEADLINE_UNIX_MS)
        .parse()
        .unwrap_or_else(|error| panic!("{}: {error}", headers::DEADLINE_UNIX_MS));
    let tolerance = 50;
    assert!(
        deadline + tolerance >= sent_at + budget_ms
            && deadline <= message.received_unix_ms + budget_ms + tolerance,
        "{} = {deadline}: expected between sent ({sent_at}) + {budget_ms} and received ({}) + {budget_ms}",
        headers::DEADLINE_UNIX_MS,
        message.received_unix_ms
    );
    let timeout_ms: u128 = header(headers::TIMEOUT_MS)
        .parse()
        .unwrap_or_else(|error| panic!("{}: {error}", headers::TIMEOUT_MS));
    assert!(
        timeout_ms > 0 && timeout_ms <= budget_ms,
        "{} = {timeout_ms}: expected in 1..={budget_ms}",
        headers::TIMEOUT_MS
    );
    assert!(
        timeout_ms + 1000 >= budget_ms,
        "{} = {timeout_ms}: a request published at once has most of its {budget_ms} ms left",
        headers::TIMEOUT_MS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_id_comes_from_the_header_in_any_case_else_from_the_body() {
    let stack = Stack::start(&[]).await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;
    let seed = || HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    let message = || HttpRequest::openim("", "callbackBeforeSendSingleMsgCommand", SEND_SINGLE_MSG);
    let cases: Vec<(&str, HttpRequest, Option<&str>)> = vec![
        (
            "Go's canonical Operationid",
            seed().header("Operationid", "op-canonical"),
            Some("op-canonical"),
        ),
        (
            "as OpenIM's code spells it: operationID",
            seed().header("operationID", "op-camel"),
            Some("op-camel"),
        ),
        (
            "upper case OPERATIONID",
            seed().header("OPERATIONID", "op-upper"),
            Some("op-upper"),
        ),
        (
            "lower case operationid",
            seed().header("operationid", "op-lower"),
            Some("op-lower"),
        ),
        (
            "no header: the body's operationID",
            message().without_header("Operationid"),
            Some("1732550400123456789"),
        ),
        (
            "the header wins over the body",
            message().header("Operationid", "op-header"),
            Some("op-header"),
        ),
        (
            "an empty header (OpenIM v3.7+ always sends one): the body's",
            message().header("Operationid", ""),
            Some("1732550400123456789"),
        ),
        (
            "neither: absent",
            seed().without_header("Operationid"),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (index, (name, request, expected)) in cases.iter().enumerate() {
        stack
            .check(request, &Expect::worker_fields(serde_json::json!({})))
            .await;
        let received = recorder.wait_for(index + 1, DELIVERY_BOUND).await;
        let got = received[index].header(headers::OPERATION_ID);
        if got != *expected {
            failures.push(format!(
                "{name}: expected {} {expected:?}, got {got:?} (headers {:?})",
                headers::OPERATION_ID,
                received[index].headers
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_callback_gets_a_fresh_time_ordered_request_id() {
    let stack = Stack::start(&[]).await;
    let request = HttpRequest::openim("", SET_MEMBER, SET_MEMBER_ROLE_ONLY);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let response = stack
            .check(
                &request,
                &Expect::fallback(DecisionSource::NoResponders, crate::default_allow()),
            )
            .await;
        ids.push(check_uuid_v7(response.request_id()).expect("checked above"));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "ids repeat: {ids:?}");
    let millis: Vec<u64> = ids
        .iter()
        .map(|id| {
            id.get_timestamp().map_or(0, |stamp| {
                let (seconds, nanos) = stamp.to_unix();
                seconds * 1000 + u64::from(nanos) / 1_000_000
            })
        })
        .collect();
    assert!(
        millis.windows(2).all(|pair| pair[0] <= pair[1]),
        "UUID v7 timestamps must not go back: {ids:?}"
    );
}

/// Above 64 KiB the gateway parses the body, and checks the reply, off its event loop: the
/// result must be the same as inline. A 300 KiB `ex` goes to the worker byte for byte, the
/// worker's 300 KiB `ex` comes back normalised, and a 300 KiB body that is not JSON is still
/// a 400 that names the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_and_replies_get_the_same_checks_as_small_ones() {
    let stack = Stack::start(&[]).await;
    let big = |fill: char| fill.to_string().repeat(300 * 1024);
    let body = serde_json::to_vec(&serde_json::json!({
        "callbackCommand": SET_MEMBER,
        "groupID": "3316849202",
        "userID": "5427181639",
        "nickName": "Zoe",
        "ex": big('a'),
    }))
    .expect("a JSON value serialises");
    let reply = serde_json::to_vec(&serde_json::json!({
        "actionCode": 0,
        "nextCode": 0,
        "ex": big('b'),
    }))
    .expect("a JSON value serialises");
    let recorder = stack.scripted(Behaviour::reply(reply)).await;

    stack
        .check(
            &HttpRequest::openim("/callbackExample", SET_MEMBER, body.clone()),
            &Expect::worker_fields(serde_json::json!({ "ex": big('b'), "nextCode": 0 })),
        )
        .await;
    let received = recorder.wait_for(1, DELIVERY_BOUND).await;
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(
        received[0].payload.as_ref() == body.as_slice(),
        "the large body was not forwarded byte for byte"
    );

    let mut not_json = body;
    not_json.truncate(not_json.len() - 1);
    stack
        .check(
            &HttpRequest::openim("/callbackExample", SET_MEMBER, not_json),
            &Expect::bad(400, openim_gateway_tests::check::allow()).mentioning("not JSON"),
        )
        .await;
}
