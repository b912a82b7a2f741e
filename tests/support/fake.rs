//! The fake Atlas's own tests' helpers: they speak plain reqwest rather than the project's client.

use fake_atlas::FakeAtlas;
use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::{CLIENT_ID, CLIENT_SECRET};

pub(crate) const GROUP: &str = "32b6e34b3d91647abb20e7b8";
pub(crate) const ACCEPT: &str = "application/vnd.atlas.2023-02-01+json";

/// An OAuth access token from the fake for the test service account (which the fake accepts in its
/// default mode, as it does any credentials).
pub(crate) async fn bearer_token(http: &Client, fake: &FakeAtlas) -> String {
    let resp = http
        .post(format!("{}/api/oauth/token", fake.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}
