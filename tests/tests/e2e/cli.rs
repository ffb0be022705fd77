//! The command line of both binaries: `--help` lists every setting with its default and rule
//! and starts nothing, `--version` names the version and the commit, and an unknown argument
//! is refused with exit code 2.

use openim_gateway_tests::gateway::{run_binary_to_exit, LISTENING_PREFIX};
use openim_gateway_tests::{binaries, ExitReport, Gateway};

/// Every variable the gateway reads, with its default as `--help` must show it.
const GATEWAY_SETTINGS: &[(&str, &str)] = &[
    ("NATS_URL", "nats://127.0.0.1:4222"),
    ("GATEWAY_LISTEN", "127.0.0.1:10006"),
    ("GATEWAY_SUBJECT_PREFIX", "openim.callback"),
    ("GATEWAY_CALLBACK_TIMEOUT_MS", "5000"),
    ("GATEWAY_SAFETY_MARGIN_MS", "250"),
    ("GATEWAY_DEFAULT_DECISION", "allow"),
    ("GATEWAY_REJECT_ERR_CODE", "5000"),
    (
        "GATEWAY_REJECT_ERR_MSG",
        "rejected: decision service unavailable",
    ),
    ("GATEWAY_WEBHOOK_SECRET", "unset"),
    ("GATEWAY_MAX_BODY_BYTES", "1048576"),
    ("GATEWAY_RUNTIME_THREADS", "1"),
    ("RUST_LOG", "info"),
];

const WORKER_SETTINGS: &[(&str, &str)] = &[
    ("NATS_URL", "nats://127.0.0.1:4222"),
    ("WORKER_SUBJECT_PREFIX", "openim.callback"),
    ("WORKER_BANNED_WORDS", "admin,official,openim"),
    ("WORKER_MAX_NICKNAME_CHARS", "32"),
    ("RUST_LOG", "info"),
];

/// The commit the binaries were built from, when git can tell (they are built from this tree).
fn head_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(binaries::workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn assert_exited_with(report: &ExitReport, code: i32, what: &str) {
    assert!(!report.killed, "{what}: it kept running: {report:?}");
    assert_eq!(report.code, Some(code), "{what}: {report:?}");
    assert!(
        !report.stdout.contains(LISTENING_PREFIX),
        "{what}: it started: {report:?}"
    );
}

/// Each setting's block in the help: its name on a line, then its default and its rule.
fn assert_help_lists(help: &str, settings: &[(&str, &str)]) {
    for (variable, default) in settings {
        let block: Vec<&str> = help
            .lines()
            .skip_while(|line| line.trim() != *variable)
            .take(3)
            .collect();
        assert!(
            block.len() == 3
                && block[1].trim() == format!("default: {default}")
                && !block[2].trim().is_empty(),
            "{variable}: no block with its default {default:?} and a rule in:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_help_lists_every_setting_and_starts_nothing() {
    for flag in ["--help", "-h"] {
        let report = Gateway::run_args_expecting_exit(&[flag], &[]).await;
        assert_exited_with(&report, 0, flag);
        assert_help_lists(&report.stdout, GATEWAY_SETTINGS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_help_lists_every_setting_and_starts_nothing() {
    let report = run_binary_to_exit(&binaries::example_worker(), &["--help"], &[]).await;
    assert_exited_with(&report, 0, "--help");
    assert_help_lists(&report.stdout, WORKER_SETTINGS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_the_version_and_the_commit() {
    let gateway = Gateway::run_args_expecting_exit(&["--version"], &[]).await;
    let worker = run_binary_to_exit(&binaries::example_worker(), &["--version"], &[]).await;
    for (name, report) in [
        ("openim-gateway", gateway),
        ("openim-worker-example", worker),
    ] {
        assert_exited_with(&report, 0, name);
        let line = report.stdout.trim();
        assert!(
            line.starts_with(&format!("{name} {}", env!("CARGO_PKG_VERSION"))),
            "{line}"
        );
        if let Some(commit) = head_commit() {
            assert!(line.ends_with(&format!("(commit {commit})")), "{line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_argument_is_refused_with_exit_2() {
    let gateway = Gateway::run_args_expecting_exit(&["--listen", "0.0.0.0:1"], &[]).await;
    let worker = run_binary_to_exit(&binaries::example_worker(), &["--bogus"], &[]).await;
    for report in [gateway, worker] {
        assert_exited_with(&report, 2, "unknown argument");
        assert!(report.stderr.contains("--"), "{report:?}");
    }
}

/// Runs `openim-gateway ARGS | true` (or with `2>&1 >/dev/null`, its stderr into the pipe)
/// through `sh`, with only `settings` (and `PATH`) in the environment. The gateway starts a
/// second after the pipe, when `true` has long exited: every write meets a pipe without a
/// reader. Returns the gateway's exit code and what it wrote to the other stream.
fn run_into_a_closed_pipe(
    args: &[&str],
    settings: &[(&str, &str)],
    stderr_closed: bool,
) -> (Option<i32>, String) {
    // fd 3 is the shell's own stdout, outside the pipe: the other stream and the exit code.
    let redirect = if stderr_closed { "2>&1 >&3" } else { "2>&3" };
    let script =
        format!("exec 3>&1; {{ sleep 1; \"$0\" \"$@\" {redirect}; echo \"exit=$?\" >&3; }} | true");
    let mut command = std::process::Command::new("sh");
    command
        .env_clear()
        .arg("-c")
        .arg(script)
        .arg(binaries::gateway())
        .args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    for (name, value) in settings {
        command.env(name, value);
    }
    let output = command.output().expect("sh runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let code = text
        .lines()
        .find_map(|line| line.strip_prefix("exit="))
        .and_then(|code| code.trim().parse().ok());
    (code, text)
}

#[tokio::test]
async fn a_closed_pipe_ends_the_output_quietly() {
    let nobody = [("NATS_URL", "nats://127.0.0.1:9")];
    for args in [&["check-config"][..], &["--help"], &["--version"]] {
        let (code, stderr) = run_into_a_closed_pipe(args, &nobody, false);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
    }
    // Bad settings with stderr closed: still exit 2, not a panic's 101.
    let (code, stdout) = run_into_a_closed_pipe(
        &["check-config"],
        &[("GATEWAY_CALLBACK_TIMEOUT_MS", "soon")],
        true,
    );
    assert_eq!(code, Some(2), "{stdout}");
}
