//! How the C allocator (glibc's malloc, which Rust's default allocator
//! calls) is told to give big buffers back at once.
//!
//! A scrape of many listeners allocates a few buffers of megabytes (the
//! exposition text, the series, the socket list) and frees them when it is
//! answered. glibc serves an allocation above its mmap threshold (128 KiB)
//! with its own mapping and unmaps it on free, but it also raises that
//! threshold to the size of each such block freed, so from the second
//! scrape on, these buffers come from the heap arenas, stay resident after
//! they are freed, and fragment: at 34,000 listeners the peak RSS was
//! 52.9 MB against 36.8 MB with the threshold held at 128 KiB (the same
//! scrapes, `MALLOC_MMAP_THRESHOLD_=131072` in the environment, which is
//! what [`hold_mmap_threshold`] does from inside). Setting the threshold
//! explicitly turns the raising off (mallopt(3)). Small allocations, all
//! an idle scrape makes, are not affected.
//!
//! This is one of the three modules that use `unsafe` (with
//! `kernel::socket_ns` and `kernel::priority`): `mallopt` is a C function
//! no dependency wraps. Elsewhere (musl, other systems) nothing is done.

/// glibc's default mmap threshold, held fixed.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Holds glibc's mmap threshold at [`MMAP_THRESHOLD`]; `false` where it
/// could not be set (or there is no glibc).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn hold_mmap_threshold() -> bool {
    // SAFETY: mallopt takes two integers, touches only the allocator's own
    // settings (under its lock) and returns 1 on success, 0 on failure; it
    // is safe to call at any time, from any thread.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn hold_mmap_threshold() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_threshold() {
        assert!(super::hold_mmap_threshold());
    }
}
