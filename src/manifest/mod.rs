//! Manifests: finding, parsing and validating the YAML files into a `model::DesiredState`.
//!
//! The raw form of a manifest is the untyped YAML tree (`serde_yaml::Value`), walked by hand rather
//! than deserialised into typed structs: serde stops at the first error, and users need every problem
//! of every file in one run. The validated form is `FileManifest` (one file) and, once files are
//! merged, `model::DesiredState`.
//!
//! Rules beyond the Atlas reference (each is documented where it is enforced):
//! - a `GENERIC` link (no `vendor`) must set `region`: Atlas cannot place an endpoint without one;
//! - `authenticationScheme` only with MSK: Atlas ignores it elsewhere, so a link that set it could
//!   never match what Atlas returns;
//! - `arn` only with AWS, `azureResourceIds` only with AZURE, `gcpConnectionIds` and
//!   `gcpServiceAttachmentUris` only with GCP: they name resources of that cloud;
//! - a link that sets a field to `null` removes the value its project's `defaults` would give it;
//! - list items may not repeat (`dnsSubDomain` ignoring case).
//!
//! Lines: syntax and type errors carry the YAML parser's line and column. Other problems get theirs
//! from `scan`, a light, conservative scan of block-style YAML that maps paths to lines and gives up
//! (leaving the line out) on anything it does not fully understand, so a line shown is never wrong.

mod check;
mod discover;
mod events;
mod fields;
mod lines;
mod merge;
mod parse;
mod problem;
mod read;
pub mod schema;
mod set;
mod tags;
mod tree;
mod walk;

pub use discover::discover;
pub(crate) use parse::{FileManifest, LinkManifest, ProjectManifest};
pub use parse::{parse_file, parse_str};
pub use problem::{Problem, Problems};
pub use read::{DEFAULT_MANIFEST_FILE_MAX_BYTES, ReadLimits};
pub(crate) use set::{ManifestSet, Refresh, Settling};
pub(crate) use set::{Parsed, parse_with};
pub use set::{load, load_with};
pub(crate) use tree::agrees_with_serde_yaml;

#[cfg(test)]
mod tests;
