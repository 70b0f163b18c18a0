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

/// Takes over SIGTERM and SIGINT (Ctrl-C) at once, so that one sent the
/// moment the exporter has logged its address stops it cleanly instead of
/// killing it, and returns what resolves when either arrives.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            () = arrives(terminate.as_mut()) => {}
            () = arrives(interrupt.as_mut()) => {}
        }
    }
}

/// Resolves when `signal` arrives; never when it could not be taken over.
async fn arrives(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
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
