//! The one manifest loader (`ManifestSet`): `--once`, `plan`, `validate` and the daemon all load
//! through it; the daemon then refreshes it, re-reading only the files that changed, keeping each
//! file's last good version, and updating the merged desired state in place.
//!
//! Each link is held once: the merged `DesiredState` owns every `DesiredLink`; what is kept per file
//! is only which names of which project entries it declared (to take them out again) and where.

use super::discover::discover_with;
use super::merge::{
    LinkAt, ProjectAt, clashes_between, combine, label_clash, name_clash, spec_clash,
};
use super::parse::parse_bytes;
#[cfg(test)]
use super::parse::parse_file;
use super::problem::file_problem;
use super::read::{ReadLimits, Reader};
use super::{FileManifest, Problem, Problems};
use crate::model::{DesiredLink, DesiredState, Fingerprint, FxMap, GroupId};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Finds, parses and merges every manifest under `paths`, reporting every problem of every file.
pub fn load(paths: &[PathBuf]) -> Result<DesiredState, Problems> {
    load_with(paths, &ReadLimits::default())
}

/// [`load`] within `limits` (the config's `limits.manifest_file_max_bytes`).
/// Nothing is kept for later refreshes: a caller that refreshes uses `ManifestSet::load_with`.
pub fn load_with(paths: &[PathBuf], limits: &ReadLimits) -> Result<DesiredState, Problems> {
    parse_with(paths, limits).map(Parsed::into_desired)
}

/// Every manifest file, parsed and checked, not yet merged: a load that has found every problem
/// (only valid manifests get this far), with the merge still to do.
#[derive(Debug)]
pub(crate) struct Parsed(Vec<FileManifest>);

impl Parsed {
    /// The files merged into one desired state.
    pub(crate) fn into_desired(self) -> DesiredState {
        combine(self.0)
    }
}

/// [`load_with`] up to the merge: a caller can start what needs valid manifests (`--once` reads the
/// ledger) while it merges them.
pub(crate) fn parse_with(paths: &[PathBuf], limits: &ReadLimits) -> Result<Parsed, Problems> {
    let (_, good) = parse_all(paths, limits)?;
    Ok(Parsed(good.into_iter().map(|(_, m)| m).collect()))
}

/// A file that parsed, with what later refreshes compare against.
type ParsedFile = (Option<Seen>, FileManifest);

/// Every file under `paths`, parsed and free of clashes between files, in discovery order, with
/// what the set's later refreshes compare against; or every problem of every file, and the
/// clashes between those that parse.
fn parse_all(
    paths: &[PathBuf],
    limits: &ReadLimits,
) -> Result<(ReadCounts, Vec<ParsedFile>), Problems> {
    let reader = Reader::new(paths, limits);
    let files = discover_with(&reader)?;
    let mut counts = ReadCounts::default();
    let mut problems = Vec::new();
    let mut good = Vec::with_capacity(files.len());
    for looked in look_all(&files, &mut counts, &reader) {
        match looked {
            Look::Parsed(seen, Ok(m)) => good.push((seen, m)),
            Look::Parsed(_, Err(Problems(p))) => problems.extend(p),
            Look::Same(_) => unreachable!("a file never seen before is always parsed"),
        }
    }
    // Clashes between the good files are worth reporting even when others are broken.
    let files: Vec<&FileManifest> = good.iter().map(|(_, m)| m).collect();
    problems.extend(clashes_between(&files));
    drop(files);
    if problems.is_empty() {
        Ok((counts, good))
    } else {
        Err(Problems(problems))
    }
}

/// How recent a file's mtime may be, at the moment it is read, for its metadata not to be trusted
/// on the next refresh.
///
/// A write in the same timestamp tick as the read before it (the kernel's coarse clock: a few ms on
/// ext4, 1 s or 2 s on some other file systems) and of the same size leaves device, inode, size, mtime
/// and ctime all as they were. So a file whose mtime was this recent when it was read is read again
/// on the next refresh, and its content hash decides whether it changed (no re-parse when not); once
/// a read happens when the mtime is older than this, the metadata alone is trusted again (git's
/// "racily clean" rule).
const RACY_NS: i128 = 2_000_000_000;

/// At most this many threads parse manifests at a load: beyond it, the allocator and memory
/// bandwidth, not the parser, set the pace.
const MAX_LOAD_THREADS: usize = 4;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// The version of a file last read.
#[derive(Debug, Clone, Copy)]
struct Seen {
    identity: Identity,
    /// SipHash of the bytes: a racy file read again with the same bytes is not parsed again.
    hash: u64,
    /// The mtime was within `RACY_NS` of the read: read again next time whatever the metadata says.
    racy: bool,
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// One project entry of a file in use: enough to take its links out of the desired state again and
/// to say where a link was declared.
#[derive(Debug)]
struct Entry {
    group_id: GroupId,
    /// Index in its document's `projects` list.
    index: usize,
    /// Each link's name and index in the entry's `links` list.
    links: Vec<(Box<str>, u32)>,
}

/// What a file in use contributes to the desired state.
#[derive(Debug)]
struct InUse {
    entries: Vec<Entry>,
    /// The content hash of the bytes this version was parsed from: a file written back to exactly
    /// this (a broken edit undone) is this version again, not a change.
    hash: Option<u64>,
}

/// One project entry, as the project's label and existence need it.
#[derive(Debug, Clone)]
struct Decl {
    label: Option<String>,
    index: usize,
    line: Option<usize>,
}

/// Where the current content of a file stands.
#[derive(Debug)]
enum Current {
    /// The content last read is the version in use.
    InUse,
    /// It does not parse or validate; the last good version (if any) stays in use.
    Invalid(Vec<Problem>),
    /// It is valid alone but clashed with other files; tried again on every refresh, since the
    /// other files may change.
    Clashing(FileManifest),
}

#[derive(Debug)]
struct FileState {
    seen: Option<Seen>,
    in_use: Option<InUse>,
    current: Current,
    /// A new content not yet used because it has not been stable long enough (see
    /// [`ManifestSet::refresh_settled`]); `seen` stays at the version before it meanwhile, so the file
    /// is read again on every refresh until it is used.
    pending: Option<Unsettled>,
}

/// A content first read at `since`, waiting to be read again unchanged a stability window later.
#[derive(Debug, Clone, Copy)]
struct Unsettled {
    identity: Identity,
    hash: u64,
    since: Instant,
}

/// How a refresh decides that a changed file is no longer being written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settling {
    /// How long a new content must stay the same (same bytes, same identity) before it is used.
    pub window: Duration,
    /// The moment of this refresh.
    pub now: Instant,
}

impl FileState {
    /// `None` when `new` has been this file's content for at least the window (it may be used);
    /// otherwise how much longer it must stay the same. A content seen for the first time starts
    /// the window; any difference from the one pending starts it again.
    fn unsettled(&mut self, new: Seen, s: Settling) -> Option<Duration> {
        match self.pending {
            Some(p) if p.identity == new.identity && p.hash == new.hash => {
                let held = s.now.saturating_duration_since(p.since);
                if held >= s.window {
                    self.pending = None;
                    None
                } else {
                    Some(s.window - held)
                }
            }
            _ => {
                self.pending = Some(Unsettled {
                    identity: new.identity,
                    hash: new.hash,
                    since: s.now,
                });
                Some(s.window)
            }
        }
    }
}

/// How many files a `ManifestSet` has read and parsed since it was loaded (for tests and logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ReadCounts {
    pub reads: u64,
    pub parses: u64,
}

/// The manifests as last accepted.
#[derive(Debug, Default)]
pub(crate) struct ManifestSet {
    files: BTreeMap<PathBuf, FileState>,
    /// Every project entry of the files in use, by project, in path then file order.
    decls: FxMap<GroupId, BTreeMap<(Arc<Path>, usize), Decl>>,
    desired: Arc<DesiredState>,
    counts: ReadCounts,
    /// What a file may be to be read at all (its size, where it lies).
    limits: ReadLimits,
    /// Files the watcher saw renamed into place (and not written in place since): whole before they
    /// had their name, so the next refresh uses them without waiting to see them stable.
    whole: BTreeSet<PathBuf>,
}

/// What one [`ManifestSet::refresh`] found.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    /// Files whose current content is not in use: invalid, clashing with another file, or unreadable
    /// paths. This is `atlas_linkd_manifest_errors`.
    pub invalid_files: usize,
    /// Every problem, for the log.
    pub problems: Vec<Problem>,
    /// Files that were in use and are gone from disk: their links are no longer declared.
    pub removed: Vec<PathBuf>,
    /// Whether the desired state differs from the one before.
    pub changed: bool,
    /// Files whose new content is not used yet because it has not been stable for the window (they
    /// may still be being written); each keeps its last good version meanwhile.
    pub unsettled: Vec<PathBuf>,
    /// How long until the first of `unsettled` may be found stable, if any is.
    pub settle_in: Option<Duration>,
}

/// What looking at one file found.
enum Look {
    /// The same version as last read.
    Same(Option<Seen>),
    Parsed(Option<Seen>, Result<FileManifest, Problems>),
}

/// Stats `path` and reads and parses it only when its identity (or, for a racy file, its bytes)
/// changed since `seen`.
fn look(path: &Path, seen: Option<Seen>, counts: &mut ReadCounts, reader: &Reader<'_>) -> Look {
    let started = now_ns();
    let identity = match std::fs::metadata(path) {
        Ok(meta) => Identity::of(&meta),
        // Gone since discovery: reported as unreadable, as a failed read would be.
        Err(e) => {
            return Look::Parsed(
                None,
                Err(Problems(vec![file_problem(
                    path,
                    format!("cannot read this manifest file: {e}"),
                )])),
            );
        }
    };
    if let Some(s) = seen
        && s.identity == identity
        && !s.racy
    {
        return Look::Same(seen);
    }
    counts.reads += 1;
    let bytes = match reader.read(path) {
        Ok(b) => b,
        Err(problems) => return Look::Parsed(None, Err(problems)),
    };
    let now = Seen {
        identity,
        hash: content_hash(&bytes),
        racy: identity.mtime_ns >= started - RACY_NS,
    };
    if seen.is_some_and(|s| s.hash == now.hash) {
        return Look::Same(Some(now));
    }
    counts.parses += 1;
    // A parser panic is a bug; it must not take the daemon down, nor stop a refresh halfway through
    // its bookkeeping: the file counts as invalid and keeps its last good version.
    let parsed = std::panic::catch_unwind(|| parse_bytes(path, bytes)).unwrap_or_else(|_| {
        Err(Problems(vec![file_problem(
            path,
            "internal error while parsing this file; please report it".to_owned(),
        )]))
    });
    Look::Parsed(Some(now), parsed)
}

/// Looks at every file in `files` for the first time, in order, on as many threads as there are
/// cores (up to `MAX_LOAD_THREADS`): files are independent, and parsing YAML is most of the time a
/// large load takes. Each thread takes the next file not yet taken, so one large file does not leave
/// the others idle.
fn look_all(files: &[PathBuf], counts: &mut ReadCounts, reader: &Reader<'_>) -> Vec<Look> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_LOAD_THREADS)
        .min(files.len());
    if threads <= 1 {
        return files
            .iter()
            .map(|path| look(path, None, counts, reader))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut looked: Vec<(usize, Look)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    let mut counts = ReadCounts::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        mine.push((i, look(path, None, &mut counts, reader)));
                    }
                    (mine, counts)
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                // `look` catches a parser's panic itself; anything else is a bug worth its panic.
                let (mine, c) = w.join().expect("a load thread panicked outside the parser");
                counts.reads += c.reads;
                counts.parses += c.parses;
                mine
            })
            .collect()
    });
    looked.sort_by_key(|(i, _)| *i);
    looked.into_iter().map(|(_, l)| l).collect()
}

impl ManifestSet {
    /// The start-up load: every file must be valid, since there is no earlier version to fall back
    /// on. Reports every problem of every file, and the clashes between the valid ones.
    #[cfg(test)]
    pub(crate) fn load(paths: &[PathBuf]) -> Result<ManifestSet, Problems> {
        ManifestSet::load_with(paths, ReadLimits::default())
    }

    /// [`ManifestSet::load`] within `limits`, which later refreshes keep (see `set_limits`).
    pub(crate) fn load_with(
        paths: &[PathBuf],
        limits: ReadLimits,
    ) -> Result<ManifestSet, Problems> {
        let (counts, good) = parse_all(paths, &limits)?;
        let mut set = ManifestSet {
            counts,
            limits: limits.clone(),
            ..ManifestSet::default()
        };
        for (seen, m) in &good {
            let in_use = InUse {
                hash: seen.map(|s| s.hash),
                ..set.declare(m)
            };
            set.files.insert(
                m.file.clone(),
                FileState {
                    seen: *seen,
                    in_use: Some(in_use),
                    current: Current::InUse,
                    pending: None,
                },
            );
        }
        set.desired = Arc::new(combine(good.into_iter().map(|(_, m)| m).collect()));
        Ok(set)
    }

    /// The limits later refreshes read within (a reloaded config's).
    pub(crate) fn set_limits(&mut self, limits: ReadLimits) {
        self.limits = limits;
    }

    /// The desired state of the files in use.
    pub(crate) fn desired(&self) -> Arc<DesiredState> {
        self.desired.clone()
    }

    /// How many files were read and parsed since the load (the load's own included).
    #[cfg(test)]
    pub(crate) fn read_counts(&self) -> ReadCounts {
        self.counts
    }

    /// Looks at every manifest under `paths`, reading only those whose identity changed (device,
    /// inode, size, mtime, ctime; see `RACY_NS` for a write within the same tick). A file that
    /// parses replaces its last good version; one that does not keeps it (or, if it never parsed,
    /// contributes nothing); one that is gone from disk is dropped. Should the new versions clash
    /// across files (a link name declared twice), none of them is used this time (the files keep
    /// their previous versions, and are tried again on the next refresh), and the clash is reported.
    ///
    /// The desired state is updated in place: when nobody else holds it (see `desired`), nothing is
    /// copied but the links of the files that changed.
    #[cfg(test)]
    pub(crate) fn refresh(&mut self, paths: &[PathBuf]) -> Refresh {
        self.refresh_with(paths, None)
    }

    /// Marks files the watcher saw renamed into place: the next refresh uses their new content at
    /// once (a file renamed into place was complete before it had its name); see `refresh_settled`.
    pub(crate) fn mark_whole(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        self.whole.extend(paths);
    }

    /// Like `refresh`, but uses a changed file only once it has been read twice at least
    /// `settling.window` apart with the same content: a file written with a pause (a half-written
    /// link) must not be acted on in its unfinished form. A file not yet stable keeps its last good
    /// version and is listed in `unsettled`; refreshing again after `settle_in` may find it stable.
    /// A file marked whole (`mark_whole`) is used at once.
    pub(crate) fn refresh_settled(&mut self, paths: &[PathBuf], settling: Settling) -> Refresh {
        self.refresh_with(paths, Some(settling))
    }

    fn refresh_with(&mut self, paths: &[PathBuf], settling: Option<Settling>) -> Refresh {
        let mut report = Refresh::default();
        let limits = self.limits.clone();
        let reader = Reader::new(paths, &limits);
        let on_disk = match discover_with(&reader) {
            Ok(f) => f,
            Err(Problems(p)) => {
                // A configured path that vanished may be an unmounted volume as much as an intended
                // removal: keep every file's last good version until the paths resolve again.
                report.invalid_files = distinct_files(&p);
                report.problems = p;
                return report;
            }
        };

        let listed: BTreeSet<&PathBuf> = on_disk.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|p| !listed.contains(p))
            .cloned()
            .collect();
        let mut dropped: Vec<(PathBuf, InUse)> = Vec::new();
        for path in gone {
            if let Some(FileState {
                in_use: Some(in_use),
                ..
            }) = self.files.remove(&path)
            {
                report.removed.push(path.clone());
                dropped.push((path, in_use));
            }
        }

        let whole = std::mem::take(&mut self.whole);
        let mut candidates: Vec<FileManifest> = Vec::new();
        for path in &on_disk {
            let state = self.files.entry(path.clone()).or_insert_with(|| FileState {
                seen: None,
                in_use: None,
                current: Current::InUse,
                pending: None,
            });
            let looked = look(path, state.seen, &mut self.counts, &reader);
            if whole.contains(path) {
                state.pending = None;
            } else if let (Some(settling), Look::Parsed(Some(new), _)) = (settling, &looked)
                && let Some(wait) = state.unsettled(*new, settling)
            {
                report.unsettled.push(path.clone());
                report.settle_in = Some(report.settle_in.map_or(wait, |w| w.min(wait)));
                continue;
            }
            match looked {
                Look::Same(seen) => {
                    // Back to the content last used: nothing is pending any more.
                    state.pending = None;
                    state.seen = seen;
                    if matches!(state.current, Current::Clashing(_))
                        && let Current::Clashing(m) =
                            std::mem::replace(&mut state.current, Current::InUse)
                    {
                        candidates.push(m);
                    }
                }
                Look::Parsed(seen, Ok(m)) => {
                    let in_use_again = matches!(
                        (&state.in_use, seen),
                        (Some(InUse { hash: Some(h), .. }), Some(s)) if *h == s.hash
                    );
                    state.seen = seen;
                    state.current = Current::InUse;
                    // Back to the bytes of the version in use (a broken edit undone): nothing changes,
                    // so it is no candidate, and a clash among the files that do change cannot count
                    // it invalid.
                    if !in_use_again {
                        candidates.push(m);
                    }
                }
                Look::Parsed(seen, Err(Problems(p))) => {
                    state.seen = seen;
                    state.current = Current::Invalid(p);
                }
            }
        }
        for state in self.files.values() {
            if let Current::Invalid(p) = &state.current {
                report.problems.extend(p.iter().cloned());
            }
        }

        if !candidates.is_empty() {
            let clash = self.check(&candidates, &dropped);
            if !clash.is_empty() {
                report.problems.extend(clash);
                for m in candidates.drain(..) {
                    if let Some(state) = self.files.get_mut(&m.file) {
                        state.current = Current::Clashing(m);
                    }
                }
            }
        }
        if !candidates.is_empty() || !dropped.is_empty() {
            report.changed = self.apply(dropped, candidates);
        }
        report.invalid_files = self
            .files
            .values()
            .filter(|s| !matches!(s.current, Current::InUse))
            .count();
        report
    }

    /// Where the link `name` of project `group`, in use from `file`, is declared.
    fn link_at<'a>(&'a self, group: &GroupId, link: &'a DesiredLink) -> LinkAt<'a> {
        let file: &Path = &link.source.file;
        let found = self
            .files
            .get(file)
            .and_then(|s| s.in_use.as_ref())
            .into_iter()
            .flat_map(|u| &u.entries)
            .filter(|e| &e.group_id == group)
            .find_map(|e| {
                e.links
                    .iter()
                    .find(|(n, _)| **n == *link.key.name)
                    .map(|(_, i)| (e.index, *i as usize))
            });
        let (project, index) = found.unwrap_or((0, 0));
        LinkAt {
            file,
            project,
            link: index,
            line: link.source.line,
            name: &link.key.name,
        }
    }

    /// The clashes the candidates would bring: between themselves, and with the files in use that
    /// neither change nor go. Each is reported as a full merge in path order would report it.
    fn check(&self, candidates: &[FileManifest], dropped: &[(PathBuf, InUse)]) -> Vec<Problem> {
        let changing: BTreeSet<&Path> = candidates
            .iter()
            .map(|m| m.file.as_path())
            .chain(dropped.iter().map(|(p, _)| p.as_path()))
            .collect();
        let staying = |l: &&DesiredLink| !changing.contains(&*l.source.file);
        let mut problems = Vec::new();
        let mut new_named: FxMap<(&GroupId, &str), LinkAt<'_>> = FxMap::default();
        let mut new_specs: FxMap<(&GroupId, Fingerprint), LinkAt<'_>> = FxMap::default();
        let mut old_specs: FxMap<&GroupId, FxMap<Fingerprint, &DesiredLink>> = FxMap::default();
        let mut labelled: BTreeMap<&GroupId, Vec<Labelled<'_>>> = BTreeMap::new();
        for m in candidates {
            for (pos, p) in m.projects.iter().enumerate() {
                let existing = self.desired.projects.get(&p.group_id);
                if let Some(label) = &p.label {
                    labelled.entry(&p.group_id).or_default().push((
                        (m.file.as_path(), pos),
                        ProjectAt {
                            file: &m.file,
                            index: p.index,
                            line: p.line,
                            label,
                        },
                    ));
                }
                for l in &p.links {
                    let here = LinkAt {
                        file: &m.file,
                        project: p.index,
                        link: l.index,
                        line: l.link.source.line,
                        name: &l.link.key.name,
                    };
                    let name_key = (&p.group_id, l.link.key.name.as_str());
                    let other = new_named.get(&name_key).copied().or_else(|| {
                        existing
                            .and_then(|e| e.links.get(&l.link.key.name))
                            .filter(staying)
                            .map(|d| self.link_at(&p.group_id, d))
                    });
                    if let Some(other) = other {
                        let (later, first) = ordered(here, other);
                        problems.push(name_clash(&p.group_id, later, first));
                        continue;
                    }
                    new_named.insert(name_key, here);
                    let olds = old_specs.entry(&p.group_id).or_insert_with(|| {
                        existing
                            .into_iter()
                            .flat_map(|e| e.links.values())
                            .filter(staying)
                            .map(|d| (d.fingerprint, d))
                            .collect()
                    });
                    let spec_key = (&p.group_id, l.link.fingerprint);
                    let other = new_specs.get(&spec_key).copied().or_else(|| {
                        olds.get(&l.link.fingerprint)
                            .map(|d| self.link_at(&p.group_id, d))
                    });
                    match other {
                        Some(other) => {
                            let (later, first) = ordered(here, other);
                            problems.push(spec_clash(later, first));
                        }
                        None => {
                            new_specs.insert(spec_key, here);
                        }
                    }
                }
            }
        }
        for (group, mut entries) in labelled {
            if let Some(decls) = self.decls.get(group) {
                entries.extend(
                    decls
                        .iter()
                        .filter(|((f, _), _)| !changing.contains(&**f))
                        .filter_map(|((f, pos), d)| {
                            let label = d.label.as_deref()?;
                            Some((
                                (&**f, *pos),
                                ProjectAt {
                                    file: f,
                                    index: d.index,
                                    line: d.line,
                                    label,
                                },
                            ))
                        }),
                );
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let first = entries[0].1;
            for (_, later) in &entries[1..] {
                if later.label != first.label {
                    problems.push(label_clash(group, *later, first));
                }
            }
        }
        problems
    }

    /// Records the project entries of `m` (about to be in use) and returns what to keep of it.
    fn declare(&mut self, m: &FileManifest) -> InUse {
        declare_into(&mut self.decls, &Arc::from(m.file.as_path()), m)
    }

    /// Takes the files in `dropped` and the previous versions of `accepted` out of the desired state
    /// and puts `accepted` in. Returns whether the desired state changed.
    fn apply(&mut self, dropped: Vec<(PathBuf, InUse)>, accepted: Vec<FileManifest>) -> bool {
        let mut outgoing: Vec<(Arc<Path>, InUse)> = dropped
            .into_iter()
            .map(|(p, u)| (Arc::from(p.as_path()), u))
            .collect();
        for m in &accepted {
            if let Some(u) = self.files.get_mut(&m.file).and_then(|s| s.in_use.take()) {
                outgoing.push((Arc::from(m.file.as_path()), u));
            }
        }
        let mut touched: BTreeSet<GroupId> = BTreeSet::new();
        for (_, u) in &outgoing {
            touched.extend(u.entries.iter().map(|e| e.group_id.clone()));
        }
        for m in &accepted {
            touched.extend(m.projects.iter().map(|p| p.group_id.clone()));
        }
        let before: Vec<Option<Option<String>>> = touched
            .iter()
            .map(|g| self.desired.projects.get(g).map(|p| p.label.clone()))
            .collect();

        let desired = Arc::make_mut(&mut self.desired);
        let mut taken: Vec<DesiredLink> = Vec::new();
        for (file, u) in &outgoing {
            for (pos, e) in u.entries.iter().enumerate() {
                if let Some(decls) = self.decls.get_mut(&e.group_id) {
                    decls.remove(&(file.clone(), pos));
                }
                if let Some(project) = desired.projects.get_mut(&e.group_id) {
                    taken.extend(e.links.iter().filter_map(|(n, _)| project.links.remove(n)));
                }
            }
        }
        let mut added = 0usize;
        for m in accepted {
            let file = Arc::from(m.file.as_path());
            let in_use = declare_into(&mut self.decls, &file, &m);
            for p in m.projects {
                let project = desired.projects.entry(p.group_id).or_default();
                for l in p.links {
                    added += 1;
                    project.links.insert(l.link);
                }
            }
            if let Some(state) = self.files.get_mut(&m.file) {
                state.in_use = Some(InUse {
                    hash: state.seen.map(|s| s.hash),
                    ..in_use
                });
                state.current = Current::InUse;
            }
        }
        for group in &touched {
            let label = match self.decls.get(group) {
                Some(d) if !d.is_empty() => d.values().find_map(|d| d.label.clone()),
                _ => {
                    self.decls.remove(group);
                    desired.projects.remove(group);
                    continue;
                }
            };
            desired.projects.entry(group.clone()).or_default().label = label;
        }

        let after = touched
            .iter()
            .map(|g| desired.projects.get(g).map(|p| p.label.clone()));
        added != taken.len()
            || !after.eq(before)
            || taken.iter().any(|old| desired.get(&old.key) != Some(old))
    }
}

/// `ManifestSet::declare` without borrowing the whole set (the desired state is borrowed apart).
fn declare_into(
    decls: &mut FxMap<GroupId, BTreeMap<(Arc<Path>, usize), Decl>>,
    file: &Arc<Path>,
    m: &FileManifest,
) -> InUse {
    let entries = m
        .projects
        .iter()
        .enumerate()
        .map(|(pos, p)| {
            decls.entry(p.group_id.clone()).or_default().insert(
                (file.clone(), pos),
                Decl {
                    label: p.label.clone(),
                    index: p.index,
                    line: p.line,
                },
            );
            Entry {
                group_id: p.group_id.clone(),
                index: p.index,
                links: p
                    .links
                    .iter()
                    .map(|l| {
                        let index = u32::try_from(l.index).unwrap_or(u32::MAX);
                        (Box::from(l.link.key.name.as_str()), index)
                    })
                    .collect(),
            }
        })
        .collect();
    InUse {
        entries,
        hash: None,
    }
}

/// A labelled project entry at its place in path then file order.
type Labelled<'a> = ((&'a Path, usize), ProjectAt<'a>);

/// The pair as a merge in path order meets it: the later file's link first.
fn ordered<'a>(a: LinkAt<'a>, b: LinkAt<'a>) -> (LinkAt<'a>, LinkAt<'a>) {
    if a.file < b.file { (b, a) } else { (a, b) }
}

fn distinct_files(problems: &[Problem]) -> usize {
    problems
        .iter()
        .map(|p| &p.file)
        .collect::<BTreeSet<_>>()
        .len()
        .max(1)
}

#[cfg(test)]
mod settle_tests;
#[cfg(test)]
mod tests;
