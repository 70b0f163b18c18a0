//! What `/proc/PID/cgroup` says about a process, parsed in one place:
//! which container and Kubernetes pod it runs in, and its systemd unit.
//!
//! - `unit`: the last path component that ends in `.service` or `.scope`,
//!   on the cgroup v2 line (`0::`), else on the v1 `name=systemd` line
//!   (hybrid hosts may have both, with the unit on either). So
//!   `/system.slice/ssh.service` gives `ssh.service`, a delegated
//!   sub-cgroup `/system.slice/x.service/worker` still gives `x.service`, a
//!   login session gives `session-3.scope`, a container started by docker
//!   gives `docker-ID.scope`.

/// Container and Kubernetes pod of a process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    pub container_id: String,
    pub pod_uid: String,
}

/// Finds a container id (the last run of 64 hex digits, as docker,
/// containerd, CRI-O and podman name their cgroups) and a pod uid
/// (`pod` + a UUID, with `_` for `-` under the systemd driver). Empty when
/// the process runs in no container.
pub fn parse_cgroup(text: &str) -> Attribution {
    let mut found = Attribution::default();
    for (_, path) in entries(text) {
        if let Some(id) = last_hex_run(path, 64) {
            found.container_id = id.to_string();
        }
        if let Some(uid) = pod_uid(path) {
            found.pod_uid = uid;
        }
    }
    found
}

/// Each line's controllers and path (`HIERARCHY:CONTROLLERS:PATH`).
fn entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().map(|line| {
        let mut parts = line.splitn(3, ':');
        let hierarchy = parts.next().unwrap_or("");
        let controllers = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        // The unified (v2) line is "0::PATH"; mark it by its hierarchy.
        let controllers = if hierarchy == "0" && controllers.is_empty() {
            "0"
        } else {
            controllers
        };
        (controllers, path)
    })
}

/// The systemd unit (see the module doc).
pub fn systemd_unit(text: &str) -> Option<&str> {
    // In systemd's "legacy" layout the unified line exists but is just "/".
    let unified = entries(text).find(|(controllers, _)| *controllers == "0");
    let named = entries(text).find(|(controllers, _)| *controllers == "name=systemd");
    unified
        .and_then(|(_, path)| unit_in(path))
        .or_else(|| named.and_then(|(_, path)| unit_in(path)))
}

/// The last `.service`/`.scope` component of a cgroup path.
fn unit_in(path: &str) -> Option<&str> {
    path.rsplit('/')
        .find(|part| part.ends_with(".service") || part.ends_with(".scope"))
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
            let normalized = candidate[..36].replace('_', "-");
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
mod tests {
    use super::*;

    #[test]
    fn units_come_from_the_unified_or_the_systemd_hierarchy() {
        assert_eq!(
            systemd_unit("0::/system.slice/ssh.service\n"),
            Some("ssh.service")
        );
        assert_eq!(
            systemd_unit("0::/system.slice/build.service/worker\n"),
            Some("build.service")
        );
        assert_eq!(
            systemd_unit("0::/user.slice/user-1000.slice/session-3.scope\n"),
            Some("session-3.scope")
        );
        assert_eq!(
            systemd_unit(
                "0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n"
            ),
            Some("pipewire.service")
        );
        let v1 = "12:pids:/system.slice/cron.service\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(systemd_unit(v1), Some("cron.service"));
        let legacy = "1:name=systemd:/system.slice/cron.service\n0::/\n";
        assert_eq!(systemd_unit(legacy), Some("cron.service"));
        assert_eq!(systemd_unit("0::/\n"), None);
        assert_eq!(systemd_unit("0::/kubepods/besteffort/pod1/abc\n"), None);
        assert_eq!(systemd_unit(""), None);
    }

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
