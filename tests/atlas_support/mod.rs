//! Shared helpers of the `atlas_*` integration tests: clients against the fake, specs, a tiny stub
//! server for answers the fake never gives, and an observer that records exchanges.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas_linkd::atlas::{AtlasClient, ClientSettings, Credentials, Observer, Operation};
use atlas_linkd::model::{AuthScheme, GroupId, LinkSpec, Provider, Vendor};
use fake_atlas::{FakeAtlas, FakeAuth, FakeConfig};
use secrecy::SecretString;

pub const SA_ID: &str = "mdb_sa_id_0123456789abcdef01234567";
pub const SA_SECRET: &str = "mdb_sa_sk_SUPERSECRETclientsecret";
pub const PUB_KEY: &str = "pubkeyabc";
pub const PRIV_KEY: &str = "00000000-PRIVATE-KEY-SECRET-0000";

pub fn group(n: u8) -> GroupId {
    GroupId::parse(&format!("{:024x}", 0xabc0_u32 + u32::from(n))).unwrap()
}

pub fn msk(i: usize) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/c{i}/5a6b"
        )),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

pub fn sa_credentials() -> Credentials {
    Credentials::ServiceAccount {
        client_id: SA_ID.into(),
        client_secret: SecretString::from(SA_SECRET),
    }
}

pub fn key_credentials() -> Credentials {
    Credentials::ApiKey {
        public_key: PUB_KEY.into(),
        private_key: SecretString::from(PRIV_KEY),
    }
}

pub fn sa_config() -> FakeConfig {
    FakeConfig {
        auth: FakeAuth::ServiceAccount {
            client_id: SA_ID.into(),
            client_secret: SA_SECRET.into(),
        },
        ..FakeConfig::default()
    }
}

pub fn key_config() -> FakeConfig {
    FakeConfig {
        auth: FakeAuth::ApiKey {
            public_key: PUB_KEY.into(),
            private_key: PRIV_KEY.into(),
        },
        ..FakeConfig::default()
    }
}

pub fn client_for(
    base: &str,
    credentials: Credentials,
    observer: Option<Arc<dyn Observer>>,
) -> AtlasClient {
    let settings = ClientSettings::new(base.parse().unwrap(), Duration::from_secs(5));
    AtlasClient::new(settings, credentials, observer).unwrap()
}

pub fn client(fake: &FakeAtlas, credentials: Credentials) -> AtlasClient {
    client_for(&fake.base_url(), credentials, None)
}

/// Records every exchange the client reports.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<(Operation, Option<GroupId>, String)>>,
}

impl Observer for Recorder {
    fn on_response(
        &self,
        op: Operation,
        group_id: Option<&GroupId>,
        status: &str,
        _elapsed: Duration,
    ) {
        self.events
            .lock()
            .unwrap()
            .push((op, group_id.cloned(), status.to_owned()));
    }
}

/// Serves `router` on 127.0.0.1:0; returns the base URL.
pub async fn stub(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

pub const CONN_PATH: &str = "/api/atlas/v2/groups/{group}/streams/privateLinkConnections";
