//! The README's first command: `atlas-linkd demo` converges on a fresh machine with no credentials.

use std::process::Command;

#[test]
fn demo_converges_with_no_credentials_and_shows_the_trouble_it_met() {
    let out = Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .arg("demo")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("pass converged"), "{stdout}");
    // A pre-existing connection and a 409 both end adopted; nothing is duplicated.
    assert!(stdout.contains("2 adopted"), "{stdout}");
    assert!(stdout.contains("0 duplicates"), "{stdout}");
    assert!(
        stdout.contains("atlas_linkd_creates_total{outcome=\"conflict\"} 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("atlas_linkd_rate_limited_total 1"),
        "{stdout}"
    );
}

#[test]
fn a_closed_stdout_does_not_make_it_panic() {
    // `atlas-linkd demo | head -1`: the reader goes away; the exit status must still be the pass's.
    let mut child = Command::new(env!("CARGO_BIN_EXE_atlas-linkd"))
        .arg("demo")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
