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
mod status;

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
pub use self::status::probe_nats;
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

/// The gateway's routes on one listener (no `GATEWAY_ADMIN_LISTEN`): the callbacks, the
/// probes, `/metrics` and the status page. Callbacks are the fallback: any path not listed
/// here is a callback path, parsed by hand so that doubled slashes and any base before the
/// command work; a method other than GET on `/` or `/status` is one too (`POST /` is refused
/// as a callback without a command, as before).
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(status::page).fallback(callback::callback))
        .route(
            "/status.json",
            get(status::json).fallback(callback::callback),
        )
        .route("/status", get(status::to_page).fallback(callback::callback))
        .fallback(callback::callback);
    finish(routes, state)
}

/// The OpenIM-facing routes when an admin listener serves the rest
/// (`GATEWAY_ADMIN_LISTEN`): the callbacks and the probes; `GET` on `/`, `/status`,
/// `/status.json` and `/metrics` is a plain 404 that points to the admin listener.
pub fn openim_router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(on_admin).fallback(callback::callback))
        .route("/", get(on_admin).fallback(callback::callback))
        .route("/status.json", get(on_admin).fallback(callback::callback))
        .route("/status", get(on_admin).fallback(callback::callback))
        .fallback(callback::callback);
    finish(routes, state)
}

/// The admin listener's routes (`GATEWAY_ADMIN_LISTEN`): the status page, its JSON,
/// `/metrics` and the probes; nothing else (no callback is served there).
pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/status.json", get(status::json))
        .route("/status", get(status::to_page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

async fn on_admin() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: the status page and /metrics are served on the admin listener (GATEWAY_ADMIN_LISTEN)\n",
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: this listener serves /, /status.json, /metrics, /healthz and /readyz\n",
    )
        .into_response()
}

/// The layers every OpenIM-facing router has: `Connection: close` while draining, and
/// outermost, the panic layer.
fn finish(routes: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    let panicked = Arc::clone(&state);
    routes
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
