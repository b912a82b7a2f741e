//! Renames and duplicates. A declared link without a record takes over the row of an undeclared record of its
//! project made from exactly its spec, with no call to Atlas; when that is not clear, nothing moves
//! and nothing is created.

use super::*;

fn renames(p: &Plan) -> Vec<(&str, &str)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Rename { link, from, .. } => Some((link.key.name.as_str(), from.name.as_str())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_link_renamed_with_the_same_spec_moves_its_record_and_creates_nothing() {
    let old = link(1, "orders-old", msk("a"));
    let new = link(1, "orders", msk("a"));
    let recs = [record(&old, Phase::Created, Some("r1"))];
    let remote_r1 = listing(1, vec![remote("r1", &msk("a"))]);
    for listings in [Listings::new(), remote_r1] {
        let p = plan(
            &desired(std::slice::from_ref(&new)),
            &recs,
            &listings,
            NOW,
            &S,
        );
        assert_eq!(renames(&p), [("orders", "orders-old")], "{:?}", p.actions);
        assert!(
            matches!(only(&p), Action::Rename { atlas_id, .. } if atlas_id == "r1"),
            "the old name is no orphan: {:?}",
            p.actions
        );
        assert!(p.projects_to_list().is_empty(), "a rename needs no listing");
    }
    // An adopted record moves the same way.
    let recs = [record(&old, Phase::Adopted, Some("r1"))];
    let p = plan(&desired(&[new]), &recs, &Listings::new(), NOW, &S);
    assert_eq!(renames(&p), [("orders", "orders-old")]);
}

#[test]
fn only_a_record_holding_a_connection_of_the_same_project_and_spec_is_renamed() {
    let new = link(1, "orders", msk("a"));
    let cases = [
        // Another spec.
        record(&link(1, "old", msk("b")), Phase::Created, Some("r1")),
        // Another project.
        record(&link(2, "old", msk("a")), Phase::Created, Some("r1")),
        // No connection: an intent or a failed create holds nothing to move.
        record(&link(1, "old", msk("a")), Phase::Intent, None),
        record(&link(1, "old", msk("a")), Phase::Failed, None),
        // Being deleted: on its way out.
        record(&link(1, "old", msk("a")), Phase::Deleting, Some("r1")),
    ];
    for r in cases {
        let p = plan(
            &desired(std::slice::from_ref(&new)),
            std::slice::from_ref(&r),
            &Listings::new(),
            NOW,
            &S,
        );
        assert!(renames(&p).is_empty(), "{r:?}: {:?}", p.actions);
        let create = p.actions.iter().find(|a| a.key() == &new.key);
        assert_eq!(
            reason(create.unwrap()),
            CreateReason::New,
            "{:?}",
            p.actions
        );
    }
    // A declared record is no candidate, whatever its spec.
    let kept = link(1, "kept", msk("a"));
    let recs = [record(&kept, Phase::Created, Some("r1"))];
    let p = plan(&desired(&[kept, new]), &recs, &Listings::new(), NOW, &S);
    assert!(renames(&p).is_empty(), "{:?}", p.actions);
}

#[test]
fn two_candidates_or_two_claimants_move_nothing_create_nothing_and_hold_prune() {
    let prune = PlanSettings {
        prune: PruneSettings {
            enabled: true,
            grace_secs: 0,
            max_per_pass: 10,
        },
        ..S
    };
    let new = link(1, "orders", msk("a"));
    let recs = [
        record(&link(1, "old-1", msk("a")), Phase::Created, Some("r1")),
        record(&link(1, "old-2", msk("a")), Phase::Adopted, Some("r2")),
    ];
    let remotes = listing(1, vec![remote("r1", &msk("a")), remote("r2", &msk("a"))]);
    let p = plan(
        &desired(std::slice::from_ref(&new)),
        &recs,
        &remotes,
        NOW,
        &prune,
    );
    let unclear: Vec<_> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RenameUnclear { candidates, .. } => Some(
                candidates
                    .iter()
                    .map(|k| k.name.clone())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(unclear, [["old-1", "old-2"]], "{:?}", p.actions);
    let held = p
        .actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Orphaned {
                    hold: Some(Hold::MaybeRenamed),
                    ..
                }
            )
        })
        .count();
    assert_eq!(held, 2, "neither candidate is pruned: {:?}", p.actions);

    // One candidate that two new links could both be.
    let recs = [record(
        &link(1, "old", msk("a")),
        Phase::Created,
        Some("r1"),
    )];
    let twins = [link(1, "orders", msk("a")), link(1, "orders-2", msk("a"))];
    let p = plan(&desired(&twins), &recs, &Listings::new(), NOW, &prune);
    let kinds: Vec<&str> = p.actions.iter().map(Action::kind).collect();
    assert_eq!(
        kinds,
        ["orphaned", "renameunclear", "renameunclear"],
        "{:?}",
        p.actions
    );
}

#[test]
fn an_exact_copy_of_a_held_link_is_a_duplicate_and_anything_else_unmanaged() {
    let a = link(1, "a", msk("a"));
    let intent = link(1, "b", msk("b"));
    let recs = [
        record(&a, Phase::Created, Some("r1")),
        record(&intent, Phase::Intent, None),
    ];
    let listings = listing(
        1,
        vec![
            remote("r1", &msk("a")),
            // An exact copy of `a`, whose record holds r1.
            remote("r2", &msk("a")),
            // Same far end, another scheme: not a copy.
            scram("r3", "a"),
            // A match of `b`, whose record holds nothing: adopted, not a duplicate.
            remote("r4", &msk("b")),
            // Nothing declared.
            remote("r5", &msk("z")),
        ],
    );
    let p = plan(&desired(&[a, intent]), &recs, &listings, NOW, &S);
    let dups: Vec<(&str, &str, &str)> = p
        .duplicates
        .iter()
        .map(|d| {
            (
                d.name.as_str(),
                d.atlas_id.as_str(),
                d.held_atlas_id.as_str(),
            )
        })
        .collect();
    assert_eq!(dups, [("a", "r2", "r1")]);
    let unmanaged: Vec<&str> = p.unmanaged.iter().map(|u| u.atlas_id.as_str()).collect();
    assert_eq!(unmanaged, ["r3", "r5"]);
    assert!(
        matches!(&p.actions[1], Action::Adopt { remote, .. } if remote.id == "r4"),
        "{:?}",
        p.actions
    );
}

#[test]
fn a_link_declared_again_while_its_old_connection_is_deleted_takes_back_the_renamed_record() {
    // `orders` was renamed to `orders-b` after its first connection's delete was accepted: its row
    // still sees that delete through. Renamed back, it takes over `orders-b`'s record (and r2)
    // rather than creating a third connection beside r2.
    let back = link(1, "orders", msk("a"));
    let renamed = link(1, "orders-b", msk("a"));
    for phase in [Phase::Deleting, Phase::Failed] {
        let recs = [
            record(&back, phase, (phase == Phase::Deleting).then_some("r1")),
            record(&renamed, Phase::Created, Some("r2")),
        ];
        let remotes = listing(1, vec![remote("r2", &msk("a"))]);
        let p = plan(
            &desired(std::slice::from_ref(&back)),
            &recs,
            &remotes,
            NOW,
            &S,
        );
        assert_eq!(
            renames(&p),
            [("orders", "orders-b")],
            "{phase:?}: {:?}",
            p.actions
        );
        assert_eq!(p.actions.len(), 1, "{:?}", p.actions);
    }
    // An intent may still be committed: never renamed onto.
    let recs = [
        record(&back, Phase::Intent, None),
        record(&renamed, Phase::Created, Some("r2")),
    ];
    let p = plan(&desired(&[back]), &recs, &Listings::new(), NOW, &S);
    assert!(renames(&p).is_empty(), "{:?}", p.actions);
}
