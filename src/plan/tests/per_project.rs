//! `plan_project_each`, project by project, is the whole plan: the same actions in the same order.

use super::*;
use crate::model::FxSet;

/// The plans of every project (declared or recorded), one after the other, as a pass makes them.
fn per_project(desired: &DesiredState, records: &[Record], listings: &Listings) -> Vec<Action> {
    let taken: FxSet<&str> = records
        .iter()
        .filter_map(|r| r.atlas_id.as_deref())
        .collect();
    let mut groups: BTreeSet<GroupId> = desired.projects.keys().cloned().collect();
    groups.extend(records.iter().map(|r| r.key.group_id.clone()));
    let mut actions = Vec::new();
    for group in &groups {
        let own: Vec<Record> = records
            .iter()
            .filter(|r| &r.key.group_id == group)
            .cloned()
            .collect();
        plan_project_each(
            desired.projects.get(group),
            &own,
            listings.get(group),
            &taken,
            NOW,
            &S,
            desired.link_count() > 0,
            |a| actions.push(a),
        );
    }
    actions
}

#[test]
fn project_by_project_is_the_whole_plan() {
    let a1 = link(1, "a1", msk("c1"));
    let a2 = link(1, "a2", msk("c2"));
    let a3 = link(1, "a3", msk("c3"));
    let a4 = link(1, "a4", msk("c4"));
    let b1 = link(2, "b1", msk("c5"));
    let b2 = link(2, "b2", msk("c6"));
    let c1 = link(3, "c1", msk("c7"));
    let gone = link(4, "gone", msk("c8"));
    let d = desired(&[
        a1.clone(),
        a2.clone(),
        a3.clone(),
        a4.clone(),
        b1.clone(),
        b2.clone(),
        c1.clone(),
    ]);
    let records = vec![
        record(&a2, Phase::Created, Some("held-a2")),
        failed(&a3, NOW + 100),
        Record {
            sent_unix: Some(NOW - 5),
            ..record(&a4, Phase::Intent, None)
        },
        // A record of project 2 holds an id that project 1's listing shows: never adopted by a1.
        record(&b1, Phase::Created, Some("x-held-elsewhere")),
        record(&c1, Phase::Created, Some("c1-id")),
        record(&gone, Phase::Created, Some("gone-id")),
    ];
    let mut listings = listing(
        1,
        vec![
            remote("x-held-elsewhere", &a1.spec),
            remote("a1-id", &a1.spec),
        ],
    );
    listings.insert(g(2), RemoteListing::new(vec![remote("b2-id", &b2.spec)]));
    // Project 3 is not listed: its record vouches for it.

    let whole = plan(&d, &records, &listings, NOW, &S).actions;
    assert_eq!(per_project(&d, &records, &listings), whole);
    // The claim held across projects: a1 adopts the free id, not the one b1's record holds.
    assert!(whole.iter().any(|a| matches!(a,
        Action::Adopt { link, remote } if link.key == a1.key && remote.id == "a1-id")));
    assert!(
        whole
            .iter()
            .any(|a| matches!(a, Action::Orphaned { key, .. } if *key == gone.key))
    );

    let unlisted = Listings::new();
    assert_eq!(
        per_project(&d, &records, &unlisted),
        plan(&d, &records, &unlisted, NOW, &S).actions
    );
}

#[test]
fn two_links_of_a_project_never_adopt_the_same_connection() {
    let x = link(1, "x", msk("same"));
    let y = link(1, "y", msk("same"));
    let d = desired(&[x.clone(), y.clone()]);
    let listings = listing(1, vec![remote("only-one", &x.spec)]);
    let actions = per_project(&d, &[], &listings);
    assert_eq!(actions, plan(&d, &[], &listings, NOW, &S).actions);
    let adopted = actions
        .iter()
        .filter(|a| matches!(a, Action::Adopt { .. }))
        .count();
    assert_eq!(adopted, 1, "{actions:?}");
}
