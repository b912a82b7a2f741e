//! Authentication state shared by every clone of a client: the cached OAuth token (refreshed by one
//! task while the others wait) and the cached digest nonce.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

use super::ApiError;
use super::digest::{Challenge, Session};
use crate::lock::LockExt;

/// How long before expiry a token is replaced: 10 minutes, or half the lifetime when that is short.
pub(crate) fn refresh_margin(ttl: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(600);
    if ttl >= MARGIN * 2 { MARGIN } else { ttl / 2 }
}

/// The shortest time a token is reused, whatever `expires_in` says; a server that says 0 would
/// otherwise cost one token request per API call. The value is the largest floor that never keeps an
/// honestly announced token past its expiry: the shortest lifetime `expires_in` (whole seconds) can
/// announce is 1 s, which the half-life margin already refreshes at 0.5 s. So a 0 costs at most two
/// token requests a second per process, and a token Atlas rejects early still gets the 401 path's
/// one refresh.
pub(crate) const MIN_TOKEN_REUSE: Duration = Duration::from_millis(500);

/// The longest lifetime believed: `expires_in` is the server's number, and `Instant` arithmetic on
/// an unbounded one would overflow. A day is far beyond Atlas's hour.
pub(crate) const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct CachedToken {
    token: SecretString,
    generation: u64,
    refresh_at: Instant,
    expires_at: Instant,
}

/// A token and the generation it belongs to (so a 401 refreshes only the token it rejected).
pub(crate) struct Token {
    pub(crate) secret: SecretString,
    pub(crate) generation: u64,
}

/// The OAuth token cache. Holding the async mutex across the fetch makes the refresh single-flight:
/// concurrent callers queue behind the one that fetches and then find the new token.
pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Option<CachedToken>>,
}

impl TokenCache {
    pub(crate) fn new() -> TokenCache {
        TokenCache {
            slot: tokio::sync::Mutex::new(None),
        }
    }

    fn store(slot: &mut Option<CachedToken>, secret: SecretString, ttl: Duration) -> Token {
        let now = Instant::now();
        let generation = slot.as_ref().map_or(1, |t| t.generation + 1);
        // The server picks `expires_in`; past `Instant`'s range the additions below would panic.
        let ttl = ttl.min(MAX_TOKEN_LIFETIME);
        let reuse = ttl.saturating_sub(refresh_margin(ttl)).max(MIN_TOKEN_REUSE);
        *slot = Some(CachedToken {
            token: secret.clone(),
            generation,
            refresh_at: now + reuse,
            expires_at: now + ttl.max(reuse),
        });
        Token { secret, generation }
    }

    /// The current token, fetching one when there is none or it is due for refresh. A failed
    /// refresh falls back on the old token while it is still valid.
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<Token, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), ApiError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(t) = slot.as_ref()
            && Instant::now() < t.refresh_at
        {
            return Ok(Token {
                secret: t.token.clone(),
                generation: t.generation,
            });
        }
        match fetch().await {
            Ok((secret, ttl)) => Ok(Self::store(&mut slot, secret, ttl)),
            Err(e) => match slot.as_ref() {
                Some(t) if Instant::now() < t.expires_at => {
                    tracing::warn!(error = %e, "could not refresh the Atlas token; using the current one until it expires");
                    Ok(Token {
                        secret: t.token.clone(),
                        generation: t.generation,
                    })
                }
                _ => Err(e),
            },
        }
    }

    /// After Atlas rejected the token of `rejected` generation: fetch a new one, unless another
    /// caller already did.
    pub(crate) async fn refresh_after_rejection<F, Fut>(
        &self,
        rejected: u64,
        fetch: F,
    ) -> Result<Token, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(SecretString, Duration), ApiError>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(t) = slot.as_ref()
            && t.generation != rejected
            && Instant::now() < t.expires_at
        {
            return Ok(Token {
                secret: t.token.clone(),
                generation: t.generation,
            });
        }
        let (secret, ttl) = fetch().await?;
        Ok(Self::store(&mut slot, secret, ttl))
    }

    /// Removes the token (for revocation at shutdown).
    pub(crate) async fn take(&self) -> Option<SecretString> {
        self.slot.lock().await.take().map(|t| t.token)
    }
}

/// The cached digest nonce, and a lock so that only one call pays the bare challenge round trip.
pub(crate) struct DigestState {
    current: Mutex<Option<Arc<Session>>>,
    pub(crate) prime: tokio::sync::Mutex<()>,
}

impl DigestState {
    pub(crate) fn new() -> DigestState {
        DigestState {
            current: Mutex::new(None),
            prime: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<Session>> {
        self.current.lock_or_recover().clone()
    }

    /// Takes a new challenge, unless the session `used` was already replaced by another caller, in
    /// which case that newer session is returned.
    pub(crate) fn replace(
        &self,
        used: Option<&Arc<Session>>,
        challenge: Challenge,
    ) -> Arc<Session> {
        let fresh = Arc::new(Session::new(challenge));
        let mut guard = self.current.lock_or_recover();
        if let (Some(used), Some(now)) = (used, guard.as_ref())
            && !Arc::ptr_eq(used, now)
        {
            return now.clone();
        }
        *guard = Some(fresh.clone());
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_ten_minutes_or_half_a_short_ttl() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(600)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
    }

    // Found by the `token` fuzz target (tests/fuzz-regressions/token/): an `expires_in` near u64::MAX
    // overflowed `Instant` and panicked the caller.
    #[tokio::test(start_paused = true)]
    async fn a_lifetime_past_the_clock_range_is_capped_not_a_panic() {
        let cache = TokenCache::new();
        let fetch = || async {
            Ok((
                SecretString::from("t".to_owned()),
                Duration::from_secs(u64::MAX),
            ))
        };
        let first = cache.get(fetch).await.unwrap();
        tokio::time::advance(MAX_TOKEN_LIFETIME).await;
        let second = cache.get(fetch).await.unwrap();
        assert_eq!(
            (first.generation, second.generation),
            (1, 2),
            "refreshed once the capped lifetime is over"
        );
    }

    fn counting_fetch(
        fetches: &std::sync::atomic::AtomicU32,
        expires_in: u64,
    ) -> impl Fn() -> std::future::Ready<Result<(SecretString, Duration), ApiError>> + '_ {
        move || {
            let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(Ok((
                SecretString::from(format!("t{n}")),
                Duration::from_secs(expires_in),
            )))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_that_expires_at_once_is_still_reused_for_the_floor() {
        for expires_in in [0, 1] {
            let cache = TokenCache::new();
            let fetches = std::sync::atomic::AtomicU32::new(0);
            for _ in 0..100 {
                cache
                    .get(counting_fetch(&fetches, expires_in))
                    .await
                    .unwrap();
                tokio::time::advance(Duration::from_millis(4)).await;
            }
            // 100 calls over 0.4 s: within one floor.
            assert_eq!(
                fetches.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "{expires_in}"
            );
            tokio::time::advance(MIN_TOKEN_REUSE).await;
            cache
                .get(counting_fetch(&fetches, expires_in))
                .await
                .unwrap();
            assert_eq!(
                fetches.load(std::sync::atomic::Ordering::SeqCst),
                2,
                "{expires_in}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_enormous_expires_in_neither_panics_nor_lasts_past_a_day() {
        let cache = TokenCache::new();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        cache.get(counting_fetch(&fetches, u64::MAX)).await.unwrap();
        tokio::time::advance(MAX_TOKEN_LIFETIME).await;
        cache.get(counting_fetch(&fetches, u64::MAX)).await.unwrap();
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn token_is_reused_then_refreshed_at_the_margin() {
        let cache = TokenCache::new();
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok((
                SecretString::from(format!("t{n}")),
                Duration::from_secs(3600),
            ))
        };
        let a = cache.get(fetch).await.unwrap();
        let b = cache.get(fetch).await.unwrap();
        assert_eq!((a.generation, b.generation), (1, 1));
        tokio::time::advance(Duration::from_secs(3000)).await;
        let c = cache.get(fetch).await.unwrap();
        assert_eq!(c.generation, 2);
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 2);
        // A rejection of an old generation does not fetch again.
        let d = cache.refresh_after_rejection(1, fetch).await.unwrap();
        assert_eq!(d.generation, 2);
        let e = cache.refresh_after_rejection(2, fetch).await.unwrap();
        assert_eq!(e.generation, 3);
    }
}
