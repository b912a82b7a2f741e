//! A real Prometheus server (the `prometheus` binary) scrapes the real daemon on 127.0.0.1 and our
//! series shows up in its query API. Fails, not skips, without the binary (Debian package `prometheus`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::harness::{self, free_port, harness};
use crate::support::{eventually, lazy};
use fake_atlas::FakeConfig;

/// Kills the server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_daemon() {
    // The daemon: 2 projects × 4 links against the fake, metrics on a loopback port.
    let h = harness(FakeConfig::default(), 2, 4, "").await;
    let port = free_port();
    let config = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("listen: null", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&h.config_path, config).unwrap();
    let daemon = harness::binary(&h.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = KillOnDrop(daemon);
    let target = format!("127.0.0.1:{port}");

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: atlas-linkd\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the prometheus binary must be installed (Debian package `prometheus`)");
    let mut server = KillOnDrop(server);

    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("http://{web}/api/v1/query");
    let prometheus_log = dir.path().join("prometheus.log");
    let what = lazy(|| {
        format!(
            "atlas_linkd_creates_total in Prometheus; its log:\n{}",
            std::fs::read_to_string(&prometheus_log).unwrap_or_default()
        )
    });
    let found = eventually(what, Duration::from_secs(60), async || {
        if let Ok(Some(status)) = server.0.try_wait() {
            let log = std::fs::read_to_string(&prometheus_log).unwrap_or_default();
            panic!("prometheus exited early ({status}):\n{log}");
        }
        let resp = client
            .get(&url)
            .query(&[("query", "atlas_linkd_creates_total{outcome=\"success\"}")])
            .send()
            .await;
        if let Ok(resp) = resp
            && let Ok(body) = resp.json::<serde_json::Value>().await
            && let Some(first) = body["data"]["result"].as_array().and_then(|r| r.first())
            // The first scrapes may come before the start-up pass has finished.
            && first["value"][1] == "8"
        {
            return Some(first.clone());
        }
        None
    })
    .await;
    assert_eq!(found["metric"]["job"], "atlas-linkd");
    assert_eq!(found["metric"]["instance"], target);
    assert_eq!(found["value"][1], "8", "{found}");
    drop(server);
}
