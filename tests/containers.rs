//! Issue 21 with a real container runtime: Debian's podman (rootful, runc)
//! runs containers from an image the test builds from busybox-static
//! (`podman import` of a rootfs holding /bin/busybox and its applet links;
//! no registry). The runtime's settings this host needs (`runtime =
//! "runc"`: crun refuses its hybrid cgroups; `default_ulimits = []`) come
//! from a containers.conf of the test's own, named by CONTAINERS_CONF; the
//! machine's configuration is never edited.
//!
//! - a listener on 276 inside a container: container id, the container's
//!   netns and the pid `ss` shows for it;
//! - a published port (`-p 277:8080`): conmon's port holder attributed to
//!   the container, and the DNAT rule with `to_port="8080"`.
//!
//! Containers and images are removed by Drop guards, also when a test
//! fails. Needs root and podman; under CI a missing one fails the test
//! naming it. `tests/run-all.sh` installs podman, busybox-static and
//! iptables.

mod common;

use common::capability::{Capability, gate, require};
use common::{Exporter, run, samples, scrape_until};
use std::path::PathBuf;
use std::sync::Mutex;

/// Podman runs one test at a time (fixed ports, one image store).
static PODMAN: Mutex<()> = Mutex::new(());

/// The test's own containers.conf and image, removed when dropped.
struct Podman {
    dir: PathBuf,
    image: String,
}

impl Podman {
    /// Writes the config and builds the image; `Err` says what is missing.
    fn new(tag: &str) -> Result<Podman, String> {
        run("podman", &["--version"])
            .map_err(|err| format!("podman is not installed (apt-get install podman): {err}"))?;
        if !std::path::Path::new("/bin/busybox").exists() {
            return Err("busybox-static is not installed (apt-get install busybox-static)".into());
        }
        let dir = std::env::temp_dir().join(format!("upe-podman-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).map_err(|e| e.to_string())?;
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = \"runc\"\n",
        )
        .map_err(|e| e.to_string())?;
        let podman = Podman {
            dir: dir.clone(),
            image: format!("localhost/upe-busybox-{tag}:{}", std::process::id()),
        };
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).map_err(|e| e.to_string())?;
        for applet in ["sh", "nc", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .map_err(|e| e.to_string())?;
        }
        let tarball = dir.join("rootfs.tar");
        run(
            "tar",
            &[
                "-C",
                rootfs.to_str().unwrap(),
                "-cf",
                tarball.to_str().unwrap(),
                ".",
            ],
        )?;
        podman.podman(&["import", tarball.to_str().unwrap(), &podman.image])?;
        Ok(podman)
    }

    /// Runs podman with this test's containers.conf.
    fn podman(&self, args: &[&str]) -> Result<String, String> {
        let output = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .args(args)
            .output()
            .map_err(|err| format!("cannot run podman: {err}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(format!(
                "podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// Starts a detached container; removed when the guard drops.
    fn run_detached(&self, options: &[&str], command: &[&str]) -> Result<Container<'_>, String> {
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(options);
        args.push(&self.image);
        args.extend_from_slice(command);
        let id = self.podman(&args)?;
        Ok(Container { podman: self, id })
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rmi", "-f", &self.image]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Container<'a> {
    podman: &'a Podman,
    id: String,
}

impl Container<'_> {
    /// The host pid of the container's first process.
    fn pid(&self) -> String {
        self.podman
            .podman(&["inspect", "-f", "{{.State.Pid}}", &self.id])
            .unwrap()
    }

    /// The inode of the container's network namespace.
    fn netns(&self) -> String {
        let link = std::fs::read_link(format!("/proc/{}/ns/net", self.pid())).unwrap();
        let text = link.to_string_lossy().into_owned();
        text.trim_start_matches("net:[")
            .trim_end_matches(']')
            .to_string()
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.podman.podman(&["rm", "-f", "-t", "0", &self.id]);
    }
}

/// Podman and root, or the reason the test cannot run.
fn podman_or_skip(tag: &str) -> Option<Podman> {
    if !require(Capability::Root) {
        return None;
    }
    match Podman::new(tag) {
        Ok(podman) => Some(podman),
        Err(reason) => {
            gate(Capability::Podman, Err(reason));
            None
        }
    }
}

#[test]
fn a_listener_in_a_container_has_its_container_netns_and_pid() {
    let _turn = PODMAN.lock().unwrap_or_else(|p| p.into_inner());
    let Some(podman) = podman_or_skip("listener") else {
        return;
    };
    let container = podman
        .run_detached(&[], &["nc", "-l", "-p", "276"])
        .unwrap();
    let netns = container.netns();
    let exporter = Exporter::start(&["--collector.netns=all"]);
    let text = scrape_until(&exporter, "the container's listener", |text| {
        samples(text, "unassigned_port_listeners")
            .iter()
            .any(|(l, _)| l["netns"] == netns && l["port"] == "276" && !l["pid"].is_empty())
    });
    let (labels, _) = samples(&text, "unassigned_port_listeners")
        .into_iter()
        .find(|(l, _)| l["netns"] == netns && l["port"] == "276")
        .unwrap();
    assert_eq!(labels["container_id"], container.id, "{labels:?}");
    assert_eq!(labels["process"], "nc");
    // The pid `ss` shows for the socket, from the container's namespace.
    let ss = run(
        "nsenter",
        &["-t", &container.pid(), "-n", "ss", "-Hltnp", "sport = :276"],
    )
    .unwrap();
    let ss_pid = ss
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default();
    assert_eq!(labels["pid"], ss_pid, "ss: {ss}");
    // Only lo and the podman network's private address: not "any".
    assert_eq!(labels["exposure"], "private", "{labels:?}");
}

#[test]
fn a_published_port_is_attributed_to_the_container_that_answers() {
    let _turn = PODMAN.lock().unwrap_or_else(|p| p.into_inner());
    let Some(podman) = podman_or_skip("published") else {
        return;
    };
    let container = podman
        .run_detached(&["-p", "277:8080"], &["nc", "-l", "-p", "8080"])
        .unwrap();
    let netns = container.netns();
    let exporter = Exporter::start(&["--collector.netns=all"]);
    let forwarded_277 = |text: &str| -> Vec<common::Series> {
        samples(text, "unassigned_port_forwarded_ports")
            .into_iter()
            .filter(|(l, _)| l["port"] == "277" && l["protocol"] == "tcp")
            .collect()
    };
    let text = scrape_until(&exporter, "the holder and the DNAT rule of 277", |text| {
        forwarded_277(text).len() >= 2
    });
    let found = forwarded_277(&text);
    let holder = &found
        .iter()
        .find(|(l, _)| l["mechanism"] == "holder")
        .unwrap_or_else(|| panic!("no holder: {found:?}"))
        .0;
    assert_eq!(holder["netns"], "host");
    assert_eq!(holder["container_id"], container.id);
    assert_eq!(holder["to_port"], "8080");
    assert_eq!(holder["to_netns"], netns);
    let dnat = &found
        .iter()
        .find(|(l, _)| l["mechanism"] == "dnat")
        .unwrap_or_else(|| panic!("no DNAT rule: {found:?}"))
        .0;
    assert_eq!(dnat["to_port"], "8080");
    assert_eq!(dnat["to_netns"], netns);
    assert_eq!(dnat["to_address"], holder["to_address"]);
    assert_eq!(dnat["container_id"], container.id);
    // conmon holds the host port: it is a listener too, in the host.
    assert!(
        samples(&text, "unassigned_port_listeners")
            .iter()
            .any(|(l, _)| l["port"] == "277" && l["process"] == "conmon" && l["netns"] == "host")
    );
}
