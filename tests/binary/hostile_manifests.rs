//! Hostile manifest files through the real binary (issue 12, cases 6 and 9): a symbolic link out of
//! the manifest folder, a file in `$CREDENTIALS_DIRECTORY`, a FIFO named as a manifest (for
//! `validate`, `--once` and the daemon, at start-up, dropped into its folder and added by SIGHUP),
//! and a file over `limits.manifest_file_max_bytes`. None may hang, and no secret may be printed.

use crate::support::harness::{self, harness};
use crate::support::{eventually, lazy};
use fake_atlas::FakeConfig;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);
const MARKER: &str = "MARKER-5e4d3c2b1a-client-secret-never-printed";

/// A config listing `manifests` (YAML flow list items), with no metrics endpoint.
fn config(dir: &Path, manifests: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "atlas:\n  base_url: http://127.0.0.1:9\nmanifests: [{manifests}]\nledger: state/ledger.db\nmetrics:\n  listen: null\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn manifest(link: &str) -> String {
    format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n      - name: {link}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-{link}\n",
        harness::group_id(0)
    )
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

/// A child whose output goes to files, killed if the test ends first.
struct Run {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Run {
    fn spawn(mut cmd: std::process::Command, dir: &Path, name: &str) -> Run {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        cmd.stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        Run {
            child: cmd.spawn().unwrap(),
            stdout,
            stderr,
        }
    }

    fn output(&self) -> (String, String) {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        (read(&self.stdout), read(&self.stderr))
    }

    /// The exit status, or a panic (with the output so far) if it has not exited by the deadline:
    /// a hang is the failure these tests look for.
    async fn exit(&mut self) -> ExitStatus {
        let (stdout, stderr) = (self.stdout.clone(), self.stderr.clone());
        let what = lazy(|| {
            let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
            format!(
                "the process to exit (it hangs)\n--- stdout\n{}\n--- stderr\n{}",
                read(&stdout),
                read(&stderr)
            )
        });
        let child = &mut self.child;
        eventually(what, DEADLINE, async || child.try_wait().unwrap()).await
    }

    fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    async fn wait_stderr(&self, needles: &[&str]) {
        let what = lazy(|| format!("stderr to say {needles:?}\n--- stderr\n{}", self.output().1));
        eventually(what, DEADLINE, async || {
            let (_, err) = self.output();
            needles.iter().all(|n| err.contains(n)).then_some(())
        })
        .await;
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `validate`, `--once` and the daemon on `config`: each must exit 2 at once, saying every one of
/// `needles`, and never print `MARKER`.
async fn all_refuse(config: &Path, dir: &Path, env: &[(&str, &str)], needles: &[&str]) {
    for args in [&["validate"][..], &["--once"], &[]] {
        let mut cmd = harness::binary(config);
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut run = Run::spawn(cmd, dir, &format!("run{}", args.len()));
        let status = run.exit().await;
        let (out, err) = run.output();
        assert_eq!(status.code(), Some(2), "{args:?}: {out}\n{err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: no {needle:?} in:\n{err}");
        }
        assert!(
            !out.contains(MARKER) && !err.contains(MARKER),
            "{args:?} printed the secret:\n{out}\n{err}"
        );
    }
}

#[tokio::test]
async fn a_manifest_link_out_of_the_folder_is_refused_by_name_and_its_target_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // What `$CREDENTIALS_DIRECTORY/client-secret` or `/etc/shadow` holds: one line.
    std::fs::write(outside.join("client-secret"), format!("{MARKER}\n")).unwrap();
    std::fs::write(
        outside.join("shadow"),
        format!("root:$6$salt${MARKER}:19000:0:99999:7:::\n"),
    )
    .unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("good.yaml"), manifest("good")).unwrap();
    symlink(outside.join("client-secret"), manifests.join("leak.yaml")).unwrap();
    let config = config(dir.path(), "manifests/", "");
    all_refuse(
        &config,
        dir.path(),
        &[],
        &["leak.yaml", "outside every configured manifest path"],
    )
    .await;

    std::fs::remove_file(manifests.join("leak.yaml")).unwrap();
    symlink(outside.join("shadow"), manifests.join("shadow.yml")).unwrap();
    all_refuse(&config, dir.path(), &[], &["shadow.yml", "outside"]).await;

    // A link to the folder holding them.
    std::fs::remove_file(manifests.join("shadow.yml")).unwrap();
    std::fs::rename(outside.join("shadow"), outside.join("shadow.yaml")).unwrap();
    symlink(&outside, manifests.join("more")).unwrap();
    all_refuse(&config, dir.path(), &[], &["more", "folder outside"]).await;
}

#[tokio::test]
async fn nothing_under_the_credentials_directory_is_read_even_inside_the_manifest_folder() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("manifests/credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("client-secret.yaml"), format!("{MARKER}\n")).unwrap();
    let config = config(dir.path(), "manifests/", "");
    all_refuse(
        &config,
        dir.path(),
        &[("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())],
        &["client-secret.yaml", "$CREDENTIALS_DIRECTORY"],
    )
    .await;
}

#[test]
fn validate_accepts_a_kubernetes_configmap_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("manifests");
    let stamp = mount.join("..2026_12_01_10_00_00.123");
    std::fs::create_dir_all(&stamp).unwrap();
    std::fs::write(stamp.join("x.yaml"), manifest("x")).unwrap();
    std::fs::write(stamp.join("y.yaml"), manifest("y")).unwrap();
    symlink("..2026_12_01_10_00_00.123", mount.join("..data")).unwrap();
    symlink("..data/x.yaml", mount.join("x.yaml")).unwrap();
    symlink("..data/y.yaml", mount.join("y.yaml")).unwrap();
    let out = harness::binary(&config(dir.path(), "manifests/", ""))
        .arg("validate")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok: 2 links in 1 projects"), "{stdout}");
}

#[tokio::test]
async fn a_fifo_named_as_a_manifest_is_refused_at_once_by_validate_once_and_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/good.yaml"), manifest("good")).unwrap();
    mkfifo(&dir.path().join("pipe.yaml"));
    let config = config(dir.path(), "manifests/, pipe.yaml", "");
    all_refuse(&config, dir.path(), &[], &["pipe.yaml", "a FIFO"]).await;
}

#[tokio::test]
async fn a_file_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    // Sparse: it costs no disk, and would cost its size in memory only if it were read.
    let big = std::fs::File::create(dir.path().join("manifests/big.yaml")).unwrap();
    big.set_len(64 * 1024 * 1024 + 1).unwrap();
    drop(big);
    let config = config(dir.path(), "manifests/", "");
    all_refuse(
        &config,
        dir.path(),
        &[],
        &[
            "big.yaml",
            "too large",
            "67108864",
            "limits.manifest_file_max_bytes",
        ],
    )
    .await;
    // The limit is the config's.
    std::fs::remove_file(dir.path().join("manifests/big.yaml")).unwrap();
    std::fs::write(dir.path().join("manifests/a.yaml"), manifest("a")).unwrap();
    let config = self::config(
        dir.path(),
        "manifests/",
        "limits:\n  manifest_file_max_bytes: 1024\n",
    );
    let ok = harness::binary(&config).arg("validate").output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    std::fs::write(
        dir.path().join("manifests/a.yaml"),
        format!("{}{}", manifest("a"), "# padding\n".repeat(120)),
    )
    .unwrap();
    all_refuse(&config, dir.path(), &[], &["a.yaml", "at most 1024 bytes"]).await;
}

#[tokio::test]
async fn a_running_daemon_refuses_a_fifo_in_its_folder_or_added_by_sighup_and_still_stops_on_sigterm()
 {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let config = &h.config_path;
    std::fs::write(
        config,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\nmetrics:\n  listen: null\nlog:\n  format: json\n",
            h.fake.base_url()
        ),
    )
    .unwrap();
    let mut daemon = Run::spawn(harness::binary(config), h.dir.path(), "daemon");
    let group = harness::group_id(0);
    let created = lazy(|| format!("the first create\n--- stderr\n{}", daemon.output().1));
    eventually(created, DEADLINE, async || {
        (h.fake.connections(&group).len() == 1).then_some(())
    })
    .await;

    // Dropped into the watched folder: the next pass refuses it by name.
    mkfifo(&h.dir.path().join("manifests/pipe.yaml"));
    daemon.wait_stderr(&["pipe.yaml", "FIFO"]).await;

    // Named by a reloaded config: the same, and the reload does not wedge the daemon.
    mkfifo(&h.dir.path().join("named.yaml"));
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace(
            "manifests: [manifests/]",
            "manifests: [manifests/, named.yaml]",
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_stderr(&["named.yaml", "FIFO"]).await;

    daemon.signal("TERM");
    let status = daemon.exit().await;
    assert_eq!(status.code(), Some(0), "{}", daemon.output().1);
    assert_eq!(h.fake.connections(&group).len(), 1);
}
