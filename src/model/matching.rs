//! Whether a connection Atlas reports is the one a `LinkSpec` asks for (`matches`), or points at
//! the same far end without being it (`near_match`).

use super::identity::View;
use super::regions_equal;
use super::spec::normalise_set;
use super::{AuthScheme, Field, Identity, LinkSpec, RemoteConnection, RemoteState, Vendor};

impl LinkSpec {
    /// The scheme this link gets at Atlas: its own, or Atlas's default for MSK.
    pub(super) fn effective_scheme(&self) -> Option<AuthScheme> {
        match self.vendor {
            Vendor::Msk => Some(self.authentication_scheme.unwrap_or(AuthScheme::SaslScram)),
            _ => None,
        }
    }

    /// Whether a connection Atlas reports is the one this spec asks for.
    ///
    /// Compares the fields this spec sets (Atlas fills in others, such as `region` for MSK), with
    /// the normalisation the spec itself uses, regions as `regions_equal` compares them, and
    /// provider and vendor ignoring case (a remote without `vendor` is `GENERIC`). A remote that
    /// lacks a field the spec sets does not match, except `authenticationScheme`: a remote without
    /// it matches any scheme. On MSK an omitted scheme is Atlas's default, `SASL_SCRAM`, which is
    /// what Atlas reports back; on other vendors Atlas ignores the field, and so does this.
    /// Connections that are being deleted never match: they are on their way out.
    pub fn matches(&self, remote: &RemoteConnection) -> bool {
        self.same_kind(remote) && Field::ALL.into_iter().all(|f| self.agrees(remote, f))
    }

    /// The fields (by their API names) in which `remote` differs from this spec, when `remote` is
    /// a near-match: not being deleted, of the same provider and vendor, sharing this spec's
    /// identity (`LinkSpec::identity`: the far end it points at), and yet not a match. `None`
    /// otherwise, a match included.
    ///
    /// A near-match is most likely this link's own connection, made by hand or by an earlier
    /// manifest: creating beside it would duplicate the far end, and adopting it would record a
    /// connection that is not what the manifest says.
    pub fn near_match(&self, remote: &RemoteConnection) -> Option<Vec<&'static str>> {
        if !self.same_kind(remote) || !self.identity().shares(&remote.identity()) {
            return None;
        }
        let differ: Vec<&'static str> = Field::ALL
            .into_iter()
            .filter(|&f| !self.agrees(remote, f))
            .map(Field::api_name)
            .collect();
        (!differ.is_empty()).then_some(differ)
    }

    /// What identifies the far end of this link: the values of `identity_fields` that it sets,
    /// canonicalised. Empty for a link that sets none of them (a `GENERIC` link without
    /// `serviceEndpointId`, say): such a link is never a near-match.
    pub(crate) fn identity(&self) -> Identity {
        Identity::of(self.provider, self.vendor, self.view())
    }

    /// Not being deleted, same provider and vendor (ignoring case; no vendor is `GENERIC`).
    fn same_kind(&self, remote: &RemoteConnection) -> bool {
        if remote.state.as_ref().is_some_and(RemoteState::is_deleting) {
            return false;
        }
        let provider_ok = remote
            .provider
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(self.provider.as_str()));
        // A create response echoes the body as sent, so an omitted vendor comes back absent.
        let vendor_ok = remote
            .vendor
            .as_deref()
            .unwrap_or("GENERIC")
            .eq_ignore_ascii_case(self.vendor.as_str());
        provider_ok && vendor_ok
    }

    /// Whether `remote` agrees with this spec on one field (see `matches`).
    fn agrees(&self, remote: &RemoteConnection, field: Field) -> bool {
        match field {
            Field::Region => field_matches(&self.region, &remote.region, regions_equal),
            Field::Arn => field_matches(&self.arn, &remote.arn, |a, b| a == b),
            Field::ServiceEndpointId => field_matches(
                &self.service_endpoint_id,
                &remote.service_endpoint_id,
                |a, b| a == b,
            ),
            Field::DnsDomain => field_matches(&self.dns_domain, &remote.dns_domain, |a, b| {
                a.eq_ignore_ascii_case(b)
            }),
            Field::DnsSubDomain => set_matches(&self.dns_sub_domain, &remote.dns_sub_domain, true),
            Field::AzureResourceIds => {
                set_matches(&self.azure_resource_ids, &remote.azure_resource_ids, false)
            }
            Field::GcpConnectionIds => {
                set_matches(&self.gcp_connection_ids, &remote.gcp_connection_ids, false)
            }
            Field::GcpServiceAttachmentUris => set_matches(
                &self.gcp_service_attachment_uris,
                &remote.gcp_service_attachment_uris,
                false,
            ),
            Field::AuthenticationScheme => {
                match (
                    self.effective_scheme(),
                    remote.authentication_scheme.as_deref(),
                ) {
                    (Some(want), Some(have)) => want.as_str().eq_ignore_ascii_case(have),
                    // Not MSK (Atlas ignores the field), or a remote that does not report it.
                    _ => true,
                }
            }
        }
    }

    fn view(&self) -> View<'_> {
        View {
            region: &self.region,
            arn: &self.arn,
            service_endpoint_id: &self.service_endpoint_id,
            dns_domain: &self.dns_domain,
            dns_sub_domain: &self.dns_sub_domain,
            azure_resource_ids: &self.azure_resource_ids,
            gcp_connection_ids: &self.gcp_connection_ids,
            gcp_service_attachment_uris: &self.gcp_service_attachment_uris,
        }
    }
}

fn field_matches(
    want: &Option<String>,
    have: &Option<String>,
    eq: impl Fn(&str, &str) -> bool,
) -> bool {
    match (want, have) {
        (None, _) => true,
        (Some(w), Some(h)) => eq(w, h),
        (Some(_), None) => false,
    }
}

fn set_matches(want: &Option<Vec<String>>, have: &Option<Vec<String>>, lower: bool) -> bool {
    match (want, have) {
        (None, _) => true,
        // `dnsSubDomain: []` is how a user says "no subdomains"; Atlas may drop an empty list.
        (Some(w), None) => w.is_empty(),
        (Some(w), Some(h)) => {
            let mut h = Some(h.clone());
            normalise_set(&mut h, lower);
            h.as_ref() == Some(w)
        }
    }
}
