//! Per-key exponential backoff on the controllers' clock, as client-go's `flowcontrol.Backoff`
//! without jitter (what the DaemonSet controller's `failedPodsBackoff` is): the first step is
//! `initial`, each further step doubles up to `max`, and an entry not stepped for `2 × max`
//! has expired (the next step starts over; [`Backoff::gc`] forgets it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: Mutex::default(),
        }
    }

    fn expired(&self, e: &Entry, now: DateTime<Utc>) -> bool {
        (now - e.last_update)
            .to_std()
            .is_ok_and(|since| since > 2 * self.max)
    }

    /// The current backoff of `key` (zero when it has none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries
            .lock()
            .unwrap()
            .get(key)
            .map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Steps `key`'s backoff at `now`: `initial` for a new or expired entry, else doubled
    /// (capped at `max`).
    pub fn next(&self, key: &str, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap();
        let backoff = match entries.get(key) {
            Some(e) if !self.expired(e, now) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// Whether `now` is within `key`'s backoff since its last step (client-go's
    /// IsInBackOffSinceUpdate).
    pub fn in_backoff_since_update(&self, key: &str, now: DateTime<Utc>) -> bool {
        let entries = self.entries.lock().unwrap();
        let Some(e) = entries.get(key) else {
            return false;
        };
        if self.expired(e, now) {
            return false;
        }
        // A clock that went back counts as still within the backoff.
        (now - e.last_update)
            .to_std()
            .map_or(true, |since| since < e.backoff)
    }

    /// Forgets expired entries.
    pub fn gc(&self, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap();
        entries.retain(|_, e| !self.expired(e, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_initial_to_max_and_expires_after_twice_max() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15 * 60));
        let t0 = DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap();
        let at = |s: f64| t0 + chrono::Duration::milliseconds((s * 1000.0) as i64);
        assert!(!b.in_backoff_since_update("k", t0));
        assert_eq!(b.get("k"), Duration::ZERO);
        b.next("k", t0);
        assert_eq!(b.get("k"), Duration::from_secs(1));
        assert!(b.in_backoff_since_update("k", at(0.9)));
        assert!(!b.in_backoff_since_update("k", at(1.0)));
        b.next("k", at(1.0));
        assert_eq!(b.get("k"), Duration::from_secs(2));
        assert!(b.in_backoff_since_update("k", at(2.9)));
        assert!(!b.in_backoff_since_update("k", at(3.0)));
        // Other keys are independent.
        assert!(!b.in_backoff_since_update("other", at(1.5)));
        let mut t = 3.0;
        for _ in 0..20 {
            b.next("k", at(t));
            t += 1.0;
        }
        assert_eq!(b.get("k"), Duration::from_secs(15 * 60), "capped at max");
        // Not stepped for more than 2 × max: expired, the next step starts over.
        let later = t + 2.0 * 900.0 + 1.0;
        assert!(!b.in_backoff_since_update("k", at(later)));
        b.gc(at(later));
        assert_eq!(b.get("k"), Duration::ZERO);
        b.next("k", at(later));
        assert_eq!(b.get("k"), Duration::from_secs(1));
    }
}
