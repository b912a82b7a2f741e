//! Peak RSS of `atlas-linkd --once` against a hostile Atlas whose listing body never ends (issue 12,
//! case 5): `cargo bench --bench hostile`. Next to it, the same run against an empty listing, so the
//! cost of the hostile answer is the difference.
//!
//! The binary is the one cargo builds for benchmarks (`CARGO_BIN_EXE_atlas-linkd`, bench profile,
//! i.e. release); `HOSTILE_BENCH_BIN=/path/to/atlas-linkd` measures another build (an older one, for a
//! before figure) and `HOSTILE_BENCH_TIMEOUT_SECS` sets `atlas.timeout_secs` (default 10, the
//! issue's). The peak is the kernel's `ru_maxrss` of the waited-for child: its `VmHWM` at exit.
// Benchmarks may unwrap: a failure to set one up ends it, which is what should happen.
#![allow(clippy::unwrap_used)]

#[path = "../tests/support/hostile.rs"]
mod hostile;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hostile::{Hostile, HostileConfig, Listing};

const CLIENT_ID: &str = "mdb_sa_id_0123456789abcdef01234567";
const CLIENT_SECRET: &str = "mdb_sa_sk_SUPERSECRETclientsecret";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let bin = std::env::var("HOSTILE_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_atlas-linkd").to_owned());
    let timeout_secs: u64 = std::env::var("HOSTILE_BENCH_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    println!("hostile: {bin} --once, atlas.timeout_secs {timeout_secs}");
    for (name, listing) in [
        ("empty listing (baseline)", Listing::Empty),
        ("endless chunked listing", Listing::Endless),
    ] {
        let server = runtime.block_on(Hostile::start(HostileConfig {
            listing,
            ..HostileConfig::default()
        }));
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), &server.base_url(), timeout_secs);
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("--once")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MONGODB_ATLAS_CLIENT_ID", CLIENT_ID)
            .env("MONGODB_ATLAS_CLIENT_SECRET", CLIENT_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // Reaped by `wait4` alone: std's `Child` neither waits nor kills on drop.
        let (code, peak_kib) = wait_with_peak_rss(child.id());
        drop(child);
        let elapsed = started.elapsed();
        println!(
            "  {name}: peak RSS (VmHWM) {:.1} MiB, exit {code:?}, {:.2} s, {:.1} MiB of body sent by the server",
            peak_kib as f64 / 1024.0,
            elapsed.as_secs_f64(),
            server.body_bytes_sent() as f64 / (1024.0 * 1024.0),
        );
        drop(server);
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One project of ten links, and a config pointing at `base_url`.
fn write_config(dir: &Path, base_url: &str, timeout_secs: u64) -> std::path::PathBuf {
    let mut yaml = String::from(
        "projects:\n  - groupId: 00000000000000000000a7a7\n    defaults: {provider: AWS, vendor: S3, region: us-east-1}\n    links:\n",
    );
    for l in 0..10 {
        yaml.push_str(&format!(
            "      - name: link-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{l:05}\n"
        ));
    }
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests").join("links.yaml"), yaml).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "atlas:\n  base_url: {base_url}\n  timeout_secs: {timeout_secs}\nmanifests: [manifests/]\n\
             ledger: state/ledger.db\nmetrics:\n  listen: null\n\
             retry:\n  max_attempts: 1\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n"
        ),
    )
    .unwrap();
    config
}

/// Waits for `pid`; its exit code and peak resident set in KiB (`ru_maxrss`).
fn wait_with_peak_rss(pid: u32) -> (Option<i32>, u64) {
    let mut status = 0;
    // SAFETY: an all-zero `rusage` is a valid value, filled in by `wait4`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; both pointers are valid for the call.
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, pid as libc::pid_t, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}
