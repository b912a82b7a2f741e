//! The real binary's lifecycle commands against an in-process fake Atlas: `outputs` (JSON, YAML,
//! env; from the ledger and with `--refresh`), `--once --outputs-file` and `--report-file` (and
//! the targets they refuse), and `export` round-tripped through `validate` and `--once`.

use crate::support::harness::{Harness, binary, harness, once};
use fake_atlas::{FakeAtlas, FakeConfig, FakeOp, Fault, ScriptedFault};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Output;

const KEYS: [&str; 8] = [
    "errorMessage",
    "groupId",
    "id",
    "interfaceEndpointId",
    "interfaceEndpointName",
    "name",
    "providerAccountId",
    "state",
];

async fn run(config: &Path, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::from(binary(config));
    cmd.args(args).kill_on_drop(true);
    cmd.output().await.unwrap()
}

fn explain(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", explain(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", explain(out)))
}

fn sorted_keys(entry: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// The fake's view of connection `id` in `group`.
fn remote(fake: &FakeAtlas, group: &str, id: &str) -> Value {
    fake.connections(group)
        .into_iter()
        .find(|c| c["_id"] == id)
        .unwrap_or_else(|| panic!("no connection {id} in {group}"))
}

async fn converged_once(h: &Harness) {
    let out = once(&h.config_path).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
}

#[tokio::test]
async fn outputs_prints_every_declared_link_with_exactly_its_keys_and_fresh_values_after_refresh() {
    let h = harness(FakeConfig::default(), 2, 2, "").await;
    // Before any pass (no ledger yet): every declared link, nothing known of it.
    let before = json_of(&run(&h.config_path, &["outputs"]).await);
    let before = before.as_array().unwrap();
    assert_eq!(before.len(), 4);
    for entry in before {
        assert_eq!(sorted_keys(entry), KEYS, "{entry}");
        for key in KEYS.iter().filter(|k| !matches!(**k, "groupId" | "name")) {
            assert!(entry[key].is_null(), "{key}: {entry}");
        }
    }
    assert!(
        !h.ledger_path().exists(),
        "outputs without --refresh writes nothing"
    );

    converged_once(&h).await;
    // One connection ends FAILED with Atlas's reason, after the pass has recorded what it saw.
    let group = h.desired.projects.keys().next().unwrap().to_string();
    let failing = h.fake.connections(&group)[0]["_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        h.fake
            .fail(&group, &failing, "Endpoint service rejected the connection")
    );

    let refreshed = json_of(&run(&h.config_path, &["outputs", "--refresh"]).await);
    let refreshed = refreshed.as_array().unwrap();
    assert_eq!(refreshed.len(), 4);
    for entry in refreshed {
        assert_eq!(sorted_keys(entry), KEYS, "{entry}");
        let (g, id) = (
            entry["groupId"].as_str().unwrap(),
            entry["id"].as_str().unwrap(),
        );
        let atlas = remote(&h.fake, g, id);
        for (ours, theirs) in [
            ("state", "state"),
            ("interfaceEndpointId", "interfaceEndpointId"),
            ("providerAccountId", "providerAccountId"),
            ("errorMessage", "errorMessage"),
        ] {
            let expected = atlas.get(theirs).cloned().unwrap_or(Value::Null);
            assert_eq!(entry[ours], expected, "{ours} of {entry} vs {atlas}");
        }
        // AWS names no endpoint: null, not absent.
        assert!(entry["interfaceEndpointName"].is_null());
    }
    let failed: Vec<&Value> = refreshed
        .iter()
        .filter(|e| e["id"] == failing.as_str())
        .collect();
    assert_eq!(failed[0]["state"], "FAILED");
    assert_eq!(
        failed[0]["errorMessage"],
        "Endpoint service rejected the connection"
    );
    let done = refreshed
        .iter()
        .find(|e| e["id"] != failing.as_str())
        .unwrap();
    assert_eq!(done["state"], "DONE");
    assert!(
        done["interfaceEndpointId"]
            .as_str()
            .unwrap()
            .starts_with("vpce-")
    );

    // What --refresh recorded is in the ledger: the plain command shows it without a call.
    let calls = h.fake.counters().total_requests();
    let again = json_of(&run(&h.config_path, &["outputs"]).await);
    assert_eq!(again.as_array().unwrap(), refreshed);
    assert_eq!(h.fake.counters().total_requests(), calls);

    // YAML is the same data.
    let out = run(&h.config_path, &["outputs", "--output", "yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let yaml: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(yaml.as_array().unwrap(), refreshed);

    // env: a shell reads each value back as it is.
    let out = run(&h.config_path, &["outputs", "--output", "env"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let env_file = h.dir.path().join("links.env");
    std::fs::write(&env_file, &out.stdout).unwrap();
    let first = &refreshed[0];
    let prefix = format!(
        "ATLAS_LINK_{}_{}",
        first["groupId"].as_str().unwrap().to_ascii_uppercase(),
        first["name"]
            .as_str()
            .unwrap()
            .to_ascii_uppercase()
            .replace('-', "_")
    );
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". '{}' && printf '%s|%s|%s' \"${prefix}_ID\" \"${prefix}_STATE\" \"${prefix}_INTERFACE_ENDPOINT_NAME\"",
            env_file.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shell.stdout),
        format!(
            "{}|{}|",
            first["id"].as_str().unwrap(),
            first["state"].as_str().unwrap()
        ),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn outputs_refresh_that_cannot_list_a_project_exits_1_and_shows_the_ledger() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    converged_once(&h).await;
    let lists = h.fake.counters().requests_with("list", 200);
    h.fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: None,
        nth: lists + 1,
        fault: Fault::ServerError,
    });
    let out = run(&h.config_path, &["outputs", "--refresh"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not list project"), "{stderr}");
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert!(entries[0]["id"].is_string(), "{entries}");
}

#[tokio::test]
async fn outputs_reads_beside_a_ledger_holder_but_refresh_is_refused_with_exit_2() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    converged_once(&h).await;
    // This test process holds the ledger, as a running daemon would.
    let held = atlas_linkd::ledger::Ledger::open(&h.ledger_path()).unwrap();
    let calls = h.fake.counters().total_requests();
    let out = run(&h.config_path, &["outputs", "--refresh"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("holds the ledger") && stderr.contains("without --refresh"),
        "{stderr}"
    );
    assert_eq!(
        h.fake.counters().total_requests(),
        calls,
        "no call was made"
    );
    let entries = json_of(&run(&h.config_path, &["outputs"]).await);
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert!(entries[0]["id"].is_string(), "{entries}");
    drop(held);
}

#[tokio::test]
async fn once_writes_the_outputs_and_the_report_as_json_files() {
    let h = harness(FakeConfig::default(), 2, 3, "").await;
    let dir = h.dir.path().join("out");
    std::fs::create_dir_all(&dir).unwrap();
    let (outputs, report) = (dir.join("outputs.json"), dir.join("report.json"));
    // An existing regular file is replaced.
    std::fs::write(&report, "old").unwrap();
    let out = once(&h.config_path)
        .arg("--outputs-file")
        .arg(&outputs)
        .arg("--report-file")
        .arg(&report)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));

    let entries: Value = serde_json::from_str(&std::fs::read_to_string(&outputs).unwrap()).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 6);
    for entry in entries {
        assert_eq!(sorted_keys(entry), KEYS, "{entry}");
        let g = entry["groupId"].as_str().unwrap();
        // The id is Atlas's, of the connection made for this link.
        let atlas = remote(&h.fake, g, entry["id"].as_str().unwrap());
        let link = h
            .desired
            .links()
            .find(|l| l.key.group_id.as_str() == g && l.key.name == entry["name"])
            .unwrap();
        assert_eq!(
            atlas["serviceEndpointId"],
            link.spec.service_endpoint_id.as_deref().unwrap()
        );
    }
    // The same entries `outputs` prints afterwards.
    let printed = json_of(&run(&h.config_path, &["outputs"]).await);
    assert_eq!(printed.as_array().unwrap(), entries);

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["desired"], 6);
    assert_eq!(report["created"].as_array().unwrap().len(), 6);
    assert_eq!(sorted_keys(&report["created"][0]), ["groupId", "name"]);
    assert_eq!(report["failed"], json!([]));
    assert_eq!(report["interrupted"], false);
    assert!(report["apiCalls"].as_u64().unwrap() >= 8, "{report}");
    // Nothing but the two files in the folder: no temporary file left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&outputs).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
}

#[tokio::test]
async fn once_refuses_a_link_a_folder_or_a_missing_folder_as_its_files_before_any_call() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let secret = h.dir.path().join("precious.txt");
    std::fs::write(&secret, "keep me").unwrap();
    let link = h.dir.path().join("outputs.json");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let folder = h.dir.path().join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let missing = h.dir.path().join("no-such-folder").join("report.json");
    for (flag, path, says) in [
        ("--outputs-file", &link, "symbolic link"),
        ("--report-file", &link, "symbolic link"),
        ("--report-file", &folder, "not a regular file"),
        ("--outputs-file", &missing, "does not exist"),
    ] {
        let out = once(&h.config_path)
            .arg(flag)
            .arg(path)
            .output()
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {path:?}: {}",
            explain(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag) && stderr.contains(says), "{stderr}");
    }
    assert_eq!(
        h.fake.counters().total_requests(),
        0,
        "nothing was attempted"
    );
    assert!(!h.ledger_path().exists());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "keep me");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // Both flags need --once.
    let out = run(&h.config_path, &["--outputs-file", "x.json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
}

const G1: &str = "5e6f7a8b9c0d1e2f3a4b5c6d";
const G2: &str = "6f7a8b9c0d1e2f3a4b5c6d7e";

/// A fake holding connections made before atlas-linkd, of many kinds, in two projects, and a config
/// whose manifest folder is empty.
async fn pre_existing() -> (FakeAtlas, tempfile::TempDir, std::path::PathBuf) {
    let fake = FakeAtlas::start(FakeConfig::default()).await.unwrap();
    for body in [
        json!({"provider": "AWS", "vendor": "MSK",
            "arn": "arn:aws:kafka:us-east-1:123456789012:cluster/orders/5a6b7c8d-1111", "authenticationScheme": "IAM"}),
        json!({"provider": "aws", "vendor": "msk",
            "arn": "arn:aws:kafka:eu-west-1:123456789012:cluster/refunds/9f8e"}),
        // Confluent Enterprise: no domain yet, pending.
        json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0a1b2c3d4e5f60718", "dnsSubDomain": []}),
        json!({"provider": "AWS", "vendor": "CONFLUENT", "region": "US_EAST_1",
            "serviceEndpointId": "com.amazonaws.vpce.us-east-1.vpce-svc-0fedcba987654321",
            "dnsDomain": "Abc123.US-East-1.aws.confluent.cloud", "dnsSubDomain": ["use1-az4", "use1-az1"]}),
        json!({"provider": "AWS", "vendor": "S3", "region": "us-east-1",
            "serviceEndpointId": "com.amazonaws.us-east-1.s3"}),
    ] {
        fake.insert(G1, body);
    }
    for body in [
        json!({"provider": "AZURE", "vendor": "EVENTHUB", "region": "eastus2",
            "dnsDomain": "clicks-ns.servicebus.windows.net",
            "serviceEndpointId": "/subscriptions/0a1b/resourceGroups/a/providers/Microsoft.EventHub/namespaces/clicks-ns"}),
        json!({"provider": "GCP", "vendor": "CONFLUENT", "region": "us-central1",
            "dnsDomain": "us-central1.gcp9x8y7.confluent.cloud",
            "gcpServiceAttachmentUris": ["projects/cc/regions/us-central1/serviceAttachments/s-b",
                                         "projects/cc/regions/us-central1/serviceAttachments/s-a",
                                         "projects/cc/regions/us-central1/serviceAttachments/s-c"]}),
        json!({"provider": "GCP", "region": "us-east4", "gcpConnectionIds": ["1234567890123456789"]}),
        json!({"provider": "GCP", "vendor": "PUBSUB", "region": "us-east1"}),
    ] {
        fake.insert(G2, body);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "atlas:\n  base_url: {}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\nmetrics:\n  listen: null\n",
            fake.base_url()
        ),
    )
    .unwrap();
    (fake, dir, config)
}

#[tokio::test]
async fn export_then_validate_then_once_adopts_every_connection_and_creates_none() {
    let (fake, dir, config) = pre_existing().await;
    let out = run(&config, &["export", "--project", G1, "--project", G2]).await;
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.starts_with("# "), "a comment header first:\n{text}");
    assert!(
        !text.contains("state"),
        "read-only fields stay out:\n{text}"
    );
    assert!(!text.contains("_id"), "{text}");
    // Deterministic: a second export prints the same bytes.
    let again = run(&config, &["export", "--project", G1, "--project", G2]).await;
    assert_eq!(again.stdout, out.stdout);
    std::fs::write(dir.path().join("manifests").join("exported.yaml"), &text).unwrap();

    let validate = run(&config, &["validate"]).await;
    assert_eq!(
        validate.status.code(),
        Some(0),
        "{}\n{text}",
        explain(&validate)
    );

    let creates_before = fake.counters().requests.get("create").cloned();
    let out = once(&config).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", explain(&out));
    assert_eq!(
        fake.counters().requests.get("create").cloned(),
        creates_before,
        "no create was sent"
    );
    assert_eq!(fake.counters().creates_committed, 0);
    assert_eq!(fake.connections(G1).len(), 5);
    assert_eq!(fake.connections(G2).len(), 4);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("9 adopted"), "{stdout}");

    // Every connection is in the ledger now, each under one exported name.
    let ledger = run(&config, &["ledger", "--output", "json"]).await;
    let rows: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let mut ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["phase"], "adopted", "{r}");
            r["atlasId"].as_str().unwrap()
        })
        .collect();
    ids.sort_unstable();
    let mut expected: Vec<String> = [G1, G2]
        .iter()
        .flat_map(|g| fake.connections(g))
        .map(|c| c["_id"].as_str().unwrap().to_owned())
        .collect();
    expected.sort_unstable();
    assert_eq!(ids, expected);
    // The names follow the documented rule.
    assert!(text.contains("name: msk-aws-us-east-1-"), "{text}");
    assert!(text.contains("name: confluent-gcp-us-central1-"), "{text}");
    assert!(text.contains("name: generic-gcp-us-east4-"), "{text}");
}

#[tokio::test]
async fn export_prints_nothing_and_exits_1_when_a_project_cannot_be_listed() {
    let (fake, _dir, config) = pre_existing().await;
    fake.script(ScriptedFault {
        operation: FakeOp::List,
        group_id: Some(G2.into()),
        nth: 1,
        fault: Fault::ServerError,
    });
    let out = run(&config, &["export", "--project", G1, "--project", G2]).await;
    assert_eq!(out.status.code(), Some(1), "{}", explain(&out));
    assert!(out.stdout.is_empty(), "{}", explain(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains(G2));

    let out = run(&config, &["export", "--project", "not-a-project"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", explain(&out));
    let out = run(&config, &["export"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "--project is required: {}",
        explain(&out)
    );
}
