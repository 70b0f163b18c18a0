//! One bounded table of series kept between scrapes, for everything that
//! counts between them (kernel event counters, sampler sightings): a series
//! not touched for `retention` is dropped, and at most `max` are kept, the
//! least recently touched going first. Every touch gets a unique position,
//! so the cap holds exactly even when many series share one clock reading
//! (one sample touches all of its series at the same instant).
//!
//! A series that is dropped and comes back starts again from its default,
//! which Prometheus reads as a counter reset.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a series nobody touches stays in the metrics.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// Upper bound on the series of one table.
pub const MAX_SERIES: usize = 10_000;

struct Row<V> {
    value: V,
    touched_at: Instant,
    /// Position in touching order: unique, so eviction is exact under ties.
    order: u64,
}

/// Series by label set, bounded by age and count.
pub struct SeriesTable<K, V> {
    rows: HashMap<K, Row<V>>,
    retention: Duration,
    max: usize,
    next_order: u64,
    evicted: u64,
}

impl<K: Clone + Eq + Hash + Ord, V: Default> SeriesTable<K, V> {
    pub fn new(retention: Duration, max: usize) -> SeriesTable<K, V> {
        assert!(max > 0, "a series table holds at least one series");
        SeriesTable {
            rows: HashMap::new(),
            retention,
            max,
            next_order: 0,
            evicted: 0,
        }
    }

    /// The series of `key`, created at its default if new, marked as
    /// touched `now`. May evict the stalest others to stay within `max`.
    pub fn touch(&mut self, key: K, now: Instant) -> &mut V {
        self.next_order += 1;
        let order = self.next_order;
        if !self.rows.contains_key(&key) && self.rows.len() >= self.max {
            // Room for the new series: expired first, then the stalest.
            self.prune(now);
            self.evict_down_to(self.max - self.max / 10 - 1);
        }
        let row = self.rows.entry(key).or_insert_with(|| Row {
            value: V::default(),
            touched_at: now,
            order,
        });
        row.touched_at = now;
        row.order = order;
        &mut row.value
    }

    /// Drops the series not touched for the retention time.
    pub fn prune(&mut self, now: Instant) {
        let before = self.rows.len();
        let retention = self.retention;
        self.rows
            .retain(|_, row| now.saturating_duration_since(row.touched_at) < retention);
        self.evicted += (before - self.rows.len()) as u64;
    }

    /// Keeps the `keep` most recently touched series. Called with a tenth
    /// of the room to spare, so a flood does not sort the table on every
    /// touch.
    fn evict_down_to(&mut self, keep: usize) {
        if self.rows.len() <= keep {
            return;
        }
        let before = self.rows.len();
        let mut orders: Vec<u64> = self.rows.values().map(|row| row.order).collect();
        orders.sort_unstable_by(|a, b| b.cmp(a));
        let newest_dropped = orders[keep];
        self.rows.retain(|_, row| row.order > newest_dropped);
        self.evicted += (before - self.rows.len()) as u64;
    }

    /// Every series, sorted by label set.
    pub fn sorted(&self) -> Vec<(&K, &V)> {
        let mut rows: Vec<(&K, &V)> = self.rows.iter().map(|(k, row)| (k, &row.value)).collect();
        rows.sort_by(|a, b| a.0.cmp(b.0));
        rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Series dropped so far, by age or by the cap.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_holds_when_every_series_shares_one_instant() {
        let mut table: SeriesTable<u32, u64> = SeriesTable::new(RETENTION, 10);
        let now = Instant::now();
        for key in 0..25 {
            *table.touch(key, now) += 1;
            assert!(
                table.len() <= 10,
                "{} series after touching {key}",
                table.len()
            );
        }
        // The newest touched always survive, and the last one is there.
        let kept: Vec<u32> = table.sorted().iter().map(|(k, _)| **k).collect();
        assert!(kept.contains(&24));
        assert!(kept.iter().all(|&k| k >= 15), "{kept:?}");
        assert_eq!(table.evicted() as usize + table.len(), 25);
    }

    #[test]
    fn touching_again_keeps_a_series_and_its_value() {
        let mut table: SeriesTable<&str, u64> = SeriesTable::new(RETENTION, 3);
        let now = Instant::now();
        *table.touch("old", now) += 5;
        for key in ["a", "b"] {
            *table.touch(key, now) += 1;
        }
        *table.touch("old", now) += 1; // now the newest
        *table.touch("c", now) += 1; // evicts the stalest: "a"
        let rows: Vec<(&str, u64)> = table.sorted().iter().map(|(k, v)| (**k, **v)).collect();
        assert!(rows.contains(&("old", 6)), "{rows:?}");
        assert!(!rows.iter().any(|(k, _)| *k == "a"), "{rows:?}");
        assert!(table.len() <= 3);
    }

    #[test]
    fn expired_series_go_first() {
        let mut table: SeriesTable<u8, u64> = SeriesTable::new(Duration::from_secs(60), 100);
        let start = Instant::now();
        *table.touch(1, start) += 1;
        *table.touch(2, start + Duration::from_secs(30)) += 1;
        table.prune(start + Duration::from_secs(61));
        let kept: Vec<u8> = table.sorted().iter().map(|(k, _)| **k).collect();
        assert_eq!(kept, [2]);
        assert_eq!(table.evicted(), 1);
    }
}
