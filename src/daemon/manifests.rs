//! The daemon's view of the manifests is the one loader's: `manifest::ManifestSet` keeps the last good
//! version of every file, so that a file which turns invalid keeps its links declared (they are never
//! orphaned by a typo) while the other files move on. Re-exported here for the daemon's code.

pub use crate::manifest::{ManifestSet, Refresh};
