//! The command line: argument parsing and the dispatch to each command; one file per command.
//!
//! Exit statuses are `crate::exit::Exit` (README, "Command line and exit codes"): 0 converged / valid;
//! 1 a pass ran but did not converge; 2 nothing was attempted (bad command line, invalid config or
//! manifest, ledger in use, missing credentials).

mod completions;
mod export;
mod ledger;
mod load;
mod man;
mod once;
mod outputs;
mod plan;
mod schema;
mod validate;

use crate::daemon;
use crate::model::GroupId;
// Only the bundled fake's commands use these directly.
#[cfg(feature = "fake")]
use crate::{config::LogFormat, demo, exit::refuse, logging::init_logging};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
    pub(crate) config: Option<PathBuf>,

    /// Run one reconcile pass, print a summary, and exit with its status.
    #[arg(long)]
    pub(crate) once: bool,

    /// With --once: write the final metrics here in Prometheus text format (atomically, for
    /// node_exporter's textfile collector). PATH must be a regular file or a new name in an existing,
    /// writable directory: a symlink, device, FIFO or directory is refused (exit 2) before any call;
    /// a failed write after the pass turns exit 0 into 1.
    #[arg(long, value_name = "PATH", requires = "once")]
    pub(crate) metrics_file: Option<PathBuf>,

    /// With --once: write each declared link's Atlas id, state and outputs here as JSON (the form
    /// of `outputs --output json`), atomically, after the pass (after --wait, with it).
    #[arg(long, value_name = "PATH", requires = "once")]
    pub(crate) outputs_file: Option<PathBuf>,

    /// With --once: after a converged pass, wait up to DURATION (45m, 90s, 1h30m; 1s to 7d) until
    /// Atlas shows every declared link DONE, listing each project with links not DONE every
    /// `reconcile.ready_poll_secs`. Exits 1 at once when a link ends FAILED (with Atlas's
    /// errorMessage), and at the deadline, naming each link not ready and its state.
    #[arg(long, value_name = "DURATION", requires = "once", value_parser = crate::wait::parse_wait)]
    pub(crate) wait: Option<std::time::Duration>,

    /// With --once on a PostgreSQL ledger: when another atlas-linkd holds the ledger's lease, wait
    /// up to DURATION (90s, 10m; 1s to 7d) for it to let go, instead of exiting 2 at once (cron on
    /// several hosts).
    #[arg(long, value_name = "DURATION", requires = "once", value_parser = crate::wait::parse_wait)]
    pub(crate) wait_for_lease: Option<std::time::Duration>,

    /// With --once: write the pass report here as JSON, atomically, after the pass.
    #[arg(long, value_name = "PATH", requires = "once")]
    pub(crate) report_file: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Print the JSON Schema of the manifest format (for editors; `validate` stays the authority).
    Schema,
    /// Show the ledger: every link atlas-linkd has recorded. `ledger copy` moves it to another store.
    Ledger {
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
        #[command(subcommand)]
        action: Option<LedgerAction>,
    },
    /// Print each declared link's Atlas id, state and read-only outputs, for the next step.
    ///
    /// The next step: a stream connection (`id` is its connectionId), Confluent (it needs
    /// `interfaceEndpointId`), a script. Read from the ledger; with --refresh, after listing every
    /// managed project.
    Outputs {
        #[arg(long, value_enum, default_value_t = outputs::Format::Json)]
        output: outputs::Format,
        /// List every managed project in Atlas first and record what it shows (takes the
        /// ledger's lock: not while a daemon runs).
        #[arg(long)]
        refresh: bool,
    },
    /// Print a manifest of every live connection of the given projects, to adopt them as they are.
    Export {
        /// An Atlas project id (24 hex digits); repeat for more projects.
        #[arg(long = "project", value_name = "GROUP_ID", required = true, value_parser = export::parse_group)]
        projects: Vec<GroupId>,
    },
    /// Run the bundled fake Atlas on a loopback address (for tests, demos and trying things out).
    #[cfg(feature = "fake")]
    FakeAtlas(Box<fake_atlas::FakeArgs>),
    /// Start the fake Atlas, reconcile the example manifests against it once, and show what happened.
    #[cfg(feature = "fake")]
    Demo,
    /// Print a shell completion script on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) on stdout: `atlas-linkd man | man -l -`.
    Man,
}

/// What `ledger` does besides showing the rows.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LedgerAction {
    /// Copy every row into another, empty ledger (SQLite to PostgreSQL or back), then check that
    /// the copy holds the same rows. Holds both ledgers (lock or lease) meanwhile: stop the daemon
    /// first.
    Copy {
        /// The ledger to copy from (a path or a postgres:// URL); default: `ledger:` in the config.
        #[arg(long, value_name = "PATH|URL")]
        from: Option<String>,
        /// The empty ledger to copy into (a path or a postgres:// URL).
        #[arg(long, value_name = "PATH|URL")]
        to: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Text,
    Json,
}

/// Runs the command the command line asks for and returns its exit status.
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
        Some(Command::Validate) => validate::run(cli.config.as_deref()),
        Some(Command::Schema) => schema::run(),
        Some(Command::Ledger {
            action: Some(LedgerAction::Copy { from, to }),
            ..
        }) => ledger::copy(cli.config.as_deref(), from.as_deref(), &to).await,
        Some(Command::Ledger { output, .. }) => ledger::run(cli.config.as_deref(), output),
        Some(Command::Plan { output, offline }) => {
            plan::run(cli.config.as_deref(), output, offline).await
        }
        Some(Command::Completions { shell }) => completions::run(shell, Cli::command()),
        Some(Command::Man) => man::run(Cli::command()),
        Some(Command::Outputs { output, refresh }) => {
            outputs::run(cli.config.as_deref(), output, refresh).await
        }
        Some(Command::Export { projects }) => export::run(cli.config.as_deref(), &projects).await,
        None if cli.once => {
            let files = once::OnceFiles {
                outputs: cli.outputs_file.as_deref(),
                report: cli.report_file.as_deref(),
            };
            let (config, metrics) = (cli.config.as_deref(), cli.metrics_file.as_deref());
            once::run(config, metrics, files, cli.wait, cli.wait_for_lease).await
        }
        None => {
            let path = load::config_path(cli.config.as_deref());
            daemon::run(path).await
        }
    }
}
