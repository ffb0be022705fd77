//! Which URLs are callbacks: the command is the last non-empty path segment, the query is
//! ignored, OpenIM's shipped base works as it is; with a secret, the segment before the
//! command must be the secret, which never appears in the logs.

use std::time::Duration;

use openim_gateway_tests::fixtures::{AFTER_SET_MEMBER, SET_MEMBER_ROLE_ONLY};
use openim_gateway_tests::{Behaviour, Case, Expect, HttpRequest, Stack};
use serde_json::json;

use crate::{default_allow, SET_MEMBER};

/// 24 URL-safe characters.
const SECRET: &str = "Zq3-x_9Kp2LmN7vR4sT8uW1y";

fn post(target: &str) -> HttpRequest {
    HttpRequest::post(target, SET_MEMBER_ROLE_ONLY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_as_openim_builds_them_are_accepted() {
    let stack = Stack::start(&[]).await;
    let recorder = stack.scripted(Behaviour::reply("{}")).await;
    let targets = [
        format!("/callbackExample/{SET_MEMBER}"),
        format!("/{SET_MEMBER}"),
        format!("/{SET_MEMBER}?contenttype=json"),
        format!("/callbackExample/{SET_MEMBER}?key=eyJzZW5kSUQiOiIxIn0="),
        format!("//{SET_MEMBER}"),
        format!("/callbackExample//{SET_MEMBER}"),
        format!("/a/b/c/{SET_MEMBER}"),
        format!("/callbackExample/{SET_MEMBER}/"),
    ];
    let cases: Vec<Case> = targets
        .iter()
        .map(|target| Case::new(target, post(target), Expect::worker_fields(json!({}))))
        .collect();
    stack.check_all(&cases).await;
    let received = recorder
        .wait_for(targets.len(), Duration::from_secs(5))
        .await;
    for message in received {
        assert_eq!(message.subject, format!("openim.callback.{SET_MEMBER}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_guards_callbacks_and_never_reaches_the_logs() {
    // Debug logs show every request an operator could want to see; still no secret.
    let stack = Stack::start(&[("GATEWAY_WEBHOOK_SECRET", SECRET), ("RUST_LOG", "debug")]).await;
    let _worker = stack.scripted(Behaviour::reply("{}")).await;
    let observer = stack.observer().await;
    let good = [
        format!("/{SECRET}/{SET_MEMBER}"),
        format!("/callbackExample/{SECRET}/{SET_MEMBER}"),
        format!("/{SECRET}/{SET_MEMBER}?contenttype=json"),
    ];
    let short = &SECRET[..SECRET.len() - 1];
    let bad = [
        format!("/{SET_MEMBER}"),
        format!("/wrong/{SET_MEMBER}"),
        format!("/{SECRET}x/{SET_MEMBER}"),
        format!("/{short}/{SET_MEMBER}"),
        format!("/{}/{SET_MEMBER}", SECRET.to_lowercase()),
        format!("/{SECRET}/extra/{SET_MEMBER}"),
    ];
    let mut cases: Vec<Case> = good
        .iter()
        .map(|target| Case::new(target, post(target), Expect::worker_fields(json!({}))))
        .collect();
    cases.extend(
        bad.iter()
            .map(|target| Case::new(target, post(target), Expect::bad(404, default_allow()))),
    );
    stack.check_all(&cases).await;

    // Only the accepted ones reached NATS.
    let probe = HttpRequest::post(
        &format!("/{SECRET}/callbackAfterSetGroupMemberInfoCommand"),
        AFTER_SET_MEMBER,
    );
    stack.check(&probe, &Expect::ack()).await;
    let received = observer
        .wait_for(good.len() + 1, Duration::from_secs(5))
        .await;
    observer.settle().await;
    assert_eq!(
        observer.received().len(),
        good.len() + 1,
        "a rejected path reached NATS: {received:#?}"
    );

    // Give the log lines of the last requests a moment to be written.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = stack.gateway.stderr_log().all();
    assert!(
        !logs.contains(SECRET) && !logs.contains(short) && !logs.contains(&SECRET.to_lowercase()),
        "the secret appears in the gateway's stderr:\n{}",
        logs.lines()
            .filter(|line| line.contains(short) || line.contains(&SECRET.to_lowercase()))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        !logs.is_empty(),
        "RUST_LOG=debug yet the gateway logged nothing: the check above proves nothing"
    );
    assert!(!stack.gateway.stdout_log().all().contains(short));
}
