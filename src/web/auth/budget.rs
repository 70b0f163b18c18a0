//! The bcrypt budget: a few threads of their own that run the bcrypt checks
//! of credentials not verified before, with a short queue in front and one
//! check at a time per client address. Whatever does not fit is refused at
//! once instead of waiting, so a flood of guesses costs at most these
//! threads' CPU and never queues in front of anything else.

use super::basic::BasicAuth;
use super::client_limit::{ClientShare, PerClientLimit};
use super::credentials::Credentials;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Queued checks per bcrypt thread: at a quarter of a second each, a check
/// that gets a place waits about a second at most.
const QUEUE_PER_THREAD: usize = 4;

/// The budget is spent: no bcrypt check was started for this request.
#[derive(Debug, PartialEq, Eq)]
pub struct BudgetSpent;

/// A few threads that run bcrypt checks, with a short queue in front.
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
    client: ClientShare,
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
            client: claim,
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
        // The client's share goes back before it hears the verdict, so its
        // next request finds the share free.
        drop(check.client);
        let _ = check.verdict.send(verdict);
    }
}

#[cfg(test)]
mod tests {
    use super::super::basic::alice;
    use super::super::credentials::header;
    use super::*;

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
}
