//! The closed vocabularies of a link: providers, the vendors each accepts, authentication schemes,
//! and the kind of Atlas credentials (`AuthKind`).

use serde::{Deserialize, Serialize};
use std::fmt;

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

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Azure => "AZURE",
            Provider::Gcp => "GCP",
        }
    }

    /// Case-insensitive, as Atlas accepts `aws` and stores `AWS`.
    pub(crate) fn parse(s: &str) -> Option<Provider> {
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
    pub(crate) const ALL: [Vendor; 9] = [
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

    pub(crate) fn as_str(self) -> &'static str {
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
    pub(crate) fn parse(s: &str) -> Option<Vendor> {
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
    pub(crate) const ALL: [AuthScheme; 3] =
        [AuthScheme::Tls, AuthScheme::SaslScram, AuthScheme::Iam];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthScheme::Tls => "TLS",
            AuthScheme::SaslScram => "SASL_SCRAM",
            AuthScheme::Iam => "IAM",
        }
    }

    /// Case-insensitive.
    pub(crate) fn parse(s: &str) -> Option<AuthScheme> {
        AuthScheme::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}
