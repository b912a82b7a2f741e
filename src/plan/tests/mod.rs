//! Unit tests of `plan`: one decision per test, each from the inputs that lead to it.

use super::*;
use crate::model::{
    AuthScheme, DesiredLink, DesiredProject, DesiredState, Fingerprint, FxSet, GroupId, LinkKey,
    LinkSpec, Phase, Provider, PruneMark, Record, RemoteConnection, RemoteState, Source, Vendor,
};
use std::collections::BTreeSet;
use std::path::PathBuf;

const NOW: i64 = 1_700_000_000;
const S: PlanSettings = PlanSettings {
    settle_secs: 30,
    prune: PruneSettings::OFF,
};

fn g(n: u8) -> GroupId {
    GroupId::parse(&format!("{:024x}", n)).unwrap()
}

fn msk(cluster: &str) -> LinkSpec {
    LinkSpec {
        arn: Some(format!(
            "arn:aws:kafka:us-east-1:123456789012:cluster/{cluster}/1"
        )),
        authentication_scheme: Some(AuthScheme::Iam),
        ..LinkSpec::new(Provider::Aws, Vendor::Msk)
    }
}

fn pubsub(region: &str) -> LinkSpec {
    LinkSpec {
        provider: Provider::Gcp,
        vendor: Vendor::Pubsub,
        region: Some(region.into()),
        arn: None,
        authentication_scheme: None,
        ..msk("x")
    }
}

fn link(group: u8, name: &str, spec: LinkSpec) -> DesiredLink {
    DesiredLink::new(
        LinkKey::new(g(group), name),
        spec,
        Source {
            file: PathBuf::from("m.yaml").into(),
            line: Some(3),
        },
    )
}

fn desired(links: &[DesiredLink]) -> DesiredState {
    let mut d = DesiredState::default();
    for l in links {
        d.projects
            .entry(l.key.group_id.clone())
            .or_insert_with(DesiredProject::default)
            .links
            .insert(l.clone());
    }
    d
}

fn remote(id: &str, spec: &LinkSpec) -> RemoteConnection {
    RemoteConnection {
        id: id.into(),
        provider: Some(spec.provider.as_str().into()),
        vendor: Some(spec.vendor.as_str().into()),
        region: spec.region.clone().or(Some("us-east-1".into())),
        arn: spec.arn.clone(),
        state: Some(RemoteState::Done),
        ..Default::default()
    }
}

fn record(l: &DesiredLink, phase: Phase, atlas_id: Option<&str>) -> Record {
    Record {
        key: l.key.clone(),
        spec_json: l.spec.to_json(),
        fingerprint: l.fingerprint,
        atlas_id: atlas_id.map(str::to_owned),
        phase,
        remote_state: Some(RemoteState::Working),
        remote_error: None,
        attempts: 0,
        last_error: None,
        next_attempt_unix: None,
        sent_unix: None,
        outputs: Default::default(),
        created_unix: 1,
        updated_unix: 1,
        prune: Default::default(),
    }
}

fn failed(l: &DesiredLink, next: i64) -> Record {
    Record {
        attempts: 2,
        last_error: Some("503".into()),
        next_attempt_unix: Some(next),
        ..record(l, Phase::Failed, None)
    }
}

fn listing(group: u8, conns: Vec<RemoteConnection>) -> Listings {
    Listings::from([(g(group), RemoteListing::new(conns))])
}

/// Of `projects_to_list`, those that `listings` does not cover yet.
fn projects_unlisted(p: &Plan, listings: &Listings) -> BTreeSet<GroupId> {
    let mut out = p.projects_to_list();
    out.retain(|g| !listings.contains_key(g));
    out
}

/// Every action counted once, whatever its kind.
fn total(c: &super::action::PlanCounts) -> usize {
    c.create
        + c.adopt
        + c.unchanged
        + c.update
        + c.changed
        + c.conflict
        + c.orphaned
        + c.waiting
        + c.inflight
        + c.delete
        + c.deleting
}

fn only(p: &Plan) -> &Action {
    assert_eq!(p.actions.len(), 1, "{:?}", p.actions);
    &p.actions[0]
}

fn reason(a: &Action) -> CreateReason {
    match a {
        Action::Create { reason, .. } => *reason,
        other => panic!("expected a create, got {other:?}"),
    }
}

#[test]
fn new_link_without_listing_is_a_new_create_and_asks_for_a_listing() {
    let a = link(1, "a", msk("a"));
    let p = plan(&desired(&[a]), &[], &Listings::new(), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::New);
    assert_eq!(p.projects_to_list(), BTreeSet::from([g(1)]));
    assert_eq!(
        projects_unlisted(&p, &Listings::new()),
        BTreeSet::from([g(1)])
    );
    assert!(projects_unlisted(&p, &listing(1, vec![])).is_empty());
}

#[test]
fn new_link_with_a_match_in_the_listing_is_adopted() {
    let a = link(1, "a", msk("a"));
    let l = listing(
        1,
        vec![remote("r1", &msk("other")), remote("r2", &msk("a"))],
    );
    let p = plan(&desired(&[a]), &[], &l, NOW, &S);
    match only(&p) {
        Action::Adopt { remote, .. } => assert_eq!(remote.id, "r2"),
        other => panic!("{other:?}"),
    }
    assert!(p.projects_to_list().is_empty());
}

#[test]
fn new_link_with_listing_but_no_match_is_created() {
    let a = link(1, "a", msk("a"));
    let l = listing(1, vec![remote("r1", &msk("other"))]);
    let p = plan(&desired(&[a]), &[], &l, NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::New);
}

#[test]
fn intent_resumes_or_adopts() {
    let a = link(1, "a", msk("a"));
    let recs = [record(&a, Phase::Intent, None)];
    let d = desired(std::slice::from_ref(&a));
    let p = plan(&d, &recs, &Listings::new(), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::Resume);
    let p = plan(
        &d,
        &recs,
        &listing(1, vec![remote("r9", &msk("a"))]),
        NOW,
        &S,
    );
    assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r9"));
}

#[test]
fn failed_waits_until_due_then_retries() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let p = plan(&d, &[failed(&a, NOW + 30)], &Listings::new(), NOW, &S);
    match only(&p) {
        Action::Waiting {
            until_unix,
            attempts,
            last_error,
            ..
        } => {
            assert_eq!((*until_unix, *attempts), (NOW + 30, 2));
            assert_eq!(last_error.as_deref(), Some("503"));
        }
        other => panic!("{other:?}"),
    }
    assert!(p.projects_to_list().is_empty());
    let p = plan(&d, &[failed(&a, NOW)], &Listings::new(), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::Retry);
}

#[test]
fn failed_with_a_fixed_manifest_retries_now() {
    let old = link(1, "a", msk("typo"));
    let fixed = link(1, "a", msk("a"));
    let p = plan(
        &desired(&[fixed]),
        &[failed(&old, NOW + 3600)],
        &Listings::new(),
        NOW,
        &S,
    );
    assert_eq!(reason(only(&p)), CreateReason::Retry);
}

#[test]
fn created_same_spec_is_unchanged_with_the_freshest_state() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let recs = [record(&a, Phase::Created, Some("r1"))];
    let p = plan(&d, &recs, &Listings::new(), NOW, &S);
    assert_eq!(
        only(&p),
        &Action::Unchanged {
            key: a.key.clone(),
            atlas_id: "r1".into(),
            remote_state: Some(RemoteState::Working)
        }
    );
    let p = plan(
        &d,
        &recs,
        &listing(1, vec![remote("r1", &msk("a"))]),
        NOW,
        &S,
    );
    assert!(matches!(
        only(&p),
        Action::Unchanged {
            remote_state: Some(RemoteState::Done),
            ..
        }
    ));
}

#[test]
fn gone_from_a_complete_listing_is_recreated_but_absence_of_a_listing_proves_nothing() {
    let a = link(1, "a", msk("a"));
    let d = desired(std::slice::from_ref(&a));
    let recs = [record(&a, Phase::Adopted, Some("r1"))];
    let p = plan(&d, &recs, &listing(1, vec![]), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::Recreate);
    // Another project's listing says nothing about this one.
    let p = plan(&d, &recs, &listing(2, vec![]), NOW, &S);
    assert!(matches!(only(&p), Action::Unchanged { .. }));
}

#[test]
fn partial_view_never_yields_recreate() {
    // Many created links across projects, listings for none of them.
    let links: Vec<_> = (0..20u8)
        .map(|i| link(i % 4, &format!("l{i}"), msk(&format!("c{i}"))))
        .collect();
    let recs: Vec<_> = links
        .iter()
        .enumerate()
        .map(|(i, l)| record(l, Phase::Created, Some(&format!("id{i}"))))
        .collect();
    let p = plan(&desired(&links), &recs, &Listings::new(), NOW, &S);
    assert_eq!(p.counts().unchanged, 20);
    assert!(p.actions.iter().all(|a| !matches!(
        a,
        Action::Create {
            reason: CreateReason::Recreate,
            ..
        }
    )));
}

#[test]
fn gone_but_an_unclaimed_match_exists_is_adopted_not_recreated() {
    let a = link(1, "a", msk("a"));
    let recs = [record(&a, Phase::Created, Some("r1"))];
    let l = listing(1, vec![remote("r7", &msk("a"))]);
    let p = plan(&desired(std::slice::from_ref(&a)), &recs, &l, NOW, &S);
    assert!(matches!(only(&p), Action::Adopt { remote, .. } if remote.id == "r7"));
}

#[test]
fn created_without_an_id_resumes() {
    let a = link(1, "a", msk("a"));
    let recs = [record(&a, Phase::Created, None)];
    let p = plan(&desired(&[a]), &recs, &Listings::new(), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::Resume);
}

#[test]
fn unsorted_records_still_give_a_sorted_plan_with_each_key_once() {
    let links: Vec<_> = ["b", "d", "f"].iter().map(|n| link(1, n, msk(n))).collect();
    let gone: Vec<_> = ["a", "c", "e", "g"]
        .iter()
        .map(|n| link(1, n, msk(n)))
        .collect();
    let mut recs: Vec<_> = links
        .iter()
        .chain(&gone)
        .map(|l| record(l, Phase::Created, Some(l.key.name.as_str())))
        .collect();
    recs.reverse();
    let p = plan(&desired(&links), &recs, &Listings::new(), NOW, &S);
    let got: Vec<_> = p
        .actions
        .iter()
        .map(|a| (a.key().name.as_str(), a.kind()))
        .collect();
    assert_eq!(
        got,
        [
            ("a", "orphaned"),
            ("b", "unchanged"),
            ("c", "orphaned"),
            ("d", "unchanged"),
            ("e", "orphaned"),
            ("f", "unchanged"),
            ("g", "orphaned")
        ]
    );
}

#[test]
fn actions_stay_small() {
    // One action per link: the big payloads are boxed so 100,000 actions stay a few MB.
    assert!(
        std::mem::size_of::<Action>() <= 160,
        "{}",
        std::mem::size_of::<Action>()
    );
}

#[test]
fn changed_spec_is_reported_never_recreated() {
    let old = link(1, "a", msk("old"));
    let new = link(1, "a", msk("new"));
    let recs = [record(&old, Phase::Created, Some("r1"))];
    // Even with the old connection gone from a complete listing.
    let p = plan(
        &desired(std::slice::from_ref(&new)),
        &recs,
        &listing(1, vec![]),
        NOW,
        &S,
    );
    assert_eq!(
        only(&p),
        &Action::Changed {
            key: new.key.clone(),
            atlas_id: Some("r1".into()),
            recorded: old.fingerprint,
            desired: new.fingerprint,
            why: ChangedWhy::Spec,
        }
    );
}

#[test]
fn undeclared_records_are_orphaned() {
    let a = link(1, "a", msk("a"));
    let recs = [record(&a, Phase::Created, Some("r1"))];
    let p = plan(
        &DesiredState::default(),
        &recs,
        &listing(1, vec![]),
        NOW,
        &S,
    );
    assert_eq!(
        only(&p),
        &Action::Orphaned {
            key: a.key.clone(),
            atlas_id: Some("r1".into()),
            phase: Phase::Created,
            undeclared_since_unix: None,
            hold: Some(Hold::Disabled),
        }
    );
}

#[test]
fn adoption_is_one_to_one_in_key_order() {
    // Two links with the same spec, one matching remote: the first key adopts, the second creates.
    let a = link(1, "a", pubsub("europe-west1"));
    let b = link(1, "b", pubsub("europe-west1"));
    let l = listing(1, vec![remote("r1", &pubsub("europe-west1"))]);
    let p = plan(&desired(&[b.clone(), a.clone()]), &[], &l, NOW, &S);
    assert!(
        matches!(&p.actions[0], Action::Adopt { link, remote } if link.key == a.key && remote.id == "r1")
    );
    assert!(matches!(&p.actions[1], Action::Create { link, .. } if link.key == b.key));
    // With two remotes, each link gets its own, lowest id first.
    let l = listing(
        1,
        vec![
            remote("r2", &pubsub("europe-west1")),
            remote("r1", &pubsub("europe-west1")),
        ],
    );
    let p = plan(&desired(&[a, b]), &[], &l, NOW, &S);
    let ids: Vec<_> = p
        .actions
        .iter()
        .map(|a| match a {
            Action::Adopt { remote, .. } => remote.id.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["r1", "r2"]);
}

#[test]
fn a_connection_held_by_any_record_is_not_adoptable() {
    // `held` is orphaned (no longer declared) but still holds r1; its recorded spec is another
    // than `a`'s, so `a` is not `held` renamed (see `rename`).
    let held = link(
        1,
        "held",
        LinkSpec {
            authentication_scheme: Some(AuthScheme::Tls),
            ..msk("a")
        },
    );
    let a = link(1, "a", msk("a"));
    let recs = [record(&held, Phase::Adopted, Some("r1"))];
    let p = plan(
        &desired(std::slice::from_ref(&a)),
        &recs,
        &listing(1, vec![remote("r1", &msk("a"))]),
        NOW,
        &S,
    );
    assert_eq!(reason(&p.actions[0]), CreateReason::New);
    assert!(matches!(&p.actions[1], Action::Orphaned { .. }));
}

#[test]
fn deleting_remote_is_not_adopted() {
    let a = link(1, "a", msk("a"));
    let mut r = remote("r1", &msk("a"));
    r.state = Some(RemoteState::Deleting);
    let p = plan(&desired(&[a]), &[], &listing(1, vec![r]), NOW, &S);
    assert_eq!(reason(only(&p)), CreateReason::New);
}

/// A connection to the same cluster as `msk(cluster)` but with Atlas's default scheme.
fn scram(id: &str, cluster: &str) -> RemoteConnection {
    RemoteConnection {
        authentication_scheme: Some("SASL_SCRAM".into()),
        ..remote(id, &msk(cluster))
    }
}

fn conflict(a: &Action) -> (&str, &[&'static str]) {
    match a {
        Action::Conflict {
            remote_id, fields, ..
        } => (remote_id.as_str(), fields.as_slice()),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn intent_sent(l: &DesiredLink, sent: i64) -> Record {
    Record {
        sent_unix: Some(sent),
        ..record(l, Phase::Intent, None)
    }
}

#[test]
fn a_record_fingerprinted_before_canonical_regions_is_not_changed() {
    use sha2::{Digest, Sha256};
    let spec = LinkSpec {
        region: Some("US_EAST_1".into()),
        ..LinkSpec::new(Provider::Aws, Vendor::Kinesis)
    };
    let a = link(1, "a", spec);
    // The old fingerprint: the body's JSON, region as written.
    let old = Fingerprint(Sha256::digest(a.spec.to_json().as_bytes()).into());
    assert_ne!(old, a.fingerprint);
    let rec = Record {
        fingerprint: old,
        ..record(&a, Phase::Created, Some("r1"))
    };
    let p = plan(
        &desired(std::slice::from_ref(&a)),
        &[rec],
        &Listings::new(),
        NOW,
        &S,
    );
    assert!(matches!(only(&p), Action::Unchanged { .. }), "{p:?}");
}

#[test]
fn actions_are_sorted_and_counted_and_serialise_stably() {
    let a = link(2, "a", msk("a"));
    let b = link(1, "z", msk("z"));
    let orphan = link(1, "m", msk("m"));
    let recs = [record(&orphan, Phase::Failed, None)];
    let p = plan(&desired(&[a, b]), &recs, &Listings::new(), NOW, &S);
    let keys: Vec<_> = p.actions.iter().map(|a| a.key().to_string()).collect();
    assert_eq!(
        keys,
        [
            format!("{}/m", g(1)),
            format!("{}/z", g(1)),
            format!("{}/a", g(2))
        ]
    );
    let c = p.counts();
    assert_eq!((c.create, c.orphaned, total(&c)), (2, 1, 3));
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["counts"]["create"], 2);
    assert_eq!(json["actions"][0]["action"], "orphaned");
    assert_eq!(json["actions"][0]["phase"], "failed");
    assert_eq!(json["actions"][1]["action"], "create");
    assert_eq!(json["actions"][1]["reason"], "new");
    assert_eq!(json["actions"][1]["groupId"], g(1).to_string());
    assert_eq!(json["actions"][1]["spec"]["vendor"], "MSK");
    assert_eq!(json["actions"][1]["source"], "m.yaml:3");
}

#[test]
fn reduce_keeps_of_held_connections_what_is_read_and_the_rest_whole() {
    let spec = msk("a");
    let mut held_one = remote("h1", &spec);
    held_one.state = Some(RemoteState::Failed);
    held_one.error_message = Some("boom".into());
    held_one.outputs.interface_endpoint_id = Some("vpce-1".into());
    let free = remote("f1", &msk("b"));
    let held_two = remote("h2", &msk("c"));
    let mut l = RemoteListing::new(vec![held_one, free.clone(), held_two]);
    l.reduce(|id| id.starts_with('h'));

    assert_eq!(l.connections, [free]);
    assert_eq!(l.held.len(), 2);
    assert_eq!(l.held[0].id, "h1");
    assert_eq!(l.held[0].state, Some(RemoteState::Failed));
    assert_eq!(l.held[0].error_message.as_deref(), Some("boom"));
    assert_eq!(
        l.held[0]
            .outputs
            .as_deref()
            .and_then(|o| o.interface_endpoint_id.as_deref()),
        Some("vpce-1")
    );
    // No outputs reported: nothing boxed.
    assert_eq!(l.held[1].id, "h2");
    assert!(l.held[1].outputs.is_none());
    let ids: Vec<&str> = l.states().map(|(id, _)| id).collect();
    assert_eq!(ids, ["f1", "h1", "h2"]);
    let (_, h1) = l.states().nth(1).unwrap();
    assert_eq!(
        h1.outputs().interface_endpoint_id.as_deref(),
        Some("vpce-1")
    );
}

#[test]
fn a_reduced_listing_plans_as_the_whole_one() {
    let kept = link(1, "kept", msk("k"));
    let gone = link(1, "gone", msk("g"));
    let new = link(1, "new", msk("n"));
    let near = link(1, "near", msk("x"));
    let recs = [
        record(&kept, Phase::Created, Some("id-kept")),
        record(&gone, Phase::Adopted, Some("id-gone")),
    ];
    let mut kept_remote = remote("id-kept", &msk("k"));
    kept_remote.state = Some(RemoteState::Working);
    let mut other = remote("id-other", &msk("x"));
    other.authentication_scheme = Some("SASL_SSL".into());
    let whole = listing(
        1,
        vec![
            kept_remote,
            remote("id-new", &msk("n")),
            remote("id-g2", &msk("g")),
            other,
        ],
    );
    let mut reduced = whole.clone();
    let held = ["id-kept", "id-gone"];
    for l in reduced.values_mut() {
        l.reduce(|id| held.contains(&id));
        assert_eq!(l.held.len(), 1);
    }
    let d = desired(&[kept, gone, new, near]);
    let p = plan(&d, &recs, &whole, NOW, &S);
    assert_eq!(p, plan(&d, &recs, &reduced, NOW, &S));
    let kinds: Vec<&str> = p.actions.iter().map(Action::kind).collect();
    assert_eq!(kinds, ["adopt", "unchanged", "conflict", "adopt"]);
}

mod in_flight;
mod near_match;
mod per_project;
mod prune;
mod rename;
mod update;
