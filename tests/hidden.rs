//! Issue 12 with real sockets and real processes: listeners that hide.
//!
//! A python3 helper process plays the intruder: it opens a packet socket
//! with a classic BPF filter and a raw TCP socket (BPFDoor's shape), or
//! renames itself `sshd` and listens, or listens on loopback, on every
//! address, on `[::]` with and without `IPV6_V6ONLY`, and bound to `lo`. The
//! tests check what the library's readers and the running exporter say
//! about them. The helper reports its own facts (pid, socket inodes from
//! `fstat`, its real executable) so the checks do not lean on the code under
//! test.
//!
//! The first tests check the library's parts (readers, allow rules,
//! exposure) directly; the `exporter_*` tests run the real binary and read
//! its exposition. Packet and raw sockets need root, BPF filter facts need
//! packet_diag, the dual-stack listener IPv6 (CI has all three): without
//! them a test skips with one line, or fails in CI (see
//! `common::capability`). Nothing is sent anywhere: the BPF filter drops
//! every packet.

mod common;

use common::capability::{Capability, require};
use common::{Exporter, samples, scrape_until};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use unassigned_port_exporter::kernel::procfs::ProcRoot;
use unassigned_port_exporter::kernel::sock_diag::raw::{
    self, BpfFilter, DiagSupport, ProcTables, RawKind,
};
use unassigned_port_exporter::kernel::sock_diag::wire::{Channel, inet_diag_request};
use unassigned_port_exporter::policy::allow::{AllowRule, OwnerFacts, Subject};
use unassigned_port_exporter::policy::exposure::{self, Exposure};
use unassigned_port_exporter::policy::registry::Transport;

/// The helper: `python3 -c HELPER MODE`, prints one JSON line of facts, then
/// holds its sockets until stdin closes.
const HELPER: &str = r#"
import ctypes, json, os, socket, struct, sys

mode = sys.argv[1]
facts = {"pid": os.getpid(), "exe": os.path.realpath(sys.executable)}
held = []

def inode(sock):
    return os.fstat(sock.fileno()).st_ino

if mode == "bpfdoor":
    packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    # One classic BPF instruction: "ret #0", drop every packet.
    program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    fprog = struct.pack("HL", 1, ctypes.addressof(program))
    packet.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    plain = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0806))
    plain.bind(("lo", 0x0806))
    held += [packet, raw, plain, program]
    facts.update(packet=inode(packet), raw=inode(raw), arp_on_lo=inode(plain))
elif mode in ("sshd", "listen"):
    if mode == "sshd":
        libc = ctypes.CDLL(None)
        libc.prctl(15, b"sshd", 0, 0, 0)  # PR_SET_NAME
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", int(sys.argv[2])))
    listener.listen()
    held.append(listener)
    facts.update(port=listener.getsockname()[1], inode=inode(listener))
elif mode == "exposure":
    def listen(family, address, v6only=None, device=None):
        s = socket.socket(family, socket.SOCK_STREAM)
        if v6only is not None:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if v6only else 0)
        if device is not None:
            s.setsockopt(socket.SOL_SOCKET, 25, device)  # SO_BINDTODEVICE
        s.bind((address, 0))
        s.listen()
        held.append(s)
        return {"port": s.getsockname()[1], "inode": inode(s)}
    facts.update(
        loopback=listen(socket.AF_INET, "127.0.0.1"),
        any=listen(socket.AF_INET, "0.0.0.0"),
        dual=listen(socket.AF_INET6, "::", v6only=False),
        v6only=listen(socket.AF_INET6, "::", v6only=True),
        on_lo=listen(socket.AF_INET, "0.0.0.0", device=b"lo"),
    )
print(json.dumps(facts), flush=True)
sys.stdin.read()
"#;

/// A running helper; its sockets close when it is dropped.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    facts: Value,
}

impl Helper {
    fn start(args: &[&str]) -> Helper {
        Helper::start_with(Command::new("python3"), args)
    }

    /// Runs the helper with a given interpreter command (a copied binary).
    fn start_with(mut command: Command, args: &[&str]) -> Helper {
        let mut child = command
            .arg("-c")
            .arg(HELPER)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let facts: Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("the helper said {line:?}: {err}"));
        let stdin = child.stdin.take();
        Helper {
            child,
            stdin,
            facts,
        }
    }

    fn pid(&self) -> u32 {
        self.facts["pid"].as_u64().unwrap() as u32
    }

    fn exe(&self) -> &str {
        self.facts["exe"].as_str().unwrap()
    }

    fn number(&self, path: &[&str]) -> u64 {
        let mut value = &self.facts;
        for key in path {
            value = &value[*key];
        }
        value
            .as_u64()
            .unwrap_or_else(|| panic!("no {path:?} in {}", self.facts))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if self.child.wait().is_err() {
            let _ = self.child.kill();
        }
    }
}

#[test]
fn a_filtered_packet_socket_and_a_raw_socket_are_listed() {
    if !require(Capability::Root) {
        return;
    }
    let helper = Helper::start(&["bpfdoor"]);
    let mut channel = Channel::open().unwrap();
    let support = DiagSupport::probe(&mut channel);
    // This kernel has packet_diag but no raw_diag: both paths run here.
    let (packet_source, raw_source) = support.sources();
    eprintln!("packet sockets via {packet_source}, raw sockets via {raw_source}");
    let mut tables = ProcTables::open(Path::new("/proc"), support).unwrap();
    let mut found = Vec::new();
    raw::collect(&mut channel, support, &mut tables, &mut found).unwrap();
    let by_inode = |inode: u64| {
        found
            .iter()
            .find(|s| s.socket.inode == inode)
            .unwrap_or_else(|| panic!("inode {inode} not listed in {found:?}"))
    };
    let packet = by_inode(helper.number(&["packet"]));
    assert_eq!(packet.socket.kind, RawKind::Packet);
    assert_eq!(packet.socket.protocol_label(), "all");
    assert_eq!(packet.socket.uid, Some(0));
    assert_eq!(packet.interface, "");
    let expected_filter = if packet_source == "sock_diag" {
        BpfFilter::Attached
    } else {
        BpfFilter::Unknown // /proc/net/packet does not say
    };
    assert_eq!(packet.socket.bpf_filter, expected_filter);
    let arp = by_inode(helper.number(&["arp_on_lo"]));
    assert_eq!(arp.socket.protocol_label(), "arp");
    assert_eq!(arp.interface, "lo");
    if packet_source == "sock_diag" {
        assert_eq!(arp.socket.bpf_filter, BpfFilter::None);
    }
    let raw = by_inode(helper.number(&["raw"]));
    assert_eq!(raw.socket.kind, RawKind::Raw);
    assert_eq!(raw.socket.protocol_label(), "tcp");
    assert_eq!(raw.socket.uid, Some(0));
    let closed = [helper.number(&["packet"]), helper.number(&["raw"])];
    drop(helper);
    found.clear();
    raw::collect(&mut channel, support, &mut tables, &mut found).unwrap();
    assert!(
        found.iter().all(|s| !closed.contains(&s.socket.inode)),
        "the sockets closed with their process"
    );
}

#[test]
fn a_process_named_sshd_does_not_satisfy_exe_but_its_real_executable_does() {
    let port = common::free_port();
    let helper = Helper::start(&["sshd", &port.to_string()]);
    let root = ProcRoot::default();
    let pid = helper.pid();
    let comm = root.comm(pid).unwrap();
    assert_eq!(comm, "sshd", "the helper renamed itself");
    let exe = unassigned_port_exporter::owners::provenance::read_exe(&root, pid)
        .expect("our own child's exe is readable");
    assert!(!exe.deleted);
    let real_python = helper.facts["exe"].as_str().unwrap();
    assert_eq!(exe.path, real_python);
    let owner = OwnerFacts {
        comm: &comm,
        exe: Some(&exe.raw),
        ..OwnerFacts::default()
    };
    let subject = Subject::Listener(Transport::Tcp, port);
    let by_name = AllowRule::parse(&format!("{port}/tcp:sshd")).unwrap();
    assert!(by_name.matches(subject, &owner), "comm alone is fooled");
    assert!(by_name.trusts_comm_only());
    let by_exe = AllowRule::parse(&format!("{port}/tcp:exe=/usr/sbin/sshd")).unwrap();
    assert!(!by_exe.matches(subject, &owner));
    let both = AllowRule::parse(&format!("{port}/tcp:exe=/usr/sbin/sshd,comm=sshd")).unwrap();
    assert!(!both.matches(subject, &owner));
    let real = AllowRule::parse(&format!("{port}/tcp:exe={real_python}")).unwrap();
    assert!(real.matches(subject, &owner));
    let glob = AllowRule::parse(&format!("{port}/tcp:exe=/**/python3*")).unwrap();
    assert!(glob.matches(subject, &owner));
}

/// Every TCP listener of this namespace: (address, port) -> inet_diag payload.
fn listening_tcp() -> HashMap<(IpAddr, u16), Vec<u8>> {
    let mut channel = Channel::open().unwrap();
    let mut found = HashMap::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let request = inet_diag_request(family as u8, libc::IPPROTO_TCP as u8, 1 << 10);
        channel
            .dump(&request, |payload| {
                let port = u16::from_be_bytes([payload[4], payload[5]]);
                let address = if payload[0] == libc::AF_INET as u8 {
                    IpAddr::from(<[u8; 4]>::try_from(&payload[8..12]).unwrap())
                } else {
                    IpAddr::from(<[u8; 16]>::try_from(&payload[8..24]).unwrap())
                };
                found.insert((address, port), payload.to_vec());
                Ok(())
            })
            .unwrap();
    }
    found
}

#[test]
fn exposure_and_dual_stack_come_from_a_real_dump() {
    // SO_BINDTODEVICE needs CAP_NET_RAW; one listener is on [::].
    if !require(Capability::Root) || !require(Capability::Ipv6) {
        return;
    }
    let helper = Helper::start(&["exposure"]);
    let table = listening_tcp();
    let look = |name: &str, address: &str| {
        let port = helper.number(&[name, "port"]) as u16;
        let address: IpAddr = address.parse().unwrap();
        let payload = table
            .get(&(address, port))
            .unwrap_or_else(|| panic!("{name} ({address} port {port}) not in the dump"));
        (
            address,
            unassigned_port_exporter::kernel::sock_diag::binding::binding(payload),
        )
    };
    let (address, binding) = look("loopback", "127.0.0.1");
    assert_eq!(exposure::classify(address), Exposure::Loopback);
    assert_eq!(binding.dual_stack(address), Some(false));
    let (address, binding) = look("any", "0.0.0.0");
    assert_eq!(exposure::classify(address).as_str(), "any");
    assert_eq!(binding.v6only, None, "IPv4 sockets carry no v6only");
    let (dual_address, dual) = look("dual", "::");
    let (only_address, only) = look("v6only", "::");
    assert_eq!(exposure::classify(dual_address).as_str(), "any");
    assert_eq!((dual.v6only, only.v6only), (Some(false), Some(true)));
    assert_eq!(dual.dual_stack(dual_address), Some(true));
    assert_eq!(only.dual_stack(only_address), Some(false));
    let (address, on_lo) = look("on_lo", "0.0.0.0");
    assert_eq!(on_lo.ifindex, 1, "lo is interface 1");
    assert_eq!(exposure::classify_bound(address, "lo"), Exposure::Loopback);
}

/// The comm of `pid`, read straight from /proc.
fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap()
        .trim_end()
        .to_string()
}

/// The one sample of `name` whose labels include all of `wanted`, if any.
fn find(text: &str, name: &str, wanted: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    samples(text, name)
        .into_iter()
        .map(|(labels, _)| labels)
        .find(|labels| {
            wanted
                .iter()
                .all(|(key, value)| labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|labels| labels.into_iter().collect())
}

#[test]
fn exporter_reports_a_passive_backdoor_with_its_owner_and_provenance() {
    if !require(Capability::Root) || !require(Capability::PacketDiag) {
        return;
    }
    let helper = Helper::start(&["bpfdoor"]);
    let pid = helper.pid().to_string();
    let allow_python = format!("--watch.allow=packet:exe={}", helper.exe());
    let exporter = Exporter::start(&["--collector.netns=host", &allow_python]);
    let comm = comm_of(helper.pid());
    let text = scrape_until(&exporter, "the helper's packet and raw sockets", |text| {
        find(
            text,
            "unassigned_port_raw_sockets",
            &[("pid", &pid), ("kind", "raw")],
        )
        .is_some()
    });
    let packet = find(
        &text,
        "unassigned_port_raw_sockets",
        &[("pid", &pid), ("kind", "packet"), ("protocol", "all")],
    )
    .expect("the filtered packet socket");
    assert_eq!(
        packet["bpf_filter"], "true",
        "packet_diag shows the filter to root"
    );
    assert_eq!(packet["process"], comm);
    assert_eq!(packet["user"], "root");
    assert_eq!(packet["interface"], "");
    assert_eq!(
        packet["expected"], "true",
        "packet:exe=<its python> allows it"
    );
    let raw = find(
        &text,
        "unassigned_port_raw_sockets",
        &[("pid", &pid), ("kind", "raw")],
    )
    .unwrap();
    assert_eq!(
        (raw["protocol"].as_str(), raw["expected"].as_str()),
        ("tcp", "false")
    );
    let info = find(
        &text,
        "unassigned_port_listener_process_info",
        &[("pid", &pid)],
    )
    .expect("one info series for the owning process");
    assert_eq!(info["exe"], helper.exe());
    assert_eq!(info["exe_deleted"], "false");
    assert_eq!(info["ppid"], std::process::id().to_string());
    assert_eq!(info["parent_process"], common::own_process_name());
    assert_eq!(
        samples(&text, "unassigned_port_listener_process_info")
            .iter()
            .filter(|(labels, _)| labels["pid"] == pid)
            .count(),
        1
    );
}

#[test]
fn exporter_judges_a_renamed_sshd_by_its_executable_and_reloads_the_allow_file() {
    let port = common::free_port();
    let helper = Helper::start(&["sshd", &port.to_string()]);
    let dir = std::env::temp_dir().join(format!("hidden-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("allow.rules");
    let write_rules = |text: &str| {
        let next = dir.join("allow.rules.new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &file).unwrap(); // as config management does
    };
    write_rules(&format!(
        "# only the real sshd\n{port}/tcp:exe=/usr/sbin/sshd\n"
    ));
    let watch_flag = format!("--watch.ports={port}");
    let file_flag = format!("--watch.allow-file={}", file.display());
    let exporter = Exporter::start(&["--collector.netns=host", &watch_flag, &file_flag]);
    let port_text = port.to_string();
    let listener = |text: &str| find(text, "unassigned_port_listeners", &[("port", &port_text)]);
    let text = scrape_until(&exporter, "the sshd impostor", |text| {
        listener(text).is_some()
    });
    let series = listener(&text).unwrap();
    assert_eq!(series["process"], "sshd");
    assert_eq!(series["expected"], "false", "the name sshd is not enough");
    assert_eq!(
        (series["exposure"].as_str(), series["dual_stack"].as_str()),
        ("loopback", "false")
    );
    // Allow its real executable, and say so with SIGHUP.
    write_rules(&format!("{port}/tcp:exe={},user=root\n", helper.exe()));
    let hangup = Command::new("kill")
        .args(["-HUP", &exporter.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hangup.success());
    scrape_until(&exporter, "the reloaded rule to match", |text| {
        listener(text).is_some_and(|series| series["expected"] == "true")
    });
    // A broken edit keeps the rules in force (the reload logs why, and
    // says it failed in its metrics).
    write_rules("this is not a rule\n");
    let text = exporter.wait_for_failed_reload("allow");
    let series = listener(&text).unwrap();
    assert_eq!(series["expected"], "true");
    // Fixed again: the next reload succeeds and says so.
    let fixed_at = common::unix_now();
    write_rules(&format!("{port}/tcp:exe={},user=root\n", helper.exe()));
    let text = exporter.wait_for_good_reload("allow", fixed_at);
    assert_eq!(listener(&text).unwrap()["expected"], "true");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exporter_labels_exposure_dual_stack_and_interface() {
    // SO_BINDTODEVICE needs CAP_NET_RAW; one listener is on [::].
    if !require(Capability::Root) || !require(Capability::Ipv6) {
        return;
    }
    let helper = Helper::start(&["exposure"]);
    let names = ["loopback", "any", "dual", "v6only", "on_lo"];
    let ports: Vec<String> = names
        .iter()
        .map(|name| helper.number(&[name, "port"]).to_string())
        .collect();
    let exporter = Exporter::start(&[
        "--collector.netns=host",
        &format!("--watch.ports={}", ports.join(",")),
    ]);
    let text = scrape_until(&exporter, "five listeners", |text| {
        ports
            .iter()
            .all(|port| find(text, "unassigned_port_listeners", &[("port", port)]).is_some())
    });
    let labels = |port: &str| {
        let series = find(&text, "unassigned_port_listeners", &[("port", port)]).unwrap();
        (
            series["exposure"].clone(),
            series["dual_stack"].clone(),
            series["interface"].clone(),
        )
    };
    let expect = |exposure: &str, dual: &str, interface: &str| {
        (
            exposure.to_string(),
            dual.to_string(),
            interface.to_string(),
        )
    };
    assert_eq!(labels(&ports[0]), expect("loopback", "false", ""));
    // Wildcards are as exposed as the host's up addresses of their families.
    let v4 = common::host_wildcard_exposure(true, false);
    let v6 = common::host_wildcard_exposure(false, true);
    let both = common::host_wildcard_exposure(true, true);
    assert_eq!(labels(&ports[1]), expect(&v4, "false", ""));
    assert_eq!(labels(&ports[2]), expect(&both, "true", ""));
    assert_eq!(labels(&ports[3]), expect(&v6, "false", ""));
    assert_eq!(labels(&ports[4]), expect("loopback", "false", "lo"));
}

#[test]
fn exporter_flags_a_listener_whose_executable_was_deleted() {
    // A copy of the python interpreter, started, then deleted.
    let prefix = Command::new("python3")
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    let prefix = String::from_utf8(prefix.stdout).unwrap().trim().to_string();
    let real = Helper::start(&["listen", "0"]).exe().to_string();
    let dir = std::env::temp_dir().join(format!("hidden-deleted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("python-copy");
    std::fs::copy(&real, &copy).unwrap();
    let port = common::free_port();
    let mut command = Command::new(&copy);
    command.env("PYTHONHOME", &prefix);
    let helper = Helper::start_with(command, &["listen", &port.to_string()]);
    std::fs::remove_file(&copy).unwrap();
    let pid = helper.pid().to_string();
    let exporter = Exporter::start(&["--collector.netns=host", &format!("--watch.ports={port}")]);
    let text = scrape_until(&exporter, "the deleted binary's listener", |text| {
        find(
            text,
            "unassigned_port_listener_process_info",
            &[("pid", &pid)],
        )
        .is_some()
    });
    let info = find(
        &text,
        "unassigned_port_listener_process_info",
        &[("pid", &pid)],
    )
    .unwrap();
    assert_eq!(info["exe_deleted"], "true");
    assert_eq!(
        info["exe"],
        helper.exe(),
        "the path it ran from, without the suffix"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn exporter_warns_at_start_about_rules_that_trust_the_name_only() {
    let exporter = Exporter::start(&[
        "--collector.netns=host",
        "--watch.allow=276/tcp:sshd",
        "--watch.allow=277/tcp:exe=/usr/sbin/sshd",
    ]);
    // Logged before the listening address: already in the log.
    let warning = exporter
        .log()
        .into_iter()
        .find(|line| line.contains("any process can give itself that name"));
    let warning = warning.expect("a warning about the comm-only rule");
    assert!(warning.contains("276-276/tcp:comm=sshd"), "{warning}");
    assert!(
        !warning.contains("277"),
        "the exe rule is not named: {warning}"
    );
}
