//! Files that a command writes for other programs (`--outputs-file`, `--report-file`): the target is
//! checked before anything is attempted, and written atomically (a temporary file beside it, then a
//! rename), so a reader sees the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why an output file cannot be, or could not be, written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputFileError {
    #[error(
        "{flag} {path}: it is a symbolic link; atlas-linkd does not write through links (give the path of the file itself)"
    )]
    Symlink { flag: &'static str, path: PathBuf },
    #[error(
        "{flag} {path}: it exists and is not a regular file (give the path of a file, which is replaced)"
    )]
    NotRegular { flag: &'static str, path: PathBuf },
    #[error(
        "{flag} {path}: its folder {folder} does not exist or is not a folder (create it first)"
    )]
    NoFolder {
        flag: &'static str,
        path: PathBuf,
        folder: PathBuf,
    },
    #[error("{flag} {path}: could not look at it")]
    Inspect {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {path}: could not write it (the previous file, if any, is unchanged)")]
    Write {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The folder the file goes in: its parent, or the working directory for a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses a target that could not be replaced by a regular file safely: a symbolic link (whoever
/// placed it chose what it points at), anything that exists and is not a regular file (a folder, a
/// FIFO, a device), a path that names no file, or one whose folder is missing. `flag` names the
/// option in messages. Called before any Atlas call, so a bad target costs nothing.
pub(crate) fn check_target(flag: &'static str, path: &Path) -> Result<(), OutputFileError> {
    if path.file_name().is_none() {
        return Err(OutputFileError::NotRegular {
            flag,
            path: path.to_owned(),
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(OutputFileError::Symlink {
                flag,
                path: path.to_owned(),
            });
        }
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(OutputFileError::NotRegular {
                flag,
                path: path.to_owned(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(OutputFileError::Inspect {
                flag,
                path: path.to_owned(),
                source,
            });
        }
    }
    let folder = folder_of(path);
    if !std::fs::metadata(folder).is_ok_and(|m| m.is_dir()) {
        return Err(OutputFileError::NoFolder {
            flag,
            path: path.to_owned(),
            folder: folder.to_owned(),
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically with permissions `mode`: a temporary file in the same
/// folder, flushed to disk, then renamed over the target, and the folder flushed so the rename
/// survives a crash. The target is checked again first (it may have changed during the pass); the
/// rename replaces a directory entry and never follows a link, so a link placed after the check is
/// replaced, not written through.
pub(crate) fn write_atomic(
    flag: &'static str,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), OutputFileError> {
    check_target(flag, path)?;
    let folder = folder_of(path);
    let write_err = |source| OutputFileError::Write {
        flag,
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".atlas-linkd-")
        .tempfile_in(folder)
        .map_err(write_err)?;
    tmp.write_all(bytes).map_err(write_err)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    // Without this, a crash right after the rename can bring back the old file.
    std::fs::File::open(folder)
        .and_then(|d| d.sync_all())
        .map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_in_an_existing_folder_is_written_whole_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        check_target("--outputs-file", &path).unwrap();
        write_atomic("--outputs-file", &path, b"[]\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[]\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // An existing regular file is replaced, and nothing is left beside it.
        write_atomic("--outputs-file", &path, b"[1]\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1]\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn links_folders_fifos_and_missing_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let dangling = dir.path().join("dangling.json");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        for path in [&link, &dangling] {
            let e = check_target("--report-file", path).unwrap_err();
            assert!(matches!(e, OutputFileError::Symlink { .. }), "{e}");
            let e = write_atomic("--report-file", path, b"x", 0o644).unwrap_err();
            assert!(matches!(e, OutputFileError::Symlink { .. }), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!dir.path().join("nowhere").exists());

        let e = check_target("--report-file", dir.path()).unwrap_err();
        assert!(matches!(e, OutputFileError::NotRegular { .. }), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = check_target("--report-file", &fifo).unwrap_err();
        assert!(matches!(e, OutputFileError::NotRegular { .. }), "{e}");
        let e = check_target("--report-file", &dir.path().join("no/such/out.json")).unwrap_err();
        assert!(matches!(e, OutputFileError::NoFolder { .. }), "{e}");
        assert!(e.to_string().contains("--report-file"), "{e}");
    }
}
