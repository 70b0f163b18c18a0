//! A process's name, user, container and provenance (exe, parent, systemd
//! unit): what turns a pid into labels and allow-rule facts.
//!
//! On Linux the name is `/proc/PID/comm` and the uid comes from
//! `/proc/PID/status`, both through [`ProcRoot`] (so `--path.procfs` and
//! fixture trees steer them) and both read as bytes: a name that is not
//! UTF-8 is escaped (`super::escape`) and never costs the uid, the exe or
//! the unit. The user's name comes from sysinfo's passwd reader. Elsewhere
//! sysinfo reads both. The login uid is
//! `/proc/PID/loginuid`, named like the user; the executable's hash comes
//! from the shared [`ExeHashes`] cache when the describer has one.

use super::OwnerFaults;
use super::cgroup::{Attribution, parse_cgroup};
use super::exe_hash::{ExeHashes, NEW_FILES_PER_COLLECTION};
use crate::kernel::procfs::ProcRoot;
use crate::owners::provenance::Provenance;
use crate::policy::allow::{OwnerFacts, SocketFacts};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use sysinfo::{Uid, Users};

/// How long an unknown uid waits before the user list is read again (a
/// user created after start).
const RETRY_USERS_AFTER: Duration = Duration::from_secs(60);

/// A listener's owner, ready to become labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: Option<u32>,
    pub process: String,
    pub user: String,
    /// Real uid, for `user=UID` allow selectors.
    pub uid: Option<u32>,
    /// Its container and pod, if it runs in one.
    pub place: Attribution,
    /// Executable, parent and systemd unit.
    pub provenance: Provenance,
    /// `/proc/PID/loginuid`: who logged in to start it (survives sudo);
    /// `None` when unset.
    pub login_uid: Option<u32>,
    /// The login uid's user name ("" when unset).
    pub login_user: String,
    /// Lower-case hex SHA-256 of the executable; "" until it is known.
    pub exe_sha256: String,
}

impl Owner {
    /// What allow rules may check about this owner.
    pub fn facts(&self) -> OwnerFacts<'_> {
        OwnerFacts {
            comm: &self.process,
            exe: self.provenance.exe.as_ref().map(|exe| exe.raw.as_slice()),
            user: &self.user,
            uid: self.uid,
            unit: &self.provenance.unit,
            container_id: &self.place.container_id,
            exe_sha256: &self.exe_sha256,
            socket: SocketFacts::default(),
        }
    }
}

/// Describes pids; keeps the user list between collections.
pub struct ProcessDescriber {
    proc_root: ProcRoot,
    /// uid -> name, from the passwd database; `None` if it could not load.
    users: Option<Users>,
    /// When `users` was last loaded.
    users_loaded_at: Instant,
    /// The executable hash cache, when this describer fills `exe_sha256`.
    hashes: Option<ExeHashes>,
}

/// What one process says about itself.
struct Facts {
    name: String,
    uid: Option<u32>,
    /// Where the platform names the user directly (not Linux).
    user: Option<String>,
    ppid: Option<u32>,
}

impl ProcessDescriber {
    pub fn new(proc_root: ProcRoot) -> ProcessDescriber {
        ProcessDescriber {
            proc_root,
            users: Users::new_with_refreshed_list().ok(),
            users_loaded_at: Instant::now(),
            hashes: None,
        }
    }

    /// Fills `exe_sha256` from `hashes` (and hands it new files).
    pub fn with_exe_hashes(mut self, hashes: ExeHashes) -> ProcessDescriber {
        self.set_exe_hashes(hashes);
        self
    }

    /// [`Self::with_exe_hashes`] on a describer already built.
    pub fn set_exe_hashes(&mut self, hashes: ExeHashes) {
        self.hashes = Some(hashes);
    }

    /// Names, users and containers of the given pids. A pid that vanished
    /// is absent from the answer and counted in `faults.vanished`.
    pub fn describe(&mut self, pids: &[u32], faults: &mut OwnerFaults) -> HashMap<u32, Owner> {
        let mut owners = HashMap::with_capacity(pids.len());
        let mut new_files = NEW_FILES_PER_COLLECTION;
        for &pid in pids {
            let Some(facts) = self.facts(pid) else {
                faults.vanished += 1;
                continue;
            };
            let user = match (facts.user, facts.uid) {
                (Some(user), _) => user,
                (None, Some(uid)) => self.user_name(uid),
                (None, None) => String::new(),
            };
            let cgroup = self.proc_root.cgroup(pid);
            let place = cgroup.as_deref().map(parse_cgroup).unwrap_or_default();
            let provenance = Provenance::read(&self.proc_root, pid, facts.ppid, cgroup.as_deref());
            let login_uid = self.proc_root.login_uid(pid);
            let login_user = login_uid.map(|uid| self.user_name(uid)).unwrap_or_default();
            let exe_sha256 = match (&self.hashes, &provenance.exe) {
                (Some(hashes), Some(_)) => hashes
                    .lookup(&self.proc_root.pid_path(pid, "exe"), &mut new_files)
                    .map(|hex| hex.to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            owners.insert(
                pid,
                Owner {
                    pid: Some(pid),
                    process: facts.name,
                    user,
                    uid: facts.uid,
                    place,
                    provenance,
                    login_uid,
                    login_user,
                    exe_sha256,
                },
            );
        }
        owners
    }

    #[cfg(target_os = "linux")]
    fn facts(&self, pid: u32) -> Option<Facts> {
        let name = self.proc_root.comm(pid)?;
        // A process reaped between the two reads has a name and no user: it
        // counts as vanished, so the socket gets a whole owner (the last one
        // known, or the socket's own uid) instead of half of this one.
        let status = self.proc_root.status(pid)?;
        Some(Facts {
            name,
            uid: Some(status.uid),
            user: None,
            ppid: Some(status.ppid),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn facts(&self, pid: u32) -> Option<Facts> {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};
        let pid = Pid::from_u32(pid);
        let mut system = System::new().ok()?;
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_user(UpdateKind::Always),
        );
        let process = system.process(pid)?;
        let user = process.user_id().and_then(|uid| {
            let users = self.users.as_ref()?;
            Some(users.get_user_by_id(uid)?.name().to_string())
        });
        Some(Facts {
            name: process.name().to_string_lossy().into_owned(),
            uid: None,
            user,
            ppid: process.parent().map(|pid| pid.as_u32()),
        })
    }

    /// The user's name, or the numeric uid when no passwd entry has it (a
    /// container's users are often unknown to the host).
    pub fn user_name(&mut self, uid: u32) -> String {
        let lookup = |users: &Option<Users>| {
            users
                .as_ref()?
                .iter()
                .find(|user| uid_number(user.id()) == Some(uid))
                .map(|user| user.name().to_string())
        };
        if let Some(name) = lookup(&self.users) {
            return name;
        }
        if self.users_loaded_at.elapsed() > RETRY_USERS_AFTER {
            self.users = Users::new_with_refreshed_list().ok();
            self.users_loaded_at = Instant::now();
            if let Some(name) = lookup(&self.users) {
                return name;
            }
        }
        uid.to_string()
    }
}

fn uid_number(uid: &Uid) -> Option<u32> {
    uid.to_string().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_process() {
        let me = std::process::id();
        let mut describer = ProcessDescriber::new(ProcRoot::default());
        let mut faults = OwnerFaults::default();
        let owners = describer.describe(&[me], &mut faults);
        assert_eq!(owners[&me].pid, Some(me));
        assert!(!owners[&me].process.is_empty());
        assert!(!owners[&me].user.is_empty());
        assert_eq!(faults.vanished, 0);
        let own = std::fs::read_to_string("/proc/self/loginuid").ok();
        assert_eq!(
            owners[&me].login_uid,
            own.as_deref()
                .and_then(crate::kernel::procfs::parse_login_uid)
        );
        // Without a hash cache, no hash.
        assert_eq!(owners[&me].exe_sha256, "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_hash_comes_from_the_shared_cache_once_hashed() {
        let hashes = ExeHashes::start();
        let mut describer = ProcessDescriber::new(ProcRoot::default()).with_exe_hashes(hashes);
        let me = std::process::id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let hex = loop {
            let owner = describer.describe(&[me], &mut OwnerFaults::default());
            if !owner[&me].exe_sha256.is_empty() {
                break owner[&me].exe_sha256.clone();
            }
            assert!(Instant::now() < deadline, "never hashed");
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut exe = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(
            hex,
            &*crate::owners::exe_hash::sha256_hex(&mut exe).unwrap()
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_keeps_every_other_fact() {
        // A thread renames itself; /proc/PID/task/TID is a process view of it.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            rustix::thread::set_name(c"bad\xff\n\\x").unwrap();
            tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
                .unwrap();
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        let root = ProcRoot::new(
            std::path::PathBuf::from(format!("/proc/{}/task", std::process::id())),
            std::path::PathBuf::from("/run/netns"),
        );
        let mut describer = ProcessDescriber::new(root);
        let mut faults = OwnerFaults::default();
        let owners = describer.describe(&[tid], &mut faults);
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        let owner = &owners[&tid];
        assert_eq!(owner.process, "bad\\xff\\x0a\\\\x");
        assert_eq!(owner.uid, Some(rustix::process::getuid().as_raw()));
        assert!(!owner.user.is_empty());
        assert_eq!(faults.vanished, 0);
    }
}
