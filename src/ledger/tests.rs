//! Unit tests of the store: crash safety mid-transaction and decoding bad rows.

use super::rows::{RawRecord, write_change};
use super::*;
use crate::model::{
    AuthScheme, EndpointOutputs, GroupId, LinkKey, LinkSpec, Phase, Provider, RemoteState, Vendor,
};
use rusqlite::TransactionBehavior;
use std::path::Path;

fn gid() -> GroupId {
    GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap()
}

fn spec(arn: &str) -> LinkSpec {
    LinkSpec {
        arn: Some(arn.into()),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn intent(name: &str, at: i64) -> Change {
    let s = spec(&format!("arn:aws:kafka:us-east-1:1:cluster/{name}/1"));
    Change::Intent {
        key: LinkKey::new(gid(), name),
        fingerprint: s.fingerprint(),
        spec: s,
        at_unix: at,
    }
}

/// Split between two connections or not, and wherever the split falls (inside a project or
/// between two), the rows read are every row, in key order.
#[test]
fn a_read_on_two_connections_is_the_plain_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let other = GroupId::parse("0000000000000000000000aa").unwrap();
    let mut changes: Vec<Change> = ["b", "a", "d", "c", "e"]
        .iter()
        .map(|n| intent(n, 1))
        .collect();
    let s = spec("arn:aws:kafka:us-east-1:1:cluster/z/1");
    changes.push(Change::Intent {
        key: LinkKey::new(other, "z"),
        fingerprint: s.fingerprint(),
        spec: s,
        at_unix: 2,
    });
    for (i, change) in changes.into_iter().enumerate() {
        ledger.apply(&[change]).unwrap();
        let plain = ledger.records().unwrap();
        assert_eq!(plain.len(), i + 1);
        assert!(plain.is_sorted_by(|a, b| a.key < b.key));
        let halves = ledger.read_halves().unwrap();
        if plain.len() < 2 {
            assert_eq!(halves, None);
        } else {
            assert_eq!(halves.as_ref(), Some(&plain), "{} rows", plain.len());
        }
        assert_eq!(ledger.records_in_parallel().unwrap(), plain);
    }
}

const CHILD_ENV: &str = "ATLAS_LINKD_LEDGER_ABORT_CHILD";

/// Re-runs itself as a child process that commits one change, then dies by `abort` in the
/// middle of a second transaction; the parent checks that only the committed state remains.
#[test]
fn interrupted_transaction_leaves_earlier_state() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        abort_mid_transaction(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ledger::tests::interrupted_transaction_leaves_earlier_state",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die by abort");
    // The lock died with the child, and the committed state is all there is.
    let ledger = Ledger::open(&path).unwrap();
    let records = ledger.records().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.name, "kept");
    assert_eq!(records[0].phase, Phase::Intent);
    assert_eq!(records[0].atlas_id, None);
}

fn abort_mid_transaction(path: &Path) -> ! {
    let mut ledger = Ledger::open(path).unwrap();
    ledger.apply(&[intent("kept", 10)]).unwrap();
    let tx = ledger
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    write_change(&tx, &ledger.path, &intent("lost", 20)).unwrap();
    write_change(
        &tx,
        &ledger.path,
        &Change::Created {
            key: LinkKey::new(gid(), "kept"),
            atlas_id: "65a1b2c3d4e5f60718293a4b".into(),
            at_unix: 21,
        },
    )
    .unwrap();
    std::process::abort();
}

#[test]
fn bad_phase_is_an_error_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut ledger = Ledger::open(&path).unwrap();
    ledger.apply(&[intent("a", 1)]).unwrap();
    // The CHECK constraint guards phase; a bad group id is what can slip in.
    ledger
        .conn
        .execute("UPDATE links SET group_id = 'NOT-A-GROUP'", [])
        .unwrap();
    let err = ledger.records().unwrap_err();
    assert!(matches!(err, LedgerError::BadRecord { .. }), "{err}");
    assert!(err.to_string().contains("NOT-A-GROUP/a"), "{err}");
}

/// A bad row is reported with its key whichever half of a split read it falls in: the first half's
/// connection reports it, and a second half that cannot be read leaves the read to the plain one.
#[test]
fn a_bad_row_in_either_half_of_a_split_read_is_the_plain_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    for name in ["a", "b", "c", "d"] {
        ledger.apply(&[intent(name, 1)]).unwrap();
    }
    let bad_fingerprint = |name: &str| {
        ledger
            .conn
            .execute(
                "UPDATE links SET fingerprint = 'zz' WHERE name = ?1",
                [name],
            )
            .unwrap();
    };
    bad_fingerprint("d");
    assert_eq!(ledger.read_halves().unwrap(), None, "the second half");
    let err = ledger.records_in_parallel().unwrap_err();
    assert!(err.to_string().contains("/d"), "{err}");
    bad_fingerprint("a");
    let err = ledger.read_halves().unwrap_err();
    assert!(matches!(err, LedgerError::BadRecord { .. }), "{err}");
    assert!(err.to_string().contains("/a"), "{err}");
}

#[test]
fn decode_rejects_unknown_phase_and_negative_attempts() {
    let group = gid().to_string();
    let fingerprint = "ab".repeat(32);
    let raw = || RawRecord {
        group_id: &group,
        name: "x".into(),
        spec_json: "{}".into(),
        fingerprint: &fingerprint,
        atlas_id: None,
        phase: "intent",
        remote_state: Some("DONE"),
        remote_error: None,
        attempts: 0,
        last_error: None,
        next_attempt_unix: None,
        created_unix: 0,
        updated_unix: 0,
        prune: Default::default(),
        sent_unix: None,
        outputs: EndpointOutputs::default(),
    };
    let p = Path::new("/l.db");
    let good = raw().decode(p, None).unwrap();
    assert_eq!(good.remote_state, Some(RemoteState::Done));
    assert_eq!(good.fingerprint.to_hex(), fingerprint);
    // The previous row's project id is shared, not parsed again.
    let next = raw().decode(p, Some(&good.key.group_id)).unwrap();
    assert_eq!(next.key, good.key);
    let mut r = raw();
    r.phase = "exploded";
    assert!(
        r.decode(p, None)
            .unwrap_err()
            .to_string()
            .contains("exploded")
    );
    let mut r = raw();
    r.fingerprint = "f";
    assert!(
        r.decode(p, None)
            .unwrap_err()
            .to_string()
            .contains("fingerprint `f`")
    );
    let mut r = raw();
    r.attempts = -1;
    assert!(matches!(
        r.decode(p, None).unwrap_err(),
        LedgerError::BadRecord { .. }
    ));
}

#[test]
fn a_spec_update_replaces_spec_and_fingerprint_of_a_created_link_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let key = LinkKey::new(gid(), "a");
    let updated = |at_unix| {
        let mut s = spec("arn:aws:kafka:us-east-1:1:cluster/a/1");
        s.dns_domain = Some("use1.abc.confluent.cloud".into());
        Change::SpecUpdated {
            key: key.clone(),
            fingerprint: s.fingerprint(),
            spec: s,
            at_unix,
        }
    };
    ledger.apply(&[intent("a", 10)]).unwrap();
    // Only a created or adopted row takes it: an intent's spec is the create it sent.
    assert!(matches!(
        ledger.apply(&[updated(11)]),
        Err(LedgerError::NotUpdatable { .. })
    ));
    ledger
        .apply(&[Change::Created {
            key: key.clone(),
            atlas_id: "65a1b2c3d4e5f60718293a4b".into(),
            at_unix: 12,
        }])
        .unwrap();
    ledger.apply(&[updated(13)]).unwrap();
    let records = ledger.records().unwrap();
    let Change::SpecUpdated {
        spec, fingerprint, ..
    } = updated(13)
    else {
        unreachable!()
    };
    assert_eq!(records[0].spec().unwrap(), spec);
    assert_eq!(records[0].fingerprint, fingerprint);
    assert_eq!(records[0].phase, Phase::Created);
    assert_eq!(
        records[0].atlas_id.as_deref(),
        Some("65a1b2c3d4e5f60718293a4b")
    );
    assert_eq!(records[0].updated_unix, 13);
}
