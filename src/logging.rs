//! Logging set-up: `tracing` on stderr, text or JSON, with `RUST_LOG` taking precedence.

use crate::config::LogFormat;
use std::io::IsTerminal;

/// Sets up `tracing` on stderr: text on a terminal, JSON elsewhere, unless the config says otherwise.
/// `RUST_LOG` overrides the level; the default is `info`, or `warn` when a progress bar owns the terminal.
pub(crate) fn init_logging(format: LogFormat, quiet_default: bool) {
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
