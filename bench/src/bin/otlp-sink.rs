//! `otlp-sink`: the cheapest OTLP/HTTP receiver, for the traces scenario: it reads each
//! export request and answers 200 with an empty `ExportTraceServiceResponse` (zero bytes of
//! protobuf), decoding nothing, so that what the benchmark measures is the gateway's cost of
//! making and sending spans, not a collector's.
//!
//! Prints `otlp-sink listening on http://ADDR` once bound and serves until killed; every
//! second that saw exports, one stderr line with the requests and bytes received so far (the
//! benchmark's log shows that spans really arrived).

use std::{
    io::Write as _,
    net::SocketAddr,
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

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

/// Export requests and their bytes, received so far.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

async fn accept(body: Bytes) -> (StatusCode, [(header::HeaderName, &'static str); 1]) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(body.len() as u64, Ordering::Relaxed);
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
    tokio::spawn(async {
        let mut reported = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let requests = REQUESTS.load(Ordering::Relaxed);
            if requests != reported {
                reported = requests;
                let bytes = BYTES.load(Ordering::Relaxed);
                eprintln!("otlp-sink: {requests} export requests, {bytes} bytes so far");
            }
        }
    });
    axum::serve(listener, Router::new().route("/v1/traces", post(accept))).await?;
    Ok(())
}
