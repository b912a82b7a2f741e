//! `ledger`: every link atlas-linkd has recorded, as a table or JSON, read-only (works while a daemon runs).

use super::Output;
use super::load::load_config;
use crate::exit::{Exit, refuse};
use crate::ledger::Ledger;
use crate::logging::init_logging;
use std::path::Path;
use std::process::ExitCode;

/// Shows the ledger.
pub(crate) fn run(flag: Option<&Path>, output: Output) -> ExitCode {
    let Some(config) = load_config(flag) else {
        return Exit::NotAttempted.into();
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
                serde_json::to_string_pretty(&records)
                    .expect("a record is strings, numbers and string-keyed fields: nothing serde_json can refuse")
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
    Exit::Converged.into()
}
