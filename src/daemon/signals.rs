//! Signals: SIGHUP, SIGTERM and SIGINT as what they ask of the daemon (reload, drain, exit now).

use super::DaemonError;

/// What a received signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalEvent {
    /// SIGHUP: reload the config and run a pass.
    Reload,
    /// The first SIGTERM or SIGINT: stop starting calls, drain, exit.
    Shutdown,
    /// A second SIGTERM or SIGINT: the operator insists; exit now.
    ExitNow,
}

/// The signals we handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalKind {
    Hup,
    Term,
    Int,
}

/// The pure part of signal handling: how many terminations were seen decides the answer.
#[derive(Debug, Default, Clone)]
pub(crate) struct SignalState {
    terminations: u32,
}

impl SignalState {
    pub(crate) fn on(&mut self, kind: SignalKind) -> SignalEvent {
        match kind {
            SignalKind::Hup => SignalEvent::Reload,
            SignalKind::Term | SignalKind::Int => {
                self.terminations = self.terminations.saturating_add(1);
                if self.terminations == 1 {
                    SignalEvent::Shutdown
                } else {
                    SignalEvent::ExitNow
                }
            }
        }
    }
}

/// SIGHUP, SIGTERM and SIGINT as [`SignalEvent`]s. Creating it replaces the default actions (so a
/// SIGTERM no longer kills the process outright) for the life of the process.
#[derive(Debug)]
pub(crate) struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    state: SignalState,
}

impl Signals {
    /// Must be called inside a tokio runtime.
    pub(crate) fn new() -> Result<Signals, DaemonError> {
        use tokio::signal::unix::{SignalKind as K, signal};
        let install = |kind: K, name: &'static str| {
            signal(kind).map_err(|source| DaemonError::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            hup: install(K::hangup(), "SIGHUP")?,
            term: install(K::terminate(), "SIGTERM")?,
            int: install(K::interrupt(), "SIGINT")?,
            state: SignalState::default(),
        })
    }

    /// The next signal's meaning. Cancel-safe: usable in `tokio::select!`.
    pub(crate) async fn recv(&mut self) -> SignalEvent {
        let kind = tokio::select! {
            Some(()) = self.hup.recv() => SignalKind::Hup,
            Some(()) = self.term.recv() => SignalKind::Term,
            Some(()) = self.int.recv() => SignalKind::Int,
            // The streams only end if the runtime's signal driver goes away, i.e. at shutdown.
            else => SignalKind::Term,
        };
        self.state.on(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn second_termination_means_exit_now() {
        let mut s = SignalState::default();
        assert_eq!(s.on(SignalKind::Hup), SignalEvent::Reload);
        assert_eq!(s.on(SignalKind::Term), SignalEvent::Shutdown);
        assert_eq!(s.on(SignalKind::Hup), SignalEvent::Reload);
        assert_eq!(s.on(SignalKind::Int), SignalEvent::ExitNow);
        assert_eq!(s.on(SignalKind::Term), SignalEvent::ExitNow);
    }

    // The only test in this binary that raises signals, so no other handler competes for them.
    #[tokio::test]
    async fn real_signals_map_to_events() {
        let mut sig = Signals::new().unwrap();
        let pid = std::process::id().to_string();
        for (name, want) in [
            ("-HUP", SignalEvent::Reload),
            ("-TERM", SignalEvent::Shutdown),
            ("-INT", SignalEvent::ExitNow),
        ] {
            let st = std::process::Command::new("kill")
                .args([name, &pid])
                .status()
                .unwrap();
            assert!(st.success());
            let got = tokio::time::timeout(Duration::from_secs(10), sig.recv())
                .await
                .unwrap();
            assert_eq!(got, want, "after kill {name}");
        }
    }
}
