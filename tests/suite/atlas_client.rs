//! The Atlas client against the fake Atlas (and a small stub for answers the fake never gives):
//! every operation, every error class, paging, and both authentication schemes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::atlas::*;
use crate::support::{CLIENT_ID, PUBLIC_KEY, eventually};
use atlas_linkd::atlas::{ErrorClass, MAX_RETRY_AFTER, Operation};
use atlas_linkd::model::{RemoteState, Vendor};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use fake_atlas::{
    BucketConfig, DuplicateMode, FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault,
};

fn script(op: FakeOp, nth: u64, fault: Fault) -> ScriptedFault {
    ScriptedFault {
        operation: op,
        group_id: None,
        nth,
        fault,
    }
}

#[tokio::test]
async fn create_get_list_round_trip() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let c = client(&fake, sa_credentials());
    let g = group(1);

    let created = c.create(&g, &msk(1)).await.unwrap();
    assert_eq!(created.value.id.len(), 24);
    assert_eq!(created.value.vendor.as_deref(), Some("MSK"));
    assert_eq!(
        created.value.state, None,
        "a create echoes the body, without state"
    );
    assert_eq!(created.rate_limit.limit, Some(1200));
    assert!(created.rate_limit.remaining.is_some());

    let mut generic = msk(2);
    generic.vendor = Vendor::Generic;
    generic.arn = None;
    generic.authentication_scheme = None;
    generic.region = Some("us-east-1".into());
    generic.service_endpoint_id = Some("com.amazonaws.vpce.us-east-1.vpce-svc-1".into());
    let created2 = c.create(&g, &generic).await.unwrap();
    assert_eq!(
        created2.value.vendor, None,
        "GENERIC is not sent, so not echoed"
    );

    let got = c.get(&g, &created.value.id).await.unwrap().value;
    assert_eq!(got.state, Some(RemoteState::Done));
    assert!(msk(1).matches(&got));
    let got2 = c.get(&g, &created2.value.id).await.unwrap().value;
    assert_eq!(got2.vendor.as_deref(), Some("GENERIC"));

    let all = c.list(&g).await.unwrap();
    assert_eq!(all.len(), 2);

    let err = c.get(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err();
    assert_eq!(err.status, Some(404));
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.error_code(), Some("RESOURCE_NOT_FOUND"));
}

#[tokio::test]
async fn duplicate_create_is_a_conflict() {
    let fake = FakeAtlas::start(FakeConfig {
        duplicates: DuplicateMode::Conflict,
        ..sa_config()
    })
    .await
    .unwrap();
    let c = client(&fake, sa_credentials());
    c.create(&group(1), &msk(1)).await.unwrap();
    let err = c.create(&group(1), &msk(1)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Conflict);
    assert_eq!(err.status, Some(409));
    assert_eq!(err.error_code(), Some("STREAM_PRIVATE_LINK_ALREADY_EXISTS"));
    assert!(err.to_string().contains(&group(1).to_string()), "{err}");
}

#[tokio::test]
async fn rate_limits_carry_retry_after() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    fake.script(script(
        FakeOp::Create,
        1,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    ));
    let c = client(&fake, sa_credentials());
    let err = c.create(&group(1), &msk(1)).await.unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // The bucket itself: capacity 2, so the third call is refused.
    let fake = FakeAtlas::start(FakeConfig {
        bucket: Some(BucketConfig {
            capacity: 2,
            refill: 1,
            period_secs: 60.0,
        }),
        ..sa_config()
    })
    .await
    .unwrap();
    let c = client(&fake, sa_credentials());
    let g = group(2);
    let first = c.list_page(&g, 1, 10).await.unwrap();
    assert_eq!(first.rate_limit.limit, Some(2));
    assert_eq!(first.rate_limit.remaining, Some(1));
    c.list_page(&g, 1, 10).await.unwrap();
    let err = c.list_page(&g, 1, 10).await.unwrap_err();
    assert!(
        matches!(err.class, ErrorClass::RateLimited { retry_after: Some(d) } if d >= Duration::from_secs(1))
    );
    assert_eq!(err.rate_limit.remaining, Some(0));
}

#[tokio::test]
async fn server_errors_on_reads_are_retryable_and_on_create_ambiguous() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    fake.script(script(FakeOp::List, 1, Fault::ServerError));
    fake.script(script(FakeOp::List, 2, Fault::Unavailable));
    fake.script(script(FakeOp::Get, 1, Fault::ServerError));
    fake.script(script(FakeOp::Create, 1, Fault::ServerError));
    fake.script(script(FakeOp::Create, 2, Fault::Unavailable));
    let c = client(&fake, sa_credentials());
    let g = group(1);

    let e1 = c.list(&g).await.unwrap_err();
    assert_eq!(
        (e1.class.clone(), e1.status),
        (ErrorClass::Retryable, Some(500))
    );
    let e2 = c.list(&g).await.unwrap_err();
    assert_eq!(
        (e2.class.clone(), e2.status),
        (ErrorClass::Retryable, Some(503))
    );
    let e3 = c.get(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err();
    assert_eq!(e3.class, ErrorClass::Retryable);

    let e4 = c.create(&g, &msk(1)).await.unwrap_err();
    assert_eq!(
        (e4.class.clone(), e4.status),
        (ErrorClass::Ambiguous, Some(500))
    );
    assert!(e4.to_string().contains("list project"), "{e4}");
    let e5 = c.create(&g, &msk(1)).await.unwrap_err();
    assert_eq!(
        (e5.class.clone(), e5.status),
        (ErrorClass::Ambiguous, Some(503))
    );
}

#[tokio::test]
async fn dropped_connections_on_create_are_ambiguous() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    fake.script(script(FakeOp::Create, 1, Fault::DropAfterCommit));
    fake.script(script(FakeOp::Create, 2, Fault::DropBeforeCommit));
    fake.script(script(FakeOp::Get, 1, Fault::DropBeforeCommit));
    let rec = Arc::new(Recorder::default());
    let c = client_for(&fake.base_url(), sa_credentials(), Some(rec.clone()));
    let g = group(1);

    let after = c.create(&g, &msk(1)).await.unwrap_err();
    assert_eq!(after.class, ErrorClass::Ambiguous);
    assert_eq!(after.status, None);
    assert_eq!(
        fake.connections(g.as_str()).len(),
        1,
        "the create was committed"
    );

    let before = c.create(&g, &msk(2)).await.unwrap_err();
    assert_eq!(
        before.class,
        ErrorClass::Ambiguous,
        "the client cannot tell before from after"
    );
    assert_eq!(fake.connections(g.as_str()).len(), 1);

    let read = c.get(&g, "65a1b2c3d4e5f60718293a4b").await.unwrap_err();
    assert_eq!(read.class, ErrorClass::Retryable);
    assert_eq!(fake.counters().connections_dropped, 3);
    let events = rec.events.lock().unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.0 == Operation::Create && e.2 == "error")
            .count(),
        2,
        "{events:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_retryable_even_for_create() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let rec = Arc::new(Recorder::default());
    let c = client_for(
        &format!("http://{addr}"),
        key_credentials(),
        Some(rec.clone()),
    );
    let err = c.create(&group(1), &msk(1)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert!(err.to_string().contains("not sent"), "{err}");
    let err = c.list(&group(1)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert!(rec.events.lock().unwrap().iter().all(|e| e.2 == "connect"));
}

#[tokio::test]
async fn validation_error_is_permanent_and_names_the_fields() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let c = client(&fake, sa_credentials());
    let mut bad = msk(1);
    bad.region = Some("us-east-1".into()); // MSK must not carry a region
    bad.arn = Some("arn:aws:s3:::bucket".into()); // nor an ARN that is not Kafka's
    let err = c.create(&group(1), &bad).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(err.status, Some(400));
    assert_eq!(err.error_code(), Some("VALIDATION_ERROR"));
    let msg = err.to_string();
    assert!(msg.contains("`arn`") && msg.contains("`region`"), "{msg}");
    assert!(msg.contains("manifest"), "{msg}");
    assert_eq!(fake.counters().creates_committed, 0);
}

#[tokio::test]
async fn wrong_credentials_are_auth_errors() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let wrong = atlas_linkd::atlas::Credentials::ServiceAccount {
        client_id: CLIENT_ID.into(),
        client_secret: "wrong".to_owned().into(),
    };
    let err = client(&fake, wrong).list(&group(1)).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.operation, Operation::Token);
    assert_eq!(err.status, Some(401));
    let msg = err.to_string();
    assert!(msg.contains("client id or client secret is wrong"), "{msg}");
    assert!(msg.contains("MONGODB_ATLAS_CLIENT_SECRET"), "{msg}");

    let fake = FakeAtlas::start(key_config()).await.unwrap();
    let wrong = atlas_linkd::atlas::Credentials::ApiKey {
        public_key: PUBLIC_KEY.into(),
        private_key: "wrong".to_owned().into(),
    };
    let err = client(&fake, wrong)
        .get(&group(1), "65a1b2c3d4e5f60718293a4b")
        .await
        .unwrap_err();
    assert_eq!(
        (err.class.clone(), err.status),
        (ErrorClass::Auth, Some(401))
    );
    assert!(
        err.to_string().contains("MONGODB_ATLAS_PRIVATE_API_KEY"),
        "{err}"
    );
    // Bare request for the challenge, then one signed attempt: a fresh nonce refused is final.
    assert_eq!(fake.counters().requests_of("get"), 2);
}

#[tokio::test]
async fn forbidden_and_non_json_bodies_from_a_stub() {
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async { axum::Json(serde_json::json!({"access_token":"t","expires_in":3600,"token_type":"Bearer"})) }),
        )
        .route(
            &format!("{CONN_PATH}/{{id}}"),
            get(|axum::extract::Path((_g, id)): axum::extract::Path<(String, String)>| async move {
                match id.as_str() {
                    "forbidden" => (
                        StatusCode::FORBIDDEN,
                        [("content-type", "application/json")],
                        r#"{"error":403,"errorCode":"USER_CANNOT_ACCESS_GROUP","detail":"No access.","reason":"Forbidden"}"#.to_owned(),
                    ),
                    _ => (
                        StatusCode::BAD_GATEWAY,
                        [("content-type", "text/html")],
                        "<html><body><h1>502 Bad Gateway</h1></body></html>".to_owned(),
                    ),
                }
            }),
        )
        .route(
            CONN_PATH,
            post(|| async { (StatusCode::OK, "not json at all") }),
        );
    let base = stub(router).await;
    let c = client_for(&base, sa_credentials(), None);
    let g = group(3);

    let err = c.get(&g, "forbidden").await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
    let msg = err.to_string();
    assert!(
        msg.contains("USER_CANNOT_ACCESS_GROUP") && msg.contains("No access."),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Project Read Only (or higher) on project {g}")),
        "{msg}"
    );

    let err = c.get(&g, "gateway").await.unwrap_err();
    assert_eq!(
        (err.class.clone(), err.status),
        (ErrorClass::Retryable, Some(502))
    );
    assert!(err.atlas.is_none());
    assert!(err.to_string().contains("502 Bad Gateway"), "{err}");

    let err = c.create(&g, &msk(1)).await.unwrap_err();
    assert_eq!(
        err.class,
        ErrorClass::Ambiguous,
        "a 200 we cannot read may still have created"
    );
}

#[tokio::test]
async fn paging_collects_every_page_with_few_requests() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let g = group(4);
    for i in 0..1203 {
        fake.insert(g.as_str(), serde_json::json!({"provider":"AWS","vendor":"MSK","arn":format!("arn:aws:kafka:x:{i}")}));
    }
    let c = client(&fake, sa_credentials());
    let all = c.list(&g).await.unwrap();
    assert_eq!(all.len(), 1203);
    let mut ids: Vec<_> = all.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1203);
    assert_eq!(fake.counters().requests_of("list"), 3);

    let mut pager = c.pager_with_page_size(&g, 100);
    let mut pages = 0;
    while let Some(page) = pager.next_page().await.unwrap() {
        pages += 1;
        assert!(page.len() <= 100);
    }
    assert_eq!(pages, 13);
    assert_eq!(pager.into_items().len(), 1203);
    assert_eq!(fake.counters().requests_of("list"), 3 + 13);

    // An empty project: one call.
    assert!(c.list(&group(5)).await.unwrap().is_empty());
    assert_eq!(fake.counters().requests_of("list"), 3 + 13 + 1);
}

#[tokio::test]
async fn a_failed_page_fails_the_listing_and_does_not_advance_the_pager() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let g = group(6);
    for i in 0..1203 {
        fake.insert(g.as_str(), serde_json::json!({"provider":"AWS","vendor":"MSK","arn":format!("arn:aws:kafka:x:{i}")}));
    }
    fake.script(script(FakeOp::List, 2, Fault::ServerError));
    fake.script(script(FakeOp::List, 5, Fault::Unavailable));
    let c = client(&fake, sa_credentials());
    let err = c.list(&g).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);

    let mut pager = c.pager(&g);
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 500); // list call 3
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 500); // call 4
    assert!(pager.next_page().await.is_err()); // call 5 fails
    assert_eq!(pager.next_page().await.unwrap().unwrap().len(), 203); // the same page again
    assert!(pager.next_page().await.unwrap().is_none());
    assert_eq!(pager.into_items().len(), 1203);
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let fake = FakeAtlas::start(FakeConfig {
        token_ttl_secs: 1,
        ..sa_config()
    })
    .await
    .unwrap();
    let c = client(&fake, sa_credentials());
    let g = group(1);
    c.list(&g).await.unwrap();
    c.list(&g).await.unwrap();
    assert_eq!(fake.counters().tokens_issued, 1);
    eventually("a second token", Duration::from_secs(10), async || {
        c.list(&g).await.unwrap();
        (fake.counters().tokens_issued >= 2).then_some(())
    })
    .await;
    assert_eq!(
        fake.counters().requests_with("list", 401),
        0,
        "refreshed before expiry, never after"
    );
}

#[tokio::test]
async fn a_revoked_token_costs_one_401_one_refresh_and_one_retry_against_the_fake() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let c = client(&fake, sa_credentials());
    let g = group(1);
    c.list(&g).await.unwrap();
    fake.revoke_all_tokens();
    c.list(&g).await.unwrap();
    let counters = fake.counters();
    assert_eq!(counters.tokens_issued, 2);
    assert_eq!(counters.requests_with("list", 401), 1);
    assert_eq!(counters.requests_with("list", 200), 2);
}

#[tokio::test]
async fn one_refresh_and_one_retry_after_a_401() {
    let issued = Arc::new(AtomicU32::new(0));
    let issued2 = issued.clone();
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(move || {
                let n = issued2.fetch_add(1, Ordering::SeqCst) + 1;
                async move { axum::Json(serde_json::json!({"access_token":format!("tok{n}"),"expires_in":3600,"token_type":"Bearer"})) }
            }),
        )
        .route(
            &format!("{CONN_PATH}/{{id}}"),
            get(|headers: HeaderMap| async move {
                let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                // The first token has been "revoked"; every other one works, except for id "never".
                if auth == "Bearer tok1" {
                    (StatusCode::UNAUTHORIZED, r#"{"error":401,"errorCode":"UNAUTHORIZED"}"#.to_owned())
                } else {
                    (StatusCode::OK, r#"{"_id":"65a1b2c3d4e5f60718293a4b","provider":"AWS","state":"DONE"}"#.to_owned())
                }
            }),
        );
    let base = stub(router).await;
    let rec = Arc::new(Recorder::default());
    let c = client_for(&base, sa_credentials(), Some(rec.clone()));
    let got = c.get(&group(1), "65a1b2c3d4e5f60718293a4b").await.unwrap();
    assert_eq!(got.value.state, Some(RemoteState::Done));
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let statuses: Vec<_> = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.0, e.2.clone()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (Operation::Token, "200".to_owned()),
            (Operation::Get, "401".to_owned()),
            (Operation::Token, "200".to_owned()),
            (Operation::Get, "200".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_an_auth_error() {
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async {
                axum::Json(serde_json::json!({"access_token":"t","expires_in":3600}))
            }),
        )
        .route(
            CONN_PATH,
            get(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    r#"{"error":401,"errorCode":"USER_UNAUTHORIZED"}"#,
                )
            }),
        );
    let base = stub(router).await;
    let rec = Arc::new(Recorder::default());
    let c = client_for(&base, sa_credentials(), Some(rec.clone()));
    let err = c.list(&group(1)).await.unwrap_err();
    assert_eq!(
        (err.class.clone(), err.status),
        (ErrorClass::Auth, Some(401))
    );
    let lists = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.0 == Operation::List)
        .count();
    assert_eq!(lists, 2, "one retry, no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token_fetch() {
    let fake = FakeAtlas::start(FakeConfig {
        latency_ms: 20,
        ..sa_config()
    })
    .await
    .unwrap();
    let c = client(&fake, sa_credentials());
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.list(&group(1)).await.map(|l| l.len())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.counters().tokens_issued, 1);
}

#[tokio::test]
async fn digest_reuses_the_nonce_so_n_calls_cost_n_plus_one_requests() {
    let fake = FakeAtlas::start(key_config()).await.unwrap();
    let c = client(&fake, key_credentials());
    let g = group(1);
    let created = c.create(&g, &msk(1)).await.unwrap().value;
    for _ in 0..18 {
        c.get(&g, &created.id).await.unwrap();
    }
    c.list(&g).await.unwrap();
    let counters = fake.counters();
    assert_eq!(counters.total_requests(), 21);
    assert_eq!(counters.digest_challenges, 1);
    assert_eq!(counters.creates_committed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_digest_calls_pay_one_challenge() {
    let fake = FakeAtlas::start(key_config()).await.unwrap();
    let c = client(&fake, key_credentials());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.list(&group(1)).await.map(|l| l.len())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.counters().total_requests(), 21);
}

#[tokio::test]
async fn stale_nonce_is_replaced_with_one_retry() {
    let fake = FakeAtlas::start(FakeConfig {
        digest_nonce_max_uses: 3,
        ..key_config()
    })
    .await
    .unwrap();
    let c = client(&fake, key_credentials());
    for _ in 0..10 {
        c.list(&group(1)).await.unwrap();
    }
    let counters = fake.counters();
    // Nonce 1 from the bare request serves calls 1-3; each later stale answer brings the next nonce.
    assert_eq!(counters.digest_challenges, 4);
    assert_eq!(counters.total_requests(), 10 + 4);
    assert_eq!(counters.requests_with("list", 200), 10);
}

#[tokio::test]
async fn observer_sees_every_exchange() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    let rec = Arc::new(Recorder::default());
    let c = client_for(&fake.base_url(), sa_credentials(), Some(rec.clone()));
    let g = group(1);
    let id = c.create(&g, &msk(1)).await.unwrap().value.id;
    c.get(&g, &id).await.unwrap();
    c.shutdown().await;
    let events = rec.events.lock().unwrap().clone();
    let ops: Vec<_> = events.iter().map(|e| (e.0, e.2.as_str())).collect();
    assert_eq!(
        ops,
        vec![
            (Operation::Token, "200"),
            (Operation::Create, "200"),
            (Operation::Get, "200"),
            (Operation::Revoke, "200"),
        ]
    );
    assert_eq!(events[1].1.as_ref(), Some(&g));
    assert_eq!(events[0].1, None);
    let counters = fake.counters();
    assert_eq!(counters.total_requests() as usize, events.len());
    assert_eq!(counters.tokens_revoked, 1);
}

#[tokio::test]
async fn timeouts_are_ambiguous_on_create_and_retryable_on_reads() {
    let fake = FakeAtlas::start(sa_config()).await.unwrap();
    fake.script(script(FakeOp::Create, 1, Fault::Slow { ms: 3_000 }));
    fake.script(script(FakeOp::List, 1, Fault::Slow { ms: 3_000 }));
    let rec = Arc::new(Recorder::default());
    let settings = atlas_linkd::atlas::ClientSettings::new(
        fake.base_url().parse().unwrap(),
        Duration::from_millis(300),
    );
    let c = atlas_linkd::atlas::AtlasClient::new(settings, sa_credentials(), Some(rec.clone()))
        .unwrap();
    let g = group(1);
    let err = c.create(&g, &msk(1)).await.unwrap_err();
    assert_eq!(
        (err.class.clone(), err.status),
        (ErrorClass::Ambiguous, None)
    );
    assert!(
        err.to_string().contains("no complete answer within 0.3 s"),
        "{err}"
    );
    let err = c.list(&g).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    let timeouts = rec
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.2 == "timeout")
        .count();
    assert_eq!(timeouts, 2);
}

#[tokio::test]
async fn an_absurd_retry_after_is_clamped_not_a_panic() {
    // Answers every get with a 429 whose Retry-After is named by the connection id.
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async { axum::Json(serde_json::json!({"access_token":"t","expires_in":3600,"token_type":"Bearer"})) }),
        )
        .route(
            &format!("{CONN_PATH}/{{id}}"),
            get(|axum::extract::Path((_g, id)): axum::extract::Path<(String, String)>| async move {
                let retry_after = match id.as_str() {
                    "max" => "18446744073709551615".to_owned(),
                    "thirty-digits" => "9".repeat(30),
                    "in-2099" => "Thu, 01 Jan 2099 00:00:00 GMT".to_owned(),
                    "negative" => "-5".to_owned(),
                    _ => "garbage".to_owned(),
                };
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("content-type", "application/json".to_owned()),
                        ("retry-after", retry_after),
                    ],
                    r#"{"error":429,"errorCode":"RATE_LIMITED","detail":"Slow down.","reason":"Too Many Requests"}"#.to_owned(),
                )
            }),
        );
    let base = stub(router).await;
    let c = client_for(&base, sa_credentials(), None);
    let g = group(4);

    for id in ["max", "thirty-digits", "in-2099"] {
        let err = c.get(&g, id).await.unwrap_err();
        assert_eq!(err.status, Some(429), "{id}");
        let ErrorClass::RateLimited {
            retry_after: Some(wait),
        } = err.class
        else {
            panic!(
                "{id}: expected rate limited with a wait, got {:?}",
                err.class
            );
        };
        assert!(wait <= MAX_RETRY_AFTER, "{id}: {wait:?}");
        assert_eq!(
            wait, MAX_RETRY_AFTER,
            "{id}: a huge wait is the longest, not none"
        );
        assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));
        // Display renders it too (no arithmetic left that could overflow).
        assert!(err.to_string().contains("(retry after 3600 s)"), "{err}");
    }
    for id in ["negative", "garbage"] {
        let err = c.get(&g, id).await.unwrap_err();
        assert_eq!(
            err.class,
            ErrorClass::RateLimited { retry_after: None },
            "{id}: an unreadable Retry-After is ignored, the 429 still counts"
        );
    }
}
