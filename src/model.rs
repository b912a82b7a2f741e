//! The validated domain: project ids, link keys, normalised link specs, their fingerprints, and what Atlas reports.
//!
//! Pure data. Nothing here does I/O or reads a clock; `manifest` builds these values, `plan` compares them,
//! `atlas` converts them to and from the wire, and `ledger` stores them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
/// `gcpConnectionIds`, `gcpServiceAttachmentUris`) are sorted and free of repeats. Two manifests
/// that mean the same request therefore produce equal `LinkSpec`s and equal fingerprints.
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

    pub fn fingerprint(&self) -> Fingerprint {
        let canonical = self.clone().normalised().to_json();
        Fingerprint(Sha256::digest(canonical.as_bytes()).into())
    }

    /// Whether a connection Atlas reports is the one this spec asks for.
    ///
    /// Compares the fields this spec sets (Atlas fills in others, such as `region` for MSK), with the
    /// normalisation the spec itself uses. A remote that lacks a field the spec sets does not match,
    /// except `authenticationScheme`, which listings are not known to echo. Connections that are
    /// being deleted never match: they are on their way out.
    pub fn matches(&self, remote: &RemoteConnection) -> bool {
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
        let auth_ok = match (
            self.authentication_scheme,
            remote.authentication_scheme.as_deref(),
        ) {
            (Some(want), Some(have)) => want.as_str().eq_ignore_ascii_case(have),
            _ => true,
        };
        provider_ok
            && vendor_ok
            && auth_ok
            && field_matches(&self.region, &remote.region, |a, b| {
                a.eq_ignore_ascii_case(b)
            })
            && field_matches(&self.arn, &remote.arn, |a, b| a == b)
            && field_matches(
                &self.service_endpoint_id,
                &remote.service_endpoint_id,
                |a, b| a == b,
            )
            && field_matches(&self.dns_domain, &remote.dns_domain, |a, b| {
                a.eq_ignore_ascii_case(b)
            })
            && set_matches(&self.dns_sub_domain, &remote.dns_sub_domain, true)
            && set_matches(&self.azure_resource_ids, &remote.azure_resource_ids, false)
            && set_matches(&self.gcp_connection_ids, &remote.gcp_connection_ids, false)
            && set_matches(
                &self.gcp_service_attachment_uris,
                &remote.gcp_service_attachment_uris,
                false,
            )
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
        // Already normal: hash it as is, rather than clone and normalise again in `fingerprint`.
        let fingerprint = Fingerprint(Sha256::digest(spec.to_json().as_bytes()).into());
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
