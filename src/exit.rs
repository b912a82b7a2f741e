//! The exit statuses of the command line (README, "Command line and exit codes") as a type, and how a
//! command that gives up before attempting anything says why.

use std::process::ExitCode;

/// What a command's exit status tells a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: converged (`--once`), valid (`validate`), the plan was printed (`plan`), or a clean stop.
    Converged,
    /// 1: a pass ran but some links did not converge, or it was interrupted; `plan` could not list a
    /// project.
    NotConverged,
    /// 2: nothing was attempted: bad command line, invalid config or manifest, ledger held by another
    /// process, missing credentials.
    NotAttempted,
}

impl Exit {
    /// The numeric status, as README's table gives it.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Converged => 0,
            Exit::NotConverged => 1,
            Exit::NotAttempted => 2,
        }
    }

    /// The status after something that had to follow a pass failed (writing an output file): a
    /// success becomes "not converged"; a failure keeps its own status.
    pub(crate) fn then_failed(self) -> Exit {
        match self {
            Exit::Converged => Exit::NotConverged,
            other => other,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// Prints an error and its chain of causes, the way `anyhow` would, and returns exit status 2.
pub(crate) fn refuse(error: &dyn std::error::Error) -> ExitCode {
    refuse_while("", error)
}

/// `refuse`, naming what was being done (`what`, unless empty). Stderr, since logging may not be set up.
pub(crate) fn refuse_while(what: &str, error: &dyn std::error::Error) -> ExitCode {
    if what.is_empty() {
        eprintln!("atlas-linkd: error: {error}");
    } else {
        eprintln!("atlas-linkd: error: {what}: {error}");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    Exit::NotAttempted.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_readmes_table() {
        assert_eq!(Exit::Converged.code(), 0);
        assert_eq!(Exit::NotConverged.code(), 1);
        assert_eq!(Exit::NotAttempted.code(), 2);
    }

    #[test]
    fn a_failure_after_the_pass_fails_a_success_and_keeps_a_failure() {
        assert_eq!(Exit::Converged.then_failed(), Exit::NotConverged);
        assert_eq!(Exit::NotConverged.then_failed(), Exit::NotConverged);
        assert_eq!(Exit::NotAttempted.then_failed(), Exit::NotAttempted);
    }
}
