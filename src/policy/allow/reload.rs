//! Re-reads each `--watch.allow-file` when it changes, or on SIGHUP (Unix), like
//! `web/reload.rs` does for the web config (both wait on `file_watch.rs`).
//!
//! A file that no longer parses leaves the previous rules in force and says
//! why in the log (with FILE:LINE); a good one replaces the file's rules in
//! the [`WatchSet`] whole, so a scrape sees either the old list or the new
//! one. Rules given with `--watch.allow`, and other files' rules, are not
//! touched: each file has its own watcher and its own slot (its position
//! among the flags). Every reload's result
//! is recorded in the `config_last_reload_*{file="allow"}` gauges.

use crate::file_watch::{FileWatch, POLL_INTERVAL};
use crate::metrics::reload::{ConfigFile, ReloadMetrics};
use crate::policy::allow::{self, AllowFile};
use crate::policy::watch::WatchSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Runs until the process ends, checking every [`POLL_INTERVAL`] and
/// recording each reload in `metrics`; spawn it once per file (`slot`: the
/// file's position among the flags).
pub fn watch(
    path: PathBuf,
    slot: usize,
    watch: Arc<WatchSet>,
    metrics: ReloadMetrics,
) -> impl std::future::Future<Output = ()> {
    watch_every(path, slot, watch, POLL_INTERVAL, metrics)
}

/// [`watch`] with a chosen interval (tests use a short one). The file's
/// current state is noted when this is called, not when the task first
/// runs, so an edit made in between is not missed.
pub fn watch_every(
    path: PathBuf,
    slot: usize,
    watch: Arc<WatchSet>,
    interval: Duration,
    metrics: ReloadMetrics,
) -> impl std::future::Future<Output = ()> {
    let files = [path];
    let mut changes = FileWatch::new(&files, interval);
    async move {
        loop {
            let forced = changes.changed(&files).await;
            let loaded = reload(&files[0], slot, &watch, forced);
            metrics.record(ConfigFile::Allow, slot, loaded);
        }
    }
}

/// Reads the file once and swaps its rules in; false when it did not load.
pub fn reload(path: &Path, slot: usize, watch: &WatchSet, forced: bool) -> bool {
    match AllowFile::load(path) {
        Ok(file) => {
            allow::warn_about_comm_only(&file.rules, &path.display().to_string());
            tracing::info!(file = %path.display(), rules = file.rules.len(), on_sighup = forced, "reloaded the allow file");
            watch.set_file_rules(slot, file.rules);
            true
        }
        Err(err) => {
            tracing::error!(error = %err, "the allow file did not reload; the previous rules stay in force");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::allow::AllowRule;
    use crate::policy::registry::{Registry, Transport};
    use crate::policy::watch::Scope;

    fn scratch_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("allow-reload-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("allow.rules");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn watch_set() -> Arc<WatchSet> {
        let flags = vec![AllowRule::parse("279:keep").unwrap()];
        Arc::new(WatchSet::new(
            Registry::embedded(),
            Scope::WellKnown,
            &[],
            flags,
        ))
    }

    #[test]
    fn a_bad_file_keeps_the_previous_rules() {
        let path = scratch_file("bad", "276:nc\n");
        let watch = watch_set();
        assert!(reload(&path, 0, &watch, false));
        assert!(watch.is_expected(Transport::Tcp, 276, "nc"));
        std::fs::write(&path, "276:nc\n277:color=red\n").unwrap();
        assert!(!reload(&path, 0, &watch, false));
        assert!(
            watch.is_expected(Transport::Tcp, 276, "nc"),
            "old rules stay"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(!reload(&path, 0, &watch, false));
        assert!(watch.is_expected(Transport::Tcp, 276, "nc"));
        assert!(
            watch.is_expected(Transport::Tcp, 279, "keep"),
            "flag rules stay"
        );
        let _ = std::fs::remove_dir(path.parent().unwrap());
    }

    #[tokio::test]
    async fn an_edit_is_picked_up_by_the_watcher() {
        let path = scratch_file("edit", "276:nc\n");
        let watch = watch_set();
        watch.set_file_rules(0, AllowFile::load(&path).unwrap().rules);
        watch.set_file_rules(1, vec![AllowRule::parse("278:other").unwrap()]);
        let registry = prometheus::Registry::new();
        let metrics = ReloadMetrics::register(&registry).unwrap();
        let task = tokio::spawn(watch_every(
            path.clone(),
            0,
            Arc::clone(&watch),
            Duration::from_millis(20),
            metrics,
        ));
        // Same size, so only the inode (atomic replace) or mtime tells.
        let replacement = path.with_extension("new");
        std::fs::write(&replacement, "277:nc\n").unwrap();
        std::fs::rename(&replacement, &path).unwrap();
        let mut picked_up = false;
        for _ in 0..250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if watch.is_expected(Transport::Tcp, 277, "nc") {
                picked_up = true;
                break;
            }
        }
        task.abort();
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(path.parent().unwrap());
        assert!(picked_up, "the new rules were not loaded within 5 s");
        assert!(!watch.is_expected(Transport::Tcp, 276, "nc"));
        assert!(
            watch.is_expected(Transport::Tcp, 278, "other"),
            "another file's rules stay"
        );
        let successful = registry
            .gather()
            .into_iter()
            .find(|family| family.name() == "unassigned_port_config_last_reload_successful")
            .expect("the reload was recorded");
        assert_eq!(successful.get_metric()[0].get_gauge().get_value(), 1.0);
    }
}
