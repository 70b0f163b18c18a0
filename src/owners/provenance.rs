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
//!   reads `/memfd:NAME (deleted)`). The path is as the process's mount
//!   namespace names it, so a container's binary shows its in-container
//!   path. Reading it needs ptrace access to the process (root, or
//!   CAP_SYS_PTRACE); kernel threads have none.
//! - `ppid` from `/proc/PID/status` (read by the owner description already),
//!   `parent_process` from the parent's `comm`.
//! - `unit`: the systemd unit in `/proc/PID/cgroup`, parsed with the
//!   container and pod in `super::cgroup`.

use super::cgroup::systemd_unit;
use crate::kernel::procfs::ProcRoot;
use std::ffi::OsStr;

const DELETED_SUFFIX: &str = " (deleted)";

/// A process's executable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exe {
    /// The path, without the " (deleted)" suffix.
    pub path: String,
    /// The file was unlinked after the process started.
    pub deleted: bool,
}

/// Splits a `/proc/PID/exe` link target into path and deleted flag.
pub fn parse_exe_link(target: &OsStr) -> Exe {
    let text = target.to_string_lossy();
    match text.strip_suffix(DELETED_SUFFIX) {
        Some(path) => Exe {
            path: path.to_string(),
            deleted: true,
        },
        None => Exe {
            path: text.into_owned(),
            deleted: false,
        },
    }
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
            exe: proc_root
                .exe_link(pid)
                .map(|target| parse_exe_link(target.as_os_str())),
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
        assert_eq!(
            parse_exe_link(OsStr::new("/usr/sbin/sshd")),
            Exe {
                path: "/usr/sbin/sshd".into(),
                deleted: false
            }
        );
        assert_eq!(
            parse_exe_link(OsStr::new("/tmp/.x/kworker (deleted)")),
            Exe {
                path: "/tmp/.x/kworker".into(),
                deleted: true
            }
        );
        let memfd = parse_exe_link(OsStr::new("/memfd: (deleted)"));
        assert_eq!((memfd.path.as_str(), memfd.deleted), ("/memfd:", true));
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
        let exe = ProcRoot::default()
            .exe_link(child.id())
            .map(|target| parse_exe_link(target.as_os_str()));
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(&dir);
        assert_eq!(
            exe,
            Some(Exe {
                path: expected.to_string_lossy().into_owned(),
                deleted: true
            })
        );
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
