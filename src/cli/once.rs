//! `--once`: load, start, one pass (see `crate::once`), the metrics file, shut down.

use super::load::{env, load};
use crate::exit::{Exit, refuse};
use crate::logging::init_logging;
use crate::metrics::Metrics;
use crate::once::{run_once_pass, write_metrics_file};
use crate::phases;
use crate::wiring::start;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// `--once`: one pass, a summary on stdout, exit 0 / 1 / 2.
pub(crate) async fn run(flag: Option<&Path>, metrics_file: Option<&Path>) -> ExitCode {
    phases::begin();
    let Some((config, desired)) = load(flag) else {
        return Exit::NotAttempted.into();
    };
    let show_bar = std::io::stderr().is_terminal();
    init_logging(config.log.format, show_bar);
    // Logging starts only now: the load's figures are what the process holds at this point.
    phases::mark("load");
    let metrics = Metrics::new();
    let reconciler = match start(&config, metrics.clone(), &env) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    phases::mark("start");
    let code = run_once_pass(&reconciler, &desired, show_bar).await;
    if let Some(path) = metrics_file
        && let Err(e) = write_metrics_file(path, &metrics.render())
    {
        eprintln!(
            "atlas-linkd: could not write the metrics file {}: {e}",
            path.display()
        );
    }
    phases::mark("metrics file");
    reconciler.shutdown().await;
    phases::mark("shutdown");
    code
}
