//! `direct-server`: the direct floor, an axum server deciding in process with the worker's
//! rules (default `Rules`), answering the same JSON. What a user runs without the gateway.
//!
//! Prints `direct-server listening on http://ADDR` once bound (`--listen 127.0.0.1:0` picks a
//! free port) and serves until killed.

use std::{io::Write as _, net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use openim_gateway_bench::direct::{router, READY_LINE};
use openim_worker_example::rules::Rules;

/// Serve the direct floor.
#[derive(Debug, Parser)]
#[command(name = "direct-server")]
struct Args {
    /// The listen address; port 0 picks a free port.
    #[arg(long, env = "DIRECT_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads (0: one per core, as the gateway's runtime has).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("direct-server: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("direct-server: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{READY_LINE} http://{address}")?;
    stdout.flush()?;
    axum::serve(listener, router(Arc::new(Rules::default()))).await?;
    Ok(())
}
