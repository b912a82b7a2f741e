//! The `atlas-linkd` binary: parses the command line and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = atlas_linkd::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("atlas-linkd: error: could not start the async runtime: {e}");
            return atlas_linkd::exit::Exit::NotAttempted.into();
        }
    };
    runtime.block_on(atlas_linkd::cli::run(cli))
}
