//! The fake Atlas's private link API against the reference: create, get, list, delete, update,
//! versions, validation, duplicates and states. Plain reqwest, not the project's client.

use fake_atlas::{DuplicateMode, FakeAtlas, FakeConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::eventually;
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

    fn url(&self, group: &str, rest: &str) -> String {
        format!(
            "{}/api/atlas/v2/groups/{group}/streams/privateLinkConnections{rest}",
            self.fake.base_url()
        )
    }

    fn req(&self, method: Method, url: String) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(&self.token)
            .header("Accept", ACCEPT)
    }

    async fn create(&self, group: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self
            .req(Method::POST, self.url(group, ""))
            .header("Content-Type", ACCEPT)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, group: &str, id: &str) -> (StatusCode, Value) {
        let resp = self
            .req(Method::GET, self.url(group, &format!("/{id}")))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn msk(n: u32) -> Value {
    json!({"provider": "aws", "vendor": "msk",
        "arn": format!("arn:aws:kafka:us-east-1:123456789012:cluster/c{n}/5a6b"),
        "authenticationScheme": "iam"})
}

fn is_hex24(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn create_echoes_the_body_as_sent_with_an_id() {
    let api = Api::start(FakeConfig::default()).await;
    let body = msk(1);
    let resp = api
        .req(Method::POST, api.url(GROUP, ""))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.atlas.2023-02-01+json;charset=utf-8"
    );
    assert_eq!(resp.headers()["ratelimit-limit"], "1200");
    assert!(resp.headers().contains_key("ratelimit-remaining"));
    let echo: Value = resp.json().await.unwrap();
    let id = echo["_id"].as_str().unwrap();
    assert!(is_hex24(id), "{id}");
    let mut expected = body.clone();
    expected["_id"] = json!(id);
    assert_eq!(
        echo, expected,
        "echo is the body as sent, no state, no added vendor"
    );
    assert_eq!(api.fake.counters().creates_committed, 1);
    assert_eq!(api.fake.counters().creates_committed_by_project[GROUP], 1);
}

#[tokio::test]
async fn get_shows_upper_case_generic_vendor_and_done() {
    let api = Api::start(FakeConfig::default()).await;
    let (_, echo) = api
        .create(GROUP, &json!({"provider": "gcp", "region": "us-east1"}))
        .await;
    assert!(echo.get("vendor").is_none());
    let id = echo["_id"].as_str().unwrap();
    let (status, got) = api.get(GROUP, id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["provider"], "GCP");
    assert_eq!(got["vendor"], "GENERIC");
    assert_eq!(got["state"], "DONE");
    let (_, echo) = api.create(GROUP, &msk(2)).await;
    let (_, got) = api.get(GROUP, echo["_id"].as_str().unwrap()).await;
    assert_eq!(got["vendor"], "MSK");
    assert_eq!(got["authenticationScheme"], "IAM");
    assert_eq!(
        got["region"], "us-east-1",
        "Atlas derives an MSK region from the ARN"
    );
}

#[tokio::test]
async fn state_moves_idle_working_done_and_failed_gets_a_message() {
    let api = Api::start(FakeConfig {
        idle_ms: 150,
        working_ms: 150,
        fail_when_contains: Some("doomed".into()),
        ..FakeConfig::default()
    })
    .await;
    let (_, echo) = api.create(GROUP, &msk(1)).await;
    let id = echo["_id"].as_str().unwrap().to_owned();
    let mut seen: Vec<String> = Vec::new();
    eventually("state DONE", Duration::from_secs(5), async || {
        let (_, got) = api.get(GROUP, &id).await;
        let state = got["state"].as_str().unwrap_or("").to_owned();
        if seen.last() != Some(&state) {
            seen.push(state);
        }
        (seen.last().map(String::as_str) == Some("DONE")).then_some(())
    })
    .await;
    assert_eq!(seen.first().map(String::as_str), Some("IDLE"));
    assert!(seen.contains(&"WORKING".to_owned()), "{seen:?}");
    let mut doomed = msk(2);
    doomed["arn"] = json!("arn:aws:kafka:us-east-1:1:cluster/doomed/1");
    let (_, echo) = api.create(GROUP, &doomed).await;
    let id = echo["_id"].as_str().unwrap().to_owned();
    let got = eventually("state FAILED", Duration::from_secs(5), async || {
        let (_, got) = api.get(GROUP, &id).await;
        (got["state"] == "FAILED").then_some(got)
    })
    .await;
    assert!(got["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn delete_answers_202_then_get_404_after_delete_ms() {
    let api = Api::start(FakeConfig {
        delete_ms: 200,
        ..FakeConfig::default()
    })
    .await;
    let (_, echo) = api.create(GROUP, &msk(1)).await;
    let id = echo["_id"].as_str().unwrap().to_owned();
    let resp = api
        .req(Method::DELETE, api.url(GROUP, &format!("/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({}));
    let (status, got) = api.get(GROUP, &id).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        got["state"] == "DELETE_REQUESTED" || got["state"] == "DELETING",
        "{got}"
    );
    let body = eventually("a 404", Duration::from_secs(5), async || {
        let (status, body) = api.get(GROUP, &id).await;
        (status == StatusCode::NOT_FOUND).then_some(body)
    })
    .await;
    assert_eq!(body["errorCode"], "RESOURCE_NOT_FOUND");
    assert_eq!(body["error"], 404);
    let (status, _) = api.get(GROUP, "65a1b2c3d4e5f60718293a4b").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_pages_with_next_links_and_total_count() {
    let api = Api::start(FakeConfig::default()).await;
    for n in 0..7 {
        assert_eq!(api.create(GROUP, &msk(n)).await.0, StatusCode::OK);
    }
    let mut url = api.url(GROUP, "?itemsPerPage=3");
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = api
            .req(Method::GET, url.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page["totalCount"], 7);
        for r in page["results"].as_array().unwrap() {
            assert_eq!(r["state"], "DONE");
            ids.push(r["_id"].as_str().unwrap().to_owned());
        }
        let links = page["links"].as_array().unwrap();
        assert!(links.iter().any(|l| l["rel"] == "self"));
        match links.iter().find(|l| l["rel"] == "next") {
            Some(next) => url = next["href"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    let resp = api
        .req(Method::GET, api.url(GROUP, "?itemsPerPage=501"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn accept_header_missing_or_unknown_is_406_and_retired_is_410() {
    let api = Api::start(FakeConfig::default()).await;
    let url = api.url(GROUP, "");
    for (accept, status, code) in [
        (None, StatusCode::NOT_ACCEPTABLE, "INVALID_VERSION"),
        (
            Some("application/json"),
            StatusCode::NOT_ACCEPTABLE,
            "INVALID_VERSION",
        ),
        (
            Some("application/vnd.atlas.2099-01-01+json"),
            StatusCode::NOT_ACCEPTABLE,
            "INVALID_VERSION",
        ),
        (
            Some("application/vnd.atlas.2022-06-01+json"),
            StatusCode::GONE,
            "VERSION_GONE",
        ),
    ] {
        let mut req = api.http.get(&url).bearer_auth(&api.token);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), status, "{accept:?}");
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-error-code"], code);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], code);
        assert_eq!(body["error"], status.as_u16());
    }
}

#[tokio::test]
async fn bad_group_id_is_400() {
    let api = Api::start(FakeConfig::default()).await;
    let (status, body) = api.create("32B6E34B3D91647ABB20E7B8", &msk(1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorCode"], "INVALID_GROUP_ID");
    assert_eq!(api.fake.counters().creates_committed, 0);
}

#[tokio::test]
async fn invalid_bodies_are_400_with_bad_request_detail() {
    let api = Api::start(FakeConfig::default()).await;
    let cases = [
        (json!({"vendor": "MSK"}), "provider"),
        (json!({"provider": "ORACLE"}), "provider"),
        (json!({"provider": "AWS", "vendor": "PUBSUB"}), "vendor"),
        (
            json!({"provider": "AWS", "vendor": "MSK", "arn": "arn:aws:s3:::b"}),
            "arn",
        ),
        (
            json!({"provider": "AWS", "vendor": "MSK", "region": "us-east-1",
                "arn": "arn:aws:kafka:us-east-1:1:cluster/a/b"}),
            "region",
        ),
        (
            json!({"provider": "GCP", "gcpConnectionIds": ["a", "b", "c", "d"]}),
            "gcpConnectionIds",
        ),
        (json!({"provider": "GCP", "state": "DONE"}), "state"),
        (json!({"provider": "GCP", "region": 5}), "region"),
        (
            json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1"}),
            "serviceEndpointId",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = api.create(GROUP, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer["errorCode"], "VALIDATION_ERROR", "{body}");
        let fields = answer["badRequestDetail"]["fields"].as_array().unwrap();
        assert!(
            fields
                .iter()
                .any(|f| f["field"] == field && f["description"].is_string()),
            "{body} -> {answer}"
        );
    }
    let resp = api
        .req(Method::POST, api.url(GROUP, ""))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(api.fake.counters().creates_committed, 0);
    assert!(api.fake.connections(GROUP).is_empty());
}

#[tokio::test]
async fn duplicates_conflict_by_default_and_create_in_create_mode() {
    let api = Api::start(FakeConfig::default()).await;
    assert_eq!(api.create(GROUP, &msk(1)).await.0, StatusCode::OK);
    let mut same = msk(1);
    same["provider"] = json!("AWS");
    same["vendor"] = json!("Msk");
    let (status, body) = api.create(GROUP, &same).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["errorCode"], "STREAM_PRIVATE_LINK_ALREADY_EXISTS");
    let other = "aaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        api.create(other, &msk(1)).await.0,
        StatusCode::OK,
        "other project"
    );
    assert_eq!(api.fake.counters().duplicates, 0);

    let api = Api::start(FakeConfig {
        duplicates: DuplicateMode::Create,
        ..FakeConfig::default()
    })
    .await;
    assert_eq!(api.create(GROUP, &msk(1)).await.0, StatusCode::OK);
    assert_eq!(api.create(GROUP, &same).await.0, StatusCode::OK);
    assert_eq!(api.fake.connections(GROUP).len(), 2);
    assert_eq!(api.fake.counters().duplicates, 1);
    assert_eq!(api.fake.counters().creates_committed, 2);
}

#[tokio::test]
async fn deleted_connection_does_not_block_a_new_create() {
    let api = Api::start(FakeConfig {
        delete_ms: 60_000,
        ..FakeConfig::default()
    })
    .await;
    let (_, echo) = api.create(GROUP, &msk(1)).await;
    let id = echo["_id"].as_str().unwrap();
    let resp = api
        .req(Method::DELETE, api.url(GROUP, &format!("/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(api.create(GROUP, &msk(1)).await.0, StatusCode::OK);
    assert_eq!(
        api.fake.connections(GROUP).len(),
        2,
        "the deleting one is still listed"
    );
}

#[tokio::test]
async fn patch_needs_version_2025_03_12_and_only_dns_domain() {
    let api = Api::start(FakeConfig::default()).await;
    let id = api.fake.insert(
        GROUP,
        json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.us-east-1.s3"}),
    );
    let url = api.url(GROUP, &format!("/{id}"));
    let old = api
        .req(Method::PATCH, url.clone())
        .json(&json!({"dnsDomain": "example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::NOT_ACCEPTABLE);
    let patch = |body: Value| {
        api.http
            .patch(url.clone())
            .bearer_auth(&api.token)
            .header("Accept", "application/vnd.atlas.2025-03-12+json")
            .json(&body)
            .send()
    };
    let resp = patch(json!({"region": "eu-west-1"})).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = patch(json!({"dnsDomain": "example.com"})).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["dnsDomain"], "example.com");
    // A domain is set now and the connection is DONE: no more changes.
    let resp = patch(json!({"dnsDomain": "other.com"})).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn start_refuses_a_non_loopback_address() {
    let err = FakeAtlas::start_on("0.0.0.0:0".parse().unwrap(), FakeConfig::default()).await;
    assert!(err.is_err());
}

#[tokio::test]
async fn counters_count_requests_by_operation_and_status() {
    let api = Api::start(FakeConfig::default()).await;
    api.create(GROUP, &msk(1)).await;
    api.create(GROUP, &msk(1)).await;
    api.get(GROUP, "65a1b2c3d4e5f60718293a4b").await;
    let c = api.fake.counters();
    assert_eq!(c.requests_with("create", 200), 1);
    assert_eq!(c.requests_with("create", 409), 1);
    assert_eq!(c.requests_with("get", 404), 1);
    assert_eq!(c.requests_with("token", 200), 1);
    assert_eq!(c.tokens_issued, 1);
    assert!(c.peak_concurrent >= 1);
    assert_eq!(c.peak_concurrent_by_project[GROUP], 1);
    let text = serde_json::to_string(&c).unwrap();
    assert!(text.contains("creates_committed"));
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let api = Api::start(FakeConfig::default()).await;
    let url = api.url(GROUP, "");
    assert_eq!(
        api.req(Method::GET, url.clone())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let Api { fake, http, token } = api;
    fake.shutdown().await;
    let after = http
        .get(url)
        .bearer_auth(token)
        .header("Accept", ACCEPT)
        .send()
        .await;
    assert!(after.is_err(), "{after:?}");
}

#[tokio::test]
async fn inserted_connections_are_listed_like_created_ones() {
    let api = Api::start(FakeConfig::default()).await;
    let id = api.fake.insert(GROUP, msk(9));
    let page: Value = api
        .req(Method::GET, api.url(GROUP, ""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["results"][0]["_id"], id.as_str());
    assert_eq!(page["results"][0]["provider"], "AWS");
    assert_eq!(
        api.fake.counters().creates_committed,
        0,
        "inserts are not creates"
    );
    assert_eq!(api.create(GROUP, &msk(9)).await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn aws_confluent_without_a_domain_is_accepted_and_stays_idle_until_patched() {
    // Atlas-like timings: anything else would reach DONE at once.
    let api = Api::start(FakeConfig::default()).await;
    let body = json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
        "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d4e5f60718",
        "dnsSubDomain": []});
    let (status, echo) = api.create(GROUP, &body).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let id = echo["_id"].as_str().unwrap().to_owned();
    let (_, got) = api.get(GROUP, &id).await;
    assert_eq!(got["state"], "IDLE", "{got}");
    assert!(got.get("dnsDomain").is_none());
    assert_eq!(got["dnsSubDomain"], json!([]));
    let listed = api.fake.connections(GROUP);
    assert_eq!(listed[0]["state"], "IDLE");

    let resp = api
        .http
        .patch(api.url(GROUP, &format!("/{id}")))
        .bearer_auth(&api.token)
        .header("Accept", "application/vnd.atlas.2025-03-12+json")
        .json(&json!({"dnsDomain": "abc123.us-east-1.aws.confluent.cloud"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, got) = api.get(GROUP, &id).await;
    assert_eq!(got["state"], "DONE", "{got}");
    assert_eq!(got["dnsDomain"], "abc123.us-east-1.aws.confluent.cloud");
}

#[tokio::test]
async fn aws_kinesis_needs_only_a_region() {
    let api = Api::start(FakeConfig::default()).await;
    let (status, echo) = api
        .create(
            GROUP,
            &json!({"provider": "AWS", "vendor": "KINESIS", "region": "us-east-1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    let (_, got) = api.get(GROUP, echo["_id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "DONE");
    assert_eq!(got["vendor"], "KINESIS");
    let (status, _) = api
        .create(
            GROUP,
            &json!({"provider": "AWS", "vendor": "KINESIS", "region": "us-west-2",
                "serviceEndpointId": "com.amazonaws.us-west-2.kinesis-streams"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "serviceEndpointId is accepted too");
    let (status, body) = api
        .create(GROUP, &json!({"provider": "AWS", "vendor": "KINESIS"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["badRequestDetail"]["fields"][0]["field"], "region");
}

#[tokio::test]
async fn regions_come_back_spelled_as_sent() {
    let api = Api::start(FakeConfig::default()).await;
    let spellings = ["us_east_2", "US_EAST_1", "US-WEST-2", "us-east-1"];
    let mut ids = Vec::new();
    for (n, region) in spellings.iter().enumerate() {
        let body = json!({"provider": "AWS", "vendor": "LAMBDA", "region": region,
            "serviceEndpointId": format!("com.amazonaws.{n}.lambda")});
        let (status, echo) = api.create(GROUP, &body).await;
        assert_eq!(status, StatusCode::OK, "{echo}");
        assert_eq!(echo["region"], *region);
        ids.push(echo["_id"].as_str().unwrap().to_owned());
    }
    for (id, region) in ids.iter().zip(spellings) {
        let (_, got) = api.get(GROUP, id).await;
        assert_eq!(got["region"], region, "get of {id}");
    }
    let page: Value = api
        .req(Method::GET, api.url(GROUP, ""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["region"].as_str().unwrap())
        .collect();
    assert_eq!(listed, spellings);
}

#[tokio::test]
async fn msk_without_a_scheme_reads_back_sasl_scram_and_others_drop_theirs() {
    let api = Api::start(FakeConfig::default()).await;
    let bare = json!({"provider": "AWS", "vendor": "MSK",
        "arn": "arn:aws:kafka:us-east-1:123456789012:cluster/bare/1"});
    let (status, echo) = api.create(GROUP, &bare).await;
    assert_eq!(status, StatusCode::OK);
    let id = echo["_id"].as_str().unwrap().to_owned();
    assert!(
        echo.get("authenticationScheme").is_none(),
        "the echo is the body as sent: {echo}"
    );
    let (_, got) = api.get(GROUP, &id).await;
    assert_eq!(got["authenticationScheme"], "SASL_SCRAM");
    let page: Value = api
        .req(Method::GET, api.url(GROUP, ""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["results"][0]["authenticationScheme"], "SASL_SCRAM");

    // The same connection with the default spelled out is a duplicate.
    let mut explicit = bare.clone();
    explicit["authenticationScheme"] = json!("sasl_scram");
    let (status, body) = api.create(GROUP, &explicit).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Not MSK: accepted, not stored, not returned.
    let pubsub = json!({"provider": "GCP", "vendor": "PUBSUB", "region": "us-east1",
        "authenticationScheme": "Tls"});
    let (status, echo) = api.create(GROUP, &pubsub).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(echo["authenticationScheme"], "Tls", "echo as sent");
    let (_, got) = api.get(GROUP, echo["_id"].as_str().unwrap()).await;
    assert!(got.get("authenticationScheme").is_none(), "{got}");
    let (status, _) = api
        .create(
            GROUP,
            &json!({"provider": "GCP", "vendor": "PUBSUB", "region": "us-east1",
                "authenticationScheme": "PLAIN"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown schemes are still refused"
    );
}

#[tokio::test(start_paused = true)]
async fn read_only_outputs_appear_once_done_and_stay_the_same() {
    // Hours rather than milliseconds, so the paused clock's jumps while a call is in flight (to the
    // next timer of the HTTP stack) cannot change a state; the test moves the clock itself.
    let hour = Duration::from_secs(3600);
    let api = Api::start(FakeConfig {
        idle_ms: 3_600_000,
        working_ms: 3_600_000,
        fail_when_contains: Some("doomed".into()),
        token_ttl_secs: 7 * 24 * 3600,
        ..FakeConfig::default()
    })
    .await;
    let azure = json!({"provider": "AZURE", "vendor": "EVENTHUB", "region": "eastus2",
        "dnsDomain": "ns1.servicebus.windows.net",
        "serviceEndpointId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.EventHub/namespaces/ns1"});
    let mut doomed = msk(2);
    doomed["arn"] = json!("arn:aws:kafka:us-east-1:1:cluster/doomed/1");
    let mut ids = Vec::new();
    for body in [
        msk(1),
        azure,
        json!({"provider": "GCP", "vendor": "PUBSUB", "region": "us-east1"}),
        doomed,
    ] {
        let (status, echo) = api.create(GROUP, &body).await;
        assert_eq!(status, StatusCode::OK, "{echo}");
        for key in [
            "interfaceEndpointId",
            "interfaceEndpointName",
            "providerAccountId",
        ] {
            assert!(
                echo.get(key).is_none(),
                "the echo is the body as sent: {echo}"
            );
        }
        ids.push(echo["_id"].as_str().unwrap().to_owned());
    }
    let outputs = [
        "interfaceEndpointId",
        "interfaceEndpointName",
        "providerAccountId",
    ];
    for expected in ["IDLE", "WORKING"] {
        for id in &ids {
            let (_, got) = api.get(GROUP, id).await;
            assert_eq!(got["state"], expected, "{got}");
            for key in outputs {
                assert!(got.get(key).is_none(), "{key} before DONE: {got}");
            }
        }
        tokio::time::advance(hour).await;
    }
    let (_, aws) = api.get(GROUP, &ids[0]).await;
    assert_eq!(aws["state"], "DONE");
    let endpoint = aws["interfaceEndpointId"].as_str().unwrap();
    let hex = endpoint.strip_prefix("vpce-").unwrap();
    assert!(
        hex.len() == 17
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let account = aws["providerAccountId"].as_str().unwrap();
    assert!(
        account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()),
        "{account}"
    );

    let (_, azure) = api.get(GROUP, &ids[1]).await;
    let subscription = azure["providerAccountId"].as_str().unwrap();
    assert_eq!(subscription.len(), 36, "{subscription}");
    let name = azure["interfaceEndpointName"].as_str().unwrap();
    let endpoint = azure["interfaceEndpointId"].as_str().unwrap();
    assert!(endpoint.starts_with(&format!("/subscriptions/{subscription}/resourceGroups/")));
    assert!(endpoint.ends_with(&format!(
        "/providers/Microsoft.Network/privateEndpoints/{name}"
    )));

    let (_, gcp) = api.get(GROUP, &ids[2]).await;
    assert!(
        gcp["interfaceEndpointId"]
            .as_str()
            .unwrap()
            .starts_with("vpce-")
    );
    assert!(gcp["providerAccountId"].as_str().unwrap().starts_with("p-"));

    let (_, failed) = api.get(GROUP, &ids[3]).await;
    assert_eq!(failed["state"], "FAILED");
    assert!(
        failed["errorMessage"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    for key in outputs {
        assert!(failed.get(key).is_none(), "{key} on FAILED: {failed}");
    }

    // Stable: a later read and the listing show the same values.
    tokio::time::advance(hour).await;
    let (_, again) = api.get(GROUP, &ids[0]).await;
    assert_eq!(again, aws);
    let listed = api.fake.connections(GROUP);
    assert_eq!(listed[1], azure);
}

#[tokio::test]
async fn a_pending_aws_confluent_connection_shows_its_endpoint_for_confluent() {
    let api = Api::start(FakeConfig::default()).await;
    let (_, echo) = api
        .create(
            GROUP,
            &json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
                "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d4e5f60718",
                "dnsSubDomain": []}),
        )
        .await;
    let (_, got) = api.get(GROUP, echo["_id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "IDLE");
    assert!(
        got["interfaceEndpointId"]
            .as_str()
            .unwrap()
            .starts_with("vpce-"),
        "{got}"
    );
    assert!(got["providerAccountId"].is_string());
}
