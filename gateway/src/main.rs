//! The `openim-gateway` binary: settings, then logging, then build, then run.
//!
//! Exit codes: 0 after a clean shutdown (and after `--help` or `--version`), 2 for bad
//! settings (one stderr line per bad setting naming the variable, the value and the rule,
//! before anything binds) or an unknown argument, 1 for any other failure. `healthcheck`
//! exits 0 or 1 only (see [`openim_gateway::healthcheck`]).

use std::{
    io::{IsTerminal, Write},
    process::ExitCode,
};

use openim_gateway::{
    rules::Rules,
    settings::{self, Config, LogFormat},
    telemetry::Traces,
    BuildError, Gateway,
};

/// mimalloc instead of glibc's allocator: every callback allocates and frees a few dozen small
/// blocks on the one event-loop thread, and on the benchmark mimalloc took less CPU per
/// callback for it (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line: the gateway is configured by its environment, so the only arguments
/// are `--help` (which lists every setting), `--version` and the subcommands `check-config`
/// and `healthcheck`.
fn cli() -> clap::Command {
    clap::Command::new("openim-gateway")
        .version(env!("OPENIM_BUILD_VERSION"))
        .about("OpenIM webhook callbacks in, NATS requests to workers out, a decision back before OpenIM's timeout")
        .after_help(settings::table::help())
        .subcommand(clap::Command::new("check-config").about(
            "Checks the settings and the files they name (GATEWAY_CONFIG, GATEWAY_OPENIM_WEBHOOKS, the NATS files), prints each command's policy and exits: 0 when valid, 2 otherwise",
        ).arg(
            clap::Arg::new("connect")
                .long("connect")
                .action(clap::ArgAction::SetTrue)
                .help("Also logs in to each NATS server of NATS_URL and sends one request (answered by the server's \"no responders\"): exits 1, naming the server and the cause (connection refused, authentication failed, timed out), when none answers"),
        ))
        .subcommand(clap::Command::new("healthcheck").about(
            "Asks /readyz of the gateway running on GATEWAY_LISTEN (on loopback when it listens on every interface) and exits: 0 when it answers 200 within 2 s, 1 otherwise (a container healthcheck that needs no shell)",
        ))
}

/// `check-config`: what the gateway would run with, in the policy file's words: what
/// OpenIM's `webhooks.yml` enables, the global rules, and one line per command the policy
/// file names or `webhooks.yml` enables.
fn print_checked(config: &Config) -> std::io::Result<()> {
    let rules = Rules::new(config);
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "openim-gateway: the configuration is valid (default budget {} ms)",
        rules.global_budget().as_millis()
    )?;
    for line in openim_gateway::describe::check_config_lines(config) {
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()
}

/// Writes a line to stderr, ignoring a failure: with stderr closed or a closed pipe there is
/// nowhere left to say anything (`eprintln!` would panic instead).
fn say(line: &dyn std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The exit of a command that printed to stdout: a reader that closed the pipe early
/// (`check-config | head -1`, `| true`) ends the output quietly, as other command-line
/// tools do, with 0 (the configuration was checked); any other write error is said on stderr.
fn printed(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            say(&format_args!(
                "openim-gateway: cannot write to stdout: {error}"
            ));
            ExitCode::FAILURE
        }
    }
}

/// `check-config --connect`: each NATS server logged in to and asked once, one line each
/// (stdout when it answered, stderr with the cause when not); 0 when at least one answered
/// (the gateway uses whichever it reaches), 1 otherwise.
fn check_connect(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            say(&format_args!(
                "openim-gateway: cannot start the async runtime: {error}"
            ));
            return ExitCode::FAILURE;
        }
    };
    let probes = runtime.block_on(openim_gateway::nats::probe_servers(
        &config.nats,
        &config.subject_prefix,
    ));
    let mut stdout = std::io::stdout().lock();
    for probe in &probes {
        match probe.result {
            // A closed pipe only loses the line: the exit status says it all.
            Ok(_) => drop(writeln!(stdout, "nats: {probe}")),
            Err(_) => say(&format_args!("openim-gateway: nats: {probe}")),
        }
    }
    if probes.iter().any(|probe| probe.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // Exits with 0 after --help or --version, with 2 on an unknown argument.
    let arguments = cli().get_matches();
    let healthcheck = arguments.subcommand_name() == Some("healthcheck");
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(errors) if healthcheck => {
            for error in errors.iter() {
                say(&format_args!("openim-gateway healthcheck: {error}"));
            }
            return ExitCode::from(openim_gateway::healthcheck::NOT_READY);
        }
        Err(errors) => {
            let format = std::env::var(settings::table::GATEWAY_LOG_FORMAT.name).ok();
            let json = LogFormat::requested(format.as_deref()) == Some(LogFormat::Json);
            for error in errors.iter() {
                let line = format!("openim-gateway: {error}");
                if json {
                    // The shape of the logger's own lines, so a collector reads these too.
                    let object = serde_json::json!({
                        "level": "ERROR",
                        "fields": { "message": line },
                        "target": "openim_gateway",
                    });
                    say(&object);
                } else {
                    say(&line);
                }
            }
            return ExitCode::from(2);
        }
    };
    if healthcheck {
        return ExitCode::from(openim_gateway::healthcheck::run(config.listen));
    }
    if let Some(("check-config", check)) = arguments.subcommand() {
        let checked = printed(print_checked(&config));
        if checked != ExitCode::SUCCESS || !check.get_flag("connect") {
            return checked;
        }
        return check_connect(&config);
    }
    // Log lines are written by a thread of their own: a write to stderr can block (a full pipe,
    // a slow disk), and on the event loop that would hold up every answer exactly when a
    // storm of timeouts logs a line each. If that thread falls 128k lines behind, lines are
    // dropped rather than answers delayed; the metrics still count every callback.
    let (log_writer, _log_flush) = tracing_appender::non_blocking(std::io::stderr());
    let logger = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(log_directives(
            &config.log_filter,
        )))
        .with_writer(log_writer);
    match config.log_format {
        LogFormat::Text => logger.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            logger.json().with_ansi(false).init();
            // A panic's message would otherwise be the one plain line among the JSON ones
            // (a caught handler panic still prints it).
            std::panic::set_hook(Box::new(|panic| {
                tracing::error!(%panic, "panic");
            }));
        }
    }
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
            // Through the logger, so that it keeps the configured line format.
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    // Traces, when configured: built here, off the runtime (the exporter's HTTP client
    // blocks, on a thread of its own), and flushed after it stops.
    let traces = match Traces::start(config.traces.as_ref()) {
        Ok(traces) => traces,
        Err(error) => {
            tracing::error!(%error, "openim-gateway stopped");
            return ExitCode::from(2);
        }
    };
    let served = runtime.block_on(serve(config));
    traces.shutdown();
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "openim-gateway stopped");
            // A setting only the NATS server can judge is still a bad setting.
            let bad_setting = matches!(
                error.downcast_ref::<BuildError>(),
                Some(BuildError::BodyAboveMaxPayload { .. })
            );
            if bad_setting {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let budget = Rules::new(&config).global_budget();
    let gateway = Gateway::build(config).await?;
    let address = gateway.local_addr()?;
    if let Some(admin) = gateway.admin_addr() {
        let admin = admin?;
        tracing::info!(%admin, "status page and /metrics on the admin listener");
    }
    tracing::info!(%address, budget_ms = budget.as_millis() as u64, "openim-gateway listening");
    // The lines scripts and tests wait for. Nobody reading them (stdout closed) is no
    // reason to stop serving.
    let mut stdout = std::io::stdout();
    let admin_line = match gateway.admin_addr() {
        Some(Ok(admin)) => writeln!(stdout, "openim-gateway status page on http://{admin}/"),
        _ => Ok(()),
    };
    if let Err(error) = admin_line
        .and_then(|()| writeln!(stdout, "openim-gateway listening on http://{address}"))
        .and_then(|()| stdout.flush())
    {
        tracing::warn!(%error, "cannot write the listening line to stdout");
    }
    reload_on_hangup(gateway.reloader());
    gateway.run(shutdown_signal()).await?;
    tracing::info!("openim-gateway stopped");
    Ok(())
}

/// On each SIGHUP, reads the settings and their files again and applies the new policies and
/// budgets; when anything is wrong the running ones stay, and the log says why.
fn reload_on_hangup(reloader: openim_gateway::Reloader) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP: the policy file cannot be reloaded");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            // Reading files blocks: off the event loop.
            match tokio::task::spawn_blocking(Config::from_env).await {
                Ok(Ok(config)) => {
                    for warning in config.warnings() {
                        tracing::warn!("{warning}");
                    }
                    reloader.reload(&config);
                }
                Ok(Err(errors)) => {
                    for error in errors.iter() {
                        tracing::error!(%error, "configuration not reloaded: keeping the running policy");
                    }
                }
                Err(error) => tracing::error!(%error, "configuration not reloaded"),
            }
        }
    });
    #[cfg(not(unix))]
    drop(reloader);
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
    tracing::info!("shutdown signal received");
}

/// `RUST_LOG`, with the NATS client's own lines quieted unless the filter names
/// `async_nats`: its connector logs every failed connection attempt (about one a second while
/// NATS is away: "authorization violation", and at info "event: client error: nats: IO
/// error"), which the gateway reports itself, with the server and the cause, once per cause
/// and interval; the rest of async-nats is kept at warn at most.
fn log_directives(filter: &str) -> String {
    if filter.contains("async_nats") {
        return filter.to_owned();
    }
    let verbose = tracing_subscriber::EnvFilter::new(filter)
        .max_level_hint()
        .is_none_or(|level| level > tracing::level_filters::LevelFilter::WARN);
    let quieter = if verbose {
        "async_nats=warn,async_nats::connector=off"
    } else {
        "async_nats::connector=off"
    };
    if filter.trim().is_empty() {
        quieter.to_owned()
    } else {
        format!("{filter},{quieter}")
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn the_nats_client_is_quieted_unless_named() {
        assert_eq!(
            log_directives("info"),
            "info,async_nats=warn,async_nats::connector=off"
        );
        assert_eq!(
            log_directives("debug"),
            "debug,async_nats=warn,async_nats::connector=off"
        );
        assert_eq!(log_directives("warn"), "warn,async_nats::connector=off");
        assert_eq!(
            log_directives("info,async_nats=debug"),
            "info,async_nats=debug"
        );
    }
}
