//! `LinkSpec`, the create-request body of one link, and its normal form (including how regions
//! are spelled and compared).

use super::{AuthScheme, Provider, Vendor};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The normalised create-request body of one link: what the daemon sends and what it fingerprints.
///
/// Normal form, established by `LinkSpec::normalised` (and so by `manifest`): provider, vendor and
/// authentication scheme are enums (so their case is settled); `dnsDomain` and `dnsSubDomain` are
/// lower-cased (DNS names ignore case); set-like lists (`dnsSubDomain`, `azureResourceIds`,
/// `gcpConnectionIds`, `gcpServiceAttachmentUris`) are sorted and free of repeats.
///
/// `region` keeps the user's spelling (the create sends what they wrote), and an MSK link may leave
/// `authenticationScheme` out. The fingerprint goes one step further (see `fingerprint`): it hashes
/// the region canonicalised and treats an omitted MSK scheme as Atlas's default, so two manifests
/// that Atlas would answer with the same connection produce equal fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkSpec {
    pub provider: Provider,
    /// `Generic` is never sent: Atlas documents an omitted vendor as GENERIC, not the literal value.
    #[serde(default = "generic", skip_serializing_if = "is_generic")]
    pub vendor: Vendor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_endpoint_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_sub_domain: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_resource_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_connection_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp_service_attachment_uris: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_scheme: Option<AuthScheme>,
}

fn generic() -> Vendor {
    Vendor::Generic
}

fn is_generic(v: &Vendor) -> bool {
    *v == Vendor::Generic
}

pub(super) fn normalise_set(list: &mut Option<Vec<String>>, lower: bool) {
    if let Some(items) = list {
        if lower {
            for item in items.iter_mut() {
                *item = item.to_ascii_lowercase();
            }
        }
        items.sort();
        items.dedup();
    }
}

impl LinkSpec {
    /// A spec that sets only `provider` and `vendor`; set the rest with struct update syntax.
    pub fn new(provider: Provider, vendor: Vendor) -> LinkSpec {
        LinkSpec {
            provider,
            vendor,
            region: None,
            arn: None,
            service_endpoint_id: None,
            dns_domain: None,
            dns_sub_domain: None,
            azure_resource_ids: None,
            gcp_connection_ids: None,
            gcp_service_attachment_uris: None,
            authentication_scheme: None,
        }
    }

    /// This spec in normal form (see the type's documentation). Idempotent.
    pub(crate) fn normalised(mut self) -> LinkSpec {
        self.dns_domain = self.dns_domain.map(|d| d.to_ascii_lowercase());
        normalise_set(&mut self.dns_sub_domain, true);
        normalise_set(&mut self.azure_resource_ids, false);
        normalise_set(&mut self.gcp_connection_ids, false);
        normalise_set(&mut self.gcp_service_attachment_uris, false);
        self
    }

    /// The JSON body of the create call. Struct field order is fixed, so this is also the canonical form.
    pub fn to_json(&self) -> String {
        // An empty string here would give every link the fingerprint of "" and make them all
        // clash, so a failure must not pass silently; it cannot happen for these field types.
        serde_json::to_string(self)
            .expect("a struct of strings, enums and lists of strings always serialises to JSON")
    }
}

/// A region as it is compared and fingerprinted: ASCII lower case, `_` written `-`.
///
/// Atlas echoes a region as it was sent, and MongoDB's own docs and answers spell one region
/// `us-east-1`, `us_east_1` and `US_EAST_1`: all are the same region. Lower case with `-` is the
/// cloud providers' own spelling, so most regions are canonical as written.
pub(crate) fn canonical_region(region: &str) -> Cow<'_, str> {
    if region.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
        Cow::Owned(
            region
                .bytes()
                .map(|b| match b {
                    b'_' => '-',
                    b => char::from(b.to_ascii_lowercase()),
                })
                .collect::<String>(),
        )
    } else {
        Cow::Borrowed(region)
    }
}

/// Whether two regions are the same: equal ignoring ASCII case, with `-` and `_` equal.
pub(crate) fn regions_equal(a: &str, b: &str) -> bool {
    let canon = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| canon(x) == canon(y))
}
