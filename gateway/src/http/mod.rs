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

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, PoisonError, RwLock,
};

use axum::{
    extract::State,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tower_http::catch_panic::CatchPanicLayer;

use self::{accept::Limits, answer::Prebuilt};
use crate::{
    conditions::Conditions,
    config::{Config, WebhookSecret},
    deadline,
    decision::DefaultDecision,
    forward::Forwarder,
    metrics::{InflightGuard, Metrics},
    outcome::RejectReason,
    policy::Policies,
    webhooks::Budgets,
};

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Publishes callbacks and routes replies.
    forwarder: Forwarder,
    /// Counters and histograms.
    metrics: Arc<Metrics>,
    /// The budgets and policies, replaced as a whole when the policy file is reloaded; a
    /// callback keeps the ones it started with.
    live: RwLock<Arc<Live>>,
    /// The path segment required before the command, when configured.
    webhook_secret: Option<WebhookSecret>,
    /// Larger bodies get 413.
    max_body_bytes: usize,
    /// Set once shutdown starts: `/readyz` answers 503 and every answer closes its
    /// connection after it is written.
    draining: AtomicBool,
    /// `GATEWAY_MAX_INFLIGHT`: past it, the default at once (`fallback:overload`).
    max_inflight: usize,
    /// Warnings about conditions, counted rather than repeated.
    conditions: Conditions,
}

impl AppState {
    /// The shared state of a gateway configured by `config`.
    pub fn new(config: &Config, forwarder: Forwarder, metrics: Arc<Metrics>) -> Self {
        Self {
            forwarder,
            metrics,
            live: RwLock::new(Arc::new(Live::new(config))),
            webhook_secret: config.webhook_secret.clone(),
            max_body_bytes: config.max_body_bytes,
            draining: AtomicBool::new(false),
            max_inflight: config.max_inflight,
            conditions: Conditions::default(),
        }
    }

    /// Shutdown has started: say so on `/readyz`, and close each connection once its next
    /// answer is written (never while it idles: OpenIM's Go client would not retry a POST
    /// that meets a connection closed under it).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A place among the before-callbacks in flight (counted by the metrics' gauge until it
    /// drops), or `None` past the bound.
    fn admit(&self) -> Option<InflightGuard<'_>> {
        let guard = self.metrics.inflight();
        (guard.others() < self.max_inflight).then_some(guard)
    }

    /// The conditions the callback path warns about (reported once per interval).
    pub fn conditions(&self) -> &Conditions {
        &self.conditions
    }

    /// The forwarder (the gateway drains it on shutdown).
    pub fn forwarder(&self) -> &Forwarder {
        &self.forwarder
    }

    /// The longest timeout any command has now (reloads included): the drain waits this
    /// long, plus a little, for the callbacks in flight.
    pub fn longest_timeout(&self) -> std::time::Duration {
        self.live().longest_timeout
    }

    /// The budgets and policies in force now.
    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes the budgets and policies of `config` (a reloaded policy file). Callbacks in
    /// flight finish with the ones they started with; nothing else of `config` is applied.
    pub fn reload(&self, config: &Config) {
        let live = Arc::new(Live::new(config));
        *self.live.write().unwrap_or_else(PoisonError::into_inner) = live;
        tracing::info!("policy reloaded");
    }

    fn limits<'a>(&'a self, live: &'a Live) -> Limits<'a> {
        Limits {
            answer_within: &live.answer_within,
            webhook_secret: self.webhook_secret.as_ref(),
            max_body_bytes: self.max_body_bytes,
            nats_max_payload: self.forwarder.max_payload(),
        }
    }
}

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
        answer::protocol_error(&live.prebuilt, &live.default_decision, status, request_id)
    })
}

/// What a reload can change: each command's wait and policy.
#[derive(Debug)]
pub(crate) struct Live {
    /// Per command, arrival to the moment the gateway stops waiting: the command's budget
    /// less the timer slack.
    answer_within: Budgets,
    /// Each command's mode and default decision (the policy file).
    policies: Policies,
    /// The global default decision: requests refused before their command is known, and
    /// caught panics.
    default_decision: DefaultDecision,
    /// Answers serialised once per policy.
    prebuilt: Prebuilt,
    /// The longest timeout any command has (the drain bound's base).
    longest_timeout: std::time::Duration,
}

impl Live {
    fn new(config: &Config) -> Self {
        Self {
            answer_within: budgets(config),
            policies: config.policies(),
            default_decision: config.default_decision.clone(),
            prebuilt: Prebuilt::new(&config.default_decision),
            longest_timeout: config.longest_timeout(),
        }
    }
}

/// Each command's wait, and the start-up lines that say what OpenIM's `webhooks.yml` made of
/// them: one per enabled callback with its budget, and a warning for a `url` the gateway
/// cannot serve as written.
fn budgets(config: &Config) -> Budgets {
    let budgets = config.budgets();
    if let Some(webhooks) = &config.openim_webhooks {
        // The URL itself is not shown: its path may carry the webhook secret.
        if let Some(problem) = webhooks.url_problem() {
            tracing::warn!("the url in OpenIM's webhooks.yml {problem}");
        }
        for callback in webhooks
            .callbacks
            .iter()
            .filter(|callback| callback.enabled)
        {
            tracing::info!(
                command = callback.command.name,
                key = %callback.key,
                timeout_ms = u64::try_from(callback.timeout.as_millis()).unwrap_or(u64::MAX),
                budget_ms = u64::try_from(budgets.of(callback.command).as_millis()).unwrap_or(u64::MAX),
                "callback enabled in OpenIM's webhooks.yml"
            );
        }
        for key in &webhooks.unknown_keys {
            tracing::warn!(%key, "webhooks.yml block for a callback this gateway does not know: its timeout is not used");
        }
    }
    budgets.map(deadline::answer_within)
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
