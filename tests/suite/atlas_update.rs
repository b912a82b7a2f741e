//! `AtlasClient::update_dns_domain`: the PATCH on the wire (method, path, API version, body), and
//! Atlas's refusal outside `IDLE` classified as permanent with advice.

use crate::support::atlas::{CONN_PATH, client, client_for, group, sa_credentials, stub};
use atlas_linkd::atlas::ErrorClass;
use axum::http::HeaderMap;
use axum::routing::{patch, post};
use fake_atlas::{FakeAtlas, FakeConfig};
use std::sync::{Arc, Mutex};

/// What the stub saw of each PATCH: the id in the path, `Accept`, `Content-Type` and the body.
type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

#[tokio::test]
async fn the_patch_sends_only_dns_domain_in_api_version_2025_03_12() {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let router = axum::Router::new()
        .route(
            "/api/oauth/token",
            post(|| async {
                axum::Json(
                    serde_json::json!({"access_token":"t","expires_in":3600,"token_type":"Bearer"}),
                )
            }),
        )
        .route(
            &format!("{CONN_PATH}/{{id}}"),
            patch(
                move |axum::extract::Path((_g, id)): axum::extract::Path<(String, String)>,
                      headers: HeaderMap,
                      body: String| async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    record
                        .lock()
                        .unwrap()
                        .push((id.clone(), h("accept"), h("content-type"), body));
                    axum::Json(serde_json::json!({
                        "_id": id, "provider": "AWS", "vendor": "CONFLUENT", "state": "IDLE",
                        "dnsDomain": "use1.dom7x2q.confluent.cloud"
                    }))
                },
            ),
        );
    let base = stub(router).await;
    let c = client_for(&base, sa_credentials(), None);
    let answer = c
        .update_dns_domain(
            &group(1),
            "65f1a2b3c4d5e6f708192a3b",
            "use1.dom7x2q.confluent.cloud",
        )
        .await
        .unwrap();
    assert_eq!(
        answer.value.dns_domain.as_deref(),
        Some("use1.dom7x2q.confluent.cloud")
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one attempt");
    let (id, accept, content_type, body) = &seen[0];
    assert_eq!(id, "65f1a2b3c4d5e6f708192a3b");
    assert_eq!(accept, "application/vnd.atlas.2025-03-12+json");
    assert_eq!(content_type, "application/vnd.atlas.2025-03-12+json");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"dnsDomain": "use1.dom7x2q.confluent.cloud"})
    );
}

#[tokio::test]
async fn a_patch_past_idle_with_a_domain_is_refused_permanently_with_advice() {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    let g = group(2);
    let id = fake.insert(
        g.as_str(),
        serde_json::json!({
            "provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0c0f1d2e3a4b5c6d7",
            "dnsSubDomain": [], "dnsDomain": "use1.old.confluent.cloud"
        }),
    );
    assert_eq!(fake.connections(g.as_str())[0]["state"], "DONE");
    let c = client(&fake, sa_credentials());
    let err = c
        .update_dns_domain(&g, &id, "use1.new.confluent.cloud")
        .await
        .unwrap_err();
    assert_eq!(
        (err.class.clone(), err.status),
        (ErrorClass::Permanent, Some(400))
    );
    let msg = err.to_string();
    assert!(
        msg.contains("only while the connection is IDLE or has no domain"),
        "{msg}"
    );
    assert_eq!(
        fake.connections(g.as_str())[0]["dnsDomain"],
        "use1.old.confluent.cloud"
    );
}
