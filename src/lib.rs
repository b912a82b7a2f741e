//! atlas-linkd: keeps MongoDB Atlas stream-processing private link connections in line with YAML manifests.
//!
//! Data flows one way: `manifest` loads YAML into a `model::DesiredState`; `plan` compares it, purely,
//! with the `ledger` and with what `atlas` lists; `reconcile` carries the plan out against Atlas and
//! records every outcome in the `ledger` and in `metrics`; `report` tells the user. `daemon` decides
//! when a pass runs; `cli` is the command line. `demo` (default `fake` feature) runs one
//! pass against the bundled fake Atlas, which is its own crate, `fake-atlas`.
//! See ARCHITECTURE.md for the map and the invariants.

/// `println!` that does not panic when stdout is closed (`atlas-linkd ledger | head`): what is printed is
/// best effort; the exit status is what scripts rely on.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` that does not panic when stdout is closed; see `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod atlas;
pub mod cli;
pub mod config;
pub mod daemon;
#[cfg(feature = "fake")]
pub(crate) mod demo;
pub mod endpoint;
pub mod exit;
/// Fuzz targets for `tests/fuzz/`; not part of the library's surface.
#[doc(hidden)]
pub mod fuzzing;
pub mod ledger;
pub(crate) mod lock;
pub(crate) mod logging;
pub mod manifest;
pub(crate) mod memory;
pub mod metrics;
pub mod model;
pub(crate) mod once;
pub(crate) mod output_file;
pub(crate) mod phases;
pub mod plan;
pub(crate) mod progress;
pub mod reconcile;
pub mod report;
pub(crate) mod wait;
pub mod wiring;
