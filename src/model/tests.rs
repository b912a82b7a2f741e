//! The validated domain: project ids, link keys, normalised link specs, their fingerprints, and what Atlas reports.
//!
//! Pure data. Nothing here does I/O or reads a clock; `manifest` builds these values, `plan` compares them,
//! `atlas` converts them to and from the wire, and `ledger` stores them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::Arc;

/// An Atlas project id: 24 lower-case hex digits (`^[a-f0-9]{24}$`).
// Shared, not owned: every link key, ledger record and plan action names its project, and with
// 100,000 links a `String` per key cost megabytes and an allocation each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an Atlas project id: expected 24 lower-case hex digits")]
pub struct InvalidGroupId(pub String);

impl GroupId {
    pub fn parse(s: &str) -> Result<Self, InvalidGroupId> {
        let ok = s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(GroupId(Arc::from(s)))
        } else {
            Err(InvalidGroupId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupId {
    type Error = InvalidGroupId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        GroupId::parse(&s)
    }
}

impl From<GroupId> for String {
    fn from(g: GroupId) -> String {
        g.0.as_ref().to_owned()
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A link's identity: `(groupId, name)`. Names are unique within a project across all manifest files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkKey {
    pub group_id: GroupId,
    pub name: String,
}

impl LinkKey {
    pub fn new(group_id: GroupId, name: impl Into<String>) -> Self {
        LinkKey {
            group_id,
            name: name.into(),
        }
    }
}

impl fmt::Display for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group_id, self.name)
    }
}

/// Which Atlas credentials to use (`atlas.auth` in the config). Shared by `config` and `atlas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// OAuth 2.0 client credentials (`MONGODB_ATLAS_CLIENT_ID` / `MONGODB_ATLAS_CLIENT_SECRET`).
    #[default]
    ServiceAccount,
    /// Programmatic API key over HTTP Digest (`MONGODB_ATLAS_PUBLIC_API_KEY` / `MONGODB_ATLAS_PRIVATE_API_KEY`).
    ApiKey,
}

/// Where the cloud resource lives. Atlas stores these upper-cased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Provider {
    Aws,
    Azure,
    Gcp,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Aws, Provider::Azure, Provider::Gcp];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Azure => "AZURE",
            Provider::Gcp => "GCP",
        }
    }

    /// Case-insensitive, as Atlas accepts `aws` and stores `AWS`.
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// The vendors Atlas accepts for this provider, `GENERIC` (an omitted vendor) included.
    pub fn vendors(self) -> &'static [Vendor] {
        match self {
            Provider::Aws => &[
                Vendor::Generic,
                Vendor::Msk,
                Vendor::Confluent,
                Vendor::Kinesis,
                Vendor::S3,
                Vendor::Lambda,
            ],
            Provider::Azure => &[
                Vendor::Generic,
                Vendor::Eventhub,
                Vendor::Confluent,
                Vendor::AzureBlobStorage,
            ],
            Provider::Gcp => &[Vendor::Generic, Vendor::Confluent, Vendor::Pubsub],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who runs the service behind the link. An omitted vendor means `GENERIC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Vendor {
    Generic,
    Msk,
    Confluent,
    Kinesis,
    S3,
    Lambda,
    Eventhub,
    AzureBlobStorage,
    Pubsub,
}

impl Vendor {
    pub const ALL: [Vendor; 9] = [
        Vendor::Generic,
        Vendor::Msk,
        Vendor::Confluent,
        Vendor::Kinesis,
        Vendor::S3,
        Vendor::Lambda,
        Vendor::Eventhub,
        Vendor::AzureBlobStorage,
        Vendor::Pubsub,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Generic => "GENERIC",
            Vendor::Msk => "MSK",
            Vendor::Confluent => "CONFLUENT",
            Vendor::Kinesis => "KINESIS",
            Vendor::S3 => "S3",
            Vendor::Lambda => "LAMBDA",
            Vendor::Eventhub => "EVENTHUB",
            Vendor::AzureBlobStorage => "AZURE_BLOB_STORAGE",
            Vendor::Pubsub => "PUBSUB",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<Vendor> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `authenticationScheme` values Atlas accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthScheme {
    Tls,
    SaslScram,
    Iam,
}

impl AuthScheme {
    pub const ALL: [AuthScheme; 3] = [AuthScheme::Tls, AuthScheme::SaslScram, AuthScheme::Iam];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Tls => "TLS",
            AuthScheme::SaslScram => "SASL_SCRAM",
            AuthScheme::Iam => "IAM",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<AuthScheme> {
        AuthScheme::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

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

/// A stable digest of a normalised `LinkSpec`: SHA-256 of its canonical JSON.
///
/// Held as the 32 raw bytes (one per link is kept in memory, and hashed and compared when
/// planning); written as 64 lower-case hex digits everywhere it leaves the process (Display,
/// serde, the ledger).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits, as `to_hex` writes them.
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Fingerprint(out))
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        // Encoding 32 bytes into 64 cannot fail; an empty string would only hide a bug.
        match hex::encode_to_slice(self.0, &mut buf) {
            Ok(()) => f.write_str(std::str::from_utf8(&buf).unwrap_or_default()),
            Err(_) => Err(fmt::Error),
        }
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Fingerprint::from_hex(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a fingerprint: expected 64 hex digits"
            ))
        })
    }
}

fn normalise_set(list: &mut Option<Vec<String>>, lower: bool) {
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
    pub fn normalised(mut self) -> LinkSpec {
        self.dns_domain = self.dns_domain.map(|d| d.to_ascii_lowercase());
        normalise_set(&mut self.dns_sub_domain, true);
        normalise_set(&mut self.azure_resource_ids, false);
        normalise_set(&mut self.gcp_connection_ids, false);
        normalise_set(&mut self.gcp_service_attachment_uris, false);
        self
    }

    /// The JSON body of the create call. Struct field order is fixed, so this is also the canonical form.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings, enums and lists of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The digest of this spec's canonical form: the normal form, with `region` canonicalised
    /// (`canonical_region`) and `authenticationScheme` kept only where Atlas applies it and differs
    /// from its default (an MSK link without it is the same connection as one with `SASL_SCRAM`).
    /// Re-spelling a region or spelling out the default scheme is therefore not a change.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of_normal(&self.clone().normalised())
    }

    /// Whether `canonicalised` would change this (normal) spec.
    fn is_canonical(&self) -> bool {
        self.region
            .as_deref()
            .is_none_or(|r| matches!(canonical_region(r), Cow::Borrowed(_)))
            && self.canonical_scheme() == self.authentication_scheme
    }

    /// The scheme as the fingerprint records it. Atlas's default for MSK (`SASL_SCRAM`) is written
    /// as absent rather than the other way round, so the fingerprints that ledgers already hold for
    /// MSK links without the field stay valid.
    fn canonical_scheme(&self) -> Option<AuthScheme> {
        match (self.vendor, self.authentication_scheme) {
            (Vendor::Msk, Some(AuthScheme::SaslScram)) => None,
            (Vendor::Msk, scheme) => scheme,
            // Atlas ignores the field elsewhere (and `manifest` refuses it there).
            _ => None,
        }
    }

    fn canonicalised(mut self) -> LinkSpec {
        if let Some(r) = &self.region
            && let Cow::Owned(c) = canonical_region(r)
        {
            self.region = Some(c);
        }
        self.authentication_scheme = self.canonical_scheme();
        self
    }

    /// The scheme this link gets at Atlas: its own, or Atlas's default for MSK.
    fn effective_scheme(&self) -> Option<AuthScheme> {
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
    pub fn identity(&self) -> Identity {
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

/// The digest of a spec already in normal form: that of its canonical form's JSON.
fn fingerprint_of_normal(spec: &LinkSpec) -> Fingerprint {
    // Most specs are canonical already; hash them as they are rather than clone each one.
    let json = if spec.is_canonical() {
        spec.to_json()
    } else {
        spec.clone().canonicalised().to_json()
    };
    Fingerprint(Sha256::digest(json.as_bytes()).into())
}

/// A region as it is compared and fingerprinted: ASCII lower case, `_` written `-`.
///
/// Atlas echoes a region as it was sent, and MongoDB's own docs and answers spell one region
/// `us-east-1`, `us_east_1` and `US_EAST_1`: all are the same region. Lower case with `-` is the
/// cloud providers' own spelling, so most regions are canonical as written.
pub fn canonical_region(region: &str) -> Cow<'_, str> {
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
pub fn regions_equal(a: &str, b: &str) -> bool {
    let canon = |c: u8| match c {
        b'_' => b'-',
        c => c.to_ascii_lowercase(),
    };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| canon(x) == canon(y))
}

/// A writable field of a link that matching compares, known by its API name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
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
    pub const ALL: [Field; 9] = [
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

    pub fn api_name(self) -> &'static str {
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
pub fn identity_fields(provider: Provider, vendor: Vendor) -> &'static [Field] {
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
pub struct IdentityKey {
    pub provider: Provider,
    pub vendor: Vendor,
    pub field: Field,
    /// Regions as `canonical_region` writes them; every other value in ASCII lower case. Case is
    /// ignored even where the far end's own name is case-sensitive: a near-match found wrongly is
    /// reported and waits for a human, one missed is a duplicate connection billed every hour.
    pub value: String,
}

/// What identifies the far end of a link or connection: its `IdentityKey`s, sorted, no repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub keys: Vec<IdentityKey>,
}

impl Identity {
    fn of(provider: Provider, vendor: Vendor, view: View<'_>) -> Identity {
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

    /// No identity: never a near-match.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the two have a key in common.
    pub fn shares(&self, other: &Identity) -> bool {
        self.keys.iter().any(|k| other.keys.contains(k))
    }
}

/// The identity-bearing fields of a spec or a remote connection, read alike.
#[derive(Clone, Copy)]
struct View<'a> {
    region: &'a Option<String>,
    arn: &'a Option<String>,
    service_endpoint_id: &'a Option<String>,
    dns_domain: &'a Option<String>,
    dns_sub_domain: &'a Option<Vec<String>>,
    azure_resource_ids: &'a Option<Vec<String>>,
    gcp_connection_ids: &'a Option<Vec<String>>,
    gcp_service_attachment_uris: &'a Option<Vec<String>>,
}

impl<'a> View<'a> {
    fn values(&self, field: Field) -> &'a [String] {
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
    pub fn parse(s: &str) -> RemoteState {
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

    pub fn as_str(&self) -> &str {
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

    pub fn is_deleting(&self) -> bool {
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
    pub fn identity(&self) -> Identity {
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

/// Where a declared link came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Shared by every link of the file (build it with `Arc::from(path_buf)` or `.into()`).
    #[serde(serialize_with = "serialize_path")]
    pub file: Arc<Path>,
    /// 1-based line of the link in its file, where the parser knows it.
    pub line: Option<usize>,
}

fn serialize_path<S: serde::Serializer>(path: &Arc<Path>, s: S) -> Result<S::Ok, S::Error> {
    path.as_ref().serialize(s)
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.file.display(), line),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A fast, non-keyed hash (the one rustc uses) for the tables built per load and per plan: their
/// keys come from the operator's own manifests, ledger and Atlas account, so SipHash's defence
/// against crafted collisions buys nothing, and SipHash was the largest cost of the clash checks.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub(crate) type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// One declared, validated link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredLink {
    pub key: LinkKey,
    pub spec: LinkSpec,
    pub fingerprint: Fingerprint,
    pub source: Source,
}

impl DesiredLink {
    /// Builds a link from a spec, normalising it and computing its fingerprint.
    pub fn new(key: LinkKey, spec: LinkSpec, source: Source) -> DesiredLink {
        let spec = spec.normalised();
        // Already normal: rather than clone and normalise again in `fingerprint`.
        let fingerprint = fingerprint_of_normal(&spec);
        DesiredLink {
            key,
            spec,
            fingerprint,
            source,
        }
    }
}

/// The links of one project, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredProject {
    /// The optional `name` label from the manifests, for logs and reports.
    pub label: Option<String>,
    pub links: BTreeMap<String, DesiredLink>,
}

/// Everything the manifests declare, merged across files: the only input `plan` takes from YAML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredState {
    pub projects: BTreeMap<GroupId, DesiredProject>,
}

impl DesiredState {
    pub fn link_count(&self) -> usize {
        self.projects.values().map(|p| p.links.len()).sum()
    }

    pub fn links(&self) -> impl Iterator<Item = &DesiredLink> {
        self.projects.values().flat_map(|p| p.links.values())
    }

    pub fn get(&self, key: &LinkKey) -> Option<&DesiredLink> {
        self.projects.get(&key.group_id)?.links.get(&key.name)
    }

    /// Human label for a project: its manifest name if any, else its id.
    pub fn project_label(&self, group_id: &GroupId) -> String {
        self.projects
            .get(group_id)
            .and_then(|p| p.label.clone())
            .unwrap_or_else(|| group_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msk() -> LinkSpec {
        LinkSpec {
            arn: Some("arn:aws:kafka:us-east-1:123456789012:cluster/orders/5a6b".into()),
            authentication_scheme: Some(AuthScheme::Iam),
            ..LinkSpec::new(Provider::Aws, Vendor::Msk)
        }
    }

    fn remote_of(spec: &LinkSpec) -> RemoteConnection {
        RemoteConnection {
            id: "65a1b2c3d4e5f60718293a4b".into(),
            provider: Some(spec.provider.as_str().to_ascii_lowercase()),
            vendor: Some(spec.vendor.as_str().into()),
            region: Some("us-east-1".into()),
            arn: spec.arn.clone(),
            authentication_scheme: None,
            state: Some(RemoteState::Done),
            ..Default::default()
        }
    }

    #[test]
    fn group_id_accepts_only_24_lower_hex() {
        assert!(GroupId::parse("32b6e34b3d91647abb20e7b8").is_ok());
        assert!(GroupId::parse("32B6E34B3D91647ABB20E7B8").is_err());
        assert!(GroupId::parse("32b6e34b3d91647abb20e7b").is_err());
        assert!(GroupId::parse("32b6e34b3d91647abb20e7bz").is_err());
    }

    #[test]
    fn generic_vendor_is_not_sent() {
        let mut spec = msk();
        spec.vendor = Vendor::Generic;
        assert!(!spec.to_json().contains("vendor"));
        assert!(msk().to_json().contains(r#""vendor":"MSK""#));
    }

    #[test]
    fn remote_with_region_filled_in_matches() {
        let spec = msk();
        assert!(spec.matches(&remote_of(&spec)));
    }

    #[test]
    fn remote_with_other_arn_does_not_match() {
        let spec = msk();
        let mut remote = remote_of(&spec);
        remote.arn = Some("arn:aws:kafka:us-east-1:123456789012:cluster/other/1".into());
        assert!(!spec.matches(&remote));
    }

    #[test]
    fn deleting_remote_never_matches() {
        let spec = msk();
        let mut remote = remote_of(&spec);
        remote.state = Some(RemoteState::Deleting);
        assert!(!spec.matches(&remote));
    }

    #[test]
    fn omitted_remote_vendor_means_generic() {
        let mut spec = msk();
        spec.vendor = Vendor::Generic;
        let mut remote = remote_of(&spec);
        remote.vendor = None;
        assert!(spec.matches(&remote));
        spec.vendor = Vendor::Msk;
        assert!(!spec.matches(&remote));
    }

    #[test]
    fn fingerprint_is_written_as_64_hex_digits_and_read_back() {
        let fp = msk().fingerprint();
        let hex = fp.to_string();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(fp.to_hex(), hex);
        assert_eq!(fp.short(), hex[..12]);
        assert_eq!(Fingerprint::from_hex(&hex), Some(fp));
        assert_eq!(serde_json::to_string(&fp).unwrap(), format!("\"{hex}\""));
        let back: Fingerprint = serde_json::from_str(&format!("\"{hex}\"")).unwrap();
        assert_eq!(back, fp);
        assert_eq!(Fingerprint::from_hex(&hex[..63]), None);
        assert_eq!(Fingerprint::from_hex(&"zz".repeat(32)), None);
        assert!(serde_json::from_str::<Fingerprint>("\"abc\"").is_err());
    }

    #[test]
    fn desired_link_fingerprint_is_that_of_its_normal_form() {
        let mut spec = msk();
        spec.vendor = Vendor::Confluent;
        spec.dns_sub_domain = Some(vec!["B".into(), "a".into()]);
        let source = Source {
            file: Path::new("m.yaml").into(),
            line: None,
        };
        let key = LinkKey::new(GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap(), "x");
        let link = DesiredLink::new(key, spec.clone(), source);
        assert_eq!(link.fingerprint, spec.fingerprint());
        assert_eq!(link.spec, spec.normalised());
    }

    /// The connection Atlas lists for `spec`: upper-case provider and vendor, every field echoed,
    /// MSK's default scheme filled in.
    fn echo(id: &str, spec: &LinkSpec) -> RemoteConnection {
        RemoteConnection {
            id: id.into(),
            provider: Some(spec.provider.as_str().into()),
            vendor: Some(spec.vendor.as_str().into()),
            region: spec.region.clone(),
            arn: spec.arn.clone(),
            service_endpoint_id: spec.service_endpoint_id.clone(),
            dns_domain: spec.dns_domain.clone(),
            dns_sub_domain: spec.dns_sub_domain.clone(),
            azure_resource_ids: spec.azure_resource_ids.clone(),
            gcp_connection_ids: spec.gcp_connection_ids.clone(),
            gcp_service_attachment_uris: spec.gcp_service_attachment_uris.clone(),
            authentication_scheme: spec.effective_scheme().map(|a| a.as_str().into()),
            state: Some(RemoteState::Done),
            ..Default::default()
        }
    }

    fn kinesis(region: &str) -> LinkSpec {
        LinkSpec {
            region: Some(region.into()),
            ..LinkSpec::new(Provider::Aws, Vendor::Kinesis)
        }
    }

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn region_spellings_match_and_fingerprint_alike_but_are_sent_as_written() {
        let spellings = [
            "us-east-2",
            "us_east_2",
            "US_EAST_2",
            "US-EAST-2",
            "Us_East-2",
        ];
        for want in spellings {
            let spec = kinesis(want);
            for have in spellings {
                let remote = echo("r1", &kinesis(have));
                assert!(spec.matches(&remote), "{want} vs {have}");
                assert_eq!(spec.near_match(&remote), None);
                assert_eq!(spec.fingerprint(), kinesis(have).fingerprint());
            }
            assert!(!spec.matches(&echo("r1", &kinesis("us-east-1"))));
            assert!(!spec.matches(&echo("r1", &kinesis("us-east-22"))));
            assert_ne!(spec.fingerprint(), kinesis("us-east-1").fingerprint());
            // The create body is what the user wrote.
            assert!(spec.to_json().contains(&format!(r#""region":"{want}""#)));
            let link = DesiredLink::new(
                LinkKey::new(GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap(), "k"),
                spec.clone(),
                Source {
                    file: Path::new("m.yaml").into(),
                    line: None,
                },
            );
            assert_eq!(link.spec.region.as_deref(), Some(want));
            assert_eq!(link.fingerprint, kinesis("us-east-2").fingerprint());
        }
        assert_eq!(canonical_region("US_EAST_2"), "us-east-2");
        assert!(matches!(canonical_region("eastus2"), Cow::Borrowed(_)));
        assert!(regions_equal("europe_west1", "EUROPE-WEST1"));
        assert!(!regions_equal("europe-west1", "europe-west"));
    }

    #[test]
    fn fingerprints_of_canonical_specs_are_unchanged_so_ledgers_stay_valid() {
        // What the ledger already holds: the digest of the normal form's JSON.
        let plain = |spec: &LinkSpec| Fingerprint(Sha256::digest(spec.to_json().as_bytes()).into());
        let mut spec = msk();
        spec.authentication_scheme = None;
        assert_eq!(spec.fingerprint(), plain(&spec));
        let spec = kinesis("eu-west-1");
        assert_eq!(spec.fingerprint(), plain(&spec));
        assert_eq!(msk().fingerprint(), plain(&msk()));
    }

    #[test]
    fn msk_without_a_scheme_is_atlas_default_sasl_scram() {
        let mut default = msk();
        default.authentication_scheme = None;
        let scram = LinkSpec {
            authentication_scheme: Some(AuthScheme::SaslScram),
            ..default.clone()
        };
        let with = |scheme: Option<&str>| RemoteConnection {
            authentication_scheme: scheme.map(str::to_owned),
            ..echo("r1", &default)
        };
        // No scheme asked: Atlas's default, which reads now return.
        assert!(default.matches(&with(Some("SASL_SCRAM"))));
        assert!(default.matches(&with(Some("sasl_scram"))));
        assert!(!default.matches(&with(Some("IAM"))));
        assert!(!default.matches(&with(Some("TLS"))));
        // A remote that does not report a scheme matches any.
        for spec in [&default, &scram, &msk()] {
            assert!(spec.matches(&with(None)));
        }
        // IAM asked: SASL_SCRAM is another connection to the same cluster.
        assert!(msk().matches(&with(Some("IAM"))));
        assert!(!msk().matches(&with(Some("SASL_SCRAM"))));
        assert_eq!(
            msk().near_match(&with(Some("SASL_SCRAM"))),
            Some(vec!["authenticationScheme"])
        );
        // The same connection, the same fingerprint; but the body sent omits what was omitted.
        assert_eq!(default.fingerprint(), scram.fingerprint());
        assert_ne!(default.fingerprint(), msk().fingerprint());
        assert!(!default.to_json().contains("authenticationScheme"));
        assert!(
            scram
                .to_json()
                .contains(r#""authenticationScheme":"SASL_SCRAM""#)
        );
    }

    #[test]
    fn scheme_is_ignored_off_msk_as_atlas_ignores_it() {
        let spec = kinesis("us-east-1");
        let remote = RemoteConnection {
            authentication_scheme: Some("IAM".into()),
            ..echo("r1", &spec)
        };
        assert!(spec.matches(&remote));
        let with_scheme = LinkSpec {
            authentication_scheme: Some(AuthScheme::Tls),
            ..spec.clone()
        };
        assert!(with_scheme.matches(&remote));
        assert_eq!(with_scheme.fingerprint(), spec.fingerprint());
    }

    /// One row of the identity table: a spec, a remote sharing its identity but differing in
    /// `fields`, and a remote with another identity (and the same difference).
    struct Row {
        spec: LinkSpec,
        differ: fn(&mut RemoteConnection),
        fields: &'static [&'static str],
        other_identity: fn(&mut RemoteConnection),
    }

    fn rows() -> Vec<Row> {
        let aws = |vendor, region: &str, endpoint: &str| LinkSpec {
            region: Some(region.into()),
            service_endpoint_id: Some(endpoint.into()),
            ..LinkSpec::new(Provider::Aws, vendor)
        };
        let azure = |vendor, endpoint: &str| LinkSpec {
            region: Some("eastus2".into()),
            dns_domain: Some("ns.servicebus.windows.net".into()),
            service_endpoint_id: Some(endpoint.into()),
            ..LinkSpec::new(Provider::Azure, vendor)
        };
        vec![
            Row {
                spec: msk(),
                differ: |r| r.authentication_scheme = Some("TLS".into()),
                fields: &["authenticationScheme"],
                other_identity: |r| {
                    r.arn = Some("arn:aws:kafka:us-east-1:1:cluster/other/1".into())
                },
            },
            Row {
                spec: LinkSpec {
                    dns_domain: Some("use1.abc.confluent.cloud".into()),
                    dns_sub_domain: strings(&["use1-az1"]),
                    ..aws(
                        Vendor::Confluent,
                        "us-east-1",
                        "com.amazonaws.vpce.us-east-1.vpce-svc-1",
                    )
                },
                differ: |r| r.dns_domain = Some("use1.xyz.confluent.cloud".into()),
                fields: &["dnsDomain"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("com.amazonaws.vpce.us-east-1.vpce-svc-2".into())
                },
            },
            Row {
                spec: aws(Vendor::S3, "us-east-1", "com.amazonaws.us-east-1.s3"),
                differ: |r| r.region = Some("us-west-2".into()),
                fields: &["region"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("com.amazonaws.us-west-2.s3".into())
                },
            },
            Row {
                spec: aws(
                    Vendor::Lambda,
                    "us-east-1",
                    "com.amazonaws.us-east-1.lambda",
                ),
                differ: |r| r.region = Some("us-west-2".into()),
                fields: &["region"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("com.amazonaws.us-west-2.lambda".into())
                },
            },
            Row {
                spec: aws(
                    Vendor::Kinesis,
                    "us-east-1",
                    "com.amazonaws.us-east-1.kinesis-streams",
                ),
                // The region as another tool spelled it: still the same identity.
                differ: |r| {
                    r.region = Some("US_EAST_1".into());
                    r.service_endpoint_id = None;
                },
                fields: &["serviceEndpointId"],
                other_identity: |r| r.region = Some("eu-west-1".into()),
            },
            Row {
                spec: azure(Vendor::Eventhub, "/subscriptions/s/namespaces/ns"),
                differ: |r| r.region = Some("westus".into()),
                fields: &["region"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("/subscriptions/s/namespaces/other".into())
                },
            },
            Row {
                spec: azure(
                    Vendor::AzureBlobStorage,
                    "/subscriptions/s/storageAccounts/lake",
                ),
                differ: |r| r.dns_domain = Some("other.blob.core.windows.net".into()),
                fields: &["dnsDomain"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("/subscriptions/s/storageAccounts/other".into())
                },
            },
            Row {
                spec: LinkSpec {
                    region: Some("eastus2".into()),
                    dns_domain: Some("eastus2.az1.confluent.cloud".into()),
                    azure_resource_ids: strings(&["/pls/a", "/pls/b"]),
                    ..LinkSpec::new(Provider::Azure, Vendor::Confluent)
                },
                // Shares `/pls/a` and the domain (spelled in upper case).
                differ: |r| {
                    r.dns_domain = Some("EASTUS2.AZ1.CONFLUENT.CLOUD".into());
                    r.azure_resource_ids = strings(&["/pls/a", "/pls/c"]);
                },
                fields: &["azureResourceIds"],
                other_identity: |r| {
                    r.dns_domain = Some("eastus2.az9.confluent.cloud".into());
                    r.azure_resource_ids = strings(&["/pls/c"]);
                },
            },
            Row {
                spec: LinkSpec {
                    region: Some("us-central1".into()),
                    dns_domain: Some("usc1.gcp1.confluent.cloud".into()),
                    gcp_service_attachment_uris: strings(&["u/a", "u/b", "u/c"]),
                    ..LinkSpec::new(Provider::Gcp, Vendor::Confluent)
                },
                // One URI in common is enough, whatever the domain.
                differ: |r| {
                    r.dns_domain = Some("usc1.gcp2.confluent.cloud".into());
                    r.gcp_service_attachment_uris = strings(&["u/c", "u/d", "u/e"]);
                },
                fields: &["dnsDomain", "gcpServiceAttachmentUris"],
                other_identity: |r| {
                    r.dns_domain = Some("usc1.gcp2.confluent.cloud".into());
                    r.gcp_service_attachment_uris = strings(&["u/d"]);
                },
            },
            Row {
                spec: LinkSpec {
                    region: Some("us-central1".into()),
                    dns_domain: Some("usc1.gcp1.confluent.cloud".into()),
                    gcp_service_attachment_uris: strings(&["u/a"]),
                    ..LinkSpec::new(Provider::Gcp, Vendor::Confluent)
                },
                // No URI in common, but the domain.
                differ: |r| r.gcp_service_attachment_uris = strings(&["u/z"]),
                fields: &["gcpServiceAttachmentUris"],
                other_identity: |r| r.dns_domain = Some("usc1.gcp9.confluent.cloud".into()),
            },
            Row {
                spec: LinkSpec {
                    region: Some("europe-west1".into()),
                    gcp_connection_ids: strings(&["1"]),
                    ..LinkSpec::new(Provider::Gcp, Vendor::Pubsub)
                },
                differ: |r| r.gcp_connection_ids = strings(&["2"]),
                fields: &["gcpConnectionIds"],
                other_identity: |r| r.region = Some("europe-west4".into()),
            },
            Row {
                spec: aws(
                    Vendor::Generic,
                    "us-east-1",
                    "com.amazonaws.vpce.us-east-1.vpce-svc-9",
                ),
                // An omitted vendor is GENERIC.
                differ: |r| {
                    r.vendor = None;
                    r.region = Some("us-east-2".into());
                },
                fields: &["region"],
                other_identity: |r| {
                    r.service_endpoint_id = Some("com.amazonaws.vpce.us-east-1.vpce-svc-8".into())
                },
            },
        ]
    }

    #[test]
    fn near_match_per_provider_and_vendor() {
        for row in rows() {
            let what = format!("{} {}", row.spec.provider, row.spec.vendor);
            let spec = &row.spec;
            assert!(!spec.identity().is_empty(), "{what}");
            let exact = echo("r1", spec);
            assert!(spec.matches(&exact), "{what}");
            assert_eq!(
                spec.near_match(&exact),
                None,
                "{what}: a match is not a near-match"
            );

            let mut near = exact.clone();
            (row.differ)(&mut near);
            assert!(!spec.matches(&near), "{what}");
            assert_eq!(spec.near_match(&near), Some(row.fields.to_vec()), "{what}");
            // Atlas's case for provider and vendor does not matter.
            near.provider = near.provider.map(|p| p.to_ascii_lowercase());
            near.vendor = near.vendor.map(|v| v.to_ascii_lowercase());
            assert_eq!(spec.near_match(&near), Some(row.fields.to_vec()), "{what}");

            let mut other = near.clone();
            (row.other_identity)(&mut other);
            assert_eq!(spec.near_match(&other), None, "{what}: another far end");

            for state in [
                RemoteState::DeleteRequested,
                RemoteState::Deleting,
                RemoteState::Deleted,
            ] {
                let deleting = RemoteConnection {
                    state: Some(state),
                    ..near.clone()
                };
                assert_eq!(spec.near_match(&deleting), None, "{what}: being deleted");
                assert!(!spec.matches(&RemoteConnection {
                    state: deleting.state.clone(),
                    ..exact.clone()
                }));
            }

            let other_vendor = Vendor::ALL
                .into_iter()
                .find(|v| *v != spec.vendor && *v != Vendor::Generic)
                .expect("there are nine vendors");
            let kind = RemoteConnection {
                vendor: Some(other_vendor.as_str().into()),
                ..near.clone()
            };
            assert_eq!(spec.near_match(&kind), None, "{what}: another vendor");
            let provider = RemoteConnection {
                provider: Some(
                    if spec.provider == Provider::Aws {
                        "GCP"
                    } else {
                        "AWS"
                    }
                    .into(),
                ),
                ..near.clone()
            };
            assert_eq!(spec.near_match(&provider), None, "{what}: another provider");
        }
    }

    #[test]
    fn every_accepted_combination_has_an_identity_and_the_table_is_covered() {
        let covered: Vec<(Provider, Vendor)> = rows()
            .iter()
            .map(|r| (r.spec.provider, r.spec.vendor))
            .collect();
        for provider in Provider::ALL {
            for &vendor in provider.vendors() {
                assert!(
                    !identity_fields(provider, vendor).is_empty(),
                    "{provider} {vendor}"
                );
                if vendor != Vendor::Generic {
                    assert!(
                        covered.contains(&(provider, vendor)),
                        "no row for {provider} {vendor}"
                    );
                }
            }
        }
    }

    #[test]
    fn generic_without_an_endpoint_has_no_identity_and_is_never_a_near_match() {
        let spec = LinkSpec {
            region: Some("us-east4".into()),
            gcp_connection_ids: strings(&["1"]),
            ..LinkSpec::new(Provider::Gcp, Vendor::Generic)
        };
        assert!(spec.identity().is_empty());
        let remote = RemoteConnection {
            gcp_connection_ids: strings(&["2"]),
            ..echo("r1", &spec)
        };
        assert!(!spec.matches(&remote));
        assert_eq!(spec.near_match(&remote), None);
        // A remote whose provider this build does not know has no identity either.
        let unknown = RemoteConnection {
            provider: Some("MARS".into()),
            ..echo("r1", &msk())
        };
        assert!(unknown.identity().is_empty());
    }

    #[test]
    fn fingerprint_ignores_list_order_and_dns_case() {
        let mut a = msk();
        a.vendor = Vendor::Confluent;
        a.dns_sub_domain = Some(vec!["use1-az1".into(), "USE1-AZ2".into()]);
        let mut b = a.clone();
        b.dns_sub_domain = Some(vec!["use1-az2".into(), "use1-az1".into()]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.dns_sub_domain = Some(vec!["use1-az3".into(), "use1-az1".into()]);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
