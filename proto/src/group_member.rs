//! `callbackBeforeSetGroupMemberInfoCommand`: a group member's nickname, avatar, role or
//! extra data is about to change (docs/openim.md).
//!
//! OpenIM sends one request per member. Each data field is a Go pointer: `null` means the
//! client is not changing it, `""` is a value (clearing a nickname). In the answer, an absent
//! or `null` field keeps what the client asked for and a present one replaces or adds it, so
//! the answer type skips `None` when serialising.

use serde::{Deserialize, Serialize};

use crate::answer::CommonAnswer;

/// `roleLevel` of an ordinary member.
pub const ROLE_MEMBER: i32 = 20;
/// `roleLevel` of a group admin.
pub const ROLE_ADMIN: i32 = 60;
/// `roleLevel` of the group owner.
pub const ROLE_OWNER: i32 = 100;

/// The request body (`CallbackBeforeSetGroupMemberInfoReq`).
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetGroupMemberInfoRequest {
    /// Always `callbackBeforeSetGroupMemberInfoCommand` (or the after- command).
    pub callback_command: String,
    /// The group.
    #[serde(rename = "groupID")]
    pub group_id: String,
    /// The member whose information changes.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// The new group nickname, or `None` when it is not changing.
    pub nick_name: Option<String>,
    /// The new avatar URL, or `None` when it is not changing.
    #[serde(rename = "faceURL")]
    pub face_url: Option<String>,
    /// The new role (20 member, 60 admin, 100 owner), or `None` when it is not changing.
    pub role_level: Option<i32>,
    /// The new extra data (often JSON text), or `None` when it is not changing.
    pub ex: Option<String>,
}

/// The answer (`CallbackBeforeSetGroupMemberInfoResp`): the common fields plus the member
/// fields to write. `None` keeps the request's value.
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetGroupMemberInfoAnswer {
    /// Allow or refuse.
    #[serde(flatten)]
    pub common: CommonAnswer,
    /// Replaces the nickname.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nick_name: Option<String>,
    /// Replaces the avatar URL.
    #[serde(rename = "faceURL", skip_serializing_if = "Option::is_none", default)]
    pub face_url: Option<String>,
    /// Replaces the role. It is applied after OpenIM's permission checks.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role_level: Option<i32>,
    /// Replaces the extra data.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ex: Option<String>,
}

/// The member fields a modification changes, without the common fields: what a worker's
/// `Modify` decision carries. `None` keeps the request's value and is not written.
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfoChanges {
    /// Replaces the nickname.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nick_name: Option<String>,
    /// Replaces the avatar URL.
    #[serde(rename = "faceURL", skip_serializing_if = "Option::is_none", default)]
    pub face_url: Option<String>,
    /// Replaces the role. It is applied after OpenIM's permission checks.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub role_level: Option<i32>,
    /// Replaces the extra data.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ex: Option<String>,
}

impl SetGroupMemberInfoAnswer {
    /// Let the change through as the client asked.
    pub fn allow() -> Self {
        Self::default()
    }

    /// Refuse the change.
    pub fn reject(err_code: i32, err_msg: impl Into<String>) -> Self {
        Self {
            common: CommonAnswer::reject(err_code, err_msg),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NICKNAME_ONLY: &str = "{\"callbackCommand\":\"callbackBeforeSetGroupMemberInfoCommand\",\"groupID\":\"3316849202\",\"userID\":\"5427181639\",\"nickName\":\"  Alice \\u003cadmin\\u003e \\u0026 co  \",\"faceURL\":null,\"roleLevel\":null,\"ex\":null}\n";
    const CLEAR_NICKNAME: &str = "{\"callbackCommand\":\"callbackBeforeSetGroupMemberInfoCommand\",\"groupID\":\"3316849202\",\"userID\":\"5427181639\",\"nickName\":\"\",\"faceURL\":null,\"roleLevel\":null,\"ex\":null}\n";
    const ALL_FIELDS: &str = "{\"callbackCommand\":\"callbackBeforeSetGroupMemberInfoCommand\",\"groupID\":\"3316849202\",\"userID\":\"5427181639\",\"nickName\":\"Bob\",\"faceURL\":\"http://cdn.example.com/face/bob.png\",\"roleLevel\":60,\"ex\":\"{\\\"title\\\":\\\"moderator\\\"}\"}\n";

    #[test]
    fn reads_openim_bodies_with_nulls_escapes_and_trailing_newline() {
        let request: SetGroupMemberInfoRequest = serde_json::from_str(NICKNAME_ONLY).unwrap();
        assert_eq!(request.nick_name.as_deref(), Some("  Alice <admin> & co  "));
        assert_eq!(request.face_url, None);
        assert_eq!(request.role_level, None);
        assert_eq!(request.ex, None);
        assert_eq!(request.group_id, "3316849202");

        let all: SetGroupMemberInfoRequest = serde_json::from_str(ALL_FIELDS).unwrap();
        assert_eq!(all.role_level, Some(ROLE_ADMIN));
        assert_eq!(all.ex.as_deref(), Some(r#"{"title":"moderator"}"#));
    }

    #[test]
    fn empty_string_is_a_value_not_null() {
        let request: SetGroupMemberInfoRequest = serde_json::from_str(CLEAR_NICKNAME).unwrap();
        assert_eq!(request.nick_name.as_deref(), Some(""));
    }

    #[test]
    fn request_round_trips_with_explicit_nulls() {
        let request: SetGroupMemberInfoRequest = serde_json::from_str(NICKNAME_ONLY).unwrap();
        let written = serde_json::to_string(&request).unwrap();
        assert!(written.contains("\"faceURL\":null"), "{written}");
        let again: SetGroupMemberInfoRequest = serde_json::from_str(&written).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn answer_omits_fields_it_keeps() {
        let mut answer = SetGroupMemberInfoAnswer::allow();
        answer.nick_name = Some("Alice".to_owned());
        let written = serde_json::to_string(&answer).unwrap();
        assert_eq!(
            written,
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Alice"}"#
        );
        let back: SetGroupMemberInfoAnswer = serde_json::from_str(&written).unwrap();
        assert_eq!(back, answer);
    }

    #[test]
    fn answer_reads_null_as_keep() {
        let answer: SetGroupMemberInfoAnswer =
            serde_json::from_str(r#"{"actionCode":0,"nextCode":0,"nickName":null,"roleLevel":20}"#)
                .unwrap();
        assert_eq!(answer.nick_name, None);
        assert_eq!(answer.role_level, Some(ROLE_MEMBER));
    }

    #[test]
    fn reject_serialises_without_member_fields() {
        let written = serde_json::to_string(&SetGroupMemberInfoAnswer::reject(5001, "no")).unwrap();
        assert_eq!(
            written,
            r#"{"actionCode":0,"errCode":5001,"errMsg":"no","errDlt":"","nextCode":1}"#
        );
    }
}
