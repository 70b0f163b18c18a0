//! The shipped default policy on real Debian daemons, judged by the real
//! Prometheus with the shipped alert rules (issue 20).
//!
//! The test makes a network namespace with only `lo` and a private mount
//! namespace with its own `/run` (so nothing it starts touches the host's
//! rpcbind socket or pid files), and starts in it, from their systemd units'
//! command lines: rpcbind, rpc.statd (nfs-common), sshd (openssh-server),
//! chronyd (chrony), dnsmasq and avahi-daemon, each with a configuration
//! that names no servers, upstreams or peers, so none of them talks to
//! anything outside the namespace. Two exporters read every namespace, one
//! with the shipped `deploy/allow/default.allow` and one without any
//! policy; one Prometheus scrapes both every second and evaluates
//! `deploy/prometheus/unassigned-ports.rules.yml`.
//!
//! Then rpc.statd is restarted 20 times. In each restart whose loopback UDP
//! socket (bindresvport: a random privileged port) lands on a watched port,
//! the test waits until Prometheus has scraped it and evaluated the rules:
//! with the policy the series carries `expected="true"`, without it the
//! alert fires. Then three things the policy must not let through: a python
//! process renamed `rpc.statd` (prctl) running as statd on a random watched
//! privileged port on loopback, a copy of the statd binary run from a temp
//! dir, and a listener on 276 parked in an unread SCM_RIGHTS message (held
//! by no process: `holder="none"`). At the end, Prometheus' `ALERTS` history
//! for the policy's job must name exactly those three ports.
//!
//! Needs root, `ip`, `nsenter`, `unshare`, python3, prometheus and the
//! daemons' packages (tests/run-all.sh installs them). Missing any, it
//! skips with one line, or fails in CI (see `common::capability`). About 60-90 s here.

mod common;

use common::BINARY;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use unassigned_port_exporter::policy::registry::{Registry, Transport};
use unassigned_port_exporter::policy::watch::{Scope, WatchSet};

const RESTARTS: usize = 20;
/// Processes started before each statd restart. glibc's `bindresvport`
/// starts at port 600 + pid % 424, and a restart alone advances the host's
/// pid by about 5, so 20 restarts sampled about 100 consecutive ports from
/// wherever the pids stood; in 600-702 only 659 is unassigned, and a run
/// whose pids put it there failed ("never landed on a watched port"). With
/// 16 more pids a restart, the 20 restarts spread over the whole 600-1023.
const PID_STRIDE: usize = 16;
const POLL: Duration = Duration::from_millis(200);
const SETTLE: Duration = Duration::from_secs(30);
const ALERT: &str = "UnassignedPortListener";
const STATD: &str = "/usr/sbin/rpc.statd";

const REQUIRED: [&str; 10] = [
    "/usr/sbin/rpcbind",
    STATD,
    "/usr/sbin/sshd",
    "/usr/sbin/chronyd",
    "/usr/sbin/dnsmasq",
    "/usr/sbin/avahi-daemon",
    "/usr/bin/prometheus",
    "/usr/bin/python3",
    "/usr/bin/nsenter",
    "/usr/bin/unshare",
];

/// Why this machine lacks the daemons and tools the test runs, if it does.
fn missing() -> Option<String> {
    let absent: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !absent.is_empty() {
        return Some(format!(
            "missing {} (apt-get install rpcbind nfs-common openssh-server chrony dnsmasq avahi-daemon prometheus)",
            absent.join(" ")
        ));
    }
    None
}

/// Everything started, stopped and removed when dropped.
struct World {
    dir: PathBuf,
    netns: String,
    /// The process holding the private mount namespace (and the netns).
    holder: Option<Child>,
    children: Vec<(String, Child)>,
}

impl World {
    fn new() -> World {
        let dir = std::env::temp_dir().join(format!("upe-fleet-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let netns = format!("upe-fleet-{}", std::process::id());
        run("ip", &["netns", "add", &netns]);
        let mut world = World {
            dir,
            netns,
            holder: None,
            children: Vec::new(),
        };
        run("ip", &["-n", &world.netns, "link", "set", "lo", "up"]);
        // `ip netns exec` and `unshare` both exec: the child is `sleep`.
        let holder = Command::new("ip")
            .args(["netns", "exec", &world.netns, "unshare", "--mount"])
            .args(["--propagation", "private", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("start the namespace holder");
        world.holder = Some(holder);
        let pid = world.holder_pid();
        let deadline = Instant::now() + Duration::from_secs(10);
        // `ip netns exec` makes a mount namespace of its own and `unshare`
        // another: only once `sleep` runs is the holder in the last one
        // (mounting into an earlier one raced: sshd found no /run/sshd).
        while fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .as_deref()
            != Some("sleep\n")
            || fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
                == fs::read_link("/proc/self/ns/mnt").ok()
        {
            assert!(Instant::now() < deadline, "unshare did not take");
            thread::sleep(Duration::from_millis(20));
        }
        world.inside(&[
            "sh",
            "-c",
            "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd /run/rpcbind /run/chrony /run/dnsmasq /run/avahi-daemon \
             && chown _rpc /run/rpcbind && chown _chrony /run/chrony && chown avahi /run/avahi-daemon",
        ]);
        world
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().unwrap().id()
    }

    /// The `nsenter` prefix that enters the test's mount and net namespaces.
    fn enter(&self) -> Vec<String> {
        vec![
            "nsenter".into(),
            "-t".into(),
            self.holder_pid().to_string(),
            "-m".into(),
            "-n".into(),
            "--".into(),
        ]
    }

    /// Runs a command inside and waits for it.
    fn inside(&self, args: &[&str]) -> String {
        let enter = self.enter();
        let output = Command::new(&enter[0])
            .args(&enter[1..])
            .args(args)
            .output()
            .expect("nsenter");
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts a long-running command inside; its output goes to DIR/NAME.log.
    fn start(&mut self, name: &str, args: &[&str]) -> u32 {
        let log = fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let enter = self.enter();
        let child = Command::new(&enter[0])
            .args(&enter[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let pid = child.id();
        self.children.push((name.to_string(), child));
        pid
    }

    /// Stops a started command (SIGTERM, then waits).
    fn stop(&mut self, name: &str) {
        if let Some(at) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(at);
            terminate(&mut child);
        }
    }

    /// Fails when a daemon has exited.
    fn check_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(self.dir.join(format!("{name}.log")));
                panic!("{name} exited with {status}: {}", log.unwrap_or_default());
            }
        }
    }

    /// Bound UDP sockets on 127.0.0.1 of a process, from `ss` inside.
    fn loopback_udp_ports(&self, pid: u32) -> Vec<u16> {
        self.inside(&["ss", "-Hlnup", "src", "127.0.0.1"])
            .lines()
            .filter(|line| line.contains(&format!("pid={pid},")))
            .filter_map(|line| {
                line.split_whitespace()
                    .nth(3)?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            terminate(child);
        }
        if let Some(holder) = &mut self.holder {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        if !thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

/// SIGTERM (daemons clean up: rpc.statd unregisters), SIGKILL after 5 s.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

/// A Prometheus scraping both exporters.
struct Prometheus {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, with: u16, without: u16) -> Prometheus {
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/prometheus/unassigned-ports.rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - '{}'\nscrape_configs:\n  - job_name: with\n    static_configs:\n      - targets: ['127.0.0.1:{with}']\n\
             \x20 - job_name: without\n    static_configs:\n      - targets: ['127.0.0.1:{without}']\n",
            rules.display()
        );
        let config_path = dir.join("prometheus.yml");
        fs::write(&config_path, config).unwrap();
        let port = common::free_port();
        let log = fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            agent,
        }
    }

    fn vector(&self, promql: &str) -> Option<Vec<Value>> {
        let body = self
            .agent
            .get(&format!("{}/api/v1/query", self.base))
            .query("query", promql)
            .call()
            .ok()?
            .into_string()
            .ok()?;
        let json: Value = serde_json::from_str(&body).ok()?;
        json["data"]["result"].as_array().cloned()
    }

    /// Waits until `promql` returns at least one sample.
    fn wait_for(&self, what: &str, promql: &str) -> Vec<Value> {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(found) = self.vector(promql).filter(|v| !v.is_empty()) {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {promql}"
            );
            thread::sleep(POLL);
        }
    }
}

fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    sample["metric"][name].as_str().unwrap_or("")
}

/// uid of a system account.
fn uid_of(user: &str) -> u32 {
    let output = Command::new("id").args(["-u", user]).output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

/// Uses up `count` pids (short-lived `true` processes), so that the next
/// process started gets a pid that many further on.
fn advance_pids(count: usize) {
    for _ in 0..count {
        let _ = Command::new("true").status();
    }
}

/// A fresh statd state directory owned by statd (statd runs as its owner).
fn state_dir(dir: &Path, name: &str) -> PathBuf {
    let state = dir.join(name);
    let _ = fs::remove_dir_all(&state);
    for sub in ["sm", "sm.bak"] {
        fs::create_dir_all(state.join(sub)).unwrap();
    }
    run("chown", &["-R", "statd", state.to_str().unwrap()]);
    state
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn stock_daemons_stay_quiet_with_the_shipped_policy_and_impostors_still_alert() {
    use common::capability::{Capability, gate, require};
    if !require(Capability::Root)
        || !require(Capability::NetworkNamespaces)
        || !gate(Capability::Packages, missing().map_or(Ok(()), Err))
    {
        return;
    }
    let started = Instant::now();
    let watch = WatchSet::new(Registry::embedded(), Scope::WellKnown, &[], vec![]);
    let mut world = World::new();
    let dir = world.dir.clone();
    fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // The daemons, from their units' ExecStart lines, in the foreground,
    // with configurations that name no servers.
    world.start("rpcbind", &["/sbin/rpcbind", "-f", "-w"]);
    let sshd = write(
        &dir,
        "sshd_config",
        "ListenAddress 127.0.0.1\nPidFile /run/sshd.pid\nUsePAM no\n",
    );
    world.start("sshd", &["/usr/sbin/sshd", "-D", "-f", &sshd]);
    let chrony = write(
        &dir,
        "chrony.conf",
        &format!(
            "# no server, pool or peer lines: chronyd talks to nobody\n\
             driftfile {0}/chrony.drift\npidfile /run/chrony/chronyd.pid\n\
             bindcmdaddress 127.0.0.1\ncmdport 323\n",
            dir.display()
        ),
    );
    // -x: never touch the clock (it is not namespaced).
    world.start(
        "chronyd",
        &["/usr/sbin/chronyd", "-F", "1", "-d", "-x", "-f", &chrony],
    );
    let dnsmasq = write(
        &dir,
        "dnsmasq.conf",
        "# no server= lines and no resolv.conf: no upstreams\nno-resolv\nno-hosts\nno-poll\n\
         listen-address=127.0.0.1\nbind-interfaces\n",
    );
    world.start(
        "dnsmasq",
        &[
            "/usr/sbin/dnsmasq",
            "-k",
            "-C",
            &dnsmasq,
            "-x",
            "/run/dnsmasq/dnsmasq.pid",
            "-u",
            "dnsmasq",
        ],
    );
    let avahi = write(
        &dir,
        "avahi-daemon.conf",
        "[server]\nuse-ipv4=yes\nuse-ipv6=no\nenable-dbus=no\nallow-interfaces=lo\n\
         [wide-area]\nenable-wide-area=no\n[publish]\ndisable-publishing=yes\n[reflector]\nenable-reflector=no\n",
    );
    world.start(
        "avahi-daemon",
        &["/usr/sbin/avahi-daemon", "-s", "-f", &avahi, "--no-rlimits"],
    );

    // The exporters and Prometheus, on the host.
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/allow/default.allow");
    let with = common::Exporter::start(&[&format!("--watch.allow-file={}", policy.display())]);
    let without = common::Exporter::start(&[]);
    let prometheus = Prometheus::start(&dir, with.port, without.port);
    prometheus.wait_for("both exporters scraped", "count(up == 1) == 2");

    // Every daemon runs and listens in the namespace.
    let deadline = Instant::now() + SETTLE;
    let wanted = ["rpcbind", "sshd", "chronyd", "dnsmasq", "avahi-daemon"];
    loop {
        world.check_alive();
        let table = world.inside(&["ss", "-Hlntup"]);
        let absent: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|name| !table.contains(&format!("((\"{name}\"")))
            .collect();
        if absent.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not listening: {absent:?}\n{table}"
        );
        thread::sleep(POLL);
    }

    // rpc.statd, restarted.
    let mut landed: Vec<u16> = Vec::new();
    for round in 0..RESTARTS {
        let state = state_dir(&dir, "statd");
        advance_pids(PID_STRIDE);
        let pid = world.start("rpc.statd", &[STATD, "-F", "-P", state.to_str().unwrap()]);
        let deadline = Instant::now() + SETTLE;
        let port = loop {
            world.check_alive();
            if let Some(&port) = world.loopback_udp_ports(pid).first() {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "rpc.statd bound no loopback port"
            );
            thread::sleep(Duration::from_millis(50));
        };
        if watch.is_watched(Transport::Udp, port) {
            landed.push(port);
            // Scraped and judged by both jobs, and the rules evaluated on it.
            let seen = prometheus.wait_for(
                "statd's series with the policy",
                &format!("unassigned_port_listeners{{job=\"with\",port=\"{port}\",protocol=\"udp\",process=\"rpc.statd\"}}"),
            );
            for sample in &seen {
                assert_eq!(label(sample, "expected"), "true", "{sample}");
                assert_eq!(label(sample, "holder"), "process", "{sample}");
                assert_eq!(label(sample, "user"), "statd", "{sample}");
            }
            prometheus.wait_for(
                "the alert without the policy",
                &format!("ALERTS{{alertname=\"{ALERT}\",job=\"without\",port=\"{port}\"}}"),
            );
        }
        eprintln!(
            "restart {}: rpc.statd on 127.0.0.1:{port}/udp{}",
            round + 1,
            if watch.is_watched(Transport::Udp, port) {
                " (watched)"
            } else {
                ""
            }
        );
        world.stop("rpc.statd");
    }
    assert!(
        !landed.is_empty(),
        "rpc.statd never landed on a watched port in {RESTARTS} restarts"
    );

    // Impostors. A python process renamed rpc.statd, running as statd, on a
    // random watched privileged port on loopback.
    let candidates: Vec<u16> = (512..1024)
        .filter(|&p| watch.is_watched(Transport::Udp, p) && !landed.contains(&p))
        .collect();
    let fake_port = candidates[(std::process::id() as usize) % candidates.len()];
    let python = format!(
        "import ctypes, os, socket, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', {fake_port}))\n\
         os.setgid(65534); os.setuid({uid})\n\
         ctypes.CDLL(None).prctl(15, b'rpc.statd', 0, 0, 0)\n\
         time.sleep(3600)\n",
        uid = uid_of("statd")
    );
    world.start("fake-statd", &["/usr/bin/python3", "-c", &python]);

    // A copy of the real statd binary, run from a temp dir, until its
    // loopback socket lands on a watched port.
    let copy_dir = dir.join("bin");
    fs::create_dir_all(&copy_dir).unwrap();
    let copy = copy_dir.join("rpc.statd");
    fs::copy(STATD, &copy).unwrap();
    let mut copy_port = None;
    for _ in 0..RESTARTS {
        let state = state_dir(&dir, "statd-copy");
        let pid = world.start(
            "copied-statd",
            &[copy.to_str().unwrap(), "-F", "-P", state.to_str().unwrap()],
        );
        let deadline = Instant::now() + SETTLE;
        let port = loop {
            world.check_alive();
            if let Some(&port) = world.loopback_udp_ports(pid).first() {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "the statd copy bound no loopback port"
            );
            thread::sleep(Duration::from_millis(50));
        };
        if watch.is_watched(Transport::Udp, port) && port != fake_port {
            copy_port = Some(port);
            break;
        }
        world.stop("copied-statd");
    }
    let copy_port = copy_port.expect("the statd copy never landed on a watched port");

    // A listener on 276 held by no process: sent over a socketpair in an
    // SCM_RIGHTS message that is never read, every copy closed.
    let parked = "import socket, time\n\
         l = socket.socket(); l.bind(('127.0.0.1', 276)); l.listen()\n\
         a, b = socket.socketpair()\n\
         socket.send_fds(a, [b'x'], [l.fileno()]); l.close()\n\
         time.sleep(3600)\n";
    world.start("parked-276", &["/usr/bin/python3", "-c", parked]);

    for (what, port, protocol) in [
        ("the renamed python", fake_port, "udp"),
        ("the statd copy", copy_port, "udp"),
        ("the parked listener on 276", 276, "tcp"),
    ] {
        let alerts = prometheus.wait_for(
            what,
            &format!("ALERTS{{alertname=\"{ALERT}\",job=\"with\",port=\"{port}\",protocol=\"{protocol}\"}}"),
        );
        eprintln!("alert with the policy for {what}: {}", alerts[0]["metric"]);
    }
    let parked = prometheus.wait_for(
        "the parked listener's series",
        "unassigned_port_listeners{job=\"with\",port=\"276\",protocol=\"tcp\"}",
    );
    assert_eq!(label(&parked[0], "holder"), "none", "{}", parked[0]);
    assert_eq!(label(&parked[0], "expected"), "false", "{}", parked[0]);

    // Everything the policy's job ever alerted on: the three impostors only.
    let history = prometheus
        .vector(&format!(
            "count by (port) (count_over_time(ALERTS{{alertname=\"{ALERT}\",job=\"with\"}}[1h]))"
        ))
        .unwrap();
    let alerted: BTreeSet<u16> = history
        .iter()
        .filter_map(|s| label(s, "port").parse().ok())
        .collect();
    let impostors: BTreeSet<u16> = [fake_port, copy_port, 276].into_iter().collect();
    assert_eq!(
        alerted, impostors,
        "with the shipped policy only the impostors alert (statd landed on {landed:?})"
    );
    let unpolicied = prometheus
        .vector(&format!(
            "count by (port) (count_over_time(ALERTS{{alertname=\"{ALERT}\",job=\"without\"}}[1h]))"
        ))
        .unwrap();
    let fired: BTreeSet<u16> = unpolicied
        .iter()
        .filter_map(|s| label(s, "port").parse().ok())
        .collect();
    for port in &landed {
        assert!(
            fired.contains(port),
            "without the policy {port} did not fire: {fired:?}"
        );
    }
    world.check_alive();
    eprintln!(
        "rpc.statd landed on watched ports {}/{RESTARTS} times ({landed:?}); zero alerts for them with the policy; test took {:.0?}",
        landed.len(),
        started.elapsed()
    );
    let _ = BINARY;
}
