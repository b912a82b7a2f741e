//! A real Prometheus server (the `prometheus` binary) scrapes an in-process endpoint on 127.0.0.1 and
//! our series shows up in its query API. Fails, not skips, without the binary (Debian package `prometheus`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atlas_linkd::endpoint::{self, Readiness};
use atlas_linkd::metrics::{Metrics, outcome};
use tokio_util::sync::CancellationToken;

/// Kills the server when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    // Prometheus takes its listen address on the command line, so it needs a port number up front.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_our_endpoint() {
    let metrics = Metrics::new();
    metrics
        .creates_total
        .with_label_values(&[outcome::SUCCESS])
        .inc_by(7);
    let ep = endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        metrics,
        Readiness::default(),
    )
    .await
    .unwrap();
    let target = ep.addr;
    let stop = CancellationToken::new();
    let serving = tokio::spawn(ep.serve(stop.clone()));

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
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
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
        {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no atlas_linkd_creates_total in Prometheus within 60 s; its log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(found["metric"]["job"], "atlas-linkd");
    assert_eq!(found["metric"]["instance"], target.to_string());
    assert_eq!(found["value"][1], "7");

    drop(server);
    stop.cancel();
    serving.await.unwrap().unwrap();
}
