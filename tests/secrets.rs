//! No credential or token leaks: every operation, with both schemes and with failures, and servers
//! that echo our requests back, and a PostgreSQL ledger's password, right and wrong, under a
//! trace-level subscriber; the captured logs, every error's Display and Debug, and the Debug of
//! credentials, clients and ledgers must not contain a secret or a token.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use atlas_linkd::atlas::Credentials;
use atlas_linkd::ledger::{LeaseSettings, LedgerError, LedgerLocation, PASSWORD_CREDENTIAL, Take};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use fake_atlas::{FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault};
use std::time::Duration;
use support::atlas::*;
use support::hostile::{Hostile, HostileConfig, Token, basic_credential};
use support::postgres::TestPostgres;
use support::{CLIENT_ID, CLIENT_SECRET, PRIVATE_KEY, PUBLIC_KEY};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Tokens the fake issues look like `fake.<32 hex>`.
fn contains_fake_token(text: &str) -> bool {
    text.match_indices("fake.").any(|(i, _)| {
        let rest = &text[i + 5..];
        rest.len() >= 16 && rest.bytes().take(16).all(|b| b.is_ascii_hexdigit())
    })
}

fn keep(seen: &mut Vec<String>, e: &atlas_linkd::atlas::ApiError) {
    seen.push(e.to_string());
    seen.push(format!("{e:?}"));
}

const STUB_TOKEN: &str = "stub-TOKEN-7f3a9c";
const LEDGER_PASSWORD: &str = "ledger-PASSWORD-5e81b7";
const WRONG_LEDGER_PASSWORD: &str = "wrong-LEDGER-c09d44";

/// An error and its causes, as `exit::refuse` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}
const ECHOED_TOKEN: &str = "echoed-TOKEN-41d0e2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_logs_errors_or_debug() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut seen: Vec<String> = Vec::new();
    let g = group(1);

    // Service account, against the fake: every operation, a server error, then revocation.
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    fake.script(ScriptedFault {
        operation: FakeOp::Get,
        group_id: None,
        nth: 1,
        fault: Fault::ServerError,
    });
    let c = client(&fake, sa_credentials());
    let id = c.create(&g, &msk(1)).await.unwrap().value.id;
    keep(&mut seen, &c.get(&g, &id).await.unwrap_err());
    c.get(&g, &id).await.unwrap();
    c.list(&g).await.unwrap();
    keep(&mut seen, &c.create(&g, &msk(1)).await.unwrap_err()); // 409
    assert!(fake.set_in_use(g.as_str(), &id, true));
    keep(&mut seen, &c.delete(&g, &id).await.unwrap_err()); // 400 in use
    assert!(fake.set_in_use(g.as_str(), &id, false));
    c.delete(&g, &id).await.unwrap();
    seen.push(format!("{c:?}"));
    c.shutdown().await;
    let wrong = Credentials::ServiceAccount {
        client_id: CLIENT_ID.into(),
        client_secret: "nope-wrong".to_owned().into(),
    };
    keep(&mut seen, &client(&fake, wrong).list(&g).await.unwrap_err());
    assert!(fake.counters().tokens_issued >= 1);

    // API key, against the fake: steady state, stale nonces, a wrong key.
    let fake = FakeAtlas::start(FakeConfig {
        digest_nonce_max_uses: 2,
        ..key_config()
    })
    .await
    .unwrap();
    let c = client(&fake, key_credentials());
    let id = c.create(&g, &msk(2)).await.unwrap().value.id;
    for _ in 0..4 {
        c.get(&g, &id).await.unwrap();
    }
    c.list(&g).await.unwrap();
    keep(
        &mut seen,
        &c.get(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err(),
    ); // 404
    c.delete(&g, &id).await.unwrap();
    keep(
        &mut seen,
        &c.delete(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err(),
    ); // 404
    seen.push(format!("{c:?}"));
    c.shutdown().await;
    let wrong = Credentials::ApiKey {
        public_key: PUBLIC_KEY.into(),
        private_key: "wrong-private".to_owned().into(),
    };
    keep(&mut seen, &client(&fake, wrong).list(&g).await.unwrap_err());

    // A stub with a token we know, rejected once, so the refresh path logs too.
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": STUB_TOKEN, "expires_in": 3600}))
            }),
        )
        .route(
            "/api/oauth/revoke",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            CONN_PATH,
            get(|_h: HeaderMap| async {
                (
                    StatusCode::UNAUTHORIZED,
                    r#"{"error":401,"detail":"bad"}"#.to_owned(),
                )
            }),
        );
    let base = stub(router).await;
    let c = client_for(&base, sa_credentials(), None);
    keep(&mut seen, &c.list(&g).await.unwrap_err());
    c.shutdown().await; // revoke fails: logged

    // A hostile server echoes what we sent: the Basic credential in a token error, and the bearer
    // token in an error body, a non-JSON body and a decoder's message.
    let hostile = Hostile::start(HostileConfig {
        token: Token::RejectEchoingAuthorization,
        ..HostileConfig::default()
    })
    .await;
    let echoed = client_for(&hostile.base_url(), sa_credentials(), None)
        .list(&g)
        .await
        .unwrap_err();
    assert!(echoed.to_string().contains("Basic [redacted]"), "{echoed}");
    keep(&mut seen, &echoed);
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token": ECHOED_TOKEN, "expires_in": 3600}))
            }),
        )
        .route(
            CONN_PATH,
            get(|h: HeaderMap| async move {
                // The token without its scheme word: "Bearer " alone is what the check below
                // looks for as a leaked header.
                let auth = h["authorization"].to_str().unwrap()["Bearer ".len()..].to_owned();
                (
                    StatusCode::BAD_REQUEST,
                    format!(r#"{{"error":400,"detail":"{auth}","reason":"{auth}"}}"#),
                )
            }),
        )
        .route(
            &format!("{CONN_PATH}/{{id}}"),
            get(|h: HeaderMap| async move {
                let auth = h["authorization"].to_str().unwrap()["Bearer ".len()..].to_owned();
                (StatusCode::BAD_GATEWAY, format!("<p>proxy: {auth}</p>"))
            }),
        );
    let base = stub(router).await;
    let c = client_for(&base, sa_credentials(), None);
    keep(&mut seen, &c.list(&g).await.unwrap_err());
    keep(
        &mut seen,
        &c.get(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err(),
    );
    c.shutdown().await;

    seen.push(format!("{:?}", sa_credentials()));
    seen.push(format!("{:?}", key_credentials()));

    // A PostgreSQL ledger behind a password: from PGPASSWORD and from the `ledger-password`
    // credential, right and wrong; connection errors, the ledger's Debug and the logs never
    // carry it.
    let pg = TestPostgres::start();
    pg.require_password("linkd", LEDGER_PASSWORD);
    let url = pg.new_database().replace("postgres@", "linkd@");
    let location = LedgerLocation::parse(&url, |p| p.to_path_buf(), &|_| None).unwrap();
    let lease = LeaseSettings {
        lease: Duration::from_secs(30),
        renew: Duration::from_secs(5),
    };
    let from_env = |k: &str| (k == "PGPASSWORD").then(|| LEDGER_PASSWORD.to_owned());
    let handle = location.open(&from_env, lease, Take::Now).unwrap();
    seen.push(format!("{handle:?}"));
    handle.close().await.unwrap();
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(
        credentials.path().join(PASSWORD_CREDENTIAL),
        format!("{LEDGER_PASSWORD}\n"),
    )
    .unwrap();
    let dir = credentials.path().to_str().unwrap().to_owned();
    let from_credential = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.clone());
    location
        .open(&from_credential, lease, Take::Now)
        .unwrap()
        .close()
        .await
        .unwrap();
    let wrong = |k: &str| (k == "PGPASSWORD").then(|| WRONG_LEDGER_PASSWORD.to_owned());
    let e = location.open(&wrong, lease, Take::Now).unwrap_err();
    assert!(matches!(e, LedgerError::Connect(_)), "{e}");
    seen.push(chain(&e));
    seen.push(format!("{e:?}"));

    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("atlas exchange"),
        "the subscriber captured nothing"
    );
    assert!(
        logs.contains("could not revoke"),
        "the failed revocation was not logged"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("hyper") || l.contains("reqwest")),
        "dependencies' trace events were not captured"
    );
    let everything = format!("{logs}\n{}", seen.join("\n"));
    for secret in [
        CLIENT_SECRET,
        PRIVATE_KEY,
        "nope-wrong",
        "wrong-private",
        LEDGER_PASSWORD,
        WRONG_LEDGER_PASSWORD,
        STUB_TOKEN,
        ECHOED_TOKEN,
        &basic_credential(CLIENT_ID, CLIENT_SECRET),
    ] {
        assert!(!everything.contains(secret), "`{secret}` leaked");
    }
    assert!(
        !contains_fake_token(&everything),
        "a token issued by the fake leaked"
    );
    assert!(
        !everything.contains("Bearer "),
        "an Authorization header leaked"
    );
    assert!(
        !everything.contains("Digest username"),
        "an Authorization header leaked"
    );
    // The identities are not secret and help operators.
    assert!(seen.iter().any(|s| s.contains(CLIENT_ID)));
}
