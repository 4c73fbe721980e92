//! kube-apiserver's cached token authenticator (`apiserver/pkg/authentication/token/cache`,
//! `--authentication-token-cache-ttl`-less: kube wires a 10 s success TTL and no failure
//! caching): a successful token check is remembered for [`SUCCESS_TTL`], so a client reusing
//! its token (every controller does, on every request) skips the signature check and the
//! store reads of the liveness check.
//!
//! As kube's, entries are keyed by an HMAC-SHA256 of the token under a key drawn at start, so
//! the cache never holds a token (a heap dump cannot replay one), and failures are not cached
//! (a wrong token costs its full check every time). As kube's, a cached success is not
//! revoked when the service account or the bound pod/secret/node is deleted: the deletion
//! rejects the token once the entry expires, at most [`SUCCESS_TTL`] later. Unlike kube's
//! (unbounded since 1.20), the cache holds at most [`CAPACITY`] entries so a flood of
//! distinct valid tokens cannot grow it: when full, expired entries go first, then the one
//! closest to expiry.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::auth::User;

/// kube's `TokenSuccessCacheTTL` default.
pub const SUCCESS_TTL: Duration = Duration::from_secs(10);
/// 32 stripes × 128 entries: kube's bound before its cache became unbounded.
pub const CAPACITY: usize = 4096;

type Key = [u8; 32];

struct Entry {
    user: User,
    expires: Instant,
}

pub struct TokenCache {
    hmac_key: hmac::Key,
    capacity: usize,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl TokenCache {
    pub fn with_capacity(capacity: usize) -> Self {
        let mut secret = [0u8; 32];
        // The system RNG failing leaves a fixed key: the cache still never stores tokens,
        // only their keyed hash loses its secrecy against someone who reads memory.
        if SystemRandom::new().fill(&mut secret).is_err() {
            tracing::warn!("no system randomness for the token cache key");
        }
        Self {
            hmac_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, token: &str) -> Key {
        let tag = hmac::sign(&self.hmac_key, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic while holding the lock leaves a consistent map (every update is one call).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user a token authenticated as less than its TTL ago.
    pub fn get(&self, token: &str, now: Instant) -> Option<User> {
        let key = self.key(token);
        let mut entries = self.lock();
        match entries.get(&key) {
            Some(e) if e.expires > now => Some(e.user.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a successful check for `ttl` (the caller caps it at the token's own expiry).
    pub fn insert(&self, token: &str, user: &User, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let key = self.key(token);
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| *k);
                if let Some(k) = soonest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(
            key,
            Entry {
                user: user.clone(),
                expires: now + ttl,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any entry's key is derived from `token` without the HMAC key, i.e. whether the
    /// token (or its plain hash) could be read back from the cache: used by the tests.
    #[cfg(test)]
    fn holds_plain(&self, token: &str) -> bool {
        let plain = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        self.lock()
            .keys()
            .any(|k| k.as_slice() == plain.as_ref() || k.as_slice() == token.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            ..User::default()
        }
    }

    #[test]
    fn success_is_remembered_for_its_ttl_only() {
        let c = TokenCache::default();
        let t0 = Instant::now();
        assert_eq!(c.get("tok", t0), None);
        c.insert("tok", &user("a"), SUCCESS_TTL, t0);
        assert_eq!(c.get("tok", t0 + Duration::from_secs(9)), Some(user("a")));
        assert_eq!(c.get("other", t0), None);
        assert_eq!(c.get("tok", t0 + SUCCESS_TTL), None, "expired at the TTL");
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        c.insert("tok", &user("a"), Duration::ZERO, t0);
        assert!(c.is_empty(), "a token at its expiry is not cached");
    }

    #[test]
    fn keys_are_keyed_hashes_not_tokens() {
        let c = TokenCache::default();
        let t0 = Instant::now();
        c.insert("secret-token", &user("a"), SUCCESS_TTL, t0);
        assert!(!c.holds_plain("secret-token"));
        // Two caches (two server starts) draw different keys.
        let d = TokenCache::default();
        assert_ne!(c.key("secret-token"), d.key("secret-token"));
    }

    #[test]
    fn size_is_bounded_expired_first_then_soonest() {
        let c = TokenCache::with_capacity(3);
        let t0 = Instant::now();
        c.insert("old", &user("old"), Duration::from_secs(1), t0);
        c.insert("b", &user("b"), Duration::from_secs(5), t0);
        c.insert("c", &user("c"), Duration::from_secs(8), t0);
        let t1 = t0 + Duration::from_secs(2);
        c.insert("d", &user("d"), SUCCESS_TTL, t1);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("old", t1), None);
        c.insert("e", &user("e"), SUCCESS_TTL, t1);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.get("b", t1),
            None,
            "the entry closest to expiry made room"
        );
        for t in ["c", "d", "e"] {
            assert_eq!(c.get(t, t1), Some(user(t)));
        }
        // Refreshing an entry already held evicts nothing.
        c.insert("e", &user("e"), SUCCESS_TTL, t1);
        assert_eq!(c.len(), 3);
    }
}
