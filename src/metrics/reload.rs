//! Config reload results, as Prometheus and Alertmanager report theirs:
//!
//! - `unassigned_port_config_last_reload_successful{file}`: 1 when the last
//!   load of the file (at start, or a reload after an edit or SIGHUP)
//!   succeeded, 0 when it failed and the previous one stayed in force;
//! - `unassigned_port_config_last_reload_success_timestamp_seconds{file}`:
//!   when the file last loaded well (Unix time).
//!
//! `file` is `web` (`--web.config.file`) or `allow` (`--watch.allow-file`),
//! and a series exists only for a file in use: an exporter started without
//! a web config has no `file="web"` series, as it has nothing to reload.
//! `--watch.allow-file` may be given several times: `file="allow"` is then
//! 1 only while every allow file's last load succeeded, and its timestamp
//! is the last successful load of any of them.

use crate::model::NAMESPACE;
use prometheus::{GaugeVec, Opts, Registry};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// The config files the exporter reloads, as the `file` label names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigFile {
    /// `--web.config.file`.
    Web,
    /// `--watch.allow-file`.
    Allow,
}

impl ConfigFile {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigFile::Web => "web",
            ConfigFile::Allow => "allow",
        }
    }
}

/// The two reload gauges, registered once and shared by the reload tasks.
#[derive(Clone)]
pub struct ReloadMetrics {
    successful: GaugeVec,
    success_timestamp: GaugeVec,
    /// The last load's result of each file of a kind, by its position among
    /// the flags (several `--watch.allow-file`s).
    last: Arc<Mutex<BTreeMap<(&'static str, usize), bool>>>,
}

impl ReloadMetrics {
    /// Registers both families on `registry` (with no series until a file
    /// is [`recorded`](Self::record)).
    pub fn register(registry: &Registry) -> prometheus::Result<ReloadMetrics> {
        let successful = GaugeVec::new(
            Opts::new(
                "config_last_reload_successful",
                "Whether the last load of the config file succeeded (1) or failed and left the previous one in force (0).",
            )
            .namespace(NAMESPACE),
            &["file"],
        )?;
        let success_timestamp = GaugeVec::new(
            Opts::new(
                "config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful load of the config file.",
            )
            .namespace(NAMESPACE),
            &["file"],
        )?;
        registry.register(Box::new(successful.clone()))?;
        registry.register(Box::new(success_timestamp.clone()))?;
        Ok(ReloadMetrics {
            successful,
            success_timestamp,
            last: Arc::default(),
        })
    }

    /// Records one load (at start, or a reload) of the file of kind `file`
    /// at position `slot` among its flags (0 when there is one).
    pub fn record(&self, file: ConfigFile, slot: usize, succeeded: bool) {
        let label = [file.as_str()];
        let all_good = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.insert((file.as_str(), slot), succeeded);
            last.iter()
                .filter(|((kind, _), _)| *kind == file.as_str())
                .all(|(_, good)| *good)
        };
        self.successful
            .with_label_values(&label)
            .set(if all_good { 1.0 } else { 0.0 });
        if succeeded {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            self.success_timestamp.with_label_values(&label).set(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn only_recorded_files_have_series_and_a_failure_keeps_the_last_success_time() {
        let registry = Registry::new();
        let metrics = ReloadMetrics::register(&registry).unwrap();
        assert!(!exposition(&registry).contains("config_last_reload"));
        metrics.record(ConfigFile::Allow, 0, true);
        let text = exposition(&registry);
        assert!(text.contains("unassigned_port_config_last_reload_successful{file=\"allow\"} 1"));
        assert!(!text.contains("file=\"web\""), "{text}");
        let stamp = metrics
            .success_timestamp
            .with_label_values(&["allow"])
            .get();
        assert!(stamp > 1.7e9, "a Unix time: {stamp}");
        metrics.record(ConfigFile::Allow, 0, false);
        assert_eq!(metrics.successful.with_label_values(&["allow"]).get(), 0.0);
        assert_eq!(
            metrics
                .success_timestamp
                .with_label_values(&["allow"])
                .get(),
            stamp
        );
    }

    #[test]
    fn several_allow_files_are_good_only_while_each_one_is() {
        let metrics = ReloadMetrics::register(&Registry::new()).unwrap();
        let successful = || metrics.successful.with_label_values(&["allow"]).get();
        metrics.record(ConfigFile::Allow, 0, true);
        metrics.record(ConfigFile::Allow, 1, true);
        assert_eq!(successful(), 1.0);
        metrics.record(ConfigFile::Allow, 1, false);
        metrics.record(ConfigFile::Allow, 0, true);
        assert_eq!(successful(), 0.0, "file 1 is still broken");
        metrics.record(ConfigFile::Web, 0, true);
        assert_eq!(successful(), 0.0, "the web config is another file");
        metrics.record(ConfigFile::Allow, 1, true);
        assert_eq!(successful(), 1.0);
    }
}
