//! The lease: which one of the processes sharing a PostgreSQL ledger is active. One row holds the
//! holder, an epoch that grows with every takeover, and an expiry by the database's clock; a
//! thread of its own takes and renews it, and the process stops sending creates before its lease
//! runs out by its own monotonic clock.

use super::Env;
use super::target::PgTarget;
use crate::lock::LockExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// `leadership.*`: how long a lease lasts, how often the active process renews it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub lease: Duration,
    pub renew: Duration,
}

impl LeaseSettings {
    /// How long after a renewal's start the active process may still send: the lease less one
    /// renewal period, so that a slow clock, a slow renewal or a late wake-up leaves it stopped
    /// well before the database lets a standby take over.
    fn valid_for(&self) -> Duration {
        self.lease.saturating_sub(self.renew)
    }
}

/// What this process is on a shared ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It holds the lease under this epoch: it plans, lists and creates.
    Active { epoch: i64 },
    /// Another process holds the lease (named when known), or nobody does and this one has not
    /// taken it yet.
    Standby { holder: Option<String> },
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    /// By this process's monotonic clock; past it nothing is sent or written.
    valid_until: Instant,
}

/// The lease as this process holds it, shared by the lease thread, the ledger writer (fencing)
/// and the executor (no create after `valid_until`).
pub struct Lease {
    me: String,
    settings: LeaseSettings,
    held: Mutex<Option<Held>>,
    role: tokio::sync::watch::Sender<Role>,
    transitions: AtomicU64,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("me", &self.me).finish()
    }
}

/// The holder's name in the lease row: host, pid and start time, for operators and `/readyz`.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!("{host} pid {} started {started}", std::process::id())
}

/// Why a take did not succeed: who holds the lease, and for how much longer.
#[derive(Debug, Clone)]
pub(super) struct HeldBy {
    pub(super) holder: String,
    pub(super) remaining_secs: u64,
}

impl Lease {
    pub(super) fn new(settings: LeaseSettings) -> Arc<Lease> {
        Arc::new(Lease {
            me: holder_name(),
            settings,
            held: Mutex::new(None),
            role: tokio::sync::watch::Sender::new(Role::Standby { holder: None }),
            transitions: AtomicU64::new(0),
        })
    }

    /// The epoch this process may write and send under now: held, and still valid by its own
    /// monotonic clock.
    pub fn epoch(&self) -> Option<i64> {
        let held = (*self.held.lock_or_recover())?;
        (Instant::now() < held.valid_until).then_some(held.epoch)
    }

    /// Follows the role as the lease thread sees it.
    pub fn role(&self) -> tokio::sync::watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// How many times this process became active or stopped being active.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// This process's name in the lease row.
    pub fn me(&self) -> &str {
        &self.me
    }

    fn set_role(&self, role: Role) {
        self.role.send_if_modified(|current| {
            let was_active = matches!(current, Role::Active { .. });
            let changed = *current != role;
            if was_active != matches!(role, Role::Active { .. }) {
                self.transitions.fetch_add(1, Ordering::Relaxed);
            }
            *current = role;
            changed
        });
    }

    fn lost(&self, why: &str) {
        let was = self.held.lock_or_recover().take();
        if let Some(h) = was {
            tracing::error!(
                epoch = h.epoch,
                reason = why,
                "lost the ledger's lease: no further create is sent; standing by"
            );
            self.set_role(Role::Standby { holder: None });
        }
    }

    /// One attempt to take the lease (when it has expired) or renew it (when held), on `client`.
    /// `Ok(None)`: this process holds it now. `Ok(Some(_))`: another does.
    pub(super) fn step(
        &self,
        client: &mut postgres::Client,
    ) -> Result<Option<HeldBy>, postgres::Error> {
        let started = Instant::now();
        let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
        let current = *self.held.lock_or_recover();
        if let Some(held) = current {
            let renewed = client.query_opt(
                "UPDATE atlas_linkd.lease
                    SET expires_at = now() + make_interval(secs => $1::bigint / 1000.0)
                  WHERE id = 1 AND epoch = $2 AND holder = $3 AND expires_at > now()
                  RETURNING epoch",
                &[&lease_ms, &held.epoch, &self.me],
            )?;
            if renewed.is_some() {
                *self.held.lock_or_recover() = Some(Held {
                    epoch: held.epoch,
                    valid_until: started + self.settings.valid_for(),
                });
                return Ok(None);
            }
            self.lost("another process holds the lease now, or it expired before it was renewed");
        }
        let taken = client.query_opt(
            "UPDATE atlas_linkd.lease
                SET holder = $2, epoch = epoch + 1, taken_at = now(),
                    expires_at = now() + make_interval(secs => $1::bigint / 1000.0)
              WHERE id = 1 AND expires_at <= now()
              RETURNING epoch",
            &[&lease_ms, &self.me],
        )?;
        if let Some(row) = taken {
            let epoch: i64 = row.get(0);
            *self.held.lock_or_recover() = Some(Held {
                epoch,
                valid_until: started + self.settings.valid_for(),
            });
            tracing::info!(epoch, holder = %self.me, "took the ledger's lease: active");
            self.set_role(Role::Active { epoch });
            return Ok(None);
        }
        let row = client.query_one(
            "SELECT holder, GREATEST(0, EXTRACT(EPOCH FROM expires_at - now()))::float8
               FROM atlas_linkd.lease WHERE id = 1",
            &[],
        )?;
        let holder: String = row.get(0);
        let remaining: f64 = row.get(1);
        self.set_role(Role::Standby {
            holder: Some(holder.clone()),
        });
        Ok(Some(HeldBy {
            holder,
            remaining_secs: remaining.ceil() as u64,
        }))
    }

    /// Gives the lease up, so that a standby takes over at once rather than after it expires.
    pub(super) fn release(&self, client: &mut postgres::Client) {
        let Some(held) = self.held.lock_or_recover().take() else {
            return;
        };
        let released = client.execute(
            "UPDATE atlas_linkd.lease SET expires_at = now()
              WHERE id = 1 AND epoch = $1 AND holder = $2",
            &[&held.epoch, &self.me],
        );
        match released {
            Ok(_) => tracing::info!(epoch = held.epoch, "released the ledger's lease"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot release the ledger's lease; it expires by itself")
            }
        }
        self.set_role(Role::Standby { holder: None });
    }

    /// Steps down when the lease has run out by this process's own clock (a renewal that could
    /// not reach the database in time).
    fn expire_by_own_clock(&self) {
        let expired = self
            .held
            .lock_or_recover()
            .is_some_and(|h| Instant::now() >= h.valid_until);
        if expired {
            self.lost("the lease could not be renewed in time");
        }
    }
}

/// The running lease thread.
pub(super) struct LeaseThread {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl LeaseThread {
    /// Stops renewing and releases the lease; returns once it is released (or could not be).
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        // A panic in the lease thread is a bug worth seeing, but not at shutdown's cost.
        let _ = self.thread.join();
    }
}

/// The lease thread: takes or renews the lease every `renew`, on a connection of its own (a busy
/// ledger writer never delays a renewal); after a failure it reconnects and tries again within a
/// second. Stops, releasing the lease, when told to or when its `LeaseThread` is dropped.
pub(super) fn spawn(
    lease: Arc<Lease>,
    target: PgTarget,
    env: Env,
    mut client: Option<postgres::Client>,
) -> Result<LeaseThread, std::io::Error> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ledger-lease".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                let next = if failing {
                    Duration::from_secs(1).min(lease.settings.renew)
                } else {
                    lease.settings.renew
                };
                match stopped.recv_timeout(next) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
                lease.expire_by_own_clock();
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = target.connect(&|k| env.get(k), "lease").ok();
                }
                let Some(c) = client.as_mut() else {
                    if !failing {
                        tracing::warn!(ledger = %target, "cannot reach the ledger's database to renew the lease; trying again every second");
                    }
                    failing = true;
                    continue;
                };
                match lease.step(c) {
                    Ok(_) => failing = false,
                    Err(e) => {
                        tracing::warn!(ledger = %target, error = %e, "cannot take or renew the ledger's lease; trying again");
                        failing = true;
                        client = None;
                    }
                }
                lease.expire_by_own_clock();
            }
            if let Some(c) = client.as_mut() {
                lease.release(c);
            }
        })?;
    Ok(LeaseThread { stop, thread })
}
