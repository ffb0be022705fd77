//! `loadgen`: loads an HTTP callback endpoint (the gateway or the direct server) with
//! OpenIM-shaped `callbackBeforeSetGroupMemberInfoCommand` requests, open or closed loop, and
//! prints one JSON result line on stdout (a human summary goes to stderr).
//!
//! ```text
//! loadgen --url http://127.0.0.1:10006 --mode closed --connections 64 --duration-s 10
//! loadgen --url http://127.0.0.1:10006 --mode open --rate 2000 --budget-ms 250 --duration-s 10
//! ```
//!
//! It measures; it does not judge. The `bench` driver reads the line and compares.

use std::{process::ExitCode, sync::Arc};

use clap::Parser;
use openim_gateway_bench::{
    cli::LoadArgs, http_target::HttpTarget, load, result::own_cpu_seconds, runtime,
};

/// Load an OpenIM callback endpoint and print one JSON result line.
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// `http://HOST:PORT[/PATH]`; the path defaults to OpenIM's shipped
    /// `/callbackExample/callbackBeforeSetGroupMemberInfoCommand`.
    #[arg(long)]
    url: String,
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = match HttpTarget::new(&args.url) {
        Ok(target) => Arc::new(target),
        Err(error) => {
            eprintln!("loadgen: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime(args.load.threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("loadgen: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut result = runtime.block_on(load::run(target, &args.load.settings()));
    result.process_cpu_s = own_cpu_seconds();
    eprintln!("loadgen: {}", result.summary());
    match serde_json::to_string(&result) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("loadgen: cannot write the result: {error}");
            ExitCode::FAILURE
        }
    }
}
