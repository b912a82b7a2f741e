//! Shared by the fake Atlas's own tests, which speak plain reqwest rather than the project's client.
#![allow(dead_code)]

use fake_atlas::FakeAtlas;
use reqwest::{Client, StatusCode};
use serde_json::Value;

pub const GROUP: &str = "32b6e34b3d91647abb20e7b8";
pub const ACCEPT: &str = "application/vnd.atlas.2023-02-01+json";

/// An OAuth access token from the fake (which, in its default mode, accepts any credentials).
pub async fn bearer_token(http: &Client, fake: &FakeAtlas) -> String {
    let resp = http
        .post(format!("{}/api/oauth/token", fake.base_url()))
        .basic_auth("mdb_sa_id_0123456789abcdef01234567", Some("secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}
