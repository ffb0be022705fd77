//! The JSON Schemas of `docs/schema/`, generated from the types and tables they describe.
//!
//! Workers in any language validate against those files, so they must say what the gateway
//! and the Rust types say. Two sources:
//! - the seed command's files and the common answer, generated with schemars (derived on the
//!   types, in tests only);
//! - `openim-commands.schema.json`, one `$defs` entry per command's request and, for a
//!   before-callback, per answer, generated from the mirror of OpenIM's Go structs
//!   (`crate::openim::{requests, answers}`) by mapping each Go type to JSON Schema.
//!
//! The test compares each generated schema with the committed file: a change to a type or a
//! table without a change to its file fails here. `UPDATE_SCHEMAS=1 cargo test -p
//! openim-gateway-proto schema` rewrites the files instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use schemars::{schema_for, Schema};
use serde_json::{json, Map, Value};

use crate::answer::CommonAnswer;
use crate::catalog::{CallbackKind, Command, COMMANDS};
use crate::group_member::{MemberInfoChanges, SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest};
use crate::openim::answers::{AnswerField, Applied, Guard, OFFLINE_PUSH_INFO};
use crate::openim::go::{GoField, GoType};
use crate::openim::requests;

/// Where the schema files live, from the workspace root.
const SCHEMA_DIRECTORY: &str = "docs/schema";

/// The file with every command's request and answer.
const COMMANDS_FILE: &str = "openim-commands.schema.json";

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Standard base64 as Go's `base64.StdEncoding` decodes it (`\r` and `\n` aside, which Go
/// skips and this pattern refuses).
const BASE64: &str = "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$";

/// A schemars transform for the common answer's integer fields: the gateway reads an int32
/// or `null` (`decision::normalise_reply` in the gateway).
pub(crate) fn read_as_int32_or_null(schema: &mut Schema) {
    schema.insert("type".to_owned(), json!(["integer", "null"]));
    schema.insert("minimum".to_owned(), i32::MIN.into());
    schema.insert("maximum".to_owned(), i32::MAX.into());
}

/// A schemars transform for the common answer's string fields: a string or `null`.
pub(crate) fn read_as_string_or_null(schema: &mut Schema) {
    schema.insert("type".to_owned(), json!(["string", "null"]));
}

/// Each schemars-generated file and the schema it must hold.
fn schemas() -> Vec<(&'static str, &'static str, Schema)> {
    vec![
        (
            "common-answer.json",
            "The five fields every answer to an OpenIM callback shares. A reject is nextCode 1 with an errCode of at least 100.",
            schema_for!(CommonAnswer),
        ),
        (
            "set-group-member-info.request.json",
            "The body of callbackBeforeSetGroupMemberInfoCommand, as OpenIM sends it: null means the client is not changing that field.",
            schema_for!(SetGroupMemberInfoRequest),
        ),
        (
            "set-group-member-info.answer.json",
            "A worker's answer to callbackBeforeSetGroupMemberInfoCommand: the common fields, plus the member fields to replace (leave a field out to keep the request's value).",
            schema_for!(SetGroupMemberInfoAnswer),
        ),
        (
            "set-group-member-info.changes.json",
            "The member fields a modification of callbackBeforeSetGroupMemberInfoCommand replaces, without the common fields.",
            schema_for!(MemberInfoChanges),
        ),
    ]
}

/// Which way a Go value travels, which decides where `null` can appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Written by OpenIM's encoder: `null` only for a nil pointer, slice or map.
    Request,
    /// Read by Go's decoder and the gateway: `null` is accepted for every value.
    Answer,
}

/// `schema` that also admits `null`.
fn or_null(mut schema: Map<String, Value>) -> Map<String, Value> {
    match schema.get_mut("type") {
        Some(Value::String(name)) => {
            let name = std::mem::take(name);
            schema.insert("type".to_owned(), json!([name, "null"]));
        }
        Some(Value::Array(names)) => {
            if !names.contains(&json!("null")) {
                names.push(json!("null"));
            }
        }
        _ => {
            if let Some(Value::Array(choices)) = schema.get_mut("anyOf") {
                choices.push(json!({"type": "null"}));
            }
        }
    }
    schema
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a schema literal is an object"),
    }
}

/// The JSON Schema of a Go type.
fn go_type(ty: GoType, side: Side) -> Map<String, Value> {
    let schema = match ty {
        GoType::Str => object(json!({"type": "string"})),
        GoType::Int32 => object(json!({
            "type": "integer", "format": "int32", "minimum": i32::MIN, "maximum": i32::MAX,
        })),
        GoType::Int64 => object(json!({
            "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX,
        })),
        GoType::Bool => object(json!({"type": "boolean"})),
        GoType::Bytes => {
            let text = json!({"type": "string", "contentEncoding": "base64", "pattern": BASE64});
            let schema = match side {
                Side::Request => object(text),
                // Go's decoder also takes an array of bytes, `null` elements as 0.
                Side::Answer => object(json!({"anyOf": [text, {
                    "type": "array",
                    "items": {"type": ["integer", "null"], "minimum": 0, "maximum": 255},
                }]})),
            };
            return or_null(schema);
        }
        GoType::Slice(element) => {
            let mut schema = object(json!({"type": "array"}));
            schema.insert("items".to_owned(), go_type(*element, side).into());
            // A nil slice is `null`.
            return or_null(schema);
        }
        GoType::BoolMap => {
            let mut schema = object(json!({"type": "object"}));
            schema.insert(
                "additionalProperties".to_owned(),
                go_type(GoType::Bool, side).into(),
            );
            return or_null(schema);
        }
        GoType::Struct(fields) => go_struct(fields, side, &[]),
        GoType::Ptr(inner) => return or_null(go_type(*inner, side)),
    };
    match side {
        Side::Request => schema,
        Side::Answer => or_null(schema),
    }
}

/// The JSON Schema of a Go struct. OpenIM's encoder writes every field (no request struct
/// uses `omitempty`) except those named in `optional`; unknown keys are allowed, as Go
/// ignores them and a later OpenIM may add fields.
fn go_struct(fields: &[GoField], side: Side, optional: &[&str]) -> Map<String, Value> {
    let mut properties = Map::new();
    for field in fields {
        properties.insert(field.name.to_owned(), go_type(field.ty, side).into());
    }
    let mut schema = object(json!({"type": "object"}));
    schema.insert("properties".to_owned(), properties.into());
    if side == Side::Request {
        let required: Vec<&str> = fields
            .iter()
            .map(|field| field.name)
            .filter(|name| !optional.contains(name))
            .collect();
        schema.insert("required".to_owned(), json!(required));
    }
    schema
}

/// What a worker should know about one answer field, beyond its type.
fn describe_answer_field(field: &AnswerField) -> String {
    let applied = match field.applied {
        Applied::IfNotNull => "Applied when not null; leave it out or send null to keep the request's value.",
        Applied::Always => "OpenIM overwrites its own value with this field whatever the answer says; the gateway fills it from the request when the answer leaves it out.",
        Applied::IfNotEmpty => "Applied only when not empty.",
        Applied::Ignored => "Decoded by OpenIM, never read: the gateway drops it.",
    };
    let guard = match field.guard {
        Guard::Free => String::new(),
        Guard::SameAsRequest => " A non-null value must equal the request's.".to_owned(),
        Guard::ChosenWhenUnset => {
            " A non-null value must equal the request's, unless the request's is \"\": then the worker chooses it.".to_owned()
        }
        Guard::RequestPointerSet => {
            " Allowed only when the request's value is not null.".to_owned()
        }
        Guard::DropUnsetEcho => {
            " A value equal to the request's \"\" or 0 (its way of saying \"not set\") is dropped.".to_owned()
        }
        Guard::SubsetOf(key) => format!(" Every element must be in the request's `{key}`."),
        Guard::Unverifiable => {
            " Must be absent, null or empty: the request has nothing to check it against.".to_owned()
        }
        Guard::JsonObjectText => " Must be the text of a JSON object (or \"null\").".to_owned(),
        Guard::NotBlank => {
            " Must not be blank after trimming spaces, unless the request's already is.".to_owned()
        }
        Guard::RegisteredUsers => {
            " No null entry; each entry's userID one of the request's users, each once.".to_owned()
        }
        Guard::JoiningMembers => {
            " No null entry, none without a userID; entries for users not joining are dropped.".to_owned()
        }
    };
    format!("{applied}{guard}")
}

/// The request of `command` as OpenIM writes it.
fn request_schema(command: &Command) -> Value {
    let fields = requests::request(command.name).expect("every command has a request mirror");
    // The push request embeds `*sdkws.OfflinePushInfo`, which writes no keys when nil.
    let optional: Vec<&str> = if fields == requests::PUSH {
        OFFLINE_PUSH_INFO.iter().map(|field| field.name).collect()
    } else {
        Vec::new()
    };
    let kind = match command.kind {
        CallbackKind::Before => "before-callback: OpenIM waits for the answer",
        CallbackKind::After => "after-callback: a notification, nobody reads an answer",
    };
    let mut description = format!(
        "The body OpenIM sends for {} ({kind}; sent by OpenIM {}).",
        command.name, command.versions
    );
    if command.never_sent {
        description.push_str(" Defined by OpenIM, but no code path sends it.");
    }
    let mut schema = object(json!({"description": description}));
    schema.extend(go_struct(fields, Side::Request, &optional));
    Value::Object(schema)
}

/// The answer a worker may give to the before-callback `command`: the common fields, then
/// the command's own.
fn answer_schema(command: &Command, common: &Map<String, Value>) -> Value {
    let own = if command.answer.is_empty() {
        "Only the common fields: allow or refuse."
    } else {
        "The common fields, then the fields of OpenIM's answer struct for this command."
    };
    let description = format!(
        "A worker's answer to {}. {own} The gateway matches keys ignoring ASCII case, drops keys it does not know, and checks more than types (docs/worker-protocol.md, \"How the gateway reads a reply\").",
        command.name
    );
    let mut properties = common.clone();
    for field in command.answer {
        let mut schema = object(json!({"description": describe_answer_field(field)}));
        schema.extend(go_type(field.ty, Side::Answer));
        properties.insert(field.name.to_owned(), schema.into());
    }
    json!({"description": description, "type": "object", "properties": properties})
}

/// The name of the `$defs` entry of a command's request or answer.
fn definition(command: &str, part: &str) -> String {
    format!("{command}.{part}")
}

/// `openim-commands.schema.json`: every command of the catalog, in catalog order.
fn command_schemas() -> Value {
    let common = schema_for!(CommonAnswer).to_value();
    let common_properties = common["properties"].as_object().unwrap().clone();
    let mut definitions = Map::new();
    for command in COMMANDS {
        definitions.insert(definition(command.name, "request"), request_schema(command));
        if command.kind == CallbackKind::Before {
            definitions.insert(
                definition(command.name, "answer"),
                answer_schema(command, &common_properties),
            );
        }
    }
    json!({
        "$schema": DRAFT,
        "$id": COMMANDS_FILE,
        "title": "OpenIM callback commands",
        "description": "Every OpenIM callback command the gateway knows, generated from its mirror of OpenIM's Go structs: `#/$defs/<command>.request` is the body OpenIM sends, `#/$defs/<command>.answer` (before-callbacks only) what a worker may answer. Integers are bounded as Go's int32 and int64 are; pointers, slices and maps may be null in a request; every answer value may be null (null keeps the request's value).",
        "$defs": definitions,
    })
}

fn schema_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(SCHEMA_DIRECTORY)
}

/// The file's text: the schema with an `$id` naming its file and a description of what it
/// is for, pretty-printed with a final newline.
fn render(file: &str, description: &str, mut schema: Schema) -> String {
    // A relative `$id`: the files reference nothing outside themselves, and the repository's
    // address is not the schema's business.
    schema.insert("$id".to_owned(), file.into());
    schema.insert("description".to_owned(), description.into());
    let mut text = serde_json::to_string_pretty(&schema).unwrap();
    text.push('\n');
    text
}

/// Every committed file and its generated text.
fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = schemas()
        .into_iter()
        .map(|(file, description, schema)| (file.to_owned(), render(file, description, schema)))
        .collect();
    let mut text = serde_json::to_string_pretty(&command_schemas()).unwrap();
    text.push('\n');
    files.push((COMMANDS_FILE.to_owned(), text));
    files
}

#[test]
fn committed_schemas_match_the_types() {
    let directory = schema_directory();
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, generated) in files() {
        let path = directory.join(&file);
        if update {
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == generated => {}
            Ok(_) => stale.push(format!(
                "{} differs from the types and the mirror",
                path.display()
            )),
            Err(error) => stale.push(format!("{}: {error}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun `UPDATE_SCHEMAS=1 cargo test -p openim-gateway-proto schema` and commit docs/schema/",
        stale.join("\n")
    );
}

/// Validators for the committed files and for each `$defs` entry of the commands file,
/// compiled once per name.
struct Validators {
    commands: Value,
    compiled: HashMap<String, jsonschema::Validator>,
}

impl Validators {
    fn new() -> Self {
        Self {
            commands: read_committed(COMMANDS_FILE),
            compiled: HashMap::new(),
        }
    }

    /// The validator of a committed file (`common-answer.json`) or of a `$defs` entry of the
    /// commands file (`<command>.request`).
    fn get(&mut self, name: &str) -> &jsonschema::Validator {
        if !self.compiled.contains_key(name) {
            let mut schema = if name.ends_with(".json") {
                read_committed(name)
            } else {
                let mut schema = self.commands.clone();
                assert!(
                    schema["$defs"].get(name).is_some(),
                    "{name} is not in {COMMANDS_FILE}"
                );
                schema["$ref"] = format!("#/$defs/{name}").into();
                schema
            };
            // The relative `$id` names the file for readers; the validator needs no base.
            schema.as_object_mut().unwrap().remove("$id");
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|error| panic!("{name} is not a valid schema: {error}"));
            self.compiled.insert(name.to_owned(), validator);
        }
        &self.compiled[name]
    }

    /// The validation errors of `instance` against `name`, one line each.
    fn errors(&mut self, name: &str, instance: &Value) -> Vec<String> {
        self.get(name)
            .iter_errors(instance)
            .map(|error| format!("{}: {error}", error.instance_path()))
            .collect()
    }
}

fn read_committed(file: &str) -> Value {
    let path = schema_directory().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn workspace_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every fixture is valid against its command's request schema; every answer of the shared
/// case table (`worker-example/cases.json`) against its command's answer schema and the
/// common answer's; the seed command's fixtures and cases also against the seed files. And
/// the schemas refuse what they must: a wrong type, an int32 out of range.
#[test]
fn the_fixtures_and_answers_have_the_shapes_the_schemas_describe() {
    let mut validators = Validators::new();
    let mut failures = Vec::new();
    let check = |validators: &mut Validators,
                 failures: &mut Vec<String>,
                 schema: &str,
                 what: &str,
                 instance: &Value| {
        for error in validators.errors(schema, instance) {
            failures.push(format!("{what} against {schema}: {error}"));
        }
    };

    let mut fixtures = 0;
    let directory = workspace_file("fixtures/openim");
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let body: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let command = body["callbackCommand"].as_str().unwrap().to_owned();
        check(
            &mut validators,
            &mut failures,
            &definition(&command, "request"),
            &name,
            &body,
        );
        if command == crate::catalog::BEFORE_SET_GROUP_MEMBER_INFO {
            check(
                &mut validators,
                &mut failures,
                "set-group-member-info.request.json",
                &name,
                &body,
            );
        }
        fixtures += 1;
    }
    assert_eq!(fixtures, 64, "fixtures checked");

    let table: Value = serde_json::from_slice(
        &std::fs::read(workspace_file("worker-example/cases.json")).unwrap(),
    )
    .unwrap();
    let command = table["command"].as_str().unwrap();
    let cases = table["suites"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|suite| suite["cases"].as_array().unwrap())
        .chain(table["protocol"].as_array().unwrap());
    let mut answers = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        if let Some(body) = case.get("body") {
            let request = definition(command, "request");
            if case["expect"]["worker_service_error_code"] == "400" {
                // The workers refuse this body as not the command's request: so does the schema.
                if validators.errors(&request, body).is_empty() {
                    failures.push(format!(
                        "{name}: refused by the workers, valid against {request}"
                    ));
                }
            } else {
                check(&mut validators, &mut failures, &request, name, body);
            }
        }
        if let Some(answer) = case["expect"].get("answer") {
            for schema in [
                definition(command, "answer"),
                "common-answer.json".to_owned(),
                "set-group-member-info.answer.json".to_owned(),
            ] {
                check(&mut validators, &mut failures, &schema, name, answer);
            }
            answers += 1;
        }
    }
    assert!(answers >= 60, "only {answers} answers in the case table");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The schemas are not vacuous: what the gateway refuses, they refuse too.
    let seed = definition(crate::catalog::BEFORE_SET_GROUP_MEMBER_INFO, "request");
    let mut body: Value = serde_json::from_slice(
        &std::fs::read(workspace_file(
            "fixtures/openim/before_set_group_member_info.role_only.json",
        ))
        .unwrap(),
    )
    .unwrap();
    body["nickName"] = json!(5);
    assert!(!validators.errors(&seed, &body).is_empty());
    body["nickName"] = Value::Null;
    body["roleLevel"] = json!(i64::from(i32::MAX) + 1);
    assert!(!validators.errors(&seed, &body).is_empty());
    body.as_object_mut().unwrap().remove("groupID");
    assert!(!validators.errors(&seed, &body).is_empty());
    for schema in ["common-answer.json", "set-group-member-info.answer.json"] {
        assert!(!validators
            .errors(schema, &json!({"errCode": "5001"}))
            .is_empty());
        assert!(!validators
            .errors(schema, &json!({"nextCode": 2_147_483_648_i64}))
            .is_empty());
    }
}

/// The answer schemas accept exactly what the gateway's decoder accepts, value by value:
/// for every before-callback's every field, common ones included, a set of probe values is
/// valid against the schema when and only when `go::decode` takes it. (Not probed: the three
/// differences a schema cannot express, listed on docs/worker-protocol.md.)
#[test]
fn the_answer_schemas_accept_what_the_gateway_decodes() {
    use crate::answer::fields;
    use crate::openim::go::decode;

    let probes = [
        Value::Null,
        json!(""),
        json!("text"),
        json!("aGk="),
        json!("hi!"),
        json!(0),
        json!(-1),
        json!(i64::from(i32::MAX)),
        json!(i64::from(i32::MAX) + 1),
        json!(i64::from(i32::MIN) - 1),
        json!(u64::MAX),
        json!(1.5),
        json!(true),
        json!([]),
        json!(["a", null]),
        json!([1, 255]),
        json!([256]),
        json!([{"userID": "u1", "roleLevel": 60}]),
        json!([{"userID": 5}]),
        json!([null]),
        json!({}),
        json!({"a": true, "b": null}),
        json!({"a": 1}),
        json!({"title": "t", "iOSBadgeCount": true}),
        json!({"iOSBadgeCount": "yes"}),
    ];
    let mut validators = Validators::new();
    let mut mismatches = Vec::new();
    let mut probed = 0;
    for command in COMMANDS.iter().filter(|c| c.kind == CallbackKind::Before) {
        let name = definition(command.name, "answer");
        let common = fields::INTEGERS
            .iter()
            .map(|field| (*field, GoType::Int32))
            .chain(fields::STRINGS.iter().map(|field| (*field, GoType::Str)));
        let own = command.answer.iter().map(|field| (field.name, field.ty));
        for (field, ty) in common.chain(own) {
            for probe in &probes {
                let decoded = decode(ty, probe).is_ok();
                let reply = json!({ field: probe });
                let valid = validators.errors(&name, &reply).is_empty();
                if decoded != valid {
                    mismatches.push(format!(
                        "{name} {reply}: the gateway decodes it: {decoded}, the schema accepts it: {valid}"
                    ));
                }
                probed += 1;
            }
        }
    }
    assert!(probed > 1000, "{probed} probes");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
