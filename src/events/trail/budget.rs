//! `--log.events-per-second`: how many trail lines may be written in each
//! one-second window, and how many were left out.
//!
//! Admission is decided where the event is handled, before anything is
//! read for the line, so a listener storm costs the event path one
//! uncontended lock per event and nothing more once the window is full.
//! Every event refused here, or refused later because the trail's queue
//! was full, is counted in [`Budget::suppress`]; the trail thread takes
//! that count ([`Budget::take_suppressed`]) to write one notice a window.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The per-second line budget and the suppressed count.
pub struct Budget {
    per_second: u32,
    /// When the windows start.
    epoch: Instant,
    /// (window number, lines admitted in it).
    window: Mutex<(u64, u32)>,
    /// Lines left out and not yet reported.
    suppressed: AtomicU64,
}

impl Budget {
    pub fn new(per_second: u32) -> Budget {
        Budget {
            per_second,
            epoch: Instant::now(),
            window: Mutex::new((0, 0)),
            suppressed: AtomicU64::new(0),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one line from this second's budget; `false` (and the line
    /// counted as suppressed) when it is spent.
    pub fn admit(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if window.0 != now {
            *window = (now, 0);
        }
        if window.1 < self.per_second {
            window.1 += 1;
            true
        } else {
            drop(window);
            self.suppress();
            false
        }
    }

    /// Counts one line left out.
    pub fn suppress(&self) {
        self.suppressed.fetch_add(1, Ordering::Relaxed);
    }

    /// The lines left out since the last call.
    pub fn take_suppressed(&self) -> u64 {
        self.suppressed.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_admits_its_budget_and_counts_the_rest() {
        let budget = Budget::new(3);
        let admitted = (0..10).filter(|_| budget.admit()).count();
        // The test may straddle a window boundary: then up to twice.
        assert!((3..=6).contains(&admitted), "{admitted}");
        assert_eq!(budget.take_suppressed(), 10 - admitted as u64);
        assert_eq!(budget.take_suppressed(), 0);
        budget.suppress();
        assert_eq!(budget.take_suppressed(), 1);
    }
}
