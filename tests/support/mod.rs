//! What the test binaries (and the `atlas_overhead` bench) share: one set of test credentials and the
//! environment that hands them out, one polling helper, the harness around an in-process fake Atlas,
//! the helpers of the fake's own tests, the Atlas client helpers, and a hostile Atlas (`hostile`).
// Each crate that includes this module uses only part of it.
#![allow(dead_code)]

pub(crate) mod atlas;
pub(crate) mod daemon;
pub(crate) mod fake;
pub(crate) mod harness;
pub(crate) mod hostile;
pub(crate) mod postgres;
pub(crate) mod proxy;
pub(crate) mod soak;

use std::fmt::Display;
use std::time::Duration;

/// The service account the tests use; the fake accepts it (and any other, unless told otherwise).
pub(crate) const CLIENT_ID: &str = "mdb_sa_id_0123456789abcdef01234567";
pub(crate) const CLIENT_SECRET: &str = "mdb_sa_sk_SUPERSECRETclientsecret";
/// The API key the tests use for HTTP Digest.
pub(crate) const PUBLIC_KEY: &str = "abcdefgh";
pub(crate) const PRIVATE_KEY: &str = "00000000-PRIVATE-KEY-SECRET-0000";

/// Environment for tests: the service account above, nothing from the real environment.
pub(crate) fn test_env(key: &str) -> Option<String> {
    match key {
        "MONGODB_ATLAS_CLIENT_ID" => Some(CLIENT_ID.into()),
        "MONGODB_ATLAS_CLIENT_SECRET" => Some(CLIENT_SECRET.into()),
        _ => None,
    }
}

/// Polls `f` every 20 ms until it gives `Some`, and returns what it gave; panics naming `what` once
/// `deadline` has passed. `what` is formatted only then, so a `Display` that reads a log shows the
/// log as it was at the failure. The clock is tokio's, so a paused test clock moves the deadline too.
pub(crate) async fn eventually<T>(
    what: impl Display,
    deadline: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = f().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `Display` that calls `f` each time it is formatted: a failure message for `eventually` that
/// shows what things were like at the failure (a log, the messages so far), not at the start.
pub(crate) fn lazy(f: impl Fn() -> String) -> impl Display {
    struct Lazy<F>(F);
    impl<F: Fn() -> String> Display for Lazy<F> {
        fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            out.write_str(&(self.0)())
        }
    }
    Lazy(f)
}
