//! Property tests of `plan`: whatever the mix of manifests, ledger rows and listings, every link
//! appears once in key order, a project without a listing never yields a recreate or an adoption,
//! no remote connection is adopted twice or taken from a record that holds it, no create is
//! planned beside an unclaimed match or near-match, and no create is planned while an earlier one
//! may still be committed by Atlas.

use atlas_linkd::model::{
    AuthScheme, DesiredLink, DesiredState, GroupId, LinkKey, LinkSpec, Phase, Provider, Record,
    RemoteConnection, RemoteState, Source, Vendor,
};
use atlas_linkd::plan::{Action, CreateReason, Listings, PlanSettings, RemoteListing, plan};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

const NOW: i64 = 1_000;
const SETTINGS: PlanSettings = PlanSettings {
    settle_secs: 30,
    prune: atlas_linkd::plan::PruneSettings::OFF,
};

fn gid(g: u8) -> GroupId {
    GroupId::parse(&format!("{g:024x}")).unwrap()
}

fn arn(cluster: u8) -> String {
    format!("arn:aws:kafka:us-east-1:123456789012:cluster/c{cluster}/1")
}

/// Few distinct specs, so that links collide on the same remote connections: three MSK clusters
/// (the identity), each with the default scheme or IAM, so that some remotes are near-matches.
fn spec(s: u8) -> LinkSpec {
    LinkSpec {
        arn: Some(arn(s % 3)),
        authentication_scheme: (s >= 3).then_some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn phase(p: u8) -> Phase {
    [Phase::Intent, Phase::Created, Phase::Adopted, Phase::Failed][usize::from(p % 4)]
}

/// What a listed connection reports as its scheme: nothing, or one of Atlas's three.
fn scheme(a: u8) -> Option<String> {
    [None, Some("SASL_SCRAM"), Some("IAM"), Some("tls")][usize::from(a % 4)].map(str::to_owned)
}

type Row = (u8, u8, u8); // (group, name, spec)

/// (group, name, spec), then phase, atlas id, next attempt and sent time for a ledger row.
type RecordRow = (Row, u8, Option<u8>, i64, Option<i64>);
/// (group, [(id, cluster, scheme, deleting)]) for one project's listing.
type ListingRow = (u8, Vec<(u8, u8, u8, bool)>);

fn inputs() -> impl Strategy<Value = (Vec<Row>, Vec<RecordRow>, Vec<ListingRow>)> {
    let row = || (0u8..3, 0u8..6, 0u8..6);
    (
        prop::collection::vec(row(), 0..15),
        prop::collection::vec(
            (
                row(),
                0u8..4,
                prop::option::of(0u8..8),
                990i64..1010,
                prop::option::of(960i64..1000),
            ),
            0..12,
        ),
        prop::collection::vec(
            (
                0u8..3,
                prop::collection::vec((0u8..8, 0u8..3, 0u8..4, prop::bool::weighted(0.2)), 0..6),
            ),
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
            desired.projects.entry(gid(*g)).or_default().links.insert(link);
        }
        let mut seen = HashSet::new();
        let records: Vec<Record> = recs
            .iter()
            .filter(|((g, n, _), ..)| seen.insert((*g, *n)))
            .map(|((g, n, s), p, id, next, sent)| {
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
                    sent_unix: *sent,
                    outputs: Default::default(),
                    created_unix: 0,
                    updated_unix: 0,
                    prune: Default::default(),
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
                    .filter(|(i, ..)| ids.insert(*i))
                    .map(|(i, cluster, a, deleting)| RemoteConnection {
                        id: format!("id{g}-{i}"),
                        provider: Some("AWS".into()),
                        vendor: Some("msk".into()),
                        region: Some("us-east-1".into()),
                        arn: Some(arn(*cluster)),
                        authentication_scheme: scheme(*a),
                        state: Some(if *deleting { RemoteState::Deleting } else { RemoteState::Done }),
                        ..Default::default()
                    })
                    .collect();
                (gid(*g), RemoteListing::new(connections))
            })
            .collect();

        let p = plan(&desired, &records, &listings, NOW, &SETTINGS);
        prop_assert_eq!(&p, &plan(&desired, &records, &listings, NOW, &SETTINGS));

        // Listings reduced to what a plan reads of the connections that records hold plan the same.
        let held_ids: HashSet<&str> = records.iter().filter_map(|r| r.atlas_id.as_deref()).collect();
        let mut reduced = listings.clone();
        for listing in reduced.values_mut() {
            listing.reduce(|id| held_ids.contains(id));
        }
        prop_assert_eq!(&p, &plan(&desired, &records, &reduced, NOW, &SETTINGS));

        // Every declared or recorded key exactly once, in order; a record renamed appears only
        // as its new name's `rename`. A rename takes an undeclared record of the link's project
        // that holds a connection made from exactly its spec, each record at most once.
        let keys: Vec<&LinkKey> = p.actions.iter().map(Action::key).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
        let mut renamed_from: HashSet<&LinkKey> = HashSet::new();
        for a in &p.actions {
            if let Action::Rename { link, from, atlas_id } = a {
                prop_assert!(renamed_from.insert(from), "renamed twice from {}", from);
                prop_assert!(desired.get(from).is_none(), "renamed from a declared link {}", from);
                let r = records.iter().find(|r| &r.key == from).expect("renamed from a record");
                prop_assert_eq!(&r.key.group_id, &link.key.group_id);
                prop_assert_eq!(r.fingerprint, link.fingerprint);
                prop_assert!(matches!(r.phase, Phase::Created | Phase::Adopted));
                prop_assert_eq!(r.atlas_id.as_deref(), Some(atlas_id.as_str()));
                prop_assert!(
                    !records.iter().any(|r| r.key == link.key && !matches!(r.phase, Phase::Failed | Phase::Deleting)),
                    "renamed onto a record that holds or may hold a connection"
                );
            }
        }
        let expected: HashSet<&LinkKey> = desired
            .links()
            .map(|l| &l.key)
            .chain(records.iter().map(|r| &r.key))
            .filter(|k| !renamed_from.contains(k))
            .collect();
        prop_assert_eq!(keys.len(), expected.len());

        let held: HashSet<&str> = records.iter().filter_map(|r| r.atlas_id.as_deref()).collect();
        let by_key: HashMap<&LinkKey, &Record> = records.iter().map(|r| (&r.key, r)).collect();
        // The create of this link sent at `t` that Atlas may still commit, until `t + settle`.
        let in_flight_until = |key: &LinkKey| {
            by_key
                .get(key)
                .filter(|r| matches!(r.phase, Phase::Intent | Phase::Failed))
                .and_then(|r| r.sent_unix)
                .map(|t| t + SETTINGS.settle_secs)
        };
        // Every id this plan adopts: claimed for every link, whatever its key.
        let adopted_ids: HashSet<&str> = p
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Adopt { remote, .. } => Some(remote.id.as_str()),
                _ => None,
            })
            .collect();
        let mut adopted = HashSet::new();
        for a in &p.actions {
            let listed = listings.contains_key(&a.key().group_id);
            match a {
                Action::Adopt { link, remote } => {
                    prop_assert!(listed);
                    prop_assert!(link.spec.matches(remote));
                    prop_assert!(!held.contains(remote.id.as_str()));
                    prop_assert!(adopted.insert(remote.id.clone()), "adopted twice: {}", remote.id);
                }
                Action::Create { link, reason } => {
                    if *reason == CreateReason::Recreate {
                        prop_assert!(listed);
                    }
                    // A create in a listed project means nothing unclaimed there matched or
                    // near-matched: no create beside what may be the link's own connection.
                    if let Some(l) = listings.get(&link.key.group_id) {
                        for c in &l.connections {
                            let claimed = held.contains(c.id.as_str()) || adopted_ids.contains(c.id.as_str());
                            prop_assert!(claimed || !link.spec.matches(c), "created beside match {}", c.id);
                            prop_assert!(claimed || link.spec.near_match(c).is_none(), "created beside near-match {}", c.id);
                        }
                    }
                    // Never while an earlier create may still be committed.
                    if let Some(until) = in_flight_until(&link.key) {
                        prop_assert!(NOW >= until, "created while in flight until {}", until);
                    }
                }
                Action::Conflict { link, remote_id, fields } => {
                    let l = listings.get(&link.key.group_id);
                    prop_assert!(l.is_some());
                    let remote = l.and_then(|l| l.connections.iter().find(|c| &c.id == remote_id));
                    prop_assert!(remote.is_some(), "conflict with unlisted {}", remote_id);
                    if let Some(remote) = remote {
                        prop_assert!(!held.contains(remote_id.as_str()));
                        prop_assert_eq!(link.spec.near_match(remote), Some(fields.clone()));
                    }
                }
                Action::InFlight { link, until_unix } => {
                    prop_assert_eq!(in_flight_until(&link.key), Some(*until_unix));
                    prop_assert!(NOW < *until_unix);
                }
                Action::Orphaned { key, .. } => prop_assert!(desired.get(key).is_none()),
                _ => {}
            }
        }
        // Every project with a create or a create in flight is listed before anything is sent.
        for a in &p.actions {
            if matches!(a, Action::Create { .. } | Action::InFlight { .. }) {
                prop_assert!(p.projects_to_list().contains(&a.key().group_id));
            }
        }
    }
}
