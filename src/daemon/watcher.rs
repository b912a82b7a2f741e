//! The manifest watcher: file-system events on the manifest files and directories, filtered and
//! debounced into one event per burst of changes, and re-armed whenever a configured root is
//! replaced (deleted and recreated, swapped by rename, or a symlink switched), and on request (SIGHUP,
//! every resync).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::DaemonError;
use crate::lock::LockExt;

/// Keeps the file watcher and its debounce task alive; dropping it stops both.
pub struct ManifestWatcher {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for ManifestWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManifestWatcher")
    }
}

impl Drop for ManifestWatcher {
    fn drop(&mut self) {
        self.task.abort();
        // Now, not when the aborted task is next polled: a watcher replaced on SIGHUP must stop
        // reporting at once.
        self.shared.armed.lock_or_recover().watcher = None;
    }
}

impl ManifestWatcher {
    /// Drops every watch and sets them up again from the configured paths, as they resolve now.
    /// Inotify watches follow inodes, not names: after a root was replaced behind a watch that missed
    /// it, only this makes later edits visible again.
    pub(crate) async fn rearm(&self) {
        let shared = self.shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || shared.rearm()).await {
            tracing::warn!(error = %e, "re-arming the manifest watcher failed");
        }
    }

    /// The manifest files that arrived whole since the last call: renamed into place (the atomic-save
    /// pattern of editors, `kubectl`, `git`, configuration tools) and not written in place since. A
    /// file renamed into place was complete before it had its name, so the loader may use it without
    /// waiting to see it stable; a file written in place may be half written, and must wait.
    pub(crate) fn take_whole_arrivals(&self) -> Vec<PathBuf> {
        std::mem::take(&mut *self.shared.arrivals.lock_or_recover())
            .into_iter()
            .filter_map(|(path, arrival)| (arrival == Arrival::Whole).then_some(path))
            .collect()
    }
}

/// How a manifest file last changed, as far as its events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Renamed into place: complete before it had its name.
    Whole,
    /// Created or written in place: may be half written.
    InPlace,
}

/// What an event says of how its files arrived, and which of its paths that concerns: a rename's
/// new name arrived whole; a create or a write is in place; anything else (metadata, removal, the
/// old name of a rename) says nothing.
fn arrival_of(event: &notify::Event) -> Option<(Arrival, &[PathBuf])> {
    match event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            Some((Arrival::Whole, event.paths.as_slice()))
        }
        // From and to: only the new name arrived.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            Some((Arrival::Whole, event.paths.get(1..).unwrap_or_default()))
        }
        EventKind::Create(_)
        | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any | ModifyKind::Other) => {
            Some((Arrival::InPlace, event.paths.as_slice()))
        }
        _ => None,
    }
}

/// What one configured manifest path covers.
#[derive(Debug, Clone)]
enum Watched {
    /// An explicit file: only this path counts, whatever its extension.
    File(PathBuf),
    /// A directory: YAML files under it, outside hidden entries.
    Dir(PathBuf),
}

impl Watched {
    fn covers(&self, path: &Path) -> bool {
        match self {
            Watched::File(f) => path == f,
            Watched::Dir(d) => match path.strip_prefix(d) {
                Ok(rel) => relevant_in_dir(rel),
                Err(_) => false,
            },
        }
    }
}

fn relevant_in_dir(rel: &Path) -> bool {
    let parts: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let Some((last, dirs)) = parts.split_last() else {
        return false;
    };
    let last = last.to_string_lossy();
    // Kubernetes mounts ConfigMaps as symlinks into a hidden `..data` directory that it swaps
    // atomically: that swap is the only event an update produces.
    if dirs.is_empty() && last == "..data" {
        return true;
    }
    if dirs.iter().any(|d| d.to_string_lossy().starts_with('.')) || last.starts_with('.') {
        return false;
    }
    // Editors' temp and backup files (`x.yaml~`, `4913`, `.x.yaml.swp`) fall out here.
    last.ends_with(".yaml") || last.ends_with(".yml")
}

/// Whether `path`, reported by the watch on a root's parent folder, is the root's own entry there
/// (`root` as named in that folder, symlink unresolved), or a `..data` swap beside it.
fn is_root_entry(root: &Path, path: &Path) -> bool {
    path == root || (path.parent() == root.parent() && path.file_name() == Some("..data".as_ref()))
}

fn event_matters(kind: &EventKind) -> bool {
    // Our own loader opens and reads the manifests: counting those accesses would make every pass
    // trigger the next one.
    !matches!(kind, EventKind::Access(_))
}

/// A relevant raw event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw {
    /// Something under a root changed.
    Change,
    /// A root's own entry changed (or a watch may have been lost): re-arm before the pass.
    Root,
}

/// What identifies a root as it resolves now: the folder watched for it, by path and by device and
/// inode. A replaced folder, or a symlink switched, differs in at least one part; a file root saved
/// by an editor (a new inode in the same folder) does not, since its folder's watch still sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootId {
    canonical: Option<PathBuf>,
    folder: Option<(u64, u64)>,
}

impl RootId {
    fn of(path: &Path) -> RootId {
        use std::os::unix::fs::MetadataExt;
        let canonical = std::fs::canonicalize(path).ok();
        let folder = canonical.as_deref().and_then(|c| {
            let dir = if c.is_dir() { Some(c) } else { c.parent() };
            let meta = std::fs::metadata(dir?).ok()?;
            Some((meta.dev(), meta.ino()))
        });
        RootId { canonical, folder }
    }
}

/// The watches of one arming, and the roots as they resolved then.
struct Armed {
    watcher: Option<RecommendedWatcher>,
    roots: Vec<RootId>,
}

/// What the debounce task and the daemon share.
struct Shared {
    paths: Vec<PathBuf>,
    raw_tx: mpsc::UnboundedSender<Raw>,
    armed: Mutex<Armed>,
    /// How each changed manifest file last arrived, since the daemon last asked.
    arrivals: Arc<Mutex<HashMap<PathBuf, Arrival>>>,
}

impl Shared {
    /// Sets up a fresh set of watches and replaces the old one with it. Best effort: a root that is
    /// missing right now (deleted, not yet recreated) is skipped with a warning, since the watch on its
    /// parent folder sees it come back. Only if no watcher can be made at all are the old watches kept.
    fn rearm(&self) {
        let roots: Vec<RootId> = self.paths.iter().map(|p| RootId::of(p)).collect();
        match arm(&self.paths, &self.raw_tx, &self.arrivals, false) {
            Ok(watcher) => {
                let mut armed = self.armed.lock_or_recover();
                // Dropping the previous watcher only after the new one watches: no gap in between.
                armed.watcher = Some(watcher);
                armed.roots = roots;
                tracing::debug!("manifest watcher re-armed");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-arm the manifest watcher; keeping the previous watches (the next resync tries again)");
            }
        }
    }

    /// Whether any root resolves differently from when the watches were last set up.
    fn roots_changed(&self) -> bool {
        let armed = self.armed.lock_or_recover();
        self.paths
            .iter()
            .zip(&armed.roots)
            .any(|(p, was)| RootId::of(p) != *was)
    }
}

/// Where to watch for a set of manifest paths.
struct Plan {
    /// Each directory recursively, each file through its folder, and each root's parent folder
    /// (non-recursively) to see the root itself replaced.
    points: Vec<(PathBuf, RecursiveMode)>,
    /// The points without which a root's changes go unseen (not the parent folders, which only help).
    essential: Vec<PathBuf>,
    /// What counts as a change under a root.
    targets: Vec<Watched>,
    /// The roots' entries in their parent folders.
    entries: Vec<PathBuf>,
}

fn plan(paths: &[PathBuf], strict: bool) -> Result<Plan, DaemonError> {
    let mut targets = Vec::new();
    let mut points: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let mut essential = Vec::new();
    let mut entries = Vec::new();
    for p in paths {
        // The root's entry in its parent folder, the parent resolved (as the watcher reports it) but
        // the root's own name not: that name is what a deploy replaces.
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if let (Some(parent), Some(name)) = (abs.parent(), abs.file_name())
            && let Ok(parent) = std::fs::canonicalize(parent)
        {
            entries.push(parent.join(name));
            points.push((parent, RecursiveMode::NonRecursive));
        }
        // Canonical paths, because the watcher reports them that way (symlinked /tmp and the like).
        let canon = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(e) if strict => {
                return Err(DaemonError::Watch {
                    path: p.clone(),
                    source: notify::Error::io(e),
                });
            }
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e,
                    "a manifest path cannot be watched right now; watching its parent folder for its return");
                continue;
            }
        };
        if canon.is_dir() {
            essential.push(canon.clone());
            points.push((canon.clone(), RecursiveMode::Recursive));
            targets.push(Watched::Dir(canon));
        } else {
            let parent = canon
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            essential.push(parent.clone());
            points.push((parent, RecursiveMode::NonRecursive));
            targets.push(Watched::File(canon));
        }
    }
    Ok(Plan {
        points: merge_points(points),
        essential,
        targets,
        entries,
    })
}

/// Deduplicates watch points. A folder watched both ways, or inside a recursively watched one, is
/// watched recursively only: notify keeps the mode of the last call for a path, and a non-recursive
/// call after a recursive one would stop it watching new subfolders.
fn merge_points(mut points: Vec<(PathBuf, RecursiveMode)>) -> Vec<(PathBuf, RecursiveMode)> {
    let recursive: Vec<PathBuf> = points
        .iter()
        .filter(|(_, m)| *m == RecursiveMode::Recursive)
        .map(|(p, _)| p.clone())
        .collect();
    points.retain(|(p, m)| {
        *m == RecursiveMode::Recursive || !recursive.iter().any(|r| p.starts_with(r))
    });
    points.sort_by(|a, b| a.0.cmp(&b.0));
    points.dedup_by(|a, b| a.0 == b.0);
    points
}

/// One notify watcher over `paths`, sending raw events to `raw_tx`. `strict`: any path that cannot be
/// watched is an error (start-up); otherwise such paths are skipped with a warning.
fn arm(
    paths: &[PathBuf],
    raw_tx: &mpsc::UnboundedSender<Raw>,
    arrivals: &Arc<Mutex<HashMap<PathBuf, Arrival>>>,
    strict: bool,
) -> Result<RecommendedWatcher, DaemonError> {
    let Plan {
        points,
        essential,
        targets: filter,
        entries,
    } = plan(paths, strict)?;
    let tx = raw_tx.clone();
    let arrivals = arrivals.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let raw = match res {
            // The kernel's queue overflowed: any change may have been lost.
            Ok(ev) if ev.need_rescan() => Raw::Root,
            Ok(ev) if !event_matters(&ev.kind) => return,
            // A file root's own entry is a change of that file (its folder's watch is still good);
            // any other root's entry changing means the root was replaced.
            Ok(ev) => {
                if ev.paths.iter().any(|p| filter.iter().any(|t| t.covers(p))) {
                    if let Some((arrival, paths)) = arrival_of(&ev) {
                        let mut arrivals = arrivals.lock_or_recover();
                        for p in paths.iter().filter(|p| filter.iter().any(|t| t.covers(p))) {
                            arrivals.insert(p.clone(), arrival);
                        }
                    }
                    Raw::Change
                } else if ev
                    .paths
                    .iter()
                    .any(|p| entries.iter().any(|e| is_root_entry(e, p)))
                {
                    Raw::Root
                } else {
                    return;
                }
            }
            // A watcher error (queue overflow, a watched folder removed) may have hidden a change or
            // lost a watch: a pass after re-arming is the safe answer.
            Err(e) => {
                tracing::warn!(error = %e, "manifest watcher reported an error; re-arming it and running a pass to be safe");
                Raw::Root
            }
        };
        let _ = tx.send(raw);
    })
    .map_err(|source| DaemonError::Watch {
        path: paths.first().cloned().unwrap_or_default(),
        source,
    })?;
    for (dir, mode) in &points {
        if let Err(source) = watcher.watch(dir, *mode) {
            // A parent folder the daemon may not list (execute-only) costs only the notice of a
            // replaced root, which the resync's re-arm still gives.
            if strict && essential.contains(dir) {
                return Err(DaemonError::Watch {
                    path: dir.clone(),
                    source,
                });
            }
            tracing::warn!(path = %dir.display(), error = %source, "cannot watch this folder for manifest changes");
        }
    }
    Ok(watcher)
}

/// Watches manifest files and directories and sends one event per burst of relevant changes: the
/// first change starts a quiet period of `debounce`, every further change restarts it, and one event
/// goes out when it ends, or `max_wait` after the first change at the latest, so that continuous
/// writes cannot hold passes back for ever. The event carries the instant of the burst's first
/// change. The receiver holds at most one pending event (more would be redundant).
///
/// Files are watched through their parent directory, so an editor that writes a temp file and renames
/// it over the original is seen. Directories are watched recursively; hidden entries and files that
/// are not `*.yaml`/`*.yml` are ignored. The parent folder of every configured path is watched too:
/// when the path itself is replaced (deleted and recreated, renamed over, a symlink switched), or
/// resolves differently at the end of a burst, every watch is set up again before the event goes out.
/// Must be called inside a tokio runtime.
pub fn watch_manifests(
    paths: &[PathBuf],
    debounce: Duration,
    max_wait: Duration,
) -> Result<(ManifestWatcher, mpsc::Receiver<Instant>), DaemonError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<Raw>();
    let roots = paths.iter().map(|p| RootId::of(p)).collect();
    let arrivals = Arc::new(Mutex::new(HashMap::new()));
    let watcher = arm(paths, &raw_tx, &arrivals, true)?;
    let shared = Arc::new(Shared {
        paths: paths.to_vec(),
        raw_tx,
        arrivals,
        armed: Mutex::new(Armed {
            watcher: Some(watcher),
            roots,
        }),
    });

    let (tx, rx) = mpsc::channel(1);
    let task_shared = shared.clone();
    let max_wait = max_wait.max(debounce);
    let task = tokio::spawn(async move {
        while let Some(first) = raw_rx.recv().await {
            let start = Instant::now();
            let hard = start.checked_add(max_wait).unwrap_or(start);
            let mut root = first == Raw::Root;
            loop {
                let now = Instant::now();
                if now >= hard {
                    break;
                }
                let quiet_end = now.checked_add(debounce).unwrap_or(hard).min(hard);
                match tokio::time::timeout_at(quiet_end, raw_rx.recv()).await {
                    Ok(Some(raw)) => root |= raw == Raw::Root,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let shared = task_shared.clone();
            let rearmed = tokio::task::spawn_blocking(move || {
                if root || shared.roots_changed() {
                    shared.rearm();
                }
            })
            .await;
            if let Err(e) = rearmed {
                tracing::warn!(error = %e, "re-arming the manifest watcher failed");
            }
            match tx.try_send(start) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    });

    Ok((ManifestWatcher { shared, task }, rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_into_place_arrives_whole_and_a_write_in_place_does_not() {
        use notify::event::{CreateKind, DataChange, MetadataKind};
        let ev = |kind, paths: &[&str]| {
            paths.iter().fold(notify::Event::new(kind), |e, p| {
                e.add_path(PathBuf::from(p))
            })
        };
        let to = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            &["/m/a.yaml"],
        );
        assert_eq!(
            arrival_of(&to),
            Some((Arrival::Whole, &[PathBuf::from("/m/a.yaml")][..]))
        );
        let both = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/m/.a.yaml.tmp", "/m/a.yaml"],
        );
        assert_eq!(
            arrival_of(&both),
            Some((Arrival::Whole, &[PathBuf::from("/m/a.yaml")][..]))
        );
        for kind in [
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Any),
        ] {
            let e = ev(kind, &["/m/a.yaml"]);
            assert_eq!(arrival_of(&e).map(|(a, _)| a), Some(Arrival::InPlace));
        }
        for kind in [
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            EventKind::Remove(notify::event::RemoveKind::File),
        ] {
            assert_eq!(arrival_of(&ev(kind, &["/m/a.yaml"])), None);
        }
    }

    #[test]
    fn yaml_filter_ignores_hidden_and_foreign_files() {
        let d = Watched::Dir(PathBuf::from("/m"));
        assert!(d.covers(Path::new("/m/a.yaml")));
        assert!(d.covers(Path::new("/m/sub/b.yml")));
        assert!(d.covers(Path::new("/m/..data")));
        assert!(!d.covers(Path::new("/m/.a.yaml.swp")));
        assert!(!d.covers(Path::new("/m/.hidden/a.yaml")));
        assert!(!d.covers(Path::new("/m/a.yaml~")));
        assert!(!d.covers(Path::new("/m/4913")));
        assert!(!d.covers(Path::new("/other/a.yaml")));
        assert!(!d.covers(Path::new("/m")));
        let f = Watched::File(PathBuf::from("/m/x.conf"));
        assert!(f.covers(Path::new("/m/x.conf")));
        assert!(!f.covers(Path::new("/m/y.yaml")));
    }

    #[test]
    fn a_root_entry_is_its_own_name_or_a_data_swap_beside_it() {
        let root = Path::new("/srv/manifests");
        assert!(is_root_entry(root, Path::new("/srv/manifests")));
        assert!(is_root_entry(root, Path::new("/srv/..data")));
        assert!(!is_root_entry(root, Path::new("/srv/manifests.new")));
        assert!(!is_root_entry(root, Path::new("/srv/config.yaml")));
        assert!(!is_root_entry(root, Path::new("/srv/manifests/a.yaml")));
    }

    #[test]
    fn a_folder_inside_a_recursive_watch_is_not_downgraded() {
        let points = merge_points(vec![
            (PathBuf::from("/srv"), RecursiveMode::NonRecursive),
            (PathBuf::from("/srv/m"), RecursiveMode::Recursive),
            (PathBuf::from("/srv/m"), RecursiveMode::NonRecursive),
            (PathBuf::from("/srv/m/sub"), RecursiveMode::NonRecursive),
            (PathBuf::from("/srv/m/sub"), RecursiveMode::Recursive),
            (PathBuf::from("/srv"), RecursiveMode::NonRecursive),
        ]);
        assert_eq!(
            points,
            vec![
                (PathBuf::from("/srv"), RecursiveMode::NonRecursive),
                (PathBuf::from("/srv/m"), RecursiveMode::Recursive),
                (PathBuf::from("/srv/m/sub"), RecursiveMode::Recursive),
            ]
        );
    }
}
