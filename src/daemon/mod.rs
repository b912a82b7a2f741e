//! The daemon: its error type, and its building blocks re-exported: when a pass runs (`triggers`), the
//! manifest watcher (`watcher`), signal handling (`signals`), and the systemd notify protocol
//! (`notify`), which links are still on their way to `DONE` between passes (`ready`). The loop that
//! uses them is in `run`; it keeps the manifests with the one loader, `manifest::ManifestSet`.

mod notify;
mod ready;
mod run;
mod signals;
mod triggers;
mod watcher;

pub use notify::Notifier;
pub(crate) use run::run;
pub(crate) use signals::{SignalEvent, Signals};
pub(crate) use triggers::{Trigger, Triggers, Wake};
pub(crate) use watcher::ManifestWatcher;
pub use watcher::watch_manifests;

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

/// What went wrong in the daemon's plumbing.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "cannot watch {path} for manifest changes: {source}; check that it exists and is readable \
         (on Linux, raising fs.inotify.max_user_watches helps when the limit is reached)"
    )]
    Watch {
        path: PathBuf,
        #[source]
        source: ::notify::Error,
    },
    #[error("cannot install the handler for {signal}: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot send {message:?} to the service manager at NOTIFY_SOCKET={socket:?}: {source}")]
    Notify {
        socket: OsString,
        message: String,
        #[source]
        source: io::Error,
    },
}
