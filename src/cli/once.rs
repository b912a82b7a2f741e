//! `--once`: parse the manifests, check the output files, start, read the ledger while the manifests
//! are merged, one pass (see `crate::once`) and its `--wait`, the output files (`--metrics-file`,
//! `--outputs-file`, `--report-file`), shut down.

use super::load::{env, merge, parse};
use crate::exit::{Exit, refuse, refuse_while};
use crate::ledger::Take;
use crate::logging::init_logging;
use crate::metrics::Metrics;
use crate::model::DesiredState;
use crate::once::run_once_pass_report;
use crate::output_file::{check_target, write_atomic};
use crate::phases;
use crate::reconcile::Reconciler;
use crate::report::PassReport;
use crate::wait::WaitOptions;
use crate::wiring::start_taking;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Where `--once` writes the outputs of each declared link and its report as JSON, besides stdout.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OnceFiles<'a> {
    pub(crate) outputs: Option<&'a Path>,
    pub(crate) report: Option<&'a Path>,
}

const METRICS_FLAG: &str = "--metrics-file";
const OUTPUTS_FLAG: &str = "--outputs-file";
const REPORT_FLAG: &str = "--report-file";
/// No file is secret (metrics, ids, states, Atlas's messages), and another user (node_exporter, a
/// CI step, a collector) often reads them.
const FILE_MODE: u32 = 0o644;

/// `--once`: one pass, a summary on stdout, exit 0 / 1 / 2. With `wait`, then wait that long at
/// most for every declared link to be `DONE` (`crate::wait`); the files are written after it.
pub(crate) async fn run(
    flag: Option<&Path>,
    metrics_file: Option<&Path>,
    files: OnceFiles<'_>,
    wait: Option<Duration>,
    wait_for_lease: Option<Duration>,
) -> ExitCode {
    phases::begin();
    let Some((config, parsed)) = parse(flag) else {
        return Exit::NotAttempted.into();
    };
    // Before any call: a target the write would destroy (a device, a symlink) or cannot reach is
    // refused now, not found out after the pass has changed Atlas.
    for (flag, path) in [
        (METRICS_FLAG, metrics_file),
        (OUTPUTS_FLAG, files.outputs),
        (REPORT_FLAG, files.report),
    ] {
        if let Some(path) = path
            && let Err(e) = check_target(flag, path)
        {
            return refuse(&e);
        }
    }
    let show_bar = std::io::stderr().is_terminal();
    init_logging(config.log.format, show_bar);
    // Logging starts only now: the parse's figures are what the process holds at this point.
    phases::mark("parse");
    let metrics = Metrics::new();
    // A shared ledger's lease is held for the run, or the run is refused naming its holder.
    let take = wait_for_lease.map_or(Take::Now, Take::Within);
    let reconciler = match start_taking(&config, metrics.clone(), &env, take) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    // The pass would read every row first anyway (and keeps this copy); reading it here makes an
    // unreadable ledger what it is, a refusal before anything was attempted, not a failed pass.
    // The writer's threads read the rows while this one merges the manifests (valid by now: no
    // ledger is touched for manifests that are refused).
    let ledger = reconciler.ledger().clone();
    let read = tokio::spawn(async move { ledger.snapshot().await.map(drop) });
    let desired = merge(parsed);
    phases::mark("merge");
    let read = match read.await {
        Ok(read) => read,
        // The task only awaits the writer's answer: a panic there is a bug worth its panic.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    if let Err(e) = read {
        reconciler.shutdown().await;
        return refuse_while("cannot read the ledger", &e);
    }
    phases::mark("start");
    let wait = wait.map(|limit| WaitOptions {
        limit,
        poll: Duration::from_secs(config.reconcile.ready_poll_secs),
    });
    let (mut exit, report) = run_once_pass_report(&reconciler, &desired, show_bar, wait).await;
    // The next step reads these files: a script must not take a stale or missing one as this
    // pass's, so a failed write turns success into failure (a failure keeps its own status).
    if !write_once_files(&reconciler, &desired, report.as_ref(), files).await {
        exit = exit.then_failed();
    }
    if let Some(path) = metrics_file
        && let Err(e) = write_atomic(METRICS_FLAG, path, metrics.render().as_bytes(), FILE_MODE)
    {
        let _ = refuse(&e);
        exit = exit.then_failed();
    }
    phases::mark("output files");
    reconciler.shutdown().await;
    phases::mark("shutdown");
    // The process ends now: freeing every link one by one would only delay the exit (a third of a
    // second with 1,000,000 links); the kernel takes the memory back whole.
    std::mem::forget(desired);
    exit.into()
}

/// Writes `--outputs-file` (from the ledger as the pass left it) and `--report-file`; false when
/// one that was asked for could not be written (the error is printed).
async fn write_once_files(
    reconciler: &Reconciler,
    desired: &DesiredState,
    report: Option<&PassReport>,
    files: OnceFiles<'_>,
) -> bool {
    let mut ok = true;
    let mut fail = |e: &dyn std::error::Error| {
        // Exit 1, not 2: the pass ran. `refuse` prints the error and its causes.
        let _ = refuse(e);
        ok = false;
    };
    if let Some(path) = files.outputs {
        match reconciler.ledger().snapshot().await {
            Ok(records) => {
                let text = super::outputs::to_json(&super::outputs::entries(desired, &records));
                if let Err(e) = write_atomic(OUTPUTS_FLAG, path, text.as_bytes(), FILE_MODE) {
                    fail(&e);
                }
            }
            Err(e) => fail(&e),
        }
    }
    if let Some(path) = files.report {
        match report {
            Some(report) => {
                let text = report.to_json();
                if let Err(e) = write_atomic(REPORT_FLAG, path, text.as_bytes(), FILE_MODE) {
                    fail(&e);
                }
            }
            None => {
                eprintln!(
                    "atlas-linkd: {REPORT_FLAG} {}: not written: the pass has no report (see the error above)",
                    path.display()
                );
                ok = false;
            }
        }
    }
    ok
}
