//! How many requests a second the fake Atlas serves on this machine, 16 clients (one project each)
//! creating then getting: `cargo bench --bench fake_throughput`. Prints the rate, never asserts a
//! timing; asserts that every create committed once and every answer was 200.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use fake_atlas::{FakeAtlas, FakeConfig};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Instant;

const ACCEPT: &str = "application/vnd.atlas.2023-02-01+json";
const WORKERS: usize = 16;
const PER_WORKER: usize = 100;

/// An OAuth access token from the fake (which, in its default mode, accepts any credentials).
async fn bearer_token(http: &Client, fake: &FakeAtlas) -> String {
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

fn main() {
    // Two workers, as the test this replaces had: the figure stays comparable with earlier ones.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(fake_serves_creates_and_gets());
}

async fn fake_serves_creates_and_gets() {
    let fake = FakeAtlas::start(FakeConfig {
        bucket: None,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let http = Client::new();
    let token = bearer_token(&http, &fake).await;

    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let http = http.clone();
        let token = token.clone();
        let base = fake.base_url();
        tasks.push(tokio::spawn(async move {
            // One project per worker, like a reconcile pass spread over projects.
            let group = format!("{w:024x}");
            let url = format!("{base}/api/atlas/v2/groups/{group}/streams/privateLinkConnections");
            let mut ids = Vec::new();
            for n in 0..PER_WORKER {
                let body = json!({"provider": "AWS", "vendor": "MSK",
                    "arn": format!("arn:aws:kafka:us-east-1:1:cluster/c{n}/x")});
                let resp = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("Accept", ACCEPT)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let echo: Value = resp.json().await.unwrap();
                ids.push(echo["_id"].as_str().unwrap().to_owned());
            }
            for id in ids {
                let resp = http
                    .get(format!("{url}/{id}"))
                    .bearer_auth(&token)
                    .header("Accept", ACCEPT)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let total = WORKERS * PER_WORKER * 2;
    let c = fake.counters();
    assert_eq!(c.creates_committed, (WORKERS * PER_WORKER) as u64);
    assert_eq!(c.duplicates, 0);
    println!(
        "fake Atlas: {total} requests ({WORKERS} clients, creates then gets) in {:.2} s = {:.0} requests/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
