//! Property tests of `plan`: whatever the mix of manifests, ledger rows and listings, every link
//! appears once in key order, a project without a listing never yields a recreate or an adoption,
//! and no remote connection is adopted twice or taken from a record that holds it.

use atlas_linkd::ledger::{Phase, Record};
use atlas_linkd::model::{
    DesiredLink, DesiredState, GroupId, LinkKey, LinkSpec, Provider, RemoteConnection, RemoteState,
    Source, Vendor,
};
use atlas_linkd::plan::{Action, CreateReason, Listings, RemoteListing, plan};
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::PathBuf;

const NOW: i64 = 1_000;

fn gid(g: u8) -> GroupId {
    GroupId::parse(&format!("{g:024x}")).unwrap()
}

/// Few distinct specs, so that links collide on the same remote connections.
fn spec(s: u8) -> LinkSpec {
    LinkSpec {
        region: Some(format!("region-{s}")),
        ..LinkSpec::new(Provider::Gcp, Vendor::Pubsub)
    }
}

fn phase(p: u8) -> Phase {
    [Phase::Intent, Phase::Created, Phase::Adopted, Phase::Failed][usize::from(p % 4)]
}

type Row = (u8, u8, u8); // (group, name, spec)

/// (group, name, spec), then phase, atlas id and next attempt for a ledger row.
type RecordRow = (Row, u8, Option<u8>, i64);
/// (group, [(id, spec)]) for one project's listing.
type ListingRow = (u8, Vec<(u8, u8)>);

fn inputs() -> impl Strategy<Value = (Vec<Row>, Vec<RecordRow>, Vec<ListingRow>)> {
    let row = || (0u8..3, 0u8..6, 0u8..3);
    (
        prop::collection::vec(row(), 0..15),
        prop::collection::vec(
            (row(), 0u8..4, prop::option::of(0u8..8), 990i64..1010),
            0..12,
        ),
        prop::collection::vec(
            (0u8..3, prop::collection::vec((0u8..8, 0u8..3), 0..6)),
            0..3,
        ),
    )
}

proptest! {
    #[test]
    fn plan_invariants((links, recs, lists) in inputs()) {
        let mut desired = DesiredState::default();
        for (g, n, s) in &links {
            let key = LinkKey::new(gid(*g), format!("l{n}"));
            let link = DesiredLink::new(key.clone(), spec(*s), Source { file: PathBuf::from("m.yaml").into(), line: None });
            desired.projects.entry(gid(*g)).or_default().links.insert(key.name.clone(), link);
        }
        let mut seen = HashSet::new();
        let records: Vec<Record> = recs
            .iter()
            .filter(|((g, n, _), ..)| seen.insert((*g, *n)))
            .map(|((g, n, s), p, id, next)| {
                let sp = spec(*s);
                let phase = phase(*p);
                Record {
                    key: LinkKey::new(gid(*g), format!("l{n}")),
                    spec_json: sp.to_json(),
                    fingerprint: sp.fingerprint(),
                    atlas_id: if matches!(phase, Phase::Created | Phase::Adopted) { id.map(|i| format!("id{g}-{i}")) } else { None },
                    phase,
                    remote_state: None,
                    remote_error: None,
                    attempts: 1,
                    last_error: None,
                    next_attempt_unix: Some(*next),
                    sent_unix: None,
                    outputs: Default::default(),
                    created_unix: 0,
                    updated_unix: 0,
                }
            })
            .collect();
        let listings: Listings = lists
            .iter()
            .map(|(g, conns)| {
                // Atlas ids are unique: one connection per id.
                let mut ids = HashSet::new();
                let connections = conns
                    .iter()
                    .filter(|(i, _)| ids.insert(*i))
                    .map(|(i, s)| RemoteConnection {
                        id: format!("id{g}-{i}"),
                        provider: Some("GCP".into()),
                        vendor: Some("PUBSUB".into()),
                        region: spec(*s).region,
                        state: Some(RemoteState::Done),
                        ..Default::default()
                    })
                    .collect();
                (gid(*g), RemoteListing { connections })
            })
            .collect();

        let p = plan(&desired, &records, &listings, NOW);
        prop_assert_eq!(&p, &plan(&desired, &records, &listings, NOW));

        // Every declared or recorded key exactly once, in order.
        let keys: Vec<&LinkKey> = p.actions.iter().map(Action::key).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let expected: HashSet<&LinkKey> = desired.links().map(|l| &l.key).chain(records.iter().map(|r| &r.key)).collect();
        prop_assert_eq!(keys.len(), expected.len());

        let held: HashSet<&str> = records.iter().filter_map(|r| r.atlas_id.as_deref()).collect();
        let mut adopted = HashSet::new();
        for a in &p.actions {
            let listed = listings.contains_key(&a.key().group_id);
            match a {
                Action::Create { reason: CreateReason::Recreate, .. } => prop_assert!(listed),
                Action::Adopt { link, remote } => {
                    prop_assert!(listed);
                    prop_assert!(link.spec.matches(remote));
                    prop_assert!(!held.contains(remote.id.as_str()));
                    prop_assert!(adopted.insert(remote.id.clone()), "adopted twice: {}", remote.id);
                }
                Action::Create { link, .. } => {
                    // A create in a listed project means nothing unclaimed there matched.
                    if let Some(l) = listings.get(&link.key.group_id) {
                        prop_assert!(l.connections.iter().all(|c| held.contains(c.id.as_str())
                            || adopted.contains(&c.id)
                            || !link.spec.matches(c)));
                    }
                }
                Action::Orphaned { key, .. } => prop_assert!(desired.get(key).is_none()),
                _ => {}
            }
        }
    }
}
