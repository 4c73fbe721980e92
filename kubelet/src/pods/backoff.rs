//! CrashLoopBackOff and image-pull backoff: 10 s doubling to 5 min per container, forgotten
//! after 10 min without a failure (kubelet's `flowcontrol.Backoff` with its constants).

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);
/// A container that ran this long is healthy again: its next failure starts from INITIAL.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last: Instant,
}

#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// Records a failure at `now` and returns until when to wait before the next try.
    pub fn fail(&mut self, key: &str, now: Instant) -> Instant {
        let e = self.entries.entry(key.to_string()).or_insert(Entry {
            delay: Duration::ZERO,
            last: now,
        });
        if now.duration_since(e.last) > RESET_AFTER + e.delay || e.delay.is_zero() {
            e.delay = INITIAL;
        } else {
            e.delay = (e.delay * 2).min(MAX);
        }
        e.last = now;
        now + e.delay
    }

    /// Until when `key` waits, if it is in backoff at `now`.
    pub fn waiting(&self, key: &str, now: Instant) -> Option<Instant> {
        let e = self.entries.get(key)?;
        let until = e.last + e.delay;
        (until > now).then_some(until)
    }

    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::default();
        let t = Instant::now();
        assert_eq!(b.fail("c", t), t + INITIAL);
        assert!(b.waiting("c", t + Duration::from_secs(5)).is_some());
        assert!(b.waiting("c", t + Duration::from_secs(11)).is_none());
        let t2 = t + Duration::from_secs(11);
        assert_eq!(b.fail("c", t2), t2 + Duration::from_secs(20));
        let mut t3 = t2;
        for _ in 0..10 {
            t3 += Duration::from_secs(1);
            b.fail("c", t3);
        }
        assert_eq!(b.delay("c"), Some(MAX));
        let late = t3 + RESET_AFTER + MAX + Duration::from_secs(1);
        assert_eq!(b.fail("c", late), late + INITIAL);
    }
}
