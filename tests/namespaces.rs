//! Issue 7 with real namespaces: listeners inside a network namespace made by
//! the test (`ip netns add`), listeners that live only between two scrapes
//! (the background sampler), and SCTP coverage.
//!
//! The namespace test needs root and named namespaces (CI has both): without
//! them it skips with one line, or fails in CI (see `common::capability`).
//! The live SCTP check runs only where the kernel has sctp_diag.

mod common;

use common::capability::{Capability, kernel_offers, require};
use common::{Exporter, is_root, samples, scrape_until};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use unassigned_port_exporter::kernel::netns;

static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// A namespace made with `ip netns add`, deleted when dropped.
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    fn new() -> TestNamespace {
        let name = format!("upe-test-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "ip netns add {name} failed"
        );
        TestNamespace { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn inode(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(self.path()).unwrap())
    }

    /// Binds a TCP listener inside the namespace (owned by this process).
    fn listen(&self, port: u16) -> TcpListener {
        netns::enter::run_in(&self.path(), move || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        })
        .unwrap()
        .unwrap()
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// netns labels of our own listeners on `port`.
fn own_netns_labels(text: &str, port: u16) -> Vec<String> {
    let pid = std::process::id().to_string();
    let mut labels: Vec<String> = samples(text, "unassigned_port_listeners")
        .into_iter()
        .filter(|(l, _)| l["port"] == port.to_string() && l["pid"] == pid)
        .map(|(l, _)| l["netns"].clone())
        .collect();
    labels.sort();
    labels
}

#[test]
fn a_listener_inside_a_namespace_is_reported_with_its_netns() {
    if !require(Capability::Root) || !require(Capability::NetworkNamespaces) {
        return;
    }
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let namespace = TestNamespace::new();
    let all = Exporter::start(&["--collector.netns=all"]);
    let host_only = Exporter::start(&["--collector.netns=host"]);

    let inside = namespace.listen(276);
    let outside = TcpListener::bind(("127.0.0.1", 276)).unwrap();
    let mut both = vec![namespace.inode().to_string(), "host".to_string()];
    both.sort();
    let text = scrape_until(&all, "listeners in both namespaces", |t| {
        own_netns_labels(t, 276) == both
    });
    let inside_series: Vec<_> = samples(&text, "unassigned_port_listeners")
        .into_iter()
        .filter(|(l, _)| l["netns"] == namespace.inode().to_string())
        .collect();
    assert_eq!(inside_series.len(), 1, "{text}");
    let (labels, _) = &inside_series[0];
    assert_eq!(labels["address"], "0.0.0.0");
    assert_eq!(labels["process"], common::own_process_name());
    assert_eq!(labels["pid"], std::process::id().to_string());
    let starts = samples(&text, "unassigned_port_unprivileged_port_start");
    assert!(
        starts
            .iter()
            .any(|(l, _)| l["netns"] == namespace.inode().to_string()),
        "the namespace's ip_unprivileged_port_start is reported: {starts:?}"
    );

    scrape_until(&host_only, "the host listener only", |t| {
        own_netns_labels(t, 276) == ["host"]
    });

    drop((inside, outside));
    scrape_until(&all, "both listeners to disappear", |t| {
        own_netns_labels(t, 276).is_empty()
    });
}

#[test]
fn the_sampler_counts_a_listener_that_lived_between_two_scrapes() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let port = if is_root() { 277 } else { common::free_port() };
    let watch = format!("--watch.ports={port}");
    let mut args = vec!["--collector.sample-interval=500ms"];
    if !is_root() {
        eprintln!("not root: using high port {port} instead of 277");
        args.push(&watch);
    }
    let exporter = Exporter::start(&args);
    let value = |text: &str, name: &str| -> f64 {
        samples(text, name)
            .iter()
            .filter(|(l, _)| {
                !l.contains_key("port") || (l["port"] == port.to_string() && l["protocol"] == "tcp")
            })
            .map(|(_, v)| *v)
            .sum()
    };
    let sightings = |text: &str| value(text, "unassigned_port_listener_sightings_total");
    let samples_taken = |text: &str| value(text, "unassigned_port_sampler_samples_total");
    let own = |text: &str| {
        samples(text, "unassigned_port_listeners")
            .iter()
            .any(|(l, _)| l["port"] == port.to_string())
    };
    let before = exporter.scrape();
    assert_eq!(sightings(&before), 0.0);

    // Listen until two samples have seen it (the scrapes that wait for
    // that see it too, but only `before` and `after` are checked).
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
    scrape_until(&exporter, "two samples of the listener", |text| {
        sightings(text) >= 2.0
    });
    drop(listener);
    let closed = exporter.scrape();
    let after = scrape_until(&exporter, "two samples after the close", |text| {
        samples_taken(text) >= samples_taken(&closed) + 2.0
    });
    assert!(
        !own(&before) && !own(&after),
        "neither scrape saw the listener itself"
    );
    let seen = sightings(&after);
    assert!(
        seen >= 2.0 && seen <= sightings(&closed) + 1.0,
        "seen by the samples while it listened (one more at most, taken as it closed), not after: {seen}:\n{after}"
    );
    let last_seen = samples(
        &after,
        "unassigned_port_listener_last_seen_timestamp_seconds",
    );
    assert!(last_seen.iter().any(|(l, _)| l["port"] == port.to_string()));
}

#[test]
fn sctp_is_covered_or_said_to_be_missing() {
    let exporter = Exporter::start(&[]);
    let text = exporter.scrape();
    let coverage: Vec<_> = samples(&text, "unassigned_port_transport_coverage")
        .into_iter()
        .map(|(l, v)| (l["protocol"].clone(), v))
        .collect();
    assert!(coverage.contains(&("tcp".to_string(), 1.0)));
    assert!(coverage.contains(&("udp".to_string(), 1.0)));
    // SAFETY: plain socket(2); closed right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd >= 0 {
        unsafe { libc::close(fd) };
    }
    if !kernel_offers("SCTP sockets", fd >= 0) {
        assert!(
            coverage.contains(&("sctp".to_string(), 0.0)),
            "the exporter says SCTP is not covered: {coverage:?}"
        );
        return;
    }
    // A kernel with SCTP sockets but without sctp_diag reports 0 too.
    let covered = coverage.contains(&("sctp".to_string(), 1.0));
    if kernel_offers("sctp_diag", covered) && require(Capability::Root) {
        let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: 278u16.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        let bound = unsafe {
            libc::bind(
                fd,
                (&raw const address).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(bound, 0);
        assert_eq!(unsafe { libc::listen(fd, 1) }, 0);
        scrape_until(&exporter, "the SCTP listener", |t| {
            samples(t, "unassigned_port_listeners")
                .iter()
                .any(|(l, _)| l["protocol"] == "sctp" && l["port"] == "278")
        });
        unsafe { libc::close(fd) };
    }
}
