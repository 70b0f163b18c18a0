//! Re-reads `--web.config.file` when it (or a certificate it names) changes,
//! or on SIGHUP, without dropping the listener.
//!
//! A file that no longer loads leaves the previous config in force and says
//! why in the log. A new config applies to every request from then on
//! (users, headers, rate limit; the cache of verified credentials starts
//! empty) and its TLS settings to every new connection; open connections
//! keep the TLS session they negotiated. Every reload's result is recorded
//! in the `config_last_reload_*{file="web"}` gauges.

use crate::file_watch::{FileWatch, POLL_INTERVAL};
use crate::metrics::reload::{ConfigFile, ReloadMetrics};
use crate::web::config::{self, ActiveWebConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Runs until the process ends, swapping `slot` on every good reload and
/// recording each result in `metrics`.
pub async fn watch(path: PathBuf, slot: Arc<RwLock<Arc<ActiveWebConfig>>>, metrics: ReloadMetrics) {
    let mut files = config::watched_files(&path);
    let mut changes = FileWatch::new(&files, POLL_INTERVAL);
    loop {
        let forced = changes.changed(&files).await;
        let loaded = reload(&path, &slot, forced).await;
        metrics.record(ConfigFile::Web, 0, loaded);
        // The new config may name other certificates.
        files = config::watched_files(&path);
        changes.note(&files);
    }
}

/// Loads the file once and swaps it in; false when it did not load.
async fn reload(path: &Path, slot: &RwLock<Arc<ActiveWebConfig>>, forced: bool) -> bool {
    let path_owned = path.to_path_buf();
    // Loading hashes the basic-auth decoy with bcrypt: not on a reactor thread.
    let loaded = tokio::task::spawn_blocking(move || config::load(&path_owned))
        .await
        .unwrap_or_else(|err| Err(format!("loading stopped unexpectedly: {err}")));
    match loaded {
        Ok(config) => {
            *slot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
            tracing::info!(file = %path.display(), on_sighup = forced, "reloaded the web config");
            true
        }
        Err(err) => {
            tracing::error!(error = %err, "the web config did not reload; the previous one stays in force");
            false
        }
    }
}
