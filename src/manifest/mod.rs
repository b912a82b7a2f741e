//! Moving to a folder, one concept per file (this commit only moves the file).

mod walk;
pub use walk::*;
