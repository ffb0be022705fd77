//! Turning results into what people read: the median of interleaved rounds, one table row
//! per scenario (stderr and summary.md), and the budgets (BENCHMARKS.md) with met / not met.

use std::collections::BTreeMap;

use openim_gateway_bench::result::RunResult;
use serde_json::{json, Value};

/// The figures of one or more rounds of the same run: medians, except `max_us` (the worst
/// of all rounds) and the counts (summed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregate {
    /// Requests finished per second.
    pub(crate) rate: f64,
    /// Latency percentiles, microseconds.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    /// Answers by source, over every round.
    pub(crate) sources: BTreeMap<String, u64>,
    /// Requests without an answer, over every round.
    pub(crate) errors: u64,
    /// Late requests (counted from their arrival at the target), over every round.
    pub(crate) late: u64,
}

fn median<T: Copy + PartialOrd + Default>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    match values.len() {
        0 => T::default(),
        n => values[n / 2],
    }
}

impl Aggregate {
    /// Combines the rounds of one run.
    pub(crate) fn of(runs: &[RunResult]) -> Self {
        let mut sources = BTreeMap::new();
        for run in runs {
            for (source, count) in &run.sources {
                *sources.entry(source.clone()).or_default() += count;
            }
        }
        Self {
            rate: median(runs.iter().map(|run| run.rate).collect()),
            p50_us: median(runs.iter().map(|run| run.latency.p50_us).collect()),
            p99_us: median(runs.iter().map(|run| run.latency.p99_us).collect()),
            p999_us: median(runs.iter().map(|run| run.latency.p999_us).collect()),
            max_us: runs.iter().map(|run| run.latency.max_us).max().unwrap_or(0),
            sources,
            errors: runs.iter().map(RunResult::error_count).sum(),
            late: runs.iter().map(RunResult::late_from_arrival).sum(),
        }
    }

    /// The table row named `name`.
    pub(crate) fn row(&self, name: &str) -> Row {
        let mut answers: Vec<String> = self
            .sources
            .iter()
            .map(|(source, count)| format!("{source} {count}"))
            .collect();
        if self.errors > 0 {
            answers.push(format!("errors {}", self.errors));
        }
        if self.late > 0 {
            answers.push(format!("LATE {}", self.late));
        }
        Row {
            name: name.to_owned(),
            rate: self.rate,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            p999_us: self.p999_us,
            max_us: self.max_us,
            answers: answers.join(", "),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) rate: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) max_us: u64,
    pub(crate) answers: String,
}

/// The table as plain text.
pub(crate) fn text_table(rows: &[Row]) -> String {
    let mut text = format!(
        "{:<46} {:>9} {:>9} {:>9} {:>10} {:>10}  answers by source\n",
        "scenario", "rate/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    for row in rows {
        text.push_str(&format!(
            "{:<46} {:>9.0} {:>9} {:>9} {:>10} {:>10}  {}\n",
            row.name, row.rate, row.p50_us, row.p99_us, row.p999_us, row.max_us, row.answers
        ));
    }
    text
}

/// The table as Markdown.
pub(crate) fn markdown_table(rows: &[Row]) -> String {
    let mut text = String::from(
        "| scenario | rate/s | p50 µs | p99 µs | p99.9 µs | max µs | answers by source |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        text.push_str(&format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} |\n",
            row.name, row.rate, row.p50_us, row.p99_us, row.p999_us, row.max_us, row.answers
        ));
    }
    text
}

fn number(summary: &BTreeMap<String, Value>, path: &[&str]) -> Option<f64> {
    let mut value = summary.get(*path.first()?)?;
    for key in &path[1..] {
        value = value.get(key)?;
    }
    value.as_f64()
}

/// The errors (connection, timeout, status...) a load run met, summed over `scenarios`;
/// `None` when none of them ran.
fn errors(summary: &BTreeMap<String, Value>, scenarios: &[&str]) -> Option<f64> {
    let counts: Vec<f64> = scenarios
        .iter()
        .filter_map(|scenario| summary.get(*scenario)?.get("errors")?.as_object())
        .flat_map(|errors| errors.values().filter_map(Value::as_f64))
        .collect();
    let ran = scenarios
        .iter()
        .any(|scenario| summary.contains_key(*scenario));
    ran.then(|| counts.iter().fold(0.0, |total, count| total + count))
}

/// One budget (BENCHMARKS.md), judged.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    pub(crate) name: &'static str,
    pub(crate) rule: String,
    pub(crate) value: String,
    /// `None` when the scenario did not run.
    pub(crate) met: Option<bool>,
}

fn judged(
    name: &'static str,
    rule: &str,
    value: Option<f64>,
    unit: &str,
    met: fn(f64) -> bool,
) -> Budget {
    Budget {
        name,
        rule: rule.to_owned(),
        value: value.map_or_else(|| "not measured".to_owned(), |v| format!("{v}{unit}")),
        met: value.map(met),
    }
}

/// The budgets (BENCHMARKS.md) against the summary.
pub(crate) fn budgets(summary: &BTreeMap<String, Value>) -> Vec<Budget> {
    let growth_mb = number(summary, &["memory", "growth_mb"]);
    let growth_pct = number(summary, &["memory", "growth_pct"]);
    vec![
        judged(
            "own cost p50",
            "gateway - direct - nats_rr, one at a time, <= 50 µs",
            number(summary, &["own_cost", "p50_us"]),
            " µs",
            |v| v <= 50.0,
        ),
        judged(
            "own cost p99",
            "gateway - direct - nats_rr, one at a time, <= 500 µs",
            number(summary, &["own_cost", "p99_us"]),
            " µs",
            |v| v <= 500.0,
        ),
        judged(
            "throughput",
            "gateway max rps >= 0.5 x direct max rps",
            number(summary, &["ratio", "rps"]),
            " x direct",
            |v| v >= 0.5,
        ),
        judged(
            "never late: hung worker",
            "0 answers after arrival + budget + 5 ms",
            number(summary, &["hung_worker", "late"]),
            " late",
            |v| v == 0.0,
        ),
        judged(
            "never late: nats down",
            "0 answers after arrival + budget + 5 ms",
            number(summary, &["nats_down", "late"]),
            " late",
            |v| v == 0.0,
        ),
        judged(
            "never late: 1024 callers",
            "0 answers after send + budget + 5 ms, back to back",
            number(summary, &["overload_1024", "late"]),
            " late",
            |v| v == 0.0,
        ),
        judged(
            "never late: 4096 callers",
            "0 answers after send + budget + 5 ms, back to back",
            number(summary, &["overload_4096", "late"]),
            " late",
            |v| v == 0.0,
        ),
        judged(
            "never late: 4096 callers, 256 in flight",
            "0 answers after send + budget + 5 ms, back to back, past GATEWAY_MAX_INFLIGHT",
            number(summary, &["overload_4096_bound_256", "late"]),
            " late",
            |v| v == 0.0,
        ),
        judged(
            "no errors under overload",
            "0 failed requests (connect, timeout, status) at 1024 and 4096 callers",
            errors(
                summary,
                &["overload_1024", "overload_4096", "overload_4096_bound_256"],
            ),
            " errors",
            |v| v == 0.0,
        ),
        judged(
            "recovers after nats restart",
            "worker answers again, gateway not restarted",
            number(summary, &["nats_down", "recovered"]),
            " worker answers after restart",
            |v| v > 0.0,
        ),
        Budget {
            name: "memory flat",
            rule: "RSS growth across the flood within 10% or 10 MiB (issue 6)".to_owned(),
            value: match (growth_mb, growth_pct) {
                (Some(mb), Some(pct)) => format!("+{mb} MiB (+{pct}%)"),
                _ => "not measured".to_owned(),
            },
            met: growth_mb
                .zip(growth_pct)
                .map(|(mb, pct)| mb <= 10.0 || pct <= 10.0),
        },
        judged(
            "no reply-map leak",
            "openim_gateway_pending_replies == 0 after the flood",
            number(summary, &["memory", "pending_replies_after"]),
            " pending",
            |v| v == 0.0,
        ),
    ]
}

/// The budgets as text lines.
pub(crate) fn budget_lines(budgets: &[Budget]) -> String {
    budgets
        .iter()
        .map(|budget| {
            let verdict = match budget.met {
                Some(true) => "met",
                Some(false) => "NOT MET",
                None => "-",
            };
            format!(
                "{verdict:<8} {:<30} {:<36} ({})\n",
                budget.name, budget.value, budget.rule
            )
        })
        .collect()
}

/// The budgets as summary.json values.
pub(crate) fn budget_values(budgets: &[Budget]) -> Value {
    Value::Array(
        budgets
            .iter()
            .map(|budget| {
                json!({
                    "name": budget.name,
                    "rule": budget.rule,
                    "value": budget.value,
                    "met": budget.met,
                })
            })
            .collect(),
    )
}
