//! Reading the gateway's `/metrics` (Prometheus text format) into samples.
//!
//! Tests compare values before and after a callback, so they need the samples, not a text
//! search: label order and spacing are the exporter's business. Only what the tests read is
//! parsed (name, labels, value); timestamps and exemplars are ignored.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} number`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name (for a counter, with its `_total` suffix).
    pub name: String,
    /// Label names and values.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

/// Every sample in `text`; comment lines and lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` and returns the labels and what follows the `}`.
fn parse_labels(mut text: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = text.find('=')?;
        let name = text[..equals].trim().to_owned();
        text = text[equals + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut characters = text.char_indices();
        let end = loop {
            let (index, character) = characters.next()?;
            match character {
                '\\' => match characters.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.insert(name, value);
        text = &text[end + 1..];
    }
}

/// The sum of every sample named `name` whose labels include all of `wanted`.
pub fn sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            wanted
                .iter()
                .all(|(label, value)| sample.labels.get(*label).map(String::as_str) == Some(value))
        })
        .map(|sample| sample.value)
        .sum()
}

/// Whether any sample is named `name`.
pub fn has(samples: &[Sample], name: &str) -> bool {
    samples.iter().any(|sample| sample.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_in_any_order_with_escapes() {
        let text = "# HELP x y\n# TYPE openim_gateway_callbacks counter\n\
                    openim_gateway_callbacks_total{source=\"fallback:timeout\",command=\"a\\\"b\",kind=\"before\"} 3\n\
                    openim_gateway_nats_connected 1\n\
                    openim_gateway_callback_duration_seconds_bucket{command=\"c\",le=\"+Inf\"} 2\n# EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(
            sum(
                &samples,
                "openim_gateway_callbacks_total",
                &[("command", "a\"b"), ("source", "fallback:timeout")]
            ),
            3.0
        );
        assert_eq!(sum(&samples, "openim_gateway_nats_connected", &[]), 1.0);
        assert!(has(
            &samples,
            "openim_gateway_callback_duration_seconds_bucket"
        ));
    }
}
