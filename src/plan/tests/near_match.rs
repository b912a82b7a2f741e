//! Near-matches: a connection at the same far end that is not what the manifest says is a conflict.

use super::*;

#[test]
fn a_near_match_is_a_conflict_not_a_create() {
    let a = link(1, "a", msk("a"));
    let l = listing(1, vec![scram("r1", "a"), remote("r0", &msk("other"))]);
    let p = plan(&desired(std::slice::from_ref(&a)), &[], &l, NOW, &S);
    assert_eq!(conflict(only(&p)), ("r1", &["authenticationScheme"][..]));
    assert!(p.projects_to_list().is_empty());
    let c = p.counts();
    assert_eq!((c.conflict, c.create, total(&c)), (1, 0, 1));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["counts"]["conflict"], 1);
    assert_eq!(
        json["actions"][0],
        serde_json::json!({
            "action": "conflict",
            "groupId": g(1).to_string(),
            "name": "a",
            "atlasId": "r1",
            "fields": ["authenticationScheme"],
            "source": "m.yaml:3",
        })
    );
}

#[test]
fn a_near_match_also_stops_a_recreate_a_resume_and_a_retry() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let l = listing(1, vec![scram("r2", "a")]);
    for rec in [
        record(&a, Phase::Created, Some("r1")),
        record(&a, Phase::Intent, None),
        failed(&a, NOW),
    ] {
        let p = plan(&d, std::slice::from_ref(&rec), &l, NOW, &S);
        assert_eq!(conflict(only(&p)).0, "r2", "{rec:?}");
    }
}

#[test]
fn near_matches_lowest_id_first_and_a_match_wins_over_any() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let p = plan(
        &d,
        &[],
        &listing(1, vec![scram("r3", "a"), scram("r2", "a")]),
        NOW,
        &S,
    );
    assert_eq!(conflict(only(&p)).0, "r2");
    // A match is adopted even when a near-match has a lower id.
    let l = listing(1, vec![scram("r1", "a"), remote("r9", &msk("a"))]);
    let p = plan(&d, &[], &l, NOW, &S);
    assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r9"));
}

#[test]
fn claimed_and_deleting_connections_are_not_near_matches() {
    let a = link(1, "a", msk("a"));
    // r1 is held by an orphaned record (of another spec, so not a rename).
    let held = link(
        1,
        "held",
        LinkSpec {
            authentication_scheme: Some(AuthScheme::Tls),
            ..msk("a")
        },
    );
    let recs = [record(&held, Phase::Created, Some("r1"))];
    let p = plan(
        &desired(std::slice::from_ref(&a)),
        &recs,
        &listing(1, vec![scram("r1", "a")]),
        NOW,
        &S,
    );
    assert_eq!(reason(&p.actions[0]), CreateReason::New);

    // r1 is adopted by an earlier link of the same plan (`b` asks for TLS on the same cluster).
    let b = link(
        1,
        "b",
        LinkSpec {
            authentication_scheme: Some(AuthScheme::Tls),
            ..msk("a")
        },
    );
    let p = plan(
        &desired(&[a.clone(), b]),
        &[],
        &listing(1, vec![remote("r1", &msk("a"))]),
        NOW,
        &S,
    );
    assert!(matches!(&p.actions[0], Action::Adopt { remote, .. } if remote.id == "r1"));
    assert_eq!(reason(&p.actions[1]), CreateReason::New);

    let mut deleting = scram("r1", "a");
    deleting.state = Some(RemoteState::DeleteRequested);
    let p = plan(
        &desired(std::slice::from_ref(&a)),
        &[],
        &listing(1, vec![deleting]),
        NOW,
        &S,
    );
    assert_eq!(reason(only(&p)), CreateReason::New);

    // Another project's connections are never compared.
    let p = plan(
        &desired(&[a]),
        &[],
        &listing(2, vec![scram("r1", "a")]),
        NOW,
        &S,
    );
    assert_eq!(reason(only(&p)), CreateReason::New);
}
