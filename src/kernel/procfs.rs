//! The one way into `/proc` and `/run/netns`: every reader of process and
//! kernel facts goes through [`ProcRoot`], so `--path.procfs` and
//! `--path.netns` steer all of them (node_exporter's `collector/paths.go` is
//! the model) and a fixture tree can stand in for the live system in tests.
//!
//! Most facts are read with the `procfs` crate (already compiled in through
//! prometheus' `process` feature). Two hot paths are read by hand:
//!
//! - the fd walk ([`ProcRoot::socket_fds`], [`ProcRoot::fd_socket_inode`]):
//!   `procfs`'s fd iterator opens, readlinks, stats and closes every fd
//!   (four syscalls); placing socket owners needs the link target only, so
//!   this is one `readlink` per fd. On a host with 300 processes that walk
//!   is most of a cold collection.
//! - namespace links (`ns/net`, read for every pid by discovery): one
//!   `readlink` instead of `procfs`'s read of all eight namespace links.
//!
//! Links are parsed from their text (`socket:[N]`, `net:[N]`), never
//! followed, which is also what lets a fixture tree of dangling symlinks
//! stand in for `/proc`.

use std::io;
use std::path::{Path, PathBuf};

/// `--path.procfs` and `--path.netns`, and the readers that use them.
#[derive(Clone, Debug)]
pub struct ProcRoot {
    /// The procfs mount (`/proc`, or the host's `/proc` mounted elsewhere in
    /// a container, or a fixture tree).
    procfs: PathBuf,
    /// Where `ip netns add` bind-mounts named namespaces (`/run/netns`).
    netns_dir: PathBuf,
}

/// Inode of the initial pid namespace, fixed by the kernel
/// (`PROC_PID_INIT_INO` in include/linux/proc_ns.h).
pub const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The facts about a process that its `status` file holds and we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Real uid.
    pub uid: u32,
    /// Parent pid.
    pub ppid: u32,
}

impl Default for ProcRoot {
    fn default() -> ProcRoot {
        ProcRoot::new(PathBuf::from("/proc"), PathBuf::from("/run/netns"))
    }
}

impl ProcRoot {
    pub fn new(procfs: PathBuf, netns_dir: PathBuf) -> ProcRoot {
        ProcRoot { procfs, netns_dir }
    }

    /// The procfs mount point.
    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    /// `{procfs}/{pid}/{rest}`.
    pub fn pid_path(&self, pid: u32, rest: &str) -> PathBuf {
        let mut path = self.procfs.join(pid.to_string());
        if !rest.is_empty() {
            path.push(rest);
        }
        path
    }

    /// `{procfs}/self/{rest}`: the exporter's own view.
    pub fn self_path(&self, rest: &str) -> PathBuf {
        self.procfs.join("self").join(rest)
    }

    /// Every pid, ascending, with the uid that owns its `/proc` folder
    /// (the process's effective uid; a hint for owner searches).
    pub fn pids_with_uid(&self) -> io::Result<Vec<(u32, u32)>> {
        let mut pids: Vec<(u32, u32)> = std::fs::read_dir(&self.procfs)?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid = entry.file_name().to_str()?.parse().ok()?;
                Some((pid, owner_uid(&entry.metadata().ok()?)))
            })
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Every pid, ascending.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.procfs)?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// The (fd, socket inode) pairs of a process. `PermissionDenied` means
    /// its fd table is hidden from us; other errors mostly mean it exited.
    pub fn socket_fds(&self, pid: u32) -> io::Result<Vec<(u32, u64)>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(self.pid_path(pid, "fd"))?.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue; // closed while we looked
            };
            let fd = entry.file_name().to_str().and_then(|n| n.parse().ok());
            if let (Some(fd), Some(inode)) = (fd, socket_inode(target.as_os_str())) {
                found.push((fd, inode));
            }
        }
        Ok(found)
    }

    /// Whether this procfs shows the initial pid namespace, so that its pid
    /// list is every process of the host. A procfs shows one pid namespace
    /// and all of its descendants, so it is the initial one when any process
    /// it lists is in the initial namespace (whose inode the kernel fixes:
    /// `PROC_PID_INIT_INO`). `self` is asked first (readable without
    /// privilege; absent when the exporter is not in this procfs's
    /// namespace tree), then pid 1. False when neither says so: a procfs of
    /// a container's own pid namespace, or links we may not read.
    pub fn shows_every_process(&self) -> bool {
        [self.self_path("ns/pid"), self.pid_path(1, "ns/pid")]
            .iter()
            .any(|path| {
                std::fs::read_link(path)
                    .ok()
                    .and_then(|target| bracketed_inode(target.to_str()?, "pid:["))
                    == Some(INITIAL_PID_NAMESPACE)
            })
    }

    /// One process's fd links, read through one open `/proc/PID/fd`
    /// directory: for checking many fds of one process (remembered places).
    pub fn fd_links(&self, pid: u32) -> FdLinks<'_> {
        FdLinks::open(self, pid)
    }

    /// The socket inode behind one fd, if it is (still) a socket.
    pub fn fd_socket_inode(&self, pid: u32, fd: u32) -> Option<u64> {
        let target = std::fs::read_link(self.pid_path(pid, &format!("fd/{fd}"))).ok()?;
        socket_inode(target.as_os_str())
    }

    /// The arguments a process was started with (`cmdline`); empty when
    /// it is gone or hidden.
    pub fn cmdline(&self, pid: u32) -> Vec<String> {
        std::fs::read(self.pid_path(pid, "cmdline"))
            .map(|bytes| {
                bytes
                    .split(|&b| b == 0)
                    .filter(|arg| !arg.is_empty())
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Uid and parent pid from `status`, read as bytes: the `Name:` line
    /// holds whatever bytes the process named itself with, which must not
    /// cost the uid.
    #[cfg(target_os = "linux")]
    pub fn status(&self, pid: u32) -> Option<ProcessStatus> {
        parse_status(&std::fs::read(self.pid_path(pid, "status")).ok()?)
    }

    /// Uid and parent pid from `status` (Linux only).
    #[cfg(not(target_os = "linux"))]
    pub fn status(&self, _pid: u32) -> Option<ProcessStatus> {
        None
    }

    /// The raw target of the `exe` link (the kernel appends " (deleted)"
    /// to an unlinked file; see `crate::owners::provenance`). `None` for
    /// kernel threads, processes we may not inspect and processes that
    /// exited.
    pub fn exe_target(&self, pid: u32) -> Option<Vec<u8>> {
        let target = std::fs::read_link(self.pid_path(pid, "exe")).ok()?;
        Some(os_bytes(target.into_os_string()))
    }

    /// `loginuid`: the uid of the user whose login session started the
    /// process (audit's `auid`: it survives `sudo` and `su`). `None` when
    /// unset (4294967295: a process started outside any login, such as a
    /// boot service), unreadable or gone.
    pub fn login_uid(&self, pid: u32) -> Option<u32> {
        let text = std::fs::read_to_string(self.pid_path(pid, "loginuid")).ok()?;
        parse_login_uid(&text)
    }

    /// `cmdline`, raw: arguments separated (and usually ended) by NUL. At
    /// most `limit` bytes are read. `None` when the process is gone or
    /// hidden; empty for kernel threads and zombies.
    pub fn cmdline_bytes(&self, pid: u32, limit: usize) -> Option<Vec<u8>> {
        use std::io::Read;
        let file = std::fs::File::open(self.pid_path(pid, "cmdline")).ok()?;
        let mut bytes = Vec::with_capacity(limit.min(4096));
        file.take(limit as u64).read_to_end(&mut bytes).ok()?;
        Some(bytes)
    }

    /// The file the process runs, whatever its name now: `exe` followed
    /// (procfs resolves it to the file itself, deleted or not).
    pub fn exe_identity(&self, pid: u32) -> Option<FileIdentity> {
        file_identity(&self.pid_path(pid, "exe"))
    }

    /// The file at `path` as the process sees it (through its `root`, so in
    /// its mount namespace), if there is one.
    pub fn identity_in_root(&self, pid: u32, path: &[u8]) -> Option<FileIdentity> {
        let relative = path.strip_prefix(b"/")?;
        let mut full = self.pid_path(pid, "root");
        full.push(bytes_path(relative)?);
        file_identity(&full)
    }

    /// `comm`: the name a process gives itself (15 bytes at most), escaped
    /// where it is not plain text (`crate::owners::escape`).
    pub fn comm(&self, pid: u32) -> Option<String> {
        let bytes = std::fs::read(self.pid_path(pid, "comm")).ok()?;
        let name = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        Some(crate::owners::escape::escape(name))
    }

    /// The text of `cgroup`, each line escaped where it is not plain text
    /// (a cgroup may be named with any bytes; see `crate::owners::escape`).
    pub fn cgroup(&self, pid: u32) -> Option<String> {
        let bytes = std::fs::read(self.pid_path(pid, "cgroup")).ok()?;
        let lines: Vec<String> = bytes
            .split(|&b| b == b'\n')
            .map(crate::owners::escape::escape)
            .collect();
        Some(lines.join("\n"))
    }

    /// The network namespace a process's main thread is in: one readlink.
    pub fn net_namespace(&self, pid: u32) -> Option<u64> {
        namespace_link(&self.pid_path(pid, "ns/net"))
    }

    /// The network namespace of one thread (a thread may `unshare` alone).
    pub fn thread_net_namespace(&self, pid: u32, tid: u32) -> Option<u64> {
        namespace_link(&self.pid_path(pid, &format!("task/{tid}/ns/net")))
    }

    /// The thread ids of a process, ascending.
    pub fn threads(&self, pid: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(self.pid_path(pid, "task")) else {
            return Vec::new();
        };
        let mut tids: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        tids
    }

    /// The exporter's own network namespace.
    pub fn own_net_namespace(&self) -> io::Result<u64> {
        let path = self.self_path("ns/net");
        namespace_link(&path)
            .ok_or_else(|| io::Error::other(format!("cannot read {}", path.display())))
    }

    /// Named namespaces bind-mounted under `--path.netns`, as (inode, path).
    /// These may hold no process at all.
    pub fn named_namespaces(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.netns_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                Some((file_inode(&path)?, path))
            })
            .collect()
    }

    /// `net.ipv4.ip_unprivileged_port_start` of the exporter's namespace.
    /// `Ok(None)` where the kernel has no such setting (before 4.11).
    pub fn unprivileged_port_start(&self) -> Result<Option<i64>, String> {
        // A Linux setting; elsewhere there is none (and under Wine "/proc"
        // would reach the Linux host's).
        if cfg!(not(target_os = "linux")) {
            return Ok(None);
        }
        let path = self.procfs.join("sys/net/ipv4/ip_unprivileged_port_start");
        match std::fs::read(&path) {
            Ok(bytes) => parse_sysctl_integer(&bytes)
                .map(Some)
                .ok_or_else(|| format!("{} does not hold an integer", path.display())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(format!("cannot read {}: {err}", path.display())),
        }
    }
}

/// Real uid (`Uid:` line, first field) and parent pid (`PPid:`) from the
/// bytes of a `status` file.
pub fn parse_status(bytes: &[u8]) -> Option<ProcessStatus> {
    let mut uid = None;
    let mut ppid = None;
    for line in bytes.split(|&b| b == b'\n') {
        let field = |key: &[u8]| -> Option<u32> {
            let rest = line.strip_prefix(key)?;
            let text = std::str::from_utf8(rest).ok()?;
            text.split_ascii_whitespace().next()?.parse().ok()
        };
        if let Some(value) = field(b"Uid:") {
            uid = Some(value);
        } else if let Some(value) = field(b"PPid:") {
            ppid = Some(value);
        }
        if uid.is_some() && ppid.is_some() {
            break;
        }
    }
    Some(ProcessStatus {
        uid: uid?,
        ppid: ppid.unwrap_or(0),
    })
}

/// Device, inode and link count of a file (symlinks followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileIdentity {
    pub dev: u64,
    pub inode: u64,
    /// 0 once the file was unlinked everywhere.
    pub links: u64,
}

#[cfg(unix)]
fn file_identity(path: &Path) -> Option<FileIdentity> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileIdentity {
        dev: meta.dev(),
        inode: meta.ino(),
        links: meta.nlink(),
    })
}

#[cfg(not(unix))]
fn file_identity(_path: &Path) -> Option<FileIdentity> {
    None
}

#[cfg(unix)]
fn os_bytes(text: std::ffi::OsString) -> Vec<u8> {
    std::os::unix::ffi::OsStringExt::into_vec(text)
}

#[cfg(not(unix))]
fn os_bytes(text: std::ffi::OsString) -> Vec<u8> {
    text.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn bytes_path(bytes: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
}

#[cfg(not(unix))]
fn bytes_path(bytes: &[u8]) -> Option<PathBuf> {
    std::str::from_utf8(bytes).ok().map(PathBuf::from)
}

/// The one parser for integer sysctls: ASCII digits, a newline, maybe
/// surrounding space.
pub fn parse_sysctl_integer(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// The text of `/proc/PID/loginuid`: a uid, or 4294967295 (unset) as `None`.
pub fn parse_login_uid(text: &str) -> Option<u32> {
    const UNSET: u32 = u32::MAX;
    text.trim().parse().ok().filter(|&uid| uid != UNSET)
}

/// The inode of a `socket:[12345]` link target.
pub fn socket_inode(target: &std::ffi::OsStr) -> Option<u64> {
    bracketed_inode(target.to_str()?, "socket:[")
}

/// The fd links of one process. On Unix the `/proc/PID/fd` directory is
/// opened once and each link is read relative to it (`readlinkat`: one path
/// component looked up instead of four, into a reused buffer, no path
/// built), which halves the cost of confirming 34,000 remembered sockets;
/// elsewhere, or if the directory cannot be opened, each link is read by
/// its full path.
pub struct FdLinks<'a> {
    root: &'a ProcRoot,
    pid: u32,
    #[cfg(unix)]
    dir: Option<rustix::fd::OwnedFd>,
    #[cfg(unix)]
    buffer: Vec<u8>,
}

impl<'a> FdLinks<'a> {
    fn open(root: &'a ProcRoot, pid: u32) -> FdLinks<'a> {
        #[cfg(unix)]
        let dir = {
            use rustix::fs::{Mode, OFlags};
            rustix::fs::open(
                root.pid_path(pid, "fd"),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .ok()
        };
        FdLinks {
            root,
            pid,
            #[cfg(unix)]
            dir,
            #[cfg(unix)]
            buffer: Vec::with_capacity(64),
        }
    }

    /// The process these links belong to.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the task's fd directory could be opened: it still exists
    /// and is ours to read (always `true` where no directory is kept).
    pub fn task_exists(&self) -> bool {
        #[cfg(unix)]
        return self.dir.is_some();
        #[cfg(not(unix))]
        true
    }

    /// The socket inode behind `fd`, if it is (still) a socket.
    pub fn socket_inode(&mut self, fd: u32) -> Option<u64> {
        #[cfg(unix)]
        if let Some(dir) = &self.dir {
            let mut name = [0u8; 10];
            let name = decimal(fd, &mut name);
            let buffer = std::mem::take(&mut self.buffer);
            let target = rustix::fs::readlinkat(dir, name, buffer).ok()?;
            let inode = std::str::from_utf8(target.as_bytes())
                .ok()
                .and_then(|text| bracketed_inode(text, "socket:["));
            self.buffer = target.into_bytes();
            self.buffer.clear();
            return inode;
        }
        self.root.fd_socket_inode(self.pid, fd)
    }
}

/// `value` in decimal, in `buffer`.
#[cfg(unix)]
fn decimal(mut value: u32, buffer: &mut [u8; 10]) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[at..]).unwrap_or("0")
}

/// The inode of a `net:[4026531840]` namespace link at `path`.
fn namespace_link(path: &Path) -> Option<u64> {
    let target = std::fs::read_link(path).ok()?;
    bracketed_inode(target.to_str()?, "net:[")
}

fn bracketed_inode(text: &str, prefix: &str) -> Option<u64> {
    text.strip_prefix(prefix)?.strip_suffix(']')?.parse().ok()
}

#[cfg(unix)]
fn owner_uid(metadata: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::MetadataExt::uid(metadata)
}

#[cfg(not(unix))]
fn owner_uid(_metadata: &std::fs::Metadata) -> u32 {
    0
}

/// A bind-mounted namespace file's inode (the mount shows the nsfs inode).
#[cfg(unix)]
fn file_inode(path: &Path) -> Option<u64> {
    Some(std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(path).ok()?,
    ))
}

#[cfg(not(unix))]
fn file_inode(_path: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_links_and_sysctls() {
        assert_eq!(socket_inode("socket:[4242]".as_ref()), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]".as_ref()), None);
        assert_eq!(socket_inode("socket:[x]".as_ref()), None);
        assert_eq!(
            bracketed_inode("net:[4026531840]", "net:["),
            Some(4026531840)
        );
        assert_eq!(parse_sysctl_integer(b"1024\n"), Some(1024));
        assert_eq!(parse_sysctl_integer(b" 0 "), Some(0));
        assert_eq!(parse_sysctl_integer(b"ten"), None);
        assert_eq!(parse_login_uid("1000"), Some(1000));
        assert_eq!(parse_login_uid("0\n"), Some(0));
        assert_eq!(parse_login_uid("4294967295"), None);
        assert_eq!(parse_login_uid(""), None);
    }

    #[test]
    fn status_is_read_whatever_the_name() {
        let status =
            b"Name:\tbad\xff\nUmask:\t0022\nState:\tS\nPPid:\t17\nUid:\t1001\t1001\t1001\t1001\n";
        assert_eq!(
            parse_status(status),
            Some(ProcessStatus {
                uid: 1001,
                ppid: 17
            })
        );
        assert_eq!(parse_status(b"Name:\tx\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let root = ProcRoot::default();
        let me = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fds = root.socket_fds(me).unwrap();
        let inode = fds
            .iter()
            .find(|(fd, _)| *fd == std::os::fd::AsRawFd::as_raw_fd(&listener) as u32)
            .map(|&(_, inode)| inode)
            .expect("the listener's fd is a socket");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener) as u32;
        assert_eq!(root.fd_socket_inode(me, fd), Some(inode));
        assert!(root.comm(me).is_some_and(|name| !name.is_empty()));
        assert_eq!(
            root.status(me).map(|s| s.uid),
            Some(rustix::process::getuid().as_raw())
        );
        assert_eq!(root.net_namespace(me), root.own_net_namespace().ok());
        assert!(root.pids().unwrap().contains(&me));
        let cmdline = root.cmdline_bytes(me, 1 << 20).unwrap();
        let first = std::env::args_os().next().unwrap();
        assert!(cmdline.starts_with(first.as_encoded_bytes()));
        assert_eq!(root.cmdline_bytes(me, 3).unwrap().len(), 3);
        let own = std::fs::read_to_string("/proc/self/loginuid").ok();
        assert_eq!(root.login_uid(me), own.as_deref().and_then(parse_login_uid));
        if std::fs::read_link("/proc/self/ns/pid")
            .is_ok_and(|link| link.to_str() == Some(&format!("pid:[{INITIAL_PID_NAMESPACE}]")))
        {
            assert!(root.shows_every_process());
        }
    }
}
