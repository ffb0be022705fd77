//! [`Stack`]: one test's nats-server, gateway and example workers, and the `check` helper
//! that sends a request and, on any difference, reports the request, the answer and what
//! every child process said.
//!
//! Each test builds its own stack on fresh ports, so tests run in parallel without sharing
//! anything. Scripted (in-process) workers are created from the stack's NATS URL and owned
//! by the test, since their lifetime is part of what a test controls.

use std::time::Duration;

use serde_json::Value;

use crate::check::{differences, Expect};
use crate::gateway::Gateway;
use crate::http::{self, HttpRequest, HttpResponse};
use crate::metrics::{self, Sample};
use crate::nats::NatsServer;
use crate::scripted::{Behaviour, ScriptedWorker};
use crate::worker::Worker;

/// The subject pattern that catches every callback under the default prefix.
pub const ALL_CALLBACKS: &str = "openim.callback.>";

/// How long a started gateway may take to connect to the test's nats-server.
const READY_BOUND: Duration = Duration::from_secs(10);

/// How many stderr lines of each child a failure report shows.
const TAIL_LINES: usize = 40;

/// A named request and what its answer must be, for data-driven tests.
#[derive(Debug, Clone)]
pub struct Case {
    /// What the case shows, printed on failure.
    pub name: String,
    /// The request.
    pub request: HttpRequest,
    /// The expected answer.
    pub expect: Expect,
}

impl Case {
    /// A case named `name`.
    pub fn new(name: &str, request: HttpRequest, expect: Expect) -> Self {
        Self {
            name: name.to_owned(),
            request,
            expect,
        }
    }
}

/// One test's processes.
#[derive(Debug)]
pub struct Stack {
    /// The test's nats-server (tests stop and restart it).
    pub nats: NatsServer,
    /// The gateway under test.
    pub gateway: Gateway,
    /// Example workers started with [`Self::add_example_worker`].
    pub workers: Vec<Worker>,
}

impl Stack {
    /// A fresh nats-server and a gateway connected to it with `settings`: returns once
    /// `/readyz` says the gateway is connected (it binds before it connects).
    pub async fn start(settings: &[(&str, &str)]) -> Self {
        let nats = NatsServer::start().await;
        let gateway = Gateway::start(&nats.url(), settings).await;
        let stack = Self {
            nats,
            gateway,
            workers: Vec::new(),
        };
        stack.wait_for_status("/readyz", 200, READY_BOUND).await;
        stack
    }

    /// A gateway whose NATS is not running yet (`self.nats.restart()` brings it up).
    pub async fn start_without_nats(settings: &[(&str, &str)]) -> Self {
        let nats = NatsServer::not_started();
        let gateway = Gateway::start(&nats.url(), settings).await;
        Self {
            nats,
            gateway,
            workers: Vec::new(),
        }
    }

    /// Starts one more example worker process with `settings`.
    pub async fn add_example_worker(&mut self, settings: &[(&str, &str)]) {
        let worker = Worker::start(&self.nats.url(), settings).await;
        self.workers.push(worker);
    }

    /// A scripted queue-group worker on every callback subject of the default prefix.
    pub async fn scripted(&self, behaviour: Behaviour) -> ScriptedWorker {
        ScriptedWorker::start(&self.nats.url(), ALL_CALLBACKS, behaviour).await
    }

    /// A plain subscriber recording every callback message under the default prefix.
    pub async fn observer(&self) -> ScriptedWorker {
        ScriptedWorker::observer(&self.nats.url(), ALL_CALLBACKS).await
    }

    /// Sends `request` to the gateway; a transport failure panics with the diagnostics.
    pub async fn send(&self, request: &HttpRequest) -> HttpResponse {
        match http::send(self.gateway.address(), request).await {
            Ok(response) => response,
            Err(error) => panic!(
                "{}",
                self.report(&format!("the exchange failed: {error}"), request, None)
            ),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpResponse {
        self.send(&HttpRequest::get(path)).await
    }

    /// The samples of `GET /metrics`.
    pub async fn metrics(&self) -> Vec<Sample> {
        let response = self.get("/metrics").await;
        assert_eq!(response.status, 200, "GET /metrics: {response}");
        metrics::parse(&response.text())
    }

    /// Sends `request` and checks the answer against `expect`; panics with the full report
    /// on any difference. Returns the answer for further checks.
    pub async fn check(&self, request: &HttpRequest, expect: &Expect) -> HttpResponse {
        match self.try_check(request, expect).await {
            Ok(response) => response,
            Err(report) => panic!("{report}"),
        }
    }

    /// Like [`Self::check`], returning the report instead of panicking.
    pub async fn try_check(
        &self,
        request: &HttpRequest,
        expect: &Expect,
    ) -> Result<HttpResponse, String> {
        let response = match http::send(self.gateway.address(), request).await {
            Ok(response) => response,
            Err(error) => {
                return Err(self.report(&format!("the exchange failed: {error}"), request, None))
            }
        };
        let problems = differences(&response, expect);
        if problems.is_empty() {
            Ok(response)
        } else {
            Err(self.report(&problems.join("\n"), request, Some(&response)))
        }
    }

    /// Checks every case (all of them, even after a failure) and panics listing every
    /// failing case with its report.
    pub async fn check_all(&self, cases: &[Case]) -> Vec<HttpResponse> {
        let mut failures = Vec::new();
        let mut responses = Vec::new();
        for case in cases {
            match self.try_check(&case.request, &case.expect).await {
                Ok(response) => responses.push(response),
                Err(report) => failures.push(format!("case {:?}:\n{report}", case.name)),
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n\n")
        );
        responses
    }

    /// Polls `request` until its answer matches `expect`, for at most `bound` (recovery
    /// after NATS comes back). Panics with the last report when it never does.
    pub async fn check_eventually(
        &self,
        request: &HttpRequest,
        expect: &Expect,
        bound: Duration,
    ) -> HttpResponse {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            match self.try_check(request, expect).await {
                Ok(response) => return response,
                Err(report) if tokio::time::Instant::now() >= deadline => {
                    panic!("still failing after {bound:?}:\n{report}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// Polls `GET path` until it answers `status`, for at most `bound`.
    pub async fn wait_for_status(&self, path: &str, status: u16, bound: Duration) {
        let request = HttpRequest::get(path);
        self.check_eventually(&request, &Expect::status(status), bound)
            .await;
    }

    /// A failure report: what went wrong, the request, the answer and every child's stderr.
    pub fn report(
        &self,
        problem: &str,
        request: &HttpRequest,
        response: Option<&HttpResponse>,
    ) -> String {
        let mut text = format!("{problem}\n--- request ---\n{request}\n");
        match response {
            Some(response) => text.push_str(&format!("--- answer ---\n{response}\n")),
            None => text.push_str("--- answer ---\n(none)\n"),
        }
        text.push_str(&self.diagnostics());
        text
    }

    /// The stderr tails of the gateway, every example worker and nats-server; marks them as
    /// reported so the guards do not print them again when the test panics.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        let gateway = self.gateway.stderr_log();
        text.push_str(&format!(
            "--- openim-gateway {} stderr (last {TAIL_LINES} lines) ---\n{}",
            self.gateway.address(),
            gateway.tail(TAIL_LINES)
        ));
        gateway.mark_reported();
        for (index, worker) in self.workers.iter().enumerate() {
            let log = worker.stderr_log();
            text.push_str(&format!(
                "--- openim-worker-example #{index} stderr ---\n{}--- its stdout ---\n{}",
                log.tail(TAIL_LINES),
                worker.stdout_log().tail(TAIL_LINES)
            ));
            log.mark_reported();
        }
        let nats = self.nats.stderr_log();
        text.push_str(&format!(
            "--- nats-server :{} stderr ---\n{}",
            self.nats.port(),
            nats.tail(TAIL_LINES)
        ));
        nats.mark_reported();
        text
    }

    /// The body of `response` as JSON, panicking with the diagnostics when it is not.
    pub fn json(&self, request: &HttpRequest, response: &HttpResponse) -> Value {
        response
            .json()
            .unwrap_or_else(|problem| panic!("{}", self.report(&problem, request, Some(response))))
    }
}
