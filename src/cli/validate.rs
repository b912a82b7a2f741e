//! `validate`: load and check the config and every manifest; no network.

use super::load::load;
use crate::exit::Exit;
use std::path::Path;
use std::process::ExitCode;

/// Exit 0 when the config and every manifest are valid, 2 (every problem printed) when not.
pub(crate) fn run(flag: Option<&Path>) -> ExitCode {
    let Some((config, desired)) = load(flag) else {
        return Exit::NotAttempted.into();
    };
    outln!(
        "ok: {} links in {} projects ({})",
        desired.link_count(),
        desired.projects.len(),
        config.source.display()
    );
    Exit::Converged.into()
}
