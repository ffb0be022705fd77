//! Headless Chromium driven over the DevTools protocol: load a page, collect every console
//! message, script exception, failed load and HTTP error status it caused, read the DOM
//! Chromium built, and take a screenshot. Used by the status page's test.
//!
//! Chromium is `CHROMIUM_BIN`, else `chromium` on `PATH` (scripts/test installs Debian's).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use openim_gateway_tests::scratch::Scratch;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// How long Chromium may take to start, and a page to load.
const BOUND: Duration = Duration::from_secs(60);
/// After the load event, how long late messages (a failed image, a deferred error) are
/// still collected.
const SETTLE: Duration = Duration::from_millis(500);

/// Headless Chromium: `CHROMIUM_BIN`, or `chromium` on `PATH`.
pub(crate) fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "CHROMIUM_BIN={} does not exist",
            path.display()
        );
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|path| path.is_file())
    })
}

/// What loading a page gave.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Console messages, exceptions, failed loads and responses of 400 or more, one line each.
    pub(crate) problems: Vec<String>,
    /// `document.documentElement.outerHTML` once loaded.
    pub(crate) html: String,
    /// Whether the page is wider than the viewport (it would scroll sideways on a phone).
    pub(crate) overflows: bool,
}

/// One headless Chromium with one tab, attached over the DevTools protocol.
pub(crate) struct Browser {
    child: tokio::process::Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// Events read while waiting for a call's answer, in order.
    events: Vec<Value>,
    _profile: Scratch,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl Browser {
    /// Starts `chromium` headless with a tab the size of a phone (`width` x `height` CSS
    /// pixels, a mobile viewport).
    pub(crate) async fn start(chromium: &Path, width: u32, height: u32) -> Self {
        let profile = Scratch::new();
        let child = tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", chromium.display()));
        // Chromium writes the port it picked, and the browser's endpoint, to this file.
        let active_port = profile.path().join("DevToolsActivePort");
        let start = Instant::now();
        let endpoint = loop {
            if let Ok(text) = std::fs::read_to_string(&active_port) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break format!("ws://127.0.0.1:{port}{path}");
                }
            }
            assert!(
                start.elapsed() < BOUND,
                "chromium wrote no DevToolsActivePort within {BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (socket, _) = ClientBuilder::new()
            .uri(&endpoint)
            .unwrap()
            .connect()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {endpoint}: {error}"));
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        for domain in ["Page", "Runtime", "Log", "Network"] {
            browser.call(&format!("{domain}.enable"), json!({})).await;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": true}),
            )
            .await;
        browser
    }

    /// Sends one command (to the tab once attached) and waits for its answer; events read
    /// meanwhile are kept.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            command["sessionId"] = Value::from(self.session.clone());
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap_or_else(|error| panic!("cannot send {method}: {error}"));
        let until = Instant::now() + BOUND;
        loop {
            let message = self
                .next_message(until)
                .await
                .unwrap_or_else(|| panic!("no answer to {method} within {BOUND:?}"));
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method} failed: {message}");
                return message["result"].clone();
            }
            self.events.push(message);
        }
    }

    /// The next protocol message before `until`.
    async fn next_message(&mut self, until: Instant) -> Option<Value> {
        loop {
            let left = until.checked_duration_since(Instant::now())?;
            let message = tokio::time::timeout(left, self.socket.next())
                .await
                .ok()??
                .ok()?;
            if let Some(text) = message.as_text() {
                return serde_json::from_str(text).ok();
            }
        }
    }

    /// Loads `url` and waits for its load event, then a moment longer.
    pub(crate) async fn load(&mut self, url: &str) -> Loaded {
        self.events.clear();
        self.call("Page.navigate", json!({"url": url})).await;
        let until = Instant::now() + BOUND;
        while !self
            .events
            .iter()
            .any(|event| event["method"] == "Page.loadEventFired")
        {
            let event = self
                .next_message(until)
                .await
                .unwrap_or_else(|| panic!("{url} did not load within {BOUND:?}"));
            self.events.push(event);
        }
        let settled = Instant::now() + SETTLE;
        while let Some(event) = self.next_message(settled).await {
            self.events.push(event);
        }
        let html = self
            .evaluate("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let overflows = self
            .evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
            .await
            .as_bool()
            .unwrap_or(true);
        let problems = self.events.iter().filter_map(problem).collect();
        Loaded {
            problems,
            html,
            overflows,
        }
    }

    async fn evaluate(&mut self, expression: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        )
        .await["result"]["value"]
            .clone()
    }

    /// A PNG of the whole page as laid out now, written to `path`.
    pub(crate) async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = data_encoding::BASE64
            .decode(shot["data"].as_str().unwrap_or_default().as_bytes())
            .expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png)
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    }
}

/// The line an event deserves in a page's problems, if it is one.
fn problem(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        // The page has no script: any console call at all is a problem.
        "Runtime.consoleAPICalled" => Some(format!(
            "console.{}: {}",
            params["type"].as_str().unwrap_or("?"),
            params["args"]
        )),
        "Runtime.exceptionThrown" => Some(format!("exception: {}", params["exceptionDetails"])),
        // What Chromium itself reports to the console: failed loads, blocked content,
        // violations.
        "Log.entryAdded" => {
            let entry = &params["entry"];
            matches!(entry["level"].as_str(), Some("error" | "warning")).then(|| {
                format!(
                    "{} {}: {} {}",
                    entry["source"].as_str().unwrap_or("?"),
                    entry["level"].as_str().unwrap_or("?"),
                    entry["text"].as_str().unwrap_or("?"),
                    entry["url"].as_str().unwrap_or("")
                )
            })
        }
        "Network.loadingFailed" => Some(format!(
            "load failed: {} ({})",
            params["errorText"].as_str().unwrap_or("?"),
            params["type"].as_str().unwrap_or("?")
        )),
        "Network.responseReceived" => {
            let response = &params["response"];
            let status = response["status"].as_u64()?;
            (status >= 400).then(|| {
                format!(
                    "HTTP {status} for {}",
                    response["url"].as_str().unwrap_or("?")
                )
            })
        }
        _ => None,
    }
}
