//! Files that `--once` writes for other programs (`--metrics-file`, `--outputs-file`,
//! `--report-file`): the target is checked before anything is attempted, and written atomically (a
//! temporary file beside it, then a rename), so a reader sees the old file or the new one, never half
//! of one, and a device, a FIFO or a link placed at the path is refused, never replaced.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why an output file cannot be, or could not be, written. `flag` names the option.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OutputFileError {
    #[error(
        "{flag} {}: it is a symbolic link; atlas-linkd writes the file by replacing it, which would replace the link and not what it points to: give the path of the file itself",
        path.display()
    )]
    Symlink { flag: &'static str, path: PathBuf },
    #[error(
        "{flag} {}: it exists and is {kind}, not a regular file; writing it would replace it with one: give the path of a regular file",
        path.display()
    )]
    NotRegular {
        flag: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("{flag} {}: could not look at it; fix the path or its permissions", path.display())]
    Inspect {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{flag} {}: its folder {} does not exist; create it, or give a file in an existing folder",
        path.display(), folder.display()
    )]
    NoFolder {
        flag: &'static str,
        path: PathBuf,
        folder: PathBuf,
    },
    #[error(
        "{flag} {}: its folder {} cannot be used; fix its permissions, or give a file in another folder",
        path.display(), folder.display()
    )]
    Folder {
        flag: &'static str,
        path: PathBuf,
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {}: {} is not a folder; give a file in a folder", path.display(), folder.display())]
    NotAFolder {
        flag: &'static str,
        path: PathBuf,
        folder: PathBuf,
    },
    #[error(
        "{flag} {}: cannot create a file in its folder {}{}",
        path.display(), folder.display(), io_advice(source)
    )]
    NotWritable {
        flag: &'static str,
        path: PathBuf,
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{flag} {}: could not write it (the previous file, if any, is unchanged){}",
        path.display(), io_advice(source)
    )]
    Write {
        flag: &'static str,
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
        Some(libc::EACCES | libc::EPERM) => "; check the folder's permissions",
        Some(libc::EROFS) => "; the file system is read-only: give a file on a writable one",
        Some(libc::ENOENT) => "; the folder is gone: create it again",
        _ => "",
    }
}

/// What a file type is, in words, for a path that is not a regular file.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a folder"
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

/// The folder the file (and its temporary file) goes in: its parent, or the working directory for
/// a bare file name.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Refuses a path that names anything but a regular file or nothing yet: a symbolic link (whoever
/// placed it chose what it points at; dangling ones too), a folder, a FIFO, a device.
fn check_entry(flag: &'static str, path: &Path) -> Result<(), OutputFileError> {
    if path.file_name().is_none() {
        return Err(OutputFileError::NotRegular {
            flag,
            path: path.to_owned(),
            kind: "not a file name",
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(OutputFileError::Symlink {
            flag,
            path: path.to_owned(),
        }),
        Ok(m) if !m.file_type().is_file() => Err(OutputFileError::NotRegular {
            flag,
            path: path.to_owned(),
            kind: kind_of(m.file_type()),
        }),
        Ok(_) => Ok(()),
        // Nothing there yet, or a parent that is not a folder: the folder check says which.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(source) => Err(OutputFileError::Inspect {
            flag,
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks, before any Atlas call, that `path` can be written: it is a regular file or does not
/// exist, and its folder exists and takes a new file (a temporary file is created there and removed
/// at once), so a bad target costs nothing and is not found out after the pass has changed Atlas.
pub(crate) fn check_target(flag: &'static str, path: &Path) -> Result<(), OutputFileError> {
    check_entry(flag, path)?;
    let folder = folder_of(path);
    match std::fs::metadata(folder) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(OutputFileError::NotAFolder {
                flag,
                path: path.to_owned(),
                folder: folder.to_owned(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(OutputFileError::NoFolder {
                flag,
                path: path.to_owned(),
                folder: folder.to_owned(),
            });
        }
        Err(source) => {
            return Err(OutputFileError::Folder {
                flag,
                path: path.to_owned(),
                folder: folder.to_owned(),
                source,
            });
        }
    }
    let not_writable = |source| OutputFileError::NotWritable {
        flag,
        path: path.to_owned(),
        folder: folder.to_owned(),
        source,
    };
    tempfile::Builder::new()
        .prefix(".atlas-linkd-")
        .tempfile_in(folder)
        .map_err(not_writable)?
        .close()
        .map_err(not_writable)
}

/// Writes `bytes` to `path` atomically with permissions `mode`: a temporary file in the same
/// folder, flushed to disk, then renamed over the target, and the folder flushed so the rename
/// survives a crash. The target is checked again just before the rename (it may have been replaced
/// during the pass); the rename replaces a directory entry and never follows a link.
pub(crate) fn write_atomic(
    flag: &'static str,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), OutputFileError> {
    check_entry(flag, path)?;
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
    check_entry(flag, path)?;
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
        // An existing regular file is replaced, and nothing is left beside it (the probe neither).
        check_target("--outputs-file", &path).unwrap();
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
        assert!(
            matches!(
                e,
                OutputFileError::NotRegular {
                    kind: "a folder",
                    ..
                }
            ),
            "{e}"
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = check_target("--report-file", &fifo).unwrap_err();
        assert!(
            matches!(e, OutputFileError::NotRegular { kind: "a FIFO", .. }),
            "{e}"
        );
        let e = check_target("--report-file", &dir.path().join("no/such/out.json")).unwrap_err();
        assert!(matches!(e, OutputFileError::NoFolder { .. }), "{e}");
        assert!(e.to_string().contains("--report-file"), "{e}");
        let e = check_target("--report-file", &target.join("out.json")).unwrap_err();
        assert!(matches!(e, OutputFileError::NotAFolder { .. }), "{e}");
    }

    #[test]
    fn a_link_that_appeared_since_the_check_is_refused_at_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        check_target("--metrics-file", &path).unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = write_atomic("--metrics-file", &path, b"new\n", 0o644).unwrap_err();
        assert!(matches!(e, OutputFileError::Symlink { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
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
