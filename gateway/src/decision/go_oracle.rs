//! Go itself as the judge: a seeded differential test of the gateway's reply judging against
//! `encoding/json`. The Go program in `tests/go-oracle/` decodes an answer into the command's
//! answer struct as OpenIM does (and, for MsgModify, checks `content` as OpenIM does); it is
//! built once per run with the `go` named by `GO_BIN`, else the one on `PATH`.
//!
//! For every before-command, replies from the property test's generators (a fixed seed) and
//! hand-picked edge cases go through [`normalise_reply`]; Go then decodes both the raw reply
//! and, when the gateway forwards, the answer as the gateway encodes it. The test fails when
//! the gateway forwards something Go cannot decode (or a reply Go refuses), or refuses a reply
//! for a reason that is Go's to decide (`not_json`, `not_object`, `wrong_type`,
//! `content_not_json_object`) while Go decodes it. The gateway's deliberate refusals of
//! replies Go decodes (identity changes, null pointers, duplicates, small reject codes, blank
//! group names, a bare `null`) are counted, not judged.

use std::{
    collections::BTreeMap,
    env, fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command as Process, Stdio},
    time::Instant,
};

use openim_gateway_proto::Command;
use proptest::{
    strategy::{Strategy, ValueTree},
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{json, Value};

use super::fidelity_props::{before_commands, reply_for, request_for};
use crate::{decision::normalise_reply, outcome::InvalidReply};

/// The proptest seed: the same replies on every run.
const SEED: [u8; 32] = *b"openim-gateway go oracle, seed 1";
/// Generated replies per before-command.
const REPLIES_PER_COMMAND: usize = 150;

/// Go's answer about one answer text.
#[derive(Debug, Clone)]
struct GoVerdict {
    /// `json.Unmarshal` into the answer struct succeeded.
    decodes: bool,
    /// Go's error, when it did not.
    error: String,
    /// It decodes and refuses (`actionCode` 0, `nextCode` 1).
    refuses: bool,
    /// The decoded `nextCode`.
    next_code: i64,
    /// MsgModify (main), not refusing, with a non-null `content`: whether that unmarshals
    /// into `struct{}`.
    content: Option<bool>,
}

/// The Go program, built into a directory removed when dropped.
struct Oracle {
    dir: PathBuf,
    binary: PathBuf,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `GO_BIN`, else `go` on `PATH`.
fn go_tool() -> PathBuf {
    if let Some(go) = env::var_os("GO_BIN").filter(|go| !go.is_empty()) {
        return PathBuf::from(go);
    }
    env::var_os("PATH")
        .iter()
        .flat_map(env::split_paths)
        .map(|dir| dir.join("go"))
        .find(|go| go.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Go oracle needs Go: set GO_BIN to a go binary, or run scripts/install-go \
                 (installs Debian's golang-go) so that `go` is on PATH"
            )
        })
}

impl Oracle {
    fn build() -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/go-oracle");
        let dir = env::temp_dir().join(format!("openim-gateway-go-oracle-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let oracle = Self {
            binary: dir.join("go-oracle"),
            dir,
        };
        let mut build = Process::new(go_tool());
        build
            .arg("build")
            .arg("-o")
            .arg(&oracle.binary)
            .arg(".")
            .current_dir(&source)
            .env("GO111MODULE", "off");
        if env::var_os("GOCACHE").is_none() && env::var_os("HOME").is_none() {
            build.env("GOCACHE", oracle.dir.join("cache"));
        }
        let output = build
            .output()
            .unwrap_or_else(|error| panic!("running go build: {error}"));
        assert!(
            output.status.success(),
            "go build of tests/go-oracle failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        oracle
    }

    /// Go's verdict on each `(command, answer text)`, in order.
    fn judge(&self, queries: &[(&'static str, Vec<u8>)]) -> Vec<GoVerdict> {
        let mut lines = Vec::new();
        for (command, bytes) in queries {
            let text = std::str::from_utf8(bytes).expect("the oracle takes UTF-8 answers");
            serde_json::to_writer(&mut lines, &json!({"command": command, "answer": text}))
                .unwrap();
            lines.push(b'\n');
        }
        let mut child = Process::new(&self.binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&lines));
        let verdicts: Vec<GoVerdict> = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(&line.unwrap()).unwrap();
                let error = value["error"].as_str().unwrap_or_default().to_owned();
                assert!(!error.starts_with("oracle input"), "{error}");
                GoVerdict {
                    decodes: value["decodes"] == json!(true),
                    error,
                    refuses: value["refuses"] == json!(true),
                    next_code: value["nextCode"].as_i64().unwrap_or_default(),
                    content: value["content"].as_bool(),
                }
            })
            .collect();
        writer.join().unwrap().unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(verdicts.len(), queries.len(), "one verdict per answer");
        verdicts
    }
}

/// Replies chosen by hand: numbers beyond `f64`, lone surrogates, nesting around Go's limit
/// of 10000, `-0`, repeated keys, keys that Go folds to a tag (the Kelvin sign folds to `k`,
/// the long s to `s`), integers beyond int32 and int64, and a few plain mistakes.
fn edge_cases() -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = [
        "",
        "null",
        "[]",
        "\"\"",
        "{}",
        " {} ",
        "{} x",
        "{\"errMsg\":\"a\"",
        // Beyond f64.
        r#"{"other":1e400}"#,
        r#"{"other":[-1e400,{"x":1e999}]}"#,
        r#"{"errCode":1e400}"#,
        r#"{"errMsg":1e400}"#,
        r#"{"nickName":1e400}"#,
        r#"{"content":1e400}"#,
        r#"{"content":"{\"a\":1e400}"}"#,
        r#"{"content":"[1e400]"}"#,
        // Lone surrogates, and a pair.
        r#"{"errMsg":"\ud800"}"#,
        r#"{"errDlt":"\udc00x\ud800"}"#,
        r#"{"nickName":"\ud800"}"#,
        r#"{"remark":"\ud83d\ude00"}"#,
        r#"{"groupName":"\udfff"}"#,
        r#"{"content":"{\"a\":\"\\ud800\"}"}"#,
        r#"{"content":"\ud800"}"#,
        r#"{"other":"\ud800","\ud800":1}"#,
        // Minus zero.
        r#"{"errCode":-0}"#,
        r#"{"nextCode":-0,"actionCode":-0}"#,
        r#"{"roleLevel":-0}"#,
        r#"{"errCode":-0.0}"#,
        r#"{"needVerification":-0}"#,
        r#"{"needVerification":-0.0}"#,
        r#"{"recvMsgOpt":0e0}"#,
        // Repeated keys.
        r#"{"errMsg":"a","errMsg":"b"}"#,
        r#"{"errMsg":5,"errMsg":"b"}"#,
        r#"{"errCode":1,"ERRCODE":null}"#,
        r#"{"nickName":"a","NickName":"b","nickName":null}"#,
        r#"{"remark":"a","Remark":1}"#,
        r#"{"groupName":"a","groupName":null}"#,
        r#"{"options":{"a":true},"options":{"b":false}}"#,
        r#"{"nextCode":1,"errCode":5000,"nextCode":0}"#,
        // Case-folded keys.
        r#"{"NEXTCODE":1,"ERRCODE":500}"#,
        r#"{"nickname":"x","NICKNAME":"y"}"#,
        r#"{"remar\u212a":"kelvin"}"#,
        "{\"remar\u{212a}\":\"kelvin\"}",
        r#"{"\u017ftatus":1}"#,
        r#"{"\u017ftatus":"x"}"#,
        r#"{"i\u017fPinned":true}"#,
        r#"{"groupName":"a","GROUPNAME":"b"}"#,
        // Integers out of range.
        r#"{"errCode":2147483647}"#,
        r#"{"errCode":2147483648}"#,
        r#"{"errCode":-2147483649}"#,
        r#"{"roleLevel":99999999999999999999}"#,
        r#"{"muteEndTime":9223372036854775807}"#,
        r#"{"muteEndTime":9223372036854775808}"#,
        r#"{"other":123456789012345678901234567890}"#,
        r#"{"needVerification":2147483648}"#,
        r#"{"needVerification":1.0}"#,
        r#"{"needVerification":"1"}"#,
        r#"{"users":[{"createTime":9223372036854775808}]}"#,
        r#"{"memberCallbackList":[{"muteEndTime":1e3}]}"#,
        // Plain mistakes and odd but valid values.
        r#"{"msgDataList":[1,2,255]}"#,
        r#"{"msgDataList":[256]}"#,
        r#"{"msgDataList":"aGk"}"#,
        r#"{"options":{"a":1}}"#,
        r#"{"offlinePushInfo":{"iOSBadgeCount":"true"}}"#,
        r#"{"atUserIDList":[null]}"#,
        r#"{"userIDList":[null,"u"]}"#,
        r#"{"friendUserIDs":"u"}"#,
        r#"{"refusedMembersAccount":{}}"#,
        r#"{"content":"null"}"#,
        r#"{"content":" {} "}"#,
        r#"{"content":"{} x"}"#,
        r#"{"isPinned":1}"#,
        r#"{"errMsg":"a\u0000b"}"#,
        r#"{"actionCode":1,"nextCode":1,"errCode":5000}"#,
    ]
    .iter()
    .map(|case| case.as_bytes().to_vec())
    .collect();
    for depth in [200, 9_998, 9_999, 10_000] {
        let nested = |open: &str, close: &str| {
            format!(
                "{{\"other\":{}{}}}",
                open.repeat(depth),
                close.repeat(depth)
            )
        };
        cases.push(nested("[", "]").into_bytes());
        cases.push(
            nested("{\"a\":", "}")
                .replace("{\"a\":}", "{}")
                .into_bytes(),
        );
        let content = format!("{}1{}", "{\\\"a\\\":".repeat(depth), "}".repeat(depth));
        cases.push(format!("{{\"content\":\"{content}\"}}").into_bytes());
    }
    cases
}

/// Every before-command with its generated replies (seeded) and the edge cases.
fn cases() -> Vec<(&'static Command, Vec<u8>)> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let edges = edge_cases();
    let mut cases = Vec::new();
    for command in before_commands() {
        let strategy = reply_for(command, true);
        for _ in 0..REPLIES_PER_COMMAND {
            let reply = strategy.new_tree(&mut runner).expect("a reply").current();
            cases.push((command, serde_json::to_vec(&reply).unwrap()));
        }
        cases.extend(edges.iter().map(|edge| (command, edge.clone())));
    }
    cases
}

/// Whether the gateway's reason for refusing is Go's to decide: then Go must refuse too.
fn go_decides(error: &InvalidReply) -> bool {
    matches!(
        error,
        InvalidReply::NotJson(_)
            | InvalidReply::NotObject
            | InvalidReply::WrongType { .. }
            | InvalidReply::ContentNotJsonObject
    )
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 300 {
        format!("{}... ({} bytes)", &text[..300], text.len())
    } else {
        text.into_owned()
    }
}

#[test]
fn go_oracle_agrees_with_the_gateway_on_every_before_command() {
    let started = Instant::now();
    let oracle = Oracle::build();
    let built = started.elapsed();
    let cases = cases();

    // The gateway's judgement, and what Go is asked: each raw reply, then each forwarded
    // answer as the gateway encodes it (`serde_json::to_vec`, as `http/answer.rs` does).
    let mut queries = Vec::new();
    let mut judged = Vec::new();
    let mut requests = BTreeMap::new();
    for (command, reply) in &cases {
        let request = requests
            .entry(command.name)
            .or_insert_with(|| request_for(command.name));
        let outcome = normalise_reply(command, request, reply);
        queries.push((command.name, reply.clone()));
        let forwarded = outcome.as_ref().ok().map(|answer| {
            queries.push((command.name, serde_json::to_vec(answer).unwrap()));
            queries.len() - 1
        });
        judged.push((
            queries.len() - 1 - usize::from(forwarded.is_some()),
            outcome,
            forwarded,
        ));
    }
    let verdicts = oracle.judge(&queries);

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for ((command, reply), (raw, outcome, forwarded)) in cases.iter().zip(&judged) {
        let go = &verdicts[*raw];
        // What OpenIM would do with the raw reply: fail it (DataError, or ErrArgs for
        // MsgModify's content), refuse, or apply it.
        let go_says = if !go.decodes || go.content == Some(false) {
            "fails"
        } else if go.refuses {
            "refuses"
        } else {
            "allows"
        };
        let gateway_says = match outcome {
            Ok(answer) if answer.get("nextCode") == Some(&json!(1)) => {
                "forwards a refusal".to_owned()
            }
            Ok(_) => "forwards an allow".to_owned(),
            Err(error) => format!("refuses as {}", error.reason()),
        };
        *counts
            .entry(format!(
                "gateway {gateway_says}; OpenIM {go_says} the reply"
            ))
            .or_default() += 1;
        let failure = match (outcome, forwarded) {
            (Ok(answer), Some(index)) => {
                let sent = &verdicts[*index];
                let refusal = answer.get("nextCode") == Some(&json!(1));
                if !sent.decodes {
                    Some(format!(
                        "forwarded an answer Go cannot decode ({}): {}",
                        sent.error,
                        shown(&queries[*index].1)
                    ))
                } else if sent.content == Some(false) {
                    Some(format!(
                        "forwarded content OpenIM refuses: {}",
                        shown(&queries[*index].1)
                    ))
                } else if sent.refuses != refusal {
                    Some(format!(
                        "forwarded {}, which Go reads the other way round",
                        if refusal { "a refusal" } else { "an allow" }
                    ))
                } else if go_says == "fails" {
                    Some(format!("forwarded a reply OpenIM fails ({})", go.error))
                } else if !refusal && go_says == "refuses" {
                    Some("forwarded an allow for a reply OpenIM reads as a refusal".to_owned())
                } else if refusal && go_says == "allows" && go.next_code != 1 {
                    // `nextCode 1` with a non-zero `actionCode` is a refusal for the gateway,
                    // on purpose (judge.rs); anything else is not.
                    Some("forwarded a refusal for a reply OpenIM allows".to_owned())
                } else {
                    None
                }
            }
            (Err(InvalidReply::NotObject), _) if reply.trim_ascii() == b"null" => None,
            (Err(error), _) if go_decides(error) && go_says != "fails" => Some(format!(
                "refused as {} ({error}), but OpenIM {go_says} it",
                error.reason()
            )),
            _ => None,
        };
        if let Some(failure) = failure {
            failures.push(format!(
                "{}: reply {}: {failure}",
                command.name,
                shown(reply)
            ));
        }
    }

    let summary: Vec<String> = counts
        .iter()
        .map(|(outcome, count)| format!("{count:6}  {outcome}"))
        .collect();
    println!(
        "go oracle: {} replies over {} before-commands, {} answers decoded by Go; built in \
         {built:.1?}, done in {:.1?}\n{}",
        cases.len(),
        before_commands().len(),
        queries.len(),
        started.elapsed(),
        summary.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with Go (first 20):\n{}\n\nsummary:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        summary.join("\n")
    );
}
