//! The desired state: every declared link, validated, with where it came from.

use super::fingerprint::fingerprint_of_normal;
use super::{Fingerprint, GroupId, LinkKey, LinkSpec};
use serde::Serialize;
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
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
    pub links: Links,
}

/// One project's links, in name order, each found by its name: a map from name to link that keeps
/// the name once, in the link's own key. (A `BTreeMap<String, DesiredLink>` held every name twice:
/// with 1,000,000 links, 56 MB and a million allocations.)
#[derive(Debug, Clone, Default)]
pub struct Links(BTreeSet<ByName>);

/// Equal when they hold equal links (every field, not only the names).
impl PartialEq for Links {
    fn eq(&self, other: &Links) -> bool {
        self.len() == other.len() && self.values().eq(other.values())
    }
}

impl Eq for Links {}

/// A link ordered, compared and looked up by its name alone: within a project, names are unique.
#[derive(Debug, Clone)]
struct ByName(DesiredLink);

impl PartialEq for ByName {
    fn eq(&self, other: &ByName) -> bool {
        self.0.key.name == other.0.key.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &ByName) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &ByName) -> std::cmp::Ordering {
        self.0.key.name.cmp(&other.0.key.name)
    }
}

impl Borrow<str> for ByName {
    fn borrow(&self) -> &str {
        &self.0.key.name
    }
}

impl Links {
    pub fn get(&self, name: &str) -> Option<&DesiredLink> {
        self.0.get(name).map(|l| &l.0)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The links in name order.
    pub fn values(&self) -> impl Iterator<Item = &DesiredLink> + Clone {
        self.0.iter().map(|l| &l.0)
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|l| l.0.key.name.as_str())
    }

    /// Adds `link` under its name; the link it replaces, if any.
    pub fn insert(&mut self, link: DesiredLink) -> Option<DesiredLink> {
        self.0.replace(ByName(link)).map(|l| l.0)
    }

    pub fn remove(&mut self, name: &str) -> Option<DesiredLink> {
        self.0.take(name).map(|l| l.0)
    }

    /// The links in name order, by value.
    pub fn into_values(self) -> impl Iterator<Item = DesiredLink> {
        self.0.into_iter().map(|l| l.0)
    }
}

impl FromIterator<DesiredLink> for Links {
    /// Built in one go: the tree's nodes are packed full, where inserting one by one in name order
    /// leaves them about half empty.
    fn from_iter<I: IntoIterator<Item = DesiredLink>>(links: I) -> Links {
        Links(links.into_iter().map(ByName).collect())
    }
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

    pub fn links(&self) -> impl Iterator<Item = &DesiredLink> + Clone {
        self.projects.values().flat_map(|p| p.links.values())
    }

    pub fn get(&self, key: &LinkKey) -> Option<&DesiredLink> {
        self.projects.get(&key.group_id)?.links.get(&key.name)
    }
}
