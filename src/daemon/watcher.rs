//! The manifest watcher: file-system events on the manifest files and directories, filtered and
//! debounced into one event per burst of changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::DaemonError;

/// Keeps the file watcher and its debounce task alive; dropping it stops both.
pub struct ManifestWatcher {
    _watcher: RecommendedWatcher,
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

fn event_matters(kind: &EventKind) -> bool {
    // Our own loader opens and reads the manifests: counting those accesses would make every pass
    // trigger the next one.
    !matches!(kind, EventKind::Access(_))
}

/// Watches manifest files and directories and sends `()` once per burst of relevant changes: the
/// first change starts a quiet period of `debounce`, every further change restarts it, and one event
/// goes out when it ends. The receiver holds at most one pending event (more would be redundant).
///
/// Files are watched through their parent directory, so an editor that writes a temp file and renames
/// it over the original is seen. Directories are watched recursively; hidden entries and files that
/// are not `*.yaml`/`*.yml` are ignored. Must be called inside a tokio runtime.
pub fn watch_manifests(
    paths: &[PathBuf],
    debounce: Duration,
) -> Result<(ManifestWatcher, mpsc::Receiver<()>), DaemonError> {
    let mut targets = Vec::new();
    let mut watch_points: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    for p in paths {
        // Canonical paths, because the watcher reports them that way (symlinked /tmp and the like).
        let canon = std::fs::canonicalize(p).map_err(|e| DaemonError::Watch {
            path: p.clone(),
            source: notify::Error::io(e),
        })?;
        if canon.is_dir() {
            watch_points.push((canon.clone(), RecursiveMode::Recursive));
            targets.push(Watched::Dir(canon));
        } else {
            let parent = canon
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/"));
            watch_points.push((parent, RecursiveMode::NonRecursive));
            targets.push(Watched::File(canon));
        }
    }

    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let filter = targets.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        match res {
            Ok(ev) => {
                if event_matters(&ev.kind) && ev.paths.iter().any(|p| filter.iter().any(|t| t.covers(p)))
                {
                    let _ = raw_tx.send(());
                }
            }
            // A watcher error (queue overflow, a watched dir removed) may have hidden a change:
            // a pass is the safe answer.
            Err(e) => {
                tracing::warn!(error = %e, "manifest watcher reported an error; running a pass to be safe");
                let _ = raw_tx.send(());
            }
        }
    })
    .map_err(|source| DaemonError::Watch {
        path: paths.first().cloned().unwrap_or_default(),
        source,
    })?;

    watch_points.sort();
    watch_points.dedup();
    for (dir, mode) in &watch_points {
        watcher
            .watch(dir, *mode)
            .map_err(|source| DaemonError::Watch {
                path: dir.clone(),
                source,
            })?;
    }

    let (tx, rx) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(debounce, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            match tx.try_send(()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
    });

    Ok((
        ManifestWatcher {
            _watcher: watcher,
            task,
        },
        rx,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
