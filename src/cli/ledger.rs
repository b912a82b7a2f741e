//! `ledger`: every link atlas-linkd has recorded, as a table or JSON, read-only (works while a daemon runs).

use super::Output;
use super::load::load_config;
use crate::exit::{Exit, refuse};
use crate::ledger::Ledger;
use crate::logging::init_logging;
use crate::model::{EndpointOutputs, Fingerprint, LinkSpec, Phase, Record, RemoteState};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

/// One row as `ledger --output json` prints it: camelCase keys, like Atlas's API and `plan`, with the
/// link's `groupId` and `name` at the top level (the shape is in README, "Machine-readable output").
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LedgerEntry<'a> {
    group_id: &'a str,
    name: &'a str,
    phase: Phase,
    atlas_id: Option<&'a str>,
    remote_state: Option<&'a RemoteState>,
    remote_error: Option<&'a str>,
    fingerprint: &'a Fingerprint,
    spec: RecordedSpec<'a>,
    attempts: u32,
    last_error: Option<&'a str>,
    next_attempt_unix: Option<i64>,
    sent_unix: Option<i64>,
    /// Since when no manifest declares the link (guarded prune's grace counts from here).
    undeclared_since_unix: Option<i64>,
    outputs: &'a EndpointOutputs,
    created_unix: i64,
    updated_unix: i64,
}

/// The recorded spec as the object `plan` shows for a create; the stored text, as a string, in the
/// one case that it does not parse (a ledger written by another version), so nothing is hidden.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum RecordedSpec<'a> {
    Parsed(LinkSpec),
    Unparsed(&'a str),
}

impl<'a> LedgerEntry<'a> {
    fn of(r: &'a Record) -> LedgerEntry<'a> {
        LedgerEntry {
            group_id: r.key.group_id.as_str(),
            name: &r.key.name,
            phase: r.phase,
            atlas_id: r.atlas_id.as_deref(),
            remote_state: r.remote_state.as_ref(),
            remote_error: r.remote_error.as_deref(),
            fingerprint: &r.fingerprint,
            spec: r
                .spec()
                .map_or(RecordedSpec::Unparsed(&r.spec_json), RecordedSpec::Parsed),
            attempts: r.attempts,
            last_error: r.last_error.as_deref(),
            next_attempt_unix: r.next_attempt_unix,
            sent_unix: r.sent_unix,
            undeclared_since_unix: r.prune.undeclared_since_unix,
            outputs: &r.outputs,
            created_unix: r.created_unix,
            updated_unix: r.updated_unix,
        }
    }
}

/// `ledger --output json`: an array of `LedgerEntry`, sorted as the ledger returns its rows.
fn ledger_json(records: &[Record]) -> String {
    let entries: Vec<LedgerEntry<'_>> = records.iter().map(LedgerEntry::of).collect();
    serde_json::to_string_pretty(&entries).expect(
        "an entry is strings, numbers and string-keyed fields: nothing serde_json can refuse",
    )
}

/// Shows the ledger.
pub(crate) fn run(flag: Option<&Path>, output: Output) -> ExitCode {
    let Some(config) = load_config(flag) else {
        return Exit::NotAttempted.into();
    };
    init_logging(config.log.format, false);
    let records = match Ledger::read_only_records(&config.ledger) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    match output {
        Output::Json => {
            outln!("{}", ledger_json(&records));
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
