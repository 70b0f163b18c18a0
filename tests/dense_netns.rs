//! Dense container hosts. Issue 15: 1,200 network namespaces, each with a
//! listener on 276/tcp, read by an exporter whose open-file limit is 1,024
//! (soft and hard, so it cannot raise it): every listener must be reported
//! and every scrape must answer 200. Issue 19: with 1,000 namespaces a UDP
//! socket bound in one of them is in the next scrape. Needs root, named namespaces and a
//! hard open-file limit that holds the test's own listeners (CI has them):
//! without them it skips with one line, or fails in CI.

mod common;

use common::capability::{Capability, gate, require};
use common::{Exporter, samples};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use unassigned_port_exporter::kernel::netns::enter::run_in;

const NAMESPACES: usize = 1_200;

/// Namespaces made with `ip netns add`, deleted when dropped.
struct Namespaces(Vec<String>);

/// The tests take turns: each makes a thousand namespaces.
static TURNS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Namespaces {
    /// Makes `count` namespaces named after this test process and `tag`.
    fn make(count: usize, tag: &str) -> Namespaces {
        let mut namespaces = Namespaces(Vec::with_capacity(count));
        for n in 0..count {
            let name = format!("upe-{tag}-{}-{n}", std::process::id());
            let made = Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .is_ok_and(|s| s.success());
            assert!(made, "ip netns add {name} failed");
            namespaces.0.push(name);
        }
        namespaces
    }

    fn path(&self, n: usize) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.0[n])
    }
}

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
    let _turn = TURNS.lock().unwrap_or_else(|p| p.into_inner());
    let namespaces = Namespaces::make(NAMESPACES, "dense");
    let mut held = Vec::with_capacity(NAMESPACES);
    for n in 0..NAMESPACES {
        let listener = run_in(&namespaces.path(n), || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, 276))
        })
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
        let strays: Vec<String> = samples(&text, "unassigned_port_listeners")
            .into_iter()
            .filter(|(labels, _)| {
                labels.get("pid") != Some(&me)
                    && labels.get("port").map(String::as_str) == Some("276")
                    && labels.get("netns").is_some_and(|ns| ns != "host")
            })
            .map(|(labels, value)| format!("{labels:?} {value}"))
            .collect();
        assert_eq!(
            ours as usize,
            NAMESPACES,
            "scrape {round} reported {ours} of {NAMESPACES}; on 276 under another pid (the exporter is {}): {strays:?}",
            exporter.child.id()
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

/// Issue 19: UDP as fresh as TCP at any namespace count. With 1,000
/// namespaces, a UDP socket bound on 276 in one of them is in the very
/// next scrape; four namespaces in a row, so that no reading in turns (one
/// namespace in four a scrape) can pass by luck.
#[test]
fn a_udp_socket_bound_in_one_of_1000_namespaces_is_in_the_next_scrape() {
    if !require(Capability::Root) || !require(Capability::NetworkNamespaces) {
        return;
    }
    let _turn = TURNS.lock().unwrap_or_else(|p| p.into_inner());
    const COUNT: usize = 1_000;
    let namespaces = Namespaces::make(COUNT, "udp");
    let exporter = Exporter::start(&["--log.level=info"]);
    let me = std::process::id().to_string();
    let mine = |text: &str| -> usize {
        samples(text, "unassigned_port_listeners")
            .into_iter()
            .filter(|(labels, _)| {
                labels.get("pid") == Some(&me)
                    && labels.get("port").map(String::as_str) == Some("276")
                    && labels.get("protocol").map(String::as_str) == Some("udp")
                    && labels.get("netns").is_some_and(|ns| ns != "host")
            })
            .count()
    };
    // Two scrapes first: every namespace is open and read once.
    for _ in 0..2 {
        assert_eq!(mine(&exporter.scrape()), 0);
    }
    let mut bound = Vec::new();
    for n in [611, 612, 613, 614] {
        let socket = run_in(&namespaces.path(n), || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 276))
        })
        .unwrap()
        .unwrap();
        bound.push(socket);
        let text = exporter.scrape();
        assert_eq!(
            mine(&text),
            bound.len(),
            "the scrape after binding 276/udp in namespace {n} of {COUNT}"
        );
    }
    // One descriptor per namespace: the sock_diag channel. Destroy
    // broadcasts and address/ruleset changes come through sockets of the
    // exporter's own namespace that hear them all.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", exporter.child.id()))
        .unwrap()
        .count();
    eprintln!("exporter descriptors with {COUNT} namespaces: {fds}");
    assert!(
        fds <= COUNT + 64,
        "the exporter holds {fds} descriptors for {COUNT} namespaces"
    );
    // ...and still hears a UDP close in any of them, in that namespace.
    if exporter.capture_active("destroy").is_ok() {
        // The netns label is the namespace's inode, as the test sees it.
        let inode_of = |n: usize| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(namespaces.path(n))
                .unwrap()
                .ino()
                .to_string()
        };
        let closed_in = |text: &str, n: usize| {
            common::total(
                text,
                "unassigned_port_listener_closed_total",
                &[
                    ("port", "276"),
                    ("protocol", "udp"),
                    ("netns", inode_of(n).as_str()),
                ],
            )
        };
        let before = closed_in(&exporter.scrape(), 613);
        drop(bound.remove(2)); // the socket of namespace 613
        common::scrape_until(&exporter, "the UDP close in namespace 613", |text| {
            closed_in(text, 613) == before + 1.0
        });
        let text = exporter.scrape();
        assert_eq!(closed_in(&text, 611), 0.0);
        assert_eq!(closed_in(&text, 613), before + 1.0);
    } else {
        gate(
            Capability::Root,
            Err("the destroy groups are not active".into()),
        );
    }
}
