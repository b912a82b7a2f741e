//! Where a `--once` pass spends its time and memory: one debug line per step, under the target
//! `atlas_linkd::phases`, with the time since the process started its work and the process's
//! `VmRSS`/`VmHWM`. Off unless `RUST_LOG` asks for it (`RUST_LOG=info,atlas_linkd::phases=debug`).

use std::sync::OnceLock;
use std::time::Instant;

static BEGAN: OnceLock<Instant> = OnceLock::new();

/// Starts the clock of `mark` (the first call wins; `mark` starts it too if nothing did).
pub(crate) fn begin() {
    BEGAN.get_or_init(Instant::now);
}

/// Logs `phase` with the time since `begin` and the memory figures, when the target is enabled.
pub(crate) fn mark(phase: &'static str) {
    if !tracing::enabled!(target: "atlas_linkd::phases", tracing::Level::DEBUG) {
        return;
    }
    let began = *BEGAN.get_or_init(Instant::now);
    let (rss, hwm) = memory_kib();
    tracing::debug!(target: "atlas_linkd::phases", phase, elapsed_ms = began.elapsed().as_millis() as u64,
        rss_mb = rss / 1024, hwm_mb = hwm / 1024, "phase");
}

/// `VmRSS` and `VmHWM` of this process in KiB (0 where /proc cannot tell).
pub(crate) fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    (status_kib(&status, "VmRSS:"), status_kib(&status, "VmHWM:"))
}

/// The KiB figure of `field` in a /proc status text.
fn status_kib(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kib_figure_of_a_field() {
        let text = "Name:\tx\nVmHWM:\t  123456 kB\nVmRSS:\t   789 kB\n";
        assert_eq!(status_kib(text, "VmRSS:"), 789);
        assert_eq!(status_kib(text, "VmHWM:"), 123_456);
        assert_eq!(status_kib(text, "VmSwap:"), 0);
    }
}
