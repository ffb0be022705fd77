//! What a test expects of one answer ([`Expect`]) and the comparison that produces a readable
//! list of everything that differs.
//!
//! Bodies are parsed and compared as JSON values, never as text: key order and `\u003c`
//! escapes are the encoder's business. A worker's reply may legitimately come back with the
//! common fields filled in (`errCode` 0 where the worker left it out), so worker answers are
//! compared as OpenIM reads them ([`ExpectBody::Answer`]); the gateway's own decisions are
//! fixed by the contract and compared exactly ([`ExpectBody::Exact`]).

use std::time::Duration;

use openim_gateway_proto::DecisionSource;
use serde_json::{json, Map, Value};

use crate::http::HttpResponse;

/// The value OpenIM reads for a common answer field that is absent, `None` for any other
/// field.
fn common_field_zero(name: &str) -> Option<Value> {
    match name {
        "actionCode" | "errCode" | "nextCode" => Some(json!(0)),
        "errMsg" | "errDlt" => Some(json!("")),
        _ => None,
    }
}

/// `{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}`.
pub fn allow() -> Value {
    json!({"actionCode": 0, "errCode": 0, "errMsg": "", "errDlt": "", "nextCode": 0})
}

/// The allow answer plus `extra`'s fields (a modification, or the SetGroupInfo echo).
pub fn allow_with(extra: &Value) -> Value {
    let mut answer = allow();
    if let (Some(target), Some(fields)) = (answer.as_object_mut(), extra.as_object()) {
        for (name, value) in fields {
            target.insert(name.clone(), value.clone());
        }
    }
    answer
}

/// A refusal as OpenIM reads it: `actionCode` 0, `nextCode` 1.
pub fn reject(err_code: i64, err_msg: &str) -> Value {
    json!({"actionCode": 0, "errCode": err_code, "errMsg": err_msg, "errDlt": "", "nextCode": 1})
}

/// How the body is compared.
#[derive(Debug, Clone)]
pub enum ExpectBody {
    /// Equal as JSON values, field for field.
    Exact(Value),
    /// Equal as OpenIM reads an answer: an absent common field counts as its zero value, and
    /// an absent other field counts as `null` (both mean "keep").
    Answer(Value),
    /// Only these fields compared, as in [`Self::Answer`]; other fields may be anything.
    Fields(Value),
    /// The default decision plus a non-empty string `error`, which mentions the given text
    /// when one is set (4xx answers).
    DefaultWithError {
        /// The default decision, compared exactly once `error` is removed.
        default: Value,
        /// Text the `error` field must contain.
        mentions: Option<String>,
    },
    /// Not checked (plain routes such as `/metrics`).
    Any,
}

/// What one answer must look like.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The status code.
    pub status: u16,
    /// `X-Decision-Source`, exactly; `None` leaves it unchecked.
    pub source: Option<DecisionSource>,
    /// The body.
    pub body: ExpectBody,
    /// Fields the body must not have at all (not even `null`).
    pub absent_fields: Vec<String>,
    /// The answer must take at most this long.
    pub within: Option<Duration>,
    /// The answer must take at least this long.
    pub not_before: Option<Duration>,
    /// Whether `X-Request-Id` must be a UUID v7 (every 200 answer on a callback route).
    pub request_id: bool,
}

impl Expect {
    /// 200, `X-Decision-Source: worker`, the worker's answer.
    pub fn worker(answer: Value) -> Self {
        Self::decided(DecisionSource::Worker, ExpectBody::Answer(answer))
    }

    /// 200, `X-Decision-Source: worker`, and these fields of the answer (the rest unchecked).
    pub fn worker_fields(fields: Value) -> Self {
        Self::decided(DecisionSource::Worker, ExpectBody::Fields(fields))
    }

    /// 200, `X-Decision-Source: <source>` (a `fallback:*`), exactly `body`.
    pub fn fallback(source: DecisionSource, body: Value) -> Self {
        Self::decided(source, ExpectBody::Exact(body))
    }

    /// 200, `X-Decision-Source: ack`, the plain allow body (after-callbacks).
    pub fn ack() -> Self {
        Self::decided(DecisionSource::Ack, ExpectBody::Exact(allow()))
    }

    /// A 4xx answer: `status`, the default decision plus an `error` field.
    pub fn bad(status: u16, default: Value) -> Self {
        Self {
            status,
            source: None,
            body: ExpectBody::DefaultWithError {
                default,
                mentions: None,
            },
            absent_fields: Vec::new(),
            within: None,
            not_before: None,
            request_id: false,
        }
    }

    /// A plain route: only the status is checked.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            source: None,
            body: ExpectBody::Any,
            absent_fields: Vec::new(),
            within: None,
            not_before: None,
            request_id: false,
        }
    }

    fn decided(source: DecisionSource, body: ExpectBody) -> Self {
        Self {
            status: 200,
            source: Some(source),
            body,
            absent_fields: Vec::new(),
            within: None,
            not_before: None,
            request_id: true,
        }
    }

    /// The `error` field must contain `text` (e.g. the unknown command's name).
    pub fn mentioning(mut self, text: &str) -> Self {
        if let ExpectBody::DefaultWithError { mentions, .. } = &mut self.body {
            *mentions = Some(text.to_owned());
        }
        self
    }

    /// The answer must arrive within `bound`.
    pub fn within(mut self, bound: Duration) -> Self {
        self.within = Some(bound);
        self
    }

    /// The answer must not arrive before `bound` (e.g. a timeout fallback).
    pub fn not_before(mut self, bound: Duration) -> Self {
        self.not_before = Some(bound);
        self
    }

    /// The body must not have these fields at all.
    pub fn without_fields(mut self, fields: &[&str]) -> Self {
        self.absent_fields
            .extend(fields.iter().map(|field| (*field).to_owned()));
        self
    }
}

/// Every way `response` differs from `expect`, one line each; empty when it matches.
pub fn differences(response: &HttpResponse, expect: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    if response.status != expect.status {
        problems.push(format!(
            "status: expected {}, got {}",
            expect.status, response.status
        ));
    }
    if let Some(source) = &expect.source {
        if response.source() != Some(source.header_value()) {
            problems.push(format!(
                "X-Decision-Source: expected {source:?}, got {:?}",
                response.source()
            ));
        }
    }
    if expect.request_id {
        if let Err(problem) = check_uuid_v7(response.request_id()) {
            problems.push(format!("X-Request-Id: {problem}"));
        }
    }
    if let Some(bound) = expect.within {
        if response.elapsed > bound {
            problems.push(format!(
                "answered after {:?}, expected within {bound:?}",
                response.elapsed
            ));
        }
    }
    if let Some(bound) = expect.not_before {
        if response.elapsed < bound {
            problems.push(format!(
                "answered after {:?}, expected not before {bound:?}",
                response.elapsed
            ));
        }
    }
    if matches!(expect.body, ExpectBody::Any) {
        return problems;
    }
    let content_type = response.header("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        problems.push(format!(
            "Content-Type: expected application/json, got {content_type:?}"
        ));
    }
    let body = match response.json() {
        Ok(body) => body,
        Err(problem) => {
            problems.push(problem);
            return problems;
        }
    };
    let Some(object) = body.as_object() else {
        problems.push(format!("the body is not a JSON object: {body}"));
        return problems;
    };
    for field in &expect.absent_fields {
        if object.contains_key(field) {
            problems.push(format!(
                "field {field:?} must be absent, got {}",
                object[field]
            ));
        }
    }
    match &expect.body {
        ExpectBody::Exact(expected) => {
            if &body != expected {
                problems.push(format!(
                    "body: expected exactly {expected}\n      got {body}"
                ));
            }
        }
        ExpectBody::Answer(expected) => {
            problems.extend(answer_differences(object, expected, true));
        }
        ExpectBody::Fields(expected) => {
            problems.extend(answer_differences(object, expected, false));
        }
        ExpectBody::DefaultWithError { default, mentions } => {
            let mut without_error = object.clone();
            match without_error.remove("error") {
                Some(Value::String(error)) if !error.is_empty() => {
                    if let Some(text) = mentions {
                        if !error.contains(text.as_str()) {
                            problems.push(format!("error {error:?} does not mention {text:?}"));
                        }
                    }
                }
                other => problems.push(format!(
                    "field \"error\": expected a non-empty string, got {other:?}"
                )),
            }
            if &Value::Object(without_error) != default {
                problems.push(format!(
                    "body without \"error\": expected the default decision {default}\n      got {body}"
                ));
            }
        }
        ExpectBody::Any => {}
    }
    problems
}

/// The fields where `actual` and `expected` differ as OpenIM reads them; with `every_field`
/// false, only the fields `expected` names.
fn answer_differences(
    actual: &Map<String, Value>,
    expected: &Value,
    every_field: bool,
) -> Vec<String> {
    let Some(expected) = expected.as_object() else {
        return vec![format!("expected answer {expected} is not an object")];
    };
    let read = |object: &Map<String, Value>, name: &str| -> Value {
        match object.get(name) {
            Some(value) => value.clone(),
            None => common_field_zero(name).unwrap_or(Value::Null),
        }
    };
    let mut names: Vec<&String> = if every_field {
        actual.keys().chain(expected.keys()).collect()
    } else {
        expected.keys().collect()
    };
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let (got, wanted) = (read(actual, name), read(expected, name));
            (got != wanted).then(|| format!("answer field {name:?}: expected {wanted}, got {got}"))
        })
        .collect()
}

/// `Ok` when `value` is a UUID of version 7.
pub fn check_uuid_v7(value: Option<&str>) -> Result<uuid::Uuid, String> {
    let text = value.ok_or("missing")?;
    let parsed =
        uuid::Uuid::parse_str(text).map_err(|error| format!("{text:?} is not a UUID: {error}"))?;
    if parsed.get_version_num() == 7 {
        Ok(parsed)
    } else {
        Err(format!(
            "{text:?} is a UUID of version {}, not 7",
            parsed.get_version_num()
        ))
    }
}

#[cfg(test)]
mod tests {
    //! The comparison must catch every kind of breakage the e2e tests rely on it for.

    use super::*;

    fn answer(status: u16, source: Option<&str>, body: &str, elapsed_ms: u64) -> HttpResponse {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "x-request-id".to_owned(),
                "01932c07-a5c5-7e2a-8b1c-4d7a9f0e1b2c".to_owned(),
            ),
        ];
        if let Some(source) = source {
            headers.push(("x-decision-source".to_owned(), source.to_owned()));
        }
        HttpResponse {
            status,
            headers,
            body: body.as_bytes().to_vec(),
            elapsed: Duration::from_millis(elapsed_ms),
        }
    }

    const ALLOW: &str = r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#;

    #[test]
    fn a_matching_answer_has_no_differences() {
        let response = answer(200, Some(DecisionSource::Timeout.as_str()), ALLOW, 500);
        let expect = Expect::fallback(DecisionSource::Timeout, allow())
            .not_before(Duration::from_millis(400))
            .within(Duration::from_millis(1000));
        assert_eq!(differences(&response, &expect), Vec::<String>::new());
    }

    #[test]
    fn wrong_status_source_timing_and_request_id_are_caught() {
        let expect = Expect::fallback(DecisionSource::Timeout, allow())
            .not_before(Duration::from_millis(400))
            .within(Duration::from_millis(1000));
        assert_eq!(
            differences(
                &answer(500, Some(DecisionSource::Timeout.as_str()), ALLOW, 500),
                &expect
            )
            .len(),
            1
        );
        assert_eq!(
            differences(
                &answer(200, Some(DecisionSource::Worker.as_str()), ALLOW, 500),
                &expect
            )
            .len(),
            1
        );
        assert_eq!(
            differences(&answer(200, None, ALLOW, 500), &expect).len(),
            1
        );
        assert_eq!(
            differences(
                &answer(200, Some(DecisionSource::Timeout.as_str()), ALLOW, 50),
                &expect
            )
            .len(),
            1
        );
        assert_eq!(
            differences(
                &answer(200, Some(DecisionSource::Timeout.as_str()), ALLOW, 1500),
                &expect
            )
            .len(),
            1
        );
        let mut v4 = answer(200, Some(DecisionSource::Timeout.as_str()), ALLOW, 500);
        v4.headers[1].1 = "6f1c2a4e-0b7d-4c1e-9a3f-2d5e8b7c6a10".to_owned();
        assert_eq!(differences(&v4, &expect).len(), 1, "a v4 id is not v7");
    }

    #[test]
    fn exact_bodies_catch_extra_missing_and_changed_fields() {
        let expect = Expect::fallback(DecisionSource::NoResponders, allow());
        for body in [
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"ex":""}"#,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","nextCode":0}"#,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":1}"#,
            "not json",
            "[]",
        ] {
            let response = answer(200, Some(DecisionSource::NoResponders.as_str()), body, 1);
            assert!(!differences(&response, &expect).is_empty(), "{body}");
        }
    }

    #[test]
    fn answers_read_absent_common_fields_as_zero_but_not_other_fields() {
        let expect = Expect::worker(allow_with(&json!({"nickName": "Alice"})));
        let short = answer(
            200,
            Some(DecisionSource::Worker.as_str()),
            r#"{"nickName":"Alice"}"#,
            1,
        );
        assert_eq!(differences(&short, &expect), Vec::<String>::new());
        let missing = answer(200, Some(DecisionSource::Worker.as_str()), ALLOW, 1);
        assert_eq!(differences(&missing, &expect).len(), 1);
        let other = answer(
            200,
            Some(DecisionSource::Worker.as_str()),
            r#"{"nickName":"Bob"}"#,
            1,
        );
        assert_eq!(differences(&other, &expect).len(), 1);
        let extra = answer(
            200,
            Some(DecisionSource::Worker.as_str()),
            r#"{"nickName":"Alice","roleLevel":20}"#,
            1,
        );
        assert_eq!(differences(&extra, &expect).len(), 1);
        let refused = answer(
            200,
            Some(DecisionSource::Worker.as_str()),
            r#"{"nickName":"Alice","nextCode":1}"#,
            1,
        );
        assert_eq!(differences(&refused, &expect).len(), 1);
    }

    #[test]
    fn bad_input_needs_the_default_plus_an_error_naming_the_cause() {
        let expect = Expect::bad(404, allow()).mentioning("callbackNew");
        let good = answer(
            404,
            None,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"error":"unknown command callbackNew"}"#,
            1,
        );
        assert_eq!(differences(&good, &expect), Vec::<String>::new());
        for body in [
            ALLOW,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"error":""}"#,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"error":"unknown command"}"#,
            r#"{"error":"unknown command callbackNew"}"#,
        ] {
            let response = answer(404, None, body, 1);
            assert!(!differences(&response, &expect).is_empty(), "{body}");
        }
    }

    #[test]
    fn absent_fields_must_really_be_absent() {
        let expect =
            Expect::fallback(DecisionSource::NoResponders, allow()).without_fields(&["ex"]);
        let with_null = answer(
            200,
            Some(DecisionSource::NoResponders.as_str()),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"ex":null}"#,
            1,
        );
        assert!(!differences(&with_null, &expect).is_empty());
    }
}
