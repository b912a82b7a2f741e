//! The validated domain: project ids, link keys, normalised link specs, their fingerprints, what Atlas
//! reports, and what the ledger records of each link.
//!
//! Pure data. Nothing here does I/O or reads a clock; `manifest` builds these values, `plan` compares them,
//! `atlas` converts them to and from the wire, and `ledger` stores them.

mod desired;
mod fingerprint;
mod fx;
mod identity;
mod ids;
mod kinds;
mod matching;
mod record;
mod remote;
mod spec;

pub use desired::{DesiredLink, DesiredProject, DesiredState, Links, Source};
pub use fingerprint::Fingerprint;
pub(crate) use fx::{FxMap, FxSet};
pub(crate) use identity::{Field, Identity, IdentityKey};
pub use ids::{GroupId, LinkKey};
pub use kinds::{AuthKind, AuthScheme, Provider, Vendor};
pub use record::{Phase, PruneMark, Record};
pub use remote::{EndpointOutputs, RemoteConnection, RemoteState};
pub use spec::LinkSpec;
pub(crate) use spec::{canonical_region, regions_equal};

#[cfg(test)]
mod tests;
