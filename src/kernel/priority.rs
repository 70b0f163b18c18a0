//! Background threads yield the CPU to the scrape.
//!
//! Describing kernel events, writing the event trail and hashing
//! executables are work a listener storm multiplies, and on a small host
//! they would take the cores a scrape needs (the storm itself takes one).
//! Their threads lower their own CPU priority to nice 10 when they start:
//! they still run whenever a core is free, and their lag is harmless
//! (describing does less when its queue backs up; the counters stay
//! exact because the draining thread, which keeps its priority, counts).
//! On Linux a nice value belongs to one thread.

/// Nice value of the background threads.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`]. A
/// refusal (a seccomp profile, say) is harmless and ignored.
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    {
        // `None`: the calling thread (Linux keeps a nice value per thread).
        let _ = rustix::process::setpriority_process(None, BACKGROUND_NICE);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_is_lowered() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let inside = std::thread::spawn(|| {
            run_in_background();
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        // Raising a nice value needs no privilege; lowering one does.
        if before <= BACKGROUND_NICE {
            assert_eq!(inside, BACKGROUND_NICE);
        }
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), before);
    }
}
