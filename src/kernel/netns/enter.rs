//! Running code inside another network namespace.
//!
//! `setns(2)` changes only the calling thread's namespace, so a short-lived
//! thread enters, runs the closure (typically: open a netlink socket, which
//! stays bound to that namespace for its whole life) and exits. The
//! exporter's own threads never leave their namespace.

use crate::kernel::procfs::ProcRoot;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// Runs `work` on a new thread that has entered the namespace at `path`.
pub fn run_in<T, F>(path: &Path, work: F) -> std::io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = File::open(path)?;
    std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || {
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))?;
            Ok(work())
        })?
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Whether this process may enter namespaces: it tries its own.
pub fn can_enter(proc_root: &ProcRoot) -> Result<(), String> {
    run_in(&proc_root.self_path("ns/net"), || ()).map_err(|err| {
        if err.kind() == std::io::ErrorKind::PermissionDenied {
            "setns(2) into a network namespace was refused: it needs CAP_SYS_ADMIN, and a seccomp profile or systemd RestrictNamespaces= that allows it".to_string()
        } else {
            format!("cannot enter network namespaces: {err}")
        }
    })
}
