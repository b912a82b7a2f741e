//! `--once`: load, check the metrics file, start, read the ledger, one pass (see `crate::once`), the
//! metrics file, shut down.

use super::load::{env, load};
use crate::exit::{Exit, refuse, refuse_while};
use crate::logging::init_logging;
use crate::metrics::Metrics;
use crate::once::{check_metrics_file, once_pass, write_metrics_file};
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
    // Before any call: a target the write would destroy (a device, a symlink) or cannot reach is
    // refused now, not found out after the pass has changed Atlas.
    if let Some(path) = metrics_file
        && let Err(e) = check_metrics_file(path)
    {
        return refuse(&e);
    }
    let show_bar = std::io::stderr().is_terminal();
    init_logging(config.log.format, show_bar);
    // Logging starts only now: the load's figures are what the process holds at this point.
    phases::mark("load");
    let metrics = Metrics::new();
    let reconciler = match start(&config, metrics.clone(), &env) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    // The pass would read every row first anyway (and keeps this copy); reading it here makes an
    // unreadable ledger what it is, a refusal before anything was attempted, not a failed pass.
    if let Err(e) = reconciler.ledger().snapshot().await {
        reconciler.shutdown().await;
        return refuse_while("cannot read the ledger", &e);
    }
    phases::mark("start");
    let mut exit = once_pass(&reconciler, &desired, show_bar).await;
    if let Some(path) = metrics_file
        && let Err(e) = write_metrics_file(path, &metrics.render())
    {
        // The pass's own status says nothing of this: a script must not take the stale file as new.
        let _ = refuse(&e);
        exit = exit.then_failed();
    }
    phases::mark("metrics file");
    reconciler.shutdown().await;
    phases::mark("shutdown");
    exit.into()
}
