//! The library's and the fake Atlas's integration tests, one module per area, in one binary so the
//! library is linked once. Tests that run the real `atlas-linkd` binary are in `tests/binary/`.
#![allow(clippy::unwrap_used)]

#[path = "../support/mod.rs"]
mod support;

mod atlas_client;
mod atlas_delete;
mod atlas_hostile;
mod atlas_update;
mod config_debounce;
mod config_load;
mod config_prune;
mod endpoint_http;
mod fake_api;
mod fake_auth;
mod fake_commit;
mod fake_faults;
mod fake_lifecycle;
mod ledger_interleave;
mod ledger_memory;
mod ledger_prune;
mod ledger_store;
mod ledger_tls;
mod manifest_corpus;
mod manifest_files;
mod manifest_fingerprint;
mod manifest_schema;
mod plan_props;
mod postgres_harness;
mod reconcile_pass;
mod reconcile_prune;
mod reconcile_update;
