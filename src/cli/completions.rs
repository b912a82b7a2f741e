//! `completions SHELL`: the shell completion script for the whole command line, on stdout.

use crate::exit::{Exit, refuse_while};
use clap_complete::{Generator, Shell};
use std::io::Write;
use std::process::ExitCode;

/// The name completions are registered for: what users type, whatever the binary file is called.
const BIN_NAME: &str = "atlas-linkd";

/// Writes `shell`'s completion script for `cmd` (the whole command line) to stdout.
pub(crate) fn run(shell: Shell, cmd: clap::Command) -> ExitCode {
    let script = match script(shell, cmd) {
        Ok(script) => script,
        Err(e) => return refuse_while("generating the completion script", &e),
    };
    write_stdout(&script, "writing the completion script")
}

/// The script as bytes, so that a failed write to stdout can be reported instead of panicking.
fn script(shell: Shell, mut cmd: clap::Command) -> Result<Vec<u8>, std::io::Error> {
    cmd.set_bin_name(BIN_NAME);
    cmd.build();
    let mut buf = Vec::new();
    shell.try_generate(&cmd, &mut buf)?;
    Ok(buf)
}

/// Writes `bytes` to stdout. A closed pipe (`| head`) is the reader's choice, not an error; any other
/// failure (a full disk behind `>`) exits 2 so a packaging script does not ship a truncated file.
pub(super) fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Exit::Converged.into(),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Converged.into(),
        Err(e) => refuse_while(what, &e),
    }
}
