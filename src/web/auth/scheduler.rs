//! The bcrypt scheduler: who gets a bcrypt check, and when, while a flood
//! of password guesses wants them all.
//!
//! bcrypt is slow on purpose (a quarter of a second at cost 12), so the
//! checks run on a few threads of their own (half the CPUs) with a short
//! queue in front; everything else is answered at once. In order:
//!
//! 1. A verdict remembered under the config in force answers at once (see
//!    [`super::remembered`]): a password is checked at most once while it is
//!    remembered, right or wrong.
//! 2. Credentials whose check is queued or running wait for that check
//!    instead of starting another.
//! 3. Otherwise the request asks for a check, ranked by what it has shown:
//!    first credentials presented before (on this connection, or from this
//!    address: a scraper repeats its password, a brute-forcer never repeats
//!    a guess), then fresh credentials on a connection with nothing refused
//!    or wrong yet, last fresh ones on a connection that has had a 429 or a
//!    401 (a guesser's). Within each, addresses without a wrong password in
//!    the last ten minutes go first, then those pressing least (fewest
//!    recent refusals and failures), then arrival order. No check waits
//!    longer than [`MAX_WAIT`] for a thread.
//! 4. While the threads are busy, a guesser's fresh credentials are refused
//!    at once (429, `auth_guessing`); each address gets one check of each
//!    kind at a time (`auth_client_busy`); a full queue takes a newcomer only
//!    by pushing out a lower-ranked waiter (`auth_displaced` for the one
//!    pushed out, `auth_budget` for a newcomer that ranks no higher, and
//!    for a waiter still without a thread after [`MAX_WAIT`]).
//!
//! So at a cold start under a flood, Prometheus' first scrape is queued
//! ahead of the guesses (its connection is clean, its address quiet), and
//! if it is refused all the same (a flood from its own address, on fresh
//! connections), its next scrape goes first as a repeat. Guesses still get
//! the threads whenever nothing better waits: the budget is never idle for
//! want of a better client, and never more than its threads.

use super::basic::BasicAuth;
use super::client_limit::client_of;
use super::connection::ConnectionRecord;
use super::counters::Rejection;
use super::credentials::Credentials;
use super::remembered::Tag;
use super::sources::Sources;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Queued checks per bcrypt thread: at a quarter of a second each, a check
/// that gets a place waits about a second at most.
const QUEUE_PER_THREAD: usize = 4;
/// A queued check still waiting for a thread after this long is answered
/// 429: better-ranked checks kept coming.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// A check's answer: right or wrong, or why no check ran for it.
type Verdict = Result<bool, Rejection>;

/// The threads, their queue and what they know about sources; it outlives
/// config reloads (each check carries the config it was asked under).
pub struct BcryptScheduler {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes a thread when a check is queued (or the scheduler stops).
    work: Condvar,
}

/// What the scheduler decides on, under one lock.
struct State {
    /// Checks that may run at once.
    threads: usize,
    /// Checks that may wait.
    capacity: usize,
    waiting: Vec<Job>,
    running: Vec<Running>,
    /// (client, kind) with a check queued or running: one each at a time.
    busy: HashSet<Lane>,
    sources: Sources,
    /// Arrival order, and the id of each check.
    next_seq: u64,
    stopping: bool,
}

/// What a request has shown, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    /// Credentials presented before, on this connection or from this address.
    Repeat,
    /// New credentials on a connection with nothing refused or wrong yet.
    Fresh,
    /// New credentials on a connection that has had a 429 or a 401.
    Guess,
}

/// A check's place in the queue: smaller goes first. Worked out afresh
/// whenever the queue is ordered, from what its address has shown by then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    kind: Kind,
    /// A password from the address was wrong in the last ten minutes.
    failing: bool,
    /// See [`super::sources::Source::pressure_level`].
    pressure: u8,
    /// Arrival order among equals.
    seq: u64,
}

type Lane = (IpAddr, Kind);

/// Which credentials under which config: equal keys share one check.
type JobKey = (usize, Tag);

/// A check waiting for a thread.
struct Job {
    key: JobKey,
    auth: Arc<BasicAuth>,
    credentials: Credentials,
    /// The best kind among those waiting for it.
    kind: Kind,
    seq: u64,
    /// The client and kind of the request that asked for it.
    lane: Lane,
    queued_at: Instant,
    /// Everyone waiting for this verdict: the request that asked, and any
    /// that presented the same credentials meanwhile.
    listeners: Vec<oneshot::Sender<Verdict>>,
}

impl Job {
    /// Someone still waits for it (a client that hung up waits no more).
    fn wanted(&self) -> bool {
        self.listeners.iter().any(|listener| !listener.is_closed())
    }
}

/// A check a thread is running.
struct Running {
    id: u64,
    key: JobKey,
    lane: Lane,
    listeners: Vec<oneshot::Sender<Verdict>>,
}

/// What [`BcryptScheduler::submit`] decided.
enum Submitted {
    /// Remembered after all (it was checked meanwhile).
    Known(bool),
    /// Queued, or joined a check of the same credentials.
    Waiting(oneshot::Receiver<Verdict>),
    Refused(Rejection),
}

impl BcryptScheduler {
    /// Half the CPUs (at least one) check passwords, so the collection and
    /// the scrapes of verified clients always have the other half.
    pub fn for_this_machine() -> std::io::Result<BcryptScheduler> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cpus / 2).max(1);
        BcryptScheduler::start(threads, threads * QUEUE_PER_THREAD)
    }

    /// `threads` bcrypt threads (named `bcrypt-N`) and room for `queued`
    /// checks waiting for one.
    pub fn start(threads: usize, queued: usize) -> std::io::Result<BcryptScheduler> {
        let scheduler = BcryptScheduler::without_threads(threads, queued);
        for number in 0..threads.max(1) {
            let shared = Arc::clone(&scheduler.shared);
            std::thread::Builder::new()
                .name(format!("bcrypt-{number}"))
                .spawn(move || while work(&shared, true) {})?;
        }
        Ok(scheduler)
    }

    /// Schedules as if `threads` threads ran checks, but none does: the
    /// caller runs them one by one ([`BcryptScheduler::run_next`]), so a
    /// test decides when each check ends.
    fn without_threads(threads: usize, queued: usize) -> BcryptScheduler {
        BcryptScheduler {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    threads: threads.max(1),
                    capacity: queued.max(1),
                    waiting: Vec::new(),
                    running: Vec::new(),
                    busy: HashSet::new(),
                    sources: Sources::default(),
                    next_seq: 0,
                    stopping: false,
                }),
                work: Condvar::new(),
            }),
        }
    }

    /// Right (`Ok(true)`) or wrong (`Ok(false)`) credentials, checked with
    /// bcrypt at most once while the verdict is remembered; `Err` when no
    /// check could be had for them (answer 429).
    pub async fn check(
        &self,
        auth: &Arc<BasicAuth>,
        credentials: Credentials,
        address: IpAddr,
        connection: &ConnectionRecord,
    ) -> Result<bool, Rejection> {
        let tag = auth.tag(&credentials);
        let client = client_of(address);
        let verdict = match auth.outcome(tag) {
            // Prometheus' scrapes end here, without the scheduler's lock.
            Some(true) => return Ok(true),
            Some(false) => Ok(false),
            None => match self.submit(auth, credentials, tag, client, connection, Instant::now()) {
                Submitted::Known(known) => Ok(known),
                Submitted::Refused(rejection) => Err(rejection),
                Submitted::Waiting(answer) => answer.await.unwrap_or(Err(Rejection::AuthBudget)),
            },
        };
        self.settle(client, connection, verdict, Instant::now());
        verdict
    }

    /// Ranks the request and queues a check for it, joins a check of the
    /// same credentials, or refuses it at once.
    fn submit(
        &self,
        auth: &Arc<BasicAuth>,
        credentials: Credentials,
        tag: Tag,
        client: IpAddr,
        connection: &ConnectionRecord,
        now: Instant,
    ) -> Submitted {
        let mut state = self.lock();
        if let Some(known) = auth.outcome(tag) {
            return Submitted::Known(known);
        }
        state.drop_unwanted(now);
        let troubled = connection.has_trouble();
        // Both note the presentation: no short cut.
        let on_this_connection = connection.present(tag);
        let from_this_address = state.sources.get(client, now).present(tag, now, !troubled);
        let kind = if on_this_connection || from_this_address {
            Kind::Repeat
        } else if troubled {
            Kind::Guess
        } else {
            Kind::Fresh
        };
        let seq = state.next_seq();
        let key = (Arc::as_ptr(auth) as usize, tag);
        let (listener, answer) = oneshot::channel();
        if let Some(job) = state.waiting.iter_mut().find(|job| job.key == key) {
            job.listeners.push(listener);
            job.kind = job.kind.min(kind);
            return Submitted::Waiting(answer);
        }
        if let Some(running) = state.running.iter_mut().find(|run| run.key == key) {
            running.listeners.push(listener);
            return Submitted::Waiting(answer);
        }
        let contended = state.running.len() + state.waiting.len() >= state.threads;
        if contended && kind == Kind::Guess {
            return Submitted::Refused(Rejection::AuthGuessing);
        }
        let lane = (client, kind);
        if state.busy.contains(&lane) {
            return Submitted::Refused(Rejection::AuthClientBusy);
        }
        if state.waiting.len() >= state.capacity {
            let rank = state.rank(kind, client, seq, now);
            let (worst, worst_rank) = state
                .waiting
                .iter()
                .enumerate()
                .map(|(index, job)| (index, state.rank(job.kind, job.lane.0, job.seq, now)))
                .max_by_key(|&(_, rank)| rank)
                .expect("the queue is full");
            if worst_rank < rank {
                return Submitted::Refused(Rejection::AuthBudget);
            }
            let displaced = state.waiting.swap_remove(worst);
            state.busy.remove(&displaced.lane);
            for listener in displaced.listeners {
                let _ = listener.send(Err(Rejection::AuthDisplaced));
            }
        }
        state.busy.insert(lane);
        state.waiting.push(Job {
            key,
            auth: Arc::clone(auth),
            credentials,
            kind,
            seq,
            lane,
            queued_at: now,
            listeners: vec![listener],
        });
        drop(state);
        self.shared.work.notify_one();
        Submitted::Waiting(answer)
    }

    /// Notes what a request's outcome says about its connection and
    /// address: a wrong password is a failure, a refusal is pressure.
    fn settle(
        &self,
        client: IpAddr,
        connection: &ConnectionRecord,
        verdict: Verdict,
        now: Instant,
    ) {
        match verdict {
            Ok(true) => {}
            Ok(false) => {
                connection.troubled();
                self.lock().sources.get(client, now).failed(now);
            }
            Err(_) => {
                connection.troubled();
                self.lock().sources.get(client, now).refused(now);
            }
        }
    }

    /// Runs the best waiting check on the calling thread; false when none
    /// waits. For tests, with [`BcryptScheduler::without_threads`].
    #[cfg(test)]
    fn run_next(&self) -> bool {
        work(&self.shared, false)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for BcryptScheduler {
    /// The threads end once their check does; waiting requests hear 429.
    fn drop(&mut self) {
        let mut state = self.lock();
        state.stopping = true;
        state.waiting.clear();
        drop(state);
        self.shared.work.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Where a check of `kind` asked for by `client` stands now.
    fn rank(&self, kind: Kind, client: IpAddr, seq: u64, now: Instant) -> Rank {
        let (failing, pressure) = self.sources.peek(client).map_or((false, 0), |source| {
            (source.failing(now), source.pressure_level(now))
        });
        Rank {
            kind,
            failing,
            pressure,
            seq,
        }
    }

    /// Forgets checks nobody waits for any more, and answers 429 to those
    /// that waited [`MAX_WAIT`], freeing their places.
    fn drop_unwanted(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.waiting.len() {
            let job = &self.waiting[index];
            let expired = now.saturating_duration_since(job.queued_at) >= MAX_WAIT;
            if job.wanted() && !expired {
                index += 1;
                continue;
            }
            let job = self.waiting.swap_remove(index);
            self.busy.remove(&job.lane);
            for listener in job.listeners {
                let _ = listener.send(Err(Rejection::AuthBudget));
            }
        }
    }
}

/// One bcrypt check: the best-ranked waiting one, waiting for one first
/// when `block`. False when the scheduler stops (or, not blocking, when no
/// check waits).
fn work(shared: &Shared, block: bool) -> bool {
    let mut state = shared.lock();
    let best = loop {
        if state.stopping {
            return false;
        }
        let now = Instant::now();
        state.drop_unwanted(now);
        if let Some((best, _)) = state
            .waiting
            .iter()
            .enumerate()
            .map(|(index, job)| (index, state.rank(job.kind, job.lane.0, job.seq, now)))
            .min_by_key(|&(_, rank)| rank)
        {
            break best;
        }
        if !block {
            return false;
        }
        state = shared.work.wait(state).unwrap_or_else(|p| p.into_inner());
    };
    let job = state.waiting.swap_remove(best);
    let id = job.seq;
    state.running.push(Running {
        id,
        key: job.key,
        lane: job.lane,
        listeners: job.listeners,
    });
    drop(state);
    let right = job.auth.verify(&job.credentials, job.key.1);
    let mut state = shared.lock();
    let index = state
        .running
        .iter()
        .position(|run| run.id == id)
        .expect("a running check stays listed until it ends");
    let done = state.running.swap_remove(index);
    // The lane is free before anyone hears the verdict, so a client's next
    // request never finds its own finished check in the way.
    state.busy.remove(&done.lane);
    drop(state);
    for listener in done.listeners {
        let _ = listener.send(Ok(right));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::basic::alice;
    use super::super::credentials::header;
    use super::*;

    /// One request, as the server makes it, on `connection` from `address`.
    struct Request<'a> {
        scheduler: &'a BcryptScheduler,
        auth: &'a Arc<BasicAuth>,
    }

    impl Request<'_> {
        fn submit(&self, password: &str, address: &str, connection: &ConnectionRecord) -> Pending {
            let credentials = header("alice", password);
            let tag = self.auth.tag(&credentials);
            let client = client_of(address.parse().unwrap());
            match self.auth.outcome(tag) {
                Some(known) => Pending::Done(Ok(known)),
                None => match self.scheduler.submit(
                    self.auth,
                    credentials,
                    tag,
                    client,
                    connection,
                    Instant::now(),
                ) {
                    Submitted::Known(known) => Pending::Done(Ok(known)),
                    Submitted::Refused(rejection) => Pending::Done(Err(rejection)),
                    Submitted::Waiting(answer) => Pending::Waiting(answer),
                },
            }
        }

        /// Submits, and notes the outcome as `check` does once it is known.
        fn settle(
            &self,
            pending: &mut Pending,
            address: &str,
            connection: &ConnectionRecord,
        ) -> Option<Verdict> {
            let verdict = pending.poll()?;
            let client = client_of(address.parse().unwrap());
            self.scheduler
                .settle(client, connection, verdict, Instant::now());
            Some(verdict)
        }
    }

    enum Pending {
        Done(Verdict),
        Waiting(oneshot::Receiver<Verdict>),
    }

    impl Pending {
        /// The verdict if there is one yet.
        fn poll(&mut self) -> Option<Verdict> {
            match self {
                Pending::Done(verdict) => Some(*verdict),
                Pending::Waiting(answer) => match answer.try_recv() {
                    Ok(verdict) => Some(verdict),
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    Err(oneshot::error::TryRecvError::Closed) => Some(Err(Rejection::AuthBudget)),
                },
            }
        }
    }

    /// `times` requests from `address` refused, as `check` notes them.
    fn press(scheduler: &BcryptScheduler, address: &str, times: usize) {
        let client = client_of(address.parse().unwrap());
        for _ in 0..times {
            scheduler.settle(
                client,
                &ConnectionRecord::new(),
                Err(Rejection::AuthBudget),
                Instant::now(),
            );
        }
    }

    #[test]
    fn among_equals_the_first_come_goes_first() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 2);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let mut first = request.submit("a", "198.51.100.1", &ConnectionRecord::new());
        let mut second = request.submit("b", "198.51.100.2", &ConnectionRecord::new());
        let mut third = request.submit("secret", HERE, &ConnectionRecord::new());
        assert_eq!(third.poll(), Some(Err(Rejection::AuthBudget)));
        assert!(scheduler.run_next());
        assert_eq!((first.poll(), second.poll()), (Some(Ok(false)), None));
        assert!(scheduler.run_next());
        assert_eq!(second.poll(), Some(Ok(false)));
    }

    #[test]
    fn no_check_waits_longer_than_max_wait() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let mut waiting = request.submit("secret", HERE, &ConnectionRecord::new());
        let later = Instant::now() + MAX_WAIT;
        scheduler.lock().drop_unwanted(later);
        assert_eq!(waiting.poll(), Some(Err(Rejection::AuthBudget)));
        assert!(!scheduler.run_next());
    }

    const HERE: &str = "192.0.2.1";
    const THERE: &str = "192.0.2.2";

    /// Kept from the budget it replaces, made deterministic: no thread runs
    /// checks, the test does, so nothing depends on which thread finishes
    /// first.
    #[test]
    fn the_budget_refuses_at_once_when_spent() {
        let auth = alice();
        // One thread and a queue of one.
        let scheduler = BcryptScheduler::without_threads(1, 1);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let (one, two, three) = (
            ConnectionRecord::new(),
            ConnectionRecord::new(),
            ConnectionRecord::new(),
        );
        let mut right = request.submit("secret", HERE, &one);
        assert!(scheduler.run_next());
        assert_eq!(request.settle(&mut right, HERE, &one), Some(Ok(true)));
        let mut wrong = request.submit("wrong", THERE, &two);
        assert!(scheduler.run_next());
        assert_eq!(request.settle(&mut wrong, THERE, &two), Some(Ok(false)));
        // Two checks at once from one client: the second is refused at once.
        let mut first = request.submit("x", HERE, &one);
        let mut second = request.submit("y", HERE, &three);
        assert_eq!(second.poll(), Some(Err(Rejection::AuthClientBusy)));
        // The queue is full: a check ranked no higher is refused at once.
        let mut third = request.submit("z", THERE, &ConnectionRecord::new());
        assert_eq!(third.poll(), Some(Err(Rejection::AuthBudget)));
        assert_eq!(first.poll(), None);
        assert!(scheduler.run_next());
        assert_eq!(first.poll(), Some(Ok(false)));
        assert!(!scheduler.run_next(), "nothing else was queued");
    }

    #[test]
    fn a_password_is_checked_once_while_remembered_right_or_wrong() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        for password in ["wrong", "secret"] {
            let connection = ConnectionRecord::new();
            let mut first = request.submit(password, HERE, &connection);
            assert!(scheduler.run_next());
            let verdict = first.poll();
            for address in [HERE, THERE] {
                let mut again = request.submit(password, address, &ConnectionRecord::new());
                assert_eq!(again.poll(), verdict);
            }
            assert!(!scheduler.run_next(), "{password}: checked twice");
        }
    }

    #[test]
    fn the_same_credentials_at_once_share_one_check() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let mut waiting: Vec<Pending> = (1..=10)
            .map(|n| request.submit("secret", &format!("192.0.2.{n}"), &ConnectionRecord::new()))
            .collect();
        assert!(scheduler.run_next());
        assert!(!scheduler.run_next());
        assert!(
            waiting
                .iter_mut()
                .all(|pending| pending.poll() == Some(Ok(true)))
        );
    }

    #[test]
    fn credentials_presented_before_go_first() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let prometheus = ConnectionRecord::new();
        // Prometheus' first try finds the queue full of better-ranked
        // guesses (its address pressed before: a flood from behind its NAT
        // was refused), and is refused.
        press(&scheduler, HERE, 20);
        let mut guesses: Vec<Pending> = (0..4)
            .map(|n| {
                request.submit(
                    &format!("guess-{n}"),
                    &format!("198.51.100.{n}"),
                    &ConnectionRecord::new(),
                )
            })
            .collect();
        let mut first_try = request.submit("secret", HERE, &prometheus);
        assert_eq!(
            request.settle(&mut first_try, HERE, &prometheus),
            Some(Err(Rejection::AuthBudget))
        );
        // Its second try is a repeat: it pushes out a guess and goes first.
        let mut second_try = request.submit("secret", HERE, &prometheus);
        assert_eq!(
            guesses
                .iter_mut()
                .filter_map(Pending::poll)
                .collect::<Vec<_>>(),
            [Err(Rejection::AuthDisplaced)]
        );
        assert!(scheduler.run_next());
        assert_eq!(second_try.poll(), Some(Ok(true)));
        assert_eq!(guesses.iter_mut().filter_map(|p| p.poll()).count(), 1);
    }

    #[test]
    fn a_repeat_on_a_new_connection_is_known_by_its_address() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 1);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        // The queue holds a fresh guess from a quieter address.
        press(&scheduler, HERE, 20);
        let mut guess = request.submit("guess", THERE, &ConnectionRecord::new());
        let first = ConnectionRecord::new();
        let mut first_try = request.submit("secret", HERE, &first);
        assert_eq!(
            request.settle(&mut first_try, HERE, &first),
            Some(Err(Rejection::AuthBudget))
        );
        // Prometheus reconnects (the server closed the idle connection).
        let mut second_try = request.submit("secret", HERE, &ConnectionRecord::new());
        assert_eq!(guess.poll(), Some(Err(Rejection::AuthDisplaced)));
        assert!(scheduler.run_next());
        assert_eq!(second_try.poll(), Some(Ok(true)));
    }

    #[test]
    fn a_guessers_fresh_guesses_are_refused_while_the_threads_are_busy() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let guesser = ConnectionRecord::new();
        let mut first = request.submit("guess-1", THERE, &guesser);
        assert!(scheduler.run_next());
        assert_eq!(request.settle(&mut first, THERE, &guesser), Some(Ok(false)));
        // Idle threads: even a guesser gets a check.
        let mut idle = request.submit("guess-2", THERE, &guesser);
        assert_eq!(idle.poll(), None);
        // Busy: the guesser's next fresh guess is refused at once, while a
        // first try on a clean connection, even from the same address, waits.
        let mut busy = request.submit("guess-3", THERE, &guesser);
        assert_eq!(busy.poll(), Some(Err(Rejection::AuthGuessing)));
        let mut clean = request.submit("secret", THERE, &ConnectionRecord::new());
        assert_eq!(clean.poll(), None);
        assert!(scheduler.run_next() && scheduler.run_next());
        assert_eq!(
            (idle.poll(), clean.poll()),
            (Some(Ok(false)), Some(Ok(true)))
        );
    }

    #[test]
    fn a_quiet_address_goes_before_a_failing_or_pressing_one() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 2);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        // THERE had a wrong password; 198.51.100.1 was refused many times.
        let mut wrong = request.submit("wrong", THERE, &ConnectionRecord::new());
        assert!(scheduler.run_next());
        request.settle(&mut wrong, THERE, &ConnectionRecord::new());
        press(&scheduler, "198.51.100.1", 100);
        let mut failing = request.submit("f", THERE, &ConnectionRecord::new());
        let mut pressing = request.submit("p", "198.51.100.1", &ConnectionRecord::new());
        // The queue (two places) is full; a quiet address pushes out the
        // failing one and goes first, the pressing one next.
        let mut quiet = request.submit("secret", HERE, &ConnectionRecord::new());
        assert_eq!(failing.poll(), Some(Err(Rejection::AuthDisplaced)));
        assert!(scheduler.run_next());
        assert_eq!((quiet.poll(), pressing.poll()), (Some(Ok(true)), None));
        assert!(scheduler.run_next());
        assert_eq!(pressing.poll(), Some(Ok(false)));
    }

    #[test]
    fn a_queued_check_ranks_by_what_its_address_shows_now() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 1);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        // Queued while its address was quiet...
        let mut early = request.submit("guess", THERE, &ConnectionRecord::new());
        // ...which then pressed hard (its other requests refused).
        for n in 0..100 {
            let mut refused = request.submit(&format!("more-{n}"), THERE, &ConnectionRecord::new());
            assert_eq!(
                request.settle(&mut refused, THERE, &ConnectionRecord::new()),
                Some(Err(Rejection::AuthClientBusy))
            );
        }
        // A quiet address arriving later goes first.
        let mut quiet = request.submit("secret", HERE, &ConnectionRecord::new());
        assert_eq!(early.poll(), Some(Err(Rejection::AuthDisplaced)));
        assert!(scheduler.run_next());
        assert_eq!(quiet.poll(), Some(Ok(true)));
    }

    #[test]
    fn a_check_nobody_waits_for_is_not_run() {
        let auth = alice();
        let scheduler = BcryptScheduler::without_threads(1, 4);
        let request = Request {
            scheduler: &scheduler,
            auth: &auth,
        };
        let gone = request.submit("secret", HERE, &ConnectionRecord::new());
        drop(gone);
        assert!(!scheduler.run_next());
        // Its place and its lane are free again.
        let mut again = request.submit("secret", HERE, &ConnectionRecord::new());
        assert!(scheduler.run_next());
        assert_eq!(again.poll(), Some(Ok(true)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_threads_check_and_stop() {
        let auth = alice();
        let scheduler = BcryptScheduler::start(1, 4).unwrap();
        let connection = ConnectionRecord::new();
        let here: IpAddr = HERE.parse().unwrap();
        assert_eq!(
            scheduler
                .check(&auth, header("alice", "secret"), here, &connection)
                .await,
            Ok(true)
        );
        assert_eq!(
            scheduler
                .check(&auth, header("alice", "wrong"), here, &connection)
                .await,
            Ok(false)
        );
        // Remembered now: answered without a check.
        assert_eq!(
            scheduler
                .check(&auth, header("alice", "wrong"), here, &connection)
                .await,
            Ok(false)
        );
        drop(scheduler);
    }
}
