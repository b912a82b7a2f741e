//! The Atlas Admin API client: the only code that speaks HTTP to Atlas.
//!
//! Every call here is ONE attempt (plus the authentication handshakes: a digest challenge, one token
//! refresh after a 401) and returns a classified result (`ErrorClass`), with the answer's rate-limit
//! headers (`RateLimitInfo`). Retries, rate limiting and pausing belong to `reconcile`: what follows a
//! failure is decided from the class alone (a 429's `Retry-After` travels inside it), while
//! `RateLimitInfo` only corrects the executor's estimate of what is left in the project's shared bucket
//! (`reconcile::budget`), which paces later calls.

mod auth;
mod client;
mod credentials;
mod digest;
mod error;
mod pager;
mod scrub;
mod wire;

use std::time::Duration;

use crate::model::GroupId;

pub use client::{AtlasClient, ClientSettings};
pub use credentials::Credentials;
pub(crate) use credentials::CredentialsError;
pub use error::{AnswerTooLarge, ApiError, ErrorClass};
pub(crate) use error::{AtlasErrorBody, ClientBuildError};
// The decoders of Atlas's answers, for the fuzz targets (src/fuzzing.rs).
pub(crate) use auth::TokenCache;
pub(crate) use client::{DecodeAs, Decoded};
pub(crate) use error::{class_of_status, parse_retry_after};
pub(crate) use scrub::base64;
pub(crate) use wire::WireToken;

/// The longest `Retry-After` the client reports: a longer one, a date further ahead, or a number too
/// large to read is clamped to this, so no server can make a caller wait (or overflow an `Instant`)
/// without bound. The executor caps it further at `retry.max_backoff_secs`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The largest answer body the client reads, 16 MiB: a full page of 500 connections is well under
/// 1 MB, so anything near this is not Atlas's answer. Checked against `Content-Length` before the body
/// is read and while it streams in, so a server cannot make the process hold more than this per call.
pub const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

/// The API version this client speaks, sent as `Accept` (and `Content-Type` on POST).
pub(crate) const API_MEDIA_TYPE: &str = "application/vnd.atlas.2023-02-01+json";

/// The API version of the one call the older version lacks, PATCH (update a connection's
/// `dnsDomain`): Atlas serves that PATCH under `2025-03-12` only.
pub(crate) const API_MEDIA_TYPE_UPDATE: &str = "application/vnd.atlas.2025-03-12+json";

/// The default `User-Agent`: `atlas-linkd/<version>`.
pub(crate) fn default_user_agent() -> String {
    format!("atlas-linkd/{}", env!("CARGO_PKG_VERSION"))
}

/// What an HTTP exchange was for; `as_str` is the `operation` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    List,
    Get,
    Create,
    /// PATCH of a connection's `dnsDomain`.
    Update,
    Delete,
    Token,
    Revoke,
}

impl Operation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::List => "list",
            Operation::Get => "get",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Delete => "delete",
            Operation::Token => "token",
            Operation::Revoke => "revoke",
        }
    }

    /// Human wording for messages: "create a private link connection".
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Operation::List => "list private link connections",
            Operation::Get => "get a private link connection",
            Operation::Create => "create a private link connection",
            Operation::Update => "update a private link connection's dnsDomain",
            Operation::Delete => "delete a private link connection",
            Operation::Token => "obtain an OAuth access token",
            Operation::Revoke => "revoke the OAuth access token",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Called after every HTTP exchange (API and auth), so metrics can count them without this module
/// knowing Prometheus. `status` is the HTTP status as a string, or "timeout" / "connect" / "error".
pub trait Observer: Send + Sync {
    fn on_response(
        &self,
        op: Operation,
        group_id: Option<&GroupId>,
        status: &str,
        elapsed: Duration,
    );
}

/// Atlas's `RateLimit-Limit` / `RateLimit-Remaining` headers; either may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RateLimitInfo {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

/// A successful answer and the rate-limit headers that came with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<T> {
    pub value: T,
    pub rate_limit: RateLimitInfo,
}
