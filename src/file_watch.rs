//! Noticing that a config file changed: the one loop behind every reload
//! (`web/reload.rs` for the web config and its certificates,
//! `policy/allow/reload.rs` for the allow file).
//!
//! Files are polled: their size, modification time and (on Unix) inode are
//! compared every interval, which catches editors that write in place and
//! those that rename a new file over the old one within the same second.
//! SIGHUP (Unix) forces a reload at once, changed or not.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How often every reloadable file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// What a file looked like when last checked; `None` when it was missing.
type Fingerprint = Option<(u64, SystemTime, u64)>;

fn fingerprint(files: &[PathBuf]) -> Vec<Fingerprint> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some((meta.len(), meta.modified().ok()?, inode))
        })
        .collect()
}

/// Waits for the next change of a set of files, or a SIGHUP.
pub struct FileWatch {
    interval: Duration,
    /// The files' state when last noted.
    seen: Vec<Fingerprint>,
    /// Made on the first wait: listening for a signal needs the runtime.
    hangup: Option<Hangup>,
}

impl FileWatch {
    /// Notes the files' state now, so an edit made before the first wait is
    /// not missed.
    pub fn new(files: &[PathBuf], interval: Duration) -> FileWatch {
        FileWatch {
            interval,
            seen: fingerprint(files),
            hangup: None,
        }
    }

    /// Resolves when one of `files` differs from what was last noted (and
    /// notes it), or on SIGHUP; returns true when SIGHUP forced it.
    pub async fn changed(&mut self, files: &[PathBuf]) -> bool {
        let hangup = self.hangup.get_or_insert_with(Hangup::listen);
        loop {
            let forced = tokio::select! {
                () = tokio::time::sleep(self.interval) => false,
                () = hangup.received() => true,
            };
            let now = fingerprint(files);
            if forced || now != self.seen {
                self.seen = now;
                return forced;
            }
        }
    }

    /// Notes the files' state now (after a reload changed which files count).
    pub fn note(&mut self, files: &[PathBuf]) {
        self.seen = fingerprint(files);
    }
}

/// SIGHUP where there is one (Unix); elsewhere only file changes reload.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn listen() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves at the next SIGHUP; never, where there is none.
    async fn received(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}
