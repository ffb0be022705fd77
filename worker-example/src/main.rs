//! The `openim-worker-example` binary: settings -> tracing -> connect -> run -> exit code.
//!
//! Only wiring lives here; the policy, the settings and the NATS loop are in the library so
//! they can be tested without a process.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM) and after `--help` or `--version`,
//! 1 when the worker cannot run, 2 when a setting is invalid (one line on stderr naming the
//! variable, the value and the rule) or an argument is unknown.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use openim_worker_example::settings::{self, Settings, DEFAULT_LOG_FILTER};
use openim_worker_example::worker;
use openim_worker_kit::shutdown;
use tracing_subscriber::EnvFilter;

/// The program's name, at the start of every line it prints about a setting.
const PROGRAM: &str = "openim-worker-example";

/// The exit code for a bad setting, the same as the gateway's.
const EXIT_BAD_SETTINGS: u8 = 2;

// One thread: the rules are microseconds of CPU, so a second thread only adds hand-offs
// (it took twice the CPU per message on the benchmark). Scale by starting more processes in
// the queue group.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // The worker is configured by its environment: --help lists it, --version names the build.
    clap::Command::new(PROGRAM)
        .version(env!("OPENIM_BUILD_VERSION"))
        .about("An example worker: decides callbackBeforeSetGroupMemberInfoCommand for the gateway")
        .after_help(settings::settings_help())
        .get_matches();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(errors) => {
            // One line per bad setting, each named by the program, so that a line read in a
            // shared log still says which program refused to start.
            for line in errors.lines() {
                eprintln!("{PROGRAM}: {line}");
            }
            return ExitCode::from(EXIT_BAD_SETTINGS);
        }
    };
    init_tracing(&settings.log_filter);

    // Host and port only: a NATS URL may carry a user and password.
    let servers: Vec<String> = settings
        .nats_servers
        .iter()
        .map(|server| format!("{}:{}", server.host(), server.port()))
        .collect();
    tracing::info!(
        ?servers,
        banned_words = settings.rules.banned_words().len(),
        max_nickname_chars = settings.rules.max_nickname_chars(),
        concurrency = settings.concurrency,
        "connecting to NATS"
    );
    let client = match worker::connect(&settings.nats_servers, &settings.nats_files).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot connect to NATS");
            return ExitCode::FAILURE;
        }
    };
    match worker::run(client, &settings, shutdown::signal()).await {
        Ok(_report) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "worker stopped");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, leaving stdout to the single readiness line; colours only on a
/// terminal, so that files and log collectors get plain text.
fn init_tracing(log_filter: &str) {
    // `Settings` already checked that the filter parses; the fallback is never used.
    let mut filter =
        EnvFilter::try_new(log_filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // async-nats logs every connection event at info, one line per failed attempt and with
    // no cause; the kit logs those it matters to an operator, with the server and the cause,
    // once per cause per interval. A filter that names async_nats is taken as it is.
    if !log_filter.contains("async_nats") {
        if let Ok(directive) = "async_nats=warn".parse() {
            filter = filter.add_directive(directive);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
