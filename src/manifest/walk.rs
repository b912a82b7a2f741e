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

use crate::model::{
    AuthScheme, DesiredLink, DesiredProject, DesiredState, Fingerprint, FxMap, FxSet, GroupId,
    LinkKey, LinkSpec, Provider, Source, Vendor,
};
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the manifests, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based.
    pub column: Option<usize>,
    /// Where in the document, e.g. `projects[0].links[3].arn`; empty for the file as a whole.
    pub path: String,
    /// The name of the link involved, if any.
    pub link: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(":")?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        if let Some(link) = &self.link {
            write!(f, " (link `{link}`)")?;
        }
        if !self.path.is_empty() || self.link.is_some() {
            f.write_str(":")?;
        }
        write!(f, " {}", self.message)
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The validated content of one manifest file: the projects of all its documents, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileManifest {
    pub file: PathBuf,
    pub projects: Vec<ProjectManifest>,
}

/// One `projects[i]` entry of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectManifest {
    pub group_id: GroupId,
    pub label: Option<String>,
    /// 0-based index of the YAML document in the file.
    pub document: usize,
    /// Index in the document's `projects` list.
    pub index: usize,
    pub line: Option<usize>,
    pub links: Vec<LinkManifest>,
}

impl ProjectManifest {
    pub fn path(&self) -> String {
        format!("projects[{}]", self.index)
    }
}

/// One validated link with its position in its project entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkManifest {
    /// Index in the project entry's `links` list.
    pub index: usize,
    pub link: DesiredLink,
}

// ---------------------------------------------------------------------------------------------
// Discovery

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn file_problem(file: &Path, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        line: None,
        column: None,
        path: String::new(),
        link: None,
        message,
    }
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(file_problem(
                dir,
                format!("cannot list this manifest directory: {e}; check its permissions"),
            ));
            return;
        }
    };
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                problems.push(file_problem(
                    dir,
                    format!("cannot list this manifest directory: {e}"),
                ));
                continue;
            }
        };
        // Editors, VCS and Kubernetes ConfigMap mounts keep their own files and dirs hidden.
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            walk_dir(&path, out, problems);
        } else if is_yaml(&path) && path.is_file() {
            out.push(path);
        }
    }
}

/// The manifest files named by `paths`: files as given, directories searched (recursively, skipping
/// hidden entries) for `*.yaml` and `*.yml`. Sorted, without repeats. A missing path is a problem.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => walk_dir(path, &mut out, &mut problems),
            Ok(_) => out.push(path.clone()),
            Err(e) => problems.push(file_problem(
                path,
                format!(
                    "cannot read this manifest path: {e}; fix or remove it in the config's `manifests` list"
                ),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Field tables

const LINK_FIELDS: [&str; 11] = [
    "provider",
    "vendor",
    "region",
    "arn",
    "serviceEndpointId",
    "dnsDomain",
    "dnsSubDomain",
    "azureResourceIds",
    "gcpConnectionIds",
    "gcpServiceAttachmentUris",
    "authenticationScheme",
];
const F_PROVIDER: usize = 0;
const F_VENDOR: usize = 1;
const F_REGION: usize = 2;
const F_ARN: usize = 3;
const F_SERVICE_ENDPOINT_ID: usize = 4;
const F_DNS_DOMAIN: usize = 5;
const F_DNS_SUB_DOMAIN: usize = 6;
const F_AZURE_RESOURCE_IDS: usize = 7;
const F_GCP_CONNECTION_IDS: usize = 8;
const F_GCP_ATTACHMENT_URIS: usize = 9;
const F_AUTH_SCHEME: usize = 10;

fn is_list_field(i: usize) -> bool {
    (F_DNS_SUB_DOMAIN..=F_GCP_ATTACHMENT_URIS).contains(&i)
}

/// Fields Atlas reports but sets itself.
const READ_ONLY: [&str; 7] = [
    "_id",
    "state",
    "errorMessage",
    "interfaceEndpointId",
    "interfaceEndpointName",
    "providerAccountId",
    "links",
];

const TOP_KEYS: [&str; 1] = ["projects"];
const PROJECT_KEYS: [&str; 4] = ["groupId", "name", "defaults", "links"];

/// A near miss among `known`, case-only misses included.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    if let Some(k) = known.iter().find(|k| k.eq_ignore_ascii_case(key)) {
        return Some(k);
    }
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|k| {
            (
                strsim::normalized_damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

fn unknown_key_message(key: &str, known: &[&str], what: &str) -> String {
    match suggest(key, known) {
        Some(s) => format!("unknown key `{key}` in {what}: did you mean `{s}`?"),
        None => format!(
            "unknown key `{key}` in {what}: expected one of {}",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{n}`"),
        Value::String(s) => format!("a string `{s}`"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a tagged value `{}`", t.tag),
    }
}

fn key_str(k: &Value) -> Cow<'_, str> {
    match k {
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Null => Cow::Borrowed("null"),
        _ => Cow::Borrowed("<complex key>"),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation of one file

/// A problem before its line is known. `doc` selects the document for the line lookup.
struct Pending {
    doc: usize,
    path: String,
    link: Option<String>,
    message: String,
    line: Option<usize>,
    column: Option<usize>,
}

#[derive(Clone)]
enum FieldVal {
    Str(String),
    List(Vec<String>),
    /// Present but already reported as wrong: later rules leave it alone.
    Bad,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Link,
    Defaults,
}

#[derive(Clone, Default)]
struct Fields([Option<(FieldVal, Origin)>; 11]);

struct FileCtx {
    pending: Vec<Pending>,
    doc: usize,
}

impl FileCtx {
    fn problem(&mut self, path: String, link: Option<&str>, message: String) {
        self.pending.push(Pending {
            doc: self.doc,
            path,
            link: link.map(str::to_owned),
            message,
            line: None,
            column: None,
        });
    }

    /// A string field's value, type-checked: non-empty, no surrounding spaces.
    fn string(&mut self, v: &Value, path: &str, link: Option<&str>) -> Option<String> {
        match v {
            Value::String(s) if s.trim().is_empty() => {
                self.problem(
                    path.into(),
                    link,
                    "must not be empty: give a value or remove the key".into(),
                );
                None
            }
            Value::String(s) if s.trim() != s => {
                self.problem(
                    path.into(),
                    link,
                    format!("`{s}` has leading or trailing spaces: remove them"),
                );
                None
            }
            Value::String(s) => Some(s.clone()),
            other => {
                let hint = if matches!(other, Value::Number(_) | Value::Bool(_)) {
                    "; quote it if you mean it as text"
                } else {
                    ""
                };
                self.problem(
                    path.into(),
                    link,
                    format!("expected a string, found {}{hint}", describe(other)),
                );
                None
            }
        }
    }

    fn list(&mut self, field: usize, v: &Value, path: &str, link: Option<&str>) -> FieldVal {
        let Value::Sequence(items) = v else {
            let hint = match v {
                Value::String(s) => format!("; write `[{s}]` for a list of one"),
                _ => String::new(),
            };
            self.problem(
                path.into(),
                link,
                format!("expected a list of strings, found {}{hint}", describe(v)),
            );
            return FieldVal::Bad;
        };
        let mut ok = true;
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match self.string(item, &item_path, link) {
                Some(s) => {
                    // DNS names ignore case, so `dnsSubDomain` repeats do too.
                    let norm = if field == F_DNS_SUB_DOMAIN {
                        s.to_ascii_lowercase()
                    } else {
                        s.clone()
                    };
                    if let Some(first) = seen.get(&norm) {
                        self.problem(
                            item_path,
                            link,
                            format!("`{s}` repeats item {first} of the list: list each value once"),
                        );
                        ok = false;
                    } else {
                        seen.insert(norm, i);
                        out.push(s);
                    }
                }
                None => ok = false,
            }
        }
        if matches!(field, F_GCP_CONNECTION_IDS | F_GCP_ATTACHMENT_URIS) && items.len() > 3 {
            self.problem(
                path.into(),
                link,
                format!(
                    "holds {} items; Atlas accepts at most 3 `{}`",
                    items.len(),
                    LINK_FIELDS[field]
                ),
            );
            ok = false;
        }
        if ok {
            FieldVal::List(out)
        } else {
            FieldVal::Bad
        }
    }

    /// Type-checks the link fields of a mapping (a link or a project's `defaults`).
    /// Returns whether the key was a link field (handled here).
    fn field(
        &mut self,
        fields: &mut Fields,
        origin: Origin,
        key: &str,
        v: &Value,
        path: &str,
        link: Option<&str>,
    ) -> bool {
        let Some(i) = LINK_FIELDS.iter().position(|f| *f == key) else {
            return false;
        };
        if v.is_null() {
            // In a link, null removes a default; in `defaults`, it sets nothing.
            fields.0[i] = None;
            return true;
        }
        let val = if is_list_field(i) {
            self.list(i, v, path, link)
        } else {
            match self.string(v, path, link) {
                Some(s) => FieldVal::Str(s),
                None => FieldVal::Bad,
            }
        };
        fields.0[i] = Some((val, origin));
        true
    }

    fn read_only(&mut self, key: &str, path: String, link: Option<&str>) -> bool {
        if READ_ONLY.contains(&key) {
            self.problem(
                path,
                link,
                format!("`{key}` is set by Atlas and cannot be declared: remove it"),
            );
            true
        } else {
            false
        }
    }
}

fn link_name_ok(name: &str) -> bool {
    let first_ok = name
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    first_ok
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What a provider and vendor need. `GENERIC` (no vendor) is not in Atlas's table; we require
/// `region` for it on every provider, since Atlas cannot place an endpoint without one.
fn required_fields(provider: Provider, vendor: Vendor) -> &'static [usize] {
    match (provider, vendor) {
        (Provider::Aws, Vendor::Msk) => &[F_ARN],
        // No `dnsDomain`: Confluent Enterprise and Serverless clusters are created without it
        // (Confluent derives the domain from the new endpoint; it is set later with PATCH).
        (Provider::Aws, Vendor::Confluent) => &[F_REGION, F_SERVICE_ENDPOINT_ID, F_DNS_SUB_DOMAIN],
        // MongoDB's docs ask only `region` of KINESIS; its `serviceEndpointId` is accepted.
        (Provider::Aws, Vendor::Kinesis) => &[F_REGION],
        (Provider::Aws, Vendor::S3 | Vendor::Lambda) => &[F_REGION, F_SERVICE_ENDPOINT_ID],
        (Provider::Azure, Vendor::Eventhub) => &[F_REGION, F_DNS_DOMAIN, F_SERVICE_ENDPOINT_ID],
        (Provider::Azure, Vendor::Confluent) => &[F_REGION, F_DNS_DOMAIN, F_AZURE_RESOURCE_IDS],
        (Provider::Azure, Vendor::AzureBlobStorage) => {
            &[F_REGION, F_SERVICE_ENDPOINT_ID, F_DNS_DOMAIN]
        }
        (Provider::Gcp, Vendor::Confluent) => &[F_REGION, F_DNS_DOMAIN, F_GCP_ATTACHMENT_URIS],
        _ => &[F_REGION],
    }
}

/// Fields a combination must not set, with the reason.
fn forbidden_fields(provider: Provider, vendor: Vendor) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    match (provider, vendor) {
        (Provider::Aws, Vendor::Msk) => out.push((
            F_REGION,
            "Atlas derives the region of an MSK link from its `arn`",
        )),
        (Provider::Azure, Vendor::Confluent) => out.push((
            F_SERVICE_ENDPOINT_ID,
            "AZURE CONFLUENT links name their endpoints in `azureResourceIds`",
        )),
        _ => {}
    }
    if vendor != Vendor::Msk {
        out.push((
            F_AUTH_SCHEME,
            "Atlas applies `authenticationScheme` only to MSK links and ignores it on others, so this link could never match the connection Atlas returns",
        ));
    }
    if provider != Provider::Aws {
        out.push((
            F_ARN,
            "an ARN names an AWS resource; only AWS links take one",
        ));
    }
    if provider != Provider::Azure {
        out.push((
            F_AZURE_RESOURCE_IDS,
            "Azure resource ids belong only on AZURE links",
        ));
    }
    if provider != Provider::Gcp {
        out.push((F_GCP_CONNECTION_IDS, "GCP ids belong only on GCP links"));
        out.push((F_GCP_ATTACHMENT_URIS, "GCP ids belong only on GCP links"));
    }
    out
}

fn origin_note(origin: Origin) -> &'static str {
    match origin {
        Origin::Defaults => {
            " (inherited from the project's `defaults`; set it to null in the link to drop it)"
        }
        Origin::Link => "",
    }
}

/// Checks the merged fields of one link and builds its spec when they are sound.
fn check_link(
    ctx: &mut FileCtx,
    fields: &Fields,
    path: &str,
    name: Option<&str>,
) -> Option<LinkSpec> {
    let fpath = |i: usize| format!("{path}.{}", LINK_FIELDS[i]);
    let mut ok = true;
    let get_str = |i: usize| match &fields.0[i] {
        Some((FieldVal::Str(s), o)) => Some((s.as_str(), *o)),
        _ => None,
    };
    let is_bad = |i: usize| matches!(fields.0[i], Some((FieldVal::Bad, _)));
    if fields
        .0
        .iter()
        .any(|f| matches!(f, Some((FieldVal::Bad, _))))
    {
        ok = false;
    }

    let provider = match get_str(F_PROVIDER) {
        Some((s, o)) => match Provider::parse(s) {
            Some(p) => Some(p),
            None => {
                ctx.problem(
                    fpath(F_PROVIDER),
                    name,
                    format!(
                        "`{s}` is not a provider: use AWS, AZURE or GCP{}",
                        origin_note(o)
                    ),
                );
                None
            }
        },
        None if is_bad(F_PROVIDER) => None,
        None => {
            ctx.problem(
                fpath(F_PROVIDER),
                name,
                "`provider` is required: set AWS, AZURE or GCP in the link or in the project's `defaults`".into(),
            );
            None
        }
    };
    let vendor = match get_str(F_VENDOR) {
        Some((s, o)) => match (Vendor::parse(s), provider) {
            (Some(v), Some(p)) if !p.vendors().contains(&v) => {
                ctx.problem(
                    fpath(F_VENDOR),
                    name,
                    format!(
                        "`{s}` is not a vendor for {p}: use one of {} (or omit it for GENERIC){}",
                        vendor_list(p),
                        origin_note(o)
                    ),
                );
                None
            }
            (Some(v), _) => Some(v),
            (None, p) => {
                let choices = match p {
                    Some(p) => vendor_list(p),
                    None => Vendor::ALL
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                ctx.problem(
                    fpath(F_VENDOR),
                    name,
                    format!(
                        "`{s}` is not a vendor: use one of {choices}{}",
                        origin_note(o)
                    ),
                );
                None
            }
        },
        None if is_bad(F_VENDOR) => None,
        None => Some(Vendor::Generic),
    };
    let auth = match get_str(F_AUTH_SCHEME) {
        Some((s, o)) => match AuthScheme::parse(s) {
            Some(a) => Some(a),
            None => {
                ctx.problem(
                    fpath(F_AUTH_SCHEME),
                    name,
                    format!(
                        "`{s}` is not an authentication scheme: use TLS, SASL_SCRAM or IAM{}",
                        origin_note(o)
                    ),
                );
                ok = false;
                None
            }
        },
        None => None,
    };
    if let Some((arn, o)) = get_str(F_ARN)
        && !arn.starts_with("arn:aws:kafka")
    {
        ctx.problem(
            fpath(F_ARN),
            name,
            format!(
                "`{arn}` must start with `arn:aws:kafka` (the ARN of an MSK cluster){}",
                origin_note(o)
            ),
        );
        ok = false;
    }
    let (Some(provider), Some(vendor)) = (provider, vendor) else {
        return None;
    };
    for &i in required_fields(provider, vendor) {
        if fields.0[i].is_none() {
            let hint = if i == F_DNS_SUB_DOMAIN {
                " (write `dnsSubDomain: []` when the cluster has no subdomains)"
            } else {
                ""
            };
            ctx.problem(
                fpath(i),
                name,
                format!(
                    "`{}` is required for {provider} {vendor} links{hint}",
                    LINK_FIELDS[i]
                ),
            );
            ok = false;
        }
    }
    for (i, why) in forbidden_fields(provider, vendor) {
        if let Some((_, o)) = &fields.0[i] {
            ctx.problem(
                fpath(i),
                name,
                format!(
                    "`{}` must not be set on {provider} {vendor} links: {why}; remove it{}",
                    LINK_FIELDS[i],
                    origin_note(*o)
                ),
            );
            ok = false;
        }
    }
    if (provider, vendor) == (Provider::Gcp, Vendor::Confluent)
        && let Some((FieldVal::List(uris), o)) = &fields.0[F_GCP_ATTACHMENT_URIS]
        && uris.len() != 1
        && uris.len() != 3
    {
        ctx.problem(
            fpath(F_GCP_ATTACHMENT_URIS),
            name,
            format!(
                "GCP CONFLUENT takes 1 or 3 service attachment URIs (one per zone), found {}{}",
                uris.len(),
                origin_note(*o)
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    let s = |i: usize| get_str(i).map(|(s, _)| s.to_owned());
    let l = |i: usize| match &fields.0[i] {
        Some((FieldVal::List(v), _)) => Some(v.clone()),
        _ => None,
    };
    Some(LinkSpec {
        provider,
        vendor,
        region: s(F_REGION),
        arn: s(F_ARN),
        service_endpoint_id: s(F_SERVICE_ENDPOINT_ID),
        dns_domain: s(F_DNS_DOMAIN),
        dns_sub_domain: l(F_DNS_SUB_DOMAIN),
        azure_resource_ids: l(F_AZURE_RESOURCE_IDS),
        gcp_connection_ids: l(F_GCP_CONNECTION_IDS),
        gcp_service_attachment_uris: l(F_GCP_ATTACHMENT_URIS),
        authentication_scheme: auth,
    })
}

fn vendor_list(p: Provider) -> String {
    p.vendors()
        .iter()
        .filter(|v| **v != Vendor::Generic)
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn group_id_message(s: &str) -> String {
    let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
    if s.len() == 24 && hex {
        format!(
            "`{s}` has upper-case letters: Atlas project ids are lower-case hex; write `{}`",
            s.to_ascii_lowercase()
        )
    } else if !hex {
        format!(
            "`{s}` is not an Atlas project id: expected 24 lower-case hex digits (0-9, a-f), as in the project's Atlas URL"
        )
    } else {
        format!(
            "`{s}` has {} digits; an Atlas project id has 24 lower-case hex digits",
            s.len()
        )
    }
}

/// A validated project entry before line numbers are known.
struct RawProject {
    group_id: GroupId,
    label: Option<String>,
    index: usize,
    links: Vec<(usize, LinkKey, LinkSpec)>,
}

fn walk_document(ctx: &mut FileCtx, doc: &Value, out: &mut Vec<(usize, RawProject)>) {
    let map = match doc {
        Value::Null => return,
        Value::Mapping(m) => m,
        other => {
            ctx.problem(
                String::new(),
                None,
                format!(
                    "a manifest document must be a mapping with a `projects` list, found {}",
                    describe(other)
                ),
            );
            return;
        }
    };
    let mut projects = None;
    for (k, v) in map {
        let key = key_str(k);
        if key == "projects" {
            projects = Some(v);
        } else {
            let msg = unknown_key_message(&key, &TOP_KEYS, "a manifest document");
            ctx.problem(key.into_owned(), None, msg);
        }
    }
    let projects = match projects {
        None | Some(Value::Null) => return,
        Some(Value::Sequence(s)) => s,
        Some(other) => {
            ctx.problem(
                "projects".into(),
                None,
                format!("expected a list of projects, found {}", describe(other)),
            );
            return;
        }
    };
    for (pi, project) in projects.iter().enumerate() {
        if let Some(p) = walk_project(ctx, pi, project) {
            out.push((ctx.doc, p));
        }
    }
}

fn walk_project(ctx: &mut FileCtx, pi: usize, project: &Value) -> Option<RawProject> {
    let ppath = format!("projects[{pi}]");
    let Value::Mapping(map) = project else {
        ctx.problem(
            ppath,
            None,
            format!(
                "expected a project (a mapping with `groupId` and `links`), found {}",
                describe(project)
            ),
        );
        return None;
    };
    let mut ok = true;
    let mut group_id = None;
    let mut label = None;
    let mut defaults = Fields::default();
    let mut links: Option<&Value> = None;
    let mut has_group_id = false;
    for (k, v) in map {
        let key = key_str(k);
        let path = format!("{ppath}.{key}");
        match &*key {
            "groupId" => {
                has_group_id = true;
                match ctx.string(v, &path, None) {
                    Some(s) => match GroupId::parse(&s) {
                        Ok(g) => group_id = Some(g),
                        Err(_) => ctx.problem(path, None, group_id_message(&s)),
                    },
                    None => ok = false,
                }
            }
            "name" => match ctx.string(v, &path, None) {
                Some(s) => label = Some(s),
                None => ok = false,
            },
            "defaults" => match v {
                Value::Null => {}
                Value::Mapping(d) => {
                    if !walk_defaults(ctx, d, &path, &mut defaults) {
                        ok = false;
                    }
                }
                other => {
                    ctx.problem(
                        path,
                        None,
                        format!(
                            "expected a mapping of link fields, found {}",
                            describe(other)
                        ),
                    );
                    ok = false;
                }
            },
            "links" => links = Some(v),
            _ => {
                let msg = unknown_key_message(&key, &PROJECT_KEYS, "a project");
                ctx.problem(path, None, msg);
                ok = false;
            }
        }
    }
    if !has_group_id {
        ctx.problem(
            format!("{ppath}.groupId"),
            None,
            "`groupId` is required: the Atlas project id (24 lower-case hex digits)".into(),
        );
    }
    let mut out_links = Vec::new();
    match links {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (li, item) in items.iter().enumerate() {
                let lpath = format!("{ppath}.links[{li}]");
                match walk_link(ctx, item, &lpath, &defaults) {
                    Some((name, spec)) => out_links.push((li, name, spec)),
                    None => ok = false,
                }
            }
        }
        Some(other) => {
            ctx.problem(
                format!("{ppath}.links"),
                None,
                format!("expected a list of links, found {}", describe(other)),
            );
            ok = false;
        }
    }
    let group_id = group_id?;
    if !ok {
        return None;
    }
    Some(RawProject {
        links: out_links
            .into_iter()
            .map(|(li, name, spec)| (li, LinkKey::new(group_id.clone(), name), spec))
            .collect(),
        group_id,
        label,
        index: pi,
    })
}

fn walk_defaults(ctx: &mut FileCtx, map: &Mapping, path: &str, defaults: &mut Fields) -> bool {
    let before = ctx.pending.len();
    for (k, v) in map {
        let key = key_str(k);
        let fpath = format!("{path}.{key}");
        if ctx.field(defaults, Origin::Defaults, &key, v, &fpath, None) {
            continue;
        }
        if key == "name" {
            ctx.problem(
                fpath,
                None,
                "a link's `name` cannot be a default: each link names itself".into(),
            );
        } else if !ctx.read_only(&key, fpath.clone(), None) {
            let msg = unknown_key_message(&key, &LINK_FIELDS, "`defaults`");
            ctx.problem(fpath, None, msg);
        }
    }
    // Wrong defaults were reported once, here; links inheriting them stay quiet about them.
    ctx.pending.len() == before
}

fn walk_link(
    ctx: &mut FileCtx,
    link: &Value,
    path: &str,
    defaults: &Fields,
) -> Option<(String, LinkSpec)> {
    let Value::Mapping(map) = link else {
        ctx.problem(
            path.into(),
            None,
            format!(
                "expected a link (a mapping with `name`, `provider`, ...), found {}",
                describe(link)
            ),
        );
        return None;
    };
    // The name first, so every other problem of this link can say which link it is.
    let name_value = map.get("name");
    let name = match name_value {
        None | Some(Value::Null) => {
            ctx.problem(
                format!("{path}.name"),
                None,
                "`name` is required: a unique name for the link within its project".into(),
            );
            None
        }
        Some(v) => {
            let npath = format!("{path}.name");
            match ctx.string(v, &npath, None) {
                Some(n) if !link_name_ok(&n) => {
                    ctx.problem(
                        npath,
                        Some(&n),
                        "a link name starts with a letter or digit and holds at most 100 letters, digits, `-`, `_` and `.`".into(),
                    );
                    None
                }
                other => other,
            }
        }
    };
    let shown = name.as_deref().or(match name_value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    });
    let mut ok = name.is_some();
    let mut fields = defaults.clone();
    // One buffer for every field's path: most are never needed (no problem to report).
    let mut fpath = String::with_capacity(path.len() + 32);
    for (k, v) in map {
        let key = key_str(k);
        if key == "name" {
            continue;
        }
        fpath.clear();
        fpath.push_str(path);
        fpath.push('.');
        fpath.push_str(&key);
        if ctx.field(&mut fields, Origin::Link, &key, v, &fpath, shown) {
            continue;
        }
        let fpath = fpath.clone();
        ok = false;
        if !ctx.read_only(&key, fpath.clone(), shown) {
            let mut known: Vec<&str> = vec!["name"];
            known.extend(LINK_FIELDS);
            let msg = unknown_key_message(&key, &known, "a link");
            ctx.problem(fpath, shown, msg);
        }
    }
    let spec = check_link(ctx, &fields, path, shown);
    match (ok, name, spec) {
        (true, Some(name), Some(spec)) => Some((name, spec)),
        _ => None,
    }
}

/// Parses and validates one manifest file's text. Checks within the file (unique link names and
/// specs per project, one label per project) are done here too, so a file that passes can only
/// clash with others in `merge`.
pub fn parse_str(file: &Path, text: &str) -> Result<FileManifest, Problems> {
    let mut ctx = FileCtx {
        pending: Vec::new(),
        doc: 0,
    };
    let mut raw = Vec::new();
    // Each document's tree is walked and dropped before the next is parsed.
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        ctx.doc = i;
        match Value::deserialize(de) {
            Ok(doc) => walk_document(&mut ctx, &doc, &mut raw),
            Err(e) => {
                let loc = e.location();
                ctx.pending.push(Pending {
                    doc: i,
                    path: String::new(),
                    link: None,
                    message: format!("invalid YAML: {}", yaml_message(&e)),
                    line: loc.as_ref().map(|l| l.line()),
                    column: loc.as_ref().map(|l| l.column()),
                });
                // The parser cannot resynchronise after an error (and would repeat it forever).
                break;
            }
        }
    }

    let lines = LineIndex::build(text, &ctx.pending, &raw);
    let mut problems: Vec<Problem> = ctx
        .pending
        .into_iter()
        .map(|p| {
            let (line, column) = match p.line {
                Some(l) => (Some(l), p.column),
                None => lines.find(p.doc, &p.path),
            };
            Problem {
                file: file.to_path_buf(),
                line,
                column,
                path: p.path,
                link: p.link,
                message: p.message,
            }
        })
        .collect();

    let shared_file: std::sync::Arc<Path> = std::sync::Arc::from(file);
    let projects: Vec<ProjectManifest> = raw
        .into_iter()
        .map(|(doc, p)| {
            let links = p
                .links
                .into_iter()
                .map(|(li, key, spec)| {
                    let line = lines.link_line(doc, p.index, li);
                    LinkManifest {
                        index: li,
                        link: DesiredLink::new(
                            key,
                            spec,
                            Source {
                                file: shared_file.clone(),
                                line,
                            },
                        ),
                    }
                })
                .collect();
            ProjectManifest {
                line: lines.projects.get(&(doc, p.index)).copied(),
                group_id: p.group_id,
                label: p.label,
                document: doc,
                index: p.index,
                links,
            }
        })
        .collect();
    let manifest = FileManifest {
        file: file.to_path_buf(),
        projects,
    };
    problems.extend(clashes(std::iter::once(&manifest)));
    if problems.is_empty() {
        Ok(manifest)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(Problems(problems))
    }
}

/// The parser's message without its own " at line X column Y" (the problem carries those).
fn yaml_message(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Reads and parses one manifest file.
pub fn parse_file(path: &Path) -> Result<FileManifest, Problems> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(path, &text),
        Err(e) => Err(Problems(vec![file_problem(
            path,
            format!("cannot read this manifest file: {e}"),
        )])),
    }
}

fn link_path(p: &ProjectManifest, l: &LinkManifest) -> String {
    format!("projects[{}].links[{}]", p.index, l.index)
}

fn location(file: &Path, line: Option<usize>, path: &str) -> String {
    match line {
        Some(l) => format!("{}:{l} ({path})", file.display()),
        None => format!("{} ({path})", file.display()),
    }
}

/// Where a link or project entry was first seen, for clash messages.
type Seen<'a> = (&'a Path, &'a ProjectManifest, &'a LinkManifest);

/// Reports what clashes within and between files: a link name used twice in a project, two links
/// of a project asking for the same connection, a project given two different names.
///
/// Borrows everything: keys are references and paths are only formatted for a problem, so a
/// check of 100,000 links allocates little more than its hash tables.
fn clashes<'a>(files: impl IntoIterator<Item = &'a FileManifest>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut by_spec: FxMap<(&GroupId, Fingerprint), Seen<'a>> = FxMap::default();
    let mut where_named: FxMap<(&GroupId, &str), Seen<'a>> = FxMap::default();
    let mut labels: FxMap<&GroupId, (&str, &Path, &ProjectManifest)> = FxMap::default();
    for f in files {
        for p in &f.projects {
            if let Some(label) = &p.label {
                match labels.get(&p.group_id) {
                    Some((other, ofile, op)) if other != label => {
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: p.line,
                            column: None,
                            path: format!("{}.name", p.path()),
                            link: None,
                            message: format!(
                                "project {} is named `{label}` here but `{other}` at {}: use one name",
                                p.group_id,
                                location(ofile, op.line, &op.path())
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        labels.insert(&p.group_id, (label, &f.file, p));
                    }
                }
            }
            where_named.reserve(p.links.len());
            by_spec.reserve(p.links.len());
            for l in &p.links {
                let key = &l.link.key;
                let seen: Seen<'a> = (&f.file, p, l);
                match where_named.entry((&p.group_id, &key.name)) {
                    Entry::Occupied(o) => {
                        let (ofile, op, ol) = *o.get();
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: l.link.source.line,
                            column: None,
                            path: format!("{}.name", link_path(p, l)),
                            link: Some(key.name.clone()),
                            message: format!(
                                "link name used twice in project {}: also at {}; rename one",
                                p.group_id,
                                location(ofile, ol.link.source.line, &link_path(op, ol))
                            ),
                        });
                        continue;
                    }
                    Entry::Vacant(v) => {
                        v.insert(seen);
                    }
                }
                match by_spec.entry((&p.group_id, l.link.fingerprint)) {
                    Entry::Occupied(o) => {
                        let (ofile, op, ol) = *o.get();
                        problems.push(Problem {
                            file: f.file.clone(),
                            line: l.link.source.line,
                            column: None,
                            path: link_path(p, l),
                            link: Some(key.name.clone()),
                            message: format!(
                                "asks for the same connection as link `{}` at {}: Atlas would get it twice; remove one",
                                ol.link.key.name,
                                location(ofile, ol.link.source.line, &link_path(op, ol))
                            ),
                        });
                    }
                    Entry::Vacant(v) => {
                        v.insert(seen);
                    }
                }
            }
        }
    }
    problems
}

/// Moves the links of files that are known to be free of clashes into one desired state.
fn combine(files: impl IntoIterator<Item = FileManifest>) -> DesiredState {
    // Each project's map is built in one go from all its links: `BTreeMap::from_iter` packs its
    // nodes full, where inserting one by one in name order leaves them about half empty (with
    // 100,000 links, about 25 MB of the desired state's 81 MB).
    type Gathered = (Option<String>, Vec<(String, DesiredLink)>);
    let mut projects: BTreeMap<GroupId, Gathered> = BTreeMap::new();
    for f in files {
        for p in f.projects {
            let (label, links) = projects.entry(p.group_id).or_default();
            if label.is_none() {
                *label = p.label;
            }
            links.extend(
                p.links
                    .into_iter()
                    .map(|l| (l.link.key.name.clone(), l.link)),
            );
        }
    }
    DesiredState {
        projects: projects
            .into_iter()
            .map(|(group, (label, links))| {
                let links = links.into_iter().collect();
                (group, DesiredProject { label, links })
            })
            .collect(),
    }
}

/// Merges validated files into the desired state, with the checks that span files.
pub fn merge<'a>(
    files: impl IntoIterator<Item = &'a FileManifest>,
) -> Result<DesiredState, Problems> {
    let files: Vec<&FileManifest> = files.into_iter().collect();
    let problems = clashes(files.iter().copied());
    if problems.is_empty() {
        Ok(combine(files.into_iter().cloned()))
    } else {
        Err(Problems(problems))
    }
}

/// Finds, parses and merges every manifest under `paths`, reporting every problem of every file.
pub fn load(paths: &[PathBuf]) -> Result<DesiredState, Problems> {
    let files = discover(paths)?;
    let mut problems = Vec::new();
    let mut good = Vec::with_capacity(files.len());
    // One file at a time, on this thread. Parsing on two threads was no faster on the shared 2-core
    // machine (the allocator, not the parser, is the bottleneck) and each thread's malloc arena kept
    // its share of freed YAML trees interleaved with the links: 129 MB resident after loading
    // 100,000 links, against 81 MB sequentially (`cargo bench --bench load`).
    for result in files.iter().map(|f| parse_file(f)) {
        match result {
            Ok(m) => good.push(m),
            Err(Problems(p)) => problems.extend(p),
        }
    }
    // Clashes between the good files are worth reporting even when others are broken.
    problems.extend(clashes(&good));
    if problems.is_empty() {
        Ok(combine(good))
    } else {
        Err(Problems(problems))
    }
}

// ---------------------------------------------------------------------------------------------
// Lines

/// Lines (and columns) of the paths a file's problems and links need.
#[derive(Default)]
struct LineIndex {
    paths: FxMap<(usize, String), (usize, usize)>,
    links: FxMap<(usize, usize, usize), usize>,
    projects: FxMap<(usize, usize), usize>,
}

impl LineIndex {
    fn build(text: &str, pending: &[Pending], raw: &[(usize, RawProject)]) -> LineIndex {
        let mut wanted: FxSet<(usize, &str)> = FxSet::default();
        for p in pending.iter().filter(|p| p.line.is_none()) {
            // A missing field has no line of its own; its parent's line is where to add it.
            let mut path = p.path.as_str();
            loop {
                wanted.insert((p.doc, path));
                match path.rfind(['.', '[']) {
                    Some(i) => path = &path[..i],
                    None => break,
                }
            }
        }
        let mut index = LineIndex::default();
        if wanted.is_empty() && raw.is_empty() {
            return index;
        }
        let want_projects: FxSet<usize> = raw.iter().map(|(d, _)| *d).collect();
        let mut buf = String::new();
        let docs = scan(text, |doc, frames, line, col| {
            if let [
                Frame {
                    seg: Seg::Key("projects"),
                    ..
                },
                Frame {
                    seg: Seg::Index(p), ..
                },
                Frame {
                    seg: Seg::Key("links"),
                    ..
                },
                Frame {
                    seg: Seg::Index(l), ..
                },
            ] = frames
                && want_projects.contains(&doc)
            {
                index.links.insert((doc, *p, *l), line);
            }
            if let [
                Frame {
                    seg: Seg::Key("projects"),
                    ..
                },
                Frame {
                    seg: Seg::Index(p), ..
                },
            ] = frames
                && want_projects.contains(&doc)
            {
                index.projects.insert((doc, *p), line);
            }
            if wanted.is_empty() {
                return;
            }
            buf.clear();
            for (i, f) in frames.iter().enumerate() {
                match f.seg {
                    Seg::Key(k) => {
                        if i > 0 {
                            buf.push('.');
                        }
                        buf.push_str(k);
                    }
                    Seg::Index(n) => {
                        buf.push('[');
                        buf.push_str(&n.to_string());
                        buf.push(']');
                    }
                }
            }
            if wanted.contains(&(doc, buf.as_str())) {
                index.paths.entry((doc, buf.clone())).or_insert((line, col));
            }
        });
        // If the scan saw a different number of documents than the parser, its lines cannot be trusted.
        let parsed_docs = raw.iter().map(|(d, _)| d + 1).max().unwrap_or(0);
        let pending_docs = pending.iter().map(|p| p.doc + 1).max().unwrap_or(0);
        match docs {
            Some(n) if n >= parsed_docs.max(pending_docs) => index,
            _ => LineIndex::default(),
        }
    }

    fn find(&self, doc: usize, path: &str) -> (Option<usize>, Option<usize>) {
        if let Some(&(line, col)) = self.paths.get(&(doc, path.to_owned())) {
            return (Some(line), Some(col));
        }
        // A missing key has no line; its parent's (the mapping to add it to) is where the fix goes.
        // Only the immediate parent: a distant ancestor's line would mislead.
        if let Some(i) = path.rfind(['.', '['])
            && let Some(&(line, _)) = self.paths.get(&(doc, path[..i].to_owned()))
        {
            return (Some(line), None);
        }
        (None, None)
    }

    fn link_line(&self, doc: usize, project: usize, link: usize) -> Option<usize> {
        self.links.get(&(doc, project, link)).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg<'t> {
    Key(&'t str),
    Index(usize),
}

#[derive(Debug, Clone, Copy)]
struct Frame<'t> {
    col: usize,
    seg: Seg<'t>,
}

enum KeyParse<'t> {
    Key(&'t str, &'t str),
    NotKey,
    Unsupported,
}

fn parse_key(rest: &str) -> KeyParse<'_> {
    if rest.starts_with([
        '"', '\'', '?', '[', '{', '&', '*', '!', '|', '>', '%', '@', '`',
    ]) {
        // Quoted keys, flow collections, anchors and the like: leave them to the real parser.
        return match rest.find(": ") {
            Some(_) => KeyParse::Unsupported,
            None if rest.ends_with(':') => KeyParse::Unsupported,
            None => KeyParse::NotKey,
        };
    }
    let bytes = rest.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && i > 0 && bytes[i - 1] == b' ' {
            return KeyParse::NotKey;
        }
        if b == b':' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
            let key = rest[..i].trim_end();
            if key.is_empty() || key == "<<" {
                return KeyParse::Unsupported;
            }
            return KeyParse::Key(key, rest[i + 1..].trim_start());
        }
    }
    KeyParse::NotKey
}

/// Whether a scalar value on one line is complete there (no multi-line quotes, flows, or block
/// scalars), and whether it opens a block scalar.
enum ValueShape {
    Done,
    BlockScalar,
    Unsupported,
}

fn value_shape(v: &str) -> ValueShape {
    let v = v.trim();
    if v.is_empty() || v.starts_with('#') {
        return ValueShape::Done;
    }
    match v.as_bytes()[0] {
        b'|' | b'>' => ValueShape::BlockScalar,
        b'&' | b'*' | b'!' => ValueShape::Unsupported,
        b'"' => {
            let body = &v[1..];
            let mut escaped = false;
            for c in body.chars() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => return ValueShape::Done,
                    _ => escaped = false,
                }
            }
            ValueShape::Unsupported
        }
        b'\'' => {
            if v.len() >= 2 && v[1..].contains('\'') {
                ValueShape::Done
            } else {
                ValueShape::Unsupported
            }
        }
        b'[' | b'{' => {
            let mut depth = 0i32;
            let mut quote: Option<char> = None;
            for c in v.chars() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"' | '\'') => quote = Some(c),
                    (None, '[' | '{') => depth += 1,
                    (None, ']' | '}') => depth -= 1,
                    _ => {}
                }
            }
            if depth == 0 && quote.is_none() {
                ValueShape::Done
            } else {
                ValueShape::Unsupported
            }
        }
        _ => ValueShape::Done,
    }
}

/// Walks block-style YAML line by line, calling `f(document, path frames, line, column)` for every
/// key and sequence item it recognises. On anything it does not fully understand (multi-line
/// scalars, flow collections across lines, anchors, tabs) it skips the rest of that document rather
/// than guess. Returns the number of documents, or `None` when even that is uncertain.
fn scan<'t>(text: &'t str, mut f: impl FnMut(usize, &[Frame<'t>], usize, usize)) -> Option<usize> {
    let mut doc = 0usize;
    let mut started = false;
    let mut seen_marker = false;
    let mut skip_doc = false;
    let mut block_scalar: Option<usize> = None;
    let mut stack: Vec<Frame<'t>> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.starts_with("---") && (line.len() == 3 || line[3..].starts_with([' ', '\t'])) {
            if started || seen_marker {
                doc += 1;
            }
            seen_marker = true;
            started = false;
            stack.clear();
            block_scalar = None;
            let rest = line[3..].trim();
            skip_doc = !(rest.is_empty() || rest.starts_with('#'));
            if skip_doc {
                started = true;
            }
            continue;
        }
        if line.starts_with("...") || line.starts_with('%') {
            return None;
        }
        let trimmed = line.trim_start_matches(' ');
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        started = true;
        let col = line.len() - trimmed.len();
        if let Some(parent) = block_scalar {
            if col > parent {
                continue;
            }
            block_scalar = None;
        }
        if skip_doc {
            continue;
        }
        if trimmed.starts_with('\t') {
            skip_doc = true;
            continue;
        }
        let mut c = col;
        let mut rest = trimmed;
        let mut after_dash = false;
        loop {
            if rest == "-" || rest.starts_with("- ") {
                let mut index = 0;
                while let Some(top) = stack.last() {
                    if top.col > c {
                        stack.pop();
                    } else if top.col == c && matches!(top.seg, Seg::Index(_)) {
                        if let Seg::Index(i) = top.seg {
                            index = i + 1;
                        }
                        stack.pop();
                    } else {
                        break;
                    }
                }
                stack.push(Frame {
                    col: c,
                    seg: Seg::Index(index),
                });
                f(doc, &stack, line_no, c + 1);
                let after = &rest[1..];
                let content = after.trim_start_matches(' ');
                c += 1 + (after.len() - content.len());
                rest = content;
                after_dash = true;
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                continue;
            }
            match parse_key(rest) {
                KeyParse::Key(key, value) => {
                    while stack.last().is_some_and(|top| top.col >= c) {
                        stack.pop();
                    }
                    stack.push(Frame {
                        col: c,
                        seg: Seg::Key(key),
                    });
                    f(doc, &stack, line_no, c + 1);
                    match value_shape(value) {
                        ValueShape::Done => {}
                        ValueShape::BlockScalar => block_scalar = Some(c),
                        ValueShape::Unsupported => skip_doc = true,
                    }
                }
                KeyParse::NotKey if after_dash => match value_shape(rest) {
                    ValueShape::Done => {}
                    ValueShape::BlockScalar => block_scalar = stack.last().map(|t| t.col),
                    ValueShape::Unsupported => skip_doc = true,
                },
                KeyParse::NotKey | KeyParse::Unsupported => skip_doc = true,
            }
            break;
        }
        if skip_doc {
            stack.clear();
        }
    }
    Some(if started || seen_marker { doc + 1 } else { doc })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GID: &str = "32b6e34b3d91647abb20e7b8";

    fn parse(text: &str) -> Result<FileManifest, Problems> {
        parse_str(Path::new("m.yaml"), text)
    }

    fn problems(text: &str) -> Vec<Problem> {
        match parse(text) {
            Ok(_) => panic!("expected problems for:\n{text}"),
            Err(p) => p.0,
        }
    }

    fn one_link(fields: &str) -> String {
        format!("projects:\n  - groupId: {GID}\n    links:\n      - name: l1\n{fields}")
    }

    #[test]
    fn valid_msk_link_parses_with_its_line() {
        let text = one_link(
            "        provider: aws\n        vendor: msk\n        arn: arn:aws:kafka:us-east-1:123456789012:cluster/a/1\n",
        );
        let m = parse(&text).unwrap();
        let link = &m.projects[0].links[0].link;
        assert_eq!(link.spec.provider, Provider::Aws);
        assert_eq!(link.spec.vendor, Vendor::Msk);
        assert_eq!(link.source.line, Some(4));
        assert_eq!(m.projects[0].line, Some(2));
    }

    #[test]
    fn problem_line_column_and_display() {
        let text = one_link(
            "        provider: AWS\n        vendor: MSK\n        arn: arn:aws:s3:::bucket\n",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "projects[0].links[0].arn");
        assert_eq!(p[0].link.as_deref(), Some("l1"));
        assert_eq!((p[0].line, p[0].column), (Some(7), Some(9)));
        let shown = p[0].to_string();
        assert!(
            shown.starts_with("m.yaml:7:9: projects[0].links[0].arn (link `l1`): `arn:aws:s3:::bucket` must start with `arn:aws:kafka`"),
            "{shown}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let text = format!(
            "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: MARS\n      - name: b\n        provider: AWS\n        vendor: MSK\n        region: us-east-1\n        dnsdomain: x.example.com\n"
        );
        let p = problems(&text);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"projects[0].links[0].provider"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"projects[0].links[1].dnsdomain"),
            "{paths:?}"
        );
        assert!(paths.contains(&"projects[0].links[1].region"), "{paths:?}");
        assert!(paths.contains(&"projects[0].links[1].arn"), "{paths:?}");
        let typo = p.iter().find(|p| p.path.ends_with("dnsdomain")).unwrap();
        assert!(
            typo.message.contains("did you mean `dnsDomain`?"),
            "{}",
            typo.message
        );
        assert_eq!(typo.line, Some(10));
    }

    #[test]
    fn defaults_merge_under_links_and_links_win() {
        let text = format!(
            "projects:\n  - groupId: {GID}\n    defaults: {{provider: AWS, region: us-east-1, serviceEndpointId: com.amazonaws.us-east-1.s3}}\n    links:\n      - name: s3\n        vendor: S3\n      - name: kin\n        vendor: KINESIS\n        region: eu-west-1\n        serviceEndpointId: com.amazonaws.eu-west-1.kinesis\n      - name: msk\n        vendor: MSK\n        region: null\n        serviceEndpointId: null\n        arn: arn:aws:kafka:us-east-1:1:cluster/x/1\n"
        );
        let m = parse(&text).unwrap();
        let links = &m.projects[0].links;
        assert_eq!(links[0].link.spec.region.as_deref(), Some("us-east-1"));
        assert_eq!(links[1].link.spec.region.as_deref(), Some("eu-west-1"));
        assert_eq!(links[2].link.spec.region, None);
    }

    #[test]
    fn inherited_forbidden_field_says_so() {
        let text = format!(
            "projects:\n  - groupId: {GID}\n    defaults: {{provider: AWS, region: us-east-1}}\n    links:\n      - name: msk\n        vendor: MSK\n        arn: arn:aws:kafka:us-east-1:1:cluster/x/1\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "projects[0].links[0].region");
        assert!(p[0].message.contains("defaults"));
        // The field is absent from the link: the link's line, no column.
        assert_eq!((p[0].line, p[0].column), (Some(5), None));
    }

    #[test]
    fn upper_case_group_id_is_explained() {
        let text = "projects:\n  - groupId: 32B6E34B3D91647ABB20E7B8\n    links: []\n";
        let p = problems(text);
        assert!(p[0].message.contains("upper-case"), "{}", p[0].message);
        assert!(p[0].message.contains(GID));
    }

    #[test]
    fn wrong_types_are_reported_with_paths() {
        let text = one_link(
            "        provider: GCP\n        vendor: PUBSUB\n        region: 42\n        gcpConnectionIds: abc\n",
        );
        let p = problems(&text);
        let region = p.iter().find(|p| p.path.ends_with(".region")).unwrap();
        assert!(
            region.message.contains("a number `42`"),
            "{}",
            region.message
        );
        let ids = p
            .iter()
            .find(|p| p.path.ends_with(".gcpConnectionIds"))
            .unwrap();
        assert!(ids.message.contains("write `[abc]`"), "{}", ids.message);
    }

    #[test]
    fn gcp_lists_are_limited_and_unique() {
        let text = one_link(
            "        provider: GCP\n        vendor: CONFLUENT\n        region: us-central1\n        dnsDomain: d.example.com\n        gcpServiceAttachmentUris: [a, b]\n        gcpConnectionIds: [x, y, x]\n",
        );
        let p = problems(&text);
        assert!(
            p.iter().any(|p| p.path.ends_with("gcpConnectionIds[2]")),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.message.contains("1 or 3")), "{p:?}");
    }

    #[test]
    fn read_only_fields_are_refused() {
        let text = one_link("        provider: GCP\n        region: r\n        state: DONE\n");
        let p = problems(&text);
        assert!(p[0].message.contains("set by Atlas"), "{p:?}");
        assert_eq!(p[0].path, "projects[0].links[0].state");
    }

    #[test]
    fn same_spec_twice_is_refused() {
        let text = format!(
            "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: GCP\n        region: r\n      - name: b\n        provider: gcp\n        vendor: generic\n        region: r\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message.contains("same connection as link `a`"),
            "{}",
            p[0].message
        );
        assert_eq!(p[0].line, Some(7));
    }

    #[test]
    fn multi_document_lines_are_per_document() {
        let text = format!(
            "projects: []\n---\n# second\nprojects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: GCP\n        region: [r]\n"
        );
        let p = problems(&text);
        assert_eq!(p[0].line, Some(9), "{p:?}");
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let p = problems("projects:\n  - groupId: [unclosed\n");
        assert!(p[0].line.is_some() && p[0].column.is_some(), "{p:?}");
        assert!(p[0].message.starts_with("invalid YAML"));
    }

    #[test]
    fn empty_documents_are_fine() {
        assert!(parse("").unwrap().projects.is_empty());
        assert!(parse("---\n---\n# nothing\n").unwrap().projects.is_empty());
    }

    #[test]
    fn scan_gives_up_rather_than_guess() {
        // A multi-line plain scalar: the scan must not attribute later keys to wrong paths.
        let text = "a:\n  b: one\n    two\n  c: x\n";
        let mut seen = Vec::new();
        scan(text, |_, frames, line, _| seen.push((frames.len(), line)));
        assert_eq!(seen, vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn scan_indexes_indentless_sequences() {
        let text = "projects:\n- groupId: x\n  links:\n  - name: a\n  - name: b\n";
        let mut links = Vec::new();
        scan(text, |_, frames, line, _| {
            if let [
                _,
                _,
                _,
                Frame {
                    seg: Seg::Index(i), ..
                },
            ] = frames
            {
                links.push((*i, line));
            }
        });
        assert_eq!(links, vec![(0, 4), (1, 5)]);
    }

    #[test]
    fn authentication_scheme_only_on_msk() {
        let text = one_link(
            "        provider: AWS\n        vendor: S3\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.us-east-1.s3\n        authenticationScheme: IAM\n",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "projects[0].links[0].authenticationScheme");
        assert_eq!(p[0].link.as_deref(), Some("l1"));
        assert_eq!(p[0].line, Some(9));
        let shown = p[0].to_string();
        assert!(shown.contains("must not be set on AWS S3 links"), "{shown}");
        assert!(shown.contains("only to MSK"), "{shown}");
        assert!(shown.contains("never match"), "{shown}");
        assert!(shown.contains("remove it"), "{shown}");
        // On MSK every scheme is fine, in any case.
        for scheme in ["IAM", "tls", "Sasl_Scram"] {
            let text = one_link(&format!(
                "        provider: AWS\n        vendor: MSK\n        arn: arn:aws:kafka:us-east-1:1:cluster/a/1\n        authenticationScheme: {scheme}\n"
            ));
            assert!(parse(&text).is_ok(), "{scheme}");
        }
    }

    #[test]
    fn aws_confluent_needs_no_domain_and_kinesis_only_a_region() {
        let enterprise = one_link(
            "        provider: AWS\n        vendor: CONFLUENT\n        region: us-east-1\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-1\n        dnsSubDomain: []\n",
        );
        let m = parse(&enterprise).unwrap();
        assert_eq!(m.projects[0].links[0].link.spec.dns_domain, None);
        // Still needs its subdomains, empty or not.
        let p = problems(&enterprise.replace("        dnsSubDomain: []\n", ""));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].path.ends_with(".dnsSubDomain"), "{p:?}");

        let kinesis =
            one_link("        provider: AWS\n        vendor: KINESIS\n        region: us-east-1\n");
        assert!(parse(&kinesis).is_ok());
        let p = problems(&one_link(
            "        provider: AWS\n        vendor: KINESIS\n",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message
                .contains("`region` is required for AWS KINESIS"),
            "{p:?}"
        );
        // S3 and LAMBDA still need their endpoint.
        let p = problems(&one_link(
            "        provider: AWS\n        vendor: LAMBDA\n        region: us-east-1\n",
        ));
        assert!(p[0].path.ends_with(".serviceEndpointId"), "{p:?}");
    }

    #[test]
    fn a_region_spelled_another_way_is_the_same_connection() {
        let text = format!(
            "projects:\n  - groupId: {GID}\n    links:\n      - name: a\n        provider: AWS\n        vendor: KINESIS\n        region: us-east-1\n      - name: b\n        provider: AWS\n        vendor: KINESIS\n        region: US_EAST_1\n"
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].message.contains("same connection as link `a`"),
            "{p:?}"
        );
    }

    #[test]
    fn suggestions_cover_case_and_typos() {
        assert_eq!(suggest("dnsdomain", &LINK_FIELDS), Some("dnsDomain"));
        assert_eq!(suggest("regoin", &LINK_FIELDS), Some("region"));
        assert_eq!(suggest("zzzzzz", &LINK_FIELDS), None);
    }
}
