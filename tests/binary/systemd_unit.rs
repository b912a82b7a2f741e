//! The shipped systemd unit passes `systemd-analyze verify` silently and scores an exposure of at most 1.5.
//! Needs `systemd-analyze` (Debian package `systemd`); fails, not skips, without it.

use std::process::Command;

#[test]
fn unit_verifies_and_is_sandboxed() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/check.sh");
    let out = Command::new("sh")
        .arg(script)
        .output()
        .expect("run systemd/check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd/check.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ok: exposure"), "{stdout}");
    assert!(stdout.contains("is silent"), "{stdout}");
}

#[test]
fn check_script_rejects_a_broken_unit() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/atlas-linkd.service"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("atlas-linkd.service");
    std::fs::write(&bad, unit.replace("Type=notify\n", "Type=notify\nTypo=1\n")).unwrap();
    let out = Command::new("sh")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/check.sh"))
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Typo"));
}

/// Issue 12, case 2: the default soft limit of 1,024 open files let idle connections to /metrics take
/// every descriptor. The unit raises it (the daemon cannot: `SystemCallFilter=~@resources`).
#[test]
fn unit_raises_the_open_files_limit() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/atlas-linkd.service"
    ))
    .unwrap();
    let limit: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE= is set")
        .trim()
        .parse()
        .expect("one number: soft and hard limit alike");
    assert!(limit >= 8192, "LimitNOFILE={limit}");
}
