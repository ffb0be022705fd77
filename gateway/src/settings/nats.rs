//! The NATS connection settings: the servers, how the gateway authenticates (credentials in
//! `NATS_URL`, a creds file or an nkey seed file) and TLS, validated at start.
//!
//! async-nats 0.51 does not use the user, password or token written in a server URL: it
//! sends only what [`async_nats::ConnectOptions`] carries, so a server that requires them
//! answers "authorization violation". The credentials are therefore taken out of the URLs
//! here and handed to the options, and the URLs the client (and its logs) see carry none.
//! Secrets live in [`Secret`], whose `Debug` never shows them, and every URL that can appear
//! in a message goes through [`redact_urls`] first.

use std::path::PathBuf;

use async_nats::{ConnectOptions, ServerAddr};

/// A secret value: usable, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How the gateway proves who it is to NATS. One method at a time: a server accepts one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatsAuth {
    /// Nothing.
    None,
    /// `nats://user:password@host`.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// `nats://token@host`.
    Token(Secret),
    /// The contents of a creds file.
    Creds(Secret),
    /// A user nkey seed.
    Nkey(Secret),
}

/// Everything needed to connect, validated.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// The servers, without credentials.
    pub servers: Vec<ServerAddr>,
    /// The credentials, from the URLs or the files.
    pub auth: NatsAuth,
    /// A CA file to trust instead of the system's roots.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

impl NatsSettings {
    /// The servers as they may be logged (they carry no credentials).
    pub fn servers_for_log(&self) -> String {
        self.servers
            .iter()
            .map(ServerAddr::as_url_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The servers as `scheme://host:port`: no user, password or token, however the URL
    /// carried them (for the status page).
    pub fn servers_without_credentials(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| {
                let host = server.host();
                if host.contains(':') {
                    format!("{}://[{host}]:{}", server.scheme(), server.port())
                } else {
                    format!("{}://{host}:{}", server.scheme(), server.port())
                }
            })
            .collect()
    }

    /// Whether the operator configured TLS: then a plain connection is refused rather than
    /// silently used.
    pub fn tls_required(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_client.is_some()
            || self.servers.iter().any(ServerAddr::tls_required)
    }
}

/// `value` (one URL or a comma-separated list) with the password or token of each URL
/// replaced by `***`: `nats://alice:***@host:4222`, `nats://***@host:4222`, also when a
/// password holds an unencoded `/`, `?`, `#` or `,`.
pub use openim_gateway_proto::nats_url::redact_urls;

/// What must be percent-encoded in a password or token, for the rule of a URL that has a
/// path, a query or a fragment.
pub const UNENCODED_RULE: &str = "must not have a path, query or fragment: a / ? # or @ in a password or token must be percent-encoded (%2F %3F %23 %40)";

/// Whether `server` has a path, a query or a fragment. A NATS URL has none, so one is most
/// likely a password with an unencoded `/`, `?` or `#` that moved the host: refused, not
/// connected to.
pub fn has_more_than_an_authority(server: &ServerAddr) -> bool {
    let url = server.clone().into_inner();
    !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some()
}

/// A URL's user or password as the server knows it (`p%40ss` is `p@ss`).
fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// The credentials written in `server`'s URL, and the URL without them.
pub fn split_credentials(server: ServerAddr) -> (ServerAddr, NatsAuth) {
    let auth = match (server.username(), server.password()) {
        (Some(user), Some(password)) => NatsAuth::UserPassword {
            user: percent_decode(user),
            password: Secret(percent_decode(password)),
        },
        (Some(token), None) => NatsAuth::Token(Secret(percent_decode(token))),
        (None, _) => return (server, NatsAuth::None),
    };
    let mut url = server.clone().into_inner();
    // Neither can fail for a URL that has a host, which every NATS URL has.
    let cleared = url.set_password(None).is_ok() && url.set_username("").is_ok();
    match ServerAddr::from_url(url) {
        Ok(clean) if cleared => (clean, auth),
        _ => (server, auth),
    }
}

/// Reads a creds file and checks that async-nats can use it. Errors are rules: the file's
/// contents never appear in them.
pub fn read_creds(path: &str) -> Result<Secret, String> {
    let contents = std::fs::read_to_string(path)
        .map_err(|error| format!("must be a readable creds file ({error})"))?;
    ConnectOptions::with_credentials(&contents).map_err(|error| {
        format!("must be a creds file holding a user JWT and its nkey seed ({error})")
    })?;
    Ok(Secret(contents))
}

/// Reads an nkey seed file and checks that it holds a user seed.
pub fn read_nkey(path: &str) -> Result<Secret, String> {
    let contents = std::fs::read_to_string(path)
        .map_err(|error| format!("must be a readable nkey seed file ({error})"))?;
    let seed = contents.trim();
    let rule = "must be a file holding one user nkey seed (SU...)";
    if !seed.starts_with("SU") {
        return Err(rule.to_owned());
    }
    nkeys::KeyPair::from_seed(seed).map_err(|_| rule.to_owned())?;
    Ok(Secret(seed.to_owned()))
}

/// Checks that `path` is a readable PEM file with a block of `kind` (`CERTIFICATE`,
/// `PRIVATE KEY`): a wrong path then stops the start instead of every connection attempt.
pub fn check_pem(path: &str, kind: &str) -> Result<PathBuf, String> {
    let contents = std::fs::read_to_string(path)
        .map_err(|error| format!("must be a readable PEM file ({error})"))?;
    let has_block = contents
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(kind));
    if has_block {
        Ok(PathBuf::from(path))
    } else {
        Err(format!("must be a PEM file with a {kind} block"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_are_hidden() {
        // The cases live with the function, in proto; these are the gateway's own uses.
        for (url, shown) in [
            ("nats://bob:pa/ss@host:4222", "nats://bob:***@host:4222"),
            (
                "nats://a:p@h:1, nats://t@h:2",
                "nats://a:***@h:1, nats://***@h:2",
            ),
        ] {
            assert_eq!(redact_urls(url), shown, "{url}");
        }
    }

    #[test]
    fn a_url_with_a_path_query_or_fragment_is_more_than_an_authority() {
        for url in [
            "nats://bob:12/ss@host",
            "nats://h:1?x",
            "nats://h:1#x",
            "h:1/p",
        ] {
            let server: ServerAddr = url.parse().unwrap();
            assert!(has_more_than_an_authority(&server), "{url}");
        }
        for url in ["nats://h:1", "nats://h:1/", "tls://u:p%2Fq@h", "h"] {
            let server: ServerAddr = url.parse().unwrap();
            assert!(!has_more_than_an_authority(&server), "{url}");
        }
    }

    #[test]
    fn credentials_leave_the_url_for_the_options() {
        let server: ServerAddr = "nats://al%40ice:p%3Ass@host:4222".parse().unwrap();
        let (clean, auth) = split_credentials(server);
        assert_eq!(clean.as_url_str(), "nats://host:4222");
        assert_eq!(
            auth,
            NatsAuth::UserPassword {
                user: "al@ice".to_owned(),
                password: Secret("p:ss".to_owned())
            }
        );
        let (clean, auth) = split_credentials("tls://tok@host".parse().unwrap());
        assert_eq!(clean.as_url_str(), "tls://host");
        assert_eq!(auth, NatsAuth::Token(Secret("tok".to_owned())));
        assert!(!format!("{auth:?}").contains("tok"));
    }
}
