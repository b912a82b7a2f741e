//! `schema`: print the JSON Schema of the manifest format, for editors.

use crate::exit::Exit;
use crate::manifest::schema::manifest_schema_text;
use std::process::ExitCode;

/// Prints the schema on stdout; always exits 0 (it needs no config).
pub(crate) fn run() -> ExitCode {
    out!("{}", manifest_schema_text());
    Exit::Converged.into()
}
