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
//!
//! Reading `/proc/PID/ns/net` costs several microseconds a process (the
//! kernel checks ptrace access each time): 2.4 ms for 380 processes here,
//! more than the whole socket dump. [`Discovery`] therefore remembers each
//! pid's namespace and reads the link only for pids it has not seen; a new
//! container's first process is a new pid, so its namespace is found at the
//! next scrape. An existing process that moves itself into a new namespace
//! (`unshare`, `setns`) is caught by a full re-read every
//! `FULL_REREAD_INTERVAL`, and `ip netns` namespaces by their `/run/netns`
//! mount, which is checked every time.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// How often every pid's namespace link is read again, not just new pids'.
pub const FULL_REREAD_INTERVAL: Duration = Duration::from_secs(30);

/// Finds namespaces, remembering pid -> namespace between calls.
pub struct Discovery {
    procfs: PathBuf,
    own: u64,
    namespace_of: HashMap<u32, u64>,
    last_full_read: Option<Instant>,
}

impl Discovery {
    pub fn new(procfs: PathBuf, own: u64) -> Discovery {
        Discovery {
            procfs,
            own,
            namespace_of: HashMap::new(),
            last_full_read: None,
        }
    }

    /// Every network namespace except the exporter's own, once each, in
    /// inode order.
    pub fn namespaces(&mut self) -> Vec<Namespace> {
        if self
            .last_full_read
            .is_none_or(|at| at.elapsed() >= FULL_REREAD_INTERVAL)
        {
            self.namespace_of.clear();
            self.last_full_read = Some(Instant::now());
        }
        let mut live: HashMap<u32, u64> = HashMap::with_capacity(self.namespace_of.len() + 16);
        if let Ok(entries) = std::fs::read_dir(&self.procfs) {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let known = self.namespace_of.get(&pid).copied();
                if let Some(inode) = known.or_else(|| read_namespace_link(&self.procfs, pid)) {
                    live.insert(pid, inode);
                }
            }
        }
        self.namespace_of = live;
        let mut found: BTreeMap<u64, PathBuf> = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir("/run/netns") {
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(inode) = inode_of(&path) {
                    found.entry(inode).or_insert(path);
                }
            }
        }
        // The lowest pid of each namespace opens it.
        let mut lowest: BTreeMap<u64, u32> = BTreeMap::new();
        for (&pid, &inode) in &self.namespace_of {
            let entry = lowest.entry(inode).or_insert(pid);
            *entry = (*entry).min(pid);
        }
        for (inode, pid) in lowest {
            found
                .entry(inode)
                .or_insert_with(|| self.procfs.join(pid.to_string()).join("ns/net"));
        }
        found.remove(&self.own);
        found
            .into_iter()
            .map(|(inode, path)| Namespace { inode, path })
            .collect()
    }
}

/// The inode in a `/proc/PID/ns/net` link ("net:[INODE]"): one readlink.
fn read_namespace_link(procfs: &Path, pid: u32) -> Option<u64> {
    let target = std::fs::read_link(procfs.join(pid.to_string()).join("ns/net")).ok()?;
    target
        .to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every network namespace except `own`, read afresh (no memory).
pub fn discover(procfs: &Path, own: u64) -> Vec<Namespace> {
    Discovery::new(procfs.to_path_buf(), own).namespaces()
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
    fn remembered_discovery_matches_a_fresh_one() {
        let procfs = Path::new("/proc");
        let own = own_inode(procfs).unwrap();
        let mut discovery = Discovery::new(procfs.to_path_buf(), own);
        let first = discovery.namespaces();
        let inodes = |list: &[Namespace]| list.iter().map(|ns| ns.inode).collect::<Vec<_>>();
        assert_eq!(inodes(&discovery.namespaces()), inodes(&first));
        assert_eq!(inodes(&discover(procfs, own)), inodes(&first));
    }

    #[test]
    fn discovery_skips_our_own_namespace() {
        let procfs = Path::new("/proc");
        let own = own_inode(procfs).unwrap();
        assert!(discover(procfs, own).iter().all(|ns| ns.inode != own));
    }
}
