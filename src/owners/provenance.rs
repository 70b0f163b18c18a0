//! Where a socket's owner came from: its executable (and whether that file
//! was deleted after start), its parent, its systemd unit. These are the
//! facts a triage needs and that a process cannot set for itself the way it
//! sets its name (`comm`).
//!
//! Reads go through [`ProcRoot`] (`--path.procfs`, fixture trees); the
//! parsing is done by pure functions over link targets and file text.
//!
//! - `exe`: the target of `/proc/PID/exe`. The kernel appends " (deleted)"
//!   when the file was unlinked after the process started (a package upgrade
//!   replacing a binary, or malware removing itself; a `memfd` executable
//!   reads `/memfd:NAME (deleted)`). But a file may also be *named*
//!   `z (deleted)`, so the text alone decides nothing: when the target ends
//!   so, the file at that path, seen through the process's own root, is
//!   compared with the file the process runs (`exe` followed: device and
//!   inode). The same file, still linked, means the name is real and
//!   nothing was deleted; anything else means the kernel added the suffix.
//!   The path is as the process's mount namespace names it, so a
//!   container's binary shows its in-container path, kept as raw bytes for
//!   `exe=` rules and escaped for the label (`super::escape`). Reading it
//!   needs ptrace access to the process (root, or CAP_SYS_PTRACE); kernel
//!   threads have none.
//! - `ppid` from `/proc/PID/status` (read by the owner description already),
//!   `parent_process` from the parent's `comm`.
//! - `unit`: the systemd unit in `/proc/PID/cgroup`, parsed with the
//!   container and pod in `super::cgroup`.

use super::cgroup::systemd_unit;
use super::escape::escape;
use crate::kernel::procfs::{FileIdentity, ProcRoot};

const DELETED_SUFFIX: &[u8] = b" (deleted)";

/// A process's executable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exe {
    /// The path as label text (escaped), without a " (deleted)" the kernel
    /// added.
    pub path: String,
    /// The file was unlinked after the process started.
    pub deleted: bool,
    /// The path's bytes, for `exe=` rules.
    pub raw: Vec<u8>,
}

impl Exe {
    fn new(raw: &[u8], deleted: bool) -> Exe {
        Exe {
            path: escape(raw),
            deleted,
            raw: raw.to_vec(),
        }
    }
}

/// Decides what an `exe` link target means. `running` is the file the
/// process runs; `named` the file at the full target path (suffix
/// included) as the process sees it. Only when both are the same linked
/// file is a " (deleted)" ending part of the name.
pub fn judge_exe_link(
    target: &[u8],
    running: Option<FileIdentity>,
    named: Option<FileIdentity>,
) -> Exe {
    let Some(path) = target.strip_suffix(DELETED_SUFFIX) else {
        return Exe::new(target, false);
    };
    let same_linked_file = matches!(
        (running, named),
        (Some(running), Some(named))
            if running.dev == named.dev && running.inode == named.inode && running.links > 0
    );
    if same_linked_file {
        Exe::new(target, false)
    } else {
        Exe::new(path, true)
    }
}

/// The executable of `pid` (see the module doc).
pub fn read_exe(proc_root: &ProcRoot, pid: u32) -> Option<Exe> {
    let target = proc_root.exe_target(pid)?;
    if !target.ends_with(DELETED_SUFFIX) {
        return Some(Exe::new(&target, false));
    }
    let running = proc_root.exe_identity(pid);
    let named = proc_root.identity_in_root(pid, &target);
    Some(judge_exe_link(&target, running, named))
}

/// Everything above for one pid; missing facts are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provenance {
    pub exe: Option<Exe>,
    pub ppid: Option<u32>,
    /// The parent's comm; "" when it is unknown or gone.
    pub parent_process: String,
    /// "" when the process is in no systemd unit.
    pub unit: String,
}

impl Provenance {
    /// Completes what the caller already read (`ppid` from `status`, the
    /// `cgroup` text) with the exe link and the parent's comm: one readlink
    /// and one small read.
    pub fn read(
        proc_root: &ProcRoot,
        pid: u32,
        ppid: Option<u32>,
        cgroup: Option<&str>,
    ) -> Provenance {
        Provenance {
            exe: read_exe(proc_root, pid),
            ppid,
            parent_process: ppid
                .filter(|&ppid| ppid != 0)
                .and_then(|ppid| proc_root.comm(ppid))
                .unwrap_or_default(),
            unit: cgroup
                .and_then(systemd_unit)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};

    #[test]
    fn exe_links_say_when_the_file_was_deleted() {
        let file = |inode, links| {
            Some(FileIdentity {
                dev: 8,
                inode,
                links,
            })
        };
        assert_eq!(
            judge_exe_link(b"/usr/sbin/sshd", None, None),
            Exe::new(b"/usr/sbin/sshd", false)
        );
        let deleted = judge_exe_link(b"/tmp/.x/kworker (deleted)", file(5, 0), None);
        assert_eq!(
            (deleted.path.as_str(), deleted.deleted),
            ("/tmp/.x/kworker", true)
        );
        let memfd = judge_exe_link(b"/memfd: (deleted)", file(5, 0), None);
        assert_eq!((memfd.path.as_str(), memfd.deleted), ("/memfd:", true));
        // A file named "z (deleted)", present: the name is the path.
        let named = judge_exe_link(b"/tmp/z (deleted)", file(5, 1), file(5, 1));
        assert_eq!(
            (named.path.as_str(), named.deleted),
            ("/tmp/z (deleted)", false)
        );
        // Another file now has that name: the one running was deleted.
        let replaced = judge_exe_link(b"/tmp/z (deleted)", file(5, 0), file(6, 1));
        assert_eq!((replaced.path.as_str(), replaced.deleted), ("/tmp/z", true));
        // Bytes that are not UTF-8 are escaped in the label, kept raw.
        let bad = judge_exe_link(b"/tmp/bad\xff\n", None, None);
        assert_eq!(bad.path, "/tmp/bad\\xff\\x0a");
        assert_eq!(bad.raw, b"/tmp/bad\xff\n");
    }

    #[test]
    fn reads_a_live_child() {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let root = ProcRoot::default();
        let me = std::process::id();
        let pid = child.id();
        let ppid = root.status(pid).map(|status| status.ppid);
        let found = Provenance::read(&root, pid, ppid, root.cgroup(pid).as_deref());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.ppid, Some(me));
        assert_eq!(found.parent_process, root.comm(me).unwrap());
        let exe = found.exe.expect("our own child's exe is readable");
        assert!(!exe.deleted);
        let sleep = which("sleep");
        assert_eq!(Path::new(&exe.path), std::fs::canonicalize(sleep).unwrap());
        // Whatever unit we run in (if any), the child shares it.
        let ours = root.cgroup(me);
        let ours = ours.as_deref().and_then(systemd_unit).unwrap_or_default();
        assert_eq!(found.unit, ours);
    }

    #[test]
    fn a_deleted_copy_of_a_binary_is_flagged() {
        let dir = std::env::temp_dir().join(format!("provenance-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("sleeper");
        std::fs::copy(which("sleep"), &copy).unwrap();
        let expected = std::fs::canonicalize(&copy).unwrap();
        let mut child = spawn_retrying(&copy);
        std::fs::remove_file(&copy).unwrap();
        let exe = read_exe(&ProcRoot::default(), child.id());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(&dir);
        let expected = expected.to_str().unwrap().as_bytes();
        assert_eq!(exe, Some(Exe::new(expected, true)));
    }

    #[test]
    fn a_file_named_deleted_is_not_deleted() {
        let dir = std::env::temp_dir().join(format!("provenance-named-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("z (deleted)");
        std::fs::copy(which("sleep"), &copy).unwrap();
        let expected = std::fs::canonicalize(&copy).unwrap();
        let mut child = spawn_retrying(&copy);
        let present = read_exe(&ProcRoot::default(), child.id());
        // Deleting it now makes the kernel add a second suffix.
        std::fs::remove_file(&copy).unwrap();
        let gone = read_exe(&ProcRoot::default(), child.id());
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(&dir);
        let expected = expected.to_str().unwrap().as_bytes();
        assert_eq!(present, Some(Exe::new(expected, false)));
        assert_eq!(gone, Some(Exe::new(expected, true)));
    }

    /// A file just written may be briefly "busy" when another test thread
    /// forks while it is open for writing: retry a few times.
    fn spawn_retrying(program: &Path) -> std::process::Child {
        for _ in 0..50 {
            match Command::new(program).arg("30").spawn() {
                Ok(child) => return child,
                Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(err) => panic!("cannot run {}: {err}", program.display()),
            }
        }
        panic!("{} stayed busy", program.display())
    }

    fn which(program: &str) -> std::path::PathBuf {
        std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
            .unwrap_or_else(|| panic!("{program} is not on PATH"))
    }
}
