//! NATS security, each way against a real nats-server configured for it: a user and password
//! or a token in `NATS_URL`, a creds file (operator, account and user JWTs made here), an nkey
//! seed file, TLS with a CA and a client certificate (made here with rcgen), several URLs.
//! "Connected" is `/readyz` answering 200. A refused connection names the server in the logs
//! and never shows the password.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openim_gateway_tests::scratch::Scratch;
use openim_gateway_tests::{http, Gateway, NatsServer};
use serde_json::{json, Value};

/// How long the gateway may take to connect once started.
const CONNECT_BOUND: Duration = Duration::from_secs(10);

/// Whether `/readyz` says 200 within `bound`.
async fn becomes_ready(gateway: &Gateway, bound: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < bound {
        if http::get(gateway.address(), "/readyz").await.status == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn assert_connects(nats: &NatsServer, url: &str, settings: &[(&str, &str)]) {
    let gateway = Gateway::start(url, settings).await;
    assert!(
        becomes_ready(&gateway, CONNECT_BOUND).await,
        "not connected within {CONNECT_BOUND:?} (NATS_URL={url}, {settings:?});\ngateway:\n{}\nnats-server:\n{}",
        gateway.stderr_log().tail(30),
        nats.stderr_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_in_the_url_authenticate() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        "authorization { user: alice, password: \"p@ss:w0rd\" }\n",
    )
    .await;
    // Percent-encoded, as a URL must carry `@` and `:` in a password.
    let url = nats.url_with("nats", "alice:p%40ss%3Aw0rd@");
    assert_connects(&nats, &url, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_authenticates() {
    let scratch = Scratch::new();
    let nats =
        NatsServer::start_with_config(scratch.path(), "authorization { token: \"t0ken-9f3a\" }\n")
            .await;
    assert_connects(&nats, &nats.url_with("nats", "t0ken-9f3a@"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_urls_reach_the_one_that_answers() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        "authorization { user: alice, password: pw123 }\n",
    )
    .await;
    let nobody = NatsServer::not_started();
    let urls = format!(
        "{},{}",
        nobody.url_with("nats", "alice:pw123@"),
        nats.url_with("nats", "alice:pw123@")
    );
    assert_connects(&nats, &urls, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_names_the_server_and_never_shows_the_password() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        "authorization { user: alice, password: right-one }\n",
    )
    .await;
    let url = nats.url_with("nats", "alice:Wr0ngPassw0rd@");
    let gateway = Gateway::start(&url, &[("RUST_LOG", "debug")]).await;
    assert!(!becomes_ready(&gateway, Duration::from_secs(2)).await);
    let log = gateway.stderr_log().all();
    assert!(
        !log.contains("Wr0ngPassw0rd"),
        "the password is shown:\n{log}"
    );
    let server = format!("127.0.0.1:{}", nats.port());
    assert!(
        log.lines()
            .any(|line| line.contains("authorization violation") && line.contains(&server)),
        "no line names the server and the refusal:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_nkey_seed_file_authenticates() {
    let scratch = Scratch::new();
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "authorization {{ users: [ {{ nkey: {} }} ] }}\n",
            user.public_key()
        ),
    )
    .await;
    let seed = scratch.write("user.nk", &format!("{}\n", user.seed().unwrap()));
    assert_connects(&nats, &nats.url(), &[("GATEWAY_NATS_NKEY", &seed)]).await;
    // The same server refuses a gateway without the seed: the setting is what authenticated.
    let gateway = Gateway::start(&nats.url(), &[]).await;
    assert!(!becomes_ready(&gateway, Duration::from_secs(2)).await);
}

/// base64url without padding, as JWTs use it.
fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// A NATS JWT (`ed25519-nkey`) about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: &Value) -> String {
    let header = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "jti": format!("{subject}{now}").chars().take(52).collect::<String>(),
        "iat": now,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", b64(&signature))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_authenticates_against_an_operator_mode_server() {
    let scratch = Scratch::new();
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        &json!({ "type": "operator", "version": 2 }),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "test-account",
        &json!({
            "limits": { "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                        "wildcards": true, "conn": -1, "leaf": -1 },
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2
        }),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "openim-gateway",
        &json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2 }),
    );
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "operator: {operator_jwt}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {account_jwt}\n}}\n",
            account.public_key()
        ),
    )
    .await;
    let creds = scratch.write(
        "gateway.creds",
        &format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    );
    assert_connects(&nats, &nats.url(), &[("GATEWAY_NATS_CREDS", &creds)]).await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct TlsFiles {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn tls_files(scratch: &Scratch) -> TlsFiles {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "openim-gateway test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) = leaf(
        vec!["openim-gateway".to_owned()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    TlsFiles {
        ca: scratch.write("ca.pem", &ca.pem()),
        server_cert: scratch.write("server.pem", &server_cert),
        server_key: scratch.write("server-key.pem", &server_key),
        client_cert: scratch.write("client.pem", &client_cert),
        client_key: scratch.write("client-key.pem", &client_key),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let scratch = Scratch::new();
    let files = tls_files(&scratch);
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n",
            files.server_cert, files.server_key, files.ca
        ),
    )
    .await;
    let url = nats.url_with("tls", "");
    assert_connects(
        &nats,
        &url,
        &[
            ("GATEWAY_NATS_TLS_CA", &files.ca),
            ("GATEWAY_NATS_TLS_CERT", &files.client_cert),
            ("GATEWAY_NATS_TLS_KEY", &files.client_key),
        ],
    )
    .await;
    // Without the client certificate the server refuses: the settings are what got it in.
    let gateway = Gateway::start(&url, &[("GATEWAY_NATS_TLS_CA", &files.ca)]).await;
    assert!(!becomes_ready(&gateway, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_authenticates_with_url_credentials_too() {
    let scratch = Scratch::new();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        "authorization { user: bob, password: \"w0rk:er\" }\n",
    )
    .await;
    // Start waits for `worker ready`, printed once connected and subscribed.
    let _worker =
        openim_gateway_tests::Worker::start(&nats.url_with("nats", "bob:w0rk%3Aer@"), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_worker_connects_over_tls_and_with_an_nkey() {
    let scratch = Scratch::new();
    let files = tls_files(&scratch);
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\nauthorization {{ users: [ {{ nkey: {} }} ] }}\n",
            files.server_cert,
            files.server_key,
            files.ca,
            user.public_key()
        ),
    )
    .await;
    let seed = scratch.write("worker.nk", &user.seed().unwrap());
    // Start waits for `worker ready`, printed once connected and subscribed.
    let _worker = openim_gateway_tests::Worker::start(
        &nats.url_with("tls", ""),
        &[
            ("WORKER_NATS_NKEY", &seed),
            ("WORKER_NATS_TLS_CA", &files.ca),
            ("WORKER_NATS_TLS_CERT", &files.client_cert),
            ("WORKER_NATS_TLS_KEY", &files.client_key),
        ],
    )
    .await;
}

/// The gateway's warn lines saying why it cannot connect to `server`, once one says
/// `cause`; waits up to `bound` for it.
async fn connect_failures(
    gateway: &Gateway,
    server: &str,
    cause: &str,
    bound: Duration,
) -> Vec<String> {
    let failures = || -> Vec<String> {
        gateway
            .stderr_log()
            .lines()
            .into_iter()
            .filter(|line| {
                line.contains("WARN")
                    && line.contains("cannot connect to a nats server")
                    && line.contains(server)
            })
            .collect()
    };
    let start = Instant::now();
    while start.elapsed() < bound && !failures().iter().any(|line| line.contains(cause)) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    failures()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_server_certificate_is_named_as_the_cause_once() {
    let scratch = Scratch::new();
    let files = tls_files(&scratch);
    let other = Scratch::new();
    let untrusted_by = tls_files(&other);
    let nats = NatsServer::start_with_config(
        scratch.path(),
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
            files.server_cert, files.server_key
        ),
    )
    .await;
    // The gateway trusts another CA than the one that signed the server's certificate.
    let gateway = Gateway::start(
        &nats.url_with("tls", ""),
        &[("GATEWAY_NATS_TLS_CA", &untrusted_by.ca)],
    )
    .await;
    let server = format!("127.0.0.1:{}", nats.port());
    let failures = connect_failures(&gateway, &server, "certificate", CONNECT_BOUND).await;
    assert!(
        failures.iter().any(|line| line.contains("certificate")),
        "no warning names the server and the certificate:\n{}",
        gateway.stderr_log().tail(30)
    );
    // Attempts go on about once a second; the same cause is not logged again within the
    // reporting interval.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = connect_failures(&gateway, &server, "certificate", Duration::ZERO).await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(!becomes_ready(&gateway, Duration::ZERO).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_named_as_the_cause_once() {
    let nobody = NatsServer::not_started();
    let gateway = Gateway::start(&nobody.url_with("nats", "alice:S3cretPw@"), &[]).await;
    let server = format!("127.0.0.1:{}", nobody.port());
    let failures = connect_failures(&gateway, &server, "refused", CONNECT_BOUND).await;
    assert!(
        failures.iter().any(|line| line.contains("refused")),
        "no warning names the server and the refusal:\n{}",
        gateway.stderr_log().tail(30)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failures = connect_failures(&gateway, &server, "refused", Duration::ZERO).await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let log = gateway.stderr_log().all();
    assert!(!log.contains("S3cretPw"), "the password is shown:\n{log}");
}
