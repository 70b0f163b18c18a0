//! Re-reads `--web.config.file` when it (or a certificate it names) changes,
//! or on SIGHUP, without dropping the listener.
//!
//! A file that no longer loads leaves the previous config in force and says
//! why in the log. A new config applies to every request from then on
//! (users, headers, rate limit; the cache of verified credentials starts
//! empty) and its TLS settings to every new connection; open connections
//! keep the TLS session they negotiated.

use crate::web_config::{self, ActiveWebConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the files are checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Size and modification time of each file, to notice edits cheaply.
fn fingerprint(files: &[PathBuf]) -> Vec<Option<(u64, SystemTime)>> {
    files
        .iter()
        .map(|file| {
            let meta = std::fs::metadata(file).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

/// Runs until the process ends, swapping `slot` on every good reload.
pub async fn watch(path: PathBuf, slot: Arc<RwLock<Arc<ActiveWebConfig>>>) {
    let mut hangup = Hangup::listen();
    let mut files = web_config::watched_files(&path);
    let mut seen = fingerprint(&files);
    loop {
        let forced = tokio::select! {
            () = tokio::time::sleep(POLL_INTERVAL) => false,
            () = hangup.received() => true,
        };
        let now = fingerprint(&files);
        if !forced && now == seen {
            continue;
        }
        reload(&path, &slot, forced).await;
        files = web_config::watched_files(&path);
        seen = fingerprint(&files);
    }
}

/// SIGHUP where there is one (Unix); elsewhere only file changes reload.
/// The allow file's watcher (`allow_reload.rs`) uses it too.
pub(crate) struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    pub(crate) fn listen() -> Hangup {
        Hangup {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves at the next SIGHUP; never, where there is none.
    pub(crate) async fn received(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut()
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

async fn reload(path: &Path, slot: &RwLock<Arc<ActiveWebConfig>>, forced: bool) {
    let path_owned = path.to_path_buf();
    // Loading hashes the basic-auth decoy with bcrypt: not on a reactor thread.
    let loaded = tokio::task::spawn_blocking(move || web_config::load(&path_owned))
        .await
        .unwrap_or_else(|err| Err(format!("loading stopped unexpectedly: {err}")));
    match loaded {
        Ok(config) => {
            *slot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
            tracing::info!(file = %path.display(), on_sighup = forced, "reloaded the web config");
        }
        Err(err) => {
            tracing::error!(error = %err, "the web config did not reload; the previous one stays in force");
        }
    }
}
