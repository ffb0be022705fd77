//! The JSON Schemas of `docs/schema/`, generated from the types they describe.
//!
//! Workers in any language validate against those files, so they must say what the gateway
//! and the Rust types say. This test generates each schema with schemars (derived on the
//! types, in tests only) and compares it with the committed file: a change to a type without
//! a change to its file fails here. `UPDATE_SCHEMAS=1 cargo test -p openim-gateway-proto
//! schema` rewrites the files instead.

use std::path::{Path, PathBuf};

use schemars::{schema_for, Schema};

use crate::answer::CommonAnswer;
use crate::group_member::{MemberInfoChanges, SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest};

/// Where the schema files live, from the workspace root.
const SCHEMA_DIRECTORY: &str = "docs/schema";

/// Each committed file and the schema it must hold.
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

#[test]
fn committed_schemas_match_the_types() {
    let directory = schema_directory();
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for (file, description, schema) in schemas() {
        let path = directory.join(file);
        let generated = render(file, description, schema);
        if update {
            std::fs::create_dir_all(&directory).unwrap();
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == generated => {}
            Ok(_) => stale.push(format!("{} differs from the types", path.display())),
            Err(error) => stale.push(format!("{}: {error}", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun `UPDATE_SCHEMAS=1 cargo test -p openim-gateway-proto schema` and commit docs/schema/",
        stale.join("\n")
    );
}

#[test]
fn the_fixtures_and_answers_have_the_shapes_the_schemas_describe() {
    // A smoke check of the schema's content, beyond matching the file: the names OpenIM
    // uses, and null allowed where OpenIM sends it.
    let request = serde_json::to_value(schema_for!(SetGroupMemberInfoRequest)).unwrap();
    let properties = request["properties"].as_object().unwrap();
    for name in [
        "callbackCommand",
        "groupID",
        "userID",
        "nickName",
        "faceURL",
        "roleLevel",
        "ex",
    ] {
        assert!(properties.contains_key(name), "{name} missing: {request}");
    }
    assert_eq!(
        properties["nickName"]["type"],
        serde_json::json!(["string", "null"])
    );
    let answer = serde_json::to_value(schema_for!(SetGroupMemberInfoAnswer)).unwrap();
    let properties = answer["properties"].as_object().unwrap();
    for name in [
        "actionCode",
        "errCode",
        "errMsg",
        "errDlt",
        "nextCode",
        "nickName",
    ] {
        assert!(properties.contains_key(name), "{name} missing: {answer}");
    }
}
