//! Which container and Kubernetes pod a process runs in, from the text of
//! its `/proc/PID/cgroup`.

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
