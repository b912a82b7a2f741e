//! `Fingerprint`: the digest of a link's canonical spec, and the canonical form it hashes.

use super::{AuthScheme, LinkSpec, Vendor, canonical_region};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// A stable digest of a normalised `LinkSpec`: SHA-256 of its canonical JSON.
///
/// Held as the 32 raw bytes (one per link is kept in memory, and hashed and compared when
/// planning); written as 64 lower-case hex digits everywhere it leaves the process (Display,
/// serde, the ledger).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub(crate) [u8; 32]);

impl Fingerprint {
    /// The 64 lower-case hex digits.
    pub(crate) fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits, as `to_hex` writes them.
    pub(crate) fn from_hex(s: &str) -> Option<Fingerprint> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Fingerprint(out))
    }

    /// The first 12 hex digits, for humans.
    pub(crate) fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf)
            .expect("32 bytes always encode into exactly 64 hex digits");
        f.write_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
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

impl LinkSpec {
    /// The digest of this spec's canonical form: the normal form, with `region` canonicalised
    /// (`canonical_region`) and `authenticationScheme` kept only where Atlas applies it and differs
    /// from its default (an MSK link without it is the same connection as one with `SASL_SCRAM`).
    /// Re-spelling a region or spelling out the default scheme is therefore not a change.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint_of_normal(&self.clone().normalised())
    }

    /// Whether `canonicalised` would change this (normal) spec.
    pub(super) fn is_canonical(&self) -> bool {
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

    pub(super) fn canonicalised(mut self) -> LinkSpec {
        if let Some(r) = &self.region
            && let Cow::Owned(c) = canonical_region(r)
        {
            self.region = Some(c);
        }
        self.authentication_scheme = self.canonical_scheme();
        self
    }
}

/// The digest of a spec already in normal form: that of its canonical form's JSON.
pub(super) fn fingerprint_of_normal(spec: &LinkSpec) -> Fingerprint {
    // Most specs are canonical already; hash them as they are rather than clone each one.
    let json = if spec.is_canonical() {
        spec.to_json()
    } else {
        spec.clone().canonicalised().to_json()
    };
    Fingerprint(Sha256::digest(json.as_bytes()).into())
}
