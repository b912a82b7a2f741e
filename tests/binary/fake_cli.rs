//! The `fake-atlas` flags: parsing into a configuration, refusing bad combinations and non-loopback addresses.

use clap::Parser;
use fake_atlas::{DuplicateMode, FakeArgs, FakeAuth, FakeError, serve};

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    fake: FakeArgs,
}

fn parse(args: &[&str]) -> Result<FakeArgs, clap::Error> {
    let mut all = vec!["fake-atlas"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all).map(|c| c.fake)
}

#[test]
fn defaults_are_atlas_like() {
    let config = parse(&[]).unwrap().to_config().unwrap();
    assert_eq!(config.auth, FakeAuth::Any);
    let bucket = config.bucket.unwrap();
    assert_eq!((bucket.capacity, bucket.refill), (1200, 500));
    assert_eq!(config.duplicates, DuplicateMode::Conflict);
    assert_eq!(config.faults.p_500, 0.0);
    assert_eq!(config.other_client_per_sec, 0.0);
    assert_eq!(config.commit_delay_ms, 0);
    assert_eq!(config.faults.p_reset_create, 0.0);
}

#[test]
fn flags_reach_the_config() {
    let args = parse(&[
        "--listen",
        "127.0.0.1:9999",
        "--client-id",
        "mdb_sa_id_x",
        "--client-secret",
        "s3cret",
        "--no-bucket",
        "--duplicates",
        "create",
        "--p-429",
        "0.1",
        "--p-drop-after",
        "0.2",
        "--seed",
        "9",
        "--fail-when-contains",
        "doomed",
        "--other-client-per-sec",
        "2.5",
        "--commit-delay-ms",
        "250",
        "--p-reset-create",
        "0.1",
        "--p-502-create",
        "0.05",
        "--p-504-create",
        "0.15",
    ])
    .unwrap();
    assert!(
        !format!("{args:?}").contains("s3cret"),
        "Debug must not show secrets"
    );
    let config = args.to_config().unwrap();
    assert!(!format!("{config:?}").contains("s3cret"));
    assert!(
        matches!(config.auth, FakeAuth::ServiceAccount { ref client_id, .. } if client_id == "mdb_sa_id_x")
    );
    assert!(config.bucket.is_none());
    assert_eq!(config.duplicates, DuplicateMode::Create);
    assert_eq!(config.faults.p_429, 0.1);
    assert_eq!(config.faults.p_drop_after, 0.2);
    assert_eq!(config.faults.seed, 9);
    assert_eq!(config.fail_when_contains.as_deref(), Some("doomed"));
    assert_eq!(config.other_client_per_sec, 2.5);
    assert_eq!(config.commit_delay_ms, 250);
    assert_eq!(config.faults.p_reset_create, 0.1);
    assert_eq!(config.faults.p_502_create, 0.05);
    assert_eq!(config.faults.p_504_create, 0.15);
}

#[test]
fn bad_flags_are_refused() {
    assert!(parse(&["--p-500", "1.5"]).is_err());
    assert!(parse(&["--other-client-per-sec", "-1"]).is_err());
    assert!(parse(&["--other-client-per-sec", "inf"]).is_err());
    assert!(
        parse(&["--client-id", "x"]).is_err(),
        "a client id needs its secret"
    );
    assert!(
        parse(&[
            "--public-key",
            "x",
            "--private-key",
            "y",
            "--client-id",
            "a",
            "--client-secret",
            "b"
        ])
        .is_err()
    );
    let too_much = parse(&["--p-500", "0.6", "--p-503", "0.6"]).unwrap();
    assert!(too_much.to_config().is_err());
    let too_much = parse(&["--p-500", "0.6", "--p-502-create", "0.5"]).unwrap();
    assert!(
        too_much.to_config().is_err(),
        "a create can draw any fault, so the sum counts create-only ones too"
    );
}

#[tokio::test]
async fn serve_refuses_a_non_loopback_address() {
    let args = parse(&["--listen", "0.0.0.0:0"]).unwrap();
    let err = serve(args).await.unwrap_err();
    assert!(matches!(err, FakeError::NotLoopback { .. }), "{err}");
}
