//! Micro-benchmarks of the gateway's pure hot-path functions, one callback's worth each:
//! parsing and classifying OpenIM's body, validating and normalising a worker's reply,
//! building a default answer, and the small per-callback pieces around them (request id,
//! subject, answer bytes). No I/O: the end-to-end figures come from `scripts/bench`.
//!
//! Run with `cargo bench -p openim-gateway --bench hot_path`.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};

use openim_gateway::decision::{default_answer, normalise_reply, Body, DefaultDecision};
use openim_gateway::{metrics::Metrics, status::Recorder};
use openim_gateway_proto::{catalog::Command, subject, DecisionSource};

/// The seed command's body, byte for byte as OpenIM sends it (`fixtures/openim/`).
const MEMBER_INFO_BODY: &[u8] =
    include_bytes!("../../fixtures/openim/before_set_group_member_info.nickname_only.json");
/// A command whose default answer echoes the fields OpenIM overwrites.
const GROUP_INFO_BODY: &[u8] = include_bytes!("../../fixtures/openim/before_set_group_info.json");
const MEMBER_INFO: &str = openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
const GROUP_INFO: &str = "callbackBeforeSetGroupInfoCommand";

/// What the example worker answers to the benchmark's requests: allow, nickname normalised.
const MODIFY_REPLY: &[u8] =
    br#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Alice"}"#;
const REJECT_REPLY: &[u8] = br#"{"actionCode":0,"errCode":5001,"errMsg":"nickname contains a banned word","errDlt":"","nextCode":1}"#;

fn parse(body: &[u8]) -> Body {
    serde_json::from_slice(body).expect("the fixture is a JSON object")
}

fn command(name: &str) -> &'static Command {
    Command::lookup(name).expect("the command is in the catalog")
}

fn parse_and_classify(c: &mut Criterion) {
    c.bench_function("parse_and_classify/set_group_member_info", |b| {
        b.iter(|| {
            let body: Body = serde_json::from_slice(black_box(MEMBER_INFO_BODY)).unwrap();
            let command = Command::lookup(black_box(MEMBER_INFO)).unwrap();
            black_box((body, command))
        });
    });
    c.bench_function("classify_only/lookup", |b| {
        b.iter(|| black_box(Command::lookup(black_box(MEMBER_INFO))));
    });
}

fn normalise(c: &mut Criterion) {
    let member_info = command(MEMBER_INFO);
    let request = parse(MEMBER_INFO_BODY);
    c.bench_function("normalise_reply/modify_nickname", |b| {
        b.iter(|| {
            black_box(normalise_reply(
                member_info,
                &request,
                black_box(MODIFY_REPLY),
            ))
        });
    });
    c.bench_function("normalise_reply/reject", |b| {
        b.iter(|| {
            black_box(normalise_reply(
                member_info,
                &request,
                black_box(REJECT_REPLY),
            ))
        });
    });
    let group_info = command(GROUP_INFO);
    let group_request = parse(GROUP_INFO_BODY);
    c.bench_function("normalise_reply/allow_echoing_overwritten_fields", |b| {
        b.iter(|| {
            black_box(normalise_reply(
                group_info,
                &group_request,
                black_box(br#"{"actionCode":0,"nextCode":0}"#),
            ))
        });
    });
}

fn defaults(c: &mut Criterion) {
    let member_info = command(MEMBER_INFO);
    let request = parse(MEMBER_INFO_BODY);
    c.bench_function("default_answer/allow", |b| {
        b.iter(|| {
            black_box(default_answer(
                &DefaultDecision::Allow,
                Some(member_info),
                Some(&request),
            ))
        });
    });
    let reject = DefaultDecision::Reject {
        err_code: 5000,
        err_msg: "rejected: decision service unavailable".to_owned(),
    };
    c.bench_function("default_answer/reject", |b| {
        b.iter(|| black_box(default_answer(&reject, Some(member_info), Some(&request))));
    });
    let group_info = command(GROUP_INFO);
    let group_request = parse(GROUP_INFO_BODY);
    c.bench_function("default_answer/allow_echoing_overwritten_fields", |b| {
        b.iter(|| {
            black_box(default_answer(
                &DefaultDecision::Allow,
                Some(group_info),
                Some(&group_request),
            ))
        });
    });
}

fn per_callback_pieces(c: &mut Criterion) {
    let answer = normalise_reply(command(MEMBER_INFO), &parse(MEMBER_INFO_BODY), MODIFY_REPLY)
        .expect("a valid reply");
    c.bench_function("answer_bytes/serialise", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&answer)).unwrap()));
    });
    c.bench_function("request_id/uuid_v7_to_string", |b| {
        b.iter(|| black_box(uuid::Uuid::now_v7().to_string()));
    });
    // What counting an answered callback costs: the Prometheus series and histogram, and
    // within it the status page's figures (one short lock, no allocation).
    let metrics = Metrics::new();
    let recorder = Recorder::new();
    let seed = command(MEMBER_INFO);
    let took = Duration::from_micros(850);
    c.bench_function("metrics/answered", |b| {
        b.iter(|| {
            metrics.answered(
                black_box(seed),
                DecisionSource::Worker,
                black_box(took),
                Duration::from_millis(4_750),
            );
        });
    });
    c.bench_function("status/answered", |b| {
        b.iter(|| recorder.answered(black_box(seed), DecisionSource::Worker, black_box(took)));
    });
    c.bench_function("subject/for_command", |b| {
        b.iter(|| {
            black_box(subject::for_command(
                black_box(subject::DEFAULT_PREFIX),
                black_box(MEMBER_INFO),
            ))
        })
    });
}

criterion_group!(
    hot_path,
    parse_and_classify,
    normalise,
    defaults,
    per_callback_pieces
);
criterion_main!(hot_path);
