//! What the binary asks of a non-Unix system (Windows): Ctrl-C only, no
//! open-file limit to raise, no `process_*` metrics. Same functions as
//! `os_unix.rs`.

pub fn raise_open_file_limit() {}

/// Resolves on Ctrl-C, taken over when first awaited (a service's Stop
/// arrives through `run_until`; there is no SIGTERM to race with).
pub async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

pub fn register_process_metrics(_registry: &prometheus::Registry) -> prometheus::Result<()> {
    Ok(())
}
