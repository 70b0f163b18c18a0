//! End-to-end tests of the real binary: real sockets, real HTTP, exact series.
//!
//! Binding ports below 1024 needs root (CI runs as root). Without root the
//! same assertions run on free high ports added with `--watch.ports`, and the
//! test says so.

mod common;

use common::{Exporter, Series, is_root, own_process_name, own_user_name, samples, scrape_until};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

/// Tests that bind fixed ports take turns.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// Ports for one run: three watched ones and one assigned, unwatched one.
struct Ports {
    tcp_any: u16,
    udp_v6: u16,
    tcp_loopback: u16,
    assigned: u16,
    /// `--watch.ports` needed to watch the three (empty as root).
    watch_flag: Option<String>,
}

fn ports() -> Ports {
    if is_root() {
        Ports {
            tcp_any: 276,
            udp_v6: 276,
            tcp_loopback: 4,
            assigned: 7,
            watch_flag: None,
        }
    } else {
        eprintln!(
            "not root: binding 276, 4 and 7 skipped; running the same checks on high ports added with --watch.ports"
        );
        let (a, b, c) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        Ports {
            tcp_any: a,
            udp_v6: b,
            tcp_loopback: c,
            assigned: common::free_port(),
            watch_flag: Some(format!("--watch.ports={a},{b},{c}")),
        }
    }
}

fn expected_series(
    port: u16,
    protocol: &str,
    family: &str,
    address: &str,
    expected: bool,
) -> Series {
    let iana = if is_root() { "unassigned" } else { "high-port" };
    // An IPv6 socket on :: takes IPv4 too unless the host defaults to v6only.
    let bindv6only = std::fs::read_to_string("/proc/sys/net/ipv6/bindv6only")
        .is_ok_and(|value| value.trim() == "1");
    let dual_stack = address == "::" && !bindv6only;
    // A wildcard is as exposed as the host's own up addresses.
    let exposure = if address.starts_with("127.") {
        "loopback".to_string()
    } else {
        common::host_wildcard_exposure(family == "ipv4" || dual_stack, family == "ipv6")
    };
    let labels: BTreeMap<String, String> = [
        ("port", port.to_string()),
        ("protocol", protocol.to_string()),
        ("family", family.to_string()),
        ("address", address.to_string()),
        ("process", own_process_name()),
        ("pid", std::process::id().to_string()),
        ("user", own_user_name()),
        ("iana", iana.to_string()),
        ("expected", expected.to_string()),
        ("netns", "host".to_string()),
        ("container_id", own_cgroup().container_id),
        ("pod_uid", own_cgroup().pod_uid),
        ("exposure", exposure.to_string()),
        ("dual_stack", dual_stack.to_string()),
        ("interface", String::new()),
        ("holder", "process".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    (labels, 1.0)
}

/// The container this test runs in, if any, as the exporter will see it.
fn own_cgroup() -> unassigned_port_exporter::owners::Attribution {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    unassigned_port_exporter::owners::cgroup::parse_cgroup(&text)
}

/// Our own listener series, with `iana` masked for high ports (whose IANA
/// status varies from port to port).
fn own_listeners(text: &str) -> BTreeSet<String> {
    let pid = std::process::id().to_string();
    samples(text, "unassigned_port_listeners")
        .into_iter()
        .filter(|(labels, _)| labels.get("pid") == Some(&pid))
        .map(|(mut labels, value)| {
            if !is_root() {
                labels.insert("iana".into(), "high-port".into());
            }
            format!("{labels:?} {value}")
        })
        .collect()
}

fn render(series: &[Series]) -> BTreeSet<String> {
    series.iter().map(|(l, v)| format!("{l:?} {v}")).collect()
}

fn listeners_on(text: &str, port: u16) -> usize {
    samples(text, "unassigned_port_listeners")
        .iter()
        .filter(|(labels, _)| labels["port"] == port.to_string())
        .count()
}

#[test]
fn reports_exact_series_for_real_listeners_and_drops_them_when_closed() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let ports = ports();
    let args: Vec<&str> = ports.watch_flag.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args);

    let tcp_any = TcpListener::bind(("0.0.0.0", ports.tcp_any)).unwrap();
    let udp_v6 = UdpSocket::bind(("::", ports.udp_v6)).unwrap();
    let tcp_loopback = TcpListener::bind(("127.0.0.1", ports.tcp_loopback)).unwrap();
    let assigned = TcpListener::bind(("0.0.0.0", ports.assigned)).unwrap();

    let want = render(&[
        expected_series(ports.tcp_any, "tcp", "ipv4", "0.0.0.0", false),
        expected_series(ports.udp_v6, "udp", "ipv6", "::", false),
        expected_series(ports.tcp_loopback, "tcp", "ipv4", "127.0.0.1", false),
    ]);
    let text = scrape_until(&exporter, "the three listeners", |t| {
        own_listeners(t) == want
    });
    assert_eq!(
        listeners_on(&text, ports.assigned),
        0,
        "an assigned port is not watched"
    );

    drop((tcp_any, udp_v6, tcp_loopback, assigned));
    scrape_until(&exporter, "the listeners to disappear", |t| {
        own_listeners(t).is_empty()
    });
}

#[test]
fn allowlisted_listener_is_exported_as_expected() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let ports = ports();
    let allow = format!("--watch.allow={}/tcp:{}", ports.tcp_any, own_process_name());
    let mut args: Vec<&str> = ports.watch_flag.iter().map(String::as_str).collect();
    args.push(&allow);
    let exporter = Exporter::start(&args);
    let _tcp_any = TcpListener::bind(("0.0.0.0", ports.tcp_any)).unwrap();
    let _tcp_loopback = TcpListener::bind(("127.0.0.1", ports.tcp_loopback)).unwrap();
    let want = render(&[
        expected_series(ports.tcp_any, "tcp", "ipv4", "0.0.0.0", true),
        expected_series(ports.tcp_loopback, "tcp", "ipv4", "127.0.0.1", false),
    ]);
    scrape_until(&exporter, "one expected and one unexpected listener", |t| {
        own_listeners(t) == want
    });
}

#[test]
fn netlink_and_netstat2_backends_report_identical_series() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let ports = ports();
    let mut args: Vec<&str> = ports.watch_flag.iter().map(String::as_str).collect();
    args.push("--collector.backend=netlink");
    let netlink = Exporter::start(&args);
    args.pop();
    args.push("--collector.backend=netstat2");
    let netstat2 = Exporter::start(&args);

    let _sockets = (
        TcpListener::bind(("0.0.0.0", ports.tcp_any)).unwrap(),
        UdpSocket::bind(("::", ports.udp_v6)).unwrap(),
        TcpListener::bind(("127.0.0.1", ports.tcp_loopback)).unwrap(),
        TcpListener::bind(("::1", ports.tcp_loopback)).unwrap(),
        UdpSocket::bind(("127.0.0.1", ports.tcp_loopback)).unwrap(),
    );
    // netstat2 cannot see IPV6_V6ONLY (dual_stack="unknown" on ::) nor the
    // namespace's addresses (a wildcard's exposure stays "any"): those
    // labels are left out of the comparison.
    let every_listener = |text: &str| -> BTreeSet<String> {
        samples(text, "unassigned_port_listeners")
            .into_iter()
            .map(|(mut labels, value)| {
                labels.remove("dual_stack");
                labels.remove("exposure");
                format!("{labels:?} {value}")
            })
            .collect()
    };
    let from_netlink = scrape_until(&netlink, "five own listeners", |t| {
        own_listeners(t).len() == 5
    });
    let from_netstat2 = netstat2.scrape();
    assert_eq!(
        every_listener(&from_netlink),
        every_listener(&from_netstat2)
    );
}

#[test]
fn metrics_pass_promtool_check_metrics() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let ports = ports();
    let args: Vec<&str> = ports.watch_flag.iter().map(String::as_str).collect();
    let exporter = Exporter::start(&args);
    let _listener = TcpListener::bind(("0.0.0.0", ports.tcp_any)).unwrap();
    let text = scrape_until(&exporter, "a listener", |t| !own_listeners(t).is_empty());
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut promtool = match promtool {
        Ok(child) => child,
        Err(err) => {
            let why = format!("cannot run promtool ({err}); tests/run-all.sh installs it");
            common::capability::gate(common::capability::Capability::Promtool, Err(why));
            return;
        }
    };
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool complained:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_contract_metric_is_present_once_idle() {
    let exporter = Exporter::start(&[]);
    let text = exporter.scrape();
    for name in [
        "unassigned_port_watched_ports",
        "unassigned_port_collection_duration_seconds",
        "unassigned_port_collection_success",
        "unassigned_port_collection_errors_total",
        "unassigned_port_iana_registry_info",
        "unassigned_port_collector_info",
        "unassigned_port_exporter_build_info",
        "unassigned_port_unprivileged_port_start",
        "process_resident_memory_bytes",
    ] {
        assert!(!samples(&text, name).is_empty(), "{name} missing:\n{text}");
    }
    let watched: BTreeMap<String, f64> = samples(&text, "unassigned_port_watched_ports")
        .into_iter()
        .map(|(labels, value)| (labels["protocol"].clone(), value))
        .collect();
    assert_eq!(watched["tcp"], 284.0);
    assert_eq!(watched["udp"], 282.0);
    assert_eq!(watched["sctp"], 978.0);
    assert_eq!(
        samples(&text, "unassigned_port_collection_success")[0].1,
        1.0
    );
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series < 60,
        "an idle host should export a few dozen series, got {series}"
    );
}

#[test]
fn http_surface_behaves_like_node_exporter() {
    let exporter = Exporter::start(&[]);
    let landing = ureq::get(&exporter.url("/")).call().unwrap();
    assert_eq!(landing.content_type(), "text/html");
    let html = landing.into_string().unwrap();
    assert!(html.contains("href=\"/metrics\""), "{html}");
    assert!(
        html.contains("284 TCP, 282 UDP and 978 SCTP ports"),
        "{html}"
    );

    // A raw request: ureq would decompress on its own and hide the header.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&raw[split + 4..])
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("unassigned_port_collection_success 1"));

    let status = |result: Result<ureq::Response, ureq::Error>| match result {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(status(ureq::get(&exporter.url("/nope")).call()), 404);
    assert_eq!(
        status(ureq::post(&exporter.url("/metrics")).send_string("x")),
        405
    );
    assert_eq!(status(ureq::head(&exporter.url("/metrics")).call()), 200);
}

#[test]
fn sigterm_stops_the_exporter_cleanly() {
    let mut exporter = Exporter::start(&[]);
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGTERM) };
    let status = exporter.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn slow_headers_and_request_bodies_are_refused() {
    use std::io::{Read, Write};
    let exporter = Exporter::start(&[]);
    // A client that never finishes its headers is cut off (10 s timeout).
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(20),
        "a slow client held its connection for {waited:?}"
    );

    let mut body = std::net::TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    body.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .unwrap();
    let mut answer = String::new();
    body.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}
