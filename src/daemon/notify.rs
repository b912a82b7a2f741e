//! systemd's notify protocol (`sd_notify(3)`): readiness, reloads, status lines and the watchdog.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::DaemonError;

/// Speaks systemd's notify protocol (`sd_notify(3)`). Without a socket, every call is a no-op, so the
/// daemon runs the same way outside systemd.
///
/// The datagram socket it sends from is opened once, when the notifier is made, and reused: a process
/// that has run out of file descriptors (idle connections from other local users, say) can still tell
/// systemd it is alive, where opening a socket per message would fail and let the watchdog kill it.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<OsString>,
    /// The sending socket, opened at start-up; `None` only if that failed, and then each message opens
    /// its own, as before.
    sender: Option<Arc<UnixDatagram>>,
    watchdog_usec: Option<u64>,
}

impl Notifier {
    /// A notifier for an explicit socket (a path, or `@name` for the abstract namespace) and
    /// watchdog timeout, as systemd would pass them in `NOTIFY_SOCKET` and `WATCHDOG_USEC`.
    pub fn new(socket: Option<impl Into<OsString>>, watchdog_usec: Option<u64>) -> Notifier {
        let socket: Option<OsString> = socket.map(Into::into).filter(|s| !s.is_empty());
        let sender = socket.as_ref().and_then(|_| match open_sender() {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a socket for sd_notify now; each message will open its own");
                None
            }
        });
        Notifier {
            socket,
            sender,
            watchdog_usec: watchdog_usec.filter(|&u| u > 0),
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` (the watchdog counts only when it is
    /// meant for this process).
    pub(crate) fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let pid_ok = match std::env::var("WATCHDOG_PID") {
            Ok(p) => p.trim().parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog_usec = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|_| pid_ok);
        Notifier::new(socket, watchdog_usec)
    }

    /// Whether a service manager listens.
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the watchdog timeout, as `sd_watchdog_enabled(3)` advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_usec.map(|u| Duration::from_micros(u / 2))
    }

    pub fn ready(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Ready])
    }

    /// `RELOADING=1` with `MONOTONIC_USEC`, which systemd ≥ 253 requires for `Type=notify-reload` and
    /// uses to order the reload against the following `READY=1`.
    pub fn reloading(&self) -> Result<(), DaemonError> {
        if !self.is_enabled() {
            return Ok(());
        }
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Stopping])
    }

    /// A one-line status for `systemctl status`; line breaks would end the field, so they are flattened.
    pub fn status(&self, status: &str) -> Result<(), DaemonError> {
        let line = status.replace(['\r', '\n'], " ");
        self.send(&[NotifyState::Status(&line)])
    }

    pub fn watchdog(&self) -> Result<(), DaemonError> {
        self.send(&[NotifyState::Watchdog])
    }

    fn send(&self, states: &[NotifyState<'_>]) -> Result<(), DaemonError> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let message: String = states.iter().map(|s| format!("{s}\n")).collect();
        let sent = match &self.sender {
            Some(sender) => send_datagram(sender, socket, message.as_bytes()),
            None => open_sender().and_then(|s| send_datagram(&s, socket, message.as_bytes())),
        };
        sent.map_err(|source| DaemonError::Notify {
            socket: socket.clone(),
            message: message.trim_end().replace('\n', " "),
            source,
        })
    }

    /// Sends `WATCHDOG=1` every [`Notifier::watchdog_interval`] until `shutdown`; does nothing when
    /// the watchdog is off. The pings come from the runtime, so a wedged runtime stops them, which is
    /// what the watchdog is for.
    pub fn spawn_watchdog(
        &self,
        shutdown: CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let period = self.watchdog_interval().filter(|d| !d.is_zero())?;
        let this = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = this.watchdog() {
                            tracing::warn!(error = %e, "watchdog ping failed");
                        }
                    }
                }
            }
        }))
    }
}

fn open_sender() -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    // A full receive queue must not stall the async runtime: better to drop one status line.
    sock.set_nonblocking(true)?;
    Ok(sock)
}

fn send_datagram(sock: &UnixDatagram, socket: &OsString, msg: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = socket.as_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg, &addr)?
    } else {
        sock.send_to(msg, Path::new(socket))?
    };
    if sent != msg.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to the notify socket",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifier_without_socket_is_a_no_op() {
        let n = Notifier::new(None::<OsString>, None);
        assert!(!n.is_enabled());
        n.ready().unwrap();
        n.reloading().unwrap();
        n.status("x").unwrap();
        assert_eq!(n.watchdog_interval(), None);
        let n = Notifier::new(None::<OsString>, Some(30_000_000));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(15)));
    }
}
