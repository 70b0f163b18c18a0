//! Network namespaces: one room for finding them, entering them, keeping
//! what the exporter opened inside each, and deciding whether to read them.
//!
//! A socket dump sees only the namespace its netlink socket was created in,
//! so a container's listener on 276 is invisible from the host's. With
//! `--collector.netns=all` the exporter finds every namespace
//! ([`discovery`]), opens what it needs inside each from a short-lived
//! thread that has entered it ([`enter`]), and keeps those handles while the
//! namespace exists ([`NamespaceSet`]). Entering needs CAP_SYS_ADMIN.
//!
//! Layout:
//! - [`discovery`]: which namespaces exist (`/proc/*/ns/net`, `--path.netns`).
//! - [`enter`]: run a closure inside a namespace (`setns(2)` via rustix).
//! - [`ids`]: the ids our namespace gives the others, by which one socket of
//!   ours hears all their notifications.
//! - [`set`]: the per-namespace handles, opened on first sight, dropped when
//!   the namespace is gone.

#[cfg(target_os = "linux")]
pub mod discovery;
#[cfg(target_os = "linux")]
pub mod enter;
#[cfg(target_os = "linux")]
pub mod ids;
#[cfg(target_os = "linux")]
pub mod set;

#[cfg(target_os = "linux")]
pub use discovery::{Discovery, Namespace};
#[cfg(target_os = "linux")]
pub use set::NamespaceSet;

use crate::kernel::procfs::ProcRoot;

/// `--collector.netns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only the exporter's own namespace.
    Host,
    /// Every namespace found.
    All,
}

impl Mode {
    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "host" => Ok(Mode::Host),
            "all" => Ok(Mode::All),
            other => Err(format!("unknown namespace mode {other:?}: use host or all")),
        }
    }

    /// The `netns` label of `unassigned_port_collector_info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Host => "host",
            Mode::All => "all",
        }
    }
}

/// Decides `--collector.netns`: `requested`, or "all" when nothing was
/// requested and both the backend and our privileges allow it. Asking for
/// "all" when it cannot be had is an error (one line for the user).
pub fn choose_mode(
    requested: Option<Mode>,
    backend_reads_namespaces: bool,
    backend_name: &str,
    proc_root: &ProcRoot,
) -> Result<Mode, String> {
    if requested == Some(Mode::Host) {
        return Ok(Mode::Host);
    }
    if !backend_reads_namespaces {
        return match requested {
            Some(Mode::All) => Err(format!(
                "--collector.netns=all needs the netlink backend; the {backend_name} backend reads the exporter's own network namespace only (use --collector.netns=host)"
            )),
            _ => Ok(Mode::Host),
        };
    }
    #[cfg(target_os = "linux")]
    let entered = enter::can_enter(proc_root);
    #[cfg(not(target_os = "linux"))]
    let entered: Result<(), String> = {
        let _ = proc_root;
        Err("network namespaces exist only on Linux".to_string())
    };
    match entered {
        Ok(()) => Ok(Mode::All),
        Err(reason) if requested.is_none() => {
            tracing::info!(reason = %reason, "reading the host network namespace only (--collector.netns=host)");
            Ok(Mode::Host)
        }
        Err(reason) => Err(format!("--collector.netns=all: {reason}")),
    }
}

/// Told by whoever owns a namespace set when a namespace is opened or
/// dropped, so other parts (the destroy-event subscriptions) follow the
/// same lifetimes without registering themselves with socket readers.
pub trait NamespaceObserver: Send + Sync {
    /// Runs on a thread inside namespace `inode`, as the set opens it;
    /// `nsid` is the id our namespace gave it ([`ids`]), by which its
    /// notifications are told apart (`None`: it has none, so none of its
    /// notifications reach a socket of ours). An error is logged by the
    /// observer; the namespace is still read.
    fn entered(&self, inode: u64, nsid: Option<i32>);
    /// The set dropped namespace `inode` (it went away, or the set let go).
    fn left(&self, inode: u64);
}
