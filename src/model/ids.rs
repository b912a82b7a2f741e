//! Project ids (`GroupId`) and link keys (`LinkKey`): how a link is named.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// An Atlas project id: 24 lower-case hex digits (`^[a-f0-9]{24}$`).
// Shared, not owned: every link key, ledger record and plan action names its project, and with
// 100,000 links a `String` per key cost megabytes and an allocation each.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an Atlas project id: expected 24 lower-case hex digits")]
pub struct InvalidGroupId(pub(crate) String);

impl GroupId {
    pub fn parse(s: &str) -> Result<Self, InvalidGroupId> {
        let ok = s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(GroupId(Arc::from(s)))
        } else {
            Err(InvalidGroupId(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupId {
    type Error = InvalidGroupId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        GroupId::parse(&s)
    }
}

impl From<GroupId> for String {
    fn from(g: GroupId) -> String {
        g.0.as_ref().to_owned()
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A link's identity: `(groupId, name)`. Names are unique within a project across all manifest files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkKey {
    pub group_id: GroupId,
    pub name: String,
}

impl LinkKey {
    pub fn new(group_id: GroupId, name: impl Into<String>) -> Self {
        LinkKey {
            group_id,
            name: name.into(),
        }
    }
}

impl fmt::Display for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group_id, self.name)
    }
}
