//! What a test needs from the machine, checked in one place, so that a test
//! whose subject did not run never passes as `ok` in CI.
//!
//! [`require`] probes a [`Capability`]; [`gate`] takes the outcome of a
//! probe the test made itself (starting a tracepoint capture, say). When the
//! capability is there, both return true. When it is missing:
//!
//! - outside CI, the test prints one line (`skipped: TEST needs WHAT: WHY`)
//!   and the caller returns;
//! - with `CI` set (non-empty and not `0` or `false`), the test panics and
//!   the message names what was missing.
//!
//! [`kernel_offers`] is the other kind of gate: features this project's CI
//! kernel does not have (sctp_diag, raw_diag, kprobes, NFS/lockd, module
//! loading) are tested from byte fixtures, and the live test of such a
//! feature runs only where the kernel reports it, in CI or not.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a test may need and CI has, so may not skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Effective uid 0 (ports below 1024, packet and raw sockets, setns).
    Root,
    /// The `sock:inet_sock_set_state` listen tracepoint through perf.
    ListenTracepoint,
    /// sock_diag's destroy multicast groups.
    DestroyGroups,
    /// An IPv6 loopback to bind.
    Ipv6,
    /// Named network namespaces (`ip netns add`, which mounts under
    /// /run/netns).
    NetworkNamespaces,
    /// sock_diag for packet sockets (packet_diag).
    PacketDiag,
    /// A working podman.
    Podman,
    /// Root of the host's user namespace (not root of a namespace
    /// `unshare -U -r` made, which maps one uid): switching to other uids,
    /// reading every process's descriptors.
    HostRoot,
    /// Creating users and running processes as them: root of the host's
    /// user namespace (not root of a namespace `unshare -U -r` made, which
    /// maps one uid) with `useradd`.
    UserAccounts,
    /// A writable cgroup2 hierarchy to make pod-like cgroups in.
    Cgroups,
    /// Debian's `prometheus` and `prometheus-alertmanager`.
    PrometheusStack,
    /// `promtool` (Debian's `prometheus` package).
    Promtool,
    /// Debian packages a test runs (the test lists what is missing).
    Packages,
    /// A hard open-file limit high enough for what the test holds (the
    /// test probes it).
    OpenFiles,
}

impl Capability {
    /// How the skip line and the CI failure name it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Root => "root",
            Capability::ListenTracepoint => "the listen tracepoint (sock:inet_sock_set_state)",
            Capability::DestroyGroups => "sock_diag destroy groups",
            Capability::Ipv6 => "IPv6",
            Capability::NetworkNamespaces => "network namespaces (ip netns add)",
            Capability::PacketDiag => "packet_diag",
            Capability::Podman => "podman",
            Capability::OpenFiles => "a high enough open-file limit",
            Capability::Cgroups => "a writable cgroup2 hierarchy",
            Capability::PrometheusStack => "prometheus and prometheus-alertmanager",
            Capability::Promtool => "promtool",
            Capability::Packages => "the Debian packages it runs",
            Capability::UserAccounts => "user accounts (useradd as the host's root)",
            Capability::HostRoot => "root of the host's user namespace",
        }
    }

    /// Looks for the capability; `Err` says why it is missing.
    fn probe(self) -> Result<(), String> {
        match self {
            Capability::Root => {
                let uid = rustix::process::geteuid();
                if uid.is_root() {
                    Ok(())
                } else {
                    Err(format!("running as uid {}", uid.as_raw()))
                }
            }
            Capability::ListenTracepoint => {
                let started = unassigned_port_exporter::events::ListenCapture::start(
                    1023,
                    std::path::Path::new("/proc"),
                    |_| {},
                );
                started.map(drop).map_err(|err| err.to_string())
            }
            Capability::DestroyGroups => {
                use unassigned_port_exporter::events::{DestroyGroups, DestroySubscription};
                DestroySubscription::open(1023, DestroyGroups::Udp)
                    .map(drop)
                    .map_err(|err| err.to_string())
            }
            Capability::Ipv6 => std::net::TcpListener::bind("[::1]:0")
                .map(drop)
                .map_err(|err| format!("cannot bind [::1]: {err}")),
            Capability::NetworkNamespaces => probe_named_namespace(),
            Capability::PacketDiag => {
                use unassigned_port_exporter::kernel::sock_diag::{raw::DiagSupport, wire};
                let mut channel = wire::Channel::open().map_err(|err| err.to_string())?;
                if DiagSupport::probe(&mut channel).packet {
                    Ok(())
                } else {
                    Err("sock_diag answers no AF_PACKET dump".to_string())
                }
            }
            Capability::Podman => run_quietly("podman", &["info"]),
            Capability::HostRoot => {
                Capability::Root.probe()?;
                let map = std::fs::read_to_string("/proc/self/uid_map")
                    .map_err(|err| format!("cannot read /proc/self/uid_map: {err}"))?;
                if map.split_whitespace().nth(2) == Some("4294967295") {
                    Ok(())
                } else {
                    Err(format!(
                        "root of a user namespace that maps only some uids: {}",
                        map.trim()
                    ))
                }
            }
            Capability::UserAccounts => {
                Capability::HostRoot.probe()?;
                run_quietly("sh", &["-c", "command -v useradd"])
                    .map_err(|_| "useradd is not installed".to_string())
            }
            Capability::Promtool => run_quietly("promtool", &["--version"]),
            Capability::Cgroups
            | Capability::PrometheusStack
            | Capability::Packages
            | Capability::OpenFiles => Err("probed by the test itself (use `gate`)".to_string()),
        }
    }
}

/// True when `CI` is set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"))
}

/// True when the machine has `capability`; otherwise skips (prints one line
/// and returns false) or, in CI, fails the test.
pub fn require(capability: Capability) -> bool {
    gate(capability, capability.probe())
}

/// [`require`] for a probe the test made itself: `Err` says why the
/// capability is missing.
pub fn gate(capability: Capability, probed: Result<(), String>) -> bool {
    need(capability.name(), probed)
}

/// [`gate`] for a need no [`Capability`] names (a tool, a sysctl): `what`
/// is how the skip line and the CI failure name it.
pub fn need(what: &str, probed: Result<(), String>) -> bool {
    let Err(why) = probed else {
        return true;
    };
    let test = test_name();
    if in_ci() {
        panic!(
            "{test} needs {what}, which is missing here: {why} (CI is set, so this fails instead of skipping)"
        );
    }
    // Straight to the process's stderr, past libtest's capture, so the
    // skip shows in the output of a passing run.
    let _ = writeln!(std::io::stderr(), "skipped: {test} needs {what}: {why}");
    false
}

/// True when the kernel offers `feature` (a fact the test read from the
/// kernel or the exporter); otherwise prints one line and returns false, in
/// CI too: these features are covered by byte fixtures (see the README,
/// "What the tests cannot run here").
pub fn kernel_offers(feature: &str, offered: bool) -> bool {
    if !offered {
        let _ = writeln!(
            std::io::stderr(),
            "not run: {} needs {feature}, which this kernel does not offer (byte fixtures cover it)",
            test_name()
        );
    }
    offered
}

/// The running test's name (libtest names the thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string()
}

/// Adds and deletes a named namespace, as the tests that need one do.
fn probe_named_namespace() -> Result<(), String> {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "upe-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    run_quietly("ip", &["netns", "add", &name])?;
    run_quietly("ip", &["netns", "del", &name])
}

/// Runs `program` with `args`; `Err` carries its exit status and stderr.
fn run_quietly(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        stderr.trim()
    ))
}
