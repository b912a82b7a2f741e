//! The command line: argument parsing, logging set-up, and the top-level commands with their exit codes.
//!
//! Exit codes (DESIGN.md): 0 converged / valid; 1 a pass ran but did not converge; 2 nothing was
//! attempted (bad command line, invalid config or manifest, ledger in use, missing credentials).

use crate::config::{Config, LogFormat};
#[cfg(feature = "fake")]
use crate::demo;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::model::DesiredState;
use crate::reconcile::{self, PassOptions, Progress, Reconciler};
use crate::{daemon, manifest, plan};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Keeps MongoDB Atlas stream-processing private link connections in line with YAML manifests.
///
/// Without a command, runs as a daemon: a pass at start-up, on manifest changes, on SIGHUP and every
/// `reconcile.resync_interval_secs`. With `--once`, runs one pass and exits 0 (converged), 1 (not
/// converged) or 2 (nothing attempted).
#[derive(Debug, Parser)]
#[command(name = "atlas-linkd", version, about, long_about)]
pub struct Cli {
    /// Config file [default: $ATLAS_LINKD_CONFIG, then /etc/atlas-linkd/config.yaml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run one reconcile pass, print a summary, and exit with its status.
    #[arg(long)]
    pub once: bool,

    /// With --once: write the final metrics here in Prometheus text format (atomically, for
    /// node_exporter's textfile collector).
    #[arg(long, value_name = "PATH", requires = "once")]
    pub metrics_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and check the config and every manifest; no network. Exit 0 when valid, 2 when not.
    Validate,
    /// Show what a pass would do; changes nothing.
    Plan {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Do not list projects in Atlas: plan from the ledger alone (no credentials needed).
        #[arg(long)]
        offline: bool,
    },
    /// Show the ledger: every link atlas-linkd has recorded.
    Ledger {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Run the bundled fake Atlas on a loopback address (for tests, demos and trying things out).
    #[cfg(feature = "fake")]
    FakeAtlas(Box<fake_atlas::FakeArgs>),
    /// Start the fake Atlas, reconcile the example manifests against it once, and show what happened.
    #[cfg(feature = "fake")]
    Demo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Exit status 2: nothing was attempted.
pub const EXIT_NOT_ATTEMPTED: u8 = 2;

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Prints an error and its chain of causes, the way `anyhow` would, and returns exit status 2.
fn refuse(error: &dyn std::error::Error) -> ExitCode {
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
    ExitCode::from(EXIT_NOT_ATTEMPTED)
}

/// Sets up `tracing` on stderr: text on a terminal, JSON elsewhere, unless the config says otherwise.
/// `RUST_LOG` overrides the level; the default is `info`, or `warn` when a progress bar owns the terminal.
pub fn init_logging(format: LogFormat, quiet_default: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet_default { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, demo) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        #[cfg(feature = "fake")]
        Some(Command::FakeAtlas(args)) => {
            init_logging(LogFormat::Auto, false);
            match fake_atlas::serve(*args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => refuse(&e),
            }
        }
        #[cfg(feature = "fake")]
        Some(Command::Demo) => demo::run().await,
        Some(Command::Validate) => {
            let Some((config, desired)) = load(cli.config.as_deref()) else {
                return ExitCode::from(EXIT_NOT_ATTEMPTED);
            };
            outln!(
                "ok: {} links in {} projects ({})",
                desired.link_count(),
                desired.projects.len(),
                config.source.display()
            );
            ExitCode::SUCCESS
        }
        Some(Command::Ledger { output }) => show_ledger(cli.config.as_deref(), output),
        Some(Command::Plan { output, offline }) => {
            show_plan(cli.config.as_deref(), output, offline).await
        }
        None if cli.once => once(cli.config.as_deref(), cli.metrics_file.as_deref()).await,
        None => {
            let path = config_path(cli.config.as_deref());
            daemon::run(path).await
        }
    }
}

fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| Config::default_path(&env))
}

/// Loads the config and every manifest, printing every problem. `None` means exit 2.
fn load(flag: Option<&Path>) -> Option<(Config, DesiredState)> {
    let config = load_config(flag)?;
    match manifest::load(&config.manifests) {
        Ok(desired) => Some((config, desired)),
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "atlas-linkd: {} problem(s) in the manifests; nothing was changed",
                problems.0.len()
            );
            None
        }
    }
}

fn load_config(flag: Option<&Path>) -> Option<Config> {
    let path = config_path(flag);
    match Config::load(&path, &env) {
        Ok(c) => Some(c),
        Err(e) => {
            refuse(&e);
            None
        }
    }
}

fn show_ledger(flag: Option<&Path>, output: Output) -> ExitCode {
    let Some(config) = load_config(flag) else {
        return ExitCode::from(EXIT_NOT_ATTEMPTED);
    };
    init_logging(config.log.format, false);
    let records = match Ledger::open_read_only(&config.ledger).and_then(|l| l.records()) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    match output {
        Output::Json => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&records).unwrap_or_default()
            );
        }
        Output::Text => {
            outln!(
                "{:<24}  {:<32}  {:<8}  {:<24}  {:<10}  LAST ERROR",
                "GROUP",
                "NAME",
                "PHASE",
                "ATLAS ID",
                "STATE"
            );
            for r in &records {
                outln!(
                    "{:<24}  {:<32}  {:<8}  {:<24}  {:<10}  {}",
                    r.key.group_id,
                    r.key.name,
                    r.phase.as_str(),
                    r.atlas_id.as_deref().unwrap_or("-"),
                    r.remote_state.as_ref().map(|s| s.as_str()).unwrap_or("-"),
                    r.last_error.as_deref().unwrap_or("")
                );
            }
            outln!("{} record(s) in {}", records.len(), config.ledger.display());
        }
    }
    ExitCode::SUCCESS
}

async fn show_plan(flag: Option<&Path>, output: Output, offline: bool) -> ExitCode {
    let Some((config, desired)) = load(flag) else {
        return ExitCode::from(EXIT_NOT_ATTEMPTED);
    };
    init_logging(config.log.format, false);
    // A ledger that does not exist yet is an empty one: the first plan of a new installation.
    let records = if config.ledger.exists() {
        match Ledger::open_read_only(&config.ledger).and_then(|l| l.records()) {
            Ok(r) => r,
            Err(e) => return refuse(&e),
        }
    } else {
        Vec::new()
    };
    let settings = plan::PlanSettings::from_settle_secs(config.reconcile.settle_secs);
    // Before any listing starts: see "Creates still in flight" in `plan`.
    let now = reconcile::now_unix();
    let mut listings = plan::Listings::new();
    if !offline {
        let client = match reconcile::client_from_config(&config, None, &env) {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        let first = plan::plan(&desired, &records, &listings, now, &settings);
        // Projects in parallel, up to `reconcile.concurrency`: one listing costs a project one token
        // (a page of 500), far inside any bucket, so `plan` needs no limiter of its own.
        let results: Vec<_> = futures::stream::iter(first.projects_to_list())
            .map(|group| {
                let client = &client;
                async move {
                    let listed = client.list(&group).await;
                    (group, listed)
                }
            })
            .buffer_unordered(config.reconcile.concurrency)
            .collect()
            .await;
        client.shutdown().await;
        let mut failed = false;
        for (group, listed) in results {
            match listed {
                Ok(connections) => {
                    listings.insert(group, plan::RemoteListing { connections });
                }
                Err(e) => {
                    eprintln!("atlas-linkd: could not list project {group}: {e}");
                    failed = true;
                }
            }
        }
        if failed {
            eprintln!(
                "atlas-linkd: no plan: a partial listing proves nothing (try again, or use --offline)"
            );
            return ExitCode::from(1);
        }
    }
    let plan = plan::plan(&desired, &records, &listings, now, &settings);
    match output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        ),
        Output::Text => out!("{}", crate::report::plan_text(&plan)),
    }
    ExitCode::SUCCESS
}

/// `--once`: one pass, a summary on stdout, exit 0 / 1 / 2.
async fn once(flag: Option<&Path>, metrics_file: Option<&Path>) -> ExitCode {
    let Some((config, desired)) = load(flag) else {
        return ExitCode::from(EXIT_NOT_ATTEMPTED);
    };
    let show_bar = std::io::stderr().is_terminal();
    init_logging(config.log.format, show_bar);
    let metrics = Metrics::new();
    let reconciler = match reconcile::start(&config, metrics.clone(), &env) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    let code = run_once_pass(&reconciler, &desired, show_bar).await;
    if let Some(path) = metrics_file
        && let Err(e) = write_metrics_file(path, &metrics.render())
    {
        eprintln!(
            "atlas-linkd: could not write the metrics file {}: {e}",
            path.display()
        );
    }
    reconciler.shutdown().await;
    code
}

/// Runs one pass with SIGINT/SIGTERM wired to a drain, and prints its report. Shared by `--once` and `demo`.
pub async fn run_once_pass(
    reconciler: &Reconciler,
    desired: &DesiredState,
    show_bar: bool,
) -> ExitCode {
    let cancel = CancellationToken::new();
    let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
    let progress: Arc<dyn Progress> = if show_bar {
        Arc::new(BarProgress::new())
    } else {
        Arc::new(crate::report::LogProgress::new())
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
    signals.abort();
    match result {
        Ok(report) => {
            out!("{}", report.to_text());
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            refuse(&e);
            ExitCode::from(1)
        }
    }
}

/// First SIGINT/SIGTERM: stop starting calls and let in-flight ones finish and be recorded.
/// A second one exits at once.
async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!("atlas-linkd: stopping: finishing calls in flight (signal again to exit at once)");
    cancel.cancel();
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    std::process::exit(1);
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_metrics_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    // node_exporter usually runs as another user: the metrics are not secret.
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A progress bar on stderr: links done / total, rate, ETA.
struct BarProgress {
    bar: indicatif::ProgressBar,
}

impl BarProgress {
    fn new() -> BarProgress {
        let bar = indicatif::ProgressBar::hidden();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} links  {per_sec}  ETA {eta}",
        ) {
            bar.set_style(style);
        }
        BarProgress { bar }
    }
}

impl Progress for BarProgress {
    fn start(&self, total: u64) {
        self.bar.set_length(total);
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }
    fn advance(&self, done: u64) {
        self.bar.set_position(done);
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
