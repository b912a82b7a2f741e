//! The fake Atlas's authentication: the service-account token flow (issue, expiry, revoke) and
//! HTTP Digest for API keys (challenge, real hash check, nonce reuse, stale nonces).

use fake_atlas::{FakeAtlas, FakeAuth, FakeConfig};
use md5::{Digest, Md5};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

use crate::support::fake::{ACCEPT, GROUP};
use crate::support::{CLIENT_ID, CLIENT_SECRET, PRIVATE_KEY, PUBLIC_KEY, eventually};

fn path() -> String {
    format!("/api/atlas/v2/groups/{GROUP}/streams/privateLinkConnections")
}

async fn service_account(ttl_secs: u64) -> FakeAtlas {
    FakeAtlas::start(FakeConfig {
        auth: FakeAuth::ServiceAccount {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        token_ttl_secs: ttl_secs,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

async fn token(http: &Client, fake: &FakeAtlas, id: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{}/api/oauth/token", fake.base_url()))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

async fn list_with_bearer(http: &Client, fake: &FakeAtlas, token: &str) -> reqwest::Response {
    http.get(format!("{}{}", fake.base_url(), path()))
        .bearer_auth(token)
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn service_account_gets_a_token_and_uses_it() {
    let fake = service_account(3600).await;
    let http = Client::new();
    let resp = token(&http, &fake, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let t = body["access_token"].as_str().unwrap();
    assert_eq!(
        list_with_bearer(&http, &fake, t).await.status(),
        StatusCode::OK
    );
    assert_eq!(fake.counters().tokens_issued, 1);
}

#[tokio::test]
async fn bad_client_credentials_get_invalid_client() {
    let fake = service_account(3600).await;
    let http = Client::new();
    let resp = token(&http, &fake, CLIENT_ID, "wrong").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_description"], "Invalid credentials provided.");
    assert_eq!(fake.counters().tokens_issued, 0);
}

#[tokio::test]
async fn missing_or_unknown_bearer_is_401_without_digest_challenge() {
    let fake = service_account(3600).await;
    let http = Client::new();
    let resp = list_with_bearer(&http, &fake, "fake.not-issued").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-error-code"], "USER_UNAUTHORIZED");
    assert!(!resp.headers().contains_key("www-authenticate"));
    let resp = http
        .get(format!("{}{}", fake.base_url(), path()))
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_expire_after_their_ttl() {
    let fake = service_account(1).await;
    let http = Client::new();
    let body: Value = token(&http, &fake, CLIENT_ID, CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["expires_in"], 1);
    let t = body["access_token"].as_str().unwrap();
    assert_eq!(
        list_with_bearer(&http, &fake, t).await.status(),
        StatusCode::OK
    );
    eventually("the token to expire", Duration::from_secs(5), async || {
        let status = list_with_bearer(&http, &fake, t).await.status();
        if status == StatusCode::UNAUTHORIZED {
            return Some(());
        }
        assert_eq!(status, StatusCode::OK);
        None
    })
    .await;
}

#[tokio::test]
async fn revoked_tokens_are_refused() {
    let fake = service_account(3600).await;
    let http = Client::new();
    let body: Value = token(&http, &fake, CLIENT_ID, CLIENT_SECRET)
        .await
        .json()
        .await
        .unwrap();
    let t = body["access_token"].as_str().unwrap();
    let bad = http
        .post(format!("{}/api/oauth/revoke", fake.base_url()))
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&[("token", t), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        list_with_bearer(&http, &fake, t).await.status(),
        StatusCode::OK
    );
    let resp = http
        .post(format!("{}/api/oauth/revoke", fake.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("token", t), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        list_with_bearer(&http, &fake, t).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(fake.counters().tokens_revoked, 1);
}

// ---- HTTP Digest ----

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

fn challenge_fields(header: &str) -> HashMap<String, String> {
    header
        .trim_start_matches("Digest ")
        .split(", ")
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn digest_header(user: &str, password: &str, nonce: &str, nc: u32, uri: &str) -> String {
    let cnonce = "0a4f113b";
    let nc = format!("{nc:08x}");
    let ha1 = md5_hex(&format!("{user}:MMS Public API:{password}"));
    let ha2 = md5_hex(&format!("GET:{uri}"));
    let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"MMS Public API\", nonce=\"{nonce}\", uri=\"{uri}\", \
         algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\""
    )
}

async fn api_key(max_uses: u64) -> FakeAtlas {
    FakeAtlas::start(FakeConfig {
        auth: FakeAuth::ApiKey {
            public_key: PUBLIC_KEY.into(),
            private_key: PRIVATE_KEY.into(),
        },
        digest_nonce_max_uses: max_uses,
        ..FakeConfig::default()
    })
    .await
    .unwrap()
}

async fn get(http: &Client, fake: &FakeAtlas, auth: Option<String>) -> reqwest::Response {
    let mut req = http
        .get(format!("{}{}", fake.base_url(), path()))
        .header("Accept", ACCEPT);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

/// A bare request, as MongoDB's Go client sends first, to get a nonce.
async fn nonce(http: &Client, fake: &FakeAtlas) -> String {
    let resp = get(http, fake, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let header = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    challenge_fields(&header)["nonce"].clone()
}

#[tokio::test]
async fn bare_request_gets_the_digest_challenge() {
    let fake = api_key(10).await;
    let http = Client::new();
    let resp = get(&http, &fake, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-error-code"], "USER_UNAUTHORIZED");
    let header = resp.headers()["www-authenticate"].to_str().unwrap();
    assert!(header.starts_with("Digest realm=\"MMS Public API\", domain=\"\", nonce=\""));
    assert!(
        header.ends_with("algorithm=MD5, qop=\"auth\", stale=false"),
        "{header}"
    );
    assert_eq!(fake.counters().digest_challenges, 1);
}

#[tokio::test]
async fn correct_digest_is_accepted_and_wrong_password_refused() {
    let fake = api_key(10).await;
    let http = Client::new();
    let n = nonce(&http, &fake).await;
    let ok = get(
        &http,
        &fake,
        Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, 1, &path())),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let bad = get(
        &http,
        &fake,
        Some(digest_header(PUBLIC_KEY, "wrong", &n, 2, &path())),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    let header = bad.headers()["www-authenticate"].to_str().unwrap();
    assert!(header.ends_with("stale=false"), "{header}");
    let other_user = get(
        &http,
        &fake,
        Some(digest_header("nobody", PRIVATE_KEY, &n, 3, &path())),
    )
    .await;
    assert_eq!(other_user.status(), StatusCode::UNAUTHORIZED);
    // A digest for another URI does not authorise this one.
    let wrong_uri = digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, 4, "/api/atlas/v2/groups");
    assert_eq!(
        get(&http, &fake, Some(wrong_uri)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn nonce_is_reusable_with_increasing_nc_but_not_a_repeated_nc() {
    let fake = api_key(10).await;
    let http = Client::new();
    let n = nonce(&http, &fake).await;
    for nc in 1..=3 {
        let resp = get(
            &http,
            &fake,
            Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, nc, &path())),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "nc {nc}");
    }
    let replay = get(
        &http,
        &fake,
        Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, 2, &path())),
    )
    .await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(fake.counters().digest_challenges, 2);
}

#[tokio::test]
async fn nonce_goes_stale_after_max_uses() {
    let fake = api_key(2).await;
    let http = Client::new();
    let n = nonce(&http, &fake).await;
    for nc in 1..=2 {
        let resp = get(
            &http,
            &fake,
            Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, nc, &path())),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let stale = get(
        &http,
        &fake,
        Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &n, 3, &path())),
    )
    .await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let header = stale.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(header.ends_with("stale=true"), "{header}");
    let fresh = challenge_fields(&header)["nonce"].clone();
    assert_ne!(fresh, n);
    let resp = get(
        &http,
        &fake,
        Some(digest_header(PUBLIC_KEY, PRIVATE_KEY, &fresh, 1, &path())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn api_key_mode_refuses_bearer_tokens() {
    let fake = api_key(10).await;
    let http = Client::new();
    let resp = token(&http, &fake, CLIENT_ID, CLIENT_SECRET).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = list_with_bearer(&http, &fake, "anything").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn any_mode_accepts_digest_from_any_key_on_an_issued_nonce() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let http = Client::new();
    let n = nonce(&http, &fake).await;
    let resp = get(
        &http,
        &fake,
        Some(digest_header("someone", "anything", &n, 1, &path())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(
        &http,
        &fake,
        Some(digest_header(
            "someone",
            "anything",
            "not-issued",
            1,
            &path(),
        )),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}
