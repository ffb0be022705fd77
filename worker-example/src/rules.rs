//! The policy: what this worker allows, refuses or rewrites when a group member's info changes.
//!
//! Everything here is a plain function over values: no NATS, no clock, no environment. The
//! worker module feeds it parsed requests and sends back what it returns; the settings module
//! builds the [`Rules`] from the environment. The error codes are part of the contract with the
//! end-to-end tests and with whoever reads OpenIM's error toasts, so they are constants.

use openim_gateway_proto::group_member::{
    SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest, ROLE_ADMIN, ROLE_MEMBER, ROLE_OWNER,
};

/// Refusal: the nickname contains a banned word (rule 2).
pub const ERR_BANNED_WORD: i32 = 5001;
/// Refusal: the nickname has more characters than allowed (rule 3).
pub const ERR_NICKNAME_TOO_LONG: i32 = 5002;
/// Refusal: the nickname was only whitespace (rule 1).
pub const ERR_BLANK_NICKNAME: i32 = 5003;
/// Refusal: the avatar URL is not `https://` (rule 4).
pub const ERR_AVATAR_NOT_HTTPS: i32 = 5004;
/// Refusal: the request tries to make someone the owner (rule 5).
pub const ERR_OWNER_ROLE: i32 = 5005;
/// Refusal: the request sets a role that is neither member nor admin (rule 5).
pub const ERR_UNKNOWN_ROLE: i32 = 5006;

/// The words refused in nicknames when `WORKER_BANNED_WORDS` is unset: names that make a
/// member look like staff. Short on purpose; operators bring their own list.
pub const DEFAULT_BANNED_WORDS: &[&str] = &["admin", "official", "openim"];

/// The nickname length limit when `WORKER_MAX_NICKNAME_CHARS` is unset. 32 characters fits
/// every client layout OpenIM ships without truncation.
pub const DEFAULT_MAX_NICKNAME_CHARS: usize = 32;

/// The upper bound an operator may set for the nickname length: the size of a classic
/// `VARCHAR(255)` column, well above anything a group member list can display.
pub const MAX_NICKNAME_CHARS_LIMIT: usize = 255;

/// The only avatar URL scheme allowed; compared case-insensitively because URL schemes are.
const HTTPS_PREFIX: &str = "https://";

/// The settings of the policy. Built once at start and shared by every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Lowercased, whitespace-normalised and non-empty, so that matching is a plain substring
    /// search over the lowercased normalised nickname.
    banned_words: Vec<String>,
    /// Counted in Unicode scalar values (`char`s), not bytes: a 32-character Chinese nickname
    /// is 96 bytes and must still fit.
    max_nickname_chars: usize,
}

impl Rules {
    /// Rules refusing `banned_words` (matched case-insensitively) and nicknames longer than
    /// `max_nickname_chars` characters. Empty or whitespace-only words are dropped: an empty
    /// word would match every nickname.
    pub fn new<Word: AsRef<str>>(
        banned_words: impl IntoIterator<Item = Word>,
        max_nickname_chars: usize,
    ) -> Self {
        let banned_words = banned_words
            .into_iter()
            .map(|word| normalise_whitespace(word.as_ref()).to_lowercase())
            .filter(|word| !word.is_empty())
            .collect();
        Self {
            banned_words,
            max_nickname_chars,
        }
    }

    /// The banned words as matched: lowercased and whitespace-normalised.
    pub fn banned_words(&self) -> &[String] {
        &self.banned_words
    }

    /// The longest nickname allowed, in characters.
    pub fn max_nickname_chars(&self) -> usize {
        self.max_nickname_chars
    }

    /// The first banned word `nickname` contains, if any. `nickname` must already be
    /// normalised (see [`normalise_whitespace`]), so that a word like `"big boss"` also
    /// matches `"big \t boss"`. Public so the worker can log which word matched, which the
    /// answer deliberately does not say.
    pub fn banned_word_in(&self, nickname: &str) -> Option<&str> {
        let lowercase = nickname.to_lowercase();
        self.banned_words
            .iter()
            .find(|word| lowercase.contains(word.as_str()))
            .map(String::as_str)
    }
}

impl Default for Rules {
    fn default() -> Self {
        Self::new(DEFAULT_BANNED_WORDS, DEFAULT_MAX_NICKNAME_CHARS)
    }
}

/// Decides one request. Rules apply in a fixed order and the first one that fails decides,
/// so a request breaking several rules always gets the same code:
///
/// 1. a non-empty nickname that is only whitespace: 5003
/// 2. a nickname containing a banned word: 5001
/// 3. a nickname longer than the limit: 5002
/// 4. a non-empty avatar URL that is not `https://`: 5004
/// 5. `roleLevel` 100 (owner): 5005; any other role but 20 or 60: 5006
/// 6. otherwise allow, rewriting the nickname if normalising changed it.
///
/// The answer only ever carries `nickName`, and only when it differs from the request's:
/// OpenIM writes every member field the answer sets (docs/openim.md), so echoing a field the
/// client left `null` would add a change nobody asked for.
pub fn decide(rules: &Rules, request: &SetGroupMemberInfoRequest) -> SetGroupMemberInfoAnswer {
    let normalised_nickname = request.nick_name.as_deref().map(normalise_whitespace);

    if let (Some(original), Some(nickname)) = (request.nick_name.as_deref(), &normalised_nickname) {
        // `""` is the client clearing its nickname; only whitespace that collapses to nothing
        // is refused, since OpenIM would store a name that renders as blank.
        if nickname.is_empty() && !original.is_empty() {
            return SetGroupMemberInfoAnswer::reject(
                ERR_BLANK_NICKNAME,
                "nickname must not be blank",
            );
        }
        // The word is not echoed: the message reaches the end user, a constant message cannot
        // be used to probe the list word by word, and clients can match it exactly.
        if rules.banned_word_in(nickname).is_some() {
            return SetGroupMemberInfoAnswer::reject(
                ERR_BANNED_WORD,
                "nickname contains a banned word",
            );
        }
        if nickname.chars().count() > rules.max_nickname_chars {
            return SetGroupMemberInfoAnswer::reject(
                ERR_NICKNAME_TOO_LONG,
                format!(
                    "nickname is longer than {} characters",
                    rules.max_nickname_chars
                ),
            );
        }
    }

    if let Some(face_url) = request.face_url.as_deref() {
        // `""` clears the avatar and is allowed.
        if !face_url.is_empty() && !starts_with_https(face_url) {
            return SetGroupMemberInfoAnswer::reject(
                ERR_AVATAR_NOT_HTTPS,
                "avatar URL must use https",
            );
        }
    }

    match request.role_level {
        None | Some(ROLE_MEMBER | ROLE_ADMIN) => {}
        Some(ROLE_OWNER) => {
            return SetGroupMemberInfoAnswer::reject(
                ERR_OWNER_ROLE,
                "the owner changes through a group owner transfer, not member info",
            );
        }
        Some(_) => {
            return SetGroupMemberInfoAnswer::reject(
                ERR_UNKNOWN_ROLE,
                "roleLevel must be 20 (member) or 60 (admin)",
            );
        }
    }

    let mut answer = SetGroupMemberInfoAnswer::allow();
    if normalised_nickname.as_deref() != request.nick_name.as_deref() {
        answer.nick_name = normalised_nickname;
    }
    answer
}

/// Trims `text` and collapses every run of Unicode whitespace (spaces, tabs, newlines,
/// no-break and ideographic spaces) into one ASCII space. Characters that are invisible but
/// not whitespace in Unicode, such as the zero-width space, are kept as they are.
pub fn normalise_whitespace(text: &str) -> String {
    let mut normalised = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !normalised.is_empty() {
            normalised.push(' ');
        }
        normalised.push_str(word);
    }
    normalised
}

/// Whether `url` starts with `https://`, the scheme compared case-insensitively.
fn starts_with_https(url: &str) -> bool {
    url.get(..HTTPS_PREFIX.len())
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(HTTPS_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixtures, byte for byte as OpenIM writes them (see `fixtures/openim/README.md`).
    const FIXTURE_NICKNAME_ONLY: &str =
        include_str!("../../fixtures/openim/before_set_group_member_info.nickname_only.json");
    const FIXTURE_ALL_FIELDS: &str =
        include_str!("../../fixtures/openim/before_set_group_member_info.all_fields.json");
    const FIXTURE_ROLE_ONLY: &str =
        include_str!("../../fixtures/openim/before_set_group_member_info.role_only.json");
    const FIXTURE_CLEAR_NICKNAME: &str =
        include_str!("../../fixtures/openim/before_set_group_member_info.clear_nickname.json");

    /// A request changing nothing; tests set the fields they are about.
    fn request() -> SetGroupMemberInfoRequest {
        SetGroupMemberInfoRequest {
            callback_command: "callbackBeforeSetGroupMemberInfoCommand".to_owned(),
            group_id: "3316849202".to_owned(),
            user_id: "5427181639".to_owned(),
            ..SetGroupMemberInfoRequest::default()
        }
    }

    fn with_nickname(nickname: &str) -> SetGroupMemberInfoRequest {
        SetGroupMemberInfoRequest {
            nick_name: Some(nickname.to_owned()),
            ..request()
        }
    }

    fn with_face_url(face_url: &str) -> SetGroupMemberInfoRequest {
        SetGroupMemberInfoRequest {
            face_url: Some(face_url.to_owned()),
            ..request()
        }
    }

    fn with_role(role_level: i32) -> SetGroupMemberInfoRequest {
        SetGroupMemberInfoRequest {
            role_level: Some(role_level),
            ..request()
        }
    }

    fn allow_with_nickname(nickname: &str) -> SetGroupMemberInfoAnswer {
        SetGroupMemberInfoAnswer {
            nick_name: Some(nickname.to_owned()),
            ..SetGroupMemberInfoAnswer::allow()
        }
    }

    /// Decides `request` with `rules` and compares with `expected`, printing both on failure.
    #[track_caller]
    fn check(
        rules: &Rules,
        request: &SetGroupMemberInfoRequest,
        expected: &SetGroupMemberInfoAnswer,
    ) {
        let answer = decide(rules, request);
        assert_eq!(
            &answer, expected,
            "\nrequest:  {request:?}\nanswer:   {answer:?}\nexpected: {expected:?}"
        );
    }

    fn parse(body: &str) -> SetGroupMemberInfoRequest {
        serde_json::from_str(body).unwrap()
    }

    fn to_json(answer: &SetGroupMemberInfoAnswer) -> String {
        serde_json::to_string(answer).unwrap()
    }

    // Rule 1: blank nicknames.

    #[test]
    fn whitespace_only_nicknames_are_refused_as_blank() {
        let blank = SetGroupMemberInfoAnswer::reject(5003, "nickname must not be blank");
        for nickname in [
            " ",
            "   ",
            "\t",
            "\n\r\n",
            " \t \n ",
            "\u{00A0}",         // no-break space
            "\u{3000}\u{3000}", // ideographic space
            "\u{2003}\u{2028}", // em space, line separator
        ] {
            check(&Rules::default(), &with_nickname(nickname), &blank);
        }
    }

    #[test]
    fn empty_nickname_clears_it_and_is_allowed_unchanged() {
        check(
            &Rules::default(),
            &with_nickname(""),
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn null_nickname_is_not_checked_and_not_echoed() {
        let answer = decide(&Rules::default(), &request());
        assert_eq!(answer, SetGroupMemberInfoAnswer::allow());
        assert_eq!(
            to_json(&answer),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }

    // Whitespace normalisation and rule 6's rewrite.

    #[test]
    fn normalise_whitespace_trims_and_collapses_unicode_runs() {
        for (input, expected) in [
            ("", ""),
            ("Alice", "Alice"),
            ("  Alice  ", "Alice"),
            ("Alice   Bob", "Alice Bob"),
            ("Alice\t\nBob", "Alice Bob"),
            ("\u{3000}李\u{3000}\u{3000}雷\u{00A0}", "李 雷"),
            (" a b ", "a b"),
            ("   ", ""),
            // Not whitespace in Unicode, so kept.
            ("a\u{200B}b", "a\u{200B}b"),
        ] {
            assert_eq!(normalise_whitespace(input), expected, "{input:?}");
        }
    }

    #[test]
    fn nickname_that_normalises_differently_is_rewritten() {
        for (nickname, normalised) in [
            ("  Alice  ", "Alice"),
            ("Alice   Bob", "Alice Bob"),
            ("Alice\tBob", "Alice Bob"),
            ("\u{3000}Alice\u{3000}", "Alice"),
        ] {
            check(
                &Rules::default(),
                &with_nickname(nickname),
                &allow_with_nickname(normalised),
            );
        }
    }

    #[test]
    fn already_normalised_nickname_is_allowed_without_echo() {
        for nickname in ["Alice", "Alice Bob", "李雷", "x"] {
            check(
                &Rules::default(),
                &with_nickname(nickname),
                &SetGroupMemberInfoAnswer::allow(),
            );
        }
    }

    #[test]
    fn rewrite_carries_only_the_nickname() {
        let request = SetGroupMemberInfoRequest {
            nick_name: Some(" Bob ".to_owned()),
            face_url: Some("https://cdn.example.com/bob.png".to_owned()),
            role_level: Some(ROLE_ADMIN),
            ex: Some("{}".to_owned()),
            ..request()
        };
        assert_eq!(
            to_json(&decide(&Rules::default(), &request)),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Bob"}"#
        );
    }

    // Rule 2: banned words.

    #[test]
    fn banned_words_match_case_insensitively_anywhere() {
        let banned = SetGroupMemberInfoAnswer::reject(5001, "nickname contains a banned word");
        for nickname in [
            "admin",
            "ADMIN",
            "Admin",
            "the aDmIn team",
            "superadministrator",
            "Official Support",
            "OpenIM fan",
            "  openim  ",
        ] {
            check(&Rules::default(), &with_nickname(nickname), &banned);
        }
    }

    #[test]
    fn banned_words_match_unicode_case_insensitively() {
        let rules = Rules::new(["Straße", "ПРОВЕРКА"], 32);
        let banned = SetGroupMemberInfoAnswer::reject(5001, "nickname contains a banned word");
        check(&rules, &with_nickname("STRAßE 1"), &banned);
        check(&rules, &with_nickname("проверка"), &banned);
        check(
            &rules,
            &with_nickname("Strasse"),
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn banned_words_are_matched_after_normalising_whitespace() {
        let rules = Rules::new(["big boss"], 32);
        check(
            &rules,
            &with_nickname("the big \t  boss"),
            &SetGroupMemberInfoAnswer::reject(5001, "nickname contains a banned word"),
        );
        // A word written with odd spacing in the setting still matches.
        let rules = Rules::new(["  big   boss "], 32);
        assert_eq!(rules.banned_words(), ["big boss"]);
        check(
            &rules,
            &with_nickname("big boss"),
            &SetGroupMemberInfoAnswer::reject(5001, "nickname contains a banned word"),
        );
    }

    #[test]
    fn empty_banned_words_are_dropped_so_they_cannot_match_everything() {
        let rules = Rules::new(["", "  ", "\t"], 32);
        assert!(rules.banned_words().is_empty());
        check(
            &rules,
            &with_nickname("Alice"),
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn no_banned_words_allows_any_word() {
        let rules = Rules::new(Vec::<String>::new(), 32);
        check(
            &rules,
            &with_nickname("admin"),
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn banned_word_message_does_not_echo_the_word() {
        let answer = decide(&Rules::default(), &with_nickname("admin"));
        assert!(!answer.common.err_msg.contains("admin"));
        assert_eq!(
            to_json(&answer),
            r#"{"actionCode":0,"errCode":5001,"errMsg":"nickname contains a banned word","errDlt":"","nextCode":1}"#
        );
    }

    // Rule 3: length in characters.

    #[test]
    fn nickname_at_the_limit_is_allowed_and_one_more_is_refused() {
        let rules = Rules::new(Vec::<String>::new(), 5);
        check(
            &rules,
            &with_nickname("abcde"),
            &SetGroupMemberInfoAnswer::allow(),
        );
        check(
            &rules,
            &with_nickname("abcdef"),
            &SetGroupMemberInfoAnswer::reject(5002, "nickname is longer than 5 characters"),
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let rules = Rules::new(Vec::<String>::new(), 4);
        // 4 characters, 12 bytes.
        check(
            &rules,
            &with_nickname("李雷韩梅"),
            &SetGroupMemberInfoAnswer::allow(),
        );
        // 4 characters, 16 bytes.
        check(
            &rules,
            &with_nickname("😀😀😀😀"),
            &SetGroupMemberInfoAnswer::allow(),
        );
        check(
            &rules,
            &with_nickname("李雷韩梅梅"),
            &SetGroupMemberInfoAnswer::reject(5002, "nickname is longer than 4 characters"),
        );
        // Characters are Unicode scalar values: "e" plus a combining accent is two.
        check(
            &rules,
            &with_nickname("ab\u{0065}\u{0301}x"),
            &SetGroupMemberInfoAnswer::reject(5002, "nickname is longer than 4 characters"),
        );
    }

    #[test]
    fn length_is_measured_after_normalising_whitespace() {
        let rules = Rules::new(Vec::<String>::new(), 3);
        // 9 characters as sent, "a b" once normalised.
        check(
            &rules,
            &with_nickname("   a   b "),
            &allow_with_nickname("a b"),
        );
    }

    #[test]
    fn default_limit_is_32_characters() {
        let rules = Rules::default();
        assert_eq!(rules.max_nickname_chars(), 32);
        check(
            &rules,
            &with_nickname(&"x".repeat(32)),
            &SetGroupMemberInfoAnswer::allow(),
        );
        check(
            &rules,
            &with_nickname(&"x".repeat(33)),
            &SetGroupMemberInfoAnswer::reject(5002, "nickname is longer than 32 characters"),
        );
    }

    // Rule 4: avatar URL.

    #[test]
    fn https_avatar_urls_are_allowed_unchanged() {
        for url in [
            "https://cdn.example.com/face.png",
            "HTTPS://cdn.example.com/face.png",
            "Https://x",
            "https://",
        ] {
            check(
                &Rules::default(),
                &with_face_url(url),
                &SetGroupMemberInfoAnswer::allow(),
            );
        }
    }

    #[test]
    fn empty_avatar_url_clears_it_and_is_allowed() {
        check(
            &Rules::default(),
            &with_face_url(""),
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn other_avatar_urls_are_refused() {
        let refused = SetGroupMemberInfoAnswer::reject(5004, "avatar URL must use https");
        for url in [
            "http://cdn.example.com/face.png",
            "ftp://cdn.example.com/face.png",
            "//cdn.example.com/face.png",
            "cdn.example.com/face.png",
            " https://cdn.example.com/face.png",
            "https:/cdn.example.com",
            "https",
            "javascript:alert(1)",
            "data:image/png;base64,AAAA",
            // A multi-byte character across the 8th byte must not panic.
            "https:/é",
            "httpé://x",
            "😀😀😀",
        ] {
            check(&Rules::default(), &with_face_url(url), &refused);
        }
    }

    // Rule 5: role.

    #[test]
    fn member_and_admin_roles_are_allowed_unchanged() {
        for role in [ROLE_MEMBER, ROLE_ADMIN] {
            check(
                &Rules::default(),
                &with_role(role),
                &SetGroupMemberInfoAnswer::allow(),
            );
        }
    }

    #[test]
    fn owner_role_is_refused() {
        check(
            &Rules::default(),
            &with_role(ROLE_OWNER),
            &SetGroupMemberInfoAnswer::reject(
                5005,
                "the owner changes through a group owner transfer, not member info",
            ),
        );
    }

    #[test]
    fn unknown_roles_are_refused() {
        let refused =
            SetGroupMemberInfoAnswer::reject(5006, "roleLevel must be 20 (member) or 60 (admin)");
        for role in [0, 1, 19, 21, 59, 61, 99, 101, -20, i32::MIN, i32::MAX] {
            check(&Rules::default(), &with_role(role), &refused);
        }
    }

    // The order of the rules.

    #[test]
    fn first_failing_rule_decides() {
        let rules = Rules::new(["admin"], 5);
        let everything_wrong = |nickname: &str| SetGroupMemberInfoRequest {
            nick_name: Some(nickname.to_owned()),
            face_url: Some("http://x".to_owned()),
            role_level: Some(ROLE_OWNER),
            ..request()
        };
        let code = |request: &SetGroupMemberInfoRequest| decide(&rules, request).common.err_code;

        // Blank (1) before everything else.
        assert_eq!(code(&everything_wrong("   ")), ERR_BLANK_NICKNAME);
        // Banned (2) before too long (3): "administrator" is both.
        assert_eq!(code(&everything_wrong("administrator")), ERR_BANNED_WORD);
        // Too long (3) before the avatar (4).
        assert_eq!(code(&everything_wrong("abcdef")), ERR_NICKNAME_TOO_LONG);
        // Avatar (4) before the role (5).
        assert_eq!(code(&everything_wrong("abc")), ERR_AVATAR_NOT_HTTPS);
        // Role (5) last.
        let owner_only = SetGroupMemberInfoRequest {
            nick_name: Some("abc".to_owned()),
            face_url: Some("https://x".to_owned()),
            role_level: Some(ROLE_OWNER),
            ..request()
        };
        assert_eq!(code(&owner_only), ERR_OWNER_ROLE);
        let unknown_role = SetGroupMemberInfoRequest {
            role_level: Some(7),
            ..owner_only
        };
        assert_eq!(code(&unknown_role), ERR_UNKNOWN_ROLE);
    }

    #[test]
    fn a_refusal_never_carries_a_rewrite() {
        // The nickname would be rewritten, but the avatar is refused.
        let request = SetGroupMemberInfoRequest {
            nick_name: Some("  Bob  ".to_owned()),
            face_url: Some("http://x".to_owned()),
            ..request()
        };
        let answer = decide(&Rules::default(), &request);
        assert_eq!(answer.nick_name, None);
        assert_eq!(answer.common.err_code, ERR_AVATAR_NOT_HTTPS);
    }

    #[test]
    fn every_refusal_is_something_openim_refuses() {
        for request in [
            with_nickname(" "),
            with_nickname("admin"),
            with_nickname(&"x".repeat(40)),
            with_face_url("http://x"),
            with_role(ROLE_OWNER),
            with_role(1),
        ] {
            let answer = decide(&Rules::default(), &request);
            assert!(answer.common.is_reject(), "{request:?}");
            assert!(
                (5000..=9999).contains(&answer.common.err_code),
                "{answer:?}"
            );
            assert!(!answer.common.err_msg.is_empty());
            assert_eq!(
                (
                    answer.nick_name,
                    answer.face_url,
                    answer.role_level,
                    answer.ex
                ),
                (None, None, None, None)
            );
        }
    }

    // The fixtures OpenIM really sends.

    #[test]
    fn fixture_nickname_only_is_refused_for_the_default_banned_word_admin() {
        let request = parse(FIXTURE_NICKNAME_ONLY);
        assert_eq!(request.nick_name.as_deref(), Some("  Alice <admin> & co  "));
        assert_eq!(
            to_json(&decide(&Rules::default(), &request)),
            r#"{"actionCode":0,"errCode":5001,"errMsg":"nickname contains a banned word","errDlt":"","nextCode":1}"#
        );
    }

    #[test]
    fn fixture_nickname_only_is_rewritten_without_banned_words() {
        let request = parse(FIXTURE_NICKNAME_ONLY);
        let rules = Rules::new(Vec::<String>::new(), 32);
        // Serialised with serde_json, which does not escape `<>&` as Go does.
        assert_eq!(
            to_json(&decide(&rules, &request)),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0,"nickName":"Alice <admin> & co"}"#
        );
    }

    #[test]
    fn fixture_all_fields_is_refused_for_its_http_avatar() {
        let request = parse(FIXTURE_ALL_FIELDS);
        assert_eq!(
            to_json(&decide(&Rules::default(), &request)),
            r#"{"actionCode":0,"errCode":5004,"errMsg":"avatar URL must use https","errDlt":"","nextCode":1}"#
        );
    }

    #[test]
    fn fixture_all_fields_is_allowed_unchanged_with_an_https_avatar() {
        let mut request = parse(FIXTURE_ALL_FIELDS);
        request.face_url = Some("https://cdn.example.com/face/bob.png".to_owned());
        check(
            &Rules::default(),
            &request,
            &SetGroupMemberInfoAnswer::allow(),
        );
    }

    #[test]
    fn fixture_role_only_is_allowed_unchanged() {
        assert_eq!(
            to_json(&decide(&Rules::default(), &parse(FIXTURE_ROLE_ONLY))),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }

    #[test]
    fn fixture_clear_nickname_is_allowed_unchanged() {
        assert_eq!(
            to_json(&decide(&Rules::default(), &parse(FIXTURE_CLEAR_NICKNAME))),
            r#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
        );
    }
}
