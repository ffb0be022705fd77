//! HTTP: the router, its layers and the probes. A callback's path through this folder:
//! [`accept`] checks the request (the caller's faults become 4xx answers), [`callback`] asks
//! or notifies the workers through the forwarder and decides who answered, [`answer`] turns
//! the result into the bytes and headers OpenIM reads.
//!
//! Failures are classified by who is at fault: the caller's are [`RejectReason`]s, upstream's
//! (a worker, NATS) are the `fallback:*` decision sources, ours is a caught panic, answered
//! by the outermost layer with the default decision.

mod accept;
mod answer;
mod callback;
mod off_loop;
mod state;

use std::sync::Arc;

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tower_http::catch_panic::CatchPanicLayer;

pub use self::state::AppState;
use crate::outcome::RejectReason;

/// The answer to a request hyper refused while parsing it (counted as a bad request with
/// the reason `protocol`, and logged like the other refusals), with its own request id.
pub fn protocol_error_answer(state: &Arc<AppState>) -> crate::serve::ProtocolErrorAnswer {
    let state = Arc::clone(state);
    Arc::new(move |status| {
        let request_id = uuid::Uuid::now_v7();
        let reason = RejectReason::Protocol.as_str();
        state.metrics.bad_request(RejectReason::Protocol);
        tracing::debug!(status, reason, %request_id, "bad callback request: hyper could not read it");
        state.conditions.bad_request.note(
            "",
            &format_args!("{status} {reason}: the request could not be read"),
        );
        let live = state.live();
        answer::protocol_error(
            &live.prebuilt,
            live.rules.global_default(),
            status,
            request_id,
        )
    })
}

/// The gateway's routes. Callbacks are the fallback: any path not listed here is a callback
/// path, parsed by hand so that doubled slashes and any base before the command work.
pub fn router(state: Arc<AppState>) -> Router {
    let panicked = Arc::clone(&state);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(callback::callback)
        .layer(middleware::map_response_with_state(
            Arc::clone(&state),
            close_when_draining,
        ))
        .with_state(state)
        // Outermost: a bug in a handler still gives OpenIM a valid answer (the default).
        .layer(CatchPanicLayer::custom(move |_panic| {
            tracing::error!("a handler panicked: answering the default decision");
            answer::internal_error(&panicked.live().prebuilt)
        }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// While draining, every answer asks the client to close the connection after reading it.
async fn close_when_draining(
    State(state): State<Arc<AppState>>,
    mut response: Response,
) -> Response {
    if state.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else if state.forwarder.is_connected() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not connected to nats\n").into_response()
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text format.
async fn metrics(State(state): State<Arc<AppState>>, request_headers: HeaderMap) -> Response {
    state.metrics.pending_replies(state.forwarder.pending_len());
    let wants_openmetrics = request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.encode_openmetrics(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            state.metrics.encode_prometheus_text(),
        )
            .into_response()
    }
}
