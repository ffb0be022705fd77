//! The NATS client's options from the validated settings: credentials and TLS. The
//! settings only parse and check; this is where they become async-nats options.

use async_nats::ConnectOptions;

use crate::settings::nats::{NatsAuth, NatsSettings};

/// `options` with the credentials and the TLS files of `settings`.
pub(super) fn with_settings(
    settings: &NatsSettings,
    options: ConnectOptions,
) -> Result<ConnectOptions, std::io::Error> {
    let mut options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::Creds(contents) => options.credentials(contents.expose())?,
        NatsAuth::Nkey(seed) => options.nkey(seed.expose().to_owned()),
    };
    if let Some(ca) = &settings.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &settings.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if settings.tls_required() {
        options = options.require_tls(true);
    }
    Ok(options)
}
