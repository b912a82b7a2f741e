//! The client's cost per call against the fake, next to a plain reqwest loop doing the same GET:
//! `cargo bench --bench atlas_overhead`. Prints figures, asserts only correctness (a digest call costs
//! one request in steady state).
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

// The clients and credentials the `atlas_*` tests use, so both measure the same set-up.
#[path = "../tests/support/mod.rs"]
mod test_support;

use std::time::{Duration, Instant};

use fake_atlas::{FakeAtlas, FakeConfig};
use test_support::atlas::*;
use test_support::{CLIENT_ID, CLIENT_SECRET};

fn calls() -> usize {
    if cfg!(debug_assertions) { 200 } else { 3000 }
}

fn per_call(elapsed: Duration, n: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    // Two workers, as the test this replaces had: the figure stays comparable with earlier ones.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(client_overhead_per_call());
}

async fn client_overhead_per_call() {
    let n = calls();
    let fake = FakeAtlas::start(FakeConfig {
        bucket: None,
        ..FakeConfig::default()
    })
    .await
    .unwrap();
    let g = group(1);
    let id = fake.insert(
        g.as_str(),
        serde_json::json!({"provider":"AWS","vendor":"MSK","arn":"arn:aws:kafka:x"}),
    );

    // Plain reqwest with a bearer token fetched once: the fake's raw cost.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/api/oauth/token", fake.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let url = format!(
        "{}/api/atlas/v2/groups/{g}/streams/privateLinkConnections/{id}",
        fake.base_url()
    );
    let start = Instant::now();
    for _ in 0..n {
        let resp = http
            .get(&url)
            .header("accept", "application/vnd.atlas.2023-02-01+json")
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        resp.bytes().await.unwrap();
    }
    let raw = start.elapsed();

    let sa = client(&fake, sa_credentials());
    sa.get(&g, &id).await.unwrap(); // token fetched outside the timing
    let start = Instant::now();
    for _ in 0..n {
        sa.get(&g, &id).await.unwrap();
    }
    let oauth = start.elapsed();

    let key = client(&fake, key_credentials());
    key.get(&g, &id).await.unwrap(); // challenge outside the timing
    let before = fake.counters().total_requests();
    let start = Instant::now();
    for _ in 0..n {
        key.get(&g, &id).await.unwrap();
    }
    let digest = start.elapsed();
    let digest_requests = fake.counters().total_requests() - before;

    println!("sequential GETs against the fake, {n} each:");
    println!(
        "  plain reqwest         {:8.1} µs/call  ({:.0} calls/s)",
        per_call(raw, n),
        n as f64 / raw.as_secs_f64()
    );
    println!(
        "  client, OAuth bearer  {:8.1} µs/call  (overhead {:+.1} µs)",
        per_call(oauth, n),
        per_call(oauth, n) - per_call(raw, n)
    );
    println!(
        "  client, HTTP Digest   {:8.1} µs/call  (overhead {:+.1} µs; {digest_requests} requests for {n} calls)",
        per_call(digest, n),
        per_call(digest, n) - per_call(raw, n)
    );
    // Steady-state digest: one request per call, plus one per nonce that went stale.
    let max_stale = (n as u64).div_ceil(FakeConfig::default().digest_nonce_max_uses) + 1;
    assert!(digest_requests <= n as u64 + max_stale, "{digest_requests}");
}
