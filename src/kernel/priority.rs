//! Background threads yield the CPU to the scrape.
//!
//! Writing the event trail and hashing executables are work a listener
//! storm multiplies, and on a small host they would take the cores a scrape
//! needs (the storm itself takes one). Their threads move themselves to the
//! `SCHED_IDLE` policy when they start: they run only on a core nothing
//! else wants, and any other thread that wakes (the scrape's) takes the
//! core from them at once. Their lag is harmless: the trail's queue is
//! bounded and what it drops is counted in its suppression notices, and a
//! hash not ready yet is asked for again.
//!
//! The describing thread of the listen capture is not one of them,
//! because it counts. Under `SCHED_IDLE` it got no CPU while the exporter's
//! cores were busy, its queue and the kernel ring filled, and events went
//! uncounted: `cargo bench --bench trail` with the storm, the exporter and
//! a back-to-back scraper on one core (`one_core`) left 34,936 to 266,737
//! of a storm's events uncounted in four runs, and with the storm on a
//! core of its own 22,775 in one run of four; on one core the collection's
//! own p99 reached 58 ms (it takes locks the describing thread also takes).
//! It keeps a normal priority and is made cheap instead
//! (`super::events::describe`: a task is read once a pass of the draining
//! thread, not once a transition). Where the policy is refused (a seccomp
//! profile), a background thread falls back to nice 19. On Linux a
//! scheduling policy belongs to one thread.
//!
//! This is one of the three modules that use `unsafe` (with
//! `crate::allocator` and `crate::kernel::socket_ns`): `sched_setscheduler`
//! takes a pointer, and no dependency of ours wraps it (rustix has only
//! `sched_yield` and the affinity calls).

/// Nice value of the background threads where `SCHED_IDLE` is refused.
pub const BACKGROUND_NICE: i32 = 19;

/// Moves the calling thread to `SCHED_IDLE`, or lowers its priority to
/// [`BACKGROUND_NICE`] if that is refused. A refusal of both is harmless
/// and ignored.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    {
        if !idle_policy() {
            // `None`: the calling thread (Linux keeps a nice value per thread).
            let _ = rustix::process::setpriority_process(None, BACKGROUND_NICE);
        }
    }
}

/// Puts the calling thread under `SCHED_IDLE`; false if refused.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn idle_policy() -> bool {
    let parameters = libc::sched_param { sched_priority: 0 };
    // SAFETY: `parameters` is a live, initialised sched_param for the
    // duration of the call, which only reads it; pid 0 is the calling
    // thread; the call changes nothing but that thread's policy and returns
    // 0 or -1.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &parameters) == 0 }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy, as procfs shows it
    /// (field 41 of its `stat`).
    fn policy() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name
            .split_whitespace()
            .nth(41 - 3)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn only_the_calling_thread_moves_to_the_idle_policy() {
        let before = policy();
        let nice_before = rustix::process::getpriority_process(None).unwrap();
        let (inside, nice_inside) = std::thread::spawn(|| {
            run_in_background();
            (
                policy(),
                rustix::process::getpriority_process(None).unwrap(),
            )
        })
        .join()
        .unwrap();
        // Moving to SCHED_IDLE, or raising a nice value, needs no privilege.
        assert!(
            inside == libc::SCHED_IDLE || nice_inside == BACKGROUND_NICE,
            "policy {inside}, nice {nice_inside}"
        );
        assert_eq!(policy(), before);
        assert_eq!(
            rustix::process::getpriority_process(None).unwrap(),
            nice_before
        );
    }
}
