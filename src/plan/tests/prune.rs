//! Guarded prune: which undeclared records are deleted, and what holds every other one back.

use super::*;

const ON: PlanSettings = PlanSettings {
    settle_secs: 30,
    prune: PruneSettings {
        enabled: true,
        grace_secs: 3600,
        max_per_pass: 10,
    },
};

/// A record atlas-linkd created, undeclared since `since`.
fn undeclared(l: &DesiredLink, id: &str, since: Option<i64>) -> Record {
    Record {
        prune: PruneMark {
            undeclared_since_unix: since,
            in_use: false,
        },
        ..record(l, Phase::Created, Some(id))
    }
}

/// One declared link in project 1 (so the manifests declare something), beside the records.
fn keeper() -> DesiredLink {
    link(1, "keep", msk("keep"))
}

fn hold_of(p: &Plan, key: &LinkKey) -> Option<Hold> {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::Orphaned { key: k, hold, .. } if k == key => Some(hold.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{key} is not orphaned: {:?}", p.actions))
}

fn deletes(p: &Plan) -> Vec<&str> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { atlas_id, .. } => Some(atlas_id.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn an_undeclared_created_link_past_its_grace_and_listed_is_deleted() {
    let (k, gone) = (keeper(), link(1, "gone", msk("gone")));
    let recs = [undeclared(&gone, "r1", Some(NOW - 3600))];
    let l = listing(1, vec![remote("r1", &gone.spec), remote("rk", &k.spec)]);
    let p = plan(&desired(&[k]), &recs, &l, NOW, &ON);
    assert_eq!(deletes(&p), ["r1"]);
    assert!(p.actions.iter().any(|a| matches!(a,
        Action::Delete { key, atlas_id } if *key == gone.key && atlas_id == "r1")));
    // Adopted links are candidates too.
    let recs = [Record {
        phase: Phase::Adopted,
        ..undeclared(&gone, "r1", Some(NOW - 3600))
    }];
    let p = plan(&desired(&[keeper()]), &recs, &l, NOW, &ON);
    assert_eq!(deletes(&p), ["r1"]);
}

#[test]
fn prune_disabled_holds_every_candidate() {
    let gone = link(1, "gone", msk("gone"));
    let recs = [undeclared(&gone, "r1", Some(NOW - 99_999))];
    let l = listing(1, vec![remote("r1", &gone.spec)]);
    let p = plan(&desired(&[keeper()]), &recs, &l, NOW, &S);
    assert!(deletes(&p).is_empty());
    assert_eq!(hold_of(&p, &gone.key), Some(Hold::Disabled));
}

#[test]
fn no_links_declared_at_all_never_prunes() {
    let gone = link(1, "gone", msk("gone"));
    let recs = [undeclared(&gone, "r1", Some(NOW - 99_999))];
    let l = listing(1, vec![remote("r1", &gone.spec)]);
    let p = plan(&DesiredState::default(), &recs, &l, NOW, &ON);
    assert!(deletes(&p).is_empty());
    assert_eq!(hold_of(&p, &gone.key), Some(Hold::NoLinksDeclared));
    // Project by project too: the flag is the whole desired state's, not the project's.
    let mut out = Vec::new();
    plan_project_each(
        None,
        &recs,
        l.get(&g(1)),
        &FxSet::default(),
        NOW,
        &ON,
        false,
        |a| out.push(a),
    );
    assert!(matches!(
        &out[..],
        [Action::Orphaned {
            hold: Some(Hold::NoLinksDeclared),
            ..
        }]
    ));
    // A link declared in ANOTHER project is enough for this one's orphan to be pruned.
    let mut out = Vec::new();
    plan_project_each(
        None,
        &recs,
        l.get(&g(1)),
        &FxSet::default(),
        NOW,
        &ON,
        true,
        |a| out.push(a),
    );
    assert!(matches!(&out[..], [Action::Delete { .. }]));
}

#[test]
fn the_grace_counts_from_the_first_pass_that_found_it_undeclared() {
    let gone = link(1, "gone", msk("gone"));
    let l = listing(1, vec![remote("r1", &gone.spec)]);
    // Never seen undeclared before: the grace starts now.
    let p = plan(
        &desired(&[keeper()]),
        &[undeclared(&gone, "r1", None)],
        &l,
        NOW,
        &ON,
    );
    assert_eq!(
        hold_of(&p, &gone.key),
        Some(Hold::Grace {
            until_unix: NOW + 3600
        })
    );
    // One second short.
    let recs = [undeclared(&gone, "r1", Some(NOW - 3599))];
    let p = plan(&desired(&[keeper()]), &recs, &l, NOW, &ON);
    assert_eq!(
        hold_of(&p, &gone.key),
        Some(Hold::Grace {
            until_unix: NOW + 1
        })
    );
    // A grace of zero deletes on first sight.
    let zero = ON.with_prune(PruneSettings {
        grace_secs: 0,
        ..ON.prune
    });
    let p = plan(
        &desired(&[keeper()]),
        &[undeclared(&gone, "r1", None)],
        &l,
        NOW,
        &zero,
    );
    assert_eq!(deletes(&p), ["r1"]);
}

#[test]
fn an_in_use_or_failed_delete_waits_for_the_failure_delay() {
    let gone = link(1, "gone", msk("gone"));
    let l = listing(1, vec![remote("r1", &gone.spec)]);
    let refused = |in_use: bool, until: i64| Record {
        attempts: 1,
        last_error: Some("400 STREAM_PRIVATE_LINK_IN_USE".into()),
        next_attempt_unix: Some(until),
        prune: PruneMark {
            undeclared_since_unix: Some(NOW - 99_999),
            in_use,
        },
        ..record(&gone, Phase::Created, Some("r1"))
    };
    let p = plan(
        &desired(&[keeper()]),
        &[refused(true, NOW + 300)],
        &l,
        NOW,
        &ON,
    );
    assert_eq!(
        hold_of(&p, &gone.key),
        Some(Hold::InUse {
            until_unix: NOW + 300
        })
    );
    let p = plan(
        &desired(&[keeper()]),
        &[refused(false, NOW + 300)],
        &l,
        NOW,
        &ON,
    );
    assert!(matches!(
        hold_of(&p, &gone.key),
        Some(Hold::Failed { until_unix, last_error: Some(_) }) if until_unix == NOW + 300
    ));
    // Due again: tried again.
    let p = plan(&desired(&[keeper()]), &[refused(true, NOW)], &l, NOW, &ON);
    assert_eq!(deletes(&p), ["r1"]);
}

#[test]
fn without_a_listing_nothing_is_deleted_and_the_project_is_listed() {
    let gone = link(1, "gone", msk("gone"));
    let recs = [undeclared(&gone, "r1", Some(NOW - 99_999))];
    let p = plan(&desired(&[keeper()]), &recs, &Listings::new(), NOW, &ON);
    assert!(deletes(&p).is_empty());
    assert_eq!(hold_of(&p, &gone.key), Some(Hold::NotListed));
    assert!(p.projects_to_list().contains(&g(1)));
    // Within its grace it needs no listing: the daemon does not list for it.
    let recs = [undeclared(&gone, "r1", Some(NOW))];
    let p = plan(&desired(&[]), &recs, &Listings::new(), NOW, &ON);
    assert!(p.projects_to_list().is_empty());
}

#[test]
fn a_candidate_missing_from_the_listing_is_not_deleted() {
    let gone = link(1, "gone", msk("gone"));
    let recs = [undeclared(&gone, "r1", Some(NOW - 99_999))];
    let p = plan(&desired(&[keeper()]), &recs, &listing(1, vec![]), NOW, &ON);
    assert!(deletes(&p).is_empty());
    assert_eq!(hold_of(&p, &gone.key), Some(Hold::Gone));
}

#[test]
fn max_per_pass_caps_the_deletes_in_key_order() {
    let links: Vec<DesiredLink> = (0..4)
        .map(|i| link(1, &format!("gone{i}"), msk(&format!("c{i}"))))
        .collect();
    let recs: Vec<Record> = links
        .iter()
        .enumerate()
        .map(|(i, l)| undeclared(l, &format!("r{i}"), Some(NOW - 99_999)))
        .collect();
    let l = listing(
        1,
        links
            .iter()
            .enumerate()
            .map(|(i, x)| remote(&format!("r{i}"), &x.spec))
            .collect(),
    );
    let two = ON.with_prune(PruneSettings {
        max_per_pass: 2,
        ..ON.prune
    });
    let p = plan(&desired(&[keeper()]), &recs, &l, NOW, &two);
    assert_eq!(deletes(&p), ["r0", "r1"]);
    assert_eq!(hold_of(&p, &links[2].key), Some(Hold::Cap));
    assert_eq!(hold_of(&p, &links[3].key), Some(Hold::Cap));
}

#[test]
fn only_created_or_adopted_records_with_an_id_are_candidates() {
    let (a, b) = (link(1, "a", msk("a")), link(1, "b", msk("b")));
    let recs = [record(&a, Phase::Intent, None), failed(&b, NOW + 60)];
    let l = listing(1, vec![remote("ra", &a.spec), remote("rb", &b.spec)]);
    let p = plan(&desired(&[keeper()]), &recs, &l, NOW, &ON);
    assert!(deletes(&p).is_empty());
    assert_eq!(hold_of(&p, &a.key), None);
    assert_eq!(hold_of(&p, &b.key), None);
}

#[test]
fn declared_links_and_unmanaged_connections_are_never_deleted() {
    let k = keeper();
    let stranger = remote("zz", &msk("stranger"));
    let recs = [undeclared(&k, "rk", Some(NOW - 99_999))];
    let l = listing(1, vec![remote("rk", &k.spec), stranger]);
    let p = plan(&desired(std::slice::from_ref(&k)), &recs, &l, NOW, &ON);
    assert!(deletes(&p).is_empty());
    assert!(matches!(only(&p), Action::Unchanged { .. }));
    assert_eq!(p.unmanaged.len(), 1);
    assert_eq!(p.unmanaged[0].atlas_id, "zz");
}

#[test]
fn a_deleting_record_is_dropped_once_a_listing_no_longer_shows_it() {
    let gone = link(1, "gone", msk("gone"));
    let recs = [record(&gone, Phase::Deleting, Some("r1"))];
    let d = desired(&[keeper()]);
    let still = plan(
        &d,
        &recs,
        &listing(1, vec![remote("r1", &gone.spec)]),
        NOW,
        &ON,
    );
    assert!(still.actions.iter().any(|a| matches!(
        a,
        Action::Deleting {
            gone: false,
            listed: true,
            ..
        }
    )));
    let done = plan(&d, &recs, &listing(1, vec![]), NOW, &ON);
    assert!(
        done.actions
            .iter()
            .any(|a| matches!(a, Action::Deleting { gone: true, .. }))
    );
    let unlisted = plan(&d, &recs, &Listings::new(), NOW, &ON);
    assert!(unlisted.actions.iter().any(|a| matches!(
        a,
        Action::Deleting {
            gone: false,
            listed: false,
            ..
        }
    )));
    assert!(unlisted.projects_to_list().contains(&g(1)));
    // Declared again while it is being deleted: a new connection.
    let p = plan(
        &desired(std::slice::from_ref(&gone)),
        &recs,
        &listing(1, vec![]),
        NOW,
        &ON,
    );
    assert_eq!(reason(only(&p)), CreateReason::Recreate);
}

#[test]
fn unmanaged_are_listed_connections_neither_recorded_nor_adopted() {
    let (a, b) = (link(1, "a", msk("a")), link(1, "b", msk("b")));
    let recs = [record(&a, Phase::Created, Some("ra"))];
    let l = listing(
        1,
        vec![
            remote("ra", &a.spec),
            remote("rb", &b.spec),
            remote("x2", &msk("other")),
            remote("x1", &pubsub("europe-west1")),
            // On its way out (a connection prune just deleted, say): not reported.
            RemoteConnection {
                state: Some(RemoteState::DeleteRequested),
                ..remote("x3", &msk("gone"))
            },
        ],
    );
    let p = plan(&desired(&[a, b]), &recs, &l, NOW, &S);
    let ids: Vec<&str> = p.unmanaged.iter().map(|u| u.atlas_id.as_str()).collect();
    assert_eq!(ids, ["x1", "x2"]);
    assert_eq!(p.unmanaged[0].group_id, g(1));
    // Unlisted projects have none to show.
    let p = plan(&desired(&[]), &recs, &Listings::new(), NOW, &S);
    assert!(p.unmanaged.is_empty());
    let json = serde_json::to_value(plan(&desired(&[]), &recs, &l, NOW, &S)).unwrap();
    assert_eq!(json["unmanaged"].as_array().unwrap().len(), 3);
}

#[test]
fn the_json_of_a_delete_and_a_hold() {
    let gone = link(1, "gone", msk("gone"));
    let l = listing(1, vec![remote("r1", &gone.spec)]);
    let p = plan(
        &desired(&[keeper()]),
        &[undeclared(&gone, "r1", None)],
        &l,
        NOW,
        &ON,
    );
    let json = serde_json::to_value(&p).unwrap();
    let orphan = json["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "gone")
        .unwrap();
    assert_eq!(orphan["action"], "orphaned");
    assert_eq!(orphan["hold"]["reason"], "grace");
    assert_eq!(orphan["hold"]["untilUnix"], NOW + 3600);
    let p = plan(
        &desired(&[keeper()]),
        &[undeclared(&gone, "r1", Some(0))],
        &l,
        NOW,
        &ON,
    );
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["counts"]["delete"], 1);
    let delete = &json["actions"][0];
    assert_eq!(delete["action"], "delete");
    assert_eq!(delete["atlasId"], "r1");
}
