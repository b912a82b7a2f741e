//! The daemon's readiness tracking between passes: which projects still have declared links on their
//! way to `DONE` (a readiness poll lists those, and only those), and the line `/readyz` and the
//! STATUS line show of it. Pure: the loop in `run` does the listing and the timing.

use std::collections::{BTreeSet, HashSet};

use crate::model::{DesiredState, GroupId, LinkKey, Phase, Record, RemoteState};

/// Where the declared links stand between passes, from the ledger's rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReadyCount {
    /// Declared links created or adopted whose connection is `IDLE`, `WORKING`, or not listed yet.
    pub(crate) pending: usize,
    /// The projects of those links: what a readiness poll lists.
    pub(crate) projects: BTreeSet<GroupId>,
    /// Declared links whose connection ended `FAILED`: never polled for, since it stays so.
    pub(crate) failed: usize,
}

impl ReadyCount {
    /// From the ledger's `records`: the declared links, created or adopted, whose recorded Atlas
    /// state may still become `DONE`, except those `unlisted` (gone from the listings, see
    /// `reconcile::Unlisted`). A state this version does not know is not polled for: nothing says it moves.
    pub(crate) fn of(
        desired: &DesiredState,
        records: &[Record],
        unlisted: &HashSet<LinkKey>,
    ) -> ReadyCount {
        let mut out = ReadyCount::default();
        for r in records.iter().filter(|r| {
            r.atlas_id.is_some()
                && matches!(r.phase, Phase::Created | Phase::Adopted)
                && desired.get(&r.key).is_some()
                && !unlisted.contains(&r.key)
        }) {
            match r.remote_state {
                None | Some(RemoteState::Idle | RemoteState::Working) => {
                    out.pending += 1;
                    out.projects.insert(r.key.group_id.clone());
                }
                Some(RemoteState::Failed) => out.failed += 1,
                Some(_) => {}
            }
        }
        out
    }

    /// The line `/readyz` shows under its verdict and the STATUS line ends with; `None` when every
    /// declared link has settled. Progress, not a fault: it never makes the daemon unready.
    pub(crate) fn detail(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.pending > 0 {
            parts.push(format!(
                "not yet DONE: {} in {}",
                count(self.pending, "link"),
                count(self.projects.len(), "project")
            ));
        }
        if self.failed > 0 {
            parts.push(format!(
                "FAILED: {} (Atlas's errorMessage: `atlas-linkd outputs`)",
                count(self.failed, "link")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DesiredLink, DesiredProject, LinkSpec, Provider};
    use crate::model::{Source, Vendor};
    use crate::reconcile::Unlisted;
    use std::collections::BTreeMap;

    const G1: &str = "32b6e34b3d91647abb20e7b8";
    const G2: &str = "32b6e34b3d91647abb20e7b9";

    fn record(group: &str, name: &str, phase: Phase, state: Option<RemoteState>) -> Record {
        let group = GroupId::parse(group).unwrap();
        Record {
            key: LinkKey::new(group.clone(), name),
            spec_json: "{}".into(),
            fingerprint: LinkSpec::new(Provider::Aws, Vendor::Kinesis).fingerprint(),
            atlas_id: Some(format!("65a1b2c3d4e5f60718293a{:02x}", name.len())),
            phase,
            remote_state: state,
            ..Record::stand_in(group)
        }
    }

    fn desired(records: &[Record]) -> DesiredState {
        let mut d = DesiredState::default();
        for r in records {
            let link = DesiredLink::new(
                r.key.clone(),
                LinkSpec::new(Provider::Aws, Vendor::Kinesis),
                Source {
                    file: std::path::Path::new("m.yaml").into(),
                    line: None,
                },
            );
            d.projects
                .entry(r.key.group_id.clone())
                .or_insert_with(DesiredProject::default)
                .links
                .insert(link);
        }
        d
    }

    #[test]
    fn only_projects_with_declared_links_on_their_way_to_done_are_polled() {
        use RemoteState::*;
        let declared = [
            record(G1, "idle", Phase::Created, Some(Idle)),
            record(G1, "working", Phase::Adopted, Some(Working)),
            record(G1, "just-created", Phase::Created, None),
            record(G2, "done", Phase::Created, Some(Done)),
            record(G2, "failed", Phase::Created, Some(Failed)),
            record(G2, "deleting", Phase::Created, Some(Deleting)),
            record(
                G2,
                "unknown",
                Phase::Created,
                Some(Other("NEW_STATE".into())),
            ),
            record(G2, "in-flight", Phase::Intent, None),
        ];
        let d = desired(&declared);
        // A row no longer declared is not polled for, whatever its state.
        let mut records = declared.to_vec();
        records.push(record(G2, "undeclared", Phase::Created, Some(Idle)));
        let r = ReadyCount::of(&d, &records, &HashSet::new());
        assert_eq!(r.pending, 3);
        assert_eq!(
            r.projects.iter().map(GroupId::as_str).collect::<Vec<_>>(),
            [G1]
        );
        assert_eq!(r.failed, 1);
        assert_eq!(
            r.detail().unwrap(),
            "not yet DONE: 3 links in 1 project; FAILED: 1 link (Atlas's errorMessage: `atlas-linkd outputs`)"
        );

        // Once they settle, nothing is polled and nothing is shown.
        let settled: Vec<Record> = records
            .iter()
            .map(|r| match r.remote_state {
                None | Some(Idle | Working) if r.phase != Phase::Intent => {
                    record(r.key.group_id.as_str(), &r.key.name, r.phase, Some(Done))
                }
                _ => r.clone(),
            })
            .filter(|r| r.remote_state != Some(Failed))
            .collect();
        let r = ReadyCount::of(&d, &settled, &HashSet::new());
        assert_eq!(r, ReadyCount::default());
        assert_eq!(r.detail(), None);
    }

    #[test]
    fn a_connection_missing_from_two_listings_in_a_row_is_no_longer_polled_for() {
        let idle = record(G1, "idle", Phase::Created, Some(RemoteState::Idle));
        let other = record(G2, "other", Phase::Created, Some(RemoteState::Idle));
        let records = [idle.clone(), other.clone()];
        let d = desired(&records);
        let g1 = GroupId::parse(G1).unwrap();
        let empty: BTreeMap<GroupId, HashSet<String>> =
            [(g1.clone(), HashSet::new())].into_iter().collect();
        let showing: BTreeMap<GroupId, HashSet<String>> =
            [(g1, idle.atlas_id.iter().cloned().collect())]
                .into_iter()
                .collect();
        let mut u = Unlisted::default();
        u.observe(&records, &empty);
        assert!(u.gone().is_empty(), "once may be a listing lagging behind");
        // Shown again: the count starts over.
        u.observe(&records, &showing);
        u.observe(&records, &empty);
        assert!(u.gone().is_empty());
        u.observe(&records, &empty);
        assert_eq!(u.gone(), HashSet::from([idle.key.clone()]));
        let r = ReadyCount::of(&d, &records, &u.gone());
        assert_eq!(
            r.pending, 1,
            "the project not listed keeps its link pending"
        );
        assert_eq!(r.detail().unwrap(), "not yet DONE: 1 link in 1 project");
        u.clear();
        assert!(u.gone().is_empty());
    }
}
