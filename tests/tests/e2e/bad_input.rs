//! Bad input is the caller's fault: a 4xx carrying the default decision and an `error` (OpenIM
//! ignores the status and parses the body), and never any NATS traffic.

use std::time::Duration;

use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{metrics, reject, Behaviour, Case, Expect, HttpRequest, Stack};
use serde_json::json;

use crate::{default_allow, SET_MEMBER};

/// Text put in bad bodies: it must never show up in the gateway's logs.
const BODY_MARKER: &str = "body-marker-7f3a9c";

/// The body limit the tests set: the smallest allowed.
const MAX_BODY: usize = 1024;

fn seed(body: impl Into<Vec<u8>>) -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, body)
}

/// A valid SetGroupMemberInfo body of exactly `size` bytes (padded in `ex`).
fn body_of_size(size: usize) -> Vec<u8> {
    let head = format!(
        "{{\"callbackCommand\":\"{SET_MEMBER}\",\"groupID\":\"3316849202\",\"userID\":\"5427181639\",\"nickName\":null,\"faceURL\":null,\"roleLevel\":20,\"ex\":\""
    );
    let tail = "\"}\n";
    let padding = size - head.len() - tail.len();
    format!("{head}{}{tail}", "p".repeat(padding)).into_bytes()
}

fn bad_cases(default: &serde_json::Value) -> Vec<Case> {
    let bad = |status| Expect::bad(status, default.clone());
    vec![
        Case::new("not JSON", seed(format!("hello {BODY_MARKER}")), bad(400)),
        Case::new("truncated JSON", seed(r#"{"callbackCommand":"#), bad(400)),
        Case::new("trailing garbage", seed("{} {}"), bad(400)),
        Case::new("a JSON array", seed("[]"), bad(400)),
        Case::new(
            "a JSON string",
            seed(format!("\"{BODY_MARKER}\"")),
            bad(400),
        ),
        Case::new("a JSON number", seed("42"), bad(400)),
        Case::new("JSON null", seed("null"), bad(400)),
        Case::new("JSON true", seed("true"), bad(400)),
        Case::new("an empty body", seed(""), bad(400)),
        Case::new(
            "invalid UTF-8",
            seed(
                [
                    b"{\"nickName\":\"\xff\xfe ".as_slice(),
                    BODY_MARKER.as_bytes(),
                    b"\"}\n",
                ]
                .concat(),
            ),
            bad(400),
        ),
        Case::new(
            "one byte over GATEWAY_MAX_BODY_BYTES",
            seed(body_of_size(MAX_BODY + 1)),
            bad(413),
        ),
        Case::new(
            "eight times GATEWAY_MAX_BODY_BYTES",
            seed(body_of_size(8 * MAX_BODY)),
            bad(413),
        ),
        Case::new(
            "GET on a callback path",
            seed("").method("GET").without_header("Content-Type"),
            bad(405),
        ),
        Case::new(
            "PUT on a callback path",
            seed(SET_MEMBER_ROLE_ONLY).method("PUT"),
            bad(405),
        ),
        Case::new(
            "DELETE on a callback path",
            seed("").method("DELETE"),
            bad(405),
        ),
        Case::new(
            "a command not in the catalog",
            HttpRequest::openim(
                "/callbackExample",
                "callbackBeforeSomethingNewCommand",
                SET_MEMBER_ROLE_ONLY,
            ),
            bad(404).mentioning("callbackBeforeSomethingNewCommand"),
        ),
        Case::new(
            "a known command in the wrong case",
            HttpRequest::openim(
                "",
                "callbackbeforesetgroupmemberinfocommand",
                SET_MEMBER_ROLE_ONLY,
            ),
            bad(404).mentioning("callbackbeforesetgroupmemberinfocommand"),
        ),
        Case::new(
            "POST / (no command)",
            HttpRequest::post("/", SET_MEMBER_ROLE_ONLY),
            bad(404),
        ),
        Case::new(
            "the base without a command",
            HttpRequest::post("/callbackExample/", SET_MEMBER_ROLE_ONLY),
            bad(404).mentioning("callbackExample"),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_default_decision_and_causes_no_nats_traffic() {
    let max_body = MAX_BODY.to_string();
    // Debug logs: bad input must not put its body in any of them.
    let mut stack =
        Stack::start(&[("GATEWAY_MAX_BODY_BYTES", &max_body), ("RUST_LOG", "debug")]).await;
    let observer = stack.observer().await;
    let bad_before = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_bad_requests_total",
        &[],
    );
    let cases = bad_cases(&default_allow());
    stack.check_all(&cases).await;
    let bad_after = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_bad_requests_total",
        &[],
    );
    assert_eq!(
        bad_after - bad_before,
        cases.len() as f64,
        "openim_gateway_bad_requests_total must count every bad request (unknown commands too)"
    );

    // NATS keeps order per connection: once this probe arrives, anything the bad requests
    // had caused would have arrived before it.
    let probe = HttpRequest::openim(
        "",
        "callbackAfterSetGroupMemberInfoCommand",
        AFTER_SET_MEMBER,
    );
    stack.check(&probe, &Expect::ack()).await;
    observer.wait_for(1, Duration::from_secs(5)).await;
    observer.settle().await;
    let received = observer.received();
    assert_eq!(
        received.len(),
        1,
        "{}",
        stack.report(
            &format!("bad requests reached NATS: {received:#?}"),
            &probe,
            None
        )
    );
    assert_eq!(received[0].payload.as_ref(), AFTER_SET_MEMBER);

    assert!(
        stack.gateway.is_running(),
        "bad input must not stop the gateway"
    );
    let logs = stack.gateway.stderr_log().all();
    assert!(!logs.contains("panicked"), "the gateway panicked:\n{logs}");
    assert!(
        !logs.contains(BODY_MARKER),
        "a bad body reached the gateway's logs:\n{}",
        logs.lines()
            .filter(|line| line.contains(BODY_MARKER))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_exactly_the_limit_is_accepted() {
    let max_body = MAX_BODY.to_string();
    let stack = Stack::start(&[("GATEWAY_MAX_BODY_BYTES", &max_body)]).await;
    let _worker = stack.scripted(Behaviour::reply("{}")).await;
    let body = body_of_size(MAX_BODY);
    assert_eq!(body.len(), MAX_BODY);
    stack
        .check(&seed(body), &Expect::worker_fields(json!({})))
        .await;
    stack
        .check(
            &seed(body_of_size(MAX_BODY + 1)),
            &Expect::bad(413, default_allow()),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_carries_the_reject_default_when_that_is_the_default() {
    let stack = Stack::start(&[
        ("GATEWAY_DEFAULT_DECISION", "reject"),
        ("GATEWAY_REJECT_ERR_CODE", "5099"),
        ("GATEWAY_REJECT_ERR_MSG", "paused for maintenance"),
    ])
    .await;
    let rejected = reject(5099, "paused for maintenance");
    stack
        .check_all(&[
            Case::new(
                "not JSON",
                seed("hello"),
                Expect::bad(400, rejected.clone()),
            ),
            Case::new(
                "unknown command",
                HttpRequest::openim(
                    "",
                    "callbackBeforeSomethingNewCommand",
                    SET_MEMBER_ROLE_ONLY,
                ),
                Expect::bad(404, rejected.clone()).mentioning("callbackBeforeSomethingNewCommand"),
            ),
            Case::new(
                "GET on a callback path",
                seed("").method("GET"),
                Expect::bad(405, rejected.clone()),
            ),
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_gets_413_at_once_without_waiting_for_the_body() {
    // Content-Length says a terabyte; 20 bytes come and the client waits. With the default
    // budget (4.75 s) a gateway that reads before it judges the size answers 408 at the
    // deadline; the declared length alone must be refused at once.
    let stack = Stack::start(&[]).await;
    let observer = stack.observer().await;
    let request = seed(SET_MEMBER_ROLE_ONLY).header("Content-Length", "1000000000000");
    let mut connection = openim_gateway_tests::HttpConnection::open(stack.gateway.address())
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    let response = match connection.send_partial(&request, 20).await {
        Ok(response) => response,
        Err(error) => panic!("{}", stack.report(&error, &request, None)),
    };
    assert_eq!(
        response.status,
        413,
        "{}",
        stack.report("not 413", &request, Some(&response))
    );
    assert!(
        response.elapsed < crate::AT_ONCE,
        "413 after {:?}",
        response.elapsed
    );
    let mut body = response.json().expect("a JSON answer");
    body.as_object_mut().map(|object| object.remove("error"));
    assert_eq!(body, default_allow());
    observer.settle().await;
    assert!(observer.received().is_empty(), "{:#?}", observer.received());
}
