//! `export`: a manifest of every live connection of chosen projects, as Atlas lists them, so that
//! connections made by hand, by Terraform or by an earlier tool can be adopted as they are.
//!
//! The Atlas client knows nothing of manifests: this file turns the `RemoteConnection`s it lists
//! into `LinkSpec`s (writable fields only, normalised), names them, and checks the text it prints
//! with the manifest validator itself.

use super::load::{env, load_config};
use crate::exit::{Exit, refuse};
use crate::logging::init_logging;
use crate::manifest;
use crate::model::{
    AuthScheme, DesiredLink, GroupId, LinkSpec, Provider, RemoteConnection, Vendor,
    canonical_region,
};
use crate::wiring::client_from_config;
use futures::StreamExt;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

/// `--project`'s parser: an Atlas project id.
pub(crate) fn parse_group(s: &str) -> Result<GroupId, String> {
    GroupId::parse(s).map_err(|e| e.to_string())
}

/// A connection's writable fields as a normalised spec, or why it cannot be one.
fn spec_of(remote: &RemoteConnection) -> Result<LinkSpec, String> {
    let provider = remote.provider.as_deref().unwrap_or("");
    let provider =
        Provider::parse(provider).ok_or_else(|| format!("provider `{provider}` is not known"))?;
    let vendor = remote.vendor.as_deref().unwrap_or("GENERIC");
    let vendor = Vendor::parse(vendor).ok_or_else(|| format!("vendor `{vendor}` is not known"))?;
    let is_msk = vendor == Vendor::Msk;
    // Lists Atlas reports empty say nothing (and a field the validator does not expect on this
    // vendor would cost the connection its export), except `dnsSubDomain: []`, which an AWS
    // Confluent link needs to say "no subdomains".
    let list = |l: &Option<Vec<String>>| l.clone().filter(|l| !l.is_empty());
    let dns_sub_domain = if provider == Provider::Aws && vendor == Vendor::Confluent {
        remote.dns_sub_domain.clone()
    } else {
        list(&remote.dns_sub_domain)
    };
    let authentication_scheme = match remote.authentication_scheme.as_deref() {
        Some(s) if is_msk => Some(
            AuthScheme::parse(s)
                .ok_or_else(|| format!("authenticationScheme `{s}` is not known"))?,
        ),
        // Atlas ignores it on other vendors.
        _ => None,
    };
    Ok(LinkSpec {
        provider,
        vendor,
        // MSK's region comes from the ARN; a manifest must not set it.
        region: if is_msk { None } else { remote.region.clone() },
        arn: remote.arn.clone(),
        service_endpoint_id: remote.service_endpoint_id.clone(),
        dns_domain: remote.dns_domain.clone(),
        dns_sub_domain,
        azure_resource_ids: list(&remote.azure_resource_ids),
        gcp_connection_ids: list(&remote.gcp_connection_ids),
        gcp_service_attachment_uris: list(&remote.gcp_service_attachment_uris),
        authentication_scheme,
    }
    .normalised())
}

/// Lower-case letters and digits kept, every run of anything else one `-`.
fn name_part(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// The region a name shows: the connection's, or for MSK the one in its ARN
/// (`arn:aws:kafka:REGION:...`) when Atlas did not report one.
fn region_of(remote: &RemoteConnection) -> Option<String> {
    let region = remote.region.clone().or_else(|| {
        let arn = remote.arn.as_deref()?;
        arn.split(':').nth(3).map(str::to_owned)
    })?;
    Some(canonical_region(&region).into_owned()).filter(|r| !r.is_empty())
}

/// `<vendor>-<provider>-<region>-<fingerprint>`: the vendor and provider in lower case, the region
/// canonical (lower case, `-`), then the first 6 hex digits of the spec's fingerprint, so the same
/// connection gets the same name in every export, whatever else the project holds. A name taken
/// already in the project (6 hex digits can clash) gets `-2`, `-3`, ... in connection-id order.
fn base_name(spec: &LinkSpec, remote: &RemoteConnection) -> String {
    let mut name = format!(
        "{}-{}",
        name_part(spec.vendor.as_str()),
        name_part(spec.provider.as_str())
    );
    if let Some(region) = region_of(remote).map(|r| name_part(&r))
        && !region.is_empty()
    {
        name.push('-');
        name.push_str(&region);
    }
    let fingerprint = spec.fingerprint().short();
    name.push('-');
    name.push_str(&fingerprint[..6]);
    name
}

/// One link of the exported manifest: its name, then the spec's fields in create-body order.
#[derive(Serialize)]
struct ExportLink {
    name: String,
    #[serde(flatten)]
    spec: LinkSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportProject {
    group_id: GroupId,
    links: Vec<ExportLink>,
}

#[derive(Serialize)]
struct ExportManifest {
    projects: Vec<ExportProject>,
}

/// A connection that is not in the manifest, and why, for the header.
struct Skipped {
    group: GroupId,
    id: String,
    why: String,
}

/// The manifest text for these listings (project order as given), with its comment header.
fn export_text(listings: &[(GroupId, Vec<RemoteConnection>)]) -> String {
    let mut projects = Vec::new();
    let mut skipped = Vec::new();
    let mut empty = Vec::new();
    for (group, connections) in listings {
        let mut sorted: Vec<&RemoteConnection> = connections.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut names: HashSet<String> = HashSet::new();
        let mut by_fingerprint: HashMap<String, String> = HashMap::new();
        let mut links = Vec::new();
        for remote in sorted {
            let skip = |why: String| Skipped {
                group: group.clone(),
                id: remote.id.clone(),
                why,
            };
            if remote.state.as_ref().is_some_and(|s| s.is_deleting()) {
                continue;
            }
            let spec = match spec_of(remote) {
                Ok(s) => s,
                Err(why) => {
                    skipped.push(skip(why));
                    continue;
                }
            };
            let fingerprint = spec.fingerprint().to_hex();
            if let Some(first) = by_fingerprint.get(&fingerprint) {
                skipped.push(skip(format!(
                    "the same connection as {first}: a manifest declares a connection once (a duplicate costs money: delete one)"
                )));
                continue;
            }
            let base = base_name(&spec, remote);
            let mut name = base.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            // The validator is the authority: a connection it would refuse is named, not printed.
            if let Err(why) = validate_one(group, &name, &spec) {
                skipped.push(skip(why));
                continue;
            }
            names.insert(name.clone());
            by_fingerprint.insert(fingerprint, name.clone());
            links.push(ExportLink { name, spec });
        }
        if links.is_empty() {
            empty.push(group.clone());
        } else {
            projects.push(ExportProject {
                group_id: group.clone(),
                links,
            });
        }
    }
    let mut text = String::from(
        "# Exported by `atlas-linkd export`: every live private link connection of the projects below,\n\
         # with its writable fields as Atlas lists them, normalised. Check it with `atlas-linkd validate`;\n\
         # a pass over it adopts each connection and creates none.\n\
         # Names are <vendor>-<provider>-<region>-<first 6 hex digits of the link's fingerprint>: the same\n\
         # connection gets the same name in every export. Rename links before the first pass, not after\n\
         # (the ledger records links by name).\n",
    );
    for group in &empty {
        let _ = writeln!(text, "# Project {group}: no live connection to export.");
    }
    for s in &skipped {
        let _ = writeln!(
            text,
            "# Not exported: connection {} of project {}: {}",
            s.id,
            s.group,
            s.why.replace('\n', " ")
        );
    }
    text.push_str(
        &serde_yaml::to_string(&ExportManifest { projects })
            .expect("a manifest is strings and lists: nothing YAML can refuse"),
    );
    text
}

/// Whether the validator takes this link as it will be printed, in a project of its own.
fn validate_one(group: &GroupId, name: &str, spec: &LinkSpec) -> Result<(), String> {
    let one = ExportManifest {
        projects: vec![ExportProject {
            group_id: group.clone(),
            links: vec![ExportLink {
                name: name.to_owned(),
                spec: spec.clone(),
            }],
        }],
    };
    let text = serde_yaml::to_string(&one).map_err(|e| e.to_string())?;
    manifest::parse_str(Path::new("export"), &text)
        .map(|_| ())
        .map_err(|problems| {
            problems
                .0
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        })
}

/// A whole export, parsed back: what `validate` and a pass would read.
fn parse_back(text: &str) -> Result<Vec<DesiredLink>, String> {
    let parsed = manifest::parse_str(Path::new("export"), text).map_err(|problems| {
        problems
            .0
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(parsed
        .projects
        .into_iter()
        .flat_map(|p| p.links.into_iter().map(|l| l.link))
        .collect())
}

/// Prints the manifest. Exit 0; 1 when a project could not be listed (nothing is printed: a
/// partial export would look complete); 2 when nothing was attempted (bad config, no credentials).
pub(crate) async fn run(flag: Option<&Path>, projects: &[GroupId]) -> ExitCode {
    let Some(config) = load_config(flag) else {
        return Exit::NotAttempted.into();
    };
    init_logging(config.log.format, false);
    let client = match client_from_config(&config, None, &env) {
        Ok(c) => c,
        Err(e) => return refuse(&e),
    };
    // Each project once, in the order given.
    let mut seen = HashSet::new();
    let groups: Vec<GroupId> = projects
        .iter()
        .filter(|g| seen.insert((*g).clone()))
        .cloned()
        .collect();
    let mut results: BTreeMap<usize, _> = futures::stream::iter(groups.iter().enumerate())
        .map(|(i, group)| {
            let client = &client;
            async move { (i, client.list(group).await) }
        })
        .buffer_unordered(config.reconcile.concurrency)
        .collect()
        .await;
    client.shutdown().await;
    let mut listings = Vec::new();
    let mut failed = false;
    for (i, group) in groups.iter().enumerate() {
        match results.remove(&i) {
            Some(Ok(connections)) => listings.push((group.clone(), connections)),
            Some(Err(e)) => {
                eprintln!("atlas-linkd: could not list project {group}: {e}");
                failed = true;
            }
            None => failed = true,
        }
    }
    if failed {
        eprintln!("atlas-linkd: no export: a partial listing would look complete (try again)");
        return Exit::NotConverged.into();
    }
    let text = export_text(&listings);
    // Each link passed alone; the whole must too (names and specs unique per project).
    if let Err(why) = parse_back(&text) {
        eprintln!("atlas-linkd: the export does not validate, which is a bug: {why}");
        return Exit::NotConverged.into();
    }
    out!("{text}");
    Exit::Converged.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LinkKey, RemoteState, Source};

    const G: &str = "32b6e34b3d91647abb20e7b8";

    fn remote(id: &str, fields: serde_json::Value) -> RemoteConnection {
        let s = |k: &str| fields.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let l = |k: &str| {
            fields.get(k).and_then(|v| v.as_array()).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
        };
        RemoteConnection {
            id: id.into(),
            provider: s("provider"),
            vendor: s("vendor"),
            region: s("region"),
            arn: s("arn"),
            service_endpoint_id: s("serviceEndpointId"),
            dns_domain: s("dnsDomain"),
            dns_sub_domain: l("dnsSubDomain"),
            azure_resource_ids: l("azureResourceIds"),
            gcp_connection_ids: l("gcpConnectionIds"),
            gcp_service_attachment_uris: l("gcpServiceAttachmentUris"),
            authentication_scheme: s("authenticationScheme"),
            state: s("state").map(|s| RemoteState::parse(&s)),
            ..RemoteConnection::default()
        }
    }

    fn listing() -> Vec<RemoteConnection> {
        vec![
            remote(
                "65a1b2c3d4e5f60718293a02",
                serde_json::json!({"provider": "AWS", "vendor": "MSK", "region": "us-east-1",
                    "arn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders/5a6b",
                    "authenticationScheme": "SASL_SCRAM", "state": "DONE"}),
            ),
            remote(
                "65a1b2c3d4e5f60718293a01",
                serde_json::json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "US_EAST_1",
                    "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-01",
                    "dnsSubDomain": [], "azureResourceIds": [], "state": "IDLE"}),
            ),
            remote(
                "65a1b2c3d4e5f60718293a03",
                serde_json::json!({"provider": "GCP", "vendor": "GENERIC", "region": "us-east4",
                    "gcpConnectionIds": ["1"], "state": "DELETING"}),
            ),
            remote(
                "65a1b2c3d4e5f60718293a04",
                serde_json::json!({"provider": "ORACLE", "region": "x", "state": "DONE"}),
            ),
            // Empty lists that say nothing, as a real Atlas may list them.
            remote(
                "65a1b2c3d4e5f60718293a06",
                serde_json::json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1",
                    "serviceEndpointId": "com.amazonaws.us-east-1.s3", "dnsSubDomain": [],
                    "gcpConnectionIds": [], "authenticationScheme": "SASL_SCRAM", "state": "DONE"}),
            ),
            // The same MSK connection again: a duplicate.
            remote(
                "65a1b2c3d4e5f60718293a05",
                serde_json::json!({"provider": "aws", "vendor": "msk",
                    "arn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders/5a6b",
                    "authenticationScheme": "sasl_scram", "state": "FAILED"}),
            ),
        ]
    }

    #[test]
    fn writable_fields_only_normalised_named_deterministically_and_valid() {
        let group = GroupId::parse(G).unwrap();
        let text = export_text(&[(group.clone(), listing())]);
        let links = parse_back(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(links.len(), 3, "{text}");
        let s3 = links.iter().find(|l| l.spec.vendor == Vendor::S3).unwrap();
        assert_eq!(
            (&s3.spec.dns_sub_domain, &s3.spec.gcp_connection_ids),
            (&None, &None),
            "{text}"
        );
        assert_eq!(s3.spec.authentication_scheme, None);
        let names: Vec<&str> = links.iter().map(|l| l.key.name.as_str()).collect();
        let confluent = links.iter().find(|l| l.spec.vendor == Vendor::Confluent);
        let msk = links.iter().find(|l| l.spec.vendor == Vendor::Msk).unwrap();
        let confluent = confluent.unwrap();
        assert!(
            confluent.key.name.starts_with("confluent-aws-us-east-1-"),
            "{names:?}"
        );
        assert!(msk.key.name.starts_with("msk-aws-us-east-1-"), "{names:?}");
        assert_eq!(msk.spec.region, None, "MSK takes its region from the ARN");
        assert_eq!(confluent.spec.dns_sub_domain, Some(vec![]));
        assert_eq!(confluent.spec.azure_resource_ids, None);
        assert_eq!(confluent.spec.region.as_deref(), Some("US_EAST_1"));
        // Each spec adopts the connection it came from.
        for (link, id) in [
            (msk, "65a1b2c3d4e5f60718293a02"),
            (confluent, "65a1b2c3d4e5f60718293a01"),
            (s3, "65a1b2c3d4e5f60718293a06"),
        ] {
            let source = listing().into_iter().find(|r| r.id == id).unwrap();
            assert!(link.spec.matches(&source), "{}", link.key.name);
        }
        assert!(!text.contains("state"), "read-only fields stay out: {text}");
        assert!(text.contains("65a1b2c3d4e5f60718293a04"), "{text}");
        assert!(
            text.contains("65a1b2c3d4e5f60718293a05") && text.contains(&msk.key.name),
            "the duplicate is named with the link it repeats: {text}"
        );
        assert!(!text.contains("65a1b2c3d4e5f60718293a03"), "{text}");
        // The same listing in another order exports the same text.
        let mut reversed = listing();
        reversed.reverse();
        assert_eq!(export_text(&[(group, reversed)]), text);
    }

    #[test]
    fn empty_projects_are_named_and_name_parts_are_lower_kebab_case() {
        let group = GroupId::parse(G).unwrap();
        let text = export_text(&[(group, Vec::new())]);
        assert!(text.contains(&format!("# Project {G}: no live connection")));
        assert!(parse_back(&text).is_ok(), "{text}");
        assert_eq!(name_part("AZURE_BLOB_STORAGE"), "azure-blob-storage");
        assert_eq!(name_part("--West Europe--"), "west-europe");
    }

    #[test]
    fn an_msk_connection_listed_without_a_region_is_named_by_its_arn() {
        let bare = remote(
            "65a1b2c3d4e5f60718293a07",
            serde_json::json!({"provider": "AWS", "vendor": "MSK",
                "arn": "arn:aws:kafka:eu-west-1:123456789012:cluster/refunds/9f8e"}),
        );
        let spec = spec_of(&bare).unwrap();
        let name = base_name(&spec, &bare);
        let fp = spec.fingerprint().short();
        assert_eq!(name, format!("msk-aws-eu-west-1-{}", &fp[..6]));
        // A valid link name: letters, digits and `-`, at most 100 long.
        let link = DesiredLink::new(
            LinkKey::new(GroupId::parse(G).unwrap(), name.clone()),
            spec,
            Source {
                file: Path::new("x").into(),
                line: None,
            },
        );
        assert!(validate_one(&link.key.group_id, &name, &link.spec).is_ok());
    }
}
