//! NATS subject naming: `{prefix}.{command}`, and the queue group workers join.

/// The default subject prefix (`GATEWAY_SUBJECT_PREFIX`).
pub const DEFAULT_PREFIX: &str = "openim.callback";

/// The queue group every worker joins, so that any number of workers share the load and each
/// callback reaches exactly one of them.
pub const QUEUE_GROUP: &str = "openim-workers";

/// The subject a callback is published on: `{prefix}.{command}`.
pub fn for_command(prefix: &str, command: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + 1 + command.len());
    subject.push_str(prefix);
    subject.push('.');
    subject.push_str(command);
    subject
}

/// Whether `subject` is a valid NATS subject to publish on: non-empty dot-separated tokens of
/// printable characters, without whitespace and without the wildcards `*` and `>`.
pub fn is_valid_publish_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_prefix_dot_command() {
        assert_eq!(
            for_command(DEFAULT_PREFIX, "callbackBeforeSetGroupMemberInfoCommand"),
            "openim.callback.callbackBeforeSetGroupMemberInfoCommand"
        );
    }

    #[test]
    fn publish_subjects_reject_wildcards_and_empty_tokens() {
        for good in ["openim.callback", "a", "a.b-c_d.e1", "tenant42.callbacks"] {
            assert!(is_valid_publish_subject(good), "{good}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a.*", "a.>", "a b", "a\tb", "a.b*",
        ] {
            assert!(!is_valid_publish_subject(bad), "{bad:?}");
        }
    }
}
