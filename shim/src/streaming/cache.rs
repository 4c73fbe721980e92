//! The one-time tokens behind the URLs Exec, Attach and PortForward return, with the kubelet
//! streaming server's request-cache semantics: a random token per request, good for one use and
//! for one minute, at most [`MAX_IN_FLIGHT`] outstanding. Time is a parameter so the expiry is
//! testable without sleeping.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a URL may wait for its client (the kubelet's `streamIdleTimeout`-independent
/// request cache TTL).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// Outstanding tokens at most, as the kubelet's `MaxInFlight`.
pub const MAX_IN_FLIGHT: usize = 1000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CacheError {
    #[error("too many streaming requests in flight ({MAX_IN_FLIGHT}); retry later")]
    Full,
}

#[derive(Debug)]
pub struct RequestCache<T> {
    entries: HashMap<String, (Instant, T)>,
}

impl<T> Default for RequestCache<T> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<T> RequestCache<T> {
    /// Stores `request` under a fresh random token, valid until `now + TOKEN_TTL`.
    pub fn insert(&mut self, request: T, now: Instant) -> Result<String, CacheError> {
        self.expire(now);
        if self.entries.len() >= MAX_IN_FLIGHT {
            return Err(CacheError::Full);
        }
        // 128 random bits in hex: unguessable, and safe in a URL path.
        let token = crate::records::new_id()[..32].to_string();
        self.entries
            .insert(token.clone(), (now + TOKEN_TTL, request));
        Ok(token)
    }

    /// Takes the request behind `token`: a second use, or a use after expiry, finds nothing.
    pub fn consume(&mut self, token: &str, now: Instant) -> Option<T> {
        self.expire(now);
        self.entries.remove(token).map(|(_, r)| r)
    }

    fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, (deadline, _)| *deadline > now);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once_and_only_within_a_minute() {
        let mut c = RequestCache::default();
        let t0 = Instant::now();
        let a = c.insert("a", t0).unwrap();
        let b = c.insert("b", t0).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(c.consume(&a, t0), Some("a"));
        assert_eq!(c.consume(&a, t0), None, "second use");
        assert_eq!(c.consume("nonsense", t0), None);
        assert_eq!(c.consume(&b, t0 + TOKEN_TTL), None, "expired");
        assert!(c.is_empty());
    }

    #[test]
    fn in_flight_requests_are_bounded() {
        let mut c = RequestCache::default();
        let t0 = Instant::now();
        for i in 0..MAX_IN_FLIGHT {
            c.insert(i, t0).unwrap();
        }
        assert_eq!(c.insert(0, t0), Err(CacheError::Full));
        // Expired ones make room.
        assert!(c.insert(0, t0 + TOKEN_TTL).is_ok());
        assert_eq!(c.len(), 1);
    }
}
