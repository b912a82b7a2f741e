//! The report's text and JSON forms, and what converges.

use super::*;
use crate::model::GroupId;

fn key(name: &str) -> LinkKey {
    LinkKey::new(GroupId::parse("32b6e34b3d91647abb20e7b8").unwrap(), name)
}

#[test]
fn prune_outcomes_and_unmanaged_connections_do_not_fail_the_pass_but_a_failed_delete_does() {
    let mut r = PassReport::new(0, 1);
    r.deleted.push(key("a"));
    r.deleting.push(key("b"));
    r.in_use.push(FailedLink::new(&key("c"), "in use".into()));
    r.held_back.push(FailedLink::new(&key("d"), "grace".into()));
    r.unmanaged.push(Unmanaged {
        group_id: key("e").group_id,
        atlas_id: "65f0c0ffee0000000000000a".into(),
        provider: None,
        vendor: None,
        state: None,
    });
    assert!(r.converged());
    let text = r.to_text();
    assert!(
        text.contains("prune: 1 deleted, 1 deleting, 1 in use, 1 held back; 1 unmanaged"),
        "{text}"
    );
    assert!(text.contains("unmanaged: 32b6e34b3d91647abb20e7b8/65f0c0ffee0000000000000a"));
    r.failed
        .push(FailedLink::new(&key("f"), "delete failed".into()));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn plan_text_names_each_delete_and_what_holds_the_others_back() {
    let plan = Plan {
        actions: vec![
            Action::Delete {
                key: key("a"),
                atlas_id: "65f0c0ffee0000000000000a".into(),
            },
            Action::Orphaned {
                key: key("b"),
                atlas_id: Some("65f0c0ffee0000000000000b".into()),
                phase: crate::model::Phase::Created,
                undeclared_since_unix: Some(0),
                hold: Some(Hold::Grace { until_unix: 3600 }),
            },
            Action::Orphaned {
                key: key("c"),
                atlas_id: None,
                phase: crate::model::Phase::Failed,
                undeclared_since_unix: None,
                hold: None,
            },
            Action::Deleting {
                key: key("d"),
                atlas_id: Some("65f0c0ffee0000000000000d".into()),
                listed: true,
                gone: false,
            },
        ],
        unmanaged: vec![Unmanaged {
            group_id: key("e").group_id,
            atlas_id: "65f0c0ffee0000000000000e".into(),
            provider: Some("AWS".into()),
            vendor: Some("S3".into()),
            state: None,
        }],
        duplicates: vec![Duplicate {
            group_id: key("f").group_id,
            name: "f".into(),
            atlas_id: "65f0c0ffee0000000000000f".into(),
            held_atlas_id: "65f0c0ffee00000000000001".into(),
            state: None,
        }],
    };
    let text = plan_text(&plan);
    for expected in [
        "delete     32b6e34b3d91647abb20e7b8/a (connection 65f0c0ffee0000000000000a",
        "within prune.grace_secs; deleted after 1970-01-01T01:00:00Z",
        "orphaned   32b6e34b3d91647abb20e7b8/c (connection - no longer declared; never created",
        "deleting   32b6e34b3d91647abb20e7b8/d",
        "unmanaged  32b6e34b3d91647abb20e7b8/65f0c0ffee0000000000000e (AWS S3, no state)",
        "duplicate  32b6e34b3d91647abb20e7b8/f: connection 65f0c0ffee0000000000000f (no state) is an exact copy of the link, whose connection is 65f0c0ffee00000000000001",
        "1 to delete, 1 deleting, 1 unmanaged, 1 duplicates",
    ] {
        assert!(text.contains(expected), "{expected}\n{text}");
    }
}

#[test]
fn changed_and_orphaned_links_do_not_fail_the_pass() {
    let mut r = PassReport::new(0, 3);
    r.changed.push(key("a").into());
    r.orphaned.push(key("b"));
    assert!(r.converged());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn failures_waits_skips_and_interruptions_fail_the_pass() {
    let base = PassReport::new(0, 1);
    let mut failed = base.clone();
    failed.failed.push(FailedLink::new(&key("a"), "400".into()));
    let mut waiting = base.clone();
    waiting
        .waiting
        .push(FailedLink::new(&key("a"), "later".into()));
    let mut skipped = base.clone();
    skipped
        .not_attempted
        .push(FailedLink::new(&key("a"), "list failed".into()));
    let mut interrupted = base.clone();
    interrupted.interrupted = true;
    let mut conflicted = base.clone();
    conflicted
        .conflicted
        .push(FailedLink::new(&key("a"), "near-match".into()));
    let mut in_flight = base.clone();
    in_flight.add_in_flight(&key("a"), 100);
    let mut unverified = base.clone();
    unverified
        .unverified
        .push(FailedLink::new(&key("a"), "list failed".into()));
    for r in [
        failed,
        waiting,
        skipped,
        interrupted,
        conflicted,
        in_flight,
        unverified,
    ] {
        assert_eq!(r.exit_code(), 1, "{}", r.to_text());
    }
}

#[test]
fn the_follow_up_is_the_earliest_settle_end() {
    let mut r = PassReport::new(0, 2);
    r.add_in_flight(&key("a"), 200);
    r.add_in_flight(&key("b"), 150);
    assert_eq!(r.follow_up_unix, Some(150));
    assert!(r.to_text().contains("in flight: "));
}

#[test]
fn text_names_failing_links_and_reasons() {
    let mut r = PassReport::new(0, 2);
    r.failed.push(FailedLink::new(
        &key("orders-msk"),
        "400 VALIDATION_ERROR: no Azure cluster".into(),
    ));
    let text = r.to_text();
    assert!(text.contains("orders-msk"));
    assert!(text.contains("VALIDATION_ERROR"));
    assert!(text.contains("NOT converged"));
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[test]
fn json_keys_are_camel_case_and_every_link_has_group_id_and_name() {
    let mut r = PassReport::new(1_700_000_000, 6);
    r.created.push(key("a"));
    r.adopted.push(key("b"));
    r.changed.push(key("c").into());
    r.orphaned.push(key("d"));
    r.updated.push(key("g"));
    r.failed
        .push(FailedLink::new(&key("e"), "400 VALIDATION_ERROR".into()));
    r.add_in_flight(&key("f"), 1_700_000_030);
    r.deleted.push(key("g"));
    r.deleting.push(key("h"));
    r.in_use.push(FailedLink::new(&key("i"), "in use".into()));
    r.held_back.push(FailedLink::new(&key("j"), "grace".into()));
    r.unmanaged.push(Unmanaged {
        group_id: key("k").group_id,
        atlas_id: "65f0c0ffee0000000000000a".into(),
        provider: Some("AWS".into()),
        vendor: Some("MSK".into()),
        state: None,
    });
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        keys(&json),
        [
            "adopted",
            "apiCalls",
            "changed",
            "conflicted",
            "conflicts",
            "created",
            "deleted",
            "deleting",
            "desired",
            "duplicates",
            "duration",
            "failed",
            "followUpUnix",
            "heldBack",
            "inFlight",
            "inUse",
            "interrupted",
            "ledgerErrors",
            "ledgerRefused",
            "notAttempted",
            "orphaned",
            "rateLimited",
            "renamed",
            "startedUnix",
            "unchanged",
            "unmanaged",
            "unverified",
            "updated",
            "waiting"
        ]
    );
    assert_eq!(
        keys(&json["unmanaged"][0]),
        ["atlasId", "groupId", "provider", "state", "vendor"]
    );
    for list in [
        "created", "adopted", "changed", "orphaned", "updated", "deleted", "deleting",
    ] {
        let entry = &json[list][0];
        assert_eq!(keys(entry), ["groupId", "name"], "{list}: {entry}");
        assert_eq!(entry["groupId"], "32b6e34b3d91647abb20e7b8");
    }
    for list in ["failed", "inFlight", "inUse", "heldBack"] {
        let entry = &json[list][0];
        assert_eq!(
            keys(entry),
            ["groupId", "name", "reason"],
            "{list}: {entry}"
        );
    }
    assert_eq!(json["created"][0]["name"], "a");
    assert_eq!(json["followUpUnix"], 1_700_000_030);
}

#[test]
fn an_update_counts_as_converged_and_a_refused_one_is_changed_with_its_reason() {
    let mut r = PassReport::new(0, 2);
    r.updated.push(key("a"));
    r.changed.push(ChangedLink::new(
        &key("b"),
        Some("dnsDomain can be updated only while the connection is IDLE or has no domain; it is DONE".into()),
    ));
    assert!(r.converged());
    let text = r.to_text();
    assert!(text.contains(" 1 updated,"), "{text}");
    assert!(
        text.contains("updated: 32b6e34b3d91647abb20e7b8/a"),
        "{text}"
    );
    assert!(
        text.contains("changed: 32b6e34b3d91647abb20e7b8/b: dnsDomain can be updated only while"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(keys(&json["changed"][0]), ["groupId", "name", "reason"]);
    assert_eq!(json["updated"][0]["name"], "a");
}
