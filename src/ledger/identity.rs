//! Whether the ledger file and its lock file at their paths are still the ones this process holds:
//! a state folder deleted or replaced under a running process would let a second one lock a fresh
//! file at the same path and create beside it.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity: the device and inode it lives at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(super) fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId {
            dev: metadata.dev(),
            ino: metadata.ino(),
        }
    }
}

/// The ledger and lock files a writing process holds, as they were when it took them.
#[derive(Debug, Clone)]
pub(crate) struct HeldFiles {
    pub(super) ledger_path: PathBuf,
    /// `None` when a file could not be looked at right after it was taken: nothing at its path can
    /// be vouched for, so every check fails.
    pub(super) ledger: Option<FileId>,
    pub(super) lock_path: PathBuf,
    pub(super) lock: Option<FileId>,
}

impl HeldFiles {
    /// Looks at both paths now. A missing path, or one that names another file, is a replacement.
    pub(crate) fn check(&self) -> Result<(), LedgerReplaced> {
        let lock = differs(&self.lock_path, self.lock);
        let ledger = differs(&self.ledger_path, self.ledger);
        let what = match (ledger, lock) {
            (None, None) => return Ok(()),
            (Some(l), None) => format!("the ledger file {l}"),
            (None, Some(k)) => format!("the lock file {k}"),
            (Some(l), Some(k)) => format!("the ledger file {l} and the lock file {k}"),
        };
        Err(LedgerReplaced {
            ledger: self.ledger_path.clone(),
            lock: self.lock_path.clone(),
            what,
        })
    }
}

/// How the file at `path` differs from `held`, if it does.
fn differs(path: &Path, held: Option<FileId>) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(m) if Some(FileId::of(&m)) == held => None,
        Ok(_) => Some("was replaced by another file"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("was deleted"),
        Err(_) => Some("cannot be looked at"),
    }
}

/// The ledger or its lock file is no longer the one this process holds. Whatever this process
/// writes now goes to a file nobody will read, and another atlas-linkd may already hold a fresh
/// lock at the same path: creating on would duplicate connections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LedgerReplaced {
    pub ledger: PathBuf,
    pub lock: PathBuf,
    what: String,
}

impl fmt::Display for LedgerReplaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} since this process took them (ledger {}, lock {}); another atlas-linkd may now hold a \
             new lock at the same path, so this one stops creating and exits. Keep the state folder in \
             place while atlas-linkd runs; restarted, it takes the lock again and rebuilds a lost \
             ledger by adopting what Atlas lists",
            self.what,
            self.ledger.display(),
            self.lock.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Ledger, LedgerHandle};
    use super::*;

    fn open(dir: &Path) -> (PathBuf, LedgerHandle) {
        let path = dir.join("state").join("ledger.db");
        let handle = LedgerHandle::spawn(Ledger::open(&path).unwrap());
        (path, handle)
    }

    #[test]
    fn the_files_just_opened_pass_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (_, handle) = open(dir.path());
        handle.check_held().unwrap();
        handle.check_held().unwrap();
    }

    #[test]
    fn a_deleted_state_folder_fails_the_check_naming_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (path, handle) = open(dir.path());
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        let err = handle.check_held().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the ledger file was deleted and the lock file was deleted"),
            "{text}"
        );
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(
            text.contains(&super::super::lock_path(&path).display().to_string()),
            "{text}"
        );
        assert!(text.contains("stops creating"), "{text}");
    }

    #[test]
    fn a_state_folder_recreated_by_a_second_process_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (path, handle) = open(dir.path());
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        // What a second process does at the same paths: a fresh ledger and a fresh lock it holds.
        let second = Ledger::open(&path).unwrap();
        let err = handle.check_held().unwrap_err().to_string();
        assert!(
            err.contains("the ledger file was replaced by another file and the lock file was replaced by another file"),
            "{err}"
        );
        drop(second);
    }

    #[test]
    fn a_lock_file_replaced_alone_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (path, handle) = open(dir.path());
        let lock = super::super::lock_path(&path);
        let other = dir.path().join("other.lock");
        std::fs::write(&other, "1\n").unwrap();
        std::fs::rename(&other, &lock).unwrap();
        let err = handle.check_held().unwrap_err().to_string();
        assert!(err.starts_with("the lock file was replaced"), "{err}");
    }

    #[test]
    fn a_ledger_moved_away_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (path, handle) = open(dir.path());
        std::fs::rename(&path, dir.path().join("moved.db")).unwrap();
        let err = handle.check_held().unwrap_err().to_string();
        assert!(err.starts_with("the ledger file was deleted"), "{err}");
    }

    #[test]
    fn a_read_only_ledger_holds_nothing_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let (path, handle) = open(dir.path());
        handle.check_held().unwrap();
        let read_only = LedgerHandle::spawn(Ledger::open_read_only(&path).unwrap());
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        read_only.check_held().unwrap();
    }
}
