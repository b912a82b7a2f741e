//! What the fake has seen and done, as tests, benchmarks and `fake-atlas` read it: requests by
//! operation and status, commits, duplicates, peak concurrency, 429s and the other client's calls.

use serde::Serialize;
use std::collections::BTreeMap;

/// A snapshot of what the fake has seen and done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Requests by operation (`list`, `get`, `create`, `delete`, `update`, `token`, `revoke`,
    /// `other`) and HTTP status; status `0` counts connections dropped without an answer.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Creates that took effect (also those whose answer was then dropped).
    pub creates_committed: u64,
    pub creates_committed_by_project: BTreeMap<String, u64>,
    /// Distinct specs that exist more than once (not counting connections being deleted) in a project.
    pub duplicates: u64,
    pub peak_concurrent: u64,
    pub peak_concurrent_by_project: BTreeMap<String, u64>,
    /// Every 429 sent, from the bucket or injected.
    pub rate_limited: u64,
    pub tokens_issued: u64,
    pub tokens_revoked: u64,
    pub digest_challenges: u64,
    pub connections_dropped: u64,
    /// Calls to a project that arrived after a 429 and before its `Retry-After` was up (beyond a short
    /// grace for calls already in flight): a client that honours `Retry-After` keeps this at 0.
    pub early_after_retry_after: u64,
    /// Calls made by the simulated other client (`FakeConfig::other_client_per_sec`), which share
    /// each project's bucket...
    pub other_client_calls: u64,
    /// ...and those of them the bucket refused (a 429 that tool does not retry: its run fails).
    pub other_client_refused: u64,
    pub other_client_calls_by_project: BTreeMap<String, u64>,
    pub other_client_refused_by_project: BTreeMap<String, u64>,
}

impl Counters {
    /// Requests of `op` answered with `status` (`0`: dropped).
    pub fn requests_with(&self, op: &str, status: u16) -> u64 {
        self.requests
            .get(op)
            .and_then(|by| by.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// Every request of `op`, whatever the answer.
    pub fn requests_of(&self, op: &str) -> u64 {
        self.requests
            .get(op)
            .map(|by| by.values().sum())
            .unwrap_or(0)
    }

    pub fn total_requests(&self) -> u64 {
        self.requests.values().flat_map(|by| by.values()).sum()
    }
}
