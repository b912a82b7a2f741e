//! What Atlas reports of a connection: its lifecycle state, its fields, and the outputs it fills in.

use super::identity::View;
use super::{Identity, Provider, Vendor};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A connection's lifecycle state as Atlas reports it. Unknown values are kept, not refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RemoteState {
    Idle,
    Working,
    Done,
    Failed,
    DeleteRequested,
    Deleting,
    Deleted,
    Other(String),
}

impl RemoteState {
    pub(crate) fn parse(s: &str) -> RemoteState {
        match s.to_ascii_uppercase().as_str() {
            "IDLE" => RemoteState::Idle,
            "WORKING" => RemoteState::Working,
            "DONE" => RemoteState::Done,
            "FAILED" => RemoteState::Failed,
            "DELETE_REQUESTED" => RemoteState::DeleteRequested,
            "DELETING" => RemoteState::Deleting,
            "DELETED" => RemoteState::Deleted,
            _ => RemoteState::Other(s.to_owned()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            RemoteState::Idle => "IDLE",
            RemoteState::Working => "WORKING",
            RemoteState::Done => "DONE",
            RemoteState::Failed => "FAILED",
            RemoteState::DeleteRequested => "DELETE_REQUESTED",
            RemoteState::Deleting => "DELETING",
            RemoteState::Deleted => "DELETED",
            RemoteState::Other(s) => s,
        }
    }

    pub(crate) fn is_deleting(&self) -> bool {
        matches!(
            self,
            RemoteState::DeleteRequested | RemoteState::Deleting | RemoteState::Deleted
        )
    }
}

impl fmt::Display for RemoteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RemoteState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RemoteState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(RemoteState::parse(&s))
    }
}

/// One connection as Atlas reports it (list, get, or the echo of a create). Every field may be absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteConnection {
    pub id: String,
    pub provider: Option<String>,
    pub vendor: Option<String>,
    pub region: Option<String>,
    pub arn: Option<String>,
    pub service_endpoint_id: Option<String>,
    pub dns_domain: Option<String>,
    pub dns_sub_domain: Option<Vec<String>>,
    pub azure_resource_ids: Option<Vec<String>>,
    pub gcp_connection_ids: Option<Vec<String>>,
    pub gcp_service_attachment_uris: Option<Vec<String>>,
    pub authentication_scheme: Option<String>,
    pub state: Option<RemoteState>,
    pub error_message: Option<String>,
    /// Read-only values Atlas fills in as the connection comes up; the next step needs them.
    #[serde(flatten)]
    pub outputs: EndpointOutputs,
}

impl RemoteConnection {
    /// What identifies the far end of this connection (see `identity_fields`). Empty when Atlas
    /// reports no provider, or a provider or vendor this build does not know.
    pub(crate) fn identity(&self) -> Identity {
        let provider = self.provider.as_deref().and_then(Provider::parse);
        let vendor = Vendor::parse(self.vendor.as_deref().unwrap_or("GENERIC"));
        match (provider, vendor) {
            (Some(p), Some(v)) => Identity::of(
                p,
                v,
                View {
                    region: &self.region,
                    arn: &self.arn,
                    service_endpoint_id: &self.service_endpoint_id,
                    dns_domain: &self.dns_domain,
                    dns_sub_domain: &self.dns_sub_domain,
                    azure_resource_ids: &self.azure_resource_ids,
                    gcp_connection_ids: &self.gcp_connection_ids,
                    gcp_service_attachment_uris: &self.gcp_service_attachment_uris,
                },
            ),
            _ => Identity::default(),
        }
    }
}

/// The read-only values Atlas fills in as a connection comes up (all absent until then): what the
/// next step needs (Confluent needs `interfaceEndpointId` to produce a domain, Azure users need
/// `interfaceEndpointName`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOutputs {
    pub interface_endpoint_id: Option<String>,
    pub interface_endpoint_name: Option<String>,
    pub provider_account_id: Option<String>,
}
