//! The README against the binary, as node_exporter's checkmetrics does:
//!
//! - every metric family the README's metric tables list is one a live
//!   exporter emits, and every family it emits is listed there;
//! - every flag the README names (`--word.word`) is in `--help`, and every
//!   flag `--help` lists is named in the README.
//!
//! The names come from a live exposition with everything on (the sampler,
//! kernel events, `--collector.netns=all`, a web config with basic auth and
//! an allow file) after the test made each family have a series: a
//! listener, a short-lived listener and UDP socket (events), a raw socket,
//! a failed login. One family needs a daemon this test does not start
//! (`rpc_program_info`: an rpcbind with a program registered on a watched
//! port; `tests/fleet_daemons.rs` runs one): for it the binary must at
//! least hold the name. Recording rules (`level:metric:op` names) are
//! Prometheus's, not the exporter's, and are left out. Needs root, the
//! listen tracepoint and the destroy groups (CI has them): without them it
//! skips with one line, or fails in CI.

mod common;

use common::capability::{Capability, gate, require};
use common::{BINARY, Exporter};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The names in the first cell of every README table row that starts with
/// a metric name in backticks (a cell may list several, with labels).
fn documented_metrics(readme: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in readme.lines() {
        let Some(cell) = line.strip_prefix("| `") else {
            continue;
        };
        let cell = cell.split(" |").next().unwrap_or_default();
        for quoted in cell.split('`').step_by(2) {
            let name = quoted.split('{').next().unwrap_or_default().trim();
            let is_metric = name.starts_with("unassigned_port_") || name.starts_with("process_");
            if is_metric && !name.contains([' ', ':']) {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Every family in an exposition (its `# TYPE` lines).
fn exposed_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

/// Whether `name` is what the README entry `documented` stands for
/// (`process_*` covers the standard process collector's families).
fn covers(documented: &str, name: &str) -> bool {
    match documented.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => documented == name,
    }
}

/// The exporter's flags as written in `text`: `--` then dotted words
/// (`--web.listen-address`), the spelling every exporter flag has.
fn dotted_flags(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    for (start, _) in text.match_indices("--") {
        if start > 0 && !text[..start].ends_with([' ', '`', '(', '"', '\n', '[', '=']) {
            continue;
        }
        let rest = &text[start + 2..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        let flag = rest[..end].trim_end_matches('.');
        if flag.contains('.') && flag.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.insert(format!("--{flag}"));
        }
    }
    flags
}

#[test]
fn readme_flags_are_the_flags_of_help() {
    let output = Command::new(BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    // The flags `--help` lists: the first word of each option line.
    let listed: BTreeSet<String> = help
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("--"))
        .filter_map(|rest| rest.split([' ', '=']).next())
        .filter(|flag| flag.contains('.'))
        .map(|flag| format!("--{flag}"))
        .collect();
    assert!(listed.len() >= 15, "{listed:?}");
    let named = dotted_flags(&readme());
    let missing_from_help: Vec<_> = named.difference(&listed).collect();
    let missing_from_readme: Vec<_> = listed.difference(&named).collect();
    assert!(
        missing_from_help.is_empty() && missing_from_readme.is_empty(),
        "README names flags --help does not have: {missing_from_help:?}; --help has flags the README does not name: {missing_from_readme:?}"
    );
    // Every flag in `--help`'s text (e.g. one help naming another) exists.
    let mentioned = dotted_flags(&help);
    let unknown: Vec<_> = mentioned.difference(&listed).collect();
    assert!(
        unknown.is_empty(),
        "--help names unknown flags: {unknown:?}"
    );
}

/// Families whose series need what this test does not make: a daemon
/// (rpcbind) or a NAT rule in the host's namespace (which a test must not
/// write; tests/forwarded.rs and tests/containers.rs cover that family in
/// namespaces of their own). Their names must still be in the binary.
const NEEDS_A_DAEMON: [&str; 2] = [
    "unassigned_port_rpc_program_info",
    "unassigned_port_forwarded_ports",
];

/// Whether the binary holds the family's name (without the namespace,
/// which the code adds at run time).
fn names_in(binary: &[u8], family: &str) -> bool {
    let name = family.trim_start_matches("unassigned_port_").as_bytes();
    binary.windows(name.len()).any(|window| window == name)
}

/// A scrape with the test's basic-auth user.
fn scrape(exporter: &Exporter) -> String {
    ureq::get(&exporter.url("/metrics"))
        .set("Authorization", "Basic ZG9jczpkb2Nz") // docs:docs
        .call()
        .expect("scrape /metrics")
        .into_string()
        .unwrap()
}

#[test]
fn readme_metrics_are_the_metrics_a_live_exporter_emits() {
    if !require(Capability::Root) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("upe-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let web = dir.join("web.yml");
    let hash = bcrypt::hash("docs", 4).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  docs: {hash}\n")).unwrap();
    let allow = dir.join("allow.rules");
    std::fs::write(&allow, "# nothing is expected\n").unwrap();

    let port = common::free_port();
    let flags = [
        format!("--web.config.file={}", web.display()),
        format!("--watch.allow-file={}", allow.display()),
        format!("--watch.ports={port}"),
        "--collector.netns=all".to_string(),
        "--collector.sample-interval=100ms".to_string(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = Exporter::launch(Command::new(BINARY), &flags);
    let events = |source| {
        let text = scrape(&exporter);
        let active = format!("unassigned_port_event_capture_active{{source=\"{source}\"}} 1");
        if text.contains(&active) {
            Ok(())
        } else {
            Err(format!("the exporter does not report {active}"))
        }
    };
    if !gate(Capability::ListenTracepoint, events("tracepoint"))
        || !gate(Capability::DestroyGroups, events("destroy"))
    {
        return;
    }

    // Give every family a series: a listener (listeners, process info,
    // sightings), a listen and a UDP close (events), a raw socket, and a
    // request with no credentials (auth failures).
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    drop(udp);
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(253)),
    )
    .expect("a raw socket (root)");
    let unauthorized = ureq::get(&exporter.url("/metrics")).call();
    assert!(matches!(unauthorized, Err(ureq::Error::Status(401, _))));

    let documented = documented_metrics(&readme());
    assert!(documented.len() >= 25, "{documented:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let exposed = loop {
        let exposed = exposed_metrics(&scrape(&exporter));
        let all_there = documented
            .iter()
            .filter(|d| !NEEDS_A_DAEMON.contains(&d.as_str()))
            .all(|d| exposed.iter().any(|name| covers(d, name)));
        if all_there || Instant::now() > deadline {
            break exposed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop((held, raw));
    let _ = std::fs::remove_dir_all(&dir);

    let binary = std::fs::read(BINARY).unwrap();
    let never_emitted: Vec<_> = documented
        .iter()
        .filter(|d| !exposed.iter().any(|name| covers(d, name)))
        .filter(|d| !(NEEDS_A_DAEMON.contains(&d.as_str()) && names_in(&binary, d)))
        .collect();
    let undocumented: Vec<_> = exposed
        .iter()
        .filter(|name| !documented.iter().any(|d| covers(d, name)))
        .collect();
    assert!(
        never_emitted.is_empty() && undocumented.is_empty(),
        "the README's metric tables list families the exporter did not emit: {never_emitted:?}; \
         the exporter emits families the README does not list: {undocumented:?}"
    );
}

#[test]
fn readme_parsers_read_what_they_should() {
    let names = documented_metrics(
        "| metric | type |\n| `a_{x}` | gauge |\n| `unassigned_port_a{x, y}`, `unassigned_port_b` | | `unassigned_port_c` in prose |\n| `process_*` | |\n| `unassigned_port_a:by_pod` | rule |\n",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["process_*", "unassigned_port_a", "unassigned_port_b"]
    );
    let flags =
        dotted_flags("use `--web.config.file`, --watch.allow. Not cargo --release or a--b.c");
    assert_eq!(
        flags.into_iter().collect::<Vec<_>>(),
        ["--watch.allow", "--web.config.file"]
    );
}
