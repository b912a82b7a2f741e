//! Benchmark: 100,000 declared links across 1,000 projects, all recorded in a ledger file.
//!
//! Times `Ledger::records()` and `plan(...)` separately (wall and this thread's CPU time, since the
//! machine may be shared) and prints peak RSS (`VmHWM`). The main scenario is a steady-state pass:
//! every link recorded, nothing to create, so no project is listed. A second scenario, run after
//! the main figures are printed, plans a first pass against complete listings where every link
//! is adopted. Every link there is an MSK link with its own ARN, so each adoption is one lookup in
//! the ARN index: the adoption path's best case. Links the index cannot narrow (whose spec sets
//! neither `arn` nor `serviceEndpointId`) scan their project's unclaimed
//! connections instead, which this benchmark does not measure.
//! Run with `cargo bench --bench plan`. Targets: plan <= 200 ms, peak RSS <= 150 MB.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

use atlas_linkd::ledger::{Change, Ledger};
use atlas_linkd::model::{
    AuthScheme, DesiredLink, DesiredProject, DesiredState, GroupId, LinkKey, LinkSpec, Provider,
    RemoteConnection, RemoteState, Source, Vendor,
};
use atlas_linkd::plan::{Listings, PlanSettings, RemoteListing, plan};
use std::path::{Path, PathBuf};
use std::sync::Arc;
mod support;
use support::{ms, status_mb, thread_cpu};

fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration, std::time::Duration) {
    support::timed(thread_cpu, f)
}

const PROJECTS: usize = 1_000;
const LINKS_PER_PROJECT: usize = 100;
const BATCH: usize = 10_000;
const NOW: i64 = 1_700_000_000;
const SETTINGS: PlanSettings = PlanSettings {
    settle_secs: 30,
    prune: atlas_linkd::plan::PruneSettings::OFF,
};

fn spec(p: usize, l: usize) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/p{p}-l{l}/5a6b7c8d-1234-5678-9abc-def012345678-1"
        )),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn atlas_id(p: usize, l: usize) -> String {
    format!("{p:012x}{l:012x}")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ledger.db");

    // Built as `manifest::load` builds it: one file per project, shared by its links, and each
    // project's map collected in one go (full B-tree nodes).
    let mut desired = DesiredState::default();
    for p in 0..PROJECTS {
        let group = GroupId::parse(&format!("{p:024x}"))?;
        let file: Arc<Path> = PathBuf::from(format!("manifests/p{p}.yaml")).into();
        let links = (0..LINKS_PER_PROJECT)
            .map(|l| {
                let name = format!("link-{l:03}");
                let source = Source {
                    file: file.clone(),
                    line: Some(l * 6 + 4),
                };
                let key = LinkKey::new(group.clone(), name);
                DesiredLink::new(key, spec(p, l), source)
            })
            .collect();
        desired
            .projects
            .insert(group, DesiredProject { label: None, links });
    }
    let desired_mb = status_mb("VmRSS:");

    let mut ledger = Ledger::open(&path)?;
    let ((), write, _) = timed(|| -> () {
        let changes: Vec<Change> = desired
            .links()
            .enumerate()
            .map(|(i, link)| Change::Adopted {
                key: link.key.clone(),
                spec: link.spec.clone(),
                fingerprint: link.fingerprint,
                atlas_id: atlas_id(i / LINKS_PER_PROJECT, i % LINKS_PER_PROJECT),
                remote_state: Some(RemoteState::Done),
                remote_error: None,
                outputs: Default::default(),
                at_unix: NOW,
            })
            .collect();
        for chunk in changes.chunks(BATCH) {
            if let Err(e) = ledger.apply(chunk) {
                panic!("writing the ledger: {e}");
            }
        }
    });
    let (records, read_wall, read_cpu) = timed(|| ledger.records());
    let records = records?;
    let records_mb = status_mb("VmRSS:");
    let (result, plan_wall, plan_cpu) =
        timed(|| plan(&desired, &records, &Listings::new(), NOW, &SETTINGS));
    let counts = result.counts();
    let plan_mb = status_mb("VmRSS:");
    let peak_mb = status_mb("VmHWM:");

    println!(
        "links: {}, projects: {PROJECTS}, ledger rows: {}",
        desired.link_count(),
        records.len()
    );
    println!(
        "ledger write ({} transactions of {BATCH}): {:>8.1} ms wall",
        records.len().div_ceil(BATCH),
        ms(write)
    );
    println!(
        "Ledger::records():                  {:>8.1} ms wall {:>6.0} ms cpu",
        ms(read_wall),
        ms(read_cpu)
    );
    println!(
        "plan() steady state, no listings:   {:>8.1} ms wall {:>6.0} ms cpu  {counts:?}",
        ms(plan_wall),
        ms(plan_cpu)
    );
    println!("RSS: desired {desired_mb:.1} MB, +records {records_mb:.1} MB, +plan {plan_mb:.1} MB");
    println!("peak RSS (VmHWM):                   {peak_mb:>8.1} MB");
    assert_eq!(counts.unchanged, desired.link_count());
    drop(result);
    drop(ledger);

    // Second scenario: first pass against complete listings, every link adopted.
    let mut listings = Listings::new();
    for (p, (group, project)) in desired.projects.iter().enumerate() {
        let connections = project
            .links
            .values()
            .enumerate()
            .map(|(l, link)| RemoteConnection {
                id: atlas_id(p, l),
                provider: Some("AWS".into()),
                vendor: Some("MSK".into()),
                region: Some("us-east-1".into()),
                arn: link.spec.arn.clone(),
                state: Some(RemoteState::Done),
                ..Default::default()
            })
            .collect();
        listings.insert(group.clone(), RemoteListing::new(connections));
    }
    let (cold, cold_wall, cold_cpu) = timed(|| plan(&desired, &[], &listings, NOW, &SETTINGS));
    println!(
        "plan() first pass, all adopted:     {:>8.1} ms wall {:>6.0} ms cpu  adopt={}",
        ms(cold_wall),
        ms(cold_cpu),
        cold.counts().adopt
    );
    println!(
        "peak RSS with listings (VmHWM):     {:>8.1} MB",
        status_mb("VmHWM:")
    );
    assert_eq!(cold.counts().adopt, desired.link_count());
    Ok(())
}
