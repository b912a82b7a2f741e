//! `plan`: what a pass would do, from the ledger and (unless `--offline`) complete listings; changes nothing.

use super::Output;
use super::load::{env, load};
use crate::exit::{Exit, refuse};
use crate::logging::init_logging;
use crate::model::GroupId;
use crate::plan;
use crate::reconcile::now_unix;
use crate::report::plan_text;
use crate::wiring::client_from_config;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

/// Prints the plan; exit 1 when a project cannot be listed (a partial listing proves nothing).
pub(crate) async fn run(flag: Option<&Path>, output: Output, offline: bool) -> ExitCode {
    let Some((config, desired)) = load(flag) else {
        return Exit::NotAttempted.into();
    };
    init_logging(config.log.format, false);
    // A ledger that does not exist yet is an empty one: the first plan of a new installation.
    let records = match config.ledger.read_only_records_or_none(&env) {
        Ok(r) => r,
        Err(e) => return refuse(&e),
    };
    let settings = plan::PlanSettings::from_settle_secs(config.reconcile.settle_secs)
        .with_prune(crate::reconcile::prune_settings(&config));
    // Before any listing starts: see "Creates still in flight" in `plan`.
    let now = now_unix();
    let mut listings = plan::Listings::new();
    if !offline {
        let client = match client_from_config(&config, None, &env) {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        // Every declared or recorded project, as `--once` lists them: only a listing shows the
        // unmanaged connections, and what a prune would delete. Projects in parallel, up to
        // `reconcile.concurrency`: one listing costs a project one token (a page of 500), far
        // inside any bucket, so `plan` needs no limiter of its own.
        let mut projects: BTreeSet<GroupId> = desired.projects.keys().cloned().collect();
        projects.extend(records.iter().map(|r| r.key.group_id.clone()));
        let results: Vec<_> = futures::stream::iter(projects)
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
                    listings.insert(group, plan::RemoteListing::new(connections));
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
            return Exit::NotConverged.into();
        }
    }
    let plan = plan::plan(&desired, &records, &listings, now, &settings);
    match output {
        Output::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&plan)
                .expect("a plan is strings, numbers and lists: nothing serde_json can refuse")
        ),
        Output::Text => out!("{}", plan_text(&plan)),
    }
    Exit::Converged.into()
}
