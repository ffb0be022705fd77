//! Many callbacks at once through two example worker processes in the queue group: every
//! answer belongs to its own request (each nickname comes back normalised to its own
//! value), over fresh connections and over reused keep-alive connections.

use std::collections::HashSet;

use futures::future::join_all;
use openim_gateway_tests::check::differences;
use openim_gateway_tests::fixtures::set_member_body;
use openim_gateway_tests::{allow_with, http, Expect, HttpConnection, HttpRequest, Stack};
use serde_json::json;

use crate::SET_MEMBER;

/// Callbacks in flight at once in the first phase.
const AT_ONCE: usize = 200;
/// Keep-alive connections and requests on each in the second phase.
const CONNECTIONS: usize = 4;
const PER_CONNECTION: usize = 25;

/// Request `index`: a padded nickname unique to it, and the answer that must come back.
fn numbered(index: usize) -> (HttpRequest, Expect) {
    let user = format!("user-{index:04}");
    let padded = format!("  member \t {index:04}  ");
    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        set_member_body(&user, Some(&padded), None, None),
    )
    .header("Operationid", &format!("op-{index:04}"));
    let expect = Expect::worker(allow_with(
        &json!({"nickName": format!("member {index:04}")}),
    ));
    (request, expect)
}

/// On the default runtime: one event loop on the main thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_through_two_workers_never_cross() {
    never_cross(&[], 0).await;
}

/// The same on the multi-thread runtime, where callbacks and the NATS connection run on
/// different threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callbacks_never_cross_on_a_multi_thread_runtime() {
    never_cross(&[("GATEWAY_RUNTIME_THREADS", "2")], 2).await;
}

/// `runtime_workers`: the runtime worker threads the gateway must be running, so that each
/// test checks the runtime it names.
async fn never_cross(settings: &[(&str, &str)], runtime_workers: usize) {
    let mut stack = Stack::start(settings).await;
    assert_eq!(
        stack.gateway.runtime_worker_threads(),
        runtime_workers,
        "runtime worker threads with settings {settings:?}"
    );
    for _ in 0..2 {
        stack
            .add_example_worker(&[("WORKER_BANNED_WORDS", "spam")])
            .await;
    }
    let address = stack.gateway.address();

    let answers = join_all((0..AT_ONCE).map(|index| async move {
        let (request, expect) = numbered(index);
        (index, expect, http::send(address, &request).await)
    }))
    .await;
    let mut failures = Vec::new();
    let mut ids = HashSet::new();
    for (index, expect, answer) in answers {
        match answer {
            Ok(response) => {
                let problems = differences(&response, &expect);
                if !problems.is_empty() {
                    failures.push(format!("#{index}: {}", problems.join("; ")));
                }
                ids.insert(response.request_id().unwrap_or_default().to_owned());
            }
            Err(error) => failures.push(format!("#{index}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        stack.report(
            &format!(
                "{} of {AT_ONCE} answers were wrong:\n{}",
                failures.len(),
                failures.join("\n")
            ),
            &numbered(0).0,
            None
        )
    );
    assert_eq!(ids.len(), AT_ONCE, "request ids must be unique");

    let phases = join_all((0..CONNECTIONS).map(|connection| async move {
        let mut open = HttpConnection::open(address).await?;
        let mut failures = Vec::new();
        for step in 0..PER_CONNECTION {
            let index = 1000 + connection * PER_CONNECTION + step;
            let (request, expect) = numbered(index);
            let response = open.send(&request).await?;
            let problems = differences(&response, &expect);
            if !problems.is_empty() {
                failures.push(format!("#{index}: {}", problems.join("; ")));
            }
        }
        Ok::<_, String>(failures)
    }))
    .await;
    let mut failures = Vec::new();
    for (connection, phase) in phases.into_iter().enumerate() {
        match phase {
            Ok(found) => failures.extend(found),
            Err(error) => failures.push(format!("connection {connection}: {error}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{}",
        stack.report(
            &format!("keep-alive answers were wrong:\n{}", failures.join("\n")),
            &numbered(1000).0,
            None
        )
    );
    for (index, worker) in stack.workers.iter_mut().enumerate() {
        assert!(worker.is_running(), "example worker #{index} exited");
    }
}
