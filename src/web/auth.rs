//! Who may use the HTTP server, and what letting them in may cost: basic auth
//! that a flood of password guesses cannot turn into a denial of service,
//! the exporter-toolkit's `rate_limit`, and the counters that show an
//! operator when requests are refused.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), so checking
//! every request's password would let whoever sends the most requests own
//! the exporter's CPU. Two things keep that from happening:
//!
//! - [`BasicAuth`] remembers credentials it has verified, keyed by user and
//!   an HMAC-SHA256 of the password under a random key drawn when the web
//!   config loads (the password itself is never stored). Prometheus' scrapes
//!   then cost a hash, not a bcrypt. Only successes are remembered, so
//!   guesses cannot push Prometheus out, and a reload starts a new cache.
//! - [`BcryptBudget`] runs the bcrypt checks of everything else on a few
//!   threads of its own (half the CPUs), with a short queue and one check at
//!   a time per client address. Past that a request is refused at once
//!   (429), so guesses never hold the request slots, the async threads or
//!   the blocking pool the collection runs on. An unknown user is checked
//!   against a decoy hash of the same cost, so it takes as long as a wrong
//!   password.

use crate::model::NAMESPACE;
use base64::Engine;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use ring::hmac;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How many verified credentials are remembered. Only right passwords get
/// in, so this is a bound on (user, password) pairs in use, not on guesses.
const VERIFIED_CACHE_SIZE: usize = 64;
/// Queued checks per bcrypt thread: at a quarter of a second each, a check
/// that gets a place waits about a second at most.
const QUEUE_PER_THREAD: usize = 4;

/// A user name and password from an `Authorization: Basic` header.
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    /// Decodes a header value; `None` unless it is well-formed basic auth.
    pub fn from_header(value: &[u8]) -> Option<Credentials> {
        let text = std::str::from_utf8(value).ok()?;
        let (scheme, encoded) = text.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

/// The `basic_auth_users` of one loaded web config, with the credentials
/// verified under it. A reload builds a new one, which drops the cache.
pub struct BasicAuth {
    /// user -> bcrypt hash
    users: BTreeMap<String, String>,
    /// Checked when the user is unknown, so a wrong name costs as long as a
    /// wrong password and timing does not reveal which names exist.
    decoy_hash: String,
    verified: VerifiedCache,
}

impl BasicAuth {
    /// Slow: hashes the decoy with bcrypt at the cost of the first user's
    /// hash. `users` must hold bcrypt hashes (the web config checks that).
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, String> {
        let cost = users
            .values()
            .next()
            .and_then(|hash| hash.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |parts| parts.get_cost());
        let decoy_hash = bcrypt::hash("decoy", cost).map_err(|err| format!("bcrypt: {err}"))?;
        Ok(BasicAuth {
            users,
            decoy_hash,
            verified: VerifiedCache::new()?,
        })
    }

    /// Fast: were these credentials verified before (under this config)?
    pub fn is_verified(&self, credentials: &Credentials) -> bool {
        self.verified.contains(credentials)
    }

    /// Slow by design (bcrypt): run it on a [`BcryptBudget`] thread. Right
    /// credentials are remembered, so [`BasicAuth::is_verified`] says yes
    /// to them from now on.
    pub fn verify(&self, credentials: &Credentials) -> bool {
        let (hash, known) = match self.users.get(&credentials.user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy_hash.as_str(), false),
        };
        let right = bcrypt::verify(credentials.password.as_bytes(), hash).unwrap_or(false) && known;
        if right {
            self.verified.insert(credentials);
        }
        right
    }
}

/// Verified (user, HMAC of password) pairs, oldest first.
struct VerifiedCache {
    /// Drawn at load, never leaves memory: the tags cannot be checked
    /// against guesses offline, and differ from one config load to the next.
    key: hmac::Key,
    entries: Mutex<VecDeque<(String, hmac::Tag)>>,
}

impl VerifiedCache {
    fn new() -> Result<VerifiedCache, String> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .map_err(|_| "cannot draw a random key for the credential cache".to_string())?;
        Ok(VerifiedCache {
            key,
            entries: Mutex::new(VecDeque::with_capacity(VERIFIED_CACHE_SIZE)),
        })
    }

    fn tag(&self, credentials: &Credentials) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        // The length first, so ("ab", "c") and ("a", "bc") differ.
        context.update(&(credentials.user.len() as u64).to_le_bytes());
        context.update(credentials.user.as_bytes());
        context.update(credentials.password.as_bytes());
        context.sign()
    }

    fn contains(&self, credentials: &Credentials) -> bool {
        let tag = self.tag(credentials);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .any(|(user, known)| *user == credentials.user && known.as_ref() == tag.as_ref())
    }

    fn insert(&self, credentials: &Credentials) {
        let tag = self.tag(credentials);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries
            .iter()
            .any(|(user, known)| *user == credentials.user && known.as_ref() == tag.as_ref())
        {
            return;
        }
        if entries.len() == VERIFIED_CACHE_SIZE {
            entries.pop_front();
        }
        entries.push_back((credentials.user.clone(), tag));
    }
}

/// The budget is spent: no bcrypt check was started for this request.
#[derive(Debug, PartialEq, Eq)]
pub struct BudgetSpent;

/// A few threads that run bcrypt checks, with a short queue in front.
/// Whatever does not fit is refused at once instead of waiting, so a flood
/// of guesses costs at most these threads' CPU and never queues in front of
/// anything else.
pub struct BcryptBudget {
    queue: SyncSender<Check>,
    /// One check queued or running per client address at a time.
    per_client: PerClientLimit,
}

/// One bcrypt check waiting for a thread.
struct Check {
    auth: Arc<BasicAuth>,
    credentials: Credentials,
    verdict: oneshot::Sender<bool>,
    /// Held until the check ends, so its client may queue another.
    _client: ClientShare,
}

impl BcryptBudget {
    /// Half the CPUs (at least one) check passwords, so the collection and
    /// the scrapes of verified clients always have the other half.
    pub fn for_this_machine() -> std::io::Result<BcryptBudget> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cpus / 2).max(1);
        BcryptBudget::start(threads, threads * QUEUE_PER_THREAD)
    }

    /// `threads` bcrypt threads (named `bcrypt-N`) and room for `queued`
    /// checks waiting for one.
    pub fn start(threads: usize, queued: usize) -> std::io::Result<BcryptBudget> {
        let (queue, checks) = std::sync::mpsc::sync_channel(queued);
        let checks = Arc::new(Mutex::new(checks));
        for number in 0..threads.max(1) {
            let checks = Arc::clone(&checks);
            std::thread::Builder::new()
                .name(format!("bcrypt-{number}"))
                .spawn(move || run_checks(&checks))?;
        }
        Ok(BcryptBudget {
            queue,
            per_client: PerClientLimit::new(1),
        })
    }

    /// Verifies `credentials` on a bcrypt thread, or refuses at once when
    /// `client` already has a check under way or no place is free.
    pub async fn check(
        &self,
        auth: Arc<BasicAuth>,
        credentials: Credentials,
        client: IpAddr,
    ) -> Result<bool, BudgetSpent> {
        let claim = self.per_client.take(client).ok_or(BudgetSpent)?;
        let (verdict, answer) = oneshot::channel();
        let check = Check {
            auth,
            credentials,
            verdict,
            _client: claim,
        };
        match self.queue.try_send(check) {
            Ok(()) => Ok(answer.await.unwrap_or(false)),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(BudgetSpent),
        }
    }
}

/// A bcrypt thread: runs checks until the budget is dropped.
fn run_checks(checks: &Mutex<Receiver<Check>>) {
    loop {
        let next = checks.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok(check) = next else { return };
        // The client gave up while the check waited: spend nothing on it.
        if check.verdict.is_closed() {
            continue;
        }
        let verdict = check.auth.verify(&check.credentials);
        let _ = check.verdict.send(verdict);
    }
}

/// At most `limit` of something (a bcrypt check, a request slot) held by
/// one client address at a time, so a single source cannot take it all.
pub struct PerClientLimit {
    limit: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClientLimit {
    pub fn new(limit: usize) -> PerClientLimit {
        PerClientLimit {
            limit: limit.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A share for the client at `address`, unless it holds `limit` already.
    pub fn take(&self, address: IpAddr) -> Option<ClientShare> {
        let client = client_of(address);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let count = held.entry(client).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientShare {
            client,
            held: Arc::clone(&self.held),
        })
    }
}

/// One client's share of a [`PerClientLimit`], given back when dropped.
pub struct ClientShare {
    client: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// One client, as far as an address tells: an IPv4 address, or an IPv6
/// /64 (one host usually holds a whole /64).
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// The toolkit's `rate_limit`: a token bucket over all requests together,
/// `burst` deep, refilled with one token every `interval`. It caps the work
/// the server accepts, Prometheus' scrapes included; it is not what keeps
/// Prometheus in under a flood (the cache and the budget are).
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

/// Why a request was turned away before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `--web.max-requests` requests were already being served, or half of
    /// them for the request's client address (503).
    MaxRequests,
    /// Its credentials needed a bcrypt check and the budget was spent (429).
    AuthBudget,
    /// The web config's `rate_limit` had no token left (429).
    RateLimit,
}

impl Rejection {
    const ALL: [Rejection; 3] = [
        Rejection::MaxRequests,
        Rejection::AuthBudget,
        Rejection::RateLimit,
    ];

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MaxRequests => "max_requests",
            Rejection::AuthBudget => "auth_budget",
            Rejection::RateLimit => "rate_limit",
        }
    }
}

/// The counters that let an operator see an attack, or a limit set too low.
pub struct HttpCounters {
    auth_failures: IntCounter,
    rejected: IntCounterVec,
}

impl HttpCounters {
    /// Creates the counters, every reason at 0, and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<HttpCounters> {
        let auth_failures = IntCounter::with_opts(
            Opts::new(
                "http_auth_failures_total",
                "HTTP requests answered 401: missing, malformed or wrong basic-auth credentials.",
            )
            .namespace(NAMESPACE),
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "http_requests_rejected_total",
                "HTTP requests turned away before being served, by reason: max_requests (503: --web.max-requests in all, or half of it from one address), auth_budget (429: the bcrypt budget for unverified credentials was spent), rate_limit (429).",
            )
            .namespace(NAMESPACE),
            &["reason"],
        )?;
        for rejection in Rejection::ALL {
            rejected.with_label_values(&[rejection.reason()]);
        }
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(HttpCounters {
            auth_failures,
            rejected,
        })
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn rejected(&self, rejection: Rejection) {
        self.rejected.with_label_values(&[rejection.reason()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> Credentials {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Credentials::from_header(format!("Basic {encoded}").as_bytes()).unwrap()
    }

    /// Cost 4, the cheapest bcrypt allows, to keep the tests fast.
    fn alice() -> Arc<BasicAuth> {
        let hash = bcrypt::hash("secret", 4).unwrap();
        Arc::new(BasicAuth::new([("alice".to_string(), hash)].into()).unwrap())
    }

    #[test]
    fn basic_auth_checks_name_and_password() {
        let auth = alice();
        assert!(auth.verify(&header("alice", "secret")));
        assert!(!auth.verify(&header("alice", "wrong")));
        assert!(!auth.verify(&header("mallory", "secret")));
        assert!(Credentials::from_header(b"Bearer x").is_none());
        assert!(Credentials::from_header(b"Basic !!!").is_none());
        assert!(Credentials::from_header(b"Basic bm9jb2xvbg==").is_none()); // "nocolon"
    }

    #[test]
    fn only_verified_credentials_are_remembered() {
        let auth = alice();
        assert!(!auth.is_verified(&header("alice", "secret")));
        assert!(!auth.verify(&header("alice", "wrong")));
        assert!(!auth.is_verified(&header("alice", "wrong")));
        assert!(auth.verify(&header("alice", "secret")));
        assert!(auth.is_verified(&header("alice", "secret")));
        assert!(!auth.is_verified(&header("alice", "secret2")));
        // A reload builds a new BasicAuth: nothing carries over.
        assert!(!alice().is_verified(&header("alice", "secret")));
    }

    #[test]
    fn the_cache_keeps_tags_not_passwords_and_stays_bounded() {
        let auth = alice();
        for n in 0..VERIFIED_CACHE_SIZE + 10 {
            auth.verified.insert(&header("alice", &format!("p{n}")));
        }
        let entries = auth.verified.entries.lock().unwrap();
        assert_eq!(entries.len(), VERIFIED_CACHE_SIZE);
        assert!(entries.iter().all(|(_, tag)| tag.as_ref().len() == 32));
        // The oldest went first.
        drop(entries);
        assert!(!auth.is_verified(&header("alice", "p0")));
        assert!(auth.is_verified(&header("alice", &format!("p{}", VERIFIED_CACHE_SIZE + 9))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_budget_refuses_at_once_when_spent() {
        let auth = alice();
        // One thread and a queue of one.
        let budget = BcryptBudget::start(1, 1).unwrap();
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let there: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(
            budget
                .check(Arc::clone(&auth), header("alice", "secret"), here)
                .await,
            Ok(true)
        );
        assert_eq!(
            budget
                .check(Arc::clone(&auth), header("alice", "wrong"), there)
                .await,
            Ok(false)
        );
        // Two checks at once from one client: the second is refused.
        let first = budget.check(Arc::clone(&auth), header("alice", "x"), here);
        let second = budget.check(Arc::clone(&auth), header("alice", "y"), here);
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first, second), (Ok(false), Err(BudgetSpent)));
    }

    #[test]
    fn a_client_holds_at_most_its_limit() {
        let limit = PerClientLimit::new(2);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (limit.take(here).unwrap(), limit.take(here).unwrap());
        assert!(limit.take(here).is_none());
        assert!(limit.take("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        let c = limit.take(here).unwrap();
        drop((b, c));
        assert!(limit.held.lock().unwrap().is_empty(), "nothing left behind");
    }

    #[test]
    fn one_client_is_an_ipv4_address_or_an_ipv6_64() {
        let v6 = |text: &str| client_of(text.parse().unwrap());
        assert_eq!(v6("2001:db8::1"), v6("2001:db8::ffff:1"));
        assert_ne!(v6("2001:db8::1"), v6("2001:db8:0:1::1"));
        assert_eq!(v6("::ffff:192.0.2.1"), v6("192.0.2.1"));
        assert_ne!(v6("192.0.2.1"), v6("192.0.2.2"));
    }

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

    #[test]
    fn every_reason_exists_from_the_start() {
        let registry = Registry::new();
        let counters = HttpCounters::register(&registry).unwrap();
        counters.rejected(Rejection::AuthBudget);
        let families = registry.gather();
        let rejected = families
            .iter()
            .find(|f| f.name() == "unassigned_port_http_requests_rejected_total")
            .unwrap();
        let reasons: Vec<(String, f64)> = rejected
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("auth_budget".to_string(), 1.0),
                ("max_requests".to_string(), 0.0),
                ("rate_limit".to_string(), 0.0)
            ]
        );
        assert!(
            families
                .iter()
                .any(|f| f.name() == "unassigned_port_http_auth_failures_total")
        );
    }
}
