//! What the bcrypt scheduler knows about each client address (an IPv4
//! address or an IPv6 /64): when a password from it was last wrong, how
//! hard it has been pressing (requests refused or wrong, fading with a
//! half-life), and which credentials it has presented before.
//!
//! Bounded twice over. Each address keeps [`PRESENTED_PER_SOURCE`]
//! credentials; a new one takes the place of one presented fewer times
//! (oldest first), never of one presented twice or more within
//! [`PROTECTED_FOR`]: a guess presented once cannot push out a credential
//! presented twice, and a flood from other addresses touches none of them.
//! Only connections without a 401 or 429 yet add credentials here, so a
//! guesser's keep-alive connections cannot push out the credentials its
//! own address presented on a clean one (Prometheus', behind one NAT).
//! Addresses are kept in two generations of [`GENERATION`] each: one
//! touched in the current or the previous generation stays, so Prometheus'
//! address, seen once a minute, is forgotten only when more than
//! [`GENERATION`] other addresses turn up between two of its scrapes.

use super::remembered::Tag;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses per generation: 2 x 4096 records of about 200 bytes at most.
pub(super) const GENERATION: usize = 4096;
/// Credentials remembered as presented, per address. Prometheus presents
/// one; a few leave room for a second Prometheus or a changed password.
pub(super) const PRESENTED_PER_SOURCE: usize = 4;
/// How long a credential presented twice or more is safe from newcomers:
/// well over two scrape intervals of 60 s.
pub(super) const PROTECTED_FOR: Duration = Duration::from_secs(600);
/// A wrong password this recent makes its address one "with failures".
pub(super) const FAILURE_MEMORY: Duration = Duration::from_secs(600);
/// Pressure halves this often without new refusals or failures.
const PRESSURE_HALF_LIFE: Duration = Duration::from_secs(60);

/// Every address known, in two generations.
#[derive(Default)]
pub(super) struct Sources {
    current: HashMap<IpAddr, Source>,
    previous: HashMap<IpAddr, Source>,
}

impl Sources {
    /// The record of `client` (already reduced to a client address, see
    /// [`super::client_limit::client_of`]), made when it is new.
    pub(super) fn get(&mut self, client: IpAddr, now: Instant) -> &mut Source {
        if !self.current.contains_key(&client) {
            let moved = self.previous.remove(&client);
            if self.current.len() >= GENERATION {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current
                .insert(client, moved.unwrap_or_else(|| Source::new(now)));
        }
        self.current.get_mut(&client).expect("inserted above")
    }

    /// The record of `client`, if there is one (nothing is made).
    pub(super) fn peek(&self, client: IpAddr) -> Option<&Source> {
        self.current
            .get(&client)
            .or_else(|| self.previous.get(&client))
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// One client address.
pub(super) struct Source {
    last_failure: Option<Instant>,
    /// Refusals and failures, fading: its value at `pressure_at`.
    pressure: f64,
    pressure_at: Instant,
    presented: Vec<Presented>,
}

/// Credentials this address presented, and how often.
struct Presented {
    tag: Tag,
    times: u32,
    last: Instant,
}

impl Source {
    fn new(now: Instant) -> Source {
        Source {
            last_failure: None,
            pressure: 0.0,
            pressure_at: now,
            presented: Vec::with_capacity(PRESENTED_PER_SOURCE),
        }
    }

    /// Notes that `tag` is presented now; true when this address presented
    /// it before (and it is still remembered). Credentials not known yet
    /// are noted only when `may_add`: a connection that has had a 401 or a
    /// 429 speaks for itself only, so a guesser's keep-alive connection
    /// cannot push its address's other credentials out.
    pub(super) fn present(&mut self, tag: Tag, now: Instant, may_add: bool) -> bool {
        if let Some(known) = self.presented.iter_mut().find(|p| p.tag == tag) {
            known.times = known.times.saturating_add(1);
            known.last = now;
            return true;
        }
        if !may_add {
            return false;
        }
        let fresh = Presented {
            tag,
            times: 1,
            last: now,
        };
        if self.presented.len() < PRESENTED_PER_SOURCE {
            self.presented.push(fresh);
            return false;
        }
        let replaceable = |p: &&mut Presented| {
            p.times < 2 || now.saturating_duration_since(p.last) > PROTECTED_FOR
        };
        if let Some(victim) = self
            .presented
            .iter_mut()
            .filter(replaceable)
            .min_by_key(|p| (p.times, p.last))
        {
            *victim = fresh;
        }
        false
    }

    /// A password from here was wrong.
    pub(super) fn failed(&mut self, now: Instant) {
        self.last_failure = Some(now);
        self.press(now);
    }

    /// A request from here was refused by the scheduler.
    pub(super) fn refused(&mut self, now: Instant) {
        self.press(now);
    }

    /// Was a password from here wrong within [`FAILURE_MEMORY`]?
    pub(super) fn failing(&self, now: Instant) -> bool {
        self.last_failure
            .is_some_and(|at| now.saturating_duration_since(at) < FAILURE_MEMORY)
    }

    /// How hard this address presses, coarsely (0 for none, then about
    /// log2 of its recent refusals and failures), so addresses that press
    /// alike are served in arrival order.
    pub(super) fn pressure_level(&self, now: Instant) -> u8 {
        let pressure = self.pressure_now(now);
        if pressure < 0.5 {
            0
        } else {
            (1.0 + pressure.log2().max(0.0)).min(f64::from(u8::MAX)) as u8
        }
    }

    fn pressure_now(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.pressure_at);
        self.pressure * 0.5f64.powf(elapsed.as_secs_f64() / PRESSURE_HALF_LIFE.as_secs_f64())
    }

    fn press(&mut self, now: Instant) {
        self.pressure = self.pressure_now(now) + 1.0;
        self.pressure_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::super::credentials::header;
    use super::super::remembered::Remembered;
    use super::*;

    fn tags(count: usize) -> (Tag, Vec<Tag>) {
        let remembered = Remembered::new().unwrap();
        let right = remembered.tag(&header("prometheus", "right"));
        let guesses = (0..count)
            .map(|n| remembered.tag(&header("prometheus", &format!("guess-{n}"))))
            .collect();
        (right, guesses)
    }

    fn address(n: usize) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 + n as u32))
    }

    #[test]
    fn a_guess_presented_once_does_not_push_out_a_credential_presented_twice() {
        let (right, guesses) = tags(100_000);
        let start = Instant::now();
        let mut sources = Sources::default();
        let here = address(1);
        assert!(!sources.get(here, start).present(right, start, true));
        assert!(sources.get(here, start).present(right, start, true));
        // Two scrape intervals of 60 s of fresh guesses from the same address.
        for (n, guess) in guesses.iter().enumerate() {
            let now = start + Duration::from_millis(n as u64 * 120_000 / 100_000);
            assert!(!sources.get(here, now).present(*guess, now, true));
        }
        let later = start + Duration::from_secs(120);
        assert!(sources.get(here, later).present(right, later, true));
    }

    #[test]
    fn a_credential_presented_once_outlasts_a_flood_from_other_addresses() {
        let (right, guesses) = tags(100_000);
        let start = Instant::now();
        let mut sources = Sources::default();
        let prometheus = address(1);
        assert!(!sources.get(prometheus, start).present(right, start, true));
        for (n, guess) in guesses.iter().enumerate() {
            let now = start + Duration::from_millis(n as u64 * 120_000 / 100_000);
            let botnet = address(1000 + n % 200);
            sources.get(botnet, now).present(*guess, now, true);
            sources.get(botnet, now).refused(now);
        }
        let later = start + Duration::from_secs(120);
        assert!(sources.get(prometheus, later).present(right, later, true));
        assert_eq!(sources.get(prometheus, later).pressure_level(later), 0);
    }

    #[test]
    fn a_troubled_connection_only_counts_credentials_already_known() {
        let (right, guesses) = tags(1);
        let now = Instant::now();
        let mut source = Source::new(now);
        assert!(!source.present(guesses[0], now, false));
        assert!(!source.present(guesses[0], now, false));
        assert!(source.presented.is_empty());
        assert!(!source.present(right, now, true));
        assert!(source.present(right, now, false));
        assert_eq!(source.presented[0].times, 2);
    }

    #[test]
    fn credentials_presented_twice_are_protected_for_a_while_not_forever() {
        let (_, guesses) = tags(2 * PRESENTED_PER_SOURCE + 1);
        let start = Instant::now();
        let mut source = Source::new(start);
        for tag in &guesses[..PRESENTED_PER_SOURCE] {
            source.present(*tag, start, true);
            source.present(*tag, start, true);
        }
        // Full of protected credentials: a newcomer is not remembered...
        let newcomer = guesses[PRESENTED_PER_SOURCE];
        assert!(!source.present(newcomer, start, true));
        assert!(!source.present(newcomer, start, true));
        assert!(
            guesses[..PRESENTED_PER_SOURCE]
                .iter()
                .all(|tag| source.presented.iter().any(|p| p.tag == *tag))
        );
        // ...until they have not been presented for PROTECTED_FOR.
        let later = start + PROTECTED_FOR + Duration::from_secs(1);
        assert!(!source.present(newcomer, later, true));
        assert!(source.present(newcomer, later, true));
        assert_eq!(source.presented.len(), PRESENTED_PER_SOURCE);
    }

    #[test]
    fn failures_are_recent_and_pressure_fades() {
        let start = Instant::now();
        let mut source = Source::new(start);
        assert!(!source.failing(start));
        assert_eq!(source.pressure_level(start), 0);
        source.failed(start);
        for _ in 0..1023 {
            source.refused(start);
        }
        assert!(source.failing(start));
        assert_eq!(source.pressure_level(start), 11);
        let later = start + FAILURE_MEMORY;
        assert!(!source.failing(later));
        // Ten half-lives: 1024 -> 1.
        assert_eq!(source.pressure_level(start + PRESSURE_HALF_LIFE * 10), 1);
        assert_eq!(source.pressure_level(start + PRESSURE_HALF_LIFE * 20), 0);
    }

    #[test]
    fn addresses_stay_bounded_and_a_recently_seen_one_stays() {
        let (right, _) = tags(0);
        let now = Instant::now();
        let mut sources = Sources::default();
        sources.get(address(0), now).present(right, now, true);
        for n in 1..5 * GENERATION {
            sources.get(address(n), now);
            // Seen again once per generation: kept.
            if n % (GENERATION / 2) == 0 {
                assert!(sources.get(address(0), now).present(right, now, true));
            }
        }
        assert!(sources.len() <= 2 * GENERATION);
        assert!(sources.get(address(0), now).present(right, now, true));
    }
}
