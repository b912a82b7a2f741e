//! The fake Atlas's lifecycle against the reference: PATCH of `dnsDomain` (its version, its one
//! field, the states that allow it), a pending AWS Confluent connection, read-only outputs at
//! `DONE`, chosen connections ending `FAILED` with a chosen `errorMessage`, deletes refused with
//! `STREAM_PRIVATE_LINK_IN_USE`, and the `fake-atlas` flags that set these up.

use clap::Parser;
use fake_atlas::{FakeArgs, FakeAtlas, FakeConfig};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::fake::{ACCEPT, GROUP, bearer_token};

const PATCH_ACCEPT: &str = "application/vnd.atlas.2025-03-12+json";

struct Api {
    fake: FakeAtlas,
    http: Client,
    token: String,
}

impl Api {
    async fn start(config: FakeConfig) -> Api {
        let fake = FakeAtlas::start(FakeConfig {
            // Paused-clock tests move the clock by hours: the token must outlive them.
            token_ttl_secs: 30 * 24 * 3600,
            ..config
        })
        .await
        .unwrap();
        let http = Client::new();
        let token = bearer_token(&http, &fake).await;
        Api { fake, http, token }
    }

    fn url(&self, rest: &str) -> String {
        format!(
            "{}/api/atlas/v2/groups/{GROUP}/streams/privateLinkConnections{rest}",
            self.fake.base_url()
        )
    }

    async fn call(
        &self,
        method: Method,
        rest: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, self.url(rest))
            .bearer_auth(&self.token)
            .header("Accept", accept);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, body: &Value) -> String {
        let (status, _, echo) = self.call(Method::POST, "", ACCEPT, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{echo}");
        echo["_id"].as_str().unwrap().to_owned()
    }

    async fn get(&self, id: &str) -> Value {
        let (status, _, got) = self
            .call(Method::GET, &format!("/{id}"), ACCEPT, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        got
    }

    async fn patch(&self, id: &str, accept: &str, body: &Value) -> (StatusCode, Value) {
        let (status, _, got) = self
            .call(Method::PATCH, &format!("/{id}"), accept, Some(body))
            .await;
        (status, got)
    }

    async fn delete(&self, id: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(Method::DELETE, &format!("/{id}"), ACCEPT, None)
            .await
    }
}

fn s3(n: u32) -> Value {
    json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1",
        "serviceEndpointId": format!("com.amazonaws.us-east-1.s3-{n}")})
}

fn eventhub() -> Value {
    json!({"provider": "AZURE", "vendor": "EVENTHUB", "region": "eastus2",
        "dnsDomain": "ns1.servicebus.windows.net",
        "serviceEndpointId": "/subscriptions/x/resourceGroups/y/providers/Microsoft.EventHub/namespaces/ns1"})
}

fn confluent_without_domain() -> Value {
    json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
        "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d4e5f60718",
        "dnsSubDomain": []})
}

const OUTPUTS: [&str; 3] = [
    "interfaceEndpointId",
    "interfaceEndpointName",
    "providerAccountId",
];

const HOUR: Duration = Duration::from_secs(3600);

/// Hours rather than milliseconds, so the paused clock's jumps while a call is in flight (to the
/// next timer of the HTTP stack) cannot change a state; the tests move the clock themselves.
fn slow_lifecycle() -> FakeConfig {
    FakeConfig {
        idle_ms: 3_600_000,
        working_ms: 3_600_000,
        delete_ms: 2 * 3_600_000,
        ..FakeConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn patch_takes_only_dns_domain_only_in_version_2025_03_12_and_only_while_idle_or_without_one()
{
    let api = Api::start(slow_lifecycle()).await;
    let id = api.create(&eventhub()).await;
    let change = json!({"dnsDomain": "ns2.servicebus.windows.net"});

    // The create's version, or none, is not the update's.
    for accept in [ACCEPT, "application/json"] {
        let (status, body) = api.patch(&id, accept, &change).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept}: {body}");
        assert_eq!(body["errorCode"], "INVALID_VERSION");
    }
    // Any other field is refused, even beside dnsDomain, and nothing changes.
    let (status, body) = api
        .patch(
            &id,
            PATCH_ACCEPT,
            &json!({"dnsDomain": "ns2.servicebus.windows.net", "region": "westus"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["badRequestDetail"]["fields"][0]["field"], "region");
    let (status, _) = api.patch(&id, PATCH_ACCEPT, &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        api.get(&id).await["dnsDomain"],
        "ns1.servicebus.windows.net"
    );

    // IDLE with a domain: allowed, answered with the connection in the update's content type.
    let (status, body) = api.patch(&id, PATCH_ACCEPT, &change).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["dnsDomain"], "ns2.servicebus.windows.net");
    assert_eq!(body["state"], "IDLE");
    assert_eq!(body["_id"], id.as_str());

    // WORKING, then DONE, with a domain: refused, and the domain stays.
    for state in ["WORKING", "DONE"] {
        tokio::time::advance(HOUR).await;
        assert_eq!(api.get(&id).await["state"], state);
        let (status, body) = api
            .patch(
                &id,
                PATCH_ACCEPT,
                &json!({"dnsDomain": "ns3.servicebus.windows.net"}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{state}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(state),
            "the refusal names the state: {body}"
        );
        assert_eq!(
            api.get(&id).await["dnsDomain"],
            "ns2.servicebus.windows.net"
        );
    }

    // DONE without a domain: allowed (the reference: "while no domain is set or the state is IDLE").
    let bare = api.create(&s3(1)).await;
    tokio::time::advance(2 * HOUR).await;
    assert_eq!(api.get(&bare).await["state"], "DONE");
    let (status, body) = api
        .patch(&bare, PATCH_ACCEPT, &json!({"dnsDomain": "s3.example.com"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api.get(&bare).await["dnsDomain"], "s3.example.com");

    // Unknown or deleted connections are 404.
    let (status, _) = api
        .patch("0123456789abcdef01234567", PATCH_ACCEPT, &change)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api.delete(&bare).await.0, StatusCode::ACCEPTED);
    let (status, _) = api.patch(&bare, PATCH_ACCEPT, &change).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(api.fake.counters().requests["update"][&200], 2);
}

#[tokio::test(start_paused = true)]
async fn an_aws_confluent_connection_without_a_domain_stays_pending_until_patched_then_comes_up() {
    let api = Api::start(slow_lifecycle()).await;
    let id = api.create(&confluent_without_domain()).await;
    // Days on, it is still IDLE: it waits for its domain, with the endpoint Confluent needs shown.
    tokio::time::advance(48 * HOUR).await;
    let pending = api.get(&id).await;
    assert_eq!(pending["state"], "IDLE", "{pending}");
    let endpoint = pending["interfaceEndpointId"].as_str().unwrap().to_owned();
    assert!(endpoint.starts_with("vpce-"), "{pending}");
    assert!(pending.get("dnsDomain").is_none());

    let (status, body) = api
        .patch(
            &id,
            PATCH_ACCEPT,
            &json!({"dnsDomain": "abc123.us-east-1.aws.confluent.cloud"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The domain starts its lifecycle: IDLE, WORKING, then DONE with the same endpoint.
    assert_eq!(api.get(&id).await["state"], "IDLE");
    tokio::time::advance(HOUR).await;
    assert_eq!(api.get(&id).await["state"], "WORKING");
    tokio::time::advance(HOUR).await;
    let done = api.get(&id).await;
    assert_eq!(done["state"], "DONE", "{done}");
    assert_eq!(done["interfaceEndpointId"], endpoint.as_str());
    assert_eq!(done["dnsDomain"], "abc123.us-east-1.aws.confluent.cloud");
    assert!(done["providerAccountId"].is_string());
    assert!(done.get("errorMessage").is_none());
    // A second domain is refused now: it has one and is not IDLE.
    let (status, _) = api
        .patch(
            &id,
            PATCH_ACCEPT,
            &json!({"dnsDomain": "other.confluent.cloud"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(start_paused = true)]
async fn a_chosen_connection_ends_failed_with_the_chosen_message_and_no_outputs() {
    let api = Api::start(slow_lifecycle()).await;
    let doomed = api.create(&s3(1)).await;
    let fine = api.create(&s3(2)).await;
    let message = "Endpoint service com.amazonaws.us-east-1.s3-1 rejected the connection";
    assert!(api.fake.fail(GROUP, &doomed, message));
    assert!(!api.fake.fail(GROUP, "0123456789abcdef01234567", message));
    // It goes through IDLE and WORKING like any other first, without a message.
    for state in ["IDLE", "WORKING"] {
        let got = api.get(&doomed).await;
        assert_eq!(got["state"], state);
        assert!(got.get("errorMessage").is_none(), "{got}");
        tokio::time::advance(HOUR).await;
    }
    let failed = api.get(&doomed).await;
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert_eq!(failed["errorMessage"], message);
    for key in OUTPUTS {
        assert!(failed.get(key).is_none(), "{key} on FAILED: {failed}");
    }
    let done = api.get(&fine).await;
    assert_eq!(done["state"], "DONE");
    assert!(done.get("errorMessage").is_none());
    // The listing says the same.
    let listed = api.fake.connections(GROUP);
    assert_eq!(listed[0], failed);

    // A connection already DONE fails at once when chosen.
    assert!(api.fake.fail(GROUP, &fine, "lost the endpoint"));
    let got = api.get(&fine).await;
    assert_eq!(got["state"], "FAILED");
    assert_eq!(got["errorMessage"], "lost the endpoint");
}

/// The connections of one listing page of up to 500.
async fn listed(api: &Api) -> Vec<Value> {
    let (status, _, page) = api
        .call(Method::GET, "?itemsPerPage=500", ACCEPT, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["results"].as_array().unwrap().clone()
}

/// The listing, after checking that it shows each of `ids` as a get does.
async fn agree(api: &Api, ids: &[String], what: &str) -> Vec<Value> {
    let page = listed(api).await;
    assert_eq!(page.len(), ids.len());
    for (item, id) in page.iter().zip(ids) {
        assert_eq!(item, &api.get(id).await, "{what}");
    }
    page
}

/// A listing shows each connection exactly as a get does, also once its view is cached (settled
/// connections are listed from a cache): after it settles, and after it is chosen to fail, twice.
#[tokio::test(start_paused = true)]
async fn a_listing_shows_what_a_get_shows_through_settling_and_failing() {
    let api = Api::start(slow_lifecycle()).await;
    let ids = [api.create(&s3(1)).await, api.create(&s3(2)).await];
    agree(&api, &ids, "idle").await;
    tokio::time::advance(3 * HOUR).await;
    let done = agree(&api, &ids, "done").await;
    assert_eq!(done[0]["state"], "DONE");
    // Listed again from the cache, unchanged.
    assert_eq!(agree(&api, &ids, "done again").await, done);
    assert!(api.fake.fail(GROUP, &ids[0], "first reason"));
    let failed = agree(&api, &ids, "failed").await;
    assert_eq!(failed[0]["state"], "FAILED");
    assert_eq!(failed[0]["errorMessage"], "first reason");
    assert_eq!(failed[1], done[1]);
    assert!(api.fake.fail(GROUP, &ids[0], "second reason"));
    let failed = agree(&api, &ids, "failed again").await;
    assert_eq!(failed[0]["errorMessage"], "second reason");
}

#[tokio::test]
async fn fail_when_contains_uses_the_configured_message() {
    let api = Api::start(FakeConfig {
        fail_when_contains: Some("s3-7".into()),
        fail_message: Some("VPC endpoint quota exceeded".into()),
        ..FakeConfig::default()
    })
    .await;
    let doomed = api.create(&s3(7)).await;
    let fine = api.create(&s3(8)).await;
    let got = api.get(&doomed).await;
    assert_eq!(got["state"], "FAILED");
    assert_eq!(got["errorMessage"], "VPC endpoint quota exceeded");
    assert_eq!(api.get(&fine).await["state"], "DONE");
}

#[tokio::test(start_paused = true)]
async fn a_delete_of_a_connection_in_use_is_400_stream_private_link_in_use_and_changes_nothing() {
    let api = Api::start(slow_lifecycle()).await;
    let used = api.create(&s3(1)).await;
    let free = api.create(&s3(2)).await;
    tokio::time::advance(2 * HOUR).await;
    assert!(api.fake.set_in_use(GROUP, &used, true));
    assert!(!api.fake.set_in_use(GROUP, "0123456789abcdef01234567", true));

    let (status, headers, body) = api.delete(&used).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorCode"], "STREAM_PRIVATE_LINK_IN_USE");
    assert_eq!(body["error"], 400);
    assert_eq!(
        headers.get("x-error-code").unwrap(),
        "STREAM_PRIVATE_LINK_IN_USE"
    );
    assert_eq!(
        body["detail"],
        format!("Private Link with connection ID ({used}) is in use.")
    );
    assert_eq!(api.get(&used).await["state"], "DONE");

    // Another connection of the project is deleted as usual: DELETE_REQUESTED, DELETING, then gone.
    let (status, _, body) = api.delete(&free).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({}));
    assert_eq!(api.get(&free).await["state"], "DELETE_REQUESTED");
    tokio::time::advance(HOUR).await;
    assert_eq!(api.get(&free).await["state"], "DELETING");
    tokio::time::advance(HOUR).await;
    let (status, _, _) = api
        .call(Method::GET, &format!("/{free}"), ACCEPT, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Once the stream connection is gone, the delete goes through.
    assert!(api.fake.set_in_use(GROUP, &used, false));
    assert_eq!(api.delete(&used).await.0, StatusCode::ACCEPTED);
    assert_eq!(api.get(&used).await["state"], "DELETE_REQUESTED");
    let deletes = &api.fake.counters().requests["delete"];
    assert_eq!((deletes[&400], deletes[&202]), (1, 2));
}

#[tokio::test]
async fn in_use_when_contains_marks_created_and_inserted_connections() {
    let api = Api::start(FakeConfig {
        in_use_when_contains: Some("s3-1".into()),
        ..FakeConfig::default()
    })
    .await;
    let created = api.create(&s3(1)).await;
    let inserted = api.fake.insert(GROUP, s3(10));
    let other = api.create(&s3(2)).await;
    for id in [&created, &inserted] {
        let (status, _, body) = api.delete(id).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["errorCode"], "STREAM_PRIVATE_LINK_IN_USE");
    }
    assert_eq!(api.delete(&other).await.0, StatusCode::ACCEPTED);
    // The marker can be lifted per connection, as a test that removes the stream connection would.
    assert!(api.fake.set_in_use(GROUP, &created, false));
    assert_eq!(api.delete(&created).await.0, StatusCode::ACCEPTED);
}

#[derive(Parser)]
struct FakeCommandLine {
    #[command(flatten)]
    args: FakeArgs,
}

#[tokio::test]
async fn the_command_line_sets_failures_their_message_and_deletes_in_use() {
    let parsed = FakeCommandLine::try_parse_from([
        "fake-atlas",
        "--fail-when-contains",
        "s3-3",
        "--fail-message",
        "quota exceeded",
        "--in-use-when-contains",
        "s3-4",
    ])
    .unwrap();
    let config = parsed.args.to_config().unwrap();
    assert_eq!(config.fail_when_contains.as_deref(), Some("s3-3"));
    assert_eq!(config.fail_message.as_deref(), Some("quota exceeded"));
    assert_eq!(config.in_use_when_contains.as_deref(), Some("s3-4"));
    let api = Api::start(config).await;
    let failed = api.create(&s3(3)).await;
    let used = api.create(&s3(4)).await;
    assert_eq!(api.get(&failed).await["errorMessage"], "quota exceeded");
    assert_eq!(
        api.delete(&used).await.2["errorCode"],
        "STREAM_PRIVATE_LINK_IN_USE"
    );

    // A message without a marker to use it is a mistake on the command line.
    assert!(
        FakeCommandLine::try_parse_from(["fake-atlas", "--fail-message", "x"]).is_err(),
        "--fail-message needs --fail-when-contains"
    );
}
