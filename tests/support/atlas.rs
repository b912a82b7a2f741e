//! The Atlas client's tests' helpers: clients against the fake, specs, a tiny stub server for answers
//! the fake never gives, and an observer that records exchanges.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atlas_linkd::atlas::{AtlasClient, ClientSettings, Credentials, Observer, Operation};
use atlas_linkd::model::{AuthScheme, GroupId, LinkSpec, Provider, Vendor};
use fake_atlas::{FakeAtlas, FakeAuth, FakeConfig};
use secrecy::SecretString;

use super::{CLIENT_ID, CLIENT_SECRET, PRIVATE_KEY, PUBLIC_KEY};

pub(crate) fn group(n: u8) -> GroupId {
    GroupId::parse(&format!("{:024x}", 0xabc0_u32 + u32::from(n))).unwrap()
}

pub(crate) fn msk(i: usize) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/c{i}/5a6b"
        )),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

pub(crate) fn sa_credentials() -> Credentials {
    Credentials::ServiceAccount {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(CLIENT_SECRET),
    }
}

pub(crate) fn key_credentials() -> Credentials {
    Credentials::ApiKey {
        public_key: PUBLIC_KEY.into(),
        private_key: SecretString::from(PRIVATE_KEY),
    }
}

pub(crate) fn sa_config() -> FakeConfig {
    FakeConfig {
        auth: FakeAuth::ServiceAccount {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
        },
        ..FakeConfig::default()
    }
}

pub(crate) fn key_config() -> FakeConfig {
    FakeConfig {
        auth: FakeAuth::ApiKey {
            public_key: PUBLIC_KEY.into(),
            private_key: PRIVATE_KEY.into(),
        },
        ..FakeConfig::default()
    }
}

pub(crate) fn client_for(
    base: &str,
    credentials: Credentials,
    observer: Option<Arc<dyn Observer>>,
) -> AtlasClient {
    let settings = ClientSettings::new(base.parse().unwrap(), Duration::from_secs(5));
    AtlasClient::new(settings, credentials, observer).unwrap()
}

pub(crate) fn client(fake: &FakeAtlas, credentials: Credentials) -> AtlasClient {
    client_for(&fake.base_url(), credentials, None)
}

/// Records every exchange the client reports.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) events: Mutex<Vec<(Operation, Option<GroupId>, String)>>,
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
pub(crate) async fn stub(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

pub(crate) const CONN_PATH: &str = "/api/atlas/v2/groups/{group}/streams/privateLinkConnections";
