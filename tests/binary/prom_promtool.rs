//! The exposition, the alert rules and their unit tests pass promtool. Fails, not skips, without
//! promtool (Debian package `prometheus`): CI installs it.

use std::io::Write;
use std::process::{Command, Stdio};

use atlas_linkd::metrics::{Metrics, link_status, outcome, pass_result};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/prometheus");

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (Debian package `prometheus`)");
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every metric with at least one sample, so promtool sees every family as it appears in production.
fn touched() -> Metrics {
    let m = Metrics::new();
    for o in [outcome::SUCCESS, outcome::CONFLICT, outcome::FAILURE] {
        m.creates_total.with_label_values(&[o]).inc();
    }
    m.adoptions_total.inc();
    for (op, st) in [("create", "200"), ("list", "429"), ("create", "timeout")] {
        m.api_requests_total.with_label_values(&[op, st]).inc();
        m.api_request_duration_seconds
            .with_label_values(&[op])
            .observe(0.3);
    }
    m.api_retries_total
        .with_label_values(&["rate_limited"])
        .inc();
    m.rate_limited_total.inc();
    for (i, s) in link_status::ALL.iter().enumerate() {
        m.links.with_label_values(&[s]).set(i as i64);
    }
    m.set_remote_states([("DONE", 3), ("FAILED", 1)]);
    for r in pass_result::ALL {
        m.reconcile_passes_total.with_label_values(&[r]).inc();
    }
    m.reconcile_duration_seconds.observe(2.0);
    m.last_converged_timestamp_seconds.set(1.7e9);
    m.manifest_errors.set(1);
    m.duplicate_connections
        .with_label_values(&["32b6e34b3d91647abb20e7b8"])
        .set(1);
    m.unmanaged_links
        .with_label_values(&["32b6e34b3d91647abb20e7b8"])
        .set(2);
    m
}

#[test]
fn exposition_passes_promtool_check_metrics_without_complaint() {
    let text = touched().render();
    let (ok, out) = promtool(&["check", "metrics"], Some(&text));
    assert!(
        ok && out.trim().is_empty(),
        "promtool check metrics:\n{out}"
    );
}

#[test]
fn alert_rules_are_valid() {
    let (ok, out) = promtool(&["check", "rules", "alerts.yml"], None);
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn alert_rule_unit_tests_pass() {
    let (ok, out) = promtool(&["test", "rules", "alerts_test.yml"], None);
    assert!(ok, "promtool test rules:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn scrape_config_is_valid() {
    let (ok, out) = promtool(
        &["check", "config", "--syntax-only", "prometheus.yml"],
        None,
    );
    assert!(ok, "promtool check config:\n{out}");
}

#[test]
fn alerts_use_only_our_metric_names() {
    let rules = std::fs::read_to_string(format!("{DIR}/alerts.yml")).unwrap();
    let text = touched().render();
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if word.starts_with("atlas_linkd_") {
            assert!(
                text.contains(&format!("# TYPE {word} ")),
                "alerts.yml uses {word}, which src/metrics.rs does not export"
            );
        }
    }
}

#[test]
fn grafana_dashboard_is_valid_json_over_our_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/grafana/atlas-linkd.json"
    );
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["type"] == "datasource"));
    let panels = dash["panels"].as_array().unwrap();
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect();
    let families = touched().render();
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(base) = word.strip_prefix("atlas_linkd_") {
                let base = base
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(
                    families.contains(&format!("# TYPE atlas_linkd_{base} ")),
                    "dashboard uses {word}, not exported"
                );
            }
        }
    }
    // Every panel query parses: promtool checks them as recording rules, Grafana's variables filled in.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let concrete = e
            .replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(&concrete).unwrap()
        ));
    }
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    let (ok, out) = promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert!(ok, "a dashboard query does not parse:\n{out}");

    for needed in [
        "atlas_linkd_creates_total",
        "atlas_linkd_api_requests_total",
        "atlas_linkd_api_request_duration_seconds_bucket",
        "atlas_linkd_rate_limited_total",
        "atlas_linkd_links",
        "atlas_linkd_remote_links",
        "atlas_linkd_reconcile_duration_seconds",
        "atlas_linkd_last_converged_timestamp_seconds",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(needed)),
            "no panel over {needed}"
        );
    }
}
