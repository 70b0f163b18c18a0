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

use crate::model::NAMESPACE;
use prometheus::{GaugeVec, Opts, Registry};
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
        })
    }

    /// Records one load of `file` (the one at start, or a reload).
    pub fn record(&self, file: ConfigFile, succeeded: bool) {
        let label = [file.as_str()];
        self.successful
            .with_label_values(&label)
            .set(if succeeded { 1.0 } else { 0.0 });
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
        metrics.record(ConfigFile::Allow, true);
        let text = exposition(&registry);
        assert!(text.contains("unassigned_port_config_last_reload_successful{file=\"allow\"} 1"));
        assert!(!text.contains("file=\"web\""), "{text}");
        let stamp = metrics
            .success_timestamp
            .with_label_values(&["allow"])
            .get();
        assert!(stamp > 1.7e9, "a Unix time: {stamp}");
        metrics.record(ConfigFile::Allow, false);
        assert_eq!(metrics.successful.with_label_values(&["allow"]).get(), 0.0);
        assert_eq!(
            metrics
                .success_timestamp
                .with_label_values(&["allow"])
                .get(),
            stamp
        );
    }
}
