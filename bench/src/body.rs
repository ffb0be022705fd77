//! The requests the benchmark sends: OpenIM-shaped `callbackBeforeSetGroupMemberInfoCommand`
//! bodies, byte for byte as OpenIM's Go encoder writes them, and the HTTP details around them.
//!
//! Every body asks to set a nickname with stray whitespace (`"  Alice  7 "`), so the worker
//! answers "allow, with the nickname normalised": the modify path, which exercises the
//! gateway's reply normalisation rather than a bare allow. This module only builds bytes; it
//! sends nothing.

use std::io::Write as _;

use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;

/// The path OpenIM's shipped `webhooks.yml` URL (`http://127.0.0.1:10006/callbackExample`)
/// produces for the seed command.
pub const CALLBACK_PATH: &str = "/callbackExample/callbackBeforeSetGroupMemberInfoCommand";

/// The `Content-Type` OpenIM's HTTP client sends.
pub const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// OpenIM's operation id header as Go canonicalises `operationID`.
pub const OPERATION_ID_HEADER: &str = "Operationid";

/// The group every benchmark request is about (the fixtures' group).
const GROUP_ID: &str = "3316849202";

/// The body of request number `sequence`, as Go's `json.Encoder` writes
/// `CallbackBeforeSetGroupMemberInfoReq`: fields in struct order, `null` for the pointers the
/// client leaves alone, and a trailing newline.
pub fn callback_body(sequence: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(192);
    // Writing to a Vec cannot fail.
    // `writeln!`: Go's `json.Encoder` ends every value with a newline.
    let _ = writeln!(
        body,
        "{{\"callbackCommand\":\"{BEFORE_SET_GROUP_MEMBER_INFO}\",\"groupID\":\"{GROUP_ID}\",\
         \"userID\":\"{sequence}\",\"nickName\":\"  Alice  {sequence} \",\"faceURL\":null,\
         \"roleLevel\":null,\"ex\":null}}"
    );
    body
}

/// The `Operationid` header value of request number `sequence`.
pub fn operation_id(sequence: u64) -> String {
    format!("bench-{sequence}")
}

#[cfg(test)]
mod tests {
    use openim_gateway_proto::group_member::SetGroupMemberInfoRequest;
    use openim_worker_example::rules::{decide, Rules};

    use super::*;

    #[test]
    fn body_is_what_go_writes_for_the_typed_request() {
        let body = callback_body(42);
        let request: SetGroupMemberInfoRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(request.user_id, "42");
        assert_eq!(request.nick_name.as_deref(), Some("  Alice  42 "));
        // serde writes the struct in Go's field order with explicit nulls: the same bytes.
        let mut again = serde_json::to_vec(&request).unwrap();
        again.push(b'\n');
        assert_eq!(
            String::from_utf8(again).unwrap(),
            String::from_utf8(body).unwrap()
        );
    }

    #[test]
    fn the_worker_rewrites_the_nickname() {
        let request: SetGroupMemberInfoRequest = serde_json::from_slice(&callback_body(7)).unwrap();
        let answer = decide(&Rules::default(), &request);
        assert_eq!(answer.nick_name.as_deref(), Some("Alice 7"));
        assert!(!answer.common.is_reject());
    }
}
