//! Issue 19, the collection half: a listener's owner labels are what the
//! kernel says, checked against what each test created and what `ss -e`
//! and /proc show.
//!
//! - a file *named* `z (deleted)` is present, not deleted, and an `exe=`
//!   rule for `z` does not cover it; once really deleted it is flagged;
//! - a process whose name and executable path hold bytes that are not
//!   UTF-8, a newline, quotes, braces and a backslash is reported with
//!   those bytes escaped (`\xNN`, `\\`), with its uid, exe and info series
//!   intact, an `exe=` rule in the same notation covers it, and the
//!   exposition passes `promtool check metrics`;
//! - an exporter without privileges labels each listener with the user
//!   `ss -e` shows (uid 1001 and root, TCP and UDP);
//! - UDP sockets churned by short-lived processes under 50 ms scrapes never
//!   show an empty pid.
//!
//! Root only (setpriv, ports of other users); skipped with the reason
//! outside CI, a failure under CI. Each test prints the seconds it took.
//! Ports are free high ports added with `--watch.ports`, so parallel runs
//! and other tests on 272-279 do not meet.

mod common;

use common::{Exporter, free_port, samples, scrape_until};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON: &str = "/usr/bin/python3.11";
/// errno of exec on a file still open for writing somewhere.
const ETXTBSY: i32 = 26;

/// Binds PROTO 127.0.0.1:PORT after naming itself (hex bytes, may be
/// empty), prints "ready", holds until stdin closes.
const HOLD: &str = r#"
import ctypes, socket, sys
proto, port, name = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
if name:
    ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name), 0, 0, 0)
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.bind(("127.0.0.1", port))
if proto == "tcp":
    s.listen()
print("ready", flush=True)
sys.stdin.read()
"#;

/// Whether the test may run: root and python3, else it skips with one
/// line or, under CI, fails (see `common::capability`).
fn runnable(_what: &str) -> bool {
    use common::capability::{Capability, need, require};
    let python = if Path::new(PYTHON).exists() {
        Ok(())
    } else {
        Err(format!("no {PYTHON}"))
    };
    require(Capability::Root) && need("python3", python)
}

/// A holder process, killed when dropped.
struct Holder {
    child: Child,
    _stdin: ChildStdin,
}

impl Holder {
    /// Runs `exe` (a Python) as `uid` (through setpriv when not 0).
    ///
    /// `exe` may be a copy this test process has just written: while
    /// another test thread forks, its child briefly holds the copy's write
    /// descriptor, and exec fails with ETXTBSY ("Text file busy"). That is
    /// retried until a deadline; any other failure is not.
    fn start(exe: &OsStr, uid: u32, proto: &str, port: u16, name: &[u8]) -> Holder {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Holder::try_start(exe, uid, proto, port, name) {
                Ok(holder) => return holder,
                Err(busy) if Instant::now() < deadline => {
                    eprintln!("retrying the holder: {busy}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(busy) => panic!("cannot start {exe:?}: {busy}"),
            }
        }
    }

    /// One attempt; `Err` only for a busy executable.
    fn try_start(
        exe: &OsStr,
        uid: u32,
        proto: &str,
        port: u16,
        name: &[u8],
    ) -> Result<Holder, String> {
        let hex: String = name.iter().map(|b| format!("{b:02x}")).collect();
        let mut command = if uid == 0 {
            Command::new(exe)
        } else {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(exe);
            command
        };
        let spawned = command
            .args(["-c", HOLD, proto, &port.to_string(), &hex])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.raw_os_error() == Some(ETXTBSY) => return Err(err.to_string()),
            Err(err) => panic!("cannot start {exe:?}: {err}"),
        };
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "ready" {
            // setpriv reports a busy executable on stderr and exits.
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            let _ = child.wait();
            if stderr.contains("Text file busy") {
                return Err(stderr.trim().to_string());
            }
            panic!("the holder did not bind {proto}/{port}: {stderr}");
        }
        Ok(Holder {
            child,
            _stdin: stdin,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("upe-owners-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Copies Python under a name given as raw bytes.
    fn python_named(&self, name: &[u8]) -> PathBuf {
        let path = self.0.join(OsStr::from_bytes(name));
        std::fs::copy(PYTHON, &path).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The one series of `name` whose labels include all of `wanted`.
fn series_with(text: &str, name: &str, wanted: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
    samples(text, name)
        .into_iter()
        .map(|(labels, _)| labels)
        .filter(|labels| {
            wanted
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The uid `ss -e` shows for the socket on `proto` 127.0.0.1:`port` (ss
/// omits `uid:` for root).
fn ss_uid(proto: &str, port: u16) -> u32 {
    let flag = if proto == "tcp" { "-ltn" } else { "-lun" };
    let output = Command::new("ss")
        .args(["-e", "-H", flag, &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 1, "ss shows one socket: {text}");
    text.split_whitespace()
        .find_map(|field| field.strip_prefix("uid:"))
        .map_or(0, |uid| uid.parse().unwrap())
}

/// The name the system gives a uid, or the number when it has none.
fn user_name(uid: u32) -> String {
    let output = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.split(':')
        .next()
        .filter(|name| !name.is_empty())
        .map_or_else(|| uid.to_string(), str::to_string)
}

/// `promtool check metrics` must accept the exposition.
fn promtool_accepts(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by tests/run-all.sh");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_file_named_deleted_is_present_and_no_look_alike_is_allowed() {
    if !runnable("the deleted-executable test") {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("deleted");
    let exe = scratch.python_named(b"z (deleted)");
    let port = free_port();
    let holder = Holder::start(exe.as_os_str(), 0, "tcp", port, b"");
    let look_alike = format!(
        "--watch.allow={port}/tcp:exe={}",
        scratch.0.join("z").display()
    );
    let exporter = Exporter::start(&[
        "--collector.netns=host",
        &format!("--watch.ports={port}"),
        &look_alike,
    ]);
    let pid = holder.pid().to_string();
    let text = scrape_until(&exporter, "the holder's info series", |text| {
        !series_with(
            text,
            "unassigned_port_listener_process_info",
            &[("pid", &pid)],
        )
        .is_empty()
    });
    let path = exe.to_str().unwrap();
    let info = series_with(
        text.as_str(),
        "unassigned_port_listener_process_info",
        &[("pid", &pid)],
    );
    assert_eq!(info[0]["exe"], path, "the name is the path");
    assert_eq!(info[0]["exe_deleted"], "false");
    let port_text = port.to_string();
    let listener = series_with(
        &text,
        "unassigned_port_listeners",
        &[("port", &port_text), ("pid", &pid)],
    );
    assert_eq!(listener.len(), 1, "{text}");
    assert_eq!(listener[0]["expected"], "false", "exe=.../z must not match");
    // Now really delete it: the kernel appends a second suffix.
    std::fs::remove_file(&exe).unwrap();
    let text = scrape_until(&exporter, "the deleted flag", |text| {
        series_with(
            text,
            "unassigned_port_listener_process_info",
            &[("pid", &pid)],
        )
        .first()
        .is_some_and(|info| info["exe_deleted"] == "true")
    });
    let info = series_with(
        &text,
        "unassigned_port_listener_process_info",
        &[("pid", &pid)],
    );
    assert_eq!(info[0]["exe"], path, "the deleted file's own name");
    drop(holder);
    eprintln!(
        "deleted-executable test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn names_the_kernel_accepts_are_escaped_and_cost_no_other_label() {
    if !runnable("the names test") {
        return;
    }
    let started = Instant::now();
    let scratch = Scratch::new("names");
    // Executable path and process name with a byte that is not UTF-8, a
    // newline, quotes, braces and a backslash.
    let exe_name: &[u8] = b"py\xff\n\"{x}\\";
    let exe = scratch.python_named(exe_name);
    let comm: &[u8] = b"bad\xff\n\"{}\\";
    let escaped_exe = format!("{}/py\\xff\\x0a\"{{x}}\\\\", scratch.0.display());
    let escaped_comm = "bad\\xff\\x0a\"{}\\\\";
    let port = free_port();
    let holder = Holder::start(exe.as_os_str(), 0, "tcp", port, comm);
    // /proc says what the test set.
    let proc_comm = std::fs::read(format!("/proc/{}/comm", holder.pid())).unwrap();
    assert_eq!(proc_comm, [comm, b"\n"].concat());
    let exporter = Exporter::start(&[
        "--collector.netns=host",
        &format!("--watch.ports={port}"),
        &format!("--watch.allow={port}/tcp:exe={escaped_exe}"),
    ]);
    let pid = holder.pid().to_string();
    let port_text = port.to_string();
    let text = scrape_until(&exporter, "the renamed holder", |text| {
        !series_with(
            text,
            "unassigned_port_listener_process_info",
            &[("pid", &pid)],
        )
        .is_empty()
    });
    let listener = series_with(
        &text,
        "unassigned_port_listeners",
        &[("port", &port_text), ("pid", &pid)],
    );
    assert_eq!(listener.len(), 1, "{text}");
    assert_eq!(listener[0]["process"], escaped_comm);
    assert_eq!(listener[0]["user"], user_name(ss_uid("tcp", port)));
    assert_eq!(listener[0]["user"], "root");
    assert_eq!(
        listener[0]["expected"], "true",
        "exe= in label notation matches"
    );
    let info = series_with(
        &text,
        "unassigned_port_listener_process_info",
        &[("pid", &pid)],
    );
    assert_eq!(info[0]["process"], escaped_comm);
    assert_eq!(info[0]["exe"], escaped_exe);
    assert_eq!(info[0]["exe_deleted"], "false");
    assert_eq!(info[0]["user"], "root");
    assert_eq!(info[0]["ppid"], std::process::id().to_string());
    // Every line is a comment or one whole series; promtool agrees.
    for line in text.lines() {
        assert!(
            line.starts_with('#')
                || line.starts_with("unassigned_port_")
                || line.starts_with("process_"),
            "a line that starts no series: {line:?}"
        );
    }
    promtool_accepts(&text);
    let process_errors = samples(&text, "unassigned_port_collection_errors_total")
        .into_iter()
        .find(|(labels, _)| labels.get("stage").map(String::as_str) == Some("process"))
        .map(|(_, value)| value);
    assert_eq!(process_errors, Some(0.0), "a name is no process error");
    drop(holder);
    eprintln!("names test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn an_unprivileged_exporter_labels_each_socket_with_its_ss_user() {
    // Holders run as other uids: root of the host's user namespace.
    let other_uids = common::capability::Capability::HostRoot;
    if !runnable("the unprivileged-user test") || !common::capability::require(other_uids) {
        return;
    }
    let started = Instant::now();
    const OTHER: u32 = 1001;
    let python = OsStr::new(PYTHON);
    let mut holders = Vec::new();
    let mut wanted = Vec::new();
    for (uid, proto) in [(OTHER, "tcp"), (OTHER, "udp"), (0, "tcp"), (0, "udp")] {
        let port = free_port();
        holders.push(Holder::start(python, uid, proto, port, b""));
        wanted.push((uid, proto, port));
    }
    let ports: Vec<String> = wanted.iter().map(|(_, _, port)| port.to_string()).collect();
    let exporter = Exporter::start_under(
        &[
            "setpriv",
            &format!("--reuid={OTHER}"),
            &format!("--regid={OTHER}"),
            "--clear-groups",
        ],
        &[
            "--collector.netns=host",
            &format!("--watch.ports={}", ports.join(",")),
        ],
    );
    let text = scrape_until(&exporter, "all four listeners", |text| {
        wanted.iter().all(|(_, proto, port)| {
            !series_with(
                text,
                "unassigned_port_listeners",
                &[("port", &port.to_string()), ("protocol", proto)],
            )
            .is_empty()
        })
    });
    for (uid, proto, port) in &wanted {
        let series = series_with(
            &text,
            "unassigned_port_listeners",
            &[("port", &port.to_string()), ("protocol", proto)],
        );
        assert_eq!(series.len(), 1, "{text}");
        let shown = ss_uid(proto, *port);
        assert_eq!(shown, *uid, "ss -e shows the socket's uid");
        assert_eq!(
            series[0]["user"],
            user_name(shown),
            "{proto}/{port} of uid {uid}: {series:?}"
        );
    }
    drop(holders);
    eprintln!(
        "unprivileged-user test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Forks a short-lived child per socket: it binds UDP on the port, holds it
/// a moment, and exits; runs until stdin closes.
const CHURN: &str = r#"
import os, select, socket, sys, time
port = int(sys.argv[1])
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0]:
    pid = os.fork()
    if pid == 0:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        time.sleep(0.003)
        os._exit(0)
    os.waitpid(pid, 0)
"#;

#[test]
fn udp_sockets_churned_under_fast_scrapes_never_lose_their_owner() {
    // Every owner found means every process's descriptors read.
    let every_fd = common::capability::Capability::HostRoot;
    if !runnable("the UDP churn test") || !common::capability::require(every_fd) {
        return;
    }
    let started = Instant::now();
    let port = free_port();
    let exporter = Exporter::start(&["--collector.netns=host", &format!("--watch.ports={port}")]);
    let mut churn = Command::new(PYTHON)
        .args(["-c", CHURN, &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(churn.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port_text = port.to_string();
    let mut seen = 0;
    let mut scrapes = 0;
    // 400 scrapes 50 ms apart, or 30 sockets caught, or 120 s on a busy
    // machine (a host with tens of thousands of UDP sockets makes each
    // collection take seconds).
    let deadline = Instant::now() + Duration::from_secs(120);
    while scrapes < 400 && seen < 30 && Instant::now() < deadline {
        let asked = Instant::now();
        let text = exporter.scrape();
        scrapes += 1;
        if std::env::var_os("UPE_DEBUG").is_some() {
            eprintln!("scrape {scrapes}: {:?}", asked.elapsed());
        }
        for series in series_with(&text, "unassigned_port_listeners", &[("port", &port_text)]) {
            seen += 1;
            assert!(
                !series["pid"].is_empty()
                    && !series["process"].is_empty()
                    && series["user"] == "root",
                "scrape {scrapes}: a churned socket without its owner: {series:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(churn.stdin.take());
    let _ = churn.wait();
    assert!(
        seen > 0,
        "no churned socket was ever seen in {scrapes} scrapes"
    );
    eprintln!(
        "UDP churn test: {scrapes} scrapes, {seen} sockets seen, all with owners, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
