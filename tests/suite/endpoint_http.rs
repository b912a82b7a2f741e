//! The HTTP endpoint over a real socket on 127.0.0.1:0: status codes, bodies, content types, shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use atlas_linkd::endpoint::{self, METRICS_CONTENT_TYPE, Readiness};
use atlas_linkd::metrics::{Metrics, outcome};
use tokio_util::sync::CancellationToken;

async fn start(
    metrics: Metrics,
    readiness: Readiness,
) -> (
    SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), endpoint::EndpointError>>,
) {
    let ep = endpoint::bind("127.0.0.1:0".parse().unwrap(), metrics, readiness)
        .await
        .unwrap();
    let addr = ep.addr;
    assert_ne!(addr.port(), 0);
    let token = CancellationToken::new();
    let handle = tokio::spawn(ep.serve(token.clone()));
    (addr, token, handle)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test]
async fn metrics_are_served_in_text_format() {
    let metrics = Metrics::new();
    metrics
        .creates_total
        .with_label_values(&[outcome::CONFLICT])
        .inc_by(3);
    let (addr, token, handle) = start(metrics, Readiness::default()).await;

    let resp = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        METRICS_CONTENT_TYPE
    );
    let body = resp.text().await.unwrap();
    assert!(
        body.contains("atlas_linkd_creates_total{outcome=\"conflict\"} 3"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE atlas_linkd_build_info gauge"),
        "{body}"
    );

    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("serve returns after cancellation")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn healthz_and_readyz_follow_readiness() {
    let readiness = Readiness::default();
    let (addr, token, handle) = start(Metrics::new(), readiness.clone()).await;
    let c = client();

    let health = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap().trim(), "ok");

    let r = c.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("config not loaded"), "{body}");

    readiness.set_ready(true, "pass converged");
    let r = c.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    readiness.set_ready(false, "last pass failed:\nledger locked");
    let r = c.get(format!("http://{addr}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert_eq!(body, "not ready: last pass failed: ledger locked\n");
    assert!(!readiness.is_ready());

    let missing = c.get(format!("http://{addr}/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    token.cancel();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn binding_a_busy_port_names_the_address() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = endpoint::bind(addr, Metrics::new(), Readiness::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert!(msg.contains("metrics.listen"), "{msg}");
    assert!(std::error::Error::source(&err).is_some());
}
