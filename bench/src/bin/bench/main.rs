//! `bench`: the benchmark driver. Starts nats-server, workers, the direct server and
//! gateways as child processes (killed on drop), runs every scenario with `loadgen` and
//! `nats-floor client`, writes `summary.json` (and `summary.md`, the table in Markdown) and
//! prints one table row per scenario and the budgets (BENCHMARKS.md), met or not.
//!
//! It measures and reports; it never fails a run for a missed budget (exit 0 with NOT MET
//! lines). It exits non-zero only when a scenario could not run. `scripts/bench` builds the
//! binaries and calls it; run it directly as
//!
//! ```text
//! target/release/bench [--quick] --nats-server PATH [--out target/bench] [--only floors,memory]
//! ```

mod cluster;
mod idle;
mod machine;
mod process;
mod report;
mod scenarios;
mod stack;

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser;
use serde_json::{json, Value};

use crate::{
    scenarios::{Outcome, Plan},
    stack::Tools,
};

/// Run the openim-gateway benchmark suite.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Short runs: the whole suite in under 2 minutes (the full one takes under 10).
    #[arg(long)]
    quick: bool,
    /// Where summary.json, summary.md and the processes' logs go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The nats-server executable (`scripts/install-nats` prints it).
    #[arg(long, env = "NATS_SERVER_BIN")]
    nats_server: PathBuf,
    /// The directory of the release binaries; default: this driver's own directory.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Only these scenarios, comma-separated: floors, hung_worker, nats_down, memory,
    /// idle_connections, overload, scaling, cluster, traces.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

const SCENARIOS: [&str; 9] = [
    "floors",
    "hung_worker",
    "nats_down",
    "memory",
    "idle_connections",
    "overload",
    "scaling",
    "cluster",
    "traces",
];

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    for name in &args.only {
        anyhow::ensure!(
            SCENARIOS.contains(&name.as_str()),
            "unknown scenario {name:?}: expected one of {}",
            SCENARIOS.join(", ")
        );
    }
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()
            .context("cannot find the driver's own path")?
            .parent()
            .context("the driver's path has no directory")?
            .to_path_buf(),
    };
    let log_dir = args.out.join("logs");
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir)
            .with_context(|| format!("cannot clear {}", log_dir.display()))?;
    }
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    anyhow::ensure!(
        args.nats_server.is_file(),
        "nats-server not found at {}: run scripts/install-nats and pass the path it prints",
        args.nats_server.display()
    );
    let tools = Tools {
        bin_dir,
        nats_server: args.nats_server.clone(),
        log_dir,
        prefix: format!("bench.p{}", std::process::id()),
        ticks_per_second: machine::ticks_per_second(),
    };
    let plan = Plan::new(args.quick);
    let started = Instant::now();
    let mut summary: BTreeMap<String, Value> = BTreeMap::new();
    let mut machine_info = machine::describe(&args.nats_server.to_string_lossy());
    let mut rows = Vec::new();
    let mut runs = Vec::new();

    for name in SCENARIOS {
        if !args.only.is_empty() && !args.only.iter().any(|only| only == name) {
            continue;
        }
        let scenario_started = Instant::now();
        let outcome: Outcome = match name {
            "floors" => scenarios::floors(&tools, &plan),
            "hung_worker" => scenarios::hung_worker(&tools, &plan),
            "nats_down" => scenarios::nats_down(&tools, &plan),
            "overload" => scenarios::overload(&tools, &plan),
            "scaling" => scenarios::scaling(&tools, &plan),
            "cluster" => cluster::cluster(&tools, &plan),
            "idle_connections" => {
                idle::idle_connections(&tools, if args.quick { 2000 } else { 5000 })
            }
            "traces" => scenarios::traces(&tools, &plan),
            _ => scenarios::memory(&tools, &plan),
        }
        .with_context(|| format!("scenario {name} failed"))?;
        eprintln!(
            "bench: {name} done in {:.0} s",
            scenario_started.elapsed().as_secs_f64()
        );
        summary.extend(outcome.summary);
        rows.extend(outcome.rows);
        runs.extend(outcome.runs);
    }

    if let Value::Object(object) = &mut machine_info {
        object.insert(
            "loadavg_at_end".to_owned(),
            json!(std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()),
        );
        object.insert(
            "mode".to_owned(),
            json!(if plan.quick { "quick" } else { "full" }),
        );
        object.insert(
            "suite_seconds".to_owned(),
            json!(started.elapsed().as_secs()),
        );
    }
    summary.insert("machine".to_owned(), machine_info);
    let budgets = report::budgets(&summary);
    summary.insert("budgets".to_owned(), report::budget_values(&budgets));
    summary.insert("runs".to_owned(), Value::Array(runs));

    let table = report::text_table(&rows);
    let budget_text = report::budget_lines(&budgets);
    let derived = derived_lines(&summary);
    std::fs::create_dir_all(&args.out)?;
    let summary_path = args.out.join("summary.json");
    std::fs::write(
        &summary_path,
        serde_json::to_string_pretty(&summary)? + "\n",
    )
    .with_context(|| format!("cannot write {}", summary_path.display()))?;
    let markdown_path = args.out.join("summary.md");
    std::fs::write(
        &markdown_path,
        format!(
            "{}\n{derived}\n```text\n{budget_text}```\n",
            report::markdown_table(&rows)
        ),
    )
    .with_context(|| format!("cannot write {}", markdown_path.display()))?;

    println!();
    print!("{table}");
    println!();
    print!("{derived}");
    println!();
    print!("{budget_text}");
    println!();
    println!(
        "suite took {:.0} s; summary: {}",
        started.elapsed().as_secs_f64(),
        summary_path.display()
    );
    Ok(())
}

/// The figures derived from several runs: the gateway's own cost and the throughput ratio.
fn derived_lines(summary: &BTreeMap<String, Value>) -> String {
    let (Some(own_cost), Some(ratio)) = (summary.get("own_cost"), summary.get("ratio")) else {
        return String::new();
    };
    let mut text = format!(
        "gateway own cost (gateway - direct - nats_rr, one at a time): p50 {} µs, p99 {} µs\n\
         throughput ratio gateway / direct: {}\n",
        own_cost["p50_us"], own_cost["p99_us"], ratio["rps"]
    );
    text.push_str(&format!(
        "  round by round: own cost p50 {} µs; throughput ratio {}\n",
        own_cost["p50_us_by_round"], ratio["rps_by_round"]
    ));
    if let Some(headers) = summary.get("own_cost_vs_headers_floor") {
        text.push_str(&format!(
            "  against the NATS floor carrying the gateway's 5 headers: p50 {} µs, p99 {} µs\n",
            headers["p50_us"], headers["p99_us"]
        ));
    }
    if let Some(multi_thread) = summary.get("own_cost_mt") {
        text.push_str(&format!(
            "  the gateway on the multi-thread runtime (GATEWAY_RUNTIME_THREADS=2): p50 {} µs, p99 {} µs; throughput ratio {}\n",
            multi_thread["p50_us"], multi_thread["p99_us"], ratio["gateway_mt_rps"]
        ));
    }
    text
}
