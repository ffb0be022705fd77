//! The status page (`GET /`) and its figures (`GET /status.json`), and the admin listener
//! (`GATEWAY_ADMIN_LISTEN`), against a real nats-server, the real gateway and the example
//! worker; the page itself in headless Chromium over the DevTools protocol ([`crate::browser`];
//! scripts/test installs Debian's `chromium`), with screenshots in `target/status-page/`.

use std::time::{Duration, Instant};

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::gateway::LISTENING_PREFIX;
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{binaries, http, Gateway, HttpRequest, HttpResponse, NatsServer, Stack};
use serde_json::Value;

use crate::browser::{self, Browser};
use crate::SET_MEMBER;

/// What the gateway prints on stdout before its listening line, with `GATEWAY_ADMIN_LISTEN`.
const ADMIN_PREFIX: &str = "openim-gateway status page on http://";
/// How long the status page's probe may take to measure NATS after the start.
const PROBE_BOUND: Duration = Duration::from_secs(15);

fn seed() -> HttpRequest {
    HttpRequest::openim("", SET_MEMBER, SET_MEMBER_ROLE_ONLY)
}

/// `GET /status.json` at `address`, parsed.
async fn status_json(address: std::net::SocketAddr) -> Value {
    let response = http::get(address, "/status.json").await;
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{response}"
    );
    response.json().unwrap()
}

/// The entry of `command` in a `/status.json`.
fn command<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["commands"]
        .as_array()
        .and_then(|commands| commands.iter().find(|entry| entry["command"] == name))
        .unwrap_or_else(|| panic!("{name} is not in {status:#}"))
}

/// A count of `status.json`: `period` (`last_5m`, `since_start`) of `name` under `source`.
fn count(status: &Value, name: &str, period: &str, source: DecisionSource) -> u64 {
    command(status, name)[period]["by_source"][source.as_str()]
        .as_u64()
        .unwrap_or_else(|| panic!("no {period} count of {source} for {name} in {status:#}"))
}

/// Sends the seed callback `times` times; each must be answered by `source`.
async fn send_seed(stack: &Stack, times: usize, source: DecisionSource) {
    for _ in 0..times {
        let response = stack.send(&seed()).await;
        assert_eq!(response.status, 200, "{response}");
        assert_eq!(response.source(), Some(source.as_str()), "{response}");
    }
}

/// Polls `/status.json` until `ready` holds, at most `bound`; the last one read.
async fn status_when(
    address: std::net::SocketAddr,
    bound: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let status = status_json(address).await;
        if ready(&status) || start.elapsed() > bound {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_figures_move_with_callbacks_and_show_a_stopped_worker() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    let before = status_json(stack.gateway.address()).await;
    assert_eq!(
        count(&before, SET_MEMBER, "since_start", DecisionSource::Worker),
        0
    );
    assert_eq!(before["nats"]["connected"], true, "{before:#}");
    assert!(before["gateway"]["version"].is_string(), "{before:#}");

    send_seed(&stack, 3, DecisionSource::Worker).await;
    let after = status_json(stack.gateway.address()).await;
    for period in ["last_5m", "since_start"] {
        assert_eq!(
            count(&after, SET_MEMBER, period, DecisionSource::Worker),
            3,
            "{after:#}"
        );
        assert_eq!(
            command(&after, SET_MEMBER)[period]["answered"],
            3,
            "{after:#}"
        );
        assert_eq!(
            command(&after, SET_MEMBER)[period]["fallbacks"],
            0,
            "{after:#}"
        );
    }
    let seed_status = command(&after, SET_MEMBER);
    assert_eq!(seed_status["seen"], true);
    assert_eq!(seed_status["mode"], "enforce");
    assert_eq!(seed_status["default"], "allow");
    assert_eq!(seed_status["budget_ms"], 4750);
    assert!(
        seed_status["last_worker_reply_seconds_ago"]
            .as_f64()
            .unwrap()
            < 60.0
    );
    let p99 = seed_status["last_5m"]["latency_p99_ms"].as_f64().unwrap();
    assert!(p99 > 0.0 && p99 < 4750.0, "{seed_status:#}");

    // The worker stops: the next callback is a fallback, and the share says so.
    let mut worker = stack.workers.pop().unwrap();
    worker.terminate();
    assert_eq!(worker.wait_for_exit(Duration::from_secs(10)).await, Some(0));
    send_seed(&stack, 1, DecisionSource::NoResponders).await;
    let stopped = status_json(stack.gateway.address()).await;
    assert_eq!(
        count(
            &stopped,
            SET_MEMBER,
            "last_5m",
            DecisionSource::NoResponders
        ),
        1,
        "{stopped:#}"
    );
    assert_eq!(command(&stopped, SET_MEMBER)["last_5m"]["fallbacks"], 1);
    assert_eq!(
        command(&stopped, SET_MEMBER)["last_5m"]["fallback_share"],
        0.25
    );

    // The probe measures NATS in the background.
    let probed = status_when(stack.gateway.address(), PROBE_BOUND, |status| {
        status["nats"]["rtt_ms"].is_number() && status["nats"]["server_version"].is_string()
    })
    .await;
    assert!(
        probed["nats"]["rtt_ms"].as_f64().unwrap() >= 0.0,
        "{probed:#}"
    );
    assert!(probed["nats"]["server_version"].is_string(), "{probed:#}");

    // The page shows the same figures, as HTML.
    let page = http::get(stack.gateway.address(), "/").await;
    assert_eq!(page.status, 200, "{page}");
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(
        html.contains(&format!("data-command=\"{SET_MEMBER}\"")),
        "{html}"
    );
    assert_eq!(figure(&html, SET_MEMBER, "worker-5m"), Some(3), "{html}");
    assert_eq!(figure(&html, SET_MEMBER, "fallback-5m"), Some(1), "{html}");
    // `/status` leads there; `POST /` is still a callback without a command.
    let moved = http::get(stack.gateway.address(), "/status").await;
    assert!((300..400).contains(&moved.status), "{moved}");
    assert_eq!(moved.header("location"), Some("/"), "{moved}");
    let post = stack
        .send(&HttpRequest::post("/", SET_MEMBER_ROLE_ONLY))
        .await;
    assert_eq!(post.status, 404, "{post}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registered_worker_is_listed() {
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    let status = status_when(stack.gateway.address(), PROBE_BOUND, |status| {
        status["workers"]["registered"]
            .as_array()
            .is_some_and(|workers| !workers.is_empty())
    })
    .await;
    let workers = status["workers"]["registered"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{status:#}");
    assert_eq!(workers[0]["name"], "openim-worker-example", "{status:#}");
    assert!(
        workers[0]["commands"]
            .as_array()
            .unwrap()
            .contains(&Value::from(SET_MEMBER)),
        "{status:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_page_or_the_json() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        "authorization { user: operator7, password: \"s3cret-Pa55\" }\n",
    )
    .await;
    let url = nats.url_with("nats", "operator7:s3cret-Pa55@");
    let gateway = Gateway::start(&url, &[]).await;
    let status = status_when(gateway.address(), PROBE_BOUND, |status| {
        status["nats"]["connected"] == true && status["nats"]["server_version"].is_string()
    })
    .await;
    assert_eq!(status["nats"]["connected"], true, "{status:#}");
    assert_eq!(
        status["nats"]["servers"],
        serde_json::json!([format!("nats://127.0.0.1:{}", nats.port())]),
        "{status:#}"
    );
    for path in ["/", "/status.json"] {
        let response = http::get(gateway.address(), path).await;
        assert_eq!(response.status, 200, "{response}");
        let text = response.text();
        for secret in ["s3cret", "Pa55", "operator7"] {
            assert!(!text.contains(secret), "{path} shows {secret:?}:\n{text}");
        }
    }
}

/// The admin listener's address, from the line the gateway printed before its listening line.
fn admin_address(gateway: &Gateway) -> std::net::SocketAddr {
    let stdout = gateway.stdout_log().all();
    let line = stdout
        .lines()
        .find(|line| line.starts_with(ADMIN_PREFIX))
        .unwrap_or_else(|| panic!("no `{ADMIN_PREFIX}` line in:\n{stdout}"));
    line[ADMIN_PREFIX.len()..]
        .trim()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_takes_the_page_and_metrics_off_the_openim_listener() {
    let mut stack = Stack::start(&[("GATEWAY_ADMIN_LISTEN", "127.0.0.1:0")]).await;
    stack.add_example_worker(&[]).await;
    let admin = admin_address(&stack.gateway);
    let openim = stack.gateway.address();
    assert_ne!(admin, openim);

    // OpenIM's listener: callbacks and the probes only.
    send_seed(&stack, 2, DecisionSource::Worker).await;
    for path in ["/healthz", "/readyz"] {
        assert_eq!(http::get(openim, path).await.status, 200, "{path}");
    }
    for path in ["/", "/metrics", "/status.json", "/status"] {
        let response = http::get(openim, path).await;
        assert_eq!(response.status, 404, "{path}: {response}");
        assert!(
            !response.text().contains("openim_gateway_"),
            "{path}: {response}"
        );
    }

    // The admin listener: the page, its figures and the metrics; no callback.
    let page = http::get(admin, "/").await;
    assert_eq!(page.status, 200, "{page}");
    assert!(page.text().contains("<!doctype html>"), "{page}");
    let metrics = http::get(admin, "/metrics").await;
    assert_eq!(metrics.status, 200, "{metrics}");
    assert!(
        metrics.text().contains("openim_gateway_callbacks_total"),
        "{metrics}"
    );
    let status = status_json(admin).await;
    assert_eq!(
        count(&status, SET_MEMBER, "since_start", DecisionSource::Worker),
        2
    );
    let callback: HttpResponse = http::send(admin, &seed()).await.unwrap();
    assert_eq!(callback.status, 404, "{callback}");
    assert_eq!(callback.source(), None, "{callback}");
    assert_eq!(http::get(admin, "/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_admin_listen_address_stops_the_start() {
    for (value, rule) in [
        ("nope", "socket address"),
        ("127.0.0.1:10006", "must differ from GATEWAY_LISTEN"),
    ] {
        let report = Gateway::run_expecting_exit(&[
            ("GATEWAY_LISTEN", "127.0.0.1:10006"),
            ("GATEWAY_ADMIN_LISTEN", value),
        ])
        .await;
        assert!(!report.killed, "it started: {report:?}");
        assert_eq!(report.code, Some(2), "{report:?}");
        assert!(!report.stdout.contains(LISTENING_PREFIX), "{report:?}");
        let lines: Vec<&str> = report
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{report:?}");
        assert!(
            lines[0].contains("GATEWAY_ADMIN_LISTEN")
                && lines[0].contains(&format!("\"{value}\""))
                && lines[0].contains(rule),
            "{}",
            lines[0]
        );
    }
}

/// The number in `data-figure="{key}"` of the command's block of the page.
fn figure(html: &str, command: &str, key: &str) -> Option<u64> {
    let block = &html[html.find(&format!("<article class=\"cmd\" id=\"{command}\""))?..];
    let block = &block[..block.find("</article>")?];
    let marker = format!("data-figure=\"{key}\">");
    let rest = &block[block.find(&marker)? + marker.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_renders_in_headless_chromium_while_a_worker_stops_and_starts() {
    let Some(chromium) = browser::chromium() else {
        eprintln!(
            "SKIPPED: no chromium (set CHROMIUM_BIN or install Debian's chromium; scripts/test installs it)"
        );
        return;
    };
    let shots = binaries::workspace_root().join("target/status-page");
    std::fs::create_dir_all(&shots).unwrap();
    let mut stack = Stack::start(&[]).await;
    stack.add_example_worker(&[]).await;
    // A phone's viewport.
    let mut browser = Browser::start(&chromium, 412, 915).await;
    let url = stack.gateway.url("/");
    let mut rounds = Vec::new();
    for (step, source, sent) in [
        ("1-worker-running", DecisionSource::Worker, 2),
        ("2-worker-stopped", DecisionSource::NoResponders, 3),
        ("3-worker-restarted", DecisionSource::Worker, 1),
    ] {
        match step {
            "2-worker-stopped" => {
                let mut worker = stack.workers.pop().unwrap();
                worker.terminate();
                assert_eq!(worker.wait_for_exit(Duration::from_secs(10)).await, Some(0));
            }
            "3-worker-restarted" => stack.add_example_worker(&[]).await,
            _ => {}
        }
        send_seed(&stack, sent, source).await;
        let page = browser.load(&url).await;
        assert!(
            page.problems.is_empty(),
            "{step}: the page caused console messages, errors or failed loads:\n{}",
            page.problems.join("\n")
        );
        assert!(
            !page.overflows,
            "{step}: the page is wider than a phone's screen"
        );
        let shot = shots.join(format!("{step}.png"));
        browser.screenshot(&shot).await;
        rounds.push((
            step,
            figure(&page.html, SET_MEMBER, "worker-5m"),
            figure(&page.html, SET_MEMBER, "fallback-5m"),
        ));
    }
    // The DOM Chromium built shows the decisions move: worker answers, then fallbacks while
    // the worker is away, then worker answers again.
    assert_eq!(
        rounds,
        [
            ("1-worker-running", Some(2), Some(0)),
            ("2-worker-stopped", Some(2), Some(3)),
            ("3-worker-restarted", Some(3), Some(3)),
        ],
        "screenshots in {}",
        shots.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_which_callbacks_openim_enables_and_each_ones_policy() {
    let scratch = Scratch::new();
    let webhooks = scratch.write(
        "webhooks.yml",
        "url: http://127.0.0.1:10006/callbackExample\nbeforeSetGroupMemberInfo:\n  enable: true\n  timeout: 2\nbeforeSendSingleMsg:\n  enable: false\n  timeout: 5\n",
    );
    let policy = scratch.write(
        "policy.toml",
        &format!(
            "[commands.{SET_MEMBER}]\nmode = \"shadow\"\n\n[commands.callbackBeforeAddFriendCommand]\nmode = \"off\"\ndefault = \"reject\"\nreject_err_code = 5100\nreject_err_msg = \"friends are paused\"\n"
        ),
    );
    let mut stack = Stack::start(&[
        ("GATEWAY_OPENIM_WEBHOOKS", &webhooks),
        ("GATEWAY_CONFIG", &policy),
    ])
    .await;
    stack.add_example_worker(&[]).await;
    send_seed(&stack, 2, DecisionSource::Shadow).await;
    let status = status_json(stack.gateway.address()).await;
    assert_eq!(status["gateway"]["webhooks_known"], true, "{status:#}");
    let seed = command(&status, SET_MEMBER);
    assert_eq!(seed["enabled"], true, "{seed:#}");
    assert_eq!(seed["mode"], "shadow", "{seed:#}");
    assert_eq!(seed["budget_ms"], 1750, "{seed:#}");
    assert_eq!(seed["last_5m"]["by_source"]["shadow"], 2, "{seed:#}");
    // The example worker allows a role-only change, as the default does.
    assert_eq!(seed["last_5m"]["shadow"]["agree"], 2, "{seed:#}");
    let single = command(&status, "callbackBeforeSendSingleMsgCommand");
    assert_eq!(single["enabled"], false, "{single:#}");
    let friend = command(&status, "callbackBeforeAddFriendCommand");
    assert_eq!(friend["mode"], "off", "{friend:#}");
    assert_eq!(friend["default"], "reject", "{friend:#}");
    assert_eq!(friend["reject_err_code"], 5100, "{friend:#}");

    let html = http::get(stack.gateway.address(), "/").await.text();
    // In full: the enabled one and the one switched off; folded: the one never called nor enabled.
    for shown in [SET_MEMBER, "callbackBeforeAddFriendCommand"] {
        assert!(
            html.contains(&format!("<article class=\"cmd\" id=\"{shown}\"")),
            "{shown} is not shown in full:\n{html}"
        );
    }
    assert!(html.contains("<tr data-command=\"callbackBeforeSendSingleMsgCommand\">"));
    assert!(html.contains("reject 5100 friends are paused"), "{html}");
    assert!(html.contains("<th>shadow</th>"), "{html}");
}
