//! The real binary against a hostile Atlas (`support::hostile`): `--once` against an endless listing
//! stays small and fails at the answer limit; `plan`'s output and the daemon's log never show the
//! credential a token error echoes back (issue 12, cases 5 and 11). The peak-RSS figure is
//! `cargo bench --bench hostile`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::harness::{binary, write_manifest};
use crate::support::hostile::{Hostile, HostileConfig, Listing, Token, basic_credential};
use crate::support::{CLIENT_ID, CLIENT_SECRET, eventually, lazy};

/// A config in `dir` pointing at `base_url`, with one project of two links.
fn setup(dir: &Path, base_url: &str, timeout_secs: u64) -> PathBuf {
    write_manifest(dir, 1, 2);
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "atlas:\n  base_url: {base_url}\n  timeout_secs: {timeout_secs}\nmanifests: [manifests/]\n\
             ledger: state/ledger.db\nmetrics:\n  listen: null\n\
             retry:\n  max_attempts: 3\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n"
        ),
    )
    .unwrap();
    config
}

fn basic() -> String {
    basic_credential(CLIENT_ID, CLIENT_SECRET)
}

fn assert_no_credential(text: &str) {
    assert!(
        !text.contains(CLIENT_SECRET),
        "the client secret leaked:\n{text}"
    );
    assert!(
        !text.contains(&basic()),
        "the Basic credential leaked:\n{text}"
    );
    assert!(
        text.contains("Basic [redacted]"),
        "the token error's echo is missing, so the test proves nothing:\n{text}"
    );
}

#[tokio::test]
async fn plan_output_does_not_show_the_credential_a_token_error_echoes() {
    let server = Hostile::start(HostileConfig {
        token: Token::RejectEchoingAuthorization,
        ..HostileConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.base_url(), 5);
    let out = tokio::process::Command::from(binary(&config))
        .arg("plan")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(server.token_requests() >= 1);
    assert_no_credential(&text);
}

#[tokio::test]
async fn the_daemon_log_does_not_show_the_credential_a_token_error_echoes() {
    let server = Hostile::start(HostileConfig {
        token: Token::RejectEchoingAuthorization,
        ..HostileConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &server.base_url(), 5);
    let log = dir.path().join("daemon.log");
    let mut child = binary(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(
        lazy(|| format!("the token error in the daemon's log:\n{}", read())),
        Duration::from_secs(30),
        async || {
            read()
                .contains("could not obtain an OAuth access token")
                .then_some(())
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_no_credential(&read());
}

/// Waits for `pid` and returns its exit code and peak resident set (the kernel's `ru_maxrss`, the
/// `VmHWM` at exit), in KiB.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_against_an_endless_listing_fails_at_the_answer_limit_and_stays_small() {
    let server = Hostile::start(HostileConfig {
        listing: Listing::Endless,
        ..HostileConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // The timeout: today's client reads for all of it (5.8 GB).
    let config = setup(dir.path(), &server.base_url(), 10);
    let stderr_path = dir.path().join("stderr.log");
    // A std child, waited for by `wait4` alone (std's `Child` neither waits nor kills on drop).
    let child = binary(&config)
        .arg("--once")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let (code, peak_kib) = tokio::task::spawn_blocking(move || wait_with_peak_rss(pid))
        .await
        .unwrap();
    drop(child);
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(matches!(code, Some(c) if c != 0), "{code:?}\n{stderr}");
    assert!(stderr.contains("16 MiB limit"), "{stderr}");
    assert_eq!(server.list_requests(), 1, "refused, not retried:\n{stderr}");
    assert_eq!(server.create_requests(), 0, "no listing, no create");
    assert!(
        elapsed < Duration::from_secs(10),
        "ended by the timeout, not by the limit: {elapsed:?}"
    );
    assert!(
        peak_kib < 256 * 1024,
        "peak RSS {} MiB against an endless listing",
        peak_kib / 1024
    );
}
