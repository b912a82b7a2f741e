//! The fake Atlas's rate limit and fault injection: the token bucket, scripted and random faults,
//! dropped connections before and after commit, latency, and the concurrency counters.

use fake_atlas::{BucketConfig, FakeAtlas, FakeConfig, FakeOp, Fault, Faults, ScriptedFault};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::support::eventually;
use crate::support::fake::{ACCEPT, GROUP, bearer_token};

const OTHER: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";

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

    fn url(&self, group: &str) -> String {
        format!(
            "{}/api/atlas/v2/groups/{group}/streams/privateLinkConnections",
            self.fake.base_url()
        )
    }

    async fn create(&self, group: &str, n: u32) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url(group))
            .bearer_auth(&self.token)
            .header("Accept", ACCEPT)
            .json(&msk(n))
            .send()
            .await
    }

    async fn list(&self, group: &str) -> reqwest::Response {
        self.http
            .get(self.url(group))
            .bearer_auth(&self.token)
            .header("Accept", ACCEPT)
            .send()
            .await
            .unwrap()
    }
}

fn msk(n: u32) -> Value {
    json!({"provider": "AWS", "vendor": "MSK",
        "arn": format!("arn:aws:kafka:us-east-1:123456789012:cluster/c{n}/5a6b")})
}

fn no_bucket() -> FakeConfig {
    FakeConfig {
        bucket: None,
        ..FakeConfig::default()
    }
}

#[tokio::test]
async fn bucket_answers_429_at_the_right_count_and_refills() {
    let api = Api::start(FakeConfig {
        // One token back every second: slow enough that a loaded machine does not refill mid-test.
        bucket: Some(BucketConfig {
            capacity: 3,
            refill: 1,
            period_secs: 1.0,
        }),
        ..FakeConfig::default()
    })
    .await;
    for remaining in [2, 1, 0] {
        let resp = api.list(GROUP).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["ratelimit-limit"], "3");
        assert_eq!(
            resp.headers()["ratelimit-remaining"],
            remaining.to_string().as_str()
        );
    }
    let resp = api.list(GROUP).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1", "rounded up, at least 1");
    assert_eq!(resp.headers()["x-error-code"], "RATE_LIMITED_TOKEN_BUCKET");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "RATE_LIMITED_TOKEN_BUCKET");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Please retry after 1 seconds")
    );
    // Another project has its own bucket.
    assert_eq!(api.list(OTHER).await.status(), StatusCode::OK);
    // Refill: within the deadline a call gets through again.
    eventually("the bucket to refill", Duration::from_secs(5), async || {
        (api.list(GROUP).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    assert!(api.fake.counters().rate_limited >= 1);
}

#[tokio::test]
async fn bucket_retry_after_is_whole_seconds_for_slow_refill() {
    let api = Api::start(FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 1,
            refill: 1,
            period_secs: 55.0,
        }),
        ..FakeConfig::default()
    })
    .await;
    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
    let resp = api.list(GROUP).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((54..=55).contains(&secs), "{secs}");
}

#[tokio::test]
async fn token_endpoint_does_not_take_bucket_tokens() {
    let api = Api::start(FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 1,
            refill: 1,
            period_secs: 3600.0,
        }),
        ..FakeConfig::default()
    })
    .await;
    for _ in 0..3 {
        let resp = api
            .http
            .post(format!("{}/api/oauth/token", api.fake.base_url()))
            .basic_auth("id", Some("secret"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn drop_before_commit_closes_the_connection_and_commits_nothing() {
    let api = Api::start(no_bucket()).await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: None,
        nth: 1,
        fault: Fault::DropBeforeCommit,
    });
    let err = api.create(GROUP, 1).await.expect_err("no answer expected");
    assert!(!err.is_status(), "{err:?}");
    assert!(api.fake.connections(GROUP).is_empty());
    let c = api.fake.counters();
    assert_eq!(c.creates_committed, 0);
    assert_eq!(c.requests_with("create", 0), 1);
    assert_eq!(c.connections_dropped, 1);
    // The next create goes through.
    assert_eq!(api.create(GROUP, 1).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn drop_after_commit_closes_the_connection_but_the_connection_exists() {
    let api = Api::start(no_bucket()).await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: Some(GROUP.into()),
        nth: 1,
        fault: Fault::DropAfterCommit,
    });
    let err = api.create(GROUP, 1).await.expect_err("no answer expected");
    assert!(!err.is_status(), "{err:?}");
    let conns = api.fake.connections(GROUP);
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0]["arn"], msk(1)["arn"]);
    assert_eq!(api.fake.counters().creates_committed, 1);
    // A blind retry is refused as a duplicate: the client must list first.
    assert_eq!(
        api.create(GROUP, 1).await.unwrap().status(),
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn the_nth_create_in_a_project_gets_the_scripted_fault() {
    let api = Api::start(no_bucket()).await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: Some(GROUP.into()),
        nth: 3,
        fault: Fault::Unavailable,
    });
    api.fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: None,
        nth: 2,
        fault: Fault::RateLimited {
            retry_after_secs: 7,
        },
    });
    assert_eq!(api.create(GROUP, 1).await.unwrap().status(), StatusCode::OK);
    // Other projects' creates do not count towards GROUP's third.
    assert_eq!(api.create(OTHER, 1).await.unwrap().status(), StatusCode::OK);
    assert_eq!(api.create(GROUP, 2).await.unwrap().status(), StatusCode::OK);
    let third = api.create(GROUP, 3).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(third.headers()["x-error-code"], "SERVICE_UNAVAILABLE");
    assert_eq!(api.create(GROUP, 3).await.unwrap().status(), StatusCode::OK);
    assert_eq!(api.fake.connections(GROUP).len(), 3);

    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
    let limited = api.list(OTHER).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn server_error_fault_is_500_and_commits_nothing() {
    let api = Api::start(no_bucket()).await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::Create,
        group_id: None,
        nth: 1,
        fault: Fault::ServerError,
    });
    let resp = api.create(GROUP, 1).await.unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "UNEXPECTED_ERROR");
    assert!(api.fake.connections(GROUP).is_empty());
}

#[tokio::test]
async fn slow_fault_and_latency_delay_the_answer() {
    let api = Api::start(FakeConfig {
        latency_ms: 100,
        ..no_bucket()
    })
    .await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: None,
        nth: 2,
        fault: Fault::Slow { ms: 300 },
    });
    let start = Instant::now();
    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(api.list(GROUP).await.status(), StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_millis(400));
}

async fn statuses(seed: u64) -> Vec<u16> {
    let api = Api::start(no_bucket()).await;
    api.fake.set_faults(Faults {
        seed,
        p_429: 0.2,
        p_500: 0.2,
        p_503: 0.1,
        ..Faults::default()
    });
    let mut out = Vec::new();
    for _ in 0..200 {
        out.push(api.list(GROUP).await.status().as_u16());
    }
    out
}

#[tokio::test]
async fn random_faults_follow_their_probabilities_and_replay_by_seed() {
    let a = statuses(42).await;
    let count = |s: u16| a.iter().filter(|&&x| x == s).count();
    assert!((20..=65).contains(&count(429)), "429s: {}", count(429));
    assert!((20..=65).contains(&count(500)), "500s: {}", count(500));
    assert!((5..=40).contains(&count(503)), "503s: {}", count(503));
    assert!(count(200) >= 60, "200s: {}", count(200));
    assert_eq!(a, statuses(42).await, "same seed, same faults");
    assert_ne!(a, statuses(43).await);
}

#[tokio::test]
async fn random_drops_before_commit_never_commit() {
    let api = Api::start(FakeConfig {
        faults: Faults {
            seed: 7,
            p_drop_before: 0.5,
            ..Faults::default()
        },
        ..no_bucket()
    })
    .await;
    let mut answered = 0;
    for n in 0..40 {
        if let Ok(resp) = api.create(GROUP, n).await {
            assert_eq!(resp.status(), StatusCode::OK);
            answered += 1;
        }
    }
    let c = api.fake.counters();
    assert!(answered > 5 && answered < 35, "{answered}");
    assert_eq!(c.creates_committed, answered);
    assert_eq!(c.requests_with("create", 0), 40 - answered);
}

#[tokio::test]
async fn peak_concurrency_is_counted_overall_and_per_project() {
    let api = Api::start(FakeConfig {
        latency_ms: 300,
        ..no_bucket()
    })
    .await;
    let calls = (0..5).map(|_| api.list(GROUP));
    let other = api.list(OTHER);
    let (results, other) = tokio::join!(futures::future::join_all(calls), other);
    assert!(results.iter().all(|r| r.status() == StatusCode::OK));
    assert_eq!(other.status(), StatusCode::OK);
    let c = api.fake.counters();
    assert_eq!(c.peak_concurrent, 6);
    assert_eq!(c.peak_concurrent_by_project[GROUP], 5);
    assert_eq!(c.peak_concurrent_by_project[OTHER], 1);
}

#[tokio::test]
async fn rate_limit_remaining_is_what_each_call_left_on_every_kind_of_answer() {
    let api = Api::start(FakeConfig {
        // One token an hour: nothing refills during the test.
        bucket: Some(BucketConfig {
            capacity: 5,
            refill: 1,
            period_secs: 3600.0,
        }),
        // Headers are read when the token is taken, not after the answer's delay.
        latency_ms: 50,
        ..FakeConfig::default()
    })
    .await;
    api.fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: None,
        nth: 2,
        fault: Fault::ServerError,
    });
    let remaining = |resp: &reqwest::Response| -> (u16, String, String) {
        (
            resp.status().as_u16(),
            resp.headers()["ratelimit-limit"]
                .to_str()
                .unwrap()
                .to_owned(),
            resp.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        )
    };
    let ok = api.list(GROUP).await;
    assert_eq!(remaining(&ok), (200, "5".into(), "4".into()));
    let server_error = api.list(GROUP).await;
    assert_eq!(remaining(&server_error), (500, "5".into(), "3".into()));
    let not_found = api
        .http
        .get(format!("{}/65a1b2c3d4e5f60718293a4b", api.url(GROUP)))
        .bearer_auth(&api.token)
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(&not_found), (404, "5".into(), "2".into()));
    let invalid = api
        .http
        .post(api.url(GROUP))
        .bearer_auth(&api.token)
        .header("Accept", ACCEPT)
        .json(&json!({"provider": "ORACLE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(&invalid), (400, "5".into(), "1".into()));
    // Refused before the rate limit: no token taken, the headers show the bucket as it is.
    let unauthorised = api
        .http
        .get(api.url(GROUP))
        .bearer_auth("not-a-token")
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(remaining(&unauthorised), (401, "5".into(), "1".into()));
    assert_eq!(
        remaining(&api.list(GROUP).await),
        (200, "5".into(), "0".into())
    );
    let limited = api.list(GROUP).await;
    assert_eq!(remaining(&limited), (429, "5".into(), "0".into()));
    assert!(limited.headers().contains_key("retry-after"));
    // Token calls are outside the Streams set.
    let token = api
        .http
        .post(format!("{}/api/oauth/token", api.fake.base_url()))
        .basic_auth("id", Some("secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    assert!(!token.headers().contains_key("ratelimit-remaining"));
}

#[tokio::test]
async fn another_client_drains_the_shared_bucket_and_its_refusals_are_counted() {
    let bucket = BucketConfig {
        capacity: 6,
        refill: 1,
        period_secs: 3600.0,
    };
    let api = Api::start(FakeConfig {
        bucket: Some(bucket),
        other_client_per_sec: 50.0,
        ..FakeConfig::default()
    })
    .await;
    let first = api.list(GROUP).await;
    assert_eq!(first.status(), StatusCode::OK);
    let left: u64 = first.headers()["ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left <= 5, "{left}");
    // The other client takes a token every 20 ms: within a fraction of a second the bucket is
    // empty although this client made a single call.
    let mut ours = 1;
    eventually(
        "the other client to drain it",
        Duration::from_secs(5),
        async || {
            let resp = api.list(GROUP).await;
            ours += 1;
            if resp.status() != StatusCode::TOO_MANY_REQUESTS {
                return None;
            }
            assert_eq!(resp.headers()["ratelimit-remaining"], "0");
            Some(())
        },
    )
    .await;
    assert!(ours <= 6, "drained by someone else: {ours} calls of ours");
    let c = api.fake.counters();
    // Six tokens (nothing refills in five seconds), and all but our last call took one.
    assert_eq!(
        c.other_client_calls - c.other_client_refused,
        6 - (ours - 1),
        "{c:?}"
    );
    assert_eq!(c.other_client_calls_by_project[GROUP], c.other_client_calls);
    // From now on (one token an hour) the other client's calls are refused, and counted.
    eventually(
        "5 refusals of the other client",
        Duration::from_secs(5),
        async || (api.fake.counters().other_client_refused >= 5).then_some(()),
    )
    .await;
    let c = api.fake.counters();
    assert_eq!(
        c.other_client_refused_by_project[GROUP],
        c.other_client_refused
    );
    assert!(c.other_client_refused < c.other_client_calls);
    assert_eq!(
        c.rate_limited, 1,
        "only 429s actually sent count as rate_limited"
    );
    // A project nobody called has no bucket yet, so nobody else calls it either.
    assert!(!c.other_client_calls_by_project.contains_key(OTHER));
}
