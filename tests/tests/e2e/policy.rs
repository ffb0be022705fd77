//! The policy file (`GATEWAY_CONFIG`): `off` answers the command's own default without
//! asking anyone, `shadow` asks the worker, answers the default and counts how often the two
//! disagreed, the file's `timeout_ms` wins over `webhooks.yml`, and a bad file (or a budget
//! above OpenIM's own timeout) stops the start naming the file, the key and the rule.
//! `openim-gateway check-config` checks the files and exits.

use std::time::{Duration, Instant};

use openim_gateway_proto::DecisionSource;
use openim_gateway_tests::fixtures::SET_MEMBER_ROLE_ONLY;
use openim_gateway_tests::gateway::LISTENING_PREFIX;
use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{metrics, Behaviour, Gateway, HttpRequest, ScriptedWorker, Stack};
use serde_json::Value;

use crate::{answered_by_the_budget, LATE_SLACK, SET_MEMBER};

fn member_request() -> HttpRequest {
    HttpRequest::openim("/callbackExample", SET_MEMBER, SET_MEMBER_ROLE_ONLY)
}

fn body(response: &openim_gateway_tests::HttpResponse) -> Value {
    serde_json::from_slice(&response.body).expect("a JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_answers_the_commands_own_default_without_asking() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!(
            "[commands.{SET_MEMBER}]\nmode = \"off\"\ndefault = \"reject\"\nreject_err_code = 5100\nreject_err_msg = \"member changes are paused\"\n"
        ),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let observer =
        ScriptedWorker::observer(&stack.nats.url(), &format!("openim.callback.{SET_MEMBER}")).await;
    let response = stack.send(&member_request()).await;
    assert_eq!(
        response.source(),
        Some(DecisionSource::Off.as_str()),
        "{response:?}"
    );
    let answer = body(&response);
    assert_eq!(answer["errCode"], 5100, "{answer}");
    assert_eq!(answer["errMsg"], "member changes are paused", "{answer}");
    observer.settle().await;
    assert!(observer.received().is_empty(), "the worker was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejecting_section_falls_back_to_the_global_reject_code_and_message() {
    // The global default stays allow; only the section rejects, without its own code or
    // message: [global]'s apply, and the environment's over them.
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!(
            "[global]\nreject_err_code = 5100\nreject_err_msg = \"global msg\"\n\n[commands.{SET_MEMBER}]\nmode = \"off\"\ndefault = \"reject\"\n"
        ),
    );
    let from_env = [
        ("GATEWAY_REJECT_ERR_CODE", "5200"),
        ("GATEWAY_REJECT_ERR_MSG", "env msg"),
    ];
    for (env, code, message) in [
        (&[][..], 5100, "global msg"),
        (&from_env[..], 5200, "env msg"),
    ] {
        let mut settings = vec![("GATEWAY_CONFIG", policy.as_str())];
        settings.extend_from_slice(env);
        let stack = Stack::start(&settings).await;
        let response = stack.send(&member_request()).await;
        assert_eq!(
            response.source(),
            Some(DecisionSource::Off.as_str()),
            "{response:?}"
        );
        let answer = body(&response);
        assert_eq!(answer["errCode"], code, "{env:?}: {answer}");
        assert_eq!(answer["errMsg"], message, "{env:?}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_asks_the_worker_answers_the_default_and_counts_disagreements() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!("[global]\ndefault = \"allow\"\n\n[commands.{SET_MEMBER}]\nmode = \"shadow\"\n"),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let worker = ScriptedWorker::start(
        &stack.nats.url(),
        &format!("openim.callback.{SET_MEMBER}"),
        Behaviour::reply(
            r#"{"actionCode":0,"errCode":5555,"errMsg":"no","errDlt":"","nextCode":1}"#,
        ),
    )
    .await;
    for _ in 0..2 {
        let response = stack.send(&member_request()).await;
        assert_eq!(
            response.source(),
            Some(DecisionSource::Shadow.as_str()),
            "{response:?}"
        );
        let answer = body(&response);
        assert_eq!(
            answer["errCode"], 0,
            "the default (allow) is answered: {answer}"
        );
        assert_eq!(answer["nextCode"], 0, "{answer}");
    }
    assert_eq!(worker.received().len(), 2, "the worker is asked every time");
    let disagreed = metrics::sum(
        &stack.metrics().await,
        "openim_gateway_shadow_decisions_total",
        &[("command", SET_MEMBER), ("outcome", "disagree")],
    );
    assert!(
        (disagreed - 2.0).abs() < f64::EPSILON,
        "{disagreed} disagreements counted, expected 2"
    );
    // At the default log level (info), a summary per command every 10 s.
    let log = stack.gateway.stderr_log();
    let summary = || {
        log.lines().into_iter().any(|line| {
            line.contains("INFO")
                && line.contains("shadow mode")
                && line.contains(SET_MEMBER)
                && line.contains("agree=0")
                && line.contains("disagree=2")
                && line.contains("no_decision=0")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !summary() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(summary(), "{}", log.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_timeout_wins_over_webhooks_yml() {
    let scratch = Scratch::new();
    let webhooks = scratch.write(
        "webhooks.yml",
        "beforeSetGroupMemberInfo:\n  enable: true\n  timeout: 2\n",
    );
    let policy = scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\ntimeout_ms = 600\n"),
    );
    let stack = Stack::start(&[
        ("GATEWAY_OPENIM_WEBHOOKS", &webhooks),
        ("GATEWAY_CONFIG", &policy),
        ("GATEWAY_SAFETY_MARGIN_MS", "100"),
    ])
    .await;
    let _hung = stack.scripted(Behaviour::Hang).await;
    let (_, took) = answered_by_the_budget(&stack, &member_request()).await;
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(500) + LATE_SLACK,
        "answered after {took:?}, expected about 500 ms (600 - 100)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_overrides_the_files_global_section() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        "[global]\ndefault = \"reject\"\nreject_err_code = 5100\ntimeout_ms = 1000\n",
    );
    // (environment, errCode, expected wait): the file's [global] without the environment,
    // the environment's values over it.
    let from_env = [
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "500"),
        ("GATEWAY_REJECT_ERR_CODE", "5200"),
    ];
    for (env, code, wait_ms) in [(&[][..], 5100, 900), (&from_env[..], 5200, 400)] {
        let mut settings = vec![
            ("GATEWAY_CONFIG", policy.as_str()),
            ("GATEWAY_SAFETY_MARGIN_MS", "100"),
        ];
        settings.extend_from_slice(env);
        let stack = Stack::start(&settings).await;
        let _hung = stack.scripted(Behaviour::Hang).await;
        let (response, took) = answered_by_the_budget(&stack, &member_request()).await;
        assert_eq!(body(&response)["errCode"], code, "{env:?}: {response:?}");
        let wait = Duration::from_millis(wait_ms);
        assert!(
            took >= wait - Duration::from_millis(50) && took < wait + LATE_SLACK,
            "{env:?}: answered after {took:?}, expected about {wait:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_policy_file_stops_the_start_naming_the_file_the_key_and_the_rule() {
    let scratch = Scratch::new();
    let webhooks = scratch.write(
        "webhooks.yml",
        "beforeSetGroupMemberInfo:\n  enable: true\n  timeout: 2\n",
    );
    let cases = [
        ("[global]\nmood = \"off\"\n".to_owned(), "mood"),
        (
            "[commands.callbackNoSuchCommand]\nmode = \"off\"\n".to_owned(),
            "commands.callbackNoSuchCommand",
        ),
        (
            format!("[commands.{SET_MEMBER}]\nreject_err_code = \"5001\"\n"),
            "reject_err_code = \"5001\": must be an integer in 5000..=9999",
        ),
        (
            format!("[commands.{SET_MEMBER}]\ntimeout_ms = 2.5\n"),
            "timeout_ms = 2.5: must be an integer in 1..=15000",
        ),
        ("[global\n".to_owned(), "line 1"),
        (
            format!("[commands.{SET_MEMBER}]\nreject_err_code = 4000\n"),
            "5000..=9999",
        ),
        (
            format!("[commands.{SET_MEMBER}]\nmode = \"loud\"\n"),
            "enforce, shadow or off",
        ),
        (
            format!("[commands.{SET_MEMBER}]\ntimeout_ms = 3000\n"),
            "OpenIM's own timeout",
        ),
    ];
    for (index, (text, shown)) in cases.iter().enumerate() {
        let path = scratch.write(&format!("bad-{index}.toml"), text);
        let report = Gateway::run_expecting_exit(&[
            ("GATEWAY_CONFIG", &path),
            ("GATEWAY_OPENIM_WEBHOOKS", &webhooks),
        ])
        .await;
        assert_eq!(report.code, Some(2), "{text}: {report:?}");
        assert!(!report.stdout.contains(LISTENING_PREFIX), "{report:?}");
        let lines: Vec<&str> = report.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{text}: {report:?}");
        assert!(
            lines[0].contains("GATEWAY_CONFIG=")
                && lines[0].contains(&path)
                && lines[0].contains(shown),
            "{text}: {}",
            lines[0]
        );
    }

    // Every mistake of one file at once, one line each, each naming the file and the key.
    let text = format!(
        "[global]\nmode = \"sideways\"\n\n[commands.{SET_MEMBER}]\nreject_err_code = 42\ntimeout_ms = 2.5\n\n[commands.callbackNoSuchCommand]\nmode = \"off\"\n"
    );
    let path = scratch.write("bad-all.toml", &text);
    let report = Gateway::run_expecting_exit(&[("GATEWAY_CONFIG", &path)]).await;
    assert_eq!(report.code, Some(2), "{report:?}");
    let lines: Vec<&str> = report.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{report:?}");
    for key in [
        "global.mode = \"sideways\"".to_owned(),
        format!("commands.{SET_MEMBER}.reject_err_code = 42"),
        format!("commands.{SET_MEMBER}.timeout_ms = 2.5"),
        "commands.callbackNoSuchCommand".to_owned(),
    ] {
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.contains("GATEWAY_CONFIG=")
                    && line.contains(&path)
                    && line.contains(&key))
                .count(),
            1,
            "{key}: {report:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_validates_the_files_and_exits() {
    let scratch = Scratch::new();
    let good = scratch.write(
        "policy.toml",
        &format!(
            "[global]\nmode = \"off\"\n\n[commands.{SET_MEMBER}]\nmode = \"shadow\"\ntimeout_ms = 12000\n"
        ),
    );
    let report =
        Gateway::run_args_expecting_exit(&["check-config"], &[("GATEWAY_CONFIG", &good)]).await;
    assert_eq!(report.code, Some(0), "{report:?}");
    assert!(!report.stdout.contains(LISTENING_PREFIX), "{report:?}");
    assert!(
        report.stdout.contains("the configuration is valid"),
        "{report:?}"
    );
    assert!(
        report
            .stdout
            .lines()
            .any(|line| line.starts_with(SET_MEMBER) && line.contains(r#"mode = "shadow""#)),
        "{report:?}"
    );
    // The global policy, which every command the file does not name gets.
    assert!(
        report
            .stdout
            .lines()
            .any(|line| line
                == r#"global (every command not named below): mode = "off", default = "allow", budget 4750 ms"#),
        "{report:?}"
    );
    // Without webhooks.yml, a timeout above GATEWAY_CALLBACK_TIMEOUT_MS cannot be checked
    // against OpenIM's: a warning, here and in the log of a start.
    let warned = |text: &str| {
        text.lines().any(|line| {
            line.contains(&format!("commands.{SET_MEMBER}.timeout_ms = 12000"))
                && line.contains("GATEWAY_OPENIM_WEBHOOKS")
        })
    };
    assert!(warned(&report.stdout), "{report:?}");
    let nats = openim_gateway_tests::NatsServer::not_started();
    let gateway = Gateway::start(
        &nats.url(),
        &[
            ("GATEWAY_CONFIG", &good),
            ("GATEWAY_SHUTDOWN_DELAY_MS", "0"),
        ],
    )
    .await;
    let log = gateway.stderr_log().all();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && warned(line)),
        "{log}"
    );
    drop(gateway);
    let bad = scratch.write("bad.toml", "[commands]\nx = 1\n");
    let report =
        Gateway::run_args_expecting_exit(&["check-config"], &[("GATEWAY_CONFIG", &bad)]).await;
    assert_eq!(report.code, Some(2), "{report:?}");
    assert!(report.stderr.contains("GATEWAY_CONFIG="), "{report:?}");
}

/// Sends SIGHUP to the gateway.
fn hang_up(gateway: &Gateway) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gateway.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_a_bad_file_keeps_the_running_one() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"off\"\n"),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let _worker = ScriptedWorker::start(
        &stack.nats.url(),
        &format!("openim.callback.{SET_MEMBER}"),
        Behaviour::reply(r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#),
    )
    .await;
    let source = |response: &openim_gateway_tests::HttpResponse| {
        response.source().unwrap_or_default().to_owned()
    };
    let worker = DecisionSource::Worker.as_str();
    assert_eq!(
        source(&stack.send(&member_request()).await),
        DecisionSource::Off.as_str()
    );

    scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"enforce\"\n"),
    );
    hang_up(&stack.gateway);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = String::new();
    while Instant::now() < deadline {
        last = source(&stack.send(&member_request()).await);
        if last == worker {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last, worker, "the reload did not take effect");

    scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"sideways\"\n"),
    );
    hang_up(&stack.gateway);
    let log = stack.gateway.stderr_log();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.all().contains("configuration not reloaded") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = log.all();
    assert!(
        text.lines()
            .any(|line| line.contains("configuration not reloaded") && line.contains("sideways")),
        "{text}"
    );
    assert_eq!(source(&stack.send(&member_request()).await), worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_in_flight_is_dropped_by_a_reload() {
    const IN_FLIGHT: usize = 20;
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"enforce\"\n"),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let worker = ScriptedWorker::start(
        &stack.nats.url(),
        &format!("openim.callback.{SET_MEMBER}"),
        Behaviour::reply_after(
            Duration::from_millis(1500),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#,
        ),
    )
    .await;
    let address = stack.gateway.address();
    let request = member_request();
    let answers = tokio::spawn(async move {
        futures::future::join_all(
            (0..IN_FLIGHT).map(|_| openim_gateway_tests::http::send(address, &request)),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(1);
    while worker.received().len() < IN_FLIGHT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(worker.received().len(), IN_FLIGHT, "not all in flight");

    // A bad file, then a good one, while every callback waits for the worker.
    let log = stack.gateway.stderr_log();
    let wait_for = |text: &'static str| async move {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !log.all().contains(text) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(log.all().contains(text), "{}", log.all());
    };
    scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"sideways\"\n"),
    );
    hang_up(&stack.gateway);
    wait_for("configuration not reloaded").await;
    scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"off\"\n"),
    );
    hang_up(&stack.gateway);
    wait_for("policy reloaded").await;
    assert!(
        !answers.is_finished(),
        "the reloads were not done while the callbacks were in flight"
    );

    let answers = answers.await.expect("the senders ran");
    for answer in &answers {
        let answer = answer.as_ref().expect("an answer");
        assert_eq!(
            answer.source(),
            Some(DecisionSource::Worker.as_str()),
            "{answer:?}"
        );
    }
    assert_eq!(answers.len(), IN_FLIGHT);
    // The reload took effect for what came after.
    assert_eq!(
        stack.send(&member_request()).await.source(),
        Some(DecisionSource::Off.as_str())
    );
}

/// A reload that changes the global default also changes the answer to requests refused
/// before their command is known (an unknown command gets the global default as its body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_global_default_answers_requests_refused_before_their_command_is_known() {
    let scratch = Scratch::new();
    let policy = scratch.write("policy.toml", "[global]\ndefault = \"allow\"\n");
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let unknown = || {
        HttpRequest::openim(
            "/callbackExample",
            "callbackBeforeSomethingNewCommand",
            r#"{"callbackCommand":"callbackBeforeSomethingNewCommand"}"#,
        )
    };
    let before = stack.send(&unknown()).await;
    assert_eq!(body(&before)["errCode"], 0, "{before:?}");

    scratch.write(
        "policy.toml",
        "[global]\ndefault = \"reject\"\nreject_err_code = 5123\n",
    );
    hang_up(&stack.gateway);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut code = Value::Null;
    while Instant::now() < deadline {
        code = body(&stack.send(&unknown()).await)["errCode"].clone();
        if code == 5123 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, 5123, "the reloaded global default was not used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_tells_a_modification_from_an_agreement() {
    // Default allow: a worker that allows unchanged agrees, one that allows with a changed
    // field modifies (OpenIM would have received another answer), one that refuses disagrees.
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!("[global]\ndefault = \"allow\"\n\n[commands.{SET_MEMBER}]\nmode = \"shadow\"\n"),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    let request = HttpRequest::openim(
        "/callbackExample",
        SET_MEMBER,
        openim_gateway_tests::fixtures::SET_MEMBER_ALL_FIELDS,
    );
    let subject = format!("openim.callback.{SET_MEMBER}");
    for (reply, sent) in [
        (r#"{"actionCode":0,"nextCode":0,"nickName":"Robert"}"#, 2),
        (
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#,
            1,
        ),
        (r#"{"actionCode":0,"nextCode":0,"nickName":"Bob"}"#, 1),
        (
            r#"{"actionCode":0,"nextCode":1,"errCode":5555,"errMsg":"no"}"#,
            1,
        ),
    ] {
        let worker =
            ScriptedWorker::start(&stack.nats.url(), &subject, Behaviour::reply(reply)).await;
        for _ in 0..sent {
            let response = stack.send(&request).await;
            assert_eq!(
                response.source(),
                Some(DecisionSource::Shadow.as_str()),
                "{response:?}"
            );
            let answer = body(&response);
            // The default allow is answered: nothing of the worker's reaches OpenIM.
            assert!(answer.get("nickName").is_none(), "{answer}");
            assert_eq!(answer["nextCode"], 0, "{answer}");
        }
        assert_eq!(worker.received().len(), sent, "{reply}");
        worker.stop().await;
    }
    let samples = stack.metrics().await;
    let counted = |outcome: &str| {
        metrics::sum(
            &samples,
            "openim_gateway_shadow_decisions_total",
            &[("command", SET_MEMBER), ("outcome", outcome)],
        )
    };
    // "Bob" is the request's own nickName: setting it again changes nothing.
    for (outcome, expected) in [
        ("modify", 2.0),
        ("agree", 2.0),
        ("disagree", 1.0),
        ("no_decision", 0.0),
    ] {
        assert!(
            (counted(outcome) - expected).abs() < f64::EPSILON,
            "{outcome}: {} counted, expected {expected}",
            counted(outcome)
        );
    }
    let summary = |line: &str| {
        line.contains("shadow mode")
            && line.contains(SET_MEMBER)
            && line.contains("agree=2")
            && line.contains("disagree=1")
            && line.contains("modify=2")
    };
    assert!(
        stack.gateway.logged(Duration::from_secs(15), summary).await,
        "{}",
        stack.gateway.stderr_log().all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_what_changed_for_each_command() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"enforce\"\n"),
    );
    let stack = Stack::start(&[("GATEWAY_CONFIG", &policy)]).await;
    // The start names the file's command in the file's words.
    let started = r#"mode = "enforce", default = "allow", budget 4750 ms"#;
    assert!(
        stack
            .gateway
            .logged(Duration::from_secs(5), |line| line.contains(SET_MEMBER)
                && line.contains(started))
            .await,
        "{}",
        stack.gateway.stderr_log().all()
    );
    scratch.write(
        "policy.toml",
        &format!(
            "[commands.{SET_MEMBER}]\nmode = \"shadow\"\ndefault = \"reject\"\nreject_err_code = 5101\nreject_err_msg = \"paused\"\ntimeout_ms = 2000\n"
        ),
    );
    let budget = |samples: &[openim_gateway_tests::metrics::Sample]| {
        metrics::sum(
            samples,
            "openim_gateway_budget_seconds",
            &[("command", SET_MEMBER)],
        )
    };
    assert!((budget(&stack.metrics().await) - 4.75).abs() < 1e-9);
    hang_up(&stack.gateway);
    let changed = format!(
        r#"{SET_MEMBER}: mode = "enforce", default = "allow", budget 4750 ms -> mode = "shadow", default = "reject", reject_err_code = 5101, reject_err_msg = "paused", budget 1750 ms"#
    );
    assert!(
        stack
            .gateway
            .logged(Duration::from_secs(5), |line| line.contains(&changed))
            .await,
        "{}",
        stack.gateway.stderr_log().all()
    );
    assert!(
        stack
            .gateway
            .logged(Duration::from_secs(5), |line| line
                .contains("policy reloaded")
                && line.contains("changed=1"))
            .await,
        "{}",
        stack.gateway.stderr_log().all()
    );
    // The exported budget follows the reload.
    let after = budget(&stack.metrics().await);
    assert!((after - 1.75).abs() < 1e-9, "{after}");
    // The same file again: nothing changed, and the log says so.
    hang_up(&stack.gateway);
    assert!(
        stack
            .gateway
            .logged(Duration::from_secs(5), |line| line
                .contains("policy reloaded: nothing changed"))
            .await,
        "{}",
        stack.gateway.stderr_log().all()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_says_what_webhooks_yml_enables_and_in_the_files_words() {
    let scratch = Scratch::new();
    // OpenIM's stock file: every callback off.
    let stock = scratch.write(
        "stock.yml",
        "url: http://127.0.0.1:10006/callbackExample\nbeforeSendSingleMsg:\n  enable: false\n  timeout: 5\nbeforeSetGroupMemberInfo:\n  enable: false\n  timeout: 5\nafterSendSingleMsg:\n  enable: false\n  timeout: 5\n",
    );
    let report =
        Gateway::run_args_expecting_exit(&["check-config"], &[("GATEWAY_OPENIM_WEBHOOKS", &stock)])
            .await;
    assert_eq!(report.code, Some(0), "{report:?}");
    assert!(
        report
            .stdout
            .lines()
            .any(|line| line.starts_with("warning: ")
                && line.contains("enables none of its 3 callbacks")),
        "{report:?}"
    );
    // No command line: none is called.
    assert!(
        !report
            .stdout
            .lines()
            .any(|line| line.starts_with("callback")),
        "{report:?}"
    );
    // The running gateway warns too.
    let nats = openim_gateway_tests::NatsServer::not_started();
    let gateway = Gateway::start(
        &nats.url(),
        &[
            ("GATEWAY_OPENIM_WEBHOOKS", &stock),
            ("GATEWAY_SHUTDOWN_DELAY_MS", "0"),
        ],
    )
    .await;
    assert!(
        gateway
            .logged(Duration::from_secs(5), |line| line.contains("WARN")
                && line.contains("enables none of its 3 callbacks"))
            .await,
        "{}",
        gateway.stderr_log().all()
    );
    drop(gateway);

    let some = scratch.write(
        "some.yml",
        "beforeSendSingleMsg:\n  enable: true\n  timeout: 5\nbeforeSetGroupMemberInfo:\n  enable: true\n  timeout: 2\nafterSendSingleMsg:\n  enable: false\n",
    );
    let policy = scratch.write(
        "policy.toml",
        &format!("[commands.{SET_MEMBER}]\nmode = \"shadow\"\ndefault = \"reject\"\nreject_err_code = 5101\n"),
    );
    let report = Gateway::run_args_expecting_exit(
        &["check-config"],
        &[
            ("GATEWAY_OPENIM_WEBHOOKS", &some),
            ("GATEWAY_CONFIG", &policy),
        ],
    )
    .await;
    assert_eq!(report.code, Some(0), "{report:?}");
    let lines: Vec<&str> = report.stdout.lines().collect();
    assert!(
        lines.contains(
            &"OpenIM's webhooks.yml enables 2 of 3 callbacks: beforeSendSingleMsg, beforeSetGroupMemberInfo"
        ),
        "{report:?}"
    );
    let member = format!(
        r#"{SET_MEMBER}: mode = "shadow", default = "reject", reject_err_code = 5101, reject_err_msg = "rejected: decision service unavailable", budget 1750 ms (enabled in webhooks.yml)"#
    );
    assert!(lines.contains(&member.as_str()), "{report:?}");
    assert!(
        lines.contains(
            &r#"callbackBeforeSendSingleMsgCommand: mode = "enforce", default = "allow", budget 4750 ms (enabled in webhooks.yml)"#
        ),
        "{report:?}"
    );
    // No Rust debug text anywhere.
    assert!(
        !report.stdout.contains("Reject {") && !report.stdout.contains("mode="),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_command_in_the_policy_file_gets_a_did_you_mean() {
    let scratch = Scratch::new();
    let policy = scratch.write(
        "policy.toml",
        "[commands.callbackBeforeSendSingelMsgCommand]\nmode = \"off\"\n",
    );
    let report =
        Gateway::run_args_expecting_exit(&["check-config"], &[("GATEWAY_CONFIG", &policy)]).await;
    assert_eq!(report.code, Some(2), "{report:?}");
    assert!(
        report.stderr.lines().any(|line| line
            .contains("commands.callbackBeforeSendSingelMsgCommand: unknown command")
            && line.ends_with("did you mean callbackBeforeSendSingleMsgCommand?")),
        "{report:?}"
    );
}
