//! `outputs`: what the next step needs of each declared link (its Atlas id, state and read-only
//! outputs), from the ledger, after listing every managed project with `--refresh`; the same JSON
//! is what `--once --outputs-file` writes.

use super::load::{env, load};
use crate::config::Config;
use crate::exit::{Exit, refuse};
use crate::ledger::{LedgerError, LedgerHandle, Take};
use crate::logging::init_logging;
use crate::model::{DesiredState, GroupId, LinkKey, Record};
use crate::reconcile::refresh_projects;
use crate::wiring::client_from_config;
use clap::ValueEnum;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::ExitCode;

/// The forms `outputs` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// An array of objects with the keys `groupId`, `name`, `id`, `state`, `interfaceEndpointId`,
    /// `interfaceEndpointName`, `providerAccountId`, `errorMessage`.
    Json,
    /// The same data as YAML.
    Yaml,
    /// `KEY='value'` lines for a shell: `ATLAS_LINK_<NAME>_<FIELD>`.
    Env,
}

/// One declared link as `outputs` shows it. Every key is always there; `null` when the ledger has no
/// value: a link not created or adopted yet has `id: null` and `state: null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutputEntry<'a> {
    group_id: &'a str,
    name: &'a str,
    id: Option<&'a str>,
    state: Option<&'a str>,
    interface_endpoint_id: Option<&'a str>,
    interface_endpoint_name: Option<&'a str>,
    provider_account_id: Option<&'a str>,
    error_message: Option<&'a str>,
}

/// One entry per declared link, in the order of the manifests' merged state (project, then name),
/// filled in from the link's ledger row where there is one.
pub(crate) fn entries<'a>(
    desired: &'a DesiredState,
    records: &'a [Record],
) -> Vec<OutputEntry<'a>> {
    let by_key: HashMap<&LinkKey, &Record> = records.iter().map(|r| (&r.key, r)).collect();
    desired
        .links()
        .map(|link| {
            let record = by_key.get(&link.key);
            let field = |f: fn(&'a Record) -> Option<&'a str>| record.and_then(|r| f(r));
            OutputEntry {
                group_id: link.key.group_id.as_str(),
                name: &link.key.name,
                id: field(|r| r.atlas_id.as_deref()),
                state: field(|r| r.remote_state.as_ref().map(|s| s.as_str())),
                interface_endpoint_id: field(|r| r.outputs.interface_endpoint_id.as_deref()),
                interface_endpoint_name: field(|r| r.outputs.interface_endpoint_name.as_deref()),
                provider_account_id: field(|r| r.outputs.provider_account_id.as_deref()),
                error_message: field(|r| r.remote_error.as_deref()),
            }
        })
        .collect()
}

/// The JSON form (`outputs --output json`, `--once --outputs-file`), ending with a newline.
pub(crate) fn to_json(entries: &[OutputEntry<'_>]) -> String {
    let mut text = serde_json::to_string_pretty(entries)
        .expect("an entry is strings and nulls: nothing serde_json can refuse");
    text.push('\n');
    text
}

fn to_yaml(entries: &[OutputEntry<'_>]) -> String {
    if entries.is_empty() {
        return "[]\n".to_owned();
    }
    serde_yaml::to_string(entries).expect("an entry is strings and nulls: nothing YAML can refuse")
}

/// The part of a variable name that a link name or project id gives: ASCII letters and digits
/// upper-cased, anything else `_`.
fn var_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The fields of the env form, with the suffix of their variable.
const ENV_FIELDS: [&str; 7] = [
    "GROUP_ID",
    "ID",
    "STATE",
    "INTERFACE_ENDPOINT_ID",
    "INTERFACE_ENDPOINT_NAME",
    "PROVIDER_ACCOUNT_ID",
    "ERROR_MESSAGE",
];

/// Two declared links whose variables would have the same name.
#[derive(Debug, thiserror::Error)]
#[error(
    "`outputs --output env`: links {first} and {second} would both set {variable}; rename one of them, or use --output json"
)]
pub(crate) struct EnvClash {
    first: LinkKey,
    second: LinkKey,
    variable: String,
}

/// The variable prefix of each declared link, in `desired.links()` order: `ATLAS_LINK_<NAME>`, or
/// `ATLAS_LINK_<GROUPID>_<NAME>` for a name that more than one link gives (the same name in two
/// projects). Refused when two variables would still have the same name.
fn env_prefixes(desired: &DesiredState) -> Result<Vec<String>, EnvClash> {
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for link in desired.links() {
        *by_name.entry(var_part(&link.key.name)).or_default() += 1;
    }
    let prefixes: Vec<String> = desired
        .links()
        .map(|link| {
            let name = var_part(&link.key.name);
            if by_name.get(&name).copied().unwrap_or(0) > 1 {
                format!("ATLAS_LINK_{}_{name}", var_part(link.key.group_id.as_str()))
            } else {
                format!("ATLAS_LINK_{name}")
            }
        })
        .collect();
    let mut seen: HashMap<String, &LinkKey> = HashMap::new();
    for (prefix, link) in prefixes.iter().zip(desired.links()) {
        for field in ENV_FIELDS {
            let variable = format!("{prefix}_{field}");
            if let Some(first) = seen.get(&variable) {
                return Err(EnvClash {
                    first: (*first).clone(),
                    second: link.key.clone(),
                    variable,
                });
            }
            seen.insert(variable, &link.key);
        }
    }
    Ok(prefixes)
}

/// A value a POSIX shell reads back as it is: single-quoted, a `'` written `'\''`. Control
/// characters (a newline in an error message) become spaces, so each variable stays on one line
/// for tools that read such files line by line; the JSON form keeps them.
fn shell_quote(value: Option<&str>) -> String {
    let mut out = String::from("'");
    for c in value.unwrap_or("").chars() {
        match c {
            '\'' => out.push_str("'\\''"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn to_env(entries: &[OutputEntry<'_>], prefixes: &[String]) -> String {
    let mut out = String::new();
    for (e, prefix) in entries.iter().zip(prefixes) {
        let values = [
            Some(e.group_id),
            e.id,
            e.state,
            e.interface_endpoint_id,
            e.interface_endpoint_name,
            e.provider_account_id,
            e.error_message,
        ];
        for (field, value) in ENV_FIELDS.iter().zip(values) {
            out.push_str(&format!("{prefix}_{field}={}\n", shell_quote(value)));
        }
    }
    out
}

/// The ledger's rows, read-only (beside a running daemon); none when there is no ledger yet.
fn read_records(config: &Config) -> Result<Vec<Record>, LedgerError> {
    config.ledger.read_only_records_or_none(&env)
}

/// What a refresh left: the ledger's rows afterwards, and each project that could not be listed.
struct Refreshed {
    records: Vec<Record>,
    failures: Vec<String>,
}

/// Lists every managed project (declared, or holding a ledger row) and records what each listing
/// shows of the recorded connections, as a pass does (`reconcile::refresh_projects`): the state,
/// `errorMessage` and outputs, where they changed. Nothing else is written and nothing is created. Takes the ledger's lock, so it is
/// refused while a daemon runs.
async fn refresh(config: &Config, desired: &DesiredState) -> Result<Refreshed, ExitCode> {
    let client = client_from_config(config, None, &env).map_err(|e| refuse(&e))?;
    let handle = config
        .ledger
        .open(&env, config.leadership.lease(), Take::Now)
        .map_err(|e| {
        let code = refuse(&e);
        if matches!(e, LedgerError::Locked { .. } | LedgerError::LeaseHeld { .. }) {
            eprintln!(
                "atlas-linkd: `outputs` without --refresh reads the ledger beside a running daemon, which records what Atlas shows on every resync"
            );
        }
        code
    })?;
    let result = refresh_with(config, desired, &client, &handle).await;
    client.shutdown().await;
    let closed = handle.close().await;
    let refreshed = result.map_err(|e| refuse(&e))?;
    closed.map_err(|e| refuse(&e))?;
    Ok(refreshed)
}

async fn refresh_with(
    config: &Config,
    desired: &DesiredState,
    client: &crate::atlas::AtlasClient,
    ledger: &LedgerHandle,
) -> Result<Refreshed, LedgerError> {
    let records = ledger.snapshot().await?;
    let mut groups: BTreeSet<GroupId> = desired.projects.keys().cloned().collect();
    groups.extend(records.iter().map(|r| r.key.group_id.clone()));
    drop(records);
    // One attempt per listing, as `plan` lists: a project that cannot be listed is reported, and
    // its entries show what the ledger last recorded.
    let refreshed = refresh_projects(
        ledger,
        groups,
        config.reconcile.concurrency,
        |group| async move { client.list(&group).await },
    )
    .await?;
    Ok(Refreshed {
        records: ledger.records().await?,
        failures: refreshed
            .failures
            .iter()
            .map(|(group, e)| format!("could not list project {group}: {e}"))
            .collect(),
    })
}

/// Prints the outputs. Exit 0; 1 when `--refresh` could not list a project (the entries then show
/// what the ledger last recorded); 2 when nothing was attempted (bad config or manifests, no
/// credentials, the ledger held by a daemon with `--refresh`, env names that clash).
pub(crate) async fn run(flag: Option<&Path>, format: Format, refresh_first: bool) -> ExitCode {
    let Some((config, desired)) = load(flag) else {
        return Exit::NotAttempted.into();
    };
    init_logging(config.log.format, false);
    // Before any call: a form that cannot be printed must not cost a listing.
    let prefixes = if format == Format::Env {
        match env_prefixes(&desired) {
            Ok(p) => p,
            Err(e) => return refuse(&e),
        }
    } else {
        Vec::new()
    };
    let (records, failures) = if refresh_first {
        match refresh(&config, &desired).await {
            Ok(r) => (r.records, r.failures),
            Err(code) => return code,
        }
    } else {
        match read_records(&config) {
            Ok(r) => (r, Vec::new()),
            Err(e) => return refuse(&e),
        }
    };
    let entries = entries(&desired, &records);
    match format {
        Format::Json => out!("{}", to_json(&entries)),
        Format::Yaml => out!("{}", to_yaml(&entries)),
        Format::Env => out!("{}", to_env(&entries, &prefixes)),
    }
    if failures.is_empty() {
        return Exit::Converged.into();
    }
    for f in &failures {
        eprintln!("atlas-linkd: {f}");
    }
    eprintln!(
        "atlas-linkd: the entries of those projects are what the ledger last recorded, not fresh"
    );
    Exit::NotConverged.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredLink, DesiredProject, EndpointOutputs, LinkSpec, Phase, Provider};
    use crate::model::{RemoteState, Source, Vendor};

    const G1: &str = "32b6e34b3d91647abb20e7b8";
    const G2: &str = "7c8d9e0f1a2b3c4d5e6f7a8b";

    fn desired(links: &[(&str, &str)]) -> DesiredState {
        let mut d = DesiredState::default();
        for (group, name) in links {
            let group = GroupId::parse(group).unwrap();
            let spec = LinkSpec {
                region: Some("us-east-1".into()),
                ..LinkSpec::new(Provider::Aws, Vendor::Kinesis)
            };
            let link = DesiredLink::new(
                LinkKey::new(group.clone(), *name),
                spec,
                Source {
                    file: Path::new("m.yaml").into(),
                    line: None,
                },
            );
            d.projects
                .entry(group)
                .or_insert_with(DesiredProject::default)
                .links
                .insert(link);
        }
        d
    }

    fn record(group: &str, name: &str) -> Record {
        Record {
            key: LinkKey::new(GroupId::parse(group).unwrap(), name),
            spec_json: "{}".into(),
            fingerprint: LinkSpec::new(Provider::Aws, Vendor::Kinesis).fingerprint(),
            atlas_id: Some("65a1b2c3d4e5f60718293a4b".into()),
            phase: Phase::Created,
            remote_state: Some(RemoteState::Failed),
            remote_error: Some("it's\nbroken".into()),
            attempts: 0,
            last_error: None,
            next_attempt_unix: None,
            sent_unix: None,
            outputs: EndpointOutputs {
                interface_endpoint_id: Some("vpce-0123".into()),
                ..EndpointOutputs::default()
            },
            created_unix: 0,
            updated_unix: 0,
            prune: Default::default(),
        }
    }

    #[test]
    fn every_declared_link_has_every_key_and_null_without_a_row() {
        let d = desired(&[(G1, "a"), (G1, "b")]);
        let records = [record(G1, "a"), record(G2, "undeclared")];
        let json: serde_json::Value =
            serde_json::from_str(&to_json(&entries(&d, &records))).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"groupId": G1, "name": "a", "id": "65a1b2c3d4e5f60718293a4b", "state": "FAILED",
                 "interfaceEndpointId": "vpce-0123", "interfaceEndpointName": null,
                 "providerAccountId": null, "errorMessage": "it's\nbroken"},
                {"groupId": G1, "name": "b", "id": null, "state": null,
                 "interfaceEndpointId": null, "interfaceEndpointName": null,
                 "providerAccountId": null, "errorMessage": null},
            ])
        );
        let yaml: serde_json::Value =
            serde_yaml::from_str(&to_yaml(&entries(&d, &records))).unwrap();
        assert_eq!(yaml, json, "YAML is the same data");
        let none: serde_json::Value = serde_yaml::from_str(&to_yaml(&[])).unwrap();
        assert_eq!(none, serde_json::json!([]));
    }

    #[test]
    fn env_names_are_the_link_name_qualified_by_project_only_when_shared() {
        let d = desired(&[(G1, "orders-msk"), (G1, "partner"), (G2, "partner")]);
        let prefixes = env_prefixes(&d).unwrap();
        assert_eq!(
            prefixes,
            [
                "ATLAS_LINK_ORDERS_MSK".to_owned(),
                format!("ATLAS_LINK_{}_PARTNER", G1.to_ascii_uppercase()),
                format!("ATLAS_LINK_{}_PARTNER", G2.to_ascii_uppercase()),
            ]
        );
        let records = [record(G1, "orders-msk")];
        let text = to_env(&entries(&d, &records), &prefixes);
        assert!(text.contains(&format!("ATLAS_LINK_ORDERS_MSK_GROUP_ID='{G1}'\n")));
        assert!(text.contains("ATLAS_LINK_ORDERS_MSK_ID='65a1b2c3d4e5f60718293a4b'\n"));
        assert!(text.contains("ATLAS_LINK_ORDERS_MSK_ERROR_MESSAGE='it'\\''s broken'\n"));
        assert!(text.contains("ATLAS_LINK_ORDERS_MSK_INTERFACE_ENDPOINT_NAME=''\n"));
        assert_eq!(text.lines().count(), 3 * ENV_FIELDS.len());

        // Names that differ only in punctuation, in one project, cannot both be printed.
        let clash = desired(&[(G1, "a-b"), (G1, "a.b")]);
        let e = env_prefixes(&clash).unwrap_err();
        assert!(
            e.to_string().contains("a-b") && e.to_string().contains("a.b"),
            "{e}"
        );
        // Nor can a field of one link that is another link's variable.
        let overlap = desired(&[(G1, "a"), (G1, "a-interface-endpoint")]);
        let e = env_prefixes(&overlap).unwrap_err();
        assert!(
            e.to_string().contains("ATLAS_LINK_A_INTERFACE_ENDPOINT_ID"),
            "{e}"
        );
    }

    #[test]
    fn shell_quoting_survives_a_shell() {
        let value = "a'b $HOME `x` \"q\"\\";
        let quoted = shell_quote(Some(value));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("V={quoted}; printf %s \"$V\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
    }
}
