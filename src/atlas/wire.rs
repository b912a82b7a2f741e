//! Raw serde shapes of Atlas's JSON (connections, pages, error bodies, OAuth answers) and their
//! conversion to domain types. Unknown fields are ignored; every field may be absent.

use serde::Deserialize;

use super::error::{AtlasErrorBody, BadRequestDetail, FieldProblem};
use crate::model::{EndpointOutputs, RemoteConnection, RemoteState};

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireConnection {
    #[serde(rename = "_id")]
    pub(crate) id: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) vendor: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) arn: Option<String>,
    pub(crate) service_endpoint_id: Option<String>,
    pub(crate) dns_domain: Option<String>,
    pub(crate) dns_sub_domain: Option<Vec<String>>,
    pub(crate) azure_resource_ids: Option<Vec<String>>,
    pub(crate) gcp_connection_ids: Option<Vec<String>>,
    pub(crate) gcp_service_attachment_uris: Option<Vec<String>>,
    pub(crate) authentication_scheme: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error_message: Option<String>,
    pub(crate) interface_endpoint_id: Option<String>,
    pub(crate) interface_endpoint_name: Option<String>,
    pub(crate) provider_account_id: Option<String>,
}

impl WireConnection {
    /// `None` when Atlas sent no `_id`: such an object cannot be tracked.
    pub(crate) fn into_remote(self) -> Option<RemoteConnection> {
        let id = self.id.filter(|id| !id.is_empty())?;
        Some(RemoteConnection {
            id,
            provider: self.provider,
            vendor: self.vendor,
            region: self.region,
            arn: self.arn,
            service_endpoint_id: self.service_endpoint_id,
            dns_domain: self.dns_domain,
            dns_sub_domain: self.dns_sub_domain,
            azure_resource_ids: self.azure_resource_ids,
            gcp_connection_ids: self.gcp_connection_ids,
            gcp_service_attachment_uris: self.gcp_service_attachment_uris,
            authentication_scheme: self.authentication_scheme,
            state: self.state.as_deref().map(RemoteState::parse),
            error_message: self.error_message,
            outputs: EndpointOutputs {
                interface_endpoint_id: self.interface_endpoint_id,
                interface_endpoint_name: self.interface_endpoint_name,
                provider_account_id: self.provider_account_id,
            },
        })
    }
}

/// A paging link. Only `rel` is read: the pager asks for the next page by number, not by `href`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireLink {
    pub(crate) rel: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WirePage {
    pub(crate) links: Vec<WireLink>,
    pub(crate) results: Vec<WireConnection>,
    pub(crate) total_count: Option<u64>,
}

impl WirePage {
    pub(crate) fn has_next(&self) -> bool {
        self.links.iter().any(|l| {
            l.rel
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("next"))
        })
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireFieldProblem {
    pub(crate) field: Option<String>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireBadRequestDetail {
    pub(crate) fields: Vec<WireFieldProblem>,
}

/// Atlas's error body, and the OAuth endpoint's (`error` is then a string, with `error_description`).
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct WireError {
    pub(crate) error: Option<serde_json::Value>,
    pub(crate) error_code: Option<String>,
    pub(crate) detail: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) parameters: Option<Vec<serde_json::Value>>,
    pub(crate) bad_request_detail: Option<WireBadRequestDetail>,
    #[serde(rename = "error_description")]
    pub(crate) error_description: Option<String>,
}

impl WireError {
    pub(crate) fn into_body(self) -> AtlasErrorBody {
        let (error, oauth_code) = match self.error {
            Some(serde_json::Value::Number(n)) => {
                (n.as_u64().and_then(|n| u16::try_from(n).ok()), None)
            }
            Some(serde_json::Value::String(s)) => (None, Some(s)),
            _ => (None, None),
        };
        AtlasErrorBody {
            error,
            error_code: self.error_code.or(oauth_code),
            detail: self.detail.or(self.error_description),
            reason: self.reason,
            parameters: self.parameters.unwrap_or_default(),
            bad_request_detail: self.bad_request_detail.map(|d| BadRequestDetail {
                fields: d
                    .fields
                    .into_iter()
                    .map(|f| FieldProblem {
                        field: f.field.unwrap_or_default(),
                        description: f.description.unwrap_or_default(),
                    })
                    .collect(),
            }),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct WireToken {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

// Never print the token, even by accident.
impl std::fmt::Debug for WireToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_maps_id_and_state_and_ignores_unknown_fields() {
        let json = r#"{"_id":"65a1b2c3d4e5f60718293a4b","provider":"AWS","vendor":"MSK",
            "state":"WORKING","links":[{"rel":"self","href":"x"}],"somethingNew":1}"#;
        let wire: WireConnection = serde_json::from_str(json).unwrap();
        let remote = wire.into_remote().unwrap();
        assert_eq!(remote.id, "65a1b2c3d4e5f60718293a4b");
        assert_eq!(remote.state, Some(RemoteState::Working));
        assert_eq!(remote.vendor.as_deref(), Some("MSK"));
    }

    #[test]
    fn connection_without_id_is_refused() {
        let wire: WireConnection = serde_json::from_str(r#"{"provider":"AWS"}"#).unwrap();
        assert!(wire.into_remote().is_none());
    }

    #[test]
    fn oauth_error_body_maps_to_code_and_detail() {
        let json =
            r#"{"error":"invalid_client","error_description":"Invalid credentials provided."}"#;
        let body = serde_json::from_str::<WireError>(json).unwrap().into_body();
        assert_eq!(body.error_code.as_deref(), Some("invalid_client"));
        assert_eq!(
            body.detail.as_deref(),
            Some("Invalid credentials provided.")
        );
        assert_eq!(body.error, None);
    }

    #[test]
    fn atlas_error_body_keeps_fields() {
        let json = r#"{"error":400,"errorCode":"VALIDATION_ERROR","detail":"bad","reason":"Bad Request",
            "badRequestDetail":{"fields":[{"field":"arn","description":"must match ^arn:aws:kafka"}]}}"#;
        let body = serde_json::from_str::<WireError>(json).unwrap().into_body();
        assert_eq!(body.error, Some(400));
        let fields = body.bad_request_detail.unwrap().fields;
        assert_eq!(fields[0].field, "arn");
    }
}
