//! The desired state: every declared link, validated, with where it came from.

use super::fingerprint::fingerprint_of_normal;
use super::{Fingerprint, GroupId, LinkKey, LinkSpec};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

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
}
