//! Benchmark: 100,000 declared links across 1,000 projects, all recorded in a ledger file.
//! Times `Ledger::records()` and `plan(...)` separately and prints peak RSS.
//! Run with `cargo bench --bench plan`. Targets: plan <= 200 ms, peak RSS <= 150 MB.

use atlas_linkd::ledger::{Change, Ledger};
use atlas_linkd::model::{
    AuthScheme, DesiredLink, DesiredState, GroupId, LinkKey, LinkSpec, Provider, RemoteConnection,
    RemoteState, Source, Vendor,
};
use atlas_linkd::plan::{Listings, RemoteListing, plan};
use std::path::PathBuf;
use std::time::Instant;

const PROJECTS: usize = 1_000;
const LINKS_PER_PROJECT: usize = 100;
const BATCH: usize = 10_000;
const NOW: i64 = 1_700_000_000;

fn spec(p: usize, l: usize) -> LinkSpec {
    LinkSpec {
        provider: Provider::Aws,
        vendor: Vendor::Msk,
        region: None,
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/p{p}-l{l}/5a6b7c8d-1234-5678-9abc-def012345678-1"
        )),
        service_endpoint_id: None,
        dns_domain: None,
        dns_sub_domain: None,
        azure_resource_ids: None,
        gcp_connection_ids: None,
        gcp_service_attachment_uris: None,
        authentication_scheme: Some(AuthScheme::Iam),
    }
}

fn atlas_id(p: usize, l: usize) -> String {
    format!("{:012x}{:012x}", p, l)
}

fn peak_rss_mb() -> Option<f64> {
    status_mb("VmHWM:")
}

fn status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger.db");

    let mut desired = DesiredState::default();
    let mut listings = Listings::new();
    for p in 0..PROJECTS {
        let group = GroupId::parse(&format!("{p:024x}"))?;
        let project = desired.projects.entry(group.clone()).or_default();
        let mut connections = Vec::with_capacity(LINKS_PER_PROJECT);
        for l in 0..LINKS_PER_PROJECT {
            let s = spec(p, l);
            connections.push(RemoteConnection {
                id: atlas_id(p, l),
                provider: Some("AWS".into()),
                vendor: Some("MSK".into()),
                region: Some("us-east-1".into()),
                arn: s.arn.clone(),
                state: Some(RemoteState::Done),
                ..Default::default()
            });
            let name = format!("link-{l:03}");
            let link = DesiredLink::new(
                LinkKey::new(group.clone(), name.clone()),
                s,
                Source {
                    file: PathBuf::from(format!("manifests/p{p}.yaml")),
                    line: Some(l * 6 + 4),
                },
            );
            project.links.insert(name, link);
        }
        listings.insert(group, RemoteListing { connections });
    }

    let inputs_mb = status_mb("VmRSS:");
    let mut ledger = Ledger::open(&path)?;
    let write_start = Instant::now();
    // Every link recorded, except one in ten per project left unrecorded: those are adopted from
    // the listing, so the adoption path is timed too.
    let changes: Vec<Change> = desired
        .links()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(i, link)| Change::Adopted {
            key: link.key.clone(),
            spec: link.spec.clone(),
            fingerprint: link.fingerprint.clone(),
            atlas_id: atlas_id(i / LINKS_PER_PROJECT, i % LINKS_PER_PROJECT),
            remote_state: Some(RemoteState::Done),
            remote_error: None,
            at_unix: NOW,
        })
        .collect();
    for chunk in changes.chunks(BATCH) {
        ledger.apply(chunk)?;
    }
    drop(changes);
    let write = write_start.elapsed();

    let read_start = Instant::now();
    let records = ledger.records()?;
    let read = read_start.elapsed();
    drop(ledger);
    let before_plan_mb = status_mb("VmRSS:");

    let plan_start = Instant::now();
    let result = plan(&desired, &records, &listings, NOW);
    let planned = plan_start.elapsed();
    let counts = result.counts();
    let after_plan_mb = status_mb("VmRSS:");
    drop(result);

    let cold_start = Instant::now();
    let cold = plan(&desired, &[], &listings, NOW);
    let cold_planned = cold_start.elapsed();

    println!(
        "links: {}, projects: {PROJECTS}, records: {}",
        desired.link_count(),
        records.len()
    );
    println!(
        "ledger write ({} batches of {BATCH}): {:>8.1} ms",
        records.len().div_ceil(BATCH),
        write.as_secs_f64() * 1e3
    );
    println!(
        "Ledger::records():                  {:>8.1} ms",
        read.as_secs_f64() * 1e3
    );
    println!(
        "plan() (90% recorded, 10% adopted): {:>8.1} ms  {counts:?}",
        planned.as_secs_f64() * 1e3
    );
    println!(
        "plan() (empty ledger, all adopted): {:>8.1} ms  adopt={}",
        cold_planned.as_secs_f64() * 1e3,
        cold.counts().adopt
    );
    println!(
        "RSS: desired+listings {:.1} MB, +records {:.1} MB, +plan {:.1} MB",
        inputs_mb.unwrap_or(f64::NAN),
        before_plan_mb.unwrap_or(f64::NAN),
        after_plan_mb.unwrap_or(f64::NAN)
    );
    match peak_rss_mb() {
        Some(mb) => println!("peak RSS (VmHWM):                   {mb:>8.1} MB"),
        None => println!("peak RSS: unavailable (no /proc/self/status)"),
    }
    assert_eq!(counts.unchanged + counts.adopt, desired.link_count());
    assert_eq!(cold.counts().adopt, desired.link_count());
    Ok(())
}
