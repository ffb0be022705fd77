//! `NATS_URL` as it may be shown: the gateway and the workers read the same variable, and
//! both print it in their setting errors, so both hide its credentials the same way.
//!
//! A password or token is hidden however it is written, including when it holds an
//! unencoded `/`, `?`, `#`, `@` or `,` (a generated password often holds a `/`). Where a
//! value cannot be told apart from a credential, more is hidden rather than less.

/// `value` (one URL or a comma-separated list) with the user information of each URL
/// replaced: `nats://alice:***@host:4222`, `nats://***@host:4222`.
///
/// Everything between the scheme and the last `@` of a URL is user information: an unencoded
/// `/`, `?` or `#` in a password does not end it here, as it would for a URL parser. The user
/// name stays when it is plainly one (no `/`, `?` or `#` before the first `:`). A comma may be
/// part of a password too: the entries after one that carry no scheme are taken as part of it
/// when one of them holds an `@`.
pub fn redact_urls(value: &str) -> String {
    let entries: Vec<&str> = value.split(',').collect();
    let mut shown = Vec::with_capacity(entries.len());
    let mut index = 0;
    while index < entries.len() {
        let following = &entries[index + 1..];
        let without_scheme = following
            .iter()
            .take_while(|entry| !entry.contains("://"))
            .count();
        let continuation = following[..without_scheme]
            .iter()
            .rposition(|entry| entry.contains('@'))
            .map_or(0, |last| last + 1);
        let url = entries[index..=index + continuation].join(",");
        shown.push(redact_url(&url));
        index += continuation + 1;
    }
    shown.join(",")
}

fn redact_url(url: &str) -> String {
    let userinfo_start = url.find("://").map_or(0, |index| index + 3);
    let rest = &url[userinfo_start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = match rest[..at].split_once(':') {
        Some((user, _password)) if !user.contains(['/', '?', '#']) => format!("{user}:***"),
        _ => "***".to_owned(),
    };
    format!("{}{userinfo}{}", &url[..userinfo_start], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_hidden_however_they_are_written() {
        for (url, shown) in [
            (
                "nats://alice:s3cret@host:4222",
                "nats://alice:***@host:4222",
            ),
            ("nats://t0ken@host:4222", "nats://***@host:4222"),
            ("alice:s3cret@host:4222", "alice:***@host:4222"),
            ("tls://a:b@c@host/x", "tls://a:***@host/x"),
            ("nats://host:4222", "nats://host:4222"),
            ("nats://host:4222/", "nats://host:4222/"),
            (
                "nats://a:p@h:1, nats://t@h:2",
                "nats://a:***@h:1, nats://***@h:2",
            ),
            // Unencoded characters that end a URL's authority for a parser.
            ("nats://bob:pa/ss@host:4222", "nats://bob:***@host:4222"),
            ("nats://bob:pa?ss@host:4222", "nats://bob:***@host:4222"),
            ("nats://bob:pa#ss@host:4222", "nats://bob:***@host:4222"),
            ("nats://bob:12/ss@host", "nats://bob:***@host"),
            ("nats://Zm9v/YmFy+@host:4222", "nats://***@host:4222"),
            ("bob:a/b?c#d@host", "bob:***@host"),
            ("nats://b/ob:pass@host", "nats://***@host"),
            ("nats://bob:p@ss/w@rd@host:1", "nats://bob:***@host:1"),
            // A comma in a password.
            ("nats://bob:pa,ss@host:4222", "nats://bob:***@host:4222"),
            (
                "nats://bob:p,a,ss@host:1,nats://h:2",
                "nats://bob:***@host:1,nats://h:2",
            ),
            ("nats://bob:p@x,y@host:1", "nats://bob:***@host:1"),
        ] {
            assert_eq!(redact_urls(url), shown, "{url}");
        }
    }

    #[test]
    fn no_part_of_a_password_is_ever_shown() {
        let secret = "Sx3/Cq7?Rr9#Ee4,Tt5@Xx6";
        for url in [
            format!("nats://bob:{secret}@host:4222"),
            format!("nats://{secret}@host:4222"),
            format!("bob:{secret}@host"),
            format!("nats://h:1,nats://bob:{secret}@host:2,tls://h:3"),
        ] {
            let shown = redact_urls(&url);
            for part in secret.split(['/', '?', '#', ',', '@']) {
                assert!(!shown.contains(part), "{url} shown as {shown}");
            }
        }
    }
}
