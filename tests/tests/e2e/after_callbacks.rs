//! After-callbacks: OpenIM ignores the answer and has two senders per process, so the
//! gateway publishes and answers at once (`X-Decision-Source: ack`), whatever the workers do.
//! Classified by the catalog: `callbackBeforeAfterMsgCommand` is an after-callback.

use std::time::Duration;

use openim_gateway_proto::headers;
use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::check::check_uuid_v7;
use openim_gateway_tests::fixtures::{AFTER_REVOKE_MSG, AFTER_SET_MEMBER};
use openim_gateway_tests::http::DEFAULT_OPERATION_ID;
use openim_gateway_tests::{allow, metrics, Behaviour, Expect, HttpRequest, Stack};

use crate::AT_ONCE;

const AFTERS: [(&str, &[u8]); 2] = [
    ("callbackAfterSetGroupMemberInfoCommand", AFTER_SET_MEMBER),
    ("callbackBeforeAfterMsgCommand", AFTER_REVOKE_MSG),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_callbacks_are_acked_at_once_and_published_byte_for_byte() {
    // A hung worker sits in the queue group and the budget is 4.75 s: an after-callback
    // that waited for anything would miss the 1 s bound.
    let stack = Stack::start(&[]).await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let observer = stack.observer().await;
    for (index, (command, body)) in AFTERS.iter().enumerate() {
        let response = stack
            .check(
                &HttpRequest::openim("/callbackExample", command, *body),
                &Expect::ack().within(AT_ONCE),
            )
            .await;
        let received = observer.wait_for(index + 1, Duration::from_secs(5)).await;
        let message = &received[index];
        assert_eq!(message.subject, format!("openim.callback.{command}"));
        assert!(
            message.payload.as_ref() == *body,
            "payload of {command}: sent {:?}, published {:?}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&message.payload)
        );
        let http_id = check_uuid_v7(response.request_id()).expect("checked by Expect::ack");
        assert_eq!(
            message.header(headers::REQUEST_ID).map(str::to_owned),
            Some(http_id.to_string()),
            "{command}: {} on NATS and HTTP; headers {:?}",
            headers::REQUEST_ID,
            message.headers
        );
        assert_eq!(message.header(headers::CALLBACK_COMMAND), Some(*command));
        assert_eq!(
            message.header(headers::OPERATION_ID),
            Some(DEFAULT_OPERATION_ID)
        );
        for name in [headers::DEADLINE_UNIX_MS, headers::TIMEOUT_MS] {
            let value = message.header(name).unwrap_or_default();
            assert!(
                value.parse::<u64>().is_ok_and(|number| number > 0),
                "{command}: {name} = {value:?}; headers {:?}",
                message.headers
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_callback_without_any_subscriber_is_acked() {
    let stack = Stack::start(&[]).await;
    for (command, body) in AFTERS {
        stack
            .check(
                &HttpRequest::openim("", command, body),
                &Expect::ack().within(AT_ONCE),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_callback_with_nats_down_is_answered_at_once_with_the_allow_body() {
    let mut stack = Stack::start(&[]).await;
    stack.nats.stop();
    stack
        .wait_for_status("/readyz", 503, Duration::from_secs(10))
        .await;
    let counted = |samples: &[metrics::Sample], command: &str| {
        samples
            .iter()
            .filter(|sample| {
                sample.name == "openim_gateway_callbacks_total"
                    && sample.labels.get("command").map(String::as_str) == Some(command)
                    && sample.labels.get("source").map(String::as_str)
                        != Some(DecisionSource::Ack.as_str())
            })
            .map(|sample| sample.value)
            .sum::<f64>()
    };
    for (command, body) in AFTERS {
        let before = counted(&stack.metrics().await, command);
        let request = HttpRequest::openim("", command, body);
        let response = stack.send(&request).await;
        let ok = response.status == 200
            && response.json().ok() == Some(allow())
            && response.elapsed <= AT_ONCE;
        assert!(
            ok,
            "{}",
            stack.report(
                "expected 200 with the allow body at once",
                &request,
                Some(&response)
            )
        );
        // "Counted when they cannot be published": not as an ack.
        let after = counted(&stack.metrics().await, command);
        assert_eq!(
            after,
            before + 1.0,
            "{command}: openim_gateway_callbacks_total with a source other than ack"
        );
    }
}
