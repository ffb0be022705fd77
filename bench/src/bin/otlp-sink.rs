//! `otlp-sink`: the cheapest OTLP/HTTP receiver, for the traces scenario: it reads each
//! export request and answers 200 with an empty `ExportTraceServiceResponse` (zero bytes of
//! protobuf), decoding nothing, so that what the benchmark measures is the gateway's cost of
//! making and sending spans, not a collector's.
//!
//! Prints `otlp-sink listening on http://ADDR` once bound and serves until killed.

use std::{io::Write as _, net::SocketAddr, process::ExitCode};

use axum::{
    body::Bytes,
    http::{header, StatusCode},
    routing::post,
    Router,
};
use clap::Parser;

/// Serve an OTLP/HTTP sink.
#[derive(Debug, Parser)]
#[command(name = "otlp-sink")]
struct Args {
    /// The listen address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("otlp-sink: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args.listen)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("otlp-sink: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn accept(_body: Bytes) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
    )
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "otlp-sink listening on http://{address}")?;
    stdout.flush()?;
    axum::serve(listener, Router::new().route("/v1/traces", post(accept))).await?;
    Ok(())
}
