//! Walking the YAML documents of one file: projects, `defaults` and links, type-checking every value
//! and collecting every problem with its document path.

use super::check::{check_link, group_id_message};
use super::fields::{FieldVal, Fields, LinkField, Origin};
use super::problem::{QUOTED_CHARS, quote};
use crate::model::{GroupId, LinkKey, LinkSpec};
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;
use std::collections::HashMap;

/// Fields Atlas reports but sets itself, refused in a link and in `defaults` (the schema uses this too).
pub(super) const READ_ONLY: [&str; 7] = [
    "_id",
    "state",
    "errorMessage",
    "interfaceEndpointId",
    "interfaceEndpointName",
    "providerAccountId",
    "links",
];

/// Keys of a manifest document and of a project entry (the schema uses these too).
pub(super) const TOP_KEYS: [&str; 1] = ["projects"];
pub(super) const PROJECT_KEYS: [&str; 4] = ["groupId", "name", "defaults", "links"];

/// A near miss among `known`, case-only misses included.
pub(super) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
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

pub(super) fn unknown_key_message(key: &str, known: &[&str], what: &str) -> String {
    let key = quote(key);
    match suggest(&key, known) {
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

pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("a boolean `{b}`"),
        Value::Number(n) => format!("a number `{}`", quote(&n.to_string())),
        Value::String(s) => format!("a string `{}`", quote(s)),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a tagged value `{}`", quote(&t.tag.to_string())),
    }
}

/// A key as paths and messages show it: a long one shortened (no key that long is known, so it stays
/// unknown, and a line of some other file is not printed whole).
pub(super) fn key_str(k: &Value) -> Cow<'_, str> {
    match k {
        Value::String(s) if s.chars().nth(QUOTED_CHARS).is_some() => Cow::Owned(quote(s)),
        Value::String(s) if s.contains(char::is_control) => Cow::Owned(quote(s)),
        Value::String(s) => Cow::Borrowed(s),
        Value::Number(n) => Cow::Owned(n.to_string()),
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Null => Cow::Borrowed("null"),
        _ => Cow::Borrowed("<complex key>"),
    }
}

/// A problem before its line is known. `doc` selects the document for the line lookup.
pub(super) struct Pending {
    pub(super) doc: usize,
    pub(super) path: String,
    pub(super) link: Option<String>,
    pub(super) message: String,
    pub(super) line: Option<usize>,
    pub(super) column: Option<usize>,
}

pub(super) struct FileCtx {
    pub(super) pending: Vec<Pending>,
    pub(super) doc: usize,
    /// Whether some document of the file has a `projects` list (an empty one included): a file
    /// without one declares nothing by accident (see `parse_str`).
    pub(super) declares: bool,
}

impl FileCtx {
    pub(super) fn problem(&mut self, path: String, link: Option<&str>, message: String) {
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
    pub(super) fn string(&mut self, v: &Value, path: &str, link: Option<&str>) -> Option<String> {
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
                    format!("`{}` has leading or trailing spaces: remove them", quote(s)),
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

    pub(super) fn list(
        &mut self,
        field: LinkField,
        v: &Value,
        path: &str,
        link: Option<&str>,
    ) -> FieldVal {
        let Value::Sequence(items) = v else {
            let hint = match v {
                Value::String(s) => format!("; write `[{}]` for a list of one", quote(s)),
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
                    let norm = if field == LinkField::DnsSubDomain {
                        s.to_ascii_lowercase()
                    } else {
                        s.clone()
                    };
                    if let Some(first) = seen.get(&norm) {
                        self.problem(
                            item_path,
                            link,
                            format!(
                                "`{}` repeats item {first} of the list: list each value once",
                                quote(&s)
                            ),
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
        if matches!(
            field,
            LinkField::GcpConnectionIds | LinkField::GcpServiceAttachmentUris
        ) && items.len() > 3
        {
            self.problem(
                path.into(),
                link,
                format!(
                    "holds {} items; Atlas accepts at most 3 `{}`",
                    items.len(),
                    field.key()
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
    pub(super) fn field(
        &mut self,
        fields: &mut Fields,
        origin: Origin,
        key: &str,
        v: &Value,
        path: &str,
        link: Option<&str>,
    ) -> bool {
        let Some(field) = LinkField::parse(key) else {
            return false;
        };
        if v.is_null() {
            // In a link, null removes a default; in `defaults`, it sets nothing.
            fields.set(field, None);
            return true;
        }
        let val = if field.is_list() {
            self.list(field, v, path, link)
        } else {
            match self.string(v, path, link) {
                Some(s) => FieldVal::Str(s),
                None => FieldVal::Bad,
            }
        };
        fields.set(field, Some((val, origin)));
        true
    }

    pub(super) fn read_only(&mut self, key: &str, path: String, link: Option<&str>) -> bool {
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

pub(super) fn link_name_ok(name: &str) -> bool {
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

/// A validated project entry before line numbers are known.
pub(super) struct RawProject {
    pub(super) group_id: GroupId,
    pub(super) label: Option<String>,
    pub(super) index: usize,
    pub(super) links: Vec<(usize, LinkKey, LinkSpec)>,
}

pub(super) fn walk_document(ctx: &mut FileCtx, doc: &Value, out: &mut Vec<(usize, RawProject)>) {
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
        Some(Value::Sequence(s)) => {
            ctx.declares = true;
            s
        }
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

pub(super) fn walk_project(ctx: &mut FileCtx, pi: usize, project: &Value) -> Option<RawProject> {
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

pub(super) fn walk_defaults(
    ctx: &mut FileCtx,
    map: &Mapping,
    path: &str,
    defaults: &mut Fields,
) -> bool {
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
            let msg = unknown_key_message(&key, &LinkField::KEYS, "`defaults`");
            ctx.problem(fpath, None, msg);
        }
    }
    // Wrong defaults were reported once, here; links inheriting them stay quiet about them.
    ctx.pending.len() == before
}

pub(super) fn walk_link(
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
                        Some(&quote(&n)),
                        "a link name starts with a letter or digit and holds at most 100 letters, digits, `-`, `_` and `.`".into(),
                    );
                    None
                }
                other => other,
            }
        }
    };
    // An invalid name is still worth showing, to say which link is meant; shortened like any value.
    let quoted_name = match (&name, name_value) {
        (None, Some(Value::String(s))) if !s.is_empty() => Some(quote(s)),
        _ => None,
    };
    let shown = name.as_deref().or(quoted_name.as_deref());
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
            known.extend(LinkField::KEYS);
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
