//! Network namespaces: finding them, and running code inside one.
//!
//! A socket dump sees only the namespace its netlink socket was created in,
//! so a container's listener on 276 is invisible from the host's. The
//! distinct namespaces are found from `/proc/*/ns/net` (every process names
//! its own) and the bind mounts under `/run/netns` (`ip netns add` makes
//! those, and such a namespace may hold no process at all). To open a
//! socket inside one, a short-lived thread calls `setns(2)` (which changes
//! only the calling thread), creates what it needs and exits; the socket
//! stays bound to that namespace. Entering a namespace needs CAP_SYS_ADMIN.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
}

/// A namespace other than ours, and a path that opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub inode: u64,
    pub path: PathBuf,
}

/// Inode of a namespace file, e.g. `/proc/self/ns/net`.
pub fn inode_of(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// Inode of the exporter's own network namespace.
pub fn own_inode(procfs: &Path) -> std::io::Result<u64> {
    inode_of(&procfs.join("self/ns/net"))
}

/// Every network namespace except `own`, once each, in inode order.
pub fn discover(procfs: &Path, own: u64) -> Vec<Namespace> {
    let mut found: BTreeMap<u64, PathBuf> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let path = entry.path();
            if let Ok(inode) = inode_of(&path) {
                found.entry(inode).or_insert(path);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(procfs) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let path = procfs.join(pid).join("ns/net");
            // The link text is "net:[INODE]": one readlink, no open.
            let Ok(target) = std::fs::read_link(&path) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("net:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok());
            if let Some(inode) = inode {
                found.entry(inode).or_insert(path);
            }
        }
    }
    found.remove(&own);
    found
        .into_iter()
        .map(|(inode, path)| Namespace { inode, path })
        .collect()
}

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
            // SAFETY: setns on a valid fd only changes this thread's namespace.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(work())
        })?
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}

/// Whether this process may enter namespaces: it tries its own.
pub fn can_enter(procfs: &Path) -> Result<(), String> {
    run_in(&procfs.join("self/ns/net"), || ()).map_err(|err| match err.raw_os_error() {
        Some(libc::EPERM) => "setns(2) into a network namespace was refused: it needs CAP_SYS_ADMIN, and a seccomp profile or systemd RestrictNamespaces= that allows it".to_string(),
        _ => format!("cannot enter network namespaces: {err}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_skips_our_own_namespace() {
        let procfs = Path::new("/proc");
        let own = own_inode(procfs).unwrap();
        assert!(discover(procfs, own).iter().all(|ns| ns.inode != own));
    }
}
