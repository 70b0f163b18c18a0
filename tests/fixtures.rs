//! Fixture tests: the whole exporter against a fixed socket table and a
//! fixture procfs tree (`tests/fixtures/proc`), with no live kernel, no root
//! and no network. The exposition must equal `tests/fixtures/golden.prom`
//! byte for byte, after masking the values that change from run to run (the
//! collection's duration, the build's git revision and rustc version, the
//! sampler's counts and times, the reload timestamp).
//!
//! Beside the listener families, the golden exposition holds every other
//! family the exporter serves, fed with fixed facts: the background sampler
//! (running over the fixed table), the kernel event counters (one listen, one
//! close, the tracepoint running and the destroy groups not), the HTTP
//! counters (one auth failure, one rate-limit refusal) and the reload
//! results (an allow file that loaded, a web config whose reload failed).
//!
//! To regenerate the golden file after an intended change:
//! `UPDATE_GOLDEN=1 cargo test --test fixtures`, then review the diff.
//!
//! The procfs tree holds a pre-fork server (nginx: master 210 as root,
//! workers 211 and 212 as www-data, all holding socket 50001 and the master
//! also a SO_REUSEPORT sibling 50006), a process running as a uid with no
//! passwd entry whose executable was deleted (340, which also holds a
//! filtered packet socket and a raw TCP socket: a passive backdoor), a
//! Kubernetes container process in another network namespace (500), and a
//! DHCP client with its filtered packet socket (600). Sockets 50004 and
//! 50013 are held by nobody in the tree (`holder="none"`: the tree's
//! `self/ns/pid` names the initial pid namespace, so the walk covered every
//! process). The packet and raw sockets come
//! from the tree's `self/net/{packet,raw,raw6}`; `/proc` does not say which
//! has a BPF filter, so the table marks 50010 and 50012 as packet_diag
//! would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unassigned_port_exporter::events::{CaptureSource, EventCounters};
use unassigned_port_exporter::exporter::{Exporter, Extras};
use unassigned_port_exporter::kernel::netns::Mode;
use unassigned_port_exporter::kernel::procfs::ProcRoot;
use unassigned_port_exporter::kernel::sock_diag::raw::{BpfFilter, NamedRawSocket, proc_net};
use unassigned_port_exporter::metrics::reload::ConfigFile;
use unassigned_port_exporter::model::{ClosedLabels, OpenedLabels, Protocol};
use unassigned_port_exporter::policy::exposure::Binding;
use unassigned_port_exporter::policy::registry::{Registry, Transport};
use unassigned_port_exporter::policy::watch::{AllowRule, Scope, WatchSet};
use unassigned_port_exporter::sockets::{
    Collected, Listener, Opened, SeenRawSocket, SocketSource, SourceError,
};
use unassigned_port_exporter::web::auth::{HttpCounters, Rejection};

const CONTAINER_NETNS: u64 = 4026532500;

/// A socket table that never changes.
struct FixedTable;

fn listener(transport: Transport, address: IpAddr, port: u16, inode: u64, uid: u32) -> Listener {
    Listener {
        transport,
        address,
        port,
        inode,
        uid,
        known_pids: None,
        netns: None,
        binding: Binding::default(),
        interface: String::new(),
        multipath: false,
    }
}

/// The tree's packet and raw sockets, as the netlink source would report
/// them (interface names as this fixture host has them).
fn raw_sockets() -> Vec<SeenRawSocket> {
    let net = fixtures().join("proc/self/net");
    let mut parsed = Vec::new();
    proc_net::parse_packet(&std::fs::read(net.join("packet")).unwrap(), &mut parsed).unwrap();
    for table in ["raw", "raw6"] {
        proc_net::parse_raw(&std::fs::read(net.join(table)).unwrap(), &mut parsed).unwrap();
    }
    parsed
        .into_iter()
        .map(|mut socket| {
            if [50010, 50012].contains(&socket.inode) {
                socket.bpf_filter = BpfFilter::Attached;
            }
            let interface = match socket.ifindex {
                Some(0) => "",
                Some(2) => "eth0",
                _ => "unknown",
            };
            SeenRawSocket {
                found: NamedRawSocket {
                    socket,
                    interface: interface.to_string(),
                },
                netns: None,
            }
        })
        .collect()
}

impl SocketSource for FixedTable {
    fn name(&self) -> &'static str {
        "fixture"
    }

    fn collect(&self, watch: &WatchSet) -> Result<Collected, SourceError> {
        let mut out = Collected::default();
        let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let table = [
            listener(Transport::Tcp, any4, 276, 50001, 0),
            listener(Transport::Tcp, any4, 276, 50006, 0),
            Listener {
                binding: Binding {
                    v6only: Some(false),
                    ifindex: 0,
                },
                ..listener(
                    Transport::Udp,
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    276,
                    50002,
                    4242,
                )
            },
            Listener {
                netns: Some(CONTAINER_NETNS),
                ..listener(Transport::Tcp, any4, 277, 50003, 0)
            },
            listener(
                Transport::Tcp,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                278,
                50004,
                0,
            ),
            // IANA writes 114 "unassigned" in lower case: watched all the same.
            listener(
                Transport::Tcp,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                114,
                50008,
                0,
            ),
            // Port 22 is assigned and not watched: it must not appear.
            listener(Transport::Tcp, any4, 22, 50007, 0),
        ];
        out.listeners.extend(
            table
                .into_iter()
                .filter(|l| watch.is_watched(l.transport, l.port)),
        );
        out.unprivileged_port_start.push((CONTAINER_NETNS, 0));
        out.raw_sockets.extend(raw_sockets());
        out.namespaces_read = 2; // the host's and the container's
        Ok(out)
    }

    fn coverage(&self) -> Vec<(Transport, bool)> {
        vec![
            (Transport::Tcp, true),
            (Transport::Udp, true),
            (Transport::Sctp, false),
        ]
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture_exporter() -> Exporter {
    fixture_exporter_with(Extras::default())
}

fn fixture_exporter_with(extras: Extras) -> Exporter {
    let watch = Arc::new(WatchSet::new(
        Registry::embedded(),
        Scope::WellKnown,
        &[],
        vec![
            AllowRule::parse("276/tcp:nginx").unwrap(),
            AllowRule::parse("packet:exe=/usr/sbin/dhclient,unit=ifup@eth0.service").unwrap(),
        ],
    ));
    let opened = Opened {
        source: Box::new(FixedTable),
        fallback_reason: None,
        netns_mode: Mode::All,
    };
    let root = ProcRoot::new(fixtures().join("proc"), fixtures().join("netns"));
    Exporter::from_parts(watch, opened, root, extras)
        .unwrap_or_else(|failure| panic!("{}", failure.message))
}

/// The fixture exporter with every other family registered and fed fixed
/// facts (see the module doc), rendered once the sampler has sampled.
fn exposition_of_every_family() -> String {
    let exporter = fixture_exporter_with(Extras {
        sample_interval: Some(Duration::from_millis(10)),
        ..Extras::default()
    });
    let events = EventCounters::new();
    events.set_active(CaptureSource::Tracepoint, Ok(()));
    events.set_active(
        CaptureSource::Destroy,
        Err("no destroy groups in the fixture"),
    );
    events.track_lost(CaptureSource::Tracepoint, || 0);
    events.count_opened(OpenedLabels {
        port: 279,
        protocol: Protocol::Mptcp,
        process: "backdoor".to_string(),
        netns: "host".to_string(),
        expected: false,
    });
    events.count_closed(ClosedLabels {
        port: 279,
        protocol: Protocol::Udp,
        user: String::new(),
        netns: "4026532500".to_string(),
        expected: false,
    });
    exporter.metrics.register(Box::new(events)).unwrap();
    let http = HttpCounters::register(&exporter.metrics).unwrap();
    http.auth_failed();
    http.rejected(Rejection::RateLimit);
    exporter.reloads.record(ConfigFile::Allow, 0, true);
    exporter.reloads.record(ConfigFile::Web, 0, false);

    // Wait for the sampler on the families beside the listeners (a render
    // would collect, and count the owner faults once more each time).
    let deadline = Instant::now() + Duration::from_secs(10);
    // The executables' hashes come from a worker thread ("" until it has
    // them): wait for those too, on the collector's quiet path.
    let hashed = || {
        let snapshot = exporter.scraper.collector().sample();
        snapshot
            .processes
            .iter()
            .filter(|p| !p.exe_deleted && Path::new(&p.exe).is_file())
            .all(|p| !p.exe_sha256.is_empty())
    };
    while !sampled_the_fixed_table(&exporter.metrics) || !hashed() {
        assert!(
            Instant::now() < deadline,
            "the sampler did not sample the fixed table, or the hashes did not come, within 10 s:\n{}",
            exposition_of(&exporter.metrics)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let scrape = exporter.scraper.render().expect("render");
    String::from_utf8(scrape.text.to_vec()).unwrap()
}

/// What `metrics` (the families beside the listeners) hold now.
fn exposition_of(metrics: &prometheus::Registry) -> String {
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &metrics.gather(),
        &mut text,
    )
    .unwrap();
    String::from_utf8(text).unwrap()
}

/// Whether the sampler has recorded one whole sample of the fixed table.
fn sampled_the_fixed_table(metrics: &prometheus::Registry) -> bool {
    let text = exposition_of(metrics);
    !text.contains("unassigned_port_sampler_samples_total 0\n")
        && text.contains("unassigned_port_sampler_samples_total ")
}

/// Families whose values change from run to run; their labels are kept.
const VARYING: [&str; 6] = [
    "unassigned_port_collection_duration_seconds",
    "unassigned_port_listener_sightings_total",
    "unassigned_port_listener_last_seen_timestamp_seconds",
    "unassigned_port_sampler_samples_total",
    "unassigned_port_sampler_duration_seconds_total",
    "unassigned_port_config_last_reload_success_timestamp_seconds",
];

/// The exposition with its run-dependent values replaced by placeholders.
fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let varying = VARYING.iter().any(|name| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        });
        if varying {
            let (series, _) = line.rsplit_once(' ').expect("a sample line");
            out.push_str(series);
            out.push_str(" MASKED");
        } else if line.starts_with("unassigned_port_exporter_build_info{") {
            out.push_str(
                "unassigned_port_exporter_build_info{revision=\"REVISION\",rustc_version=\"RUSTC\",version=\"VERSION\"} 1",
            );
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[test]
fn exposition_matches_the_golden_file() {
    let actual = masked(&exposition_of_every_family());
    let golden = fixtures().join("golden.prom");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        eprintln!("wrote {}", golden.display());
        return;
    }
    let expected = std::fs::read_to_string(&golden).expect("tests/fixtures/golden.prom");
    if actual != expected {
        let first = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "the exposition differs from golden.prom from line {} on:\n  actual:   {:?}\n  expected: {:?}\n(regenerate with UPDATE_GOLDEN=1 cargo test --test fixtures if intended)",
            first + 1,
            actual.lines().nth(first),
            expected.lines().nth(first),
        );
    }
}

#[test]
fn owners_come_from_the_fixture_tree() {
    let exporter = fixture_exporter();
    let snapshot = exporter.scraper.collector().scrape();
    let by_port = |port: u16| {
        snapshot
            .listeners
            .iter()
            .find(|l| l.port == port)
            .unwrap_or_else(|| panic!("no listener on {port}: {snapshot:?}"))
    };
    // Pre-fork: reported once, under the master, with both reuseport sockets.
    let nginx = by_port(276);
    assert_eq!(
        (
            nginx.pid.as_str(),
            nginx.process.as_str(),
            nginx.user.as_str()
        ),
        ("210", "nginx", "root")
    );
    assert_eq!(nginx.sockets, 2);
    assert!(nginx.expected);
    // A uid without a passwd entry is shown as the number.
    let udp = snapshot
        .listeners
        .iter()
        .find(|l| l.protocol == Protocol::Udp)
        .unwrap();
    assert_eq!(
        (udp.process.as_str(), udp.user.as_str()),
        ("backdoor", "4242")
    );
    // The container process: namespace, container and pod.
    let container = by_port(277);
    assert_eq!(container.netns, CONTAINER_NETNS.to_string());
    assert!(container.container_id.starts_with("4f1c2e8a9b7d"));
    assert_eq!(container.pod_uid, "0d4b4a6f-cb1b-4bd9-9f9b-2c8a8e9b3c2e");
    // Exposure: 0.0.0.0 is "any", 127.0.0.1 loopback, :: dual-stack.
    assert_eq!((nginx.exposure, nginx.dual_stack), ("any", "false"));
    assert_eq!((udp.exposure, udp.dual_stack), ("any", "true"));
    assert_eq!(by_port(278).exposure, "loopback");
    // Nobody holds 50004: empty owner labels.
    let orphan = by_port(278);
    assert_eq!((orphan.pid.as_str(), orphan.process.as_str()), ("", ""));
    assert!(snapshot.listeners.iter().all(|l| l.port != 22));
    assert_eq!(by_port(114).iana, "unassigned");
}

#[test]
fn packet_and_raw_sockets_and_their_processes_come_from_the_fixture_tree() {
    let exporter = fixture_exporter();
    let snapshot = exporter.scraper.collector().scrape();
    let raw = |pid: &str, kind: &str| {
        snapshot
            .raw_sockets
            .iter()
            .find(|r| r.pid == pid && r.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} socket of {pid}: {:?}", snapshot.raw_sockets))
    };
    // The backdoor: a filtered packet socket and a raw TCP socket.
    let door = raw("340", "packet");
    assert_eq!(
        (door.protocol.as_str(), door.bpf_filter, door.expected),
        ("all", "true", false)
    );
    assert_eq!(door.process, "backdoor");
    let raw_tcp = raw("340", "raw");
    assert_eq!(
        (raw_tcp.protocol.as_str(), raw_tcp.interface.as_str()),
        ("tcp", "unknown")
    );
    // The DHCP client's filtered socket is expected: exe and unit match.
    let dhcp = raw("600", "packet");
    assert_eq!((dhcp.interface.as_str(), dhcp.bpf_filter), ("eth0", "true"));
    assert!(dhcp.expected);
    // Nobody holds the ICMPv6 socket.
    assert!(
        snapshot
            .raw_sockets
            .iter()
            .any(|r| r.protocol == "icmpv6" && r.pid.is_empty())
    );
    // One info series per owning process, with provenance.
    let info = |pid: u32| {
        snapshot
            .processes
            .iter()
            .find(|p| p.pid == pid)
            .unwrap_or_else(|| panic!("no process_info for {pid}: {:?}", snapshot.processes))
    };
    let backdoor = info(340);
    assert_eq!(backdoor.exe, "/tmp/.ICE-unix/.x/backdoor");
    assert!(backdoor.exe_deleted);
    assert_eq!(
        (backdoor.ppid.as_str(), backdoor.parent_process.as_str()),
        ("1", "systemd")
    );
    assert_eq!(backdoor.unit, "session-7.scope");
    let nginx = info(210);
    assert_eq!(
        (nginx.exe.as_str(), nginx.unit.as_str()),
        ("/usr/sbin/nginx", "nginx.service")
    );
    assert!(!nginx.exe_deleted);
    assert_eq!(info(500).netns, CONTAINER_NETNS.to_string());
    let pids: Vec<u32> = snapshot.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![210, 340, 500, 600], "one series per owning pid");
}
