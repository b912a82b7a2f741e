//! A TCP proxy in front of one address (a test PostgreSQL server, say) that a test can cut, as a
//! network failure would, and restore, on the same port throughout.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP proxy on 127.0.0.1 in front of one address, which a test can cut (every open connection
/// closed at once, new ones accepted and closed at once) and restore. The listener stays bound
/// throughout, so a client configured with `port()` reconnects to it after `restore`.
///
/// Its tasks run on the tokio runtime that called `start`, and relay only while that runtime runs:
/// another process (the daemon under test, psql) can use the proxy as long as the test's runtime is
/// alive and free to run them. A test that blocks its thread meanwhile (a `std::process` child, a
/// blocking wait) needs `#[tokio::test(flavor = "multi_thread")]`, whose worker threads relay; on a
/// current-thread runtime, run blocking work with `spawn_blocking` and await it.
pub(crate) struct Proxy {
    port: u16,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

struct State {
    cut: bool,
    /// Cancelled by `cut`: every relay started since the last `restore` holds a clone.
    generation: CancellationToken,
}

impl Proxy {
    /// Binds 127.0.0.1 at a free port and relays each connection to it to `target`.
    pub(crate) async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("the proxy's local address")
            .port();
        let state = Arc::new(Mutex::new(State {
            cut: false,
            generation: CancellationToken::new(),
        }));
        let accept = tokio::spawn(accept_loop(listener, target, Arc::clone(&state)));
        Proxy {
            port,
            state,
            accept,
        }
    }

    /// Its port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Closes every relayed connection (as soon as its task runs: at once on a multi-thread
    /// runtime), and until `restore` closes each new connection as soon as it is accepted: a
    /// client sees its connection end, as with a server gone. Connections accepted from the moment
    /// this returns are never relayed.
    pub(crate) fn cut(&self) {
        let mut state = self.state();
        state.cut = true;
        state.generation.cancel();
    }

    /// Relays new connections again, on the same port.
    pub(crate) fn restore(&self) {
        let mut state = self.state();
        if state.cut {
            state.cut = false;
            state.generation = CancellationToken::new();
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

impl Drop for Proxy {
    /// Stops accepting (the port is freed once the runtime drops the task) and closes the relayed
    /// connections: nothing goes through a proxy that is gone.
    fn drop(&mut self) {
        self.accept.abort();
        self.state().generation.cancel();
    }
}

/// The lock is held only to read or swap the state, never across an await; a panic elsewhere
/// while holding it leaves the state whole, so a poisoned lock is still usable.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<Mutex<State>>) {
    loop {
        let inbound = match listener.accept().await {
            Ok((inbound, _)) => inbound,
            // Out of file descriptors, say: a moment for some to be freed, not a busy loop.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let generation = {
            let state = lock(&state);
            (!state.cut).then(|| state.generation.clone())
        };
        match generation {
            Some(generation) => {
                tokio::spawn(relay(inbound, target, generation));
            }
            // Cut: the client sees the connection closed at once.
            None => drop(inbound),
        }
    }
}

/// Relays `inbound` to a new connection to `target` until either side closes or the proxy is cut;
/// both connections are closed when it returns.
async fn relay(mut inbound: TcpStream, target: SocketAddr, cut: CancellationToken) {
    let connected = tokio::select! {
        () = cut.cancelled() => return,
        connected = TcpStream::connect(target) => connected,
    };
    let Ok(mut outbound) = connected else {
        return;
    };
    // Small request/response messages (PostgreSQL's protocol) should not wait for Nagle.
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        () = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
    }
}
