//! Which process holds a socket, and its name and user.
//!
//! The kernel reports a socket's inode, not its process; the only link is a
//! `/proc/PID/fd/N` symlink reading `socket:[INODE]`. Walking every fd of
//! every process costs time proportional to all open files on the host, so
//! this resolver remembers where it found each inode and, on later scrapes,
//! checks that one symlink again (one readlink per listener). It walks /proc
//! only for inodes it has never placed, and makes that walk cheap: processes
//! running as the socket's uid are searched first, and the walk stops as soon
//! as every wanted inode is found.
//!
//! A socket shared by many processes (a pre-fork server's listener, inherited
//! by every worker) is reported once, under the lowest pid that holds it:
//! /proc lists pids in ascending order and the walk stops at the first
//! holder, which for pre-fork servers is normally the master process.
//!
//! Process names and users come from sysinfo, refreshed for the pids found
//! here only. sysinfo reads `/proc` itself; `--path.procfs` steers the fd walk.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, Uid, UpdateKind, Users};

/// How long an inode that no walk could place is left alone before trying
/// again: a socket held by a process we may not inspect stays unplaceable,
/// and walking /proc for it on every scrape would cost the whole walk again.
const RETRY_UNFOUND_AFTER: Duration = Duration::from_secs(60);
const RETRY_USERS_AFTER: Duration = Duration::from_secs(60);

/// A listener's owner, ready to become labels.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub pid: Option<u32>,
    pub process: String,
    pub user: String,
    /// Its container and pod, if it runs in one.
    pub place: Attribution,
}

/// What went wrong while placing sockets, for the error counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerFaults {
    /// Sockets whose process could not be found.
    pub unfound: u64,
    /// Processes whose fd table we were not allowed to read.
    pub denied: u64,
    /// Pids found holding a socket whose details vanished before we read them.
    pub vanished: u64,
}

/// One socket to place: its inode and the uid that created it.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub inode: u64,
    pub uid: u32,
}

/// Remembers inode locations and process details between scrapes.
pub struct OwnerResolver {
    procfs: PathBuf,
    /// inode -> (pid, fd) where an earlier scrape found it.
    places: HashMap<u64, (u32, u32)>,
    /// inode -> when a walk last failed to find it.
    unfound_since: HashMap<u64, Instant>,
    /// `None` until first needed, or when sysinfo could not start.
    system: Option<System>,
    users: Option<Users>,
    users_loaded_at: Instant,
}

impl OwnerResolver {
    pub fn new(procfs: PathBuf) -> OwnerResolver {
        OwnerResolver {
            procfs,
            places: HashMap::new(),
            unfound_since: HashMap::new(),
            system: None,
            users: Users::new_with_refreshed_list().ok(),
            users_loaded_at: Instant::now(),
        }
    }

    /// Finds the pid holding each wanted inode (the lowest one, see the
    /// module doc). Inodes that cannot be placed are absent from the answer.
    pub fn find_pids(&mut self, wanted: &[Wanted], faults: &mut OwnerFaults) -> HashMap<u64, u32> {
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing: HashSet<u64> = HashSet::new();
        let now = Instant::now();
        for socket in wanted {
            if let Some(&(pid, fd)) = self.places.get(&socket.inode)
                && self.fd_points_at(pid, fd, socket.inode)
            {
                found.insert(socket.inode, pid);
                continue;
            }
            let recently_unfound = self
                .unfound_since
                .get(&socket.inode)
                .is_some_and(|since| now.duration_since(*since) < RETRY_UNFOUND_AFTER);
            if !recently_unfound {
                missing.insert(socket.inode);
            }
        }
        if !missing.is_empty() {
            let uids: HashSet<u32> = wanted
                .iter()
                .filter(|socket| missing.contains(&socket.inode))
                .map(|socket| socket.uid)
                .collect();
            for (inode, place) in self.walk(&missing, &uids, faults) {
                self.places.insert(inode, place);
                found.insert(inode, place.0);
            }
        }
        // Forget what no longer listens, so the maps stay as small as the table.
        let current: HashSet<u64> = wanted.iter().map(|socket| socket.inode).collect();
        self.places.retain(|inode, _| current.contains(inode));
        self.unfound_since
            .retain(|inode, _| current.contains(inode));
        for socket in wanted {
            if !found.contains_key(&socket.inode) {
                faults.unfound += 1;
                self.unfound_since.entry(socket.inode).or_insert(now);
            } else {
                self.unfound_since.remove(&socket.inode);
            }
        }
        found
    }

    fn fd_points_at(&self, pid: u32, fd: u32, inode: u64) -> bool {
        let link = self.procfs.join(format!("{pid}/fd/{fd}"));
        std::fs::read_link(link).is_ok_and(|target| socket_inode(target.as_os_str()) == Some(inode))
    }

    /// Searches /proc for the missing inodes: first the processes running as
    /// one of `uids`, then the rest, stopping once all are found.
    fn walk(
        &self,
        missing: &HashSet<u64>,
        uids: &HashSet<u32>,
        faults: &mut OwnerFaults,
    ) -> HashMap<u64, (u32, u32)> {
        let mut places = HashMap::new();
        let Ok(entries) = std::fs::read_dir(&self.procfs) else {
            return places;
        };
        let mut pids: Vec<(u32, bool)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let uid = entry.metadata().ok()?.uid();
                Some((pid, uids.contains(&uid)))
            })
            .collect();
        // Same-uid processes first, each group in ascending pid order.
        pids.sort_unstable_by_key(|&(pid, same_uid)| (!same_uid, pid));
        for (pid, _) in pids {
            self.search_process(pid, missing, &mut places, faults);
            if places.len() == missing.len() {
                break;
            }
        }
        places
    }

    fn search_process(
        &self,
        pid: u32,
        missing: &HashSet<u64>,
        places: &mut HashMap<u64, (u32, u32)>,
        faults: &mut OwnerFaults,
    ) {
        let fd_dir = self.procfs.join(format!("{pid}/fd"));
        let entries = match std::fs::read_dir(&fd_dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                faults.denied += 1;
                return;
            }
            Err(_) => return, // the process exited while we looked
        };
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let Some(inode) = socket_inode(target.as_os_str()) else {
                continue;
            };
            if missing.contains(&inode) && !places.contains_key(&inode) {
                let fd = entry.file_name().to_str().and_then(|n| n.parse().ok());
                if let Some(fd) = fd {
                    places.insert(inode, (pid, fd));
                }
            }
        }
    }

    /// Names, users and containers of the given pids, refreshing only those
    /// in sysinfo.
    pub fn describe(&mut self, pids: &[u32], faults: &mut OwnerFaults) -> HashMap<u32, Owner> {
        let wanted: Vec<Pid> = pids.iter().map(|&pid| Pid::from_u32(pid)).collect();
        // sysinfo keeps every process it was ever asked about; start afresh
        // when that memory grows well past what one scrape needs.
        if self
            .system
            .as_ref()
            .is_none_or(|system| system.processes().len() > 256 + 4 * wanted.len())
        {
            self.system = System::new().ok();
        }
        if let Some(system) = self.system.as_mut() {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&wanted),
                true,
                ProcessRefreshKind::nothing().with_user(UpdateKind::Always),
            );
        }
        let mut owners = HashMap::with_capacity(pids.len());
        for &pid in pids {
            let process = self
                .system
                .as_ref()
                .and_then(|s| s.process(Pid::from_u32(pid)));
            let Some(process) = process else {
                faults.vanished += 1;
                owners.insert(
                    pid,
                    Owner {
                        pid: Some(pid),
                        ..Owner::default()
                    },
                );
                continue; // gone: no cgroup to read either
            };
            let process_name = process.name().to_string_lossy().into_owned();
            let uid = process.user_id().cloned();
            let user = uid.map(|uid| self.user_name(&uid)).unwrap_or_default();
            owners.insert(
                pid,
                Owner {
                    pid: Some(pid),
                    process: process_name,
                    user,
                    place: attribution(&self.procfs, pid),
                },
            );
        }
        owners
    }

    /// The user's name, or the numeric uid when no passwd entry has it (a
    /// container's users are often unknown to the host).
    fn user_name(&mut self, uid: &Uid) -> String {
        let lookup = |users: &Option<Users>| {
            users
                .as_ref()
                .and_then(|users| users.get_user_by_id(uid))
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

/// The inode of a `socket:[12345]` link target.
pub fn socket_inode(target: &std::ffi::OsStr) -> Option<u64> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode("socket:[4242]".as_ref()), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]".as_ref()), None);
        assert_eq!(socket_inode("socket:[x]".as_ref()), None);
    }

    #[test]
    fn finds_this_process_and_remembers_the_place() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        let inode = socket_inode(link.as_os_str()).unwrap();
        let me = std::process::id();
        let mut resolver = OwnerResolver::new(PathBuf::from("/proc"));
        let mut faults = OwnerFaults::default();
        let wanted = [Wanted {
            inode,
            uid: unsafe { libc::geteuid() },
        }];
        assert_eq!(
            resolver.find_pids(&wanted, &mut faults).get(&inode),
            Some(&me)
        );
        assert_eq!(resolver.places.get(&inode).map(|p| p.0), Some(me));
        assert_eq!(
            resolver.find_pids(&wanted, &mut faults).get(&inode),
            Some(&me)
        );
        assert_eq!(faults.unfound, 0);
        let owners = resolver.describe(&[me], &mut faults);
        assert_eq!(owners[&me].pid, Some(me));
        assert!(!owners[&me].process.is_empty());
        assert!(!owners[&me].user.is_empty());
    }

    #[test]
    fn an_inode_nobody_holds_is_a_counted_fault() {
        let mut resolver = OwnerResolver::new(PathBuf::from("/proc"));
        let mut faults = OwnerFaults::default();
        let wanted = [Wanted {
            inode: u64::MAX,
            uid: 0,
        }];
        assert!(resolver.find_pids(&wanted, &mut faults).is_empty());
        assert_eq!(faults.unfound, 1);
    }
}

/// Container and Kubernetes pod of a process, from `/proc/PID/cgroup`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    pub container_id: String,
    pub pod_uid: String,
}

/// Reads `{procfs}/PID/cgroup`; empty when the process runs in no container.
pub fn attribution(procfs: &std::path::Path, pid: u32) -> Attribution {
    std::fs::read_to_string(procfs.join(format!("{pid}/cgroup")))
        .map(|text| parse_cgroup(&text))
        .unwrap_or_default()
}

/// Finds a container id (the last run of 64 hex digits, as docker,
/// containerd, CRI-O and podman name their cgroups) and a pod uid
/// (`pod` + a UUID, with `_` for `-` under the systemd driver).
pub fn parse_cgroup(text: &str) -> Attribution {
    let mut found = Attribution::default();
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        if let Some(id) = last_hex_run(path, 64) {
            found.container_id = id.to_string();
        }
        if let Some(uid) = pod_uid(path) {
            found.pod_uid = uid;
        }
    }
    found
}

fn last_hex_run(text: &str, length: usize) -> Option<&str> {
    let bytes = text.as_bytes();
    let mut end = bytes.len();
    while end >= length {
        let start = end - length;
        let run = &bytes[start..end];
        let bounded = (start == 0 || !bytes[start - 1].is_ascii_hexdigit())
            && (end == bytes.len() || !bytes[end].is_ascii_hexdigit());
        if bounded && run.iter().all(|b| b.is_ascii_hexdigit()) {
            return Some(&text[start..end]);
        }
        end -= 1;
    }
    None
}

fn pod_uid(path: &str) -> Option<String> {
    let mut rest = path;
    let mut uid = None;
    while let Some(at) = rest.find("pod") {
        let candidate = &rest[at + 3..];
        if candidate.len() >= 36 {
            let raw = &candidate[..36];
            let normalized = raw.replace('_', "-");
            let shaped = normalized.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
            if shaped {
                uid = Some(normalized);
            }
        }
        rest = &rest[at + 3..];
    }
    uid
}

#[cfg(test)]
mod attribution_tests {
    use super::*;

    #[test]
    fn reads_docker_containerd_and_kubernetes_cgroups() {
        let id = "4f1c2e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";
        let docker = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(parse_cgroup(&docker).container_id, id);
        assert_eq!(parse_cgroup(&docker).pod_uid, "");
        let kube = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0d4b4a6f_cb1b_4bd9_9f9b_2c8a8e9b3c2e.slice/cri-containerd-{id}.scope\n"
        );
        let found = parse_cgroup(&kube);
        assert_eq!(found.container_id, id);
        assert_eq!(found.pod_uid, "0d4b4a6f-cb1b-4bd9-9f9b-2c8a8e9b3c2e");
        let v1 =
            format!("4:memory:/kubepods/burstable/pod0d4b4a6f-cb1b-4bd9-9f9b-2c8a8e9b3c2e/{id}\n");
        assert_eq!(
            parse_cgroup(&v1).pod_uid,
            "0d4b4a6f-cb1b-4bd9-9f9b-2c8a8e9b3c2e"
        );
        assert_eq!(
            parse_cgroup("0::/user.slice/session-3.scope\n"),
            Attribution::default()
        );
    }
}
