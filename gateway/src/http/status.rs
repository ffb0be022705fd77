//! The status page's routes (`GET /` and `GET /status.json`) and the probe that measures
//! NATS for it in the background, so that a page load never waits on NATS.
//!
//! The figures are put together here from what the handlers share: the rules in force, the
//! counts the metrics recorded ([`crate::status::Recorder`]), the connection state, and the
//! probe's last results.

use std::{
    sync::{Arc, PoisonError},
    time::Duration,
};

use axum::{
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Redirect, Response},
};
use tokio::time::Instant;

use super::{state::Probed, AppState};
use crate::{
    decision::DefaultDecision,
    settings::policy::Mode,
    status::{
        page::{
            CommandRulesShown, CommandStatus, GatewayStatus, NatsStatus, ReasonCount,
            RegisteredWorker, WorkersStatus,
        },
        window::WINDOW,
        Status,
    },
};

/// How often the probe asks for the server and the registered workers.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long discovery collects answers.
const DISCOVERY_WAIT: Duration = Duration::from_millis(500);

/// What the workers' note on the page says.
const WORKERS_NOTE: &str = "A worker's reply does not say which worker sent it: the list shows \
    the workers that register with the NATS service API (the Rust kit does; the Python, Node \
    and Go kits do not), and each callback shows when any worker last replied to it.";

/// The crate's version.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `0.1.0 (commit d7480da)` or `0.1.0`, from the build script.
const BUILD: &str = env!("OPENIM_BUILD_VERSION");

/// Asks NATS every [`PROBE_EVERY`] until the gateway stops: the server and the registered
/// workers (the round trip is the watchdog's, read on each page load). Runs in a task of its
/// own.
pub async fn probe_nats(state: Arc<AppState>) {
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let forwarder = &state.forwarder;
        let server = forwarder.server();
        let services = forwarder.discover_services(DISCOVERY_WAIT).await;
        let mut probed = state.probed.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = std::mem::take(&mut *probed);
        *probed = Probed {
            server,
            services: match services {
                Some(services) => Some((services, Instant::now())),
                None if forwarder.is_connected() => previous.services,
                None => None,
            },
        };
    }
}

/// `GET /`: the page.
pub(super) async fn page(State(state): State<Arc<AppState>>) -> Response {
    let html = status(&state).to_html();
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        html,
    )
        .into_response()
}

/// `GET /status.json`: the page's figures.
pub(super) async fn json(State(state): State<Arc<AppState>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        status(&state).to_json(),
    )
        .into_response()
}

/// `GET /status`: the page is at `/`.
pub(super) async fn to_page() -> Redirect {
    Redirect::to("/")
}

/// The figures now.
fn status(state: &AppState) -> Status {
    let live = state.live();
    let recorder = state.metrics.status();
    let commands = recorder
        .snapshot()
        .into_iter()
        .map(|(command, figures)| {
            let rules = live.rules.of(command);
            let shown = CommandRulesShown {
                enabled: live
                    .enabled
                    .as_ref()
                    .map(|enabled| enabled.contains(command.name)),
                mode: match rules.mode {
                    Mode::Enforce => "enforce",
                    Mode::Shadow => "shadow",
                    Mode::Off => "off",
                },
                reject: match rules.default {
                    DefaultDecision::Allow => None,
                    DefaultDecision::Reject { err_code, err_msg } => {
                        Some((*err_code, err_msg.clone()))
                    }
                },
                budget: rules.budget,
            };
            CommandStatus::new(command, shown, &figures)
        })
        .collect();
    let probed = state.probed.lock().unwrap_or_else(PoisonError::into_inner);
    let connected = state.forwarder.is_connected();
    let server = probed.server.as_ref().filter(|_| connected);
    let round_trip = state.forwarder.last_round_trip();
    let seconds_ago = |at: Instant| at.elapsed().as_secs();
    Status {
        gateway: GatewayStatus {
            version: VERSION,
            commit: BUILD
                .split_once("(commit ")
                .and_then(|(_, rest)| rest.strip_suffix(')')),
            uptime_seconds: recorder.uptime().as_secs(),
            draining: state.is_draining(),
            webhooks_known: live.enabled.is_some(),
        },
        nats: NatsStatus {
            servers: state.nats_servers.clone(),
            connected,
            server_name: server.map(|server| server.name.clone()),
            server_version: server.map(|server| server.version.clone()),
            server_address: server.map(|server| server.address.clone()),
            rtt_ms: round_trip.map(|(took, _)| (took.as_secs_f64() * 1e6).round() / 1e3),
            rtt_measured_seconds_ago: round_trip.map(|(_, at)| seconds_ago(at)),
            pending_replies: state.forwarder.pending_len(),
        },
        workers: WorkersStatus {
            registered: probed
                .services
                .iter()
                .flat_map(|(services, _)| services)
                .map(|service| RegisteredWorker {
                    name: service.name.clone(),
                    id: service.id.clone(),
                    version: service.version.clone(),
                    commands: service.commands.clone(),
                })
                .collect(),
            discovered_seconds_ago: probed.services.as_ref().map(|(_, at)| seconds_ago(*at)),
            note: WORKERS_NOTE,
        },
        window_seconds: WINDOW.as_secs(),
        commands,
        bad_requests: recorder
            .bad_requests()
            .into_iter()
            .map(|(reason, count)| ReasonCount {
                reason: reason.as_str(),
                count,
            })
            .collect(),
    }
}
