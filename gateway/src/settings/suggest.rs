//! "Did you mean": the known name closest to a mistyped one, for the settings (a
//! `GATEWAY_*` variable) and the policy file (a command).

use openim_gateway_proto::catalog;

use super::webhooks::commands_of_key;

/// How alike two names must be (Jaro-Winkler similarity, 0 to 1) for the known one to be
/// the likely intent.
const LIKELY: f64 = 0.88;

/// The candidate `score` rates highest, when it rates it at least [`LIKELY`].
pub fn closest<'a>(
    candidates: impl IntoIterator<Item = &'a str>,
    score: impl Fn(&str) -> f64,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (score(candidate), candidate))
        .filter(|(score, _)| *score >= LIKELY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// How alike `a` and `b` are, from 0 to 1.
pub fn similarity(a: &str, b: &str) -> f64 {
    strsim::jaro_winkler(a, b)
}

/// The catalog command a name that is not one most likely means: the command of a
/// `webhooks.yml` key (`beforeSendSingleMsg`), the same name in another case, or a close
/// spelling. Names are compared without the `callback` and `Command` every one has, which
/// would make every pair look alike.
pub fn closest_command(name: &str) -> Option<&'static str> {
    if let Some(command) = commands_of_key(name).first() {
        return Some(command.name);
    }
    let core = |name: &str| {
        let lower = name.to_ascii_lowercase();
        let lower = lower.strip_prefix("callback").unwrap_or(&lower);
        lower.strip_suffix("command").unwrap_or(lower).to_owned()
    };
    let wanted = core(name);
    closest(
        catalog::COMMANDS.iter().map(|command| command.name),
        |known| similarity(&wanted, &core(known)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_command_finds_the_one_meant() {
        for (typo, meant) in [
            (
                "callbackBeforeSendSingelMsgCommand",
                "callbackBeforeSendSingleMsgCommand",
            ),
            (
                "callbackbeforesendsinglemsgcommand",
                "callbackBeforeSendSingleMsgCommand",
            ),
            ("beforeSendSingleMsg", "callbackBeforeSendSingleMsgCommand"),
            (
                "callbackBeforeSetGroupMemberInfo",
                "callbackBeforeSetGroupMemberInfoCommand",
            ),
        ] {
            assert_eq!(closest_command(typo), Some(meant), "{typo}");
        }
        assert_eq!(closest_command("somethingElseEntirely"), None);
    }
}
