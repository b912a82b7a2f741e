//! The fake Atlas's configuration: authentication, rate limit, duplicate handling, timings and faults.

use serde::Serialize;
use std::fmt;

/// Which credentials the fake accepts.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum FakeAuth {
    /// Any well-formed credentials of either scheme: tokens from any Basic client id and secret, and
    /// Digest answers to a nonce the fake issued (the hash is not checked: there is no password to check).
    #[default]
    Any,
    /// Only this service account (OAuth 2.0 client credentials, then Bearer tokens).
    ServiceAccount {
        client_id: String,
        client_secret: String,
    },
    /// Only this programmatic API key (HTTP Digest, MD5, qop=auth), with the hash verified.
    ApiKey {
        public_key: String,
        private_key: String,
    },
}

// Secrets never reach Debug output, so a test failure or a log line cannot leak them.
impl fmt::Debug for FakeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FakeAuth::Any => f.write_str("Any"),
            FakeAuth::ServiceAccount { client_id, .. } => f
                .debug_struct("ServiceAccount")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
            FakeAuth::ApiKey { public_key, .. } => f
                .debug_struct("ApiKey")
                .field("public_key", public_key)
                .field("private_key", &"<redacted>")
                .finish(),
        }
    }
}

/// A per-project token bucket: `capacity` tokens, `refill` tokens added evenly over `period_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketConfig {
    pub capacity: u32,
    pub refill: u32,
    pub period_secs: f64,
}

impl Default for BucketConfig {
    /// Atlas's "Streams" set: 1200 requests, refilled at 500 per 60 s.
    fn default() -> Self {
        BucketConfig {
            capacity: 1200,
            refill: 500,
            period_secs: 60.0,
        }
    }
}

/// What the fake does with a create whose normalised body equals a live connection's in the same project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum DuplicateMode {
    /// 409 `STREAM_PRIVATE_LINK_ALREADY_EXISTS`.
    #[default]
    Conflict,
    /// Creates a second connection, silently (Atlas's real behaviour is unknown).
    Create,
}

/// The operations the fake serves, for scripts and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FakeOp {
    List,
    Get,
    Create,
    Delete,
    Update,
    Token,
    Revoke,
}

impl FakeOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FakeOp::List => "list",
            FakeOp::Get => "get",
            FakeOp::Create => "create",
            FakeOp::Delete => "delete",
            FakeOp::Update => "update",
            FakeOp::Token => "token",
            FakeOp::Revoke => "revoke",
        }
    }

    /// Whether the call is in Atlas's per-project "Streams" rate-limit set.
    pub fn is_api(self) -> bool {
        !matches!(self, FakeOp::Token | FakeOp::Revoke)
    }
}

impl fmt::Display for FakeOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// 429 `RATE_LIMITED_TOKEN_BUCKET` with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 500 `UNEXPECTED_ERROR`.
    ServerError,
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After: 1`.
    Unavailable,
    /// The call is served normally after this extra delay.
    Slow { ms: u64 },
    /// The TCP connection is closed without an answer, before the call changes anything.
    DropBeforeCommit,
    /// Another client creates the same connection at this very moment: the create is committed (as the
    /// other client's) and this call gets 409 `STREAM_PRIVATE_LINK_ALREADY_EXISTS`. Create only.
    ConcurrentCreate,
    /// The call takes effect (a create is committed), then the TCP connection is closed without an answer.
    DropAfterCommit,
    /// The gateway resets the client's TCP connection at once, without an answer, while the backend
    /// goes on: a valid create is still committed after `FakeConfig::commit_delay_ms` (other calls
    /// take effect at once). Unlike `DropAfterCommit`, the client is gone before anything exists.
    ResetThenCommit,
    /// The gateway answers `status` at once (502 with an HTML page, 504 with plain text, as a load
    /// balancer does: not Atlas's JSON error shape, no `X-Error-Code`, no `RateLimit-*` headers),
    /// while the backend goes on: a valid create is still committed after `commit_delay_ms` (other
    /// calls take effect at once). Any status can be scripted; one that is not an HTTP status is 502.
    GatewayThenCommit { status: u16 },
}

/// "The `nth` call of `operation` (in `group_id`, or overall when `None`) gets `fault`". Fires once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptedFault {
    pub operation: FakeOp,
    pub group_id: Option<String>,
    /// 1-based, counting the calls of that operation that passed authentication, version and
    /// project-id checks and the rate limit (the calls that reach fault injection).
    pub nth: u64,
    pub fault: Fault,
}

/// Random and scripted faults. Probabilities are per API call (token calls only get scripted faults);
/// at most one random fault hits a call, drawn in the order the fields are listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub seed: u64,
    pub p_429: f64,
    pub p_500: f64,
    pub p_503: f64,
    pub p_drop_before: f64,
    pub p_drop_after: f64,
    pub p_slow: f64,
    /// Creates only: `Fault::ResetThenCommit` (reset at once, committed later all the same).
    pub p_reset_create: f64,
    /// Creates only: `Fault::GatewayThenCommit` with 502 Bad Gateway.
    pub p_502_create: f64,
    /// Creates only: `Fault::GatewayThenCommit` with 504 Gateway Timeout.
    pub p_504_create: f64,
    pub slow_ms: u64,
    /// `Retry-After` on random 429s.
    pub retry_after_secs: u64,
    pub script: Vec<ScriptedFault>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            p_429: 0.0,
            p_500: 0.0,
            p_503: 0.0,
            p_drop_before: 0.0,
            p_drop_after: 0.0,
            p_slow: 0.0,
            p_reset_create: 0.0,
            p_502_create: 0.0,
            p_504_create: 0.0,
            slow_ms: 200,
            retry_after_secs: 1,
            script: Vec::new(),
        }
    }
}

/// Everything about a fake Atlas. `Default` is Atlas-like: Atlas's bucket, 409 on duplicates, no
/// faults, any credentials, creates committed and connections reaching `DONE` at once, and no other
/// client sharing the buckets.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub auth: FakeAuth,
    pub token_ttl_secs: u64,
    /// A Digest nonce answers `stale=true` after this many accepted uses...
    pub digest_nonce_max_uses: u64,
    /// ...or once it is this old.
    pub digest_nonce_ttl_secs: u64,
    /// `None`: no rate limit (and no `RateLimit-*` headers).
    pub bucket: Option<BucketConfig>,
    pub duplicates: DuplicateMode,
    /// Added to every API answer.
    pub latency_ms: u64,
    /// How long the backend takes to commit a create that passed validation. The create shows in
    /// lists and gets only then, and its answer (200 with the echo, or 409 if a duplicate was
    /// committed meanwhile: duplicates are judged at commit time) comes after it. The commit happens
    /// even if the client has gone (closed the socket, timed out, was killed). 0: at once.
    pub commit_delay_ms: u64,
    /// How long a new connection stays `IDLE`, then `WORKING`, before `DONE` (or `FAILED`).
    pub idle_ms: u64,
    pub working_ms: u64,
    /// How long a deleted connection stays visible (`DELETE_REQUESTED`, then `DELETING`) before get answers 404.
    pub delete_ms: u64,
    /// A connection whose create body contains this string ends `FAILED` with an `errorMessage`.
    pub fail_when_contains: Option<String>,
    /// The `errorMessage` of connections that `fail_when_contains` fails; `None`: a generic message.
    pub fail_message: Option<String>,
    /// A delete of a connection whose create body contains this string is refused with 400
    /// `STREAM_PRIVATE_LINK_IN_USE`, as Atlas refuses one that a stream connection still uses.
    /// `FakeAtlas::set_in_use` does the same for one connection.
    pub in_use_when_contains: Option<String>,
    /// A create whose body contains this string is refused with 400 `VALIDATION_ERROR`, as Atlas refuses
    /// an Azure connection in a project with no Azure cluster: valid JSON, permanently refused.
    pub reject_when_contains: Option<String>,
    /// Calls per second that another tool sharing each project's bucket (Terraform refreshing, the
    /// UI) makes, from the project's first call on. Each takes a token if one is left, else it is
    /// refused and never retried; `Counters::other_client_*` count both. 0 (the default): nobody else.
    pub other_client_per_sec: f64,
    pub faults: Faults,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            auth: FakeAuth::Any,
            token_ttl_secs: 3600,
            digest_nonce_max_uses: 100,
            digest_nonce_ttl_secs: 300,
            bucket: Some(BucketConfig::default()),
            duplicates: DuplicateMode::Conflict,
            latency_ms: 0,
            commit_delay_ms: 0,
            idle_ms: 0,
            working_ms: 0,
            delete_ms: 0,
            fail_when_contains: None,
            fail_message: None,
            in_use_when_contains: None,
            reject_when_contains: None,
            other_client_per_sec: 0.0,
            faults: Faults::default(),
        }
    }
}
