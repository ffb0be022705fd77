//! In-process router tests: the real router and forwarder, no socket, NATS unreachable.
//!
//! What needs a live NATS (worker replies, timeouts, no responders) is covered end to end in
//! the `tests` crate; here the forwarder points at a closed port, which is exactly the
//! "NATS is down" case, and every bad input must be refused before NATS is even considered.

use std::{collections::HashMap, sync::Arc};

use axum::{
    body::Body,
    http::{Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use openim_gateway::{http, metrics::Metrics, nats::Forwarder, settings::Config};
use openim_gateway_proto::{headers, DecisionSource};
use serde_json::{json, Value};
use tower::ServiceExt;

const SEED_BODY: &str = "{\"callbackCommand\":\"callbackBeforeSetGroupMemberInfoCommand\",\"groupID\":\"3316849202\",\"userID\":\"5427181639\",\"nickName\":\"Bob\",\"faceURL\":null,\"roleLevel\":null,\"ex\":null}\n";

async fn router(settings: &[(&str, &str)]) -> Router {
    let mut map: HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Port 1 on loopback: nothing listens, so the forwarder stays disconnected.
    map.entry("NATS_URL".to_owned())
        .or_insert_with(|| "nats://127.0.0.1:1".to_owned());
    let config = Config::from_lookup(|name| map.get(name).cloned()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let forwarder = Forwarder::connect(&config.nats, &config.subject_prefix, Arc::clone(&metrics))
        .await
        .unwrap();
    http::router(Arc::new(http::AppState::new(&config, forwarder, metrics)))
}

async fn send(
    router: &Router,
    method: &str,
    path: &str,
    body: &[u8],
) -> (StatusCode, String, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let source = response
        .headers()
        .get(headers::DECISION_SOURCE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, source, body)
}

#[tokio::test]
async fn nats_down_answers_the_default_at_once() {
    let router = router(&[]).await;
    let (status, source, body) = send(
        &router,
        "POST",
        "/callbackExample/callbackBeforeSetGroupMemberInfoCommand",
        SEED_BODY.as_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(source, DecisionSource::Unavailable.as_str());
    assert_eq!(
        body,
        json!({"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0})
    );
}

#[tokio::test]
async fn bad_inputs_get_4xx_with_the_default_and_an_error() {
    let router = router(&[
        ("GATEWAY_DEFAULT_DECISION", "reject"),
        ("GATEWAY_REJECT_ERR_CODE", "5077"),
        ("GATEWAY_MAX_BODY_BYTES", "1024"),
    ])
    .await;
    let seed = "/callbackBeforeSetGroupMemberInfoCommand";
    let big = vec![b' '; 2048];
    let cases: Vec<(&str, &str, &[u8], StatusCode)> = vec![
        ("POST", seed, b"not json", StatusCode::BAD_REQUEST),
        ("POST", seed, b"[]", StatusCode::BAD_REQUEST),
        ("POST", seed, b"", StatusCode::BAD_REQUEST),
        ("POST", seed, b"{\"a\":\"\xff\"}", StatusCode::BAD_REQUEST),
        ("POST", seed, &big, StatusCode::PAYLOAD_TOO_LARGE),
        ("GET", seed, b"", StatusCode::METHOD_NOT_ALLOWED),
        (
            "POST",
            "/callbackSomethingNewCommand",
            b"{}",
            StatusCode::NOT_FOUND,
        ),
        ("POST", "/", b"{}", StatusCode::NOT_FOUND),
    ];
    for (method, path, body, expected) in cases {
        let (status, source, answer) = send(&router, method, path, body).await;
        assert_eq!(status, expected, "{method} {path}");
        assert_eq!(source, DecisionSource::BadRequest.as_str());
        assert_eq!(answer["nextCode"], json!(1), "{answer}");
        assert_eq!(answer["errCode"], json!(5077), "{answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn after_callbacks_are_acknowledged_even_when_nats_is_down() {
    let router = router(&[]).await;
    let body = br#"{"callbackCommand":"callbackBeforeAfterMsgCommand","sendID":"a","receiveID":"b","content":"x"}"#;
    let (status, source, answer) =
        send(&router, "POST", "/callbackBeforeAfterMsgCommand", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(source, "ack");
    assert_eq!(answer["nextCode"], json!(0));
}

#[tokio::test]
async fn probes_and_metrics() {
    let router = router(&[]).await;
    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let text = String::from_utf8(
                response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .to_vec(),
            )
            .unwrap();
            (status, text)
        }
    };
    assert_eq!(get("/healthz").await.0, StatusCode::OK);
    assert_eq!(get("/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
    let _ = send(
        &router,
        "POST",
        "/callbackBeforeSetGroupMemberInfoCommand",
        SEED_BODY.as_bytes(),
    )
    .await;
    let (status, text) = get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("openim_gateway_callbacks_total{command=\"callbackBeforeSetGroupMemberInfoCommand\",kind=\"before\",source=\"fallback:unavailable\"} 1"), "{text}");
    assert!(text.contains("openim_gateway_nats_connected 0"), "{text}");
    assert!(
        text.contains("# TYPE openim_gateway_callbacks_total counter"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let openmetrics = router
        .clone()
        .oneshot(
            Request::get("/metrics")
                .header(
                    "accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(openmetrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let body = openmetrics.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"# EOF\n"));
}
