//! The sd_notify protocol against a Unix datagram socket standing in for systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use atlas_linkd::daemon::Notifier;
use tokio_util::sync::CancellationToken;

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (dir, path, sock)
}

#[test]
fn each_call_sends_its_datagram() {
    let (_dir, path, sock) = listener();
    let n = Notifier::new(Some(path.as_os_str()), None);
    assert!(n.is_enabled());

    n.ready().unwrap();
    assert_eq!(recv(&sock), "READY=1\n");

    n.reloading().unwrap();
    let msg = recv(&sock);
    let lines: Vec<&str> = msg.lines().collect();
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u64 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .expect("MONOTONIC_USEC follows RELOADING")
        .parse()
        .unwrap();
    assert!(usec > 0);

    n.status("pass 3: 120/120 converged\nsecond line").unwrap();
    assert_eq!(
        recv(&sock),
        "STATUS=pass 3: 120/120 converged second line\n"
    );

    n.watchdog().unwrap();
    assert_eq!(recv(&sock), "WATCHDOG=1\n");

    n.stopping().unwrap();
    assert_eq!(recv(&sock), "STOPPING=1\n");
}

#[test]
fn abstract_socket_names_work() {
    let name = format!("atlas-linkd-test-{}", std::process::id());
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = Notifier::new(Some(format!("@{name}")), None);
    n.ready().unwrap();
    assert_eq!(recv(&sock), "READY=1\n");
}

#[test]
fn a_missing_socket_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let n = Notifier::new(Some(path.as_os_str()), None);
    let err = n.ready().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("absent.sock"), "{msg}");
    assert!(msg.contains("READY=1"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn watchdog_pings_at_half_the_timeout() {
    let (_dir, path, sock) = listener();
    sock.set_nonblocking(true).unwrap();
    let sock = tokio::net::UnixDatagram::from_std(sock).unwrap();
    // WatchdogSec=20s: pings every 10 s.
    let n = Notifier::new(Some(path.as_os_str()), Some(20_000_000));
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(10)));
    let stop = CancellationToken::new();
    let h = n.spawn_watchdog(stop.clone()).expect("watchdog enabled");

    let mut buf = [0u8; 64];
    let start = tokio::time::Instant::now();
    for _ in 0..3 {
        let len = tokio::time::timeout(Duration::from_secs(11), sock.recv(&mut buf))
            .await
            .expect("a ping within the interval")
            .unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1\n");
    }
    // Immediate first ping, then two periods.
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_secs(20) && elapsed < Duration::from_secs(21),
        "{elapsed:?}"
    );
    stop.cancel();
    h.await.unwrap();

    let off = Notifier::new(Some(path.as_os_str()), None);
    assert!(off.spawn_watchdog(CancellationToken::new()).is_none());
}
