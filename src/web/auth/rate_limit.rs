//! The exporter-toolkit's `rate_limit`: a token bucket over all requests
//! together, checked before anything else.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket `burst` deep, refilled with one token every `interval`.
/// It caps the work the server accepts, Prometheus' scrapes included; it is
/// not what keeps Prometheus in under a flood (the remembered credentials
/// and the bcrypt scheduler are).
pub struct RateLimit {
    interval: Duration,
    /// How far `full_at` may run ahead of now: `burst - 1` intervals.
    slack: Duration,
    /// When the bucket is full again; every request let through pushes it
    /// one interval later. Integer time, so no rounding drift.
    full_at: Mutex<Instant>,
}

impl RateLimit {
    /// Starts full. `interval` must be above zero and `burst` at least 1
    /// (the web config checks both).
    pub fn new(interval: Duration, burst: u32) -> RateLimit {
        RateLimit {
            interval,
            slack: interval.saturating_mul(burst.max(1) - 1),
            full_at: Mutex::new(Instant::now()),
        }
    }

    /// Takes a token if one is left.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> bool {
        let mut full_at = self.full_at.lock().unwrap_or_else(|p| p.into_inner());
        let base = (*full_at).max(now);
        if base - now > self.slack {
            return false;
        }
        *full_at = base + self.interval;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_allows_a_burst_then_one_per_interval() {
        let limit = RateLimit::new(Duration::from_secs(1), 3);
        let start = *limit.full_at.lock().unwrap();
        let at = |millis| start + Duration::from_millis(millis);
        assert!((0..3).all(|_| limit.try_take_at(at(0))));
        assert!(!limit.try_take_at(at(0)));
        assert!(!limit.try_take_at(at(900)));
        assert!(limit.try_take_at(at(1000)));
        assert!(!limit.try_take_at(at(1500)));
        // A long pause refills up to the burst, not beyond.
        assert!((0..3).all(|_| limit.try_take_at(at(60_000))));
        assert!(!limit.try_take_at(at(60_000)));
    }
}
