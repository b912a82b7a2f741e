//! The indexes a plan builds over its inputs: each project's listing (`ProjectIndex`, with its
//! lazily built `AdoptionIndex`) and the connection ids already taken (`Claimed`).

use super::{ListedState, RemoteListing};
use crate::model::{FxMap, FxSet, IdentityKey, LinkSpec, Record, RemoteConnection, RemoteState};
use std::cell::OnceCell;

/// One project's listing, indexed: by id always, and for adoption and near-matches only when a
/// link needs it.
pub(super) struct ProjectIndex<'a> {
    listing: &'a RemoteListing,
    /// Every listed id, held or not (see `RemoteListing::reduce`), with its state.
    pub(super) by_id: FxMap<&'a str, Option<&'a RemoteState>>,
    adoption: OnceCell<AdoptionIndex<'a>>,
}

struct AdoptionIndex<'a> {
    /// The listing's connections, lowest id first, so the oldest (likeliest the original) wins.
    sorted: Vec<&'a RemoteConnection>,
    by_arn: FxMap<&'a str, Vec<usize>>,
    by_endpoint: FxMap<&'a str, Vec<usize>>,
    /// Indices into `sorted` by each identity key, for connections not being deleted (which are
    /// never near-matches). A near-match shares a key, so this narrows the search to those.
    by_identity: FxMap<IdentityKey, Vec<usize>>,
}

impl<'a> ProjectIndex<'a> {
    pub(super) fn new(listing: &'a RemoteListing) -> Self {
        let mut by_id = FxMap::with_capacity_and_hasher(
            listing.connections.len() + listing.held.len(),
            Default::default(),
        );
        // An id listed twice (both copies are held, or neither): the first one wins.
        for (id, listed) in listing.states() {
            by_id.entry(id).or_insert(listed.state);
        }
        ProjectIndex {
            listing,
            by_id,
            adoption: OnceCell::new(),
        }
    }

    /// What the listing shows of connection `id` (the first copy of an id listed twice). A scan:
    /// only a `dnsDomain` change asks, which is rare.
    pub(super) fn listed(&self, id: &str) -> Option<ListedState<'a>> {
        self.listing
            .states()
            .find_map(|(listed_id, state)| (listed_id == id).then_some(state))
    }

    fn adoption(&self) -> &AdoptionIndex<'a> {
        self.adoption.get_or_init(|| {
            let mut sorted: Vec<&RemoteConnection> = self.listing.connections.iter().collect();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            sorted.dedup_by(|a, b| a.id == b.id);
            let mut by_arn: FxMap<&str, Vec<usize>> = FxMap::default();
            let mut by_endpoint: FxMap<&str, Vec<usize>> = FxMap::default();
            let mut by_identity: FxMap<IdentityKey, Vec<usize>> = FxMap::default();
            for (i, c) in sorted.iter().enumerate() {
                if let Some(arn) = c.arn.as_deref() {
                    by_arn.entry(arn).or_default().push(i);
                }
                if let Some(ep) = c.service_endpoint_id.as_deref() {
                    by_endpoint.entry(ep).or_default().push(i);
                }
                if c.state.as_ref().is_some_and(RemoteState::is_deleting) {
                    continue;
                }
                for key in c.identity().keys {
                    by_identity.entry(key).or_default().push(i);
                }
            }
            AdoptionIndex {
                sorted,
                by_arn,
                by_endpoint,
                by_identity,
            }
        })
    }

    /// The lowest-id unclaimed connection that `spec` matches. `matches` compares `arn` and
    /// `serviceEndpointId` exactly, so when the spec sets one, only connections with the same
    /// value can match and the index narrows the scan.
    pub(super) fn find(
        &self,
        spec: &LinkSpec,
        claimed: &ClaimedIds<'_, '_>,
    ) -> Option<&'a RemoteConnection> {
        let ix = self.adoption();
        let narrowed = if let Some(arn) = spec.arn.as_deref() {
            Some(ix.by_arn.get(arn).map(Vec::as_slice).unwrap_or(&[]))
        } else if let Some(ep) = spec.service_endpoint_id.as_deref() {
            Some(ix.by_endpoint.get(ep).map(Vec::as_slice).unwrap_or(&[]))
        } else {
            None
        };
        let ok = |c: &&RemoteConnection| !claimed.contains(c.id.as_str()) && spec.matches(c);
        match narrowed {
            Some(indices) => indices.iter().map(|&i| ix.sorted[i]).find(ok),
            None => ix.sorted.iter().copied().find(ok),
        }
    }

    /// The lowest-id unclaimed near-match of `spec`, with the fields that differ.
    pub(super) fn near(
        &self,
        spec: &LinkSpec,
        claimed: &ClaimedIds<'_, '_>,
    ) -> Option<(&'a RemoteConnection, Vec<&'static str>)> {
        let ix = self.adoption();
        let mut candidates: Vec<usize> = spec
            .identity()
            .keys
            .iter()
            .filter_map(|k| ix.by_identity.get(k))
            .flatten()
            .copied()
            .collect();
        // Indices into `sorted`: ascending is lowest id first.
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find_map(|i| {
            let c = ix.sorted[i];
            if claimed.contains(c.id.as_str()) {
                return None;
            }
            spec.near_match(c).map(|fields| (c, fields))
        })
    }
}

/// Connection ids no further link may adopt: those a record holds, whatever its state, and those
/// an earlier link of this plan adopted (adoption is one-to-one).
pub(super) struct Claimed<'a> {
    taken: Taken<'a>,
    adopted: FxSet<&'a str>,
}

enum Taken<'a> {
    /// Hashed from the records only when a first adoption is considered, so a steady-state pass
    /// (nothing to create) never hashes every record.
    Lazy {
        records: &'a [&'a Record],
        ids: Option<FxSet<&'a str>>,
    },
    /// Given by the caller, who hashed them once for the plans of every project.
    Given(&'a FxSet<&'a str>),
}

/// What `Claimed::view` lends the indexes: whether an id is taken.
pub(super) struct ClaimedIds<'s, 'a> {
    taken: &'s FxSet<&'a str>,
    adopted: &'s FxSet<&'a str>,
}

impl ClaimedIds<'_, '_> {
    pub(super) fn contains(&self, id: &str) -> bool {
        self.taken.contains(id) || self.adopted.contains(id)
    }
}

impl<'a> Claimed<'a> {
    /// The ids `records` hold, hashed when first needed.
    pub(super) fn lazy(records: &'a [&'a Record]) -> Claimed<'a> {
        Claimed {
            taken: Taken::Lazy { records, ids: None },
            adopted: FxSet::default(),
        }
    }

    /// `taken`: every id a record holds.
    pub(super) fn given(taken: &'a FxSet<&'a str>) -> Claimed<'a> {
        Claimed {
            taken: Taken::Given(taken),
            adopted: FxSet::default(),
        }
    }

    pub(super) fn view(&mut self) -> ClaimedIds<'_, 'a> {
        let taken = match &mut self.taken {
            Taken::Lazy { records, ids } => &*ids.get_or_insert_with(|| {
                records
                    .iter()
                    .filter_map(|r| r.atlas_id.as_deref())
                    .collect()
            }),
            Taken::Given(ids) => *ids,
        };
        ClaimedIds {
            taken,
            adopted: &self.adopted,
        }
    }

    /// An earlier link of this plan adopted `id`.
    pub(super) fn adopt(&mut self, id: &'a str) {
        self.adopted.insert(id);
    }
}
