//! Issue 21 with real kernel state the test makes: a REDIRECT rule on a
//! watched port in a network namespace where nothing listens (the forwarded
//! series appears within one scrape of the rule and goes when it is
//! deleted), and the exposure of a wildcard bind following the addresses
//! of its own namespace (loopback only, then private, then public).
//!
//! Needs root, `ip` and `iptables` (nf_tables backend); under CI a missing
//! one fails the test naming it.

mod common;

use common::capability::{Capability, need, require};
use common::{Exporter, run, samples, scrape_until};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use unassigned_port_exporter::kernel::netns;

static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// A namespace made with `ip netns add`, deleted (with its rules and
/// interfaces) when dropped, whatever the test's outcome.
struct TestNamespace {
    name: String,
}

impl TestNamespace {
    fn new(tag: &str) -> Result<TestNamespace, String> {
        let name = format!("upe-{tag}-{}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        Ok(TestNamespace { name })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    fn inode(&self) -> String {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(self.path()).unwrap()).to_string()
    }

    fn exec(&self, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

fn forwarded(text: &str, netns: &str) -> Vec<common::Series> {
    samples(text, "unassigned_port_forwarded_ports")
        .into_iter()
        .filter(|(labels, _)| labels["netns"] == netns)
        .collect()
}

#[test]
fn a_redirect_with_nothing_listening_appears_and_goes_with_its_rule() {
    if !require(Capability::Root)
        || !require(Capability::NetworkNamespaces)
        || !need("iptables", run("iptables", &["--version"]).map(drop))
    {
        return;
    }
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let namespace = TestNamespace::new("redirect").expect("ip netns add");
    let inode = namespace.inode();
    let exporter = Exporter::start(&["--collector.netns=all"]);
    // The namespace is found and read before the rule exists.
    scrape_until(&exporter, "the namespace to be read", |text| {
        samples(text, "unassigned_port_unprivileged_port_start")
            .iter()
            .any(|(labels, _)| labels["netns"] == inode)
    });
    assert!(forwarded(&exporter.scrape(), &inode).is_empty());
    let rule = [
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-p",
        "tcp",
        "--dport",
        "276",
        "-j",
        "REDIRECT",
        "--to-ports",
        "31337",
    ];
    namespace
        .exec(&[&["iptables"][..], &rule[..]].concat())
        .unwrap();
    // Within one scrape of the rule: the very next scrape has it.
    let text = exporter.scrape();
    let found = forwarded(&text, &inode);
    assert_eq!(found.len(), 1, "{text}");
    let (labels, value) = &found[0];
    assert_eq!(value, &1.0);
    for (name, expected) in [
        ("port", "276"),
        ("protocol", "tcp"),
        ("mechanism", "redirect"),
        ("to_address", ""),
        ("to_port", "31337"),
        ("to_netns", inode.as_str()),
        ("container_id", ""),
        ("expected", "false"),
    ] {
        assert_eq!(labels[name], expected, "{name} in {labels:?}");
    }
    // Nothing listens on 276 there: no listener series for it.
    assert!(
        !samples(&text, "unassigned_port_listeners")
            .iter()
            .any(|(l, _)| l["netns"] == inode)
    );
    // The event trail has one line for it, with the series' keys.
    let seen = |lines: &[common::log::Line]| -> usize {
        lines
            .iter()
            .filter(|line| {
                line.get("event").map(String::as_str) == Some("forwarded_port_seen")
                    && line.get("netns") == Some(&inode)
            })
            .count()
    };
    let lines = exporter.log_reader().wait_for(
        "the forwarded_port_seen line",
        std::time::Duration::from_secs(10),
        |lines| seen(lines) > 0,
    );
    let line = lines
        .iter()
        .find(|line| {
            line.get("event").map(String::as_str) == Some("forwarded_port_seen")
                && line.get("netns") == Some(&inode)
        })
        .unwrap();
    for (key, expected) in [
        ("port", "276"),
        ("protocol", "tcp"),
        ("mechanism", "redirect"),
        ("to_port", "31337"),
        ("to_netns", inode.as_str()),
        ("expected", "false"),
        ("described", "none"),
    ] {
        assert_eq!(line[key], expected, "{key} in {line:?}");
    }
    // Seen again by later scrapes: still one line.
    exporter.scrape();
    assert_eq!(seen(&exporter.log_reader().parsed()), 1);
    let mut delete = rule;
    delete[2] = "-D";
    namespace
        .exec(&[&["iptables"][..], &delete[..]].concat())
        .unwrap();
    let text = exporter.scrape();
    assert!(forwarded(&text, &inode).is_empty(), "{text}");
}

#[test]
fn an_allow_rule_marks_a_forwarded_port_expected() {
    if !require(Capability::Root)
        || !require(Capability::NetworkNamespaces)
        || !need("iptables", run("iptables", &["--version"]).map(drop))
    {
        return;
    }
    let namespace = TestNamespace::new("allowfwd").expect("ip netns add");
    let inode = namespace.inode();
    namespace
        .exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "udp",
            "--dport",
            "272:273",
            "-j",
            "DNAT",
            "--to-destination",
            "192.0.2.77:5353",
        ])
        .unwrap();
    let exporter = Exporter::start(&["--collector.netns=all", "--watch.allow=forward:273/udp"]);
    let text = scrape_until(&exporter, "both forwarded ports", |text| {
        forwarded(text, &inode).len() == 2
    });
    let found = forwarded(&text, &inode);
    let brief: Vec<(String, String, String, String)> = found
        .iter()
        .map(|(l, _)| {
            (
                l["port"].clone(),
                l["mechanism"].clone(),
                format!("{}:{}", l["to_address"], l["to_port"]),
                l["expected"].clone(),
            )
        })
        .collect();
    assert_eq!(
        brief,
        [
            (
                "272".into(),
                "dnat".into(),
                "192.0.2.77:5353".into(),
                "false".into()
            ),
            (
                "273".into(),
                "dnat".into(),
                "192.0.2.77:5353".into(),
                "true".into()
            ),
        ]
    );
}

/// The `exposure` of our own listener on `port` inside `inode`.
fn exposure_of(text: &str, inode: &str, port: u16) -> Option<String> {
    let pid = std::process::id().to_string();
    samples(text, "unassigned_port_listeners")
        .into_iter()
        .find(|(l, _)| l["netns"] == inode && l["port"] == port.to_string() && l["pid"] == pid)
        .map(|(l, _)| l["exposure"].clone())
}

#[test]
fn a_wildcard_bind_is_as_exposed_as_its_namespace_addresses() {
    if !require(Capability::Root) || !require(Capability::NetworkNamespaces) {
        return;
    }
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let namespace = TestNamespace::new("exposure").expect("ip netns add");
    let inode = namespace.inode();
    namespace.exec(&["ip", "link", "set", "lo", "up"]).unwrap();
    let port = 276;
    let _listener = netns::enter::run_in(&namespace.path(), move || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
    })
    .unwrap()
    .unwrap();
    let exporter = Exporter::start(&["--collector.netns=all"]);
    let wait_for = |class: &str| {
        scrape_until(&exporter, &format!("exposure {class}"), |text| {
            exposure_of(text, &inode, port).as_deref() == Some(class)
        })
    };
    // Only lo: nothing outside can reach 0.0.0.0 there.
    wait_for("loopback");
    // A veth pair inside the namespace: this kernel has no dummy module,
    // and its peer keeps everything inside the test's own namespace.
    let veth = namespace.exec(&[
        "ip", "link", "add", "upe0", "type", "veth", "peer", "name", "upe1",
    ]);
    if !need("veth interfaces", veth.map(drop)) {
        return;
    }
    namespace
        .exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", "upe0"])
        .unwrap();
    // An address on an interface that is down does not count.
    let text = exporter.scrape();
    assert_eq!(
        exposure_of(&text, &inode, port).as_deref(),
        Some("loopback")
    );
    namespace
        .exec(&["ip", "link", "set", "upe1", "up"])
        .unwrap();
    namespace
        .exec(&["ip", "link", "set", "upe0", "up"])
        .unwrap();
    wait_for("private");
    namespace
        .exec(&["ip", "addr", "add", "198.51.100.7/24", "dev", "upe0"])
        .unwrap();
    wait_for("public");
    namespace
        .exec(&["ip", "link", "set", "upe0", "down"])
        .unwrap();
    wait_for("loopback");
}
