//! Bad configuration stops the start before anything binds: exit code 2 and one stderr line
//! naming the variable and the value. Boundary values start normally.

use openim_gateway_tests::gateway::LISTENING_PREFIX;
use openim_gateway_tests::{Expect, Gateway, HttpRequest, NatsServer};

/// One bad setting: the environment, the variable the line must name, and the value it
/// must show (`None` where showing it would be wrong: a secret is never printed).
struct BadSetting {
    settings: Vec<(&'static str, &'static str)>,
    variable: &'static str,
    shown_value: Option<&'static str>,
}

fn bad(variable: &'static str, value: &'static str) -> BadSetting {
    BadSetting {
        settings: vec![(variable, value)],
        variable,
        shown_value: Some(value),
    }
}

fn bad_settings() -> Vec<BadSetting> {
    vec![
        bad("GATEWAY_CALLBACK_TIMEOUT_MS", "0"),
        bad("GATEWAY_CALLBACK_TIMEOUT_MS", "15001"),
        bad("GATEWAY_CALLBACK_TIMEOUT_MS", "abc"),
        bad("GATEWAY_CALLBACK_TIMEOUT_MS", "-5"),
        BadSetting {
            settings: vec![
                ("GATEWAY_CALLBACK_TIMEOUT_MS", "1000"),
                ("GATEWAY_SAFETY_MARGIN_MS", "1000"),
            ],
            variable: "GATEWAY_SAFETY_MARGIN_MS",
            shown_value: Some("1000"),
        },
        BadSetting {
            settings: vec![("GATEWAY_SAFETY_MARGIN_MS", "6000")],
            variable: "GATEWAY_SAFETY_MARGIN_MS",
            shown_value: Some("6000"),
        },
        bad("GATEWAY_DEFAULT_DECISION", "maybe"),
        bad("GATEWAY_REJECT_ERR_CODE", "4999"),
        bad("GATEWAY_REJECT_ERR_CODE", "10000"),
        bad("GATEWAY_REJECT_ERR_CODE", "x"),
        bad("GATEWAY_REJECT_ERR_MSG", ""),
        BadSetting {
            settings: vec![("GATEWAY_WEBHOOK_SECRET", "abcdefghijklmno")],
            variable: "GATEWAY_WEBHOOK_SECRET",
            shown_value: None,
        },
        BadSetting {
            settings: vec![("GATEWAY_WEBHOOK_SECRET", "a/bcdefghijklmnopqrstuvw")],
            variable: "GATEWAY_WEBHOOK_SECRET",
            shown_value: None,
        },
        bad("GATEWAY_MAX_BODY_BYTES", "1023"),
        bad("GATEWAY_MAX_BODY_BYTES", "67108865"),
        bad("GATEWAY_LISTEN", "nope"),
        bad("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
        bad(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "grpc://collector:4317",
        ),
        bad("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        bad("OTEL_SDK_DISABLED", "yes"),
        bad("GATEWAY_SUBJECT_PREFIX", "a.*"),
        bad("GATEWAY_SUBJECT_PREFIX", "a..b"),
        bad("GATEWAY_SUBJECT_PREFIX", "a.>"),
        bad("NATS_URL", ""),
        bad("RUST_LOG", "=[bad"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_with_one_line_naming_the_variable() {
    let mut failures = Vec::new();
    for case in bad_settings() {
        let report = Gateway::run_expecting_exit(&case.settings).await;
        let lines: Vec<&str> = report
            .stderr
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect();
        let mut problems = Vec::new();
        if report.killed {
            problems.push("it kept running (killed after the bound)".to_owned());
        } else if report.code != Some(2) {
            problems.push(format!("exit code {:?}, expected 2", report.code));
        }
        if report.stdout.contains(LISTENING_PREFIX) {
            problems.push("it bound a socket (printed its listening line)".to_owned());
        }
        if lines.len() != 1 {
            problems.push(format!("{} stderr lines, expected exactly 1", lines.len()));
        }
        let first = lines.first().copied().unwrap_or_default();
        if !first.contains(case.variable) {
            problems.push(format!("the line does not name {}", case.variable));
        }
        if let Some(value) = case.shown_value {
            if !first.contains(&format!("\"{value}\"")) && !first.contains(value) {
                problems.push(format!("the line does not show the value {value:?}"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{:?}: {}\n  stdout: {:?}\n  stderr: {:?}",
                case.settings,
                problems.join("; "),
                report.stdout,
                report.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} bad settings were not refused as the contract says:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_configuration_values_start_normally() {
    // Nothing needs NATS here: the gateway must start (and stay healthy) without it.
    let nats = NatsServer::not_started();
    let upper: &[(&str, &str)] = &[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "15000"),
        ("GATEWAY_SAFETY_MARGIN_MS", "14999"),
        ("GATEWAY_DEFAULT_DECISION", "reject"),
        ("GATEWAY_REJECT_ERR_CODE", "9999"),
        ("GATEWAY_REJECT_ERR_MSG", "x"),
        ("GATEWAY_WEBHOOK_SECRET", "aB3-_aB3-_aB3-_a"),
        ("GATEWAY_MAX_BODY_BYTES", "67108864"),
        ("GATEWAY_SUBJECT_PREFIX", "tenant-1.im_callbacks"),
        ("RUST_LOG", "warn,openim_gateway=debug"),
    ];
    let lower: &[(&str, &str)] = &[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "1"),
        ("GATEWAY_SAFETY_MARGIN_MS", "0"),
        ("GATEWAY_DEFAULT_DECISION", "allow"),
        ("GATEWAY_REJECT_ERR_CODE", "5000"),
        ("GATEWAY_MAX_BODY_BYTES", "1024"),
        ("GATEWAY_SUBJECT_PREFIX", "a"),
    ];
    for settings in [upper, lower] {
        let gateway = Gateway::start(&nats.url(), settings).await;
        let response = openim_gateway_tests::http::get(gateway.address(), "/healthz").await;
        let problems = openim_gateway_tests::check::differences(&response, &Expect::status(200));
        assert!(
            problems.is_empty(),
            "{settings:?}: {problems:?}\n{}",
            HttpRequest::get("/healthz")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_gateway_variable_stops_the_start_with_the_closest_name() {
    let report = Gateway::run_expecting_exit(&[("GATEWAY_TIMEOUT_MS", "2000")]).await;
    assert!(!report.killed, "it started: {report:?}");
    assert_eq!(report.code, Some(2), "{report:?}");
    assert!(!report.stdout.contains(LISTENING_PREFIX), "{report:?}");
    let lines: Vec<&str> = report.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{report:?}");
    assert!(
        lines[0].contains("GATEWAY_TIMEOUT_MS")
            && lines[0].contains("did you mean GATEWAY_CALLBACK_TIMEOUT_MS?"),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_service_links_of_a_service_named_gateway_are_not_settings() {
    let links = [
        ("GATEWAY_SERVICE_HOST", "10.96.0.12"),
        ("GATEWAY_SERVICE_PORT", "10006"),
        ("GATEWAY_SERVICE_PORT_HTTP", "10006"),
        ("GATEWAY_PORT", "tcp://10.96.0.12:10006"),
        ("GATEWAY_PORT_10006_TCP", "tcp://10.96.0.12:10006"),
        ("GATEWAY_PORT_10006_TCP_PROTO", "tcp"),
        ("GATEWAY_PORT_10006_TCP_PORT", "10006"),
        ("GATEWAY_PORT_10006_TCP_ADDR", "10.96.0.12"),
    ];
    let report = Gateway::run_args_expecting_exit(&["check-config"], &links).await;
    assert_eq!(report.code, Some(0), "{report:?}");
    // The same name with a value Kubernetes never writes is still a mistake.
    let report = Gateway::run_expecting_exit(&[("GATEWAY_PORT", "10006")]).await;
    assert_eq!(report.code, Some(2), "{report:?}");
    assert!(report.stderr.contains("GATEWAY_PORT"), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_setting_is_reported_at_once_one_line_each() {
    let report = Gateway::run_expecting_exit(&[
        ("GATEWAY_CALLBACK_TIMEOUT_MS", "0"),
        ("GATEWAY_REJECT_ERR_CODE", "42"),
        ("GATEWAY_DEFALT_DECISION", "reject"),
        ("GATEWAY_MAX_BODY_BYTES", "x"),
    ])
    .await;
    assert_eq!(report.code, Some(2), "{report:?}");
    let lines: Vec<&str> = report.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{report:?}");
    for variable in [
        "GATEWAY_CALLBACK_TIMEOUT_MS=\"0\"",
        "GATEWAY_REJECT_ERR_CODE=\"42\"",
        "GATEWAY_DEFALT_DECISION",
        "GATEWAY_MAX_BODY_BYTES=\"x\"",
    ] {
        assert_eq!(
            lines.iter().filter(|line| line.contains(variable)).count(),
            1,
            "{variable}: {report:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_of_other_gateway_parts_are_known() {
    let nats = NatsServer::not_started();
    let gateway = Gateway::start(&nats.url(), &[("GATEWAY_SHUTDOWN_DELAY_MS", "0")]).await;
    let response = openim_gateway_tests::http::get(gateway.address(), "/healthz").await;
    assert_eq!(response.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_nats_url_never_shows_its_password() {
    // Each password is cut into the pieces an unencoded / ? # , or @ would make of it: none
    // may appear.
    let cases: &[(&str, &[&str])] = &[
        (
            "nats://alice:Sup3rS3cret@127.0.0.1:notaport,t0kenValue@host:4222",
            &["Sup3rS3cret", "t0kenValue"],
        ),
        // A port-like start keeps the URL parsable: the host is then "alice" and the rest of
        // the password a path, which is refused rather than connected to.
        ("nats://alice:4222/Pa55Tail@127.0.0.1:4222", &["Pa55Tail"]),
        ("nats://alice:Pa55/W0rdX@127.0.0.1:4222", &["Pa55", "W0rdX"]),
        ("nats://alice:Pa55?W0rdX@127.0.0.1:4222", &["Pa55", "W0rdX"]),
        ("nats://alice:Pa55#W0rdX@127.0.0.1:4222", &["Pa55", "W0rdX"]),
        ("nats://alice:Pa55,W0rdX@127.0.0.1:4222", &["Pa55", "W0rdX"]),
    ];
    for (value, secrets) in cases {
        let report = Gateway::run_expecting_exit(&[("NATS_URL", value)]).await;
        assert_eq!(report.code, Some(2), "{value}: {report:?}");
        assert!(report.stderr.contains("NATS_URL="), "{report:?}");
        assert!(report.stderr.contains("alice:***@"), "{report:?}");
        for secret in *secrets {
            assert!(
                !report.stderr.contains(secret),
                "{secret} shown: {report:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_security_files_are_checked_at_start() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("GATEWAY_NATS_NKEY", "/nonexistent/user.nk")],
            "GATEWAY_NATS_NKEY",
        ),
        (
            &[("GATEWAY_NATS_CREDS", "/nonexistent/x.creds")],
            "GATEWAY_NATS_CREDS",
        ),
        (
            &[("GATEWAY_NATS_TLS_CA", "/nonexistent/ca.pem")],
            "GATEWAY_NATS_TLS_CA",
        ),
        (
            &[("GATEWAY_NATS_TLS_CERT", "/nonexistent/c.pem")],
            "GATEWAY_NATS_TLS_CERT",
        ),
    ];
    for (settings, variable) in cases {
        let report = Gateway::run_expecting_exit(settings).await;
        assert_eq!(report.code, Some(2), "{settings:?}: {report:?}");
        assert!(report.stderr.contains(variable), "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_the_setting_errors_are_json_too() {
    let report = Gateway::run_expecting_exit(&[
        ("GATEWAY_LOG_FORMAT", "json"),
        ("GATEWAY_REJECT_ERR_CODE", "1"),
    ])
    .await;
    assert_eq!(report.code, Some(2), "{report:?}");
    let lines: Vec<&str> = report.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{report:?}");
    let object: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
    let message = object["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("GATEWAY_REJECT_ERR_CODE=\"1\""),
        "{object}"
    );
}
