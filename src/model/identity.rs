//! What identifies the far end of a link: the compared fields (`Field`), the identity fields of
//! each provider and vendor, and `Identity`, which near-matches share.

use super::{Provider, Vendor, canonical_region};
use std::fmt;

/// A writable field of a link that matching compares, known by its API name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Field {
    Region,
    Arn,
    ServiceEndpointId,
    DnsDomain,
    DnsSubDomain,
    AzureResourceIds,
    GcpConnectionIds,
    GcpServiceAttachmentUris,
    AuthenticationScheme,
}

impl Field {
    /// In the API's order, which is also the order `near_match` names them in.
    pub(crate) const ALL: [Field; 9] = [
        Field::Region,
        Field::Arn,
        Field::ServiceEndpointId,
        Field::DnsDomain,
        Field::DnsSubDomain,
        Field::AzureResourceIds,
        Field::GcpConnectionIds,
        Field::GcpServiceAttachmentUris,
        Field::AuthenticationScheme,
    ];

    pub(crate) fn api_name(self) -> &'static str {
        match self {
            Field::Region => "region",
            Field::Arn => "arn",
            Field::ServiceEndpointId => "serviceEndpointId",
            Field::DnsDomain => "dnsDomain",
            Field::DnsSubDomain => "dnsSubDomain",
            Field::AzureResourceIds => "azureResourceIds",
            Field::GcpConnectionIds => "gcpConnectionIds",
            Field::GcpServiceAttachmentUris => "gcpServiceAttachmentUris",
            Field::AuthenticationScheme => "authenticationScheme",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

/// The fields that identify the far end of a link of this provider and vendor: two connections
/// of one project that share a value of any of them point at the same thing (an MSK cluster, a
/// VPC endpoint service, a Confluent cluster, a region's Kinesis or Pub/Sub). List fields share a
/// value when any item is in common.
///
/// - AWS MSK: `arn` (the cluster).
/// - AWS CONFLUENT, S3, LAMBDA: `serviceEndpointId` (the endpoint service; S3 and LAMBDA name
///   the region's service, `com.amazonaws.<region>.s3`).
/// - AWS KINESIS: `region` (its `serviceEndpointId` is optional, so it cannot identify).
/// - AZURE EVENTHUB, AZURE_BLOB_STORAGE: `serviceEndpointId` (the namespace or storage account).
/// - AZURE CONFLUENT: `dnsDomain` or `azureResourceIds` (the cluster's domain, or its private
///   link services).
/// - GCP CONFLUENT: `gcpServiceAttachmentUris` or `dnsDomain`.
/// - GCP PUBSUB: `region`.
/// - GENERIC (any provider): `serviceEndpointId`; a GENERIC link without it has no identity.
pub(crate) fn identity_fields(provider: Provider, vendor: Vendor) -> &'static [Field] {
    match (provider, vendor) {
        (Provider::Aws, Vendor::Msk) => &[Field::Arn],
        (Provider::Aws, Vendor::Confluent | Vendor::S3 | Vendor::Lambda) => {
            &[Field::ServiceEndpointId]
        }
        (Provider::Aws, Vendor::Kinesis) => &[Field::Region],
        (Provider::Azure, Vendor::Eventhub | Vendor::AzureBlobStorage) => {
            &[Field::ServiceEndpointId]
        }
        (Provider::Azure, Vendor::Confluent) => &[Field::DnsDomain, Field::AzureResourceIds],
        (Provider::Gcp, Vendor::Confluent) => &[Field::GcpServiceAttachmentUris, Field::DnsDomain],
        (Provider::Gcp, Vendor::Pubsub) => &[Field::Region],
        (_, Vendor::Generic) => &[Field::ServiceEndpointId],
        // Combinations Atlas does not accept (`manifest` refuses them): nothing to identify.
        _ => &[],
    }
}

/// One value of an identity field, canonicalised, with the provider and vendor it belongs to (a
/// value identifies only within its own kind of link).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct IdentityKey {
    pub(crate) provider: Provider,
    pub(crate) vendor: Vendor,
    pub(crate) field: Field,
    /// Regions as `canonical_region` writes them; every other value in ASCII lower case. Case is
    /// ignored even where the far end's own name is case-sensitive: a near-match found wrongly is
    /// reported and waits for a human, one missed is a duplicate connection billed every hour.
    pub(crate) value: String,
}

/// What identifies the far end of a link or connection: its `IdentityKey`s, sorted, no repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Identity {
    pub(crate) keys: Vec<IdentityKey>,
}

impl Identity {
    pub(super) fn of(provider: Provider, vendor: Vendor, view: View<'_>) -> Identity {
        let mut keys: Vec<IdentityKey> = identity_fields(provider, vendor)
            .iter()
            .flat_map(|&field| {
                view.values(field).iter().map(move |v| IdentityKey {
                    provider,
                    vendor,
                    field,
                    value: match field {
                        Field::Region => canonical_region(v).into_owned(),
                        _ => v.to_ascii_lowercase(),
                    },
                })
            })
            .collect();
        keys.sort();
        keys.dedup();
        Identity { keys }
    }

    /// Whether the two have a key in common.
    pub(crate) fn shares(&self, other: &Identity) -> bool {
        self.keys.iter().any(|k| other.keys.contains(k))
    }
}

/// The identity-bearing fields of a spec or a remote connection, read alike.
#[derive(Clone, Copy)]
pub(super) struct View<'a> {
    pub(super) region: &'a Option<String>,
    pub(super) arn: &'a Option<String>,
    pub(super) service_endpoint_id: &'a Option<String>,
    pub(super) dns_domain: &'a Option<String>,
    pub(super) dns_sub_domain: &'a Option<Vec<String>>,
    pub(super) azure_resource_ids: &'a Option<Vec<String>>,
    pub(super) gcp_connection_ids: &'a Option<Vec<String>>,
    pub(super) gcp_service_attachment_uris: &'a Option<Vec<String>>,
}

impl<'a> View<'a> {
    pub(super) fn values(&self, field: Field) -> &'a [String] {
        match field {
            Field::Region => self.region.as_slice(),
            Field::Arn => self.arn.as_slice(),
            Field::ServiceEndpointId => self.service_endpoint_id.as_slice(),
            Field::DnsDomain => self.dns_domain.as_slice(),
            Field::DnsSubDomain => self.dns_sub_domain.as_deref().unwrap_or_default(),
            Field::AzureResourceIds => self.azure_resource_ids.as_deref().unwrap_or_default(),
            Field::GcpConnectionIds => self.gcp_connection_ids.as_deref().unwrap_or_default(),
            Field::GcpServiceAttachmentUris => self
                .gcp_service_attachment_uris
                .as_deref()
                .unwrap_or_default(),
            Field::AuthenticationScheme => &[],
        }
    }
}
