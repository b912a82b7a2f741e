//! The fake Atlas's backend commit: a delay that runs on after the client has gone, gateway resets
//! and 502/504 answers whose create is committed all the same, and duplicates judged at commit time.
//!
//! Most tests run on tokio's paused clock: the fake's timers are tokio's, so moving the clock by
//! hand gives exact instants without sleeping in real time.

use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use crate::support::fake::{ACCEPT, GROUP, bearer_token};

struct Api {
    fake: FakeAtlas,
    http: Client,
    token: String,
}

impl Api {
    async fn start(config: FakeConfig) -> Api {
        let fake = FakeAtlas::start(config).await.unwrap();
        let http = Client::new();
        let token = bearer_token(&http, &fake).await;
        Api { fake, http, token }
    }

    fn url(&self) -> String {
        format!(
            "{}/api/atlas/v2/groups/{GROUP}/streams/privateLinkConnections",
            self.fake.base_url()
        )
    }

    fn create(&self, n: u32) -> reqwest::RequestBuilder {
        self.http
            .post(self.url())
            .bearer_auth(&self.token)
            .header("Accept", ACCEPT)
            .json(&msk(n))
    }

    async fn list_len(&self) -> u64 {
        let page: Value = self
            .http
            .get(self.url())
            .bearer_auth(&self.token)
            .header("Accept", ACCEPT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["totalCount"].as_u64().unwrap()
    }

    /// Lets the fake's tasks run without moving the paused clock, until `done` holds.
    async fn settle(&self, what: &str, done: impl Fn(&FakeAtlas) -> bool) {
        for _ in 0..100_000 {
            if done(&self.fake) {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the fake never got to {what}");
    }
}

fn msk(n: u32) -> Value {
    json!({"provider": "AWS", "vendor": "MSK",
        "arn": format!("arn:aws:kafka:us-east-1:123456789012:cluster/c{n}/5a6b")})
}

fn delayed(ms: u64) -> FakeConfig {
    FakeConfig {
        commit_delay_ms: ms,
        bucket: None,
        ..FakeConfig::default()
    }
}

fn script(fault: Fault) -> ScriptedFault {
    ScriptedFault {
        operation: FakeOp::Create,
        group_id: None,
        nth: 1,
        fault,
    }
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_client_timed_out_is_committed_at_its_time() {
    let api = Api::start(delayed(500)).await;
    let started = tokio::time::Instant::now();
    let err = api
        .create(1)
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("the client gives up before the commit");
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(api.fake.pending_commits(), 1);
    assert!(api.fake.connections(GROUP).is_empty());
    assert_eq!(api.list_len().await, 0, "not listed before the commit");

    tokio::time::sleep_until(started + Duration::from_millis(499)).await;
    assert!(api.fake.connections(GROUP).is_empty(), "1 ms early");
    tokio::time::sleep_until(started + Duration::from_millis(500)).await;
    api.settle("the commit", |f| f.pending_commits() == 0).await;
    assert_eq!(api.fake.connections(GROUP).len(), 1);
    assert_eq!(api.list_len().await, 1);
    let c = api.fake.counters();
    assert_eq!(c.creates_committed, 1);
    assert_eq!(c.duplicates, 0);
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_client_closed_the_socket_is_committed_all_the_same() {
    let api = Api::start(delayed(2_000)).await;
    let body = msk(1).to_string();
    let request = format!(
        "POST /api/atlas/v2/groups/{GROUP}/streams/privateLinkConnections HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: Bearer {}\r\nAccept: {ACCEPT}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        api.fake.addr(),
        api.token,
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(api.fake.addr())
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    api.settle("the create", |f| f.pending_commits() == 1).await;
    // The client goes away for good, as a killed process's socket does.
    drop(socket);
    tokio::time::sleep(Duration::from_millis(1_999)).await;
    assert!(api.fake.connections(GROUP).is_empty());
    tokio::time::sleep(Duration::from_millis(1)).await;
    api.settle("the commit", |f| f.pending_commits() == 0).await;
    let conns = api.fake.connections(GROUP);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["arn"], msk(1)["arn"]);
}

#[tokio::test(start_paused = true)]
async fn a_patient_client_gets_its_200_after_the_commit() {
    let api = Api::start(delayed(750)).await;
    let started = tokio::time::Instant::now();
    let resp = api.create(1).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::from_millis(750));
    let echo: Value = resp.json().await.unwrap();
    let conns = api.fake.connections(GROUP);
    assert_eq!(conns.len(), 1, "committed before the answer");
    assert_eq!(echo["_id"], conns[0]["_id"]);
}

#[tokio::test(start_paused = true)]
async fn duplicates_are_judged_at_commit_time() {
    let api = Api::start(delayed(300)).await;
    // Both arrive before either is committed: the second finds the first only at its commit.
    let (a, b) = tokio::join!(api.create(1).send(), api.create(1).send());
    let mut statuses = [a.unwrap().status(), b.unwrap().status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    assert_eq!(api.fake.connections(GROUP).len(), 1);

    let api = Api::start(FakeConfig {
        duplicates: DuplicateMode::Create,
        ..delayed(300)
    })
    .await;
    let (a, b) = tokio::join!(api.create(1).send(), api.create(1).send());
    assert_eq!(a.unwrap().status(), StatusCode::OK);
    assert_eq!(b.unwrap().status(), StatusCode::OK);
    assert_eq!(api.fake.counters().duplicates, 1);
}

#[tokio::test(start_paused = true)]
async fn reset_then_commit_closes_without_an_answer_and_commits_later() {
    let api = Api::start(delayed(1_000)).await;
    api.fake.script(script(Fault::ResetThenCommit));
    let started = tokio::time::Instant::now();
    let err = api.create(1).send().await.expect_err("no answer expected");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "reset at once, not after the commit"
    );
    assert_eq!(api.fake.pending_commits(), 1);
    assert!(api.fake.connections(GROUP).is_empty());
    let c = api.fake.counters();
    assert_eq!(c.requests_with("create", 0), 1);
    assert_eq!(c.creates_committed, 0);

    tokio::time::sleep_until(started + Duration::from_millis(1_000)).await;
    api.settle("the commit", |f| f.pending_commits() == 0).await;
    assert_eq!(api.fake.connections(GROUP).len(), 1);
    assert_eq!(api.fake.counters().creates_committed, 1);
    // A blind retry now is refused as a duplicate: the client must list first.
    assert_eq!(
        api.create(1).send().await.unwrap().status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test(start_paused = true)]
async fn gateway_502_and_504_answer_at_once_in_the_gateway_shape_and_commit_later() {
    let api = Api::start(FakeConfig {
        // With a bucket, to show that gateway answers carry no RateLimit headers.
        bucket: Some(Default::default()),
        ..delayed(1_000)
    })
    .await;
    api.fake
        .script(script(Fault::GatewayThenCommit { status: 502 }));
    api.fake.script(ScriptedFault {
        nth: 2,
        ..script(Fault::GatewayThenCommit { status: 504 })
    });
    let started = tokio::time::Instant::now();
    let bad_gateway = api.create(1).send().await.unwrap();
    let timeout = api.create(2).send().await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1_000));
    for (resp, status, content_type, text) in [
        (bad_gateway, 502, "text/html", "502 Bad Gateway"),
        (timeout, 504, "text/plain", "upstream request timeout"),
    ] {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], content_type);
        assert!(!resp.headers().contains_key("x-error-code"));
        assert!(!resp.headers().contains_key("ratelimit-remaining"));
        let body = resp.text().await.unwrap();
        assert!(body.contains(text), "{body}");
        assert!(
            serde_json::from_str::<Value>(&body).is_err(),
            "not JSON: {body}"
        );
    }
    assert_eq!(api.fake.pending_commits(), 2);
    assert!(api.fake.connections(GROUP).is_empty());
    tokio::time::sleep_until(started + Duration::from_millis(1_000)).await;
    api.settle("both commits", |f| f.pending_commits() == 0)
        .await;
    assert_eq!(api.fake.connections(GROUP).len(), 2);
    let c = api.fake.counters();
    assert_eq!(c.requests_with("create", 502), 1);
    assert_eq!(c.requests_with("create", 504), 1);
    assert_eq!(c.creates_committed, 2);
}

#[tokio::test]
async fn random_resets_and_gateway_errors_hit_creates_only_and_every_valid_create_commits() {
    let api = Api::start(FakeConfig {
        bucket: None,
        faults: Faults {
            seed: 11,
            p_reset_create: 0.2,
            p_502_create: 0.2,
            p_504_create: 0.2,
            ..Faults::default()
        },
        ..FakeConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for n in 0..60 {
        let status = match api.create(n).send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        };
        statuses.push(status);
        assert_eq!(
            api.list_len().await,
            u64::from(n) + 1,
            "lists get no faults"
        );
    }
    // Each fault has a fifth of the creates, 200s the rest (0 stands for a reset).
    for (status, range) in [(0, 4..=24), (502, 4..=24), (504, 4..=24), (200, 12..=48)] {
        let seen = statuses.iter().filter(|&&s| s == status).count();
        assert!(range.contains(&seen), "{status}: {seen} of {statuses:?}");
    }
    let c = api.fake.counters();
    assert_eq!(c.creates_committed, 60, "the backend committed every one");
    assert_eq!(c.requests_with("list", 200), 60);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_pending_commits() {
    let api = Api::start(delayed(3_600_000)).await;
    api.fake.script(script(Fault::ResetThenCommit));
    assert!(api.create(1).send().await.is_err());
    assert_eq!(api.fake.pending_commits(), 1);
    let Api { fake, .. } = api;
    tokio::time::timeout(Duration::from_secs(10), fake.shutdown())
        .await
        .expect("shutdown abandons an hour-long commit instead of waiting for it");
}
