//! The real binary's offline commands: `validate` on the whole invalid corpus and the examples, `plan`
//! (offline and against the fake), and `ledger`.

use crate::support::harness::{self, harness};
use fake_atlas::FakeConfig;
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with a clean environment (and test credentials, which offline commands ignore).
fn run(args: &[&str], config: &Path) -> Output {
    harness::binary(config).args(args).output().unwrap()
}

/// The keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn config_for(dir: &Path, manifests: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "manifests: [{}]\nledger: ledger.db\nmetrics:\n  listen: null\n",
            manifests.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn validate_refuses_every_invalid_manifest_with_exit_2_naming_file_field_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root().join("tests/data/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "the corpus has only {} files",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap();
        let parts: Vec<&str> = expect.split(" | ").collect();
        let (path, link) = (parts[0], parts[1]);
        let out = run(&["validate"], &config_for(dir.path(), &file));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{} was accepted: {stderr}",
            file.display()
        );
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            stderr.contains(name.as_ref()),
            "{name}: the file is not named: {stderr}"
        );
        assert!(
            stderr.contains(path),
            "{name}: `{path}` is not named: {stderr}"
        );
        if link != "-" {
            assert!(
                stderr.contains(&format!("`{link}`")),
                "{name}: link `{link}` is not named: {stderr}"
            );
        }
    }
}

#[test]
fn validate_accepts_the_examples_and_plan_offline_lists_every_create() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path(), &root().join("config/manifests"));
    let out = run(&["validate"], &config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok: 26 links in 5 projects"));

    let out = run(&["plan", "--offline"], &config);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plan: 26 to create"), "{stdout}");

    let out = run(&["plan", "--offline", "--output", "json"], &config);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["counts"]["create"], 26, "{plan}");
    let create = &plan["actions"][0];
    assert_eq!(
        keys(create),
        [
            "action",
            "fingerprint",
            "groupId",
            "name",
            "reason",
            "source",
            "spec"
        ],
        "{create}"
    );
    assert_eq!(create["action"], "create");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_lists_atlas_and_shows_adoptions_and_ledger_shows_the_pass() {
    let h = harness(FakeConfig::default(), 2, 3, "").await;
    let link = h.desired.links().next().unwrap().clone();
    h.fake.insert(
        link.key.group_id.as_str(),
        serde_json::from_str(&link.spec.to_json()).unwrap(),
    );
    let config = h.config_path.clone();

    let out = tokio::task::spawn_blocking(move || run(&["plan"], &config))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("adopt      {}", link.key)),
        "{stdout}"
    );
    assert!(stdout.contains("plan: 5 to create, 1 to adopt"), "{stdout}");
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || run(&["plan", "--output", "json"], &config))
        .await
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let adopt = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "adopt")
        .unwrap_or_else(|| panic!("no adoption: {plan}"));
    assert_eq!(
        keys(adopt),
        [
            "action",
            "atlasId",
            "fingerprint",
            "groupId",
            "name",
            "remoteState",
            "source"
        ],
        "{adopt}"
    );
    assert_eq!(adopt["groupId"], link.key.group_id.as_str());
    assert_eq!(adopt["name"], link.key.name.as_str());
    assert_eq!(
        h.fake.counters().requests_of("create"),
        0,
        "plan sent a create"
    );

    h.pass().await;
    let config = h.config_path.clone();
    let out = tokio::task::spawn_blocking(move || run(&["ledger", "--output", "json"], &config))
        .await
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["atlasId"].is_string()), "{rows:?}");
    let row = rows
        .iter()
        .find(|r| r["groupId"] == link.key.group_id.as_str() && r["name"] == link.key.name.as_str())
        .unwrap_or_else(|| panic!("no row for {}: {rows:?}", link.key));
    assert_eq!(
        keys(row),
        [
            "atlasId",
            "attempts",
            "createdUnix",
            "fingerprint",
            "groupId",
            "lastError",
            "name",
            "nextAttemptUnix",
            "outputs",
            "phase",
            "remoteError",
            "remoteState",
            "sentUnix",
            "spec",
            "undeclaredSinceUnix",
            "updatedUnix"
        ],
        "{row}"
    );
    assert_eq!(row["phase"], "adopted");
    // The recorded spec is the object `plan` shows for a create, not a string of JSON.
    assert_eq!(
        row["spec"],
        serde_json::from_str::<serde_json::Value>(&link.spec.to_json()).unwrap(),
        "{row}"
    );
}
