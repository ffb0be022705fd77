//! The scenarios: each starts its own stack (a fresh nats-server on a free port, then the
//! workers and servers it needs), runs its load, reads what it has to read, and returns its
//! part of summary.json and its table rows. Every process is killed when the scenario ends.
//!
//! 1. `floors`: the direct server, the bare NATS round trip and the gateway (with the example
//!    worker), one request at a time and at maximum throughput, in interleaved rounds; plus
//!    two diagnostics: the NATS round trip carrying the gateway's five headers, and the
//!    gateway on a one-thread runtime.
//! 2. `hung_worker`: only a hung worker behind the gateway; every answer before the budget.
//! 3. `nats_down`: nats-server killed mid-run and restarted on the same port.
//! 4. `memory`: the gateway's RSS across a flood of timed-out requests.
//! 5. `scaling`: maximum throughput through one gateway with one worker, then three workers
//!    in the queue group, then two gateways sharing those workers.
//! 6. `overload`: closed-loop callers past the in-flight bound.
//! 7. `traces`: the gateway with traces off and on (exporting to `otlp-sink`), one request at
//!    a time and at maximum throughput: what a span per callback costs.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use openim_gateway_bench::result::RunResult;
use openim_gateway_proto::DecisionSource;
use serde_json::{json, Value};

use crate::{
    report::{Aggregate, Row},
    stack::{GatewaySettings, Measured, Tools},
};

/// Durations, rates and concurrency of one suite.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// `--quick`.
    pub(crate) quick: bool,
    /// Interleaved rounds of the floors scenario; its figures are the medians of the rounds.
    pub(crate) rounds: usize,
    /// Warm-up before each floors run, in seconds.
    pub(crate) warmup_s: f64,
    /// One request at a time: the measured window of each round, in seconds.
    pub(crate) serial_s: f64,
    /// Maximum throughput: the measured window of each round, in seconds.
    pub(crate) max_s: f64,
    /// Maximum throughput: concurrent callers (connections, or NATS requests in flight).
    pub(crate) max_connections: usize,
    /// hung_worker: the open-loop rate.
    pub(crate) hung_rate: f64,
    /// hung_worker: the duration, in seconds.
    pub(crate) hung_s: f64,
    /// nats_down: the open-loop rate.
    pub(crate) down_rate: f64,
    /// nats_down: the whole run, when nats-server is killed, when it is restarted (s).
    pub(crate) down_s: (f64, f64, f64),
    /// memory: concurrent callers.
    pub(crate) memory_connections: usize,
    /// memory: warm-up before the "before" RSS, and the measured flood, in seconds. The
    /// warm-up is long enough for the allocator to reach its plateau (about 20 s, 250 000
    /// timed-out requests on 2 cores), so that "before" is not read on the way up.
    pub(crate) memory_s: (f64, f64),
    /// memory: the flood is cut in this many runs, with an idle RSS reading after each, to
    /// tell a plateau from a leak.
    pub(crate) memory_segments: usize,
    /// overload: the closed-loop callers of each run, and each run's measured seconds.
    pub(crate) overload_callers: [usize; 2],
    pub(crate) overload_s: f64,
}

impl Plan {
    /// The full suite (under 10 minutes on 2 cores) or the quick one (under 2).
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                rounds: 1,
                warmup_s: 1.0,
                serial_s: 3.0,
                max_s: 3.0,
                max_connections: 64,
                hung_rate: 2000.0,
                hung_s: 5.0,
                down_rate: 500.0,
                down_s: (12.0, 3.0, 6.0),
                memory_connections: 1024,
                memory_s: (10.0, 16.0),
                memory_segments: 2,
                overload_callers: [1024, 4096],
                overload_s: 5.0,
            }
        } else {
            Self {
                quick,
                rounds: 3,
                warmup_s: 1.0,
                serial_s: 6.0,
                max_s: 6.0,
                max_connections: 64,
                hung_rate: 2000.0,
                hung_s: 10.0,
                down_rate: 500.0,
                down_s: (30.0, 8.0, 16.0),
                memory_connections: 1024,
                memory_s: (20.0, 75.0),
                memory_segments: 3,
                overload_callers: [1024, 4096],
                overload_s: 15.0,
            }
        }
    }
}

/// What a scenario adds to the summary and the table.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Top-level keys of summary.json.
    pub(crate) summary: BTreeMap<String, Value>,
    /// Table rows.
    pub(crate) rows: Vec<Row>,
    /// Every run's result (timelines dropped), for `runs` in summary.json.
    pub(crate) runs: Vec<Value>,
}

impl Outcome {
    pub(crate) fn keep(&mut self, scenario: &str, measured: &Measured) {
        let mut result = measured.result.clone();
        result.timeline.clear();
        let mut value = serde_json::to_value(&result).unwrap_or(Value::Null);
        if let Value::Object(object) = &mut value {
            object.insert("scenario".to_owned(), json!(scenario));
            object.insert(
                "background_cores".to_owned(),
                json!(round2(measured.background_cores)),
            );
            object.insert("cpu_s".to_owned(), json!(measured.cpu_s));
        }
        self.runs.push(value);
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn s(value: f64) -> String {
    value.to_string()
}

fn closed(label: &str, connections: usize, warmup_s: f64, duration_s: f64) -> Vec<String> {
    vec![
        "--label".into(),
        label.into(),
        "--mode".into(),
        "closed".into(),
        "--connections".into(),
        connections.to_string(),
        "--warmup-s".into(),
        s(warmup_s),
        "--duration-s".into(),
        s(duration_s),
    ]
}

/// An open-loop run. `budget_ms` is the late check's budget; as many connections as the
/// rate needs while every request waits out the budget are opened before the first request
/// (an HTTP client keeps its pool), so the ramp-up does not count as the gateway's lateness.
fn open(label: &str, rate: f64, duration_s: f64, budget_ms: f64) -> Vec<String> {
    let connections = ((rate * budget_ms / 1e3 * 1.25).ceil() as usize).max(16);
    vec![
        "--label".into(),
        label.into(),
        "--mode".into(),
        "open".into(),
        "--rate".into(),
        s(rate),
        "--connections".into(),
        connections.to_string(),
        "--duration-s".into(),
        s(duration_s),
        "--budget-ms".into(),
        s(budget_ms),
    ]
}

/// One request at a time: the floors, the floor with the gateway's NATS headers, the gateway,
/// and the gateway on the multi-thread runtime.
const SERIAL_TARGETS: [&str; 5] = [
    "direct",
    "nats_rr",
    "nats_rr_headers",
    "gateway",
    "gateway_mt",
];
/// Maximum throughput.
const MAX_TARGETS: [&str; 4] = ["direct", "nats_rr", "gateway", "gateway_mt"];

/// Scenario 1: the floors and the gateway, one at a time and at maximum throughput.
pub(crate) fn floors(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let nats = tools.nats("nats-server")?;
    let worker = tools.worker(&nats)?;
    let (direct, direct_url) = tools.direct()?;
    // The gateway's defaults (5000 ms, margin 250): nothing times out here.
    let gateway = tools.gateway(&nats, &GatewaySettings::new(5000, 250))?;
    // The same gateway on tokio's multi-thread runtime with one thread per core (a setting, no
    // code change): what the default of one event loop saves or costs.
    let gateway_mt = tools.gateway(
        &nats,
        &GatewaySettings {
            name: "openim-gateway-mt",
            runtime_threads: Some(2),
            ..GatewaySettings::new(5000, 250)
        },
    )?;
    let nats_guard = nats.guard().context("nats-server is not running")?;
    let stack = [
        nats_guard,
        &worker,
        &direct,
        &gateway.guard,
        &gateway_mt.guard,
    ];
    let mut outcome = Outcome::default();
    let mut serial: BTreeMap<&str, Vec<RunResult>> = BTreeMap::new();
    let mut max: BTreeMap<&str, Vec<RunResult>> = BTreeMap::new();
    let mut background: Vec<f64> = Vec::new();
    // Max-throughput runs: CPU µs per request of each process, summed over the rounds.
    let mut cpu_per_request: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();

    for (phase, connections, duration_s, targets) in [
        ("serial", 1, plan.serial_s, &SERIAL_TARGETS[..]),
        ("max", plan.max_connections, plan.max_s, &MAX_TARGETS[..]),
    ] {
        for round in 1..=plan.rounds {
            for &target in targets {
                let label = format!("{target}_{phase}");
                eprintln!("bench: floors: {label} round {round}/{}", plan.rounds);
                let mut args = closed(&label, connections, plan.warmup_s, duration_s);
                let measured = match target {
                    "direct" => tools.loadgen(&direct_url, &args, &stack)?,
                    "nats_rr" => tools.nats_client(&nats, &args, &stack)?,
                    "nats_rr_headers" => {
                        args.push("--with-headers".to_owned());
                        tools.nats_client(&nats, &args, &stack)?
                    }
                    "gateway_mt" => tools.loadgen(&gateway_mt.url, &args, &stack)?,
                    _ => tools.loadgen(&gateway.url, &args, &stack)?,
                };
                background.push(measured.background_cores);
                outcome.keep("floors", &measured);
                if phase == "max" {
                    // CPU is counted over the whole run, warm-up included.
                    let requests = (measured.result.rate * (plan.warmup_s + duration_s)).max(1.0);
                    let sums = cpu_per_request.entry(target).or_default();
                    for (process, seconds) in &measured.cpu_s {
                        // Only the processes this target's requests go through.
                        if seconds * 1e6 / requests >= 0.5 {
                            *sums.entry(process.clone()).or_default() +=
                                seconds * 1e6 / requests / plan.rounds as f64;
                        }
                    }
                }
                let runs = if phase == "serial" {
                    &mut serial
                } else {
                    &mut max
                };
                runs.entry(target).or_default().push(measured.result);
            }
        }
    }

    let aggregate = |runs: &BTreeMap<&str, Vec<RunResult>>, target: &str| {
        Aggregate::of(runs.get(target).map(Vec::as_slice).unwrap_or_default())
    };
    for target in SERIAL_TARGETS {
        let one = aggregate(&serial, target);
        let mut figures = json!({
            "p50_us": one.p50_us,
            "p99_us": one.p99_us,
            "p999_us": one.p999_us,
            "max_us": one.max_us,
            "serial_rps": one.rate.round(),
            "errors": one.errors,
        });
        outcome
            .rows
            .push(one.row(&format!("{target}: one at a time (c=1)")));
        if MAX_TARGETS.contains(&target) {
            let most = aggregate(&max, target);
            figures["max_rps"] = json!(most.rate.round());
            figures["max_load_p50_us"] = json!(most.p50_us);
            figures["max_load_p99_us"] = json!(most.p99_us);
            figures["errors"] = json!(one.errors + most.errors);
            figures["max_load_cpu_us_per_request"] =
                json!(cpu_per_request.get(target).map(|sums| sums
                    .iter()
                    .map(|(process, us)| (process.clone(), us.round()))
                    .collect::<BTreeMap<_, _>>()));
        }
        outcome.summary.insert(target.to_owned(), figures);
    }
    for target in MAX_TARGETS {
        outcome.rows.push(aggregate(&max, target).row(&format!(
            "{target}: max throughput (c={})",
            plan.max_connections
        )));
    }
    // Own cost: the gateway's latency minus both floors', one request at a time.
    let own_cost = |gateway: &str, nats_floor: &str, pick: fn(&Aggregate) -> u64| {
        let value = |target: &str| i64::try_from(pick(&aggregate(&serial, target))).unwrap_or(0);
        value(gateway) - value("direct") - value(nats_floor)
    };
    // The same difference round by round (the targets take turns within a round): how much
    // of a figure is the run and how much the scheduler's placement of four processes on two
    // cores, which changes from one run to the next.
    let round_p50s = |target: &str| -> Vec<i64> {
        serial
            .get(target)
            .map(|runs| {
                runs.iter()
                    .map(|run| i64::try_from(run.latency.p50_us).unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default()
    };
    let own_cost_by_round = |gateway: &str, nats_floor: &str| -> Vec<i64> {
        let (gateway, direct, floor) = (
            round_p50s(gateway),
            round_p50s("direct"),
            round_p50s(nats_floor),
        );
        gateway
            .iter()
            .zip(&direct)
            .zip(&floor)
            .map(|((gateway, direct), floor)| gateway - direct - floor)
            .collect()
    };
    let own_costs = |gateway: &str, nats_floor: &str| {
        json!({
            "p50_us": own_cost(gateway, nats_floor, |a| a.p50_us),
            "p99_us": own_cost(gateway, nats_floor, |a| a.p99_us),
            "p999_us": own_cost(gateway, nats_floor, |a| a.p999_us),
            "p50_us_by_round": own_cost_by_round(gateway, nats_floor),
        })
    };
    outcome
        .summary
        .insert("own_cost".to_owned(), own_costs("gateway", "nats_rr"));
    outcome.summary.insert(
        "own_cost_vs_headers_floor".to_owned(),
        own_costs("gateway", "nats_rr_headers"),
    );
    outcome
        .summary
        .insert("own_cost_mt".to_owned(), own_costs("gateway_mt", "nats_rr"));
    let ratio = |target: &str| {
        let direct_max = aggregate(&max, "direct").rate;
        if direct_max > 0.0 {
            round2(aggregate(&max, target).rate / direct_max)
        } else {
            0.0
        }
    };
    let ratio_by_round = |target: &str| -> Vec<f64> {
        let rates = |target: &str| -> Vec<f64> {
            max.get(target)
                .map(|runs| runs.iter().map(|run| run.rate).collect())
                .unwrap_or_default()
        };
        rates(target)
            .iter()
            .zip(rates("direct"))
            .map(|(rate, direct)| {
                if direct > 0.0 {
                    round2(rate / direct)
                } else {
                    0.0
                }
            })
            .collect()
    };
    outcome.summary.insert(
        "ratio".to_owned(),
        json!({
            "rps": ratio("gateway"),
            "rps_by_round": ratio_by_round("gateway"),
            "gateway_mt_rps": ratio("gateway_mt"),
            "nats_rr_rps": ratio("nats_rr"),
        }),
    );
    outcome.summary.insert(
        "floors_background_cores_max".to_owned(),
        json!(round2(background.iter().copied().fold(0.0, f64::max))),
    );
    Ok(outcome)
}

/// Scenario 2: a hung worker alone; every answer must beat the budget.
pub(crate) fn hung_worker(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let (timeout_ms, margin_ms) = (300, 50);
    let budget_ms = (timeout_ms - margin_ms) as f64;
    let nats = tools.nats("nats-server")?;
    let hung = tools.hung_worker(&nats)?;
    let gateway = tools.gateway(&nats, &GatewaySettings::new(timeout_ms, margin_ms))?;
    let nats_guard = nats.guard().context("nats-server is not running")?;
    eprintln!(
        "bench: hung_worker: {} rps for {} s, budget {budget_ms} ms",
        plan.hung_rate, plan.hung_s
    );
    let mut args = open("hung_worker", plan.hung_rate, plan.hung_s, budget_ms);
    args.extend(["--timeline-ms".to_owned(), "100".to_owned()]);
    let measured = tools.loadgen(&gateway.url, &args, &[nats_guard, &hung, &gateway.guard])?;
    let result = &measured.result;
    // Whether late answers come in bursts (a stall of the machine) or spread out.
    let late_windows: Vec<Value> = result
        .timeline
        .iter()
        .filter(|bucket| bucket.late > 0)
        .map(|bucket| json!([bucket.start_ms, bucket.late]))
        .collect();
    let row = format!(
        "hung_worker: open {} rps, budget {budget_ms} ms",
        plan.hung_rate
    );
    let summary = json!({
        "sent": result.sent,
        "dispatch_delay_p99_us": result.dispatch_delay.map(|p| p.p99_us),
        "dispatch_delay_max_us": result.dispatch_delay.map(|p| p.max_us),
        "late_windows_100ms": late_windows,
        "budget_ms": budget_ms,
        "rate": result.target_rate,
        "p50_us": result.latency.p50_us,
        "p99_us": result.latency.p99_us,
        "max_us": result.latency.max_us,
        "sources": result.sources,
        "errors": result.errors,
        "background_cores": round2(measured.background_cores),
    });
    Ok(open_loop_outcome("hung_worker", &row, summary, &measured))
}

/// The outcome of an open-loop scenario (one load run): `summary` plus the never-late figures
/// of `measured` under `scenario`, the table row `row`, and the run itself. `late` counts from
/// the send, the moment the request reaches the gateway: the "arrival + budget +
/// 5 ms" of the never-late budget. `late_from_schedule` counts from the scheduled start, which adds the load
/// generator's own delays in sending (`dispatch_delay_*`). `steal_ms`: see
/// [`Measured::steal_ms`].
fn open_loop_outcome(
    scenario: &str,
    row: &str,
    mut summary: Value,
    measured: &Measured,
) -> Outcome {
    let result = &measured.result;
    if let Value::Object(fields) = &mut summary {
        fields.insert("late".to_owned(), json!(result.late_after_send));
        fields.insert(
            "worst_late_ms".to_owned(),
            json!(result.worst_late_after_send_ms.map(round2)),
        );
        fields.insert("late_from_schedule".to_owned(), json!(result.late));
        fields.insert(
            "worst_late_from_schedule_ms".to_owned(),
            json!(result.worst_late_ms.map(round2)),
        );
        fields.insert("steal_ms".to_owned(), json!(measured.steal_ms.round()));
    }
    let mut outcome = Outcome::default();
    outcome.summary.insert(scenario.to_owned(), summary);
    outcome
        .rows
        .push(Aggregate::of(std::slice::from_ref(result)).row(row));
    outcome.keep(scenario, measured);
    outcome
}

/// Scenario 5: what more workers and a second gateway change, at maximum throughput. One
/// stack grows between the runs: one worker, three, then a second gateway; the two gateways'
/// load generators run at the same time with half the callers each.
pub(crate) fn scaling(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let nats = tools.nats("nats-server")?;
    let mut workers = vec![tools.worker_named(&nats, "worker-1")?];
    let first = tools.gateway(&nats, &GatewaySettings::new(5000, 250))?;
    let nats_guard = nats.guard().context("nats-server is not running")?;
    let mut outcome = Outcome::default();
    let mut figures = serde_json::Map::new();
    let connections = plan.max_connections;

    let label = "scaling_1_worker";
    eprintln!("bench: scaling: {label}");
    let args = closed(label, connections, plan.warmup_s, plan.max_s);
    let stack: Vec<&crate::process::Guard> = vec![nats_guard, &workers[0], &first.guard];
    let one = tools.loadgen(&first.url, &args, &stack)?;
    outcome.keep("scaling", &one);
    outcome.rows.push(
        Aggregate::of(std::slice::from_ref(&one.result))
            .row(&format!("scaling: 1 gateway, 1 worker (c={connections})")),
    );
    figures.insert("one_worker_rps".to_owned(), json!(one.result.rate.round()));
    figures.insert(
        "one_worker_background_cores".to_owned(),
        json!(round2(one.background_cores)),
    );

    workers.push(tools.worker_named(&nats, "worker-2")?);
    workers.push(tools.worker_named(&nats, "worker-3")?);
    let label = "scaling_3_workers";
    eprintln!("bench: scaling: {label}");
    let args = closed(label, connections, plan.warmup_s, plan.max_s);
    let mut stack: Vec<&crate::process::Guard> = vec![nats_guard, &first.guard];
    stack.extend(workers.iter());
    let three = tools.loadgen(&first.url, &args, &stack)?;
    outcome.keep("scaling", &three);
    outcome.rows.push(
        Aggregate::of(std::slice::from_ref(&three.result))
            .row(&format!("scaling: 1 gateway, 3 workers (c={connections})")),
    );
    figures.insert(
        "three_workers_rps".to_owned(),
        json!(three.result.rate.round()),
    );
    figures.insert(
        "three_workers_background_cores".to_owned(),
        json!(round2(three.background_cores)),
    );

    let second = tools.gateway(
        &nats,
        &GatewaySettings {
            name: "openim-gateway-2",
            ..GatewaySettings::new(5000, 250)
        },
    )?;
    let label = "scaling_2_gateways";
    eprintln!("bench: scaling: {label}");
    let half = (connections / 2).max(1);
    let args = closed(label, half, plan.warmup_s, plan.max_s);
    stack.push(&second.guard);
    let running = [
        tools.start_loadgen(&first.url, &args, &stack)?,
        tools.start_loadgen(&second.url, &args, &stack)?,
    ];
    let mut both = Vec::new();
    for run in running {
        let measured = tools.finish(run, &stack)?;
        outcome.keep("scaling", &measured);
        both.push(measured);
    }
    let results: Vec<RunResult> = both.iter().map(|run| run.result.clone()).collect();
    // Two halves at the same time: the rates add up; the latencies are the worse half's.
    let mut combined = Aggregate::of(&results);
    combined.rate = results.iter().map(|run| run.rate).sum();
    combined.p50_us = results
        .iter()
        .map(|run| run.latency.p50_us)
        .max()
        .unwrap_or(0);
    combined.p99_us = results
        .iter()
        .map(|run| run.latency.p99_us)
        .max()
        .unwrap_or(0);
    combined.p999_us = results
        .iter()
        .map(|run| run.latency.p999_us)
        .max()
        .unwrap_or(0);
    outcome
        .rows
        .push(combined.row(&format!("scaling: 2 gateways, 3 workers (c=2x{half})")));
    figures.insert("two_gateways_rps".to_owned(), json!(combined.rate.round()));
    figures.insert(
        "two_gateways_background_cores".to_owned(),
        json!(round2(
            both.iter().map(|run| run.background_cores).sum::<f64>() / both.len() as f64
        )),
    );
    outcome
        .summary
        .insert("scaling".to_owned(), Value::Object(figures));
    Ok(outcome)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn sleep_until(instant: Instant) {
    std::thread::sleep(instant.saturating_duration_since(Instant::now()));
}

/// Scenario 3: nats-server killed mid-run, then restarted on the same port.
pub(crate) fn nats_down(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let (timeout_ms, margin_ms) = (300, 50);
    let budget_ms = (timeout_ms - margin_ms) as f64;
    let (run_s, kill_s, restart_s) = plan.down_s;
    let mut nats = tools.nats("nats-server")?;
    let worker = tools.worker(&nats)?;
    let gateway = tools.gateway(&nats, &GatewaySettings::new(timeout_ms, margin_ms))?;
    eprintln!(
        "bench: nats_down: {} rps for {run_s} s; nats-server killed at {kill_s} s, restarted at {restart_s} s",
        plan.down_rate
    );
    let mut args = open("nats_down", plan.down_rate, run_s, budget_ms);
    args.extend(["--timeline-ms".to_owned(), "100".to_owned()]);
    // nats-server is killed and replaced mid-run: the CPU accounting leaves it out, so this
    // run's background figure includes nats-server's own CPU.
    let running = tools.start_loadgen(&gateway.url, &args, &[&worker, &gateway.guard])?;
    let started = running.started();
    sleep_until(started + Duration::from_secs_f64(kill_s));
    nats.kill();
    let killed_unix_ms = unix_ms_now();
    eprintln!("bench:   nats-server killed");
    sleep_until(started + Duration::from_secs_f64(restart_s));
    nats.start(tools)?;
    let restarted_unix_ms = unix_ms_now();
    eprintln!("bench:   nats-server restarted on the same port");
    let measured = tools.finish(running, &[&worker, &gateway.guard])?;
    let result = &measured.result;

    let bucket_unix = |start_ms: u64| result.t0_unix_ms + start_ms;
    let after_restart = result
        .timeline
        .iter()
        .filter(|bucket| bucket_unix(bucket.start_ms) >= restarted_unix_ms);
    let recovered: u64 = after_restart
        .clone()
        .map(|bucket| {
            bucket
                .sources
                .get(DecisionSource::Worker.as_str())
                .copied()
                .unwrap_or_default()
        })
        .sum();
    let first_worker_after_restart_ms = after_restart
        .clone()
        .find(|bucket| {
            bucket
                .sources
                .get(DecisionSource::Worker.as_str())
                .is_some_and(|count| *count > 0)
        })
        .map(|bucket| bucket_unix(bucket.start_ms).saturating_sub(restarted_unix_ms));
    let while_down: BTreeMap<String, u64> = result
        .timeline
        .iter()
        .filter(|bucket| {
            let at = bucket_unix(bucket.start_ms);
            at >= killed_unix_ms && at + 100 <= restarted_unix_ms
        })
        .fold(BTreeMap::new(), |mut sum, bucket| {
            for (source, count) in &bucket.sources {
                *sum.entry(source.clone()).or_default() += count;
            }
            sum
        });
    let unavailable = result
        .source_latency
        .get(DecisionSource::Unavailable.as_str());
    let row = format!(
        "nats_down: open {} rps, budget {budget_ms} ms",
        plan.down_rate
    );
    let summary = json!({
        "sent": result.sent,
        "recovered": recovered,
        "budget_ms": budget_ms,
        "rate": result.target_rate,
        "killed_at_s": kill_s,
        "restarted_at_s": restart_s,
        "first_worker_answer_after_restart_ms": first_worker_after_restart_ms,
        "sources": result.sources,
        "sources_while_down": while_down,
        "unavailable_p99_us": unavailable.map(|p| p.p99_us),
        "unavailable_max_us": unavailable.map(|p| p.max_us),
        "errors": result.errors,
    });
    Ok(open_loop_outcome("nats_down", &row, summary, &measured))
}

/// The least-squares slope of `ys` over `xs`: how RSS moves per timed-out request. A leak
/// shows as a steady positive slope; allocator noise as a small one of either sign.
fn slope(xs: &[u64], ys: &[f64]) -> f64 {
    let n = xs.len().min(ys.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
    let mean_y = ys.iter().sum::<f64>() / n;
    let (mut covariance, mut variance) = (0.0, 0.0);
    for (&x, &y) in xs.iter().zip(ys) {
        covariance += (x as f64 - mean_x) * (y - mean_y);
        variance += (x as f64 - mean_x).powi(2);
    }
    if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    }
}

fn mib(kib: u64) -> f64 {
    round2(kib as f64 / 1024.0)
}

/// Scenario 4: the gateway's memory across a flood of timed-out requests.
pub(crate) fn memory(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let (timeout_ms, margin_ms) = (60, 10);
    let budget_ms = timeout_ms - margin_ms;
    let (warmup_s, flood_s) = plan.memory_s;
    let segments = plan.memory_segments.max(1);
    let nats = tools.nats("nats-server")?;
    let hung = tools.hung_worker(&nats)?;
    let gateway = tools.gateway(&nats, &GatewaySettings::quiet(timeout_ms, margin_ms))?;
    let nats_guard = nats.guard().context("nats-server is not running")?;
    let stack = [nats_guard, &hung, &gateway.guard];
    let rss_start = gateway.guard.rss_kib()?;
    eprintln!(
        "bench: memory: {} callers, budget {budget_ms} ms; warm-up {warmup_s} s, then {flood_s} s in {segments} segments",
        plan.memory_connections,
    );
    let mut outcome = Outcome::default();
    let warmup = tools.loadgen(
        &gateway.url,
        &closed("memory_warmup", plan.memory_connections, 0.0, warmup_s),
        &stack,
    )?;
    outcome.keep("memory_warmup", &warmup);
    // Idle RSS (1 s after a flood, every deadline past) before the measured floods and after
    // each segment of them; under-load RSS every 5 s.
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = gateway.guard.rss_kib()?;
    let mut idle_series = vec![mib(rss_before)];
    // Timed-out requests so far at each idle reading, for the slope.
    let mut idle_counts = vec![0_u64];
    let mut load_series = Vec::new();
    let mut results = Vec::new();
    for segment in 1..=segments {
        let mut args = closed(
            "memory",
            plan.memory_connections,
            0.0,
            flood_s / segments as f64,
        );
        args.extend(["--budget-ms".to_owned(), budget_ms.to_string()]);
        let mut running = tools.start_loadgen(&gateway.url, &args, &stack)?;
        let mut next_sample = running.started() + Duration::from_secs(5);
        while !running.is_done() {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next_sample {
                load_series.push(mib(gateway.guard.rss_kib()?));
                next_sample += Duration::from_secs(5);
            }
        }
        let measured = tools.finish(running, &stack)?;
        std::thread::sleep(Duration::from_secs(1));
        idle_series.push(mib(gateway.guard.rss_kib()?));
        eprintln!("bench:   segment {segment}/{segments}: idle RSS {idle_series:?} MiB");
        idle_counts.push(
            idle_counts.last().copied().unwrap_or_default()
                + measured
                    .result
                    .source_count(DecisionSource::Timeout.as_str()),
        );
        outcome.keep("memory", &measured);
        results.push(measured.result);
    }
    let pending = gateway.metric("openim_gateway_pending_replies")?;
    let inflight = gateway.metric("openim_gateway_inflight_callbacks")?;
    let rss_after = gateway.guard.rss_kib()?;
    let sum = |count: fn(&RunResult) -> u64| results.iter().map(count).sum::<u64>();
    let timed_out = sum(|result| result.source_count(DecisionSource::Timeout.as_str()));
    let late = sum(|result| result.late);
    let growth_kib = rss_after.saturating_sub(rss_before);
    let first_idle_after = idle_series.get(1).copied().unwrap_or_default();
    outcome.summary.insert(
        "memory".to_owned(),
        json!({
            "timed_out": timed_out,
            "timed_out_with_warmup": timed_out + warmup.result.source_count(DecisionSource::Timeout.as_str()),
            "rss_start_mb": mib(rss_start),
            "rss_before_mb": mib(rss_before),
            "rss_after_mb": mib(rss_after),
            "growth_mb": mib(growth_kib),
            "growth_pct": if rss_before > 0 { round2(growth_kib as f64 * 100.0 / rss_before as f64) } else { 0.0 },
            "growth_after_first_segment_mb": round2(mib(rss_after) - first_idle_after),
            "idle_slope_mb_per_million": round2(slope(&idle_counts, &idle_series) * 1e6),
            "rss_idle_series_mb": idle_series,
            "rss_under_load_series_mb": load_series,
            "pending_replies_after": pending,
            "inflight_after": inflight,
            "rate": round2(timed_out as f64 / flood_s),
            "budget_ms": budget_ms,
            "late_overload": late,
            "errors": sum(RunResult::error_count),
        }),
    );
    // Back-to-back callers saturate the machine: requests queue before the gateway's clock
    // starts (at the handler), so client-side lateness here is overload, not a budget.
    let mut aggregate = Aggregate::of(&results);
    aggregate.late = 0;
    aggregate.rate = timed_out as f64 / flood_s;
    let mut row = aggregate.row(&format!(
        "memory: closed c={} (overload), budget {budget_ms} ms",
        plan.memory_connections,
    ));
    row.answers.push_str(&format!(", late (overload) {late}"));
    outcome.rows.push(row);
    Ok(outcome)
}

/// `GATEWAY_MAX_INFLIGHT` in the overload scenario's bounded run.
const OVERLOAD_BOUND: usize = 256;

/// Scenario 5: overload. Thousands of OpenIM callers back to back, all connecting at once,
/// against the gateway and the example worker: the machine is saturated, requests queue in
/// the kernel before the gateway can read them, and every answer must still come before the
/// budget counted from the client's send. The budget is 1000 ms: by Little's law, N callers
/// back to back wait N / throughput on average, about 270 ms for 4096 callers at the
/// gateway's 15k answers a second here; a 50 ms budget would need 82k answers a second, more
/// than the direct server without any work reaches on this machine.
pub(crate) fn overload(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let (timeout_ms, margin_ms) = (1250, 250);
    let budget_ms = timeout_ms - margin_ms;
    let mut outcome = Outcome::default();
    // The same callers once more with the in-flight bound well below them, so that the
    // bound's answer (the default at once, `fallback:overload`) is measured too.
    let bounded = plan.overload_callers[1];
    let runs = plan
        .overload_callers
        .iter()
        .map(|&callers| (callers, None))
        .chain([(bounded, Some(OVERLOAD_BOUND))]);
    for (callers, max_inflight) in runs {
        let nats = tools.nats("nats-server")?;
        let worker = tools.worker(&nats)?;
        let settings = GatewaySettings {
            max_inflight,
            ..GatewaySettings::quiet(timeout_ms, margin_ms)
        };
        let gateway = tools.gateway(&nats, &settings)?;
        let nats_guard = nats.guard().context("nats-server is not running")?;
        let (label, row) = match max_inflight {
            None => (
                format!("overload_{callers}"),
                format!("overload: closed c={callers}, budget {budget_ms} ms"),
            ),
            Some(bound) => (
                format!("overload_{callers}_bound_{bound}"),
                format!(
                    "overload: closed c={callers}, GATEWAY_MAX_INFLIGHT={bound}, budget {budget_ms} ms"
                ),
            ),
        };
        eprintln!("bench: {row}");
        let mut args = closed(&label, callers, 1.0, plan.overload_s);
        args.extend(["--budget-ms".to_owned(), budget_ms.to_string()]);
        let measured =
            tools.loadgen(&gateway.url, &args, &[nats_guard, &worker, &gateway.guard])?;
        let result = &measured.result;
        let summary = json!({
            "callers": callers,
            "max_inflight": max_inflight,
            "budget_ms": budget_ms,
            "sent": result.sent,
            "rate": round2(result.rate),
            "p50_us": result.latency.p50_us,
            "p99_us": result.latency.p99_us,
            "max_us": result.latency.max_us,
            "sources": result.sources,
            "errors": result.errors,
            "background_cores": round2(measured.background_cores),
        });
        let one = open_loop_outcome(&label, &row, summary, &measured);
        outcome.summary.extend(one.summary);
        outcome.rows.extend(one.rows);
        outcome.runs.extend(one.runs);
    }
    Ok(outcome)
}

/// The gateway with traces off and on, as [`traces`] compares them.
const TRACES_TARGETS: [&str; 2] = ["traces_off", "traces_on"];

/// Scenario 7: what traces cost. Two gateways on one worker, identical but for
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, which points the second at `otlp-sink` (a receiver that
/// decodes nothing); one request at a time and at maximum throughput, in interleaved rounds.
/// The cost is the difference of the two, p50 one at a time and max rps.
pub(crate) fn traces(tools: &Tools, plan: &Plan) -> anyhow::Result<Outcome> {
    let nats = tools.nats("nats-server")?;
    let worker = tools.worker(&nats)?;
    let (sink, sink_url) = tools.otlp_sink()?;
    let off = tools.gateway(
        &nats,
        &GatewaySettings {
            name: "openim-gateway-traces-off",
            ..GatewaySettings::new(5000, 250)
        },
    )?;
    let on = tools.gateway(
        &nats,
        &GatewaySettings {
            name: "openim-gateway-traces-on",
            otlp_endpoint: Some(&sink_url),
            ..GatewaySettings::new(5000, 250)
        },
    )?;
    let nats_guard = nats.guard().context("nats-server is not running")?;
    let stack = [nats_guard, &worker, &sink, &off.guard, &on.guard];
    let mut outcome = Outcome::default();
    let mut runs: BTreeMap<(&str, &str), Vec<RunResult>> = BTreeMap::new();
    let mut cpu: BTreeMap<&str, f64> = BTreeMap::new();
    for (phase, connections, duration_s) in [
        ("serial", 1, plan.serial_s),
        ("max", plan.max_connections, plan.max_s),
    ] {
        for round in 1..=plan.rounds {
            for target in TRACES_TARGETS {
                let label = format!("{target}_{phase}");
                eprintln!("bench: traces: {label} round {round}/{}", plan.rounds);
                let args = closed(&label, connections, plan.warmup_s, duration_s);
                let url = if target == "traces_on" {
                    &on.url
                } else {
                    &off.url
                };
                let measured = tools.loadgen(url, &args, &stack)?;
                if phase == "max" {
                    // The gateway's (and the sink's) CPU per request, warm-up included.
                    let requests = (measured.result.rate * (plan.warmup_s + duration_s)).max(1.0);
                    let name = if target == "traces_on" {
                        "openim-gateway-traces-on"
                    } else {
                        "openim-gateway-traces-off"
                    };
                    let used = measured.cpu_s.get(name).copied().unwrap_or_default()
                        + if target == "traces_on" {
                            measured.cpu_s.get("otlp-sink").copied().unwrap_or_default()
                        } else {
                            0.0
                        };
                    *cpu.entry(target).or_default() += used * 1e6 / requests / plan.rounds as f64;
                }
                outcome.keep("traces", &measured);
                runs.entry((target, phase))
                    .or_default()
                    .push(measured.result);
            }
        }
    }
    let aggregate = |target: &str, phase: &str| {
        Aggregate::of(
            runs.get(&(target, phase))
                .map(Vec::as_slice)
                .unwrap_or_default(),
        )
    };
    let mut figures = serde_json::Map::new();
    for target in TRACES_TARGETS {
        let serial = aggregate(target, "serial");
        let max = aggregate(target, "max");
        outcome
            .rows
            .push(serial.row(&format!("{target}: one at a time (c=1)")));
        outcome.rows.push(max.row(&format!(
            "{target}: max throughput (c={})",
            plan.max_connections
        )));
        figures.insert(
            target.to_owned(),
            json!({
                "serial_p50_us": serial.p50_us,
                "serial_p99_us": serial.p99_us,
                "max_rps": max.rate.round(),
                "max_load_p50_us": max.p50_us,
                "cpu_us_per_request": cpu.get(target).map(|us| us.round()),
                "errors": serial.errors + max.errors,
            }),
        );
    }
    let (serial_off, serial_on) = (
        aggregate("traces_off", "serial"),
        aggregate("traces_on", "serial"),
    );
    let (max_off, max_on) = (
        aggregate("traces_off", "max"),
        aggregate("traces_on", "max"),
    );
    let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    figures.insert(
        "cost_p50_us".to_owned(),
        json!(signed(serial_on.p50_us) - signed(serial_off.p50_us)),
    );
    figures.insert(
        "cost_p99_us".to_owned(),
        json!(signed(serial_on.p99_us) - signed(serial_off.p99_us)),
    );
    figures.insert(
        "max_rps_ratio".to_owned(),
        json!(if max_off.rate > 0.0 {
            round2(max_on.rate / max_off.rate)
        } else {
            0.0
        }),
    );
    outcome
        .summary
        .insert("traces".to_owned(), Value::Object(figures));
    Ok(outcome)
}
