//! Issue 15: a dense container host. 1,200 network namespaces, each with a
//! listener on 276/tcp, read by an exporter whose open-file limit is 1,024
//! (soft and hard, so it cannot raise it): every listener must be reported
//! and every scrape must answer 200. Needs root, named namespaces and a
//! hard open-file limit that holds the test's own listeners (CI has them):
//! without them it skips with one line, or fails in CI.

mod common;

use common::capability::{Capability, gate, require};
use common::{Exporter, samples};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use unassigned_port_exporter::kernel::netns::enter::run_in;

const NAMESPACES: usize = 1_200;

/// Namespaces made with `ip netns add`, deleted when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Raises this test's own soft open-file limit: it holds one listener per
/// namespace.
fn raise_own_limit(needed: u64) -> bool {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.maximum.is_some_and(|hard| hard < needed) {
        return false;
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )
    .is_ok()
}

#[test]
fn every_listener_of_1200_namespaces_under_a_1024_fd_limit() {
    if !require(Capability::Root) || !require(Capability::NetworkNamespaces) {
        return;
    }
    let wanted = 2 * NAMESPACES as u64 + 100;
    let raised = raise_own_limit(wanted);
    let why = format!("cannot raise this process's open-file limit to {wanted}");
    if !gate(Capability::OpenFiles, raised.then_some(()).ok_or(why)) {
        return;
    }
    let mut namespaces = Namespaces(Vec::new());
    let mut held = Vec::with_capacity(NAMESPACES);
    for n in 0..NAMESPACES {
        let name = format!("upe-dense-{}-{n}", std::process::id());
        let made = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "ip netns add {name} failed");
        namespaces.0.push(name.clone());
        let path = Path::new("/run/netns").join(&name);
        let listener = run_in(&path, || TcpListener::bind((Ipv4Addr::UNSPECIFIED, 276)))
            .unwrap()
            .unwrap();
        held.push(listener);
    }

    let exporter = Exporter::start_under(&["prlimit", "--nofile=1024:1024"], &["--log.level=info"]);
    let me = std::process::id().to_string();
    for round in 0..3 {
        let response = ureq::get(&format!("http://127.0.0.1:{}/metrics", exporter.port))
            .timeout(Duration::from_secs(30))
            .call()
            .unwrap_or_else(|err| panic!("scrape {round} failed: {err}"));
        assert_eq!(response.status(), 200, "scrape {round}");
        let text = response.into_string().unwrap();
        let ours: f64 = samples(&text, "unassigned_port_listeners")
            .into_iter()
            .filter(|(labels, _)| {
                labels.get("pid") == Some(&me)
                    && labels.get("port").map(String::as_str) == Some("276")
                    && labels.get("netns").is_some_and(|ns| ns != "host")
            })
            .map(|(_, value)| value)
            .sum();
        assert_eq!(
            ours as usize, NAMESPACES,
            "scrape {round} reported {ours} of {NAMESPACES}"
        );
        let failed: f64 = samples(&text, "unassigned_port_network_namespaces")
            .into_iter()
            .filter(|(labels, _)| labels.get("state").map(String::as_str) == Some("failed"))
            .map(|(_, value)| value)
            .sum();
        assert_eq!(failed, 0.0, "scrape {round}: namespaces failed");
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", exporter.child.id()))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(fds < 1024, "the exporter holds {fds} descriptors");
    eprintln!("exporter descriptors with {NAMESPACES} namespaces: {fds}");
    drop(held);
}
