//! `ledger copy`, through the binary: a SQLite ledger moved to PostgreSQL and back, row for row, a
//! non-empty target refused, and a `--once` on the copy that finds nothing to do.

use crate::support::harness::{self, harness, once};
use crate::support::postgres::TestPostgres;
use crate::support::test_env;
use atlas_linkd::ledger::{Ledger, LedgerLocation};
use fake_atlas::FakeConfig;
use std::process::Output;

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn run(config: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::from(harness::binary(config));
    cmd.args(args).kill_on_drop(true);
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_moves_to_postgres_and_back_row_for_row() {
    let pg = TestPostgres::start();
    let h = harness(FakeConfig::default(), 2, 3, "").await;
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = Ledger::read_only_records(&h.ledger_path()).unwrap();
    assert_eq!(rows.len(), 6);

    let url = pg.new_database();
    let out = run(&h.config_path, &["ledger", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("copied 6 row(s)"),
        "{}",
        text(&out)
    );
    let on_postgres = LedgerLocation::parse(&url, |p| p.to_path_buf(), &test_env)
        .unwrap()
        .read_only_records(&test_env)
        .unwrap();
    assert_eq!(on_postgres, rows);

    // Into a ledger that holds rows: refused, nothing written.
    let out = run(&h.config_path, &["ledger", "copy", "--to", &url]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds 6 row(s)"),
        "{}",
        text(&out)
    );

    // And back, into a new file.
    let back = h.dir.path().join("back.db");
    let out = run(
        &h.config_path,
        &[
            "ledger",
            "copy",
            "--from",
            &url,
            "--to",
            back.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(Ledger::read_only_records(&back).unwrap(), rows);

    // A pass on the copy finds every link recorded: nothing to create.
    let config = h.dir.path().join("pg.yaml");
    let original = std::fs::read_to_string(&h.config_path).unwrap();
    std::fs::write(
        &config,
        original.replace("ledger: state/ledger.db", &format!("ledger: {url}")),
    )
    .unwrap();
    let creates = h.fake.counters().requests_of("create");
    let out = once(&config).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(h.fake.counters().requests_of("create"), creates);
    h.assert_exactly_once();
}
