//! When to renew a certificate: client-go's `nextRotationDeadline` — at a jittered 70–90 % of
//! its lifetime (notBefore + 0.7..0.9 × (notAfter − notBefore)), so a fleet issued together
//! does not renew together and a failed renewal leaves time to retry before expiry.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::store::Pair;

/// The deadline for `pair` at `fraction` (0.7..0.9) of its lifetime.
pub fn deadline_at(pair: &Pair, fraction: f64) -> DateTime<Utc> {
    let total = (pair.not_after - pair.not_before).num_milliseconds().max(0) as f64;
    pair.not_before + chrono::Duration::milliseconds((total * fraction) as i64)
}

/// A uniformly random fraction in [0.7, 0.9).
pub fn jitter() -> f64 {
    let mut b = [0u8; 8];
    // The OS's random source through rustls' provider (already linked for TLS).
    if tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .is_err()
    {
        b = (std::process::id() as u64 ^ Utc::now().timestamp_subsec_nanos() as u64).to_le_bytes();
    }
    let unit = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    0.7 + 0.2 * unit
}

/// The next rotation deadline of `pair` (jittered).
pub fn next_deadline(pair: &Pair) -> DateTime<Utc> {
    deadline_at(pair, jitter())
}

/// How long from `now` until `at` (zero when past).
pub fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Backoff after a failed renewal: 2 s doubling, at most 5 min (client-go's is 2 s × 2).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1 << failures.min(8)).min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_fall_in_seventy_to_ninety_percent_of_the_lifetime() {
        let nb = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let pair = Pair {
            cert_pem: String::new(),
            key_pem: String::new(),
            not_before: nb,
            not_after: nb + chrono::Duration::seconds(100),
        };
        assert_eq!(deadline_at(&pair, 0.7), nb + chrono::Duration::seconds(70));
        assert_eq!(deadline_at(&pair, 0.9), nb + chrono::Duration::seconds(90));
        let mut seen = (1.0f64, 0.0f64);
        for _ in 0..200 {
            let j = jitter();
            assert!((0.7..0.9).contains(&j), "{j}");
            seen = (seen.0.min(j), seen.1.max(j));
        }
        assert!(seen.1 - seen.0 > 0.1, "jitter spreads: {seen:?}");
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(20), Duration::from_secs(300));
    }
}
