//! What the binary asks of a Unix system: more open files, SIGTERM and
//! Ctrl-C, and the exporter's own `process_*` metrics (Linux).

/// Raises the soft open-file limit to the hard one, as Go does for
/// node_exporter: each network namespace read costs one descriptor, and a
/// soft limit of 1,024 (systemd's default for services) would otherwise cap
/// a dense host at a few hundred namespaces.
pub fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let show =
        |value: Option<u64>| value.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            soft = %show(limit.current),
            raised_to = %show(limit.maximum),
            "raised the open-file limit"
        ),
        Err(err) => {
            tracing::warn!(soft = %show(limit.current), error = %err, "cannot raise the open-file limit")
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let sigterm = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = sigterm => {}
    }
}

/// The exporter's own `process_*` metrics: the prometheus crate reads them
/// from /proc, so Linux only (macOS has none).
pub fn register_process_metrics(registry: &prometheus::Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
    Ok(())
}
