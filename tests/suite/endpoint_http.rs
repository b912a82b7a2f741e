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

/// Connects and waits for the server to close the connection; what it read first, if anything.
async fn read_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    all
}

async fn start_limited(
    metrics: Metrics,
    readiness: Readiness,
    max_connections: usize,
    header_read_timeout: Duration,
) -> (SocketAddr, CancellationToken) {
    let ep = endpoint::bind("127.0.0.1:0".parse().unwrap(), metrics, readiness)
        .await
        .unwrap()
        .with_limits(max_connections, header_read_timeout);
    assert_eq!(ep.max_connections(), max_connections);
    let addr = ep.addr;
    let token = CancellationToken::new();
    tokio::spawn(ep.serve(token.clone()));
    (addr, token)
}

#[tokio::test]
async fn a_silent_or_idle_connection_is_closed_after_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let (addr, token) = start_limited(
        Metrics::new(),
        Readiness::default(),
        8,
        Duration::from_millis(300),
    )
    .await;
    // Says nothing at all.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());

    // Half a request head, then nothing (slowloris).
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut slow).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // One answered request on a keep-alive connection, then idle: closed after the answer.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut idle).await).into_owned();
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(got.ends_with("ok\n"), "{got}");
    token.cancel();
}

#[tokio::test]
async fn past_the_cap_the_oldest_idle_connection_makes_room_for_a_scrape() {
    let (addr, token) = start_limited(
        Metrics::new(),
        Readiness::default(),
        4,
        Duration::from_secs(600),
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..12 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // A scrape is answered although idle clients hold more than the cap (and would for 10 minutes).
    let resp = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The oldest idle connections were closed to make room: the server holds at most the cap.
    for stream in idle.iter_mut().take(8) {
        assert!(read_until_closed(stream).await.is_empty());
    }
    token.cancel();
}

#[tokio::test]
async fn readyz_says_atlas_refuses_the_credentials_until_a_call_succeeds_and_lists_pauses() {
    use atlas_linkd::atlas::Operation;
    let metrics = Metrics::new();
    let readiness = Readiness::default();
    readiness.set_ready(true, "");
    let (addr, token, _handle) = start(metrics.clone(), readiness).await;
    let c = client();
    let readyz = async || {
        let r = c.get(format!("http://{addr}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(readyz().await, (200, "ready\n".to_owned()));

    metrics.observe_answer(Operation::Token, "401");
    let (status, body) = readyz().await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Atlas refuses the credentials"), "{body}");
    assert!(body.contains("MONGODB_ATLAS_CLIENT_ID"), "{body}");
    // A token is not proof: calls made with it may still be refused.
    metrics.observe_answer(Operation::Token, "200");
    assert_eq!(readyz().await.0, 503);
    metrics.observe_answer(Operation::List, "200");
    assert_eq!(readyz().await, (200, "ready\n".to_owned()));

    let until = tokio::time::Instant::now() + Duration::from_secs(600);
    assert!(metrics.note_pause("32b6e34b3d91647abb20e7b8", until, 4_102_444_800));
    let (status, body) = readyz().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "ready\npaused: project 32b6e34b3d91647abb20e7b8 until 2100-01-01T00:00:00Z (Atlas answered 429 Too Many Requests)\n"
    );
    assert!(
        metrics
            .render()
            .contains("\natlas_linkd_paused_projects 1\n")
    );
    token.cancel();
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_connection_that_sent_nothing() {
    let ep = endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        Metrics::new(),
        Readiness::default(),
    )
    .await
    .unwrap()
    .with_limits(8, Duration::from_secs(600));
    let addr = ep.addr;
    let token = CancellationToken::new();
    let handle = tokio::spawn(ep.serve(token.clone()));
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Served (so the endpoint holds it) before the shutdown starts.
    let resp = client()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("serve returns without waiting out the header-read timeout")
        .unwrap()
        .unwrap();
    assert!(read_until_closed(&mut silent).await.is_empty());
}
