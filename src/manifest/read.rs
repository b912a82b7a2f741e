//! Reading one manifest file's bytes, and nothing but a small regular file inside the configured
//! manifest paths: the one place a manifest is opened.
//!
//! A manifest folder may be writable by people who cannot read the daemon's secrets, and problems
//! quote what they read, so what is read is bounded three ways:
//! - where: the file's resolved path (symbolic links followed) must lie inside a configured manifest
//!   path, resolved likewise, and never inside `$CREDENTIALS_DIRECTORY`. A link inside the folder to
//!   another file of the folder is fine (Kubernetes ConfigMap mounts are made of them); a link out of
//!   it is refused by name, without opening the target;
//! - what: a regular file only. A FIFO would block the reader forever, a device could be endless or
//!   have side effects on open;
//! - how much: at most `limits.manifest_file_max_bytes`, checked on the metadata before opening, on
//!   the opened file (it may have been swapped in between) and while reading (it may grow).

use super::Problems;
use super::problem::file_problem;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `limits.manifest_file_max_bytes` when the config does not say: 64 MiB, some 200,000 links, far
/// above any real manifest and far below what would strain the host.
pub const DEFAULT_MANIFEST_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The environment variable systemd sets to the folder of the service's credentials.
const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";

/// What the loader may read: how large a manifest may be, and the folder it must never read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLimits {
    max_bytes: u64,
    credentials_dir: Option<PathBuf>,
}

impl Default for ReadLimits {
    /// The default size limit, and `$CREDENTIALS_DIRECTORY` from the process environment.
    fn default() -> Self {
        ReadLimits::new(DEFAULT_MANIFEST_FILE_MAX_BYTES)
    }
}

impl ReadLimits {
    /// Files over `max_bytes` are refused; `$CREDENTIALS_DIRECTORY` is taken from the process
    /// environment (as the credentials are).
    pub fn new(max_bytes: u64) -> ReadLimits {
        let credentials_dir = std::env::var_os(CREDENTIALS_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        ReadLimits {
            max_bytes,
            credentials_dir,
        }
    }

    /// The same size limit with another credentials folder (for tests).
    pub fn with_credentials_dir(self, dir: Option<PathBuf>) -> ReadLimits {
        ReadLimits {
            credentials_dir: dir,
            ..self
        }
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }
}

/// The configured manifest paths, resolved, as a file's resolved path is checked against them.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    paths: &'a [PathBuf],
    roots: Vec<PathBuf>,
    credentials: Option<PathBuf>,
    limits: &'a ReadLimits,
}

impl<'a> Reader<'a> {
    pub(super) fn new(paths: &'a [PathBuf], limits: &'a ReadLimits) -> Reader<'a> {
        Reader {
            paths,
            roots: resolve_all(paths),
            // A credentials folder that does not resolve holds nothing to protect.
            credentials: limits
                .credentials_dir
                .as_deref()
                .and_then(|d| std::fs::canonicalize(d).ok()),
            limits,
        }
    }

    /// The configured manifest paths, as given.
    pub(super) fn paths(&self) -> &'a [PathBuf] {
        self.paths
    }

    /// Whether `real` (a resolved path) lies inside a configured manifest path.
    pub(super) fn inside_roots(&self, real: &Path) -> bool {
        self.roots.iter().any(|root| real.starts_with(root))
    }

    /// Whether `real` (a resolved path) lies inside `$CREDENTIALS_DIRECTORY`.
    pub(super) fn in_credentials(&self, real: &Path) -> bool {
        self.credentials
            .as_deref()
            .is_some_and(|c| real.starts_with(c))
    }

    /// The bytes of the manifest at `path`, or why it is refused. Never blocks on what the file is,
    /// and never reads more than the limit (plus one byte, to tell that it is over).
    pub(super) fn read(&self, path: &Path) -> Result<Vec<u8>, Problems> {
        let refuse = |message: String| Problems(vec![file_problem(path, message)]);
        let real = std::fs::canonicalize(path)
            .map_err(|e| refuse(format!("cannot read this manifest file: {e}")))?;
        if self.in_credentials(&real) {
            return Err(refuse(
                "is inside $CREDENTIALS_DIRECTORY, which holds the daemon's secrets: atlas-linkd never \
                 reads a manifest there; remove it (or the link to it) from the manifest folder"
                    .into(),
            ));
        }
        // A symlink-swap deploy may have moved a root since `new` resolved it: resolve again before
        // refusing.
        if !self.inside_roots(&real) && !resolve_all(self.paths).iter().any(|r| real.starts_with(r))
        {
            return Err(refuse(
                "is a symbolic link (or lies under one) that leads outside every configured manifest \
                 path: atlas-linkd does not follow it, so that a link cannot make it read another \
                 file; copy the manifest into the folder, or list its real path in the config's \
                 `manifests`"
                    .into(),
            ));
        }
        let meta = std::fs::metadata(&real)
            .map_err(|e| refuse(format!("cannot read this manifest file: {e}")))?;
        self.check_kind_and_size(&meta).map_err(refuse)?;
        // O_NONBLOCK: should a FIFO or device have been swapped in since the check, the open (and
        // any read) returns at once instead of waiting for a writer. O_NOFOLLOW: `real` has no link
        // left in its last component, so one found there now was put in since.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&real)
            .map_err(|e| refuse(format!("cannot read this manifest file: {e}")))?;
        let opened = file
            .metadata()
            .map_err(|e| refuse(format!("cannot read this manifest file: {e}")))?;
        self.check_kind_and_size(&opened).map_err(refuse)?;
        let max = self.limits.max_bytes;
        // Capacity from the size just checked (at most the limit): one allocation, no doubling.
        let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| refuse(format!("cannot read this manifest file: {e}")))?;
        if bytes.len() as u64 > max {
            return Err(refuse(too_large(None, max)));
        }
        Ok(bytes)
    }

    fn check_kind_and_size(&self, meta: &std::fs::Metadata) -> Result<(), String> {
        let kind = meta.file_type();
        let what = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if !kind.is_file() {
            "not a regular file"
        } else {
            if meta.len() > self.limits.max_bytes {
                return Err(too_large(Some(meta.len()), self.limits.max_bytes));
            }
            return Ok(());
        };
        Err(format!(
            "is {what}: a manifest must be a regular file (reading anything else could block or \
             never end); remove it from the manifest folder or replace it with a file"
        ))
    }
}

fn too_large(size: Option<u64>, max: u64) -> String {
    let size = match size {
        Some(s) => format!("{s} bytes"),
        None => "still growing".to_owned(),
    };
    format!(
        "is too large ({size}; at most {max} bytes, `limits.manifest_file_max_bytes`): split it \
         into several files, or raise the limit in the config"
    )
}

/// Each configured path resolved (symbolic links followed); a path that does not resolve is left
/// out (discovery reports it).
fn resolve_all(paths: &[PathBuf]) -> Vec<PathBuf> {
    paths
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect()
}
