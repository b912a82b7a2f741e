//! `ledger`: every link atlas-linkd has recorded, as a table or JSON, read-only (works while a daemon runs).

use super::Output;
use super::load::load_config;
use crate::exit::{Exit, refuse};
use crate::ledger::{LedgerLocation, Take};
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
    let records = match config.ledger.read_only_records(&|k| std::env::var(k).ok()) {
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
            outln!("{} record(s) in {}", records.len(), config.ledger);
        }
    }
    Exit::Converged.into()
}

/// `ledger copy`: every row of one ledger into another, empty one, checked after. Exit 0 when the
/// copy holds the same rows, 1 when it does not, 2 when nothing was copied.
pub(crate) async fn copy(flag: Option<&Path>, from: Option<&str>, to: &str) -> ExitCode {
    let Some(config) = load_config(flag) else {
        return Exit::NotAttempted.into();
    };
    init_logging(config.log.format, false);
    let env = |k: &str| std::env::var(k).ok();
    let cwd = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let parse = |flag: &str, text: &str| {
        LedgerLocation::parse(text, cwd, &env).map_err(|e| {
            eprintln!("atlas-linkd: error: {flag} `{}`: {e}", redacted(text));
            ExitCode::from(Exit::NotAttempted)
        })
    };
    let source = match from {
        Some(text) => match parse("--from", text) {
            Ok(l) => l,
            Err(code) => return code,
        },
        None => config.ledger.clone(),
    };
    let target = match parse("--to", to) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if source == target {
        eprintln!("atlas-linkd: error: --to names the ledger copied from ({source})");
        return Exit::NotAttempted.into();
    }
    let lease = config.leadership.lease();
    // Both held for the copy: no daemon may write to either meanwhile.
    let from_ledger = match source.open(&env, lease, Take::Now) {
        Ok(l) => l,
        Err(e) => return refuse(&e),
    };
    let records = match from_ledger.records().await {
        Ok(r) => r,
        Err(e) => {
            let _ = from_ledger.close().await;
            return refuse(&e);
        }
    };
    let to_ledger = match target.open(&env, lease, Take::Now) {
        Ok(l) => l,
        Err(e) => {
            let _ = from_ledger.close().await;
            return refuse(&e);
        }
    };
    let copied = match to_ledger.import(records.clone()).await {
        Ok(()) => Ok(to_ledger.records().await),
        Err(e) => Err(e),
    };
    let closed = (to_ledger.close().await, from_ledger.close().await);
    let copy = match copied {
        Err(e) => return refuse(&e),
        Ok(Err(e)) => {
            eprintln!(
                "atlas-linkd: error: the copy was committed to {target}, but cannot be read back: {e}"
            );
            return Exit::NotConverged.into();
        }
        Ok(Ok(rows)) => rows,
    };
    for closed in [closed.0, closed.1] {
        if let Err(e) = closed {
            tracing::warn!(error = %e, "closing a ledger after the copy failed");
        }
    }
    let same_fingerprints = copy
        .iter()
        .zip(&records)
        .all(|(a, b)| a.key == b.key && a.fingerprint == b.fingerprint);
    if copy.len() != records.len() || !same_fingerprints || copy != records {
        eprintln!(
            "atlas-linkd: error: the copy in {target} does not match {source}: {} row(s) read back of {} copied; do not use it",
            copy.len(),
            records.len()
        );
        return Exit::NotConverged.into();
    }
    outln!(
        "copied {} row(s) from {source} to {target}; read back {} row(s), every key, fingerprint and field the same",
        records.len(),
        copy.len()
    );
    Exit::Converged.into()
}

/// A `--to`/`--from` text as an error may quote it: a URL's user info (where a password could
/// sit) is left out.
fn redacted(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://…@{host}"),
            None => text.to_owned(),
        },
        None => text.to_owned(),
    }
}
