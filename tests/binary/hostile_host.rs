//! The real binary on a shared, hostile host (issue 12): a local user holding idle connections to
//! `/metrics` under the default 1,024 open files, a huge `Retry-After`, credentials Atlas refuses, and a
//! metrics address beyond loopback. Atlas is the in-process fake, behind a proxy of ours that answers
//! what the fake will not (a `Retry-After` date, a 401 to every call) when told to.

use crate::support::daemon::{Daemon, NotifySocket};
use crate::support::harness::{self, Harness, free_port, group_id, harness};
use crate::support::{eventually, lazy};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fake_atlas::FakeConfig;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// A proxy in front of the fake: forwards every call, except that the first `limited` listings get a
/// 429 with `retry_after`, and while `refuse` is set every call (token requests included) gets a 401.
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    limited: AtomicUsize,
    retry_after: Mutex<String>,
    refuse: AtomicBool,
}

impl Proxy {
    async fn start(upstream: String) -> (Arc<Proxy>, String) {
        let proxy = Arc::new(Proxy {
            upstream,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            limited: AtomicUsize::new(0),
            retry_after: Mutex::new(String::new()),
            refuse: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (proxy, url)
    }

    fn limit_listings(&self, calls: usize, retry_after: &str) {
        *self.retry_after.lock().unwrap() = retry_after.to_owned();
        self.limited.store(calls, Ordering::SeqCst);
    }
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if p.refuse.load(Ordering::SeqCst) {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            r#"{"error":401,"errorCode":"NOT_ORG_GROUP_CREATOR","detail":"Unauthorized.","reason":"Unauthorized"}"#,
        )
            .into_response();
    }
    let path = parts.uri.path().to_owned();
    if parts.method == axum::http::Method::GET
        && path.ends_with("/privateLinkConnections")
        && p.limited
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        let retry_after = p.retry_after.lock().unwrap().clone();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json".to_owned()),
                ("retry-after", retry_after),
            ],
            r#"{"error":429,"errorCode":"RATE_LIMITED","detail":"Too many requests.","reason":"Too Many Requests"}"#,
        )
            .into_response();
    }
    let body: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let url = format!(
        "{}{}",
        p.upstream,
        parts
            .uri
            .path_and_query()
            .map(|q| q.as_str())
            .unwrap_or("/")
    );
    let mut headers = HeaderMap::new();
    for (k, v) in &parts.headers {
        if k != "host" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let Ok(up) = p
        .http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = up.status();
    let mut out = HeaderMap::new();
    for (k, v) in up.headers() {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            out.insert(k.clone(), v.clone());
        }
    }
    let bytes = up.bytes().await.unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().extend(out);
    resp
}

/// Points the harness's config at `base_url`, with the metrics endpoint on `listen` and `extra`.
fn write_config(h: &Harness, base_url: &str, listen: &str, extra: &str) {
    let retry = if extra.contains("retry:") {
        ""
    } else {
        "retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 1\n"
    };
    std::fs::write(
        &h.config_path,
        format!(
            "atlas:\n  base_url: {base_url}\n  timeout_secs: 5\nmanifests: [manifests/]\nledger: state/ledger.db\n\
             metrics:\n  listen: {listen}\nlog:\n  format: json\n{retry}{extra}"
        ),
    )
    .unwrap();
}

/// A manifest with `links` S3 links in test project `project`.
fn project_yaml(project: usize, links: usize) -> String {
    let mut y = format!(
        "projects:\n  - groupId: {}\n    defaults: {{provider: AWS, vendor: S3, region: us-east-1}}\n    links:\n",
        group_id(project)
    );
    for l in 0..links {
        y.push_str(&format!(
            "      - name: extra-{l}\n        serviceEndpointId: com.amazonaws.vpce.us-east-1.vpce-svc-y{project:03}{l:04}\n"
        ));
    }
    y
}

/// Raises this process's soft limit on open files to its hard limit; returns the new soft limit.
fn raise_own_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    lim.rlim_cur
}

/// Issue 12, case 2: about 1,000 idle connections from any local user took every descriptor of a
/// daemon under the default limit of 1,024: `/metrics` stopped answering, a new manifest was never
/// created, and the watchdog pings stopped. With 1,100 held open, all three go on.
/// The daemon on `h`'s config, its log in `NAME.log`, with `env` added to the test environment;
/// `nofile` sets its soft and hard limit on open files, as a unit without `LimitNOFILE=` would leave
/// them.
fn start(h: &Harness, port: u16, name: &str, env: &[(&str, &str)], nofile: Option<u64>) -> Daemon {
    let mut cmd = harness::binary(&h.config_path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(n) = nofile {
        // SAFETY: `setrlimit` is async-signal-safe, and the closure touches nothing else.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Daemon::spawn(cmd, h.dir.path().join(format!("{name}.log")), port)
}

#[tokio::test]
async fn idle_connections_leave_metrics_creates_and_the_watchdog_working() {
    const IDLE: usize = 1_100;
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let port = free_port();
    write_config(&h, &h.fake.base_url(), &format!("127.0.0.1:{port}"), "");
    let notify = NotifySocket::bind();
    let notify_path = notify.path.to_str().unwrap().to_owned();
    let d = start(
        &h,
        port,
        "idle",
        // WatchdogSec=2s: a ping every second.
        &[
            ("NOTIFY_SOCKET", notify_path.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
        Some(1024),
    );
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;

    assert!(raise_own_nofile() > IDLE as u64 + 100);
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }

    // /metrics answers while they are held open.
    let what = lazy(|| format!("/metrics to answer\n--- log\n{}", d.log()));
    eventually(what, DEADLINE, async || {
        d.get("/metrics").await.filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(d.get("/healthz").await.map(|(s, _)| s), Some(200));

    // A new manifest file is still read and created.
    let pings_before = notify.watchdog_pings();
    std::fs::write(
        h.dir.path().join("manifests").join("extra.yaml"),
        project_yaml(7, 3),
    )
    .unwrap();
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 5.0)
        .await;
    assert_eq!(h.fake.counters().creates_committed, 5);

    // The watchdog keeps pinging.
    let what = lazy(|| {
        format!(
            "two more WATCHDOG=1 after {pings_before}\n--- log\n{}",
            d.log()
        )
    });
    eventually(what, DEADLINE, async || {
        (notify.watchdog_pings() >= pings_before + 2).then_some(())
    })
    .await;
    drop(idle);
    assert!(
        d.log().contains("\"max_connections\":128"),
        "the cap follows the limit of 1,024:\n{}",
        d.log()
    );
}

/// Runs `--once` through the proxy with its first listings answered 429 and `retry_after`; returns
/// the exit status, how long it took and its log.
async fn once_with_retry_after(retry_after: &str) -> (Option<i32>, Duration, String) {
    let h = harness(FakeConfig::default(), 2, 2, "").await;
    let (proxy, url) = Proxy::start(h.fake.base_url()).await;
    proxy.limit_listings(3, retry_after);
    // No reserve: after a 429, our view of the bucket is empty, and waiting for a reserve to refill
    // (7 s for Atlas's 60 tokens) would hide the pause this is about.
    write_config(&h, &url, "null", "rate_limit:\n  reserve: 0\n");
    let started = Instant::now();
    let out = tokio::time::timeout(
        DEADLINE,
        harness::once(&h.config_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    .expect("--once does not hang on a huge Retry-After")
    .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        proxy.limited.load(Ordering::SeqCst),
        0,
        "the 429s were served"
    );
    assert_eq!(h.fake.counters().creates_committed, 4);
    (
        out.status.code(),
        elapsed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 12, case 3: a `Retry-After` of 999,999,999 seconds, or a date in 2099, is capped at
/// `retry.max_backoff_secs` (1 s here): `--once` converges in a few seconds (not 31 years), and logs each pause at warn
/// with the project and its end.
#[tokio::test]
async fn once_caps_a_huge_retry_after_and_logs_each_pause() {
    for retry_after in ["999999999", "Thu, 01 Jan 2099 00:00:00 GMT"] {
        let (code, elapsed, log) = once_with_retry_after(retry_after).await;
        eprintln!("Retry-After {retry_after}: --once took {elapsed:?}");
        assert_eq!(code, Some(0), "Retry-After {retry_after}:\n{log}");
        assert!(
            elapsed < Duration::from_secs(10),
            "Retry-After {retry_after} took {elapsed:?}:\n{log}"
        );
        let pause = log
            .lines()
            .find(|l| l.contains("pausing its calls"))
            .unwrap_or_else(|| panic!("no pause logged:\n{log}"));
        let line: serde_json::Value = serde_json::from_str(pause).unwrap();
        assert_eq!(line["level"], "WARN", "{pause}");
        let group = line["group_id"].as_str().unwrap_or_default();
        assert!(
            [group_id(0), group_id(1)].iter().any(|g| g == group),
            "{pause}"
        );
        let until = line["until"].as_str().unwrap();
        let until = humantime::parse_rfc3339(until).unwrap();
        let now = std::time::SystemTime::now();
        assert!(
            until <= now + Duration::from_secs(5),
            "the end named is the capped one: {pause}"
        );
    }
}

/// Issue 12, case 3, in the daemon: a pause is logged at warn with its groupId and end time, `/readyz`
/// names the paused project and its end, and `atlas_linkd_paused_projects` counts it.
#[tokio::test]
async fn the_daemon_shows_a_paused_project_in_readyz_the_log_and_a_metric() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let (proxy, url) = Proxy::start(h.fake.base_url()).await;
    proxy.limit_listings(1, "999999999");
    let port = free_port();
    // The pause is capped at 120 s: long enough to look at it.
    write_config(
        &h,
        &url,
        &format!("127.0.0.1:{port}"),
        "retry:\n  max_attempts: 8\n  initial_backoff_ms: 20\n  max_backoff_secs: 120\n",
    );
    let d = start(&h, port, "paused", &[], None);
    let group = group_id(0);
    let line = d.wait_log("pausing its calls").await;
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["group_id"], group.as_str());
    let until = line["until"].as_str().unwrap().to_owned();
    let end = humantime::parse_rfc3339(&until).unwrap();
    let now = std::time::SystemTime::now();
    assert!(
        end > now + Duration::from_secs(60) && end <= now + Duration::from_secs(121),
        "{until}"
    );

    let body = d
        .wait_readyz("200 naming the paused project", |s, b| {
            s == 200 && b.contains("paused: project")
        })
        .await;
    assert!(
        body.contains(&format!("paused: project {group} until {until}")),
        "{body}"
    );
    d.wait_metric("atlas_linkd_paused_projects", 1.0).await;
}

/// Issue 12, smaller items: `/readyz` answered 200 while Atlas refused every call. It is not ready,
/// saying why and what to check, while Atlas refuses the credentials, and ready again once calls
/// succeed.
#[tokio::test]
async fn readyz_is_not_ready_while_atlas_refuses_the_credentials() {
    let h = harness(FakeConfig::default(), 1, 2, "").await;
    let (proxy, url) = Proxy::start(h.fake.base_url()).await;
    proxy.refuse.store(true, Ordering::SeqCst);
    let port = free_port();
    write_config(&h, &url, &format!("127.0.0.1:{port}"), "");
    let d = start(&h, port, "refused", &[], None);

    let body = d
        .wait_readyz("503 saying the credentials are refused", |s, b| {
            s == 503 && b.contains("refuses the credentials")
        })
        .await;
    assert!(body.contains("MONGODB_ATLAS_CLIENT_ID"), "{body}");
    assert_eq!(h.fake.counters().creates_committed, 0);

    // Atlas accepts them again; the next pass (here a reload's) succeeds.
    proxy.refuse.store(false, Ordering::SeqCst);
    signal_hup(&d);
    d.wait_readyz("200", |s, _| s == 200).await;
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 2.0)
        .await;
}

fn signal_hup(d: &Daemon) {
    let st = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(d.pid().to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

/// Issue 12, smaller items: a metrics address beyond loopback was accepted without a word. The daemon
/// warns that the endpoint has no authentication, at start-up and on reload. (The test binds loopback
/// only, so it asks for `0.0.0.0` through a reload, which keeps the bound address.)
#[tokio::test]
async fn a_metrics_address_beyond_loopback_is_warned_about_on_reload() {
    let h = harness(FakeConfig::default(), 1, 1, "").await;
    let port = free_port();
    write_config(&h, &h.fake.base_url(), &format!("127.0.0.1:{port}"), "");
    let d = start(&h, port, "exposed", &[], None);
    d.wait_metric("atlas_linkd_creates_total{outcome=\"success\"}", 1.0)
        .await;
    assert!(!d.log().contains("not a loopback address"), "{}", d.log());

    write_config(&h, &h.fake.base_url(), "0.0.0.0:9464", "");
    signal_hup(&d);
    let line = d.wait_log("not a loopback address").await;
    let line: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(line["level"], "WARN");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("0.0.0.0:9464"), "{message}");
    assert!(message.contains("no authentication"), "{message}");
    // Still served where it was bound.
    assert_eq!(d.get("/healthz").await.map(|(s, _)| s), Some(200));
}
