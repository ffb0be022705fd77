//! The `openim-gateway` binary: settings, then logging, then build, then run.
//!
//! Exit codes: 0 after a clean shutdown (and after `--help` or `--version`), 2 for bad
//! settings (one stderr line per bad setting naming the variable, the value and the rule,
//! before anything binds) or an unknown argument, 1 for any other failure.

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

use openim_gateway::{
    config::{self, Config},
    Gateway,
};

/// mimalloc instead of glibc's allocator: every callback allocates and frees a few dozen small
/// blocks on the one event-loop thread, and on the benchmark mimalloc took less CPU per
/// callback for it (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line: the gateway is configured by its environment, so the only arguments
/// are `--help` (which lists every setting) and `--version`.
fn cli() -> clap::Command {
    clap::Command::new("openim-gateway")
        .version(env!("OPENIM_BUILD_VERSION"))
        .about("OpenIM webhook callbacks in, NATS requests to workers out, a decision back before OpenIM's timeout")
        .after_help(config::settings_help())
}

fn main() -> ExitCode {
    // Exits with 0 after --help or --version, with 2 on an unknown argument.
    cli().get_matches();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) => {
            for error in errors.iter() {
                eprintln!("openim-gateway: {error}");
            }
            return ExitCode::from(2);
        }
    };
    // Log lines are written by a thread of their own: a write to stderr can block (a full pipe,
    // a slow disk), and on the event loop that would hold up every answer exactly when a
    // storm of timeouts logs a line each. If that thread falls 128k lines behind, lines are
    // dropped rather than answers delayed; the metrics still count every callback.
    let (log_writer, _log_flush) = tracing_appender::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter))
        .with_writer(log_writer)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One thread: the event loop runs the HTTP connections and the NATS connection in turn,
    // so the publishes (and the replies) that are ready together go out in one write.
    let mut builder = if config.runtime_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(config.runtime_threads);
        builder
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("openim-gateway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("openim-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let budget = config.budget();
    let gateway = Gateway::build(config).await?;
    let address = gateway.local_addr()?;
    tracing::info!(%address, budget_ms = budget.as_millis() as u64, "openim-gateway listening");
    // The one line scripts and tests wait for.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "openim-gateway listening on http://{address}")?;
    stdout.flush()?;
    gateway.run(shutdown_signal()).await?;
    tracing::info!("openim-gateway stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing in-flight callbacks");
}
