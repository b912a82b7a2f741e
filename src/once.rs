//! The `--once` pass: one pass with SIGINT/SIGTERM wired to a drain, its summary on stdout, its exit
//! status, and the `--wait` after it; shared by the `--once` command and `demo` (the files
//! `--once` writes after them are `cli::once`'s).

use crate::exit::{Exit, refuse};
use crate::logging::TERMINAL_BAR;
use crate::model::DesiredState;
use crate::progress::{BarProgress, LogProgress, Progress};
use crate::reconcile::{PassOptions, Reconciler};
use crate::report::PassReport;
use crate::wait::{WaitOptions, wait_until_ready};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Runs one pass with SIGINT/SIGTERM wired to a drain, and prints its report: `demo`'s pass
/// (`--once` calls `run_once_pass_report`, for its `--report-file`).
#[cfg(feature = "fake")]
pub(crate) async fn run_once_pass(
    reconciler: &Reconciler,
    desired: &DesiredState,
    show_bar: bool,
) -> std::process::ExitCode {
    run_once_pass_report(reconciler, desired, show_bar, None)
        .await
        .0
        .into()
}

/// Runs one pass with SIGINT/SIGTERM wired to a drain, prints its report, and hands it back (none
/// when the pass could not read the ledger) with its exit status. With `wait`, a converged pass is
/// followed by `--wait` (under the same signals), whose status is then the exit status. Shared by
/// `--once` and `demo`.
pub(crate) async fn run_once_pass_report(
    reconciler: &Reconciler,
    desired: &DesiredState,
    show_bar: bool,
    wait: Option<WaitOptions>,
) -> (Exit, Option<PassReport>) {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
    let progress: Arc<dyn Progress> = if show_bar {
        Arc::new(BarProgress::new())
    } else {
        Arc::new(LogProgress::new())
    };
    // `--once` has no resync to save it: it looks at every managed project, and waits for creates
    // that Atlas may still be committing, before it can say "converged".
    let options = PassOptions {
        list_all: true,
        wait_for_settle: true,
        cancel: cancel.clone(),
        progress: Some(progress),
    };
    let result = reconciler.run_pass(desired, &options).await;
    let outcome = match result {
        Ok(report) => {
            out!("{}", report.to_text());
            crate::phases::mark("report printed");
            let mut exit = report.exit();
            if let Some(wait) = wait {
                if exit == Exit::Converged {
                    exit = wait_until_ready(reconciler, desired, wait, &cancel, show_bar).await;
                } else {
                    // Links that did not converge may never become DONE: waiting would only delay
                    // the same verdict.
                    outln!("wait: not waiting: the pass did not converge");
                }
            }
            (exit, Some(report))
        }
        Err(e) => {
            // The pass started: not "nothing attempted", whatever `refuse` returns.
            let _ = refuse(&e);
            (Exit::NotConverged, None)
        }
    };
    signals.abort();
    outcome
}

/// First SIGINT/SIGTERM: stop starting calls and let in-flight ones finish and be recorded.
/// A second one exits at once.
pub(crate) async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    TERMINAL_BAR.write_around(|| {
        eprintln!("atlas-linkd: stopping: finishing calls in flight (signal again to exit at once)")
    });
    cancel.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    std::process::exit(Exit::NotConverged.code().into());
}
