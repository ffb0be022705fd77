//! A valid worker reply comes back to OpenIM as the decision (`X-Decision-Source: worker`):
//! allow, allow with a modification, and reject, decided by the real example worker.

use openim_gateway_tests::fixtures::{
    set_member_body, SET_MEMBER_CLEAR_NICKNAME, SET_MEMBER_NICKNAME_ONLY, SET_MEMBER_ROLE_ONLY,
};
use openim_gateway_tests::{allow, allow_with, reject, Case, Expect, HttpRequest, Stack};
use serde_json::json;

use crate::SET_MEMBER;

/// A banned-word list that leaves the fixtures' nicknames alone (the worker's default list
/// contains "admin", which the nickname fixture has).
const WORKER_SETTINGS: &[(&str, &str)] = &[("WORKER_BANNED_WORDS", "spam,Casino")];

async fn stack_with_example_worker() -> Stack {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(WORKER_SETTINGS).await;
    stack
}

fn seed(body: impl Into<Vec<u8>>) -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_allow_is_forwarded_without_member_fields() {
    let stack = stack_with_example_worker().await;
    stack
        .check_all(&[
            Case::new(
                "only roleLevel 20 set",
                seed(SET_MEMBER_ROLE_ONLY),
                Expect::worker(allow()),
            ),
            Case::new(
                "clearing the nickname with \"\"",
                seed(SET_MEMBER_CLEAR_NICKNAME),
                Expect::worker(allow()),
            ),
            Case::new(
                "every field set and acceptable",
                seed(set_member_body(
                    "5427181639",
                    Some("Bob"),
                    Some("https://cdn.example.com/face/bob.png"),
                    Some(60),
                )),
                Expect::worker(allow()),
            ),
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_modification_is_forwarded() {
    let stack = stack_with_example_worker().await;
    stack
        .check_all(&[
            Case::new(
                "padded nickname with escaped <>& (fixture)",
                seed(SET_MEMBER_NICKNAME_ONLY),
                Expect::worker(allow_with(&json!({"nickName": "Alice <admin> & co"}))),
            ),
            Case::new(
                "inner whitespace collapsed, non-ASCII kept",
                seed(set_member_body(
                    "5427181639",
                    Some(" Zoë \t\u{3000} Chen "),
                    None,
                    None,
                )),
                Expect::worker(allow_with(&json!({"nickName": "Zoë Chen"}))),
            ),
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_worker_rejections_are_forwarded_with_their_codes() {
    let stack = stack_with_example_worker().await;
    let too_long = "x".repeat(33);
    stack
        .check_all(&[
            Case::new(
                "banned word, matched case-insensitively",
                seed(set_member_body("u1", Some("Big CASINO night"), None, None)),
                Expect::worker(reject(5001, "nickname contains a banned word")),
            ),
            Case::new(
                "nickname over 32 characters",
                seed(set_member_body("u2", Some(&too_long), None, None)),
                Expect::worker(reject(5002, "nickname is longer than 32 characters")),
            ),
            Case::new(
                "whitespace-only nickname",
                seed(set_member_body("u3", Some(" \t "), None, None)),
                Expect::worker(reject(5003, "nickname must not be blank")),
            ),
            Case::new(
                "avatar over plain http",
                seed(set_member_body(
                    "u4",
                    None,
                    Some("http://cdn.example.com/face.png"),
                    None,
                )),
                Expect::worker(reject(5004, "avatar URL must use https")),
            ),
            Case::new(
                "promotion to owner",
                seed(set_member_body("u5", None, None, Some(100))),
                Expect::worker(reject(
                    5005,
                    "the owner changes through a group owner transfer, not member info",
                )),
            ),
            Case::new(
                "unknown role",
                seed(set_member_body("u6", None, None, Some(30))),
                Expect::worker(reject(5006, "roleLevel must be 20 (member) or 60 (admin)")),
            ),
        ])
        .await;
}
