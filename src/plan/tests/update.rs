//! dnsDomain updates: a link whose spec differs only in `dnsDomain` is updated in place when the
//! listing shows the connection `IDLE` or without a domain, and reported `changed` with why otherwise.

use super::*;

fn confluent(domain: Option<&str>) -> LinkSpec {
    LinkSpec {
        region: Some("us-east-1".into()),
        service_endpoint_id: Some("com.amazonaws.vpce.us-east-1.vpce-svc-0abc".into()),
        dns_sub_domain: Some(vec![]),
        dns_domain: domain.map(str::to_owned),
        ..LinkSpec::new(Provider::Aws, Vendor::Confluent)
    }
}

/// Connection `r1` as the listing shows it: the recorded spec's fields, with `state` and `domain`.
fn listed(state: RemoteState, domain: Option<&str>) -> Listings {
    let spec = confluent(domain);
    listing(
        1,
        vec![RemoteConnection {
            id: "r1".into(),
            provider: Some("AWS".into()),
            vendor: Some("CONFLUENT".into()),
            region: spec.region.clone(),
            service_endpoint_id: spec.service_endpoint_id.clone(),
            dns_domain: spec.dns_domain.clone(),
            dns_sub_domain: spec.dns_sub_domain.clone(),
            state: Some(state),
            ..Default::default()
        }],
    )
}

/// A link created with `recorded`'s domain, declared now with `declared`'s, planned with `listings`.
fn plan_change(recorded: Option<&str>, declared: Option<&str>, listings: &Listings) -> Plan {
    let old = link(1, "a", confluent(recorded));
    let new = link(1, "a", confluent(declared));
    let recs = [record(&old, Phase::Created, Some("r1"))];
    plan(
        &desired(std::slice::from_ref(&new)),
        &recs,
        listings,
        NOW,
        &S,
    )
}

fn why(p: &Plan) -> &ChangedWhy {
    match only(p) {
        Action::Changed { why, .. } => why,
        other => panic!("expected changed, got {other:?}"),
    }
}

const OLD: Option<&str> = Some("use1.abc.confluent.cloud");
const NEW: Option<&str> = Some("use1.xyz.confluent.cloud");

#[test]
fn only_the_domain_differs_and_the_connection_is_idle_so_it_is_updated() {
    let p = plan_change(OLD, NEW, &listed(RemoteState::Idle, OLD));
    match only(&p) {
        Action::Update {
            link,
            atlas_id,
            remote_state,
            recorded,
        } => {
            assert_eq!(link.spec.dns_domain.as_deref(), NEW);
            assert_eq!(atlas_id, "r1");
            assert_eq!(remote_state, &Some(RemoteState::Idle));
            assert_eq!(*recorded, link_fingerprint(OLD));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.counts().update, 1);
    assert_eq!(total(&p.counts()), 1);
}

fn link_fingerprint(domain: Option<&str>) -> Fingerprint {
    confluent(domain).fingerprint()
}

#[test]
fn a_connection_without_a_domain_yet_is_updated_in_any_live_state() {
    for state in [RemoteState::Idle, RemoteState::Working, RemoteState::Done] {
        let p = plan_change(None, NEW, &listed(state.clone(), None));
        assert!(
            matches!(only(&p), Action::Update { .. }),
            "{state:?}: {p:?}"
        );
    }
}

#[test]
fn past_idle_with_a_domain_is_changed_with_the_state_as_reason() {
    for state in [RemoteState::Working, RemoteState::Done, RemoteState::Failed] {
        let p = plan_change(OLD, NEW, &listed(state.clone(), OLD));
        assert_eq!(
            why(&p),
            &ChangedWhy::DnsDomainRefused {
                state: Some(state.clone())
            }
        );
        let reason = why(&p).reason().unwrap();
        assert_eq!(
            reason,
            format!(
                "dnsDomain can be updated only while the connection is IDLE or has no domain; it is {}",
                state.as_str()
            )
        );
        assert_eq!(p.counts().update, 0);
        assert_eq!(p.counts().changed, 1);
    }
    // Being deleted: never patched, with or without a domain.
    let p = plan_change(None, NEW, &listed(RemoteState::Deleting, None));
    assert!(matches!(why(&p), ChangedWhy::DnsDomainRefused { .. }));
}

#[test]
fn another_field_differing_is_changed_as_ever_even_when_idle() {
    let old = link(1, "a", confluent(OLD));
    let mut spec = confluent(NEW);
    spec.region = Some("us-west-2".into());
    let new = link(1, "a", spec);
    let recs = [record(&old, Phase::Created, Some("r1"))];
    let p = plan(
        &desired(std::slice::from_ref(&new)),
        &recs,
        &listed(RemoteState::Idle, None),
        NOW,
        &S,
    );
    assert_eq!(why(&p), &ChangedWhy::Spec);
    assert_eq!(why(&p).reason(), None);
    assert!(
        p.projects_to_list().is_empty(),
        "nothing a listing can change"
    );
}

#[test]
fn without_a_listing_a_domain_change_asks_for_one() {
    let p = plan_change(OLD, NEW, &Listings::new());
    assert_eq!(why(&p), &ChangedWhy::DnsDomainUnlisted);
    assert_eq!(p.projects_to_list(), BTreeSet::from([g(1)]));
}

#[test]
fn a_removed_domain_or_a_connection_gone_from_the_listing_is_changed() {
    let p = plan_change(OLD, None, &listed(RemoteState::Idle, OLD));
    assert_eq!(why(&p), &ChangedWhy::DnsDomainRemoved);
    let p = plan_change(OLD, NEW, &listing(1, vec![]));
    assert_eq!(why(&p), &ChangedWhy::DnsDomainNotListed);
}

#[test]
fn an_adopted_link_is_updated_too_and_a_reduced_listing_plans_the_same() {
    let old = link(1, "a", confluent(None));
    let new = link(1, "a", confluent(NEW));
    let recs = [record(&old, Phase::Adopted, Some("r1"))];
    let d = desired(std::slice::from_ref(&new));
    let whole = listed(RemoteState::Working, None);
    let mut reduced = whole.clone();
    for l in reduced.values_mut() {
        l.reduce(|id| id == "r1");
        assert_eq!(l.held.len(), 1);
    }
    let p = plan(&d, &recs, &whole, NOW, &S);
    assert!(matches!(only(&p), Action::Update { .. }), "{p:?}");
    assert_eq!(p, plan(&d, &recs, &reduced, NOW, &S));
    // With a domain, the reduced listing still knows it: refused past IDLE.
    let mut with_domain = listed(RemoteState::Working, OLD);
    for l in with_domain.values_mut() {
        l.reduce(|id| id == "r1");
    }
    let p = plan(&d, &recs, &with_domain, NOW, &S);
    assert!(matches!(why(&p), ChangedWhy::DnsDomainRefused { .. }));
}

#[test]
fn json_shows_the_update_and_the_reason_of_a_refused_one() {
    let json =
        serde_json::to_value(plan_change(OLD, NEW, &listed(RemoteState::Idle, OLD))).unwrap();
    assert_eq!(json["counts"]["update"], 1);
    let a = &json["actions"][0];
    assert_eq!(a["action"], "update");
    assert_eq!(a["atlasId"], "r1");
    assert_eq!(a["remoteState"], "IDLE");
    assert_eq!(a["dnsDomain"], NEW.unwrap());
    assert_eq!(a["recordedFingerprint"], link_fingerprint(OLD).to_hex());
    assert_eq!(a["desiredFingerprint"], link_fingerprint(NEW).to_hex());
    assert_eq!(a["source"], "m.yaml:3");

    let json =
        serde_json::to_value(plan_change(OLD, NEW, &listed(RemoteState::Done, OLD))).unwrap();
    let a = &json["actions"][0];
    assert_eq!(a["action"], "changed");
    assert!(a["reason"].as_str().unwrap().ends_with("it is DONE"), "{a}");
    let text = crate::report::plan_text(&plan_change(OLD, NEW, &listed(RemoteState::Idle, OLD)));
    assert!(
        text.contains(&format!(
            "update     {}/a (connection r1, IDLE: set dnsDomain to use1.xyz.confluent.cloud)",
            g(1)
        )),
        "{text}"
    );
    assert!(text.contains("1 to update"), "{text}");
}
