//! The direct server: what a user runs without the gateway. One axum server on the same
//! stack as the gateway (axum 0.8, HTTP/1.1, tokio) that parses OpenIM's body and decides in
//! process with the worker's own rules, answering the same JSON the worker would.
//!
//! It is a floor, not a product: no NATS, no deadline, no metrics, and every path is the
//! callback. A body that is not a request gets 400 with the allow answer.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::State,
    http::{header::CONTENT_TYPE, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use openim_gateway_proto::{
    group_member::{SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest},
    headers::DECISION_SOURCE,
};
use openim_worker_example::rules::{decide, Rules};

/// The `X-Decision-Source` of the direct server's answers.
pub const DIRECT_SOURCE: &str = "direct";

/// The one line the driver waits for, followed by `http://ADDR`.
pub const READY_LINE: &str = "direct-server listening on";

/// Every path and method answers with the decision on the body.
pub fn router(rules: Arc<Rules>) -> Router {
    Router::new().fallback(decide_body).with_state(rules)
}

async fn decide_body(State(rules): State<Arc<Rules>>, body: Bytes) -> Response {
    let (status, answer) = match serde_json::from_slice::<SetGroupMemberInfoRequest>(&body) {
        Ok(request) => (StatusCode::OK, decide(&rules, &request)),
        Err(_) => (StatusCode::BAD_REQUEST, SetGroupMemberInfoAnswer::allow()),
    };
    // The answer type is plain strings and integers: it always serialises.
    let json = serde_json::to_vec(&answer).unwrap_or_default();
    let mut response = (status, json).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(DECISION_SOURCE, HeaderValue::from_static(DIRECT_SOURCE));
    response
}
