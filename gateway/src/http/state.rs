//! What the handlers share: the forwarder, the metrics, the limits, and the rules in force
//! (replaced as a whole on a reload; a callback keeps the ones it started with).

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError, RwLock,
    },
};

use tokio::time::Instant;

use super::{accept::Limits, answer::Prebuilt};
use crate::{
    conditions::Conditions,
    describe,
    metrics::{InflightGuard, Metrics},
    nats::{Forwarder, ServerSummary, ServiceSeen},
    rules::{self, Rules},
    settings::{Config, WebhookSecret},
};

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// Publishes callbacks and routes replies.
    pub(super) forwarder: Forwarder,
    /// Counters and histograms.
    pub(super) metrics: Arc<Metrics>,
    /// The budgets and policies, replaced as a whole when the policy file is reloaded; a
    /// callback keeps the ones it started with.
    pub(super) live: RwLock<Arc<Live>>,
    /// The path segment required before the command, when configured.
    pub(super) webhook_secret: Option<WebhookSecret>,
    /// Larger bodies get 413.
    pub(super) max_body_bytes: usize,
    /// Set once shutdown starts: `/readyz` answers 503 and every answer closes its
    /// connection after it is written.
    pub(super) draining: AtomicBool,
    /// `GATEWAY_MAX_INFLIGHT`: past it, the default at once (`fallback:overload`).
    pub(super) max_inflight: usize,
    /// Warnings about conditions, counted rather than repeated.
    pub(super) conditions: Conditions,
    /// The NATS servers as the status page shows them: without user information.
    pub(super) nats_servers: Vec<String>,
    /// What the status page's probe last measured.
    pub(super) probed: Mutex<Probed>,
}

/// What the status page's probe last measured ([`super::probe_nats`]).
#[derive(Debug, Default)]
pub(super) struct Probed {
    /// The server of the connection at the last probe.
    pub(super) server: Option<ServerSummary>,
    /// The workers found by the last discovery, and when it ran.
    pub(super) services: Option<(Vec<ServiceSeen>, Instant)>,
}

impl AppState {
    /// The shared state of a gateway configured by `config`.
    pub fn new(config: &Config, forwarder: Forwarder, metrics: Arc<Metrics>) -> Self {
        let live = Live::started(config);
        metrics.budgets(&live.rules);
        Self {
            forwarder,
            metrics,
            live: RwLock::new(Arc::new(live)),
            webhook_secret: config.webhook_secret.clone(),
            max_body_bytes: config.max_body_bytes,
            draining: AtomicBool::new(false),
            max_inflight: config.max_inflight,
            conditions: Conditions::default(),
            nats_servers: config.nats.servers_without_credentials(),
            probed: Mutex::default(),
        }
    }

    /// Shutdown has started: say so on `/readyz`, and close each connection once its next
    /// answer is written (never while it idles: OpenIM's Go client would not retry a POST
    /// that meets a connection closed under it).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A place among the before-callbacks in flight (counted by the metrics' gauge until it
    /// drops), or `None` past the bound.
    pub(super) fn admit(&self) -> Option<InflightGuard<'_>> {
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
        self.live().rules.longest_timeout()
    }

    /// The budgets and policies in force now.
    pub(super) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes the budgets and policies of `config` (a reloaded policy file). Callbacks in
    /// flight finish with the ones they started with; nothing else of `config` is applied.
    pub fn reload(&self, config: &Config) {
        let live = Arc::new(Live::new(config));
        let before = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(PoisonError::into_inner),
            Arc::clone(&live),
        );
        self.metrics.budgets(&live.rules);
        describe::log_reload(&before.rules, &live.rules);
    }

    pub(super) fn limits<'a>(&'a self, live: &'a Live) -> Limits<'a> {
        Limits {
            rules: &live.rules,
            webhook_secret: self.webhook_secret.as_ref(),
            max_body_bytes: self.max_body_bytes,
            nats_max_payload: self.forwarder.max_payload(),
        }
    }
}

/// What a reload can change: each command's rules, and the answers prebuilt from them.
#[derive(Debug)]
pub(super) struct Live {
    /// Each command's mode, default decision and budget.
    pub(super) rules: Rules,
    /// Answers serialised once per policy.
    pub(super) prebuilt: Prebuilt,
    /// The commands OpenIM's `webhooks.yml` enables, when it is read.
    pub(super) enabled: Option<HashSet<&'static str>>,
}

impl Live {
    /// The rules a gateway starts with, logged in the policy file's words.
    fn started(config: &Config) -> Self {
        let live = Self::new(config);
        describe::log_start(config, &live.rules);
        live
    }

    fn new(config: &Config) -> Self {
        let rules = Rules::new(config);
        if let Some(webhooks) = &config.openim_webhooks {
            rules::log_webhooks(webhooks, &rules);
        }
        describe::log_webhooks_summary(config);
        let enabled = config.openim_webhooks.as_ref().map(|webhooks| {
            webhooks
                .callbacks
                .iter()
                .filter(|callback| callback.enabled)
                .map(|callback| callback.command.name)
                .collect()
        });
        Self {
            prebuilt: Prebuilt::new(rules.global_default()),
            rules,
            enabled,
        }
    }
}
