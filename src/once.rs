//! The `--once` pass: one pass with SIGINT/SIGTERM wired to a drain, its summary on stdout, its exit
//! status, and the metrics file; shared by the `--once` command and `demo`.

use crate::exit::{Exit, refuse};
use crate::logging::TERMINAL_BAR;
use crate::model::DesiredState;
use crate::progress::{BarProgress, LogProgress, Progress};
use crate::reconcile::{PassOptions, Reconciler};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs one pass with SIGINT/SIGTERM wired to a drain, and prints its report. Shared by `--once` and `demo`.
pub(crate) async fn run_once_pass(
    reconciler: &Reconciler,
    desired: &DesiredState,
    show_bar: bool,
) -> ExitCode {
    once_pass(reconciler, desired, show_bar).await.into()
}

/// `run_once_pass`, as the `Exit` it ends with, so that what follows the pass (the metrics file) can
/// still turn success into failure.
pub(crate) async fn once_pass(
    reconciler: &Reconciler,
    desired: &DesiredState,
    show_bar: bool,
) -> Exit {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
    let progress: Arc<dyn Progress> = if show_bar {
        Arc::new(BarProgress::new())
    } else {
        Arc::new(LogProgress::new())
    };
    // `--once` has no resync to save it: it looks at every managed project, and waits for creates
    // that Atlas may still be committing, before it can say "converged".
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        cancel: cancel.clone(),
        progress: Some(progress),
    };
    let result = reconciler.run_pass(desired, &options).await;
    signals.abort();
    match result {
        Ok(report) => {
            out!("{}", report.to_text());
            crate::phases::mark("report printed");
            report.exit()
        }
        Err(e) => {
            // The pass started: not "nothing attempted", whatever `refuse` returns.
            let _ = refuse(&e);
            Exit::NotConverged
        }
    }
}

/// First SIGINT/SIGTERM: stop starting calls and let in-flight ones finish and be recorded.
/// A second one exits at once.
pub(crate) async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    TERMINAL_BAR.write_around(|| {
        eprintln!("atlas-linkd: stopping: finishing calls in flight (signal again to exit at once)")
    });
    cancel.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    std::process::exit(Exit::NotConverged.code().into());
}

/// Why the metrics file cannot be written, or could not be.
///
/// The file is written to a temporary file beside it and renamed over it, which replaces whatever
/// the path names: a device (`/dev/null`), a FIFO, or a symbolic link, not what the link points to.
/// So the target must be a regular file or not exist yet, in a directory that exists.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MetricsFileError {
    #[error(
        "the metrics file {} is a symbolic link; atlas-linkd writes the file by replacing it, which would replace the link and not what it points to: name the file itself",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "the metrics file {} exists and is {kind}, not a regular file; writing it would replace it with one: name a file in node_exporter's textfile directory",
        path.display()
    )]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("cannot check the metrics file {}: {source}; fix the path or its permissions", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the metrics file {}: its directory {} cannot be used: {source}; create it, or name a file in an existing directory",
        path.display(), dir.display()
    )]
    Dir {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the metrics file {}: {} is not a directory; name a file in a directory",
        path.display(), dir.display()
    )]
    NotADir { path: PathBuf, dir: PathBuf },
    #[error(
        "the metrics file {}: cannot create a file in its directory {}: {source}{}",
        path.display(), dir.display(), io_advice(source)
    )]
    NotWritable {
        path: PathBuf,
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not write the metrics file {}: {source}{}", path.display(), io_advice(source))]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to do about a failed write, from what the OS said (with its "; "), or nothing when the
/// OS error says all there is to say.
fn io_advice(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => "; free space on its file system",
        Some(libc::EACCES | libc::EPERM) => "; check the directory's permissions",
        Some(libc::EROFS) => "; the file system is read-only: name a file on a writable one",
        Some(libc::ENOENT) => "; the directory is gone: create it again",
        _ => "",
    }
}

/// What a file type is, in words, for a path that is not a regular file.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The directory the metrics file (and its temporary file) goes in.
fn metrics_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses a metrics file path that names anything but a regular file (a symbolic link included).
fn check_target(path: &Path) -> Result<(), MetricsFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(MetricsFileError::Symlink {
            path: path.to_owned(),
        }),
        Ok(m) if !m.file_type().is_file() => Err(MetricsFileError::NotRegular {
            path: path.to_owned(),
            kind: kind_of(m.file_type()),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MetricsFileError::Inspect {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks, before the pass makes any call, that the metrics file can be written: the target is a
/// regular file or does not exist, and its directory exists and takes a new file (a temporary file
/// is created there and removed at once).
pub(crate) fn check_metrics_file(path: &Path) -> Result<(), MetricsFileError> {
    check_target(path)?;
    let dir = metrics_dir(path);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(MetricsFileError::NotADir {
                path: path.to_owned(),
                dir: dir.to_owned(),
            });
        }
        Err(source) => {
            return Err(MetricsFileError::Dir {
                path: path.to_owned(),
                dir: dir.to_owned(),
                source,
            });
        }
    }
    let probe =
        tempfile::NamedTempFile::new_in(dir).map_err(|source| MetricsFileError::NotWritable {
            path: path.to_owned(),
            dir: dir.to_owned(),
            source,
        })?;
    probe
        .close()
        .map_err(|source| MetricsFileError::NotWritable {
            path: path.to_owned(),
            dir: dir.to_owned(),
            source,
        })
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename. The
/// target is checked again just before (it may have been replaced during the pass).
pub(crate) fn write_metrics_file(path: &Path, text: &str) -> Result<(), MetricsFileError> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let write_err = |source| MetricsFileError::Write {
        path: path.to_owned(),
        source,
    };
    check_target(path)?;
    let mut tmp = tempfile::NamedTempFile::new_in(metrics_dir(path)).map_err(write_err)?;
    tmp.write_all(text.as_bytes()).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    // node_exporter usually runs as another user: the metrics are not secret.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(write_err)?;
    check_target(path)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_or_a_new_name_in_a_directory_passes() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let new = dir.path().join("new.prom");
        check_metrics_file(&new).expect("a new name in an existing directory");
        std::fs::write(&new, "old\n").expect("write");
        check_metrics_file(&new).expect("an existing regular file");

        let link = dir.path().join("link.prom");
        std::os::unix::fs::symlink(&new, &link).expect("symlink");
        assert!(matches!(
            check_metrics_file(&link),
            Err(MetricsFileError::Symlink { .. })
        ));
        assert!(matches!(
            check_metrics_file(dir.path()),
            Err(MetricsFileError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        assert!(matches!(
            check_metrics_file(&dir.path().join("gone").join("m.prom")),
            Err(MetricsFileError::Dir { .. })
        ));
        assert!(matches!(
            check_metrics_file(&new.join("m.prom")),
            Err(MetricsFileError::Inspect { .. } | MetricsFileError::NotADir { .. })
        ));
        // The probe left nothing behind.
        let names = std::fs::read_dir(dir.path()).expect("read_dir").count();
        assert_eq!(names, 2);
    }

    #[test]
    fn the_write_replaces_a_regular_file_and_refuses_a_link_that_appeared_since() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("m.prom");
        std::fs::write(&path, "old\n").expect("write");
        write_metrics_file(&path, "new\n").expect("the write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new\n");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o644);

        let target = dir.path().join("target");
        std::fs::write(&target, "keep\n").expect("write");
        std::fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        assert!(matches!(
            write_metrics_file(&path, "new\n"),
            Err(MetricsFileError::Symlink { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep\n");
    }

    #[test]
    fn the_advice_follows_the_os_error() {
        let advice = |errno| io_advice(&std::io::Error::from_raw_os_error(errno));
        assert!(advice(libc::ENOSPC).contains("free space"));
        assert!(advice(libc::EACCES).contains("permissions"));
        assert!(advice(libc::EROFS).contains("read-only"));
        assert_eq!(advice(libc::EIO), "");
    }
}
