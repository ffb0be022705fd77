//! The example worker's settings and its NATS outage log, through the real binary: a
//! misspelled `WORKER_*` variable stops the start with the nearest setting's name, every bad
//! value is reported at once, each line is named by the program, and with NATS unreachable
//! the worker says which server failed and why, once per cause, instead of once per attempt.

use std::process::{Command, Stdio};
use std::time::Duration;

use openim_gateway_tests::binaries;
use openim_gateway_tests::gateway::run_binary_to_exit;
use openim_gateway_tests::nats::free_port;
use openim_gateway_tests::process::{self, OutputLog, StderrTo};

const PROGRAM: &str = "openim-worker-example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelled_setting_and_every_bad_value_stop_the_start_at_once() {
    let report = run_binary_to_exit(
        &binaries::example_worker(),
        &[],
        &[
            ("WORKER_BANED_WORDS", "boss"),
            ("WORKER_MAX_NICKNAME_CHARS", "abc"),
            ("WORKER_CONCURRENCY", "0"),
            ("NATS_URL", "http://127.0.0.1:1"),
        ],
    )
    .await;
    assert_eq!(report.code, Some(2), "{report:?}");
    let lines: Vec<&str> = report.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "one line per problem: {lines:#?}");
    for line in &lines {
        assert!(line.starts_with(&format!("{PROGRAM}: ")), "{line}");
    }
    let all = report.stderr.as_str();
    for expected in [
        "WORKER_BANED_WORDS is not a setting of this worker: did you mean WORKER_BANNED_WORDS?",
        r#"WORKER_MAX_NICKNAME_CHARS="abc" is not valid"#,
        r#"WORKER_CONCURRENCY="0" is not valid"#,
        r#"NATS_URL="http://127.0.0.1:1" is not valid"#,
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
    assert!(
        !all.contains("boss"),
        "the unknown variable's value is shown: {all}"
    );
    assert!(report.stdout.is_empty(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_the_worker_names_the_server_and_the_cause_once() {
    // Nothing listens on this port: every attempt is refused.
    let port = free_port();
    let mut command = Command::new(binaries::example_worker());
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("NATS_URL", format!("nats://127.0.0.1:{port}"))
        .stdin(Stdio::null());
    let stderr = OutputLog::default();
    let mut spawned = process::spawn_with(
        &mut command,
        OutputLog::default(),
        StderrTo::Log(stderr.clone()),
    )
    .expect("starting the example worker");
    tokio::time::sleep(Duration::from_secs(5)).await;
    process::signal(spawned.child.id(), "TERM");
    let code = process::wait_for_exit(&mut spawned.child, Duration::from_secs(10)).await;
    process::kill(&mut spawned.child);
    stderr.wait_closed(Duration::from_secs(2)).await;
    let lines = stderr.lines();
    assert_eq!(code, Some(0), "{lines:#?}");
    let failures: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("cannot connect to NATS"))
        .collect();
    assert_eq!(failures.len(), 1, "one line per cause in 5 s: {lines:#?}");
    assert!(
        failures[0].contains(&format!("server=127.0.0.1:{port}"))
            && failures[0].contains("Connection refused"),
        "{}",
        failures[0]
    );
    assert!(
        lines.len() <= 6,
        "a quiet log while NATS is down ({} lines): {lines:#?}",
        lines.len()
    );
}
