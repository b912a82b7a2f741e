//! Creates still in flight at Atlas: no create until the settle window has passed.

use super::*;

#[test]
fn a_create_sent_without_an_answer_is_in_flight_until_settled() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let sent = NOW - 29;
    let recs = [intent_sent(&a, sent)];
    // Without a listing and with an empty one alike: Atlas may still commit it.
    for l in [Listings::new(), listing(1, vec![])] {
        let p = plan(&d, &recs, &l, NOW, &S);
        match only(&p) {
            Action::InFlight { link, until_unix } => {
                assert_eq!(link.key, a.key);
                assert_eq!(*until_unix, sent + 30);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.projects_to_list(), BTreeSet::from([g(1)]));
        assert_eq!(p.counts().inflight, 1);
    }
    // At `until`, a listing started then decides: nothing there, so create again.
    let p = plan(&d, &recs, &listing(1, vec![]), sent + 30, &S);
    assert_eq!(reason(only(&p)), CreateReason::Resume);
    let p = plan(&d, &recs, &listing(1, vec![]), sent + 29, &S);
    assert!(matches!(only(&p), Action::InFlight { .. }));

    let json = serde_json::to_value(plan(&d, &recs, &Listings::new(), NOW, &S)).unwrap();
    assert_eq!(
        json["actions"][0],
        serde_json::json!({
            "action": "inflight",
            "groupId": g(1).to_string(),
            "name": "a",
            "untilUnix": sent + 30,
        })
    );
    assert_eq!(json["counts"]["inflight"], 1);
}

#[test]
fn in_flight_with_a_match_adopts_and_with_a_near_match_conflicts() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let recs = [intent_sent(&a, NOW)];
    let p = plan(
        &d,
        &recs,
        &listing(1, vec![remote("r1", &msk("a"))]),
        NOW,
        &S,
    );
    assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r1"));
    let p = plan(&d, &recs, &listing(1, vec![scram("r1", "a")]), NOW, &S);
    assert_eq!(conflict(only(&p)).0, "r1");
}

#[test]
fn a_failed_create_waits_first_then_settles_then_retries() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let sent = NOW - 10;
    let with_sent = |next: i64| Record {
        sent_unix: Some(sent),
        ..failed(&a, next)
    };
    // Not due: waiting, whatever the window.
    let p = plan(&d, &[with_sent(NOW + 5)], &Listings::new(), NOW, &S);
    assert!(matches!(only(&p), Action::Waiting { .. }));
    // Due, but still in flight.
    let p = plan(&d, &[with_sent(NOW)], &listing(1, vec![]), NOW, &S);
    assert!(matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == sent + 30));
    // Due and settled.
    let p = plan(&d, &[with_sent(NOW)], &listing(1, vec![]), sent + 30, &S);
    assert_eq!(reason(only(&p)), CreateReason::Retry);
    // A fixed manifest retries at once, but not while the old create may still land.
    let old = link(1, "a", msk("typo"));
    let rec = Record {
        sent_unix: Some(sent),
        ..failed(&old, NOW + 3600)
    };
    let p = plan(&d, std::slice::from_ref(&rec), &Listings::new(), NOW, &S);
    assert!(matches!(only(&p), Action::InFlight { .. }));
    let p = plan(&d, &[rec], &listing(1, vec![]), sent + 30, &S);
    assert_eq!(reason(only(&p)), CreateReason::Retry);
}

#[test]
fn only_intents_and_failures_are_in_flight_and_the_window_saturates() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    // Answered creates are not in flight: gone from a listing, they are recreated.
    let created = Record {
        sent_unix: Some(NOW),
        ..record(&a, Phase::Created, Some("r1"))
    };
    let p = plan(&d, &[created], &listing(1, vec![]), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::Recreate);
    // An intent without a send time (never sent) is resumed at once.
    let p = plan(
        &d,
        &[record(&a, Phase::Intent, None)],
        &listing(1, vec![]),
        NOW,
        &S,
    );
    assert_eq!(reason(only(&p)), CreateReason::Resume);
    let p = plan(
        &d,
        &[intent_sent(&a, i64::MAX - 5)],
        &Listings::new(),
        NOW,
        &S,
    );
    assert!(matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == i64::MAX));
    let never = PlanSettings::from_settle_secs(u64::MAX);
    assert_eq!(never.settle_secs, i64::MAX);
    let p = plan(&d, &[intent_sent(&a, NOW)], &Listings::new(), NOW, &never);
    assert!(matches!(only(&p), Action::InFlight { until_unix, .. } if *until_unix == i64::MAX));
}
