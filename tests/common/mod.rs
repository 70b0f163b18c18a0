//! Shared by the integration tests: start the real exporter binary on a
//! loopback port it binds itself, scrape it over real HTTP, read its series
//! and its log, and gate tests on what the machine offers ([`capability`]).
//!
//! Every exporter starts with `--web.listen-address=127.0.0.1:0`: the
//! kernel picks a free port when the exporter binds, and the test reads it
//! back from the exporter's `msg="Listening on" address=...` log line, so no
//! test can reach another test's exporter (picking a free port first and
//! then starting the binary would race).

#![allow(dead_code)] // each test file uses a different part of this

pub mod capability;
pub mod log;
pub mod pki;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_unassigned_port_exporter");

/// How long an exporter may take to log its address.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running exporter, killed when dropped.
pub struct Exporter {
    pub child: Child,
    /// The port it bound (read from its log).
    pub port: u16,
    /// Every line it has written to stderr so far (also echoed to the
    /// test's own stderr, which libtest shows when a test fails).
    log: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    pub fn start(extra_args: &[&str]) -> Exporter {
        Exporter::start_under(&[], extra_args)
    }

    /// Starts the binary through a wrapper command (e.g. `prlimit
    /// --nofile=1024:1024`); an empty `wrapper` runs it directly.
    pub fn start_under(wrapper: &[&str], extra_args: &[&str]) -> Exporter {
        Exporter::start_program(wrapper, BINARY, extra_args)
    }

    /// [`Exporter::start_under`] for a copy of the binary at `program`.
    pub fn start_program(wrapper: &[&str], program: &str, extra_args: &[&str]) -> Exporter {
        let exporter = Exporter::launch(command_under(wrapper, program), extra_args);
        exporter.wait_ready();
        exporter
    }

    /// Starts the binary with `--web.config.file=CONFIG`; it is serving once
    /// it has logged its address (with TLS or basic auth a plain `/healthz`
    /// may not answer 200).
    pub fn start_with_web_config(config: &std::path::Path) -> Exporter {
        let flag = format!("--web.config.file={}", config.display());
        Exporter::launch(Command::new(BINARY), &[flag.as_str()])
    }

    /// Starts `command` (the exporter binary, perhaps behind a launcher)
    /// with `--web.listen-address=127.0.0.1:0` and `extra_args`, and waits
    /// until it logs the address it bound. Its log must stay at `info` or
    /// below for that line to appear.
    pub fn launch(mut command: Command, extra_args: &[&str]) -> Exporter {
        assert!(
            !extra_args
                .iter()
                .any(|arg| arg.starts_with("--log.level=warn")
                    || arg.starts_with("--log.level=error")),
            "tests/common reads the bound address from the info log: keep --log.level at info"
        );
        let mut child = command
            .arg("--web.listen-address=127.0.0.1:0")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the exporter binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("exporter: {line}");
                if let Some(port) = listening_port(&line) {
                    let _ = found.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        match address.recv_timeout(START_DEADLINE) {
            Ok(port) => Exporter { child, port, log },
            Err(why) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().unwrap().join("\n");
                panic!(
                    "the exporter logged no listening address ({why}; exit status {status:?}); its log:\n{log}"
                );
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if ureq::get(&self.url("/healthz")).call().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the exporter did not answer /healthz within 20 s");
    }

    pub fn scrape(&self) -> String {
        ureq::get(&self.url("/metrics"))
            .call()
            .expect("scrape /metrics")
            .into_string()
            .expect("metrics are text")
    }

    /// `Ok` when the exporter reports
    /// `unassigned_port_event_capture_active{source="SOURCE"} 1`
    /// (`tracepoint` or `destroy`); otherwise `Err` with what it reported
    /// and the reason it logged, for [`capability::gate`].
    pub fn capture_active(&self, source: &str) -> Result<(), String> {
        let text = self.scrape();
        let active = samples(&text, "unassigned_port_event_capture_active")
            .into_iter()
            .any(|(labels, value)| {
                labels.get("source").map(String::as_str) == Some(source) && value == 1.0
            });
        if active {
            return Ok(());
        }
        let logged = self.log().into_iter().find(|line| {
            line.contains("capture unavailable") && line.contains(&format!("source={source}"))
        });
        Err(format!(
            "the exporter reports unassigned_port_event_capture_active{{source=\"{source}\"}} 0{}",
            logged.map_or_else(String::new, |line| format!("; it logged: {line}"))
        ))
    }

    /// The exporter's log so far, one entry a line.
    /// Its log as [`log::Log`], which parses logfmt and JSON lines.
    pub fn log_reader(&self) -> log::Log {
        log::Log::new(Arc::clone(&self.log))
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `text` and returns it; panics with
    /// the log after 10 s.
    pub fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log().into_iter().find(|line| line.contains(text)) {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "the exporter did not log {text:?} within 10 s; its log:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Scrapes until the reload metrics for `file` (`web` or `allow`) say
    /// the last reload succeeded at or after `since` (a Unix time read
    /// before the edit), and returns that scrape. After a good edit, this
    /// is what a test waits on instead of sleeping past a poll.
    pub fn wait_for_good_reload(&self, file: &str, since: f64) -> String {
        scrape_until(self, &format!("a good reload of the {file} file"), |text| {
            reload_metric(text, "successful", file) == Some(1.0)
                && reload_metric(text, "success_timestamp_seconds", file)
                    .is_some_and(|at| at >= since)
        })
    }

    /// Scrapes until the reload metrics for `file` say the last reload
    /// failed, and returns that scrape.
    pub fn wait_for_failed_reload(&self, file: &str) -> String {
        scrape_until(
            self,
            &format!("a failed reload of the {file} file"),
            |text| reload_metric(text, "successful", file) == Some(0.0),
        )
    }
}

/// `unassigned_port_config_last_reload_NAME{file="FILE"}` in `text`.
pub fn reload_metric(text: &str, name: &str, file: &str) -> Option<f64> {
    samples(text, &format!("unassigned_port_config_last_reload_{name}"))
        .into_iter()
        .find(|(labels, _)| labels.get("file").map(String::as_str) == Some(file))
        .map(|(_, value)| value)
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `program` run through `wrapper` (a launcher and its arguments), or alone.
pub fn command_under(wrapper: &[&str], program: &str) -> Command {
    match wrapper.split_first() {
        Some((launcher, args)) => {
            let mut command = Command::new(launcher);
            command.args(args).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// The port of a `msg="Listening on" address=HOST:PORT` line (logfmt).
fn listening_port(line: &str) -> Option<u16> {
    if line.starts_with('{') {
        let parsed = log::parse_json(line);
        if parsed.get("msg").map(String::as_str) != Some("Listening on") {
            return None;
        }
        return parsed.get("address")?.rsplit_once(':')?.1.parse().ok();
    }
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    let address = line
        .split(' ')
        .find_map(|pair| pair.strip_prefix("address="))?;
    address.rsplit_once(':')?.1.parse().ok()
}

/// Now as a Unix time in seconds (what the exporter's timestamps are).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A port that was free a moment ago on 127.0.0.1: for listeners a test
/// opens itself, never for the exporter (see the module doc).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Labels and value of one exposition line.
pub type Series = (BTreeMap<String, String>, f64);

/// Every sample of the metric `name` in `text`.
pub fn samples(text: &str, name: &str) -> Vec<Series> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => {
                    let (labels, value) = rest.rsplit_once('}')?;
                    (parse_labels(labels), value)
                }
                None if rest.starts_with(' ') => (BTreeMap::new(), rest),
                None => return None,
            };
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// Sum of `metric` over series whose labels include all of `wanted`.
pub fn total(text: &str, metric: &str, wanted: &[(&str, &str)]) -> f64 {
    samples(text, metric)
        .into_iter()
        .filter(|(labels, _)| {
            wanted
                .iter()
                .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, value)| value)
        .sum()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// This process's name as the kernel reports it (what the exporter labels).
pub fn own_process_name() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_string()
}

pub fn own_user_name() -> String {
    let output = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Scrapes until `done` holds for the text, or panics after 10 s.
pub fn scrape_until(exporter: &Exporter, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = exporter.scrape();
        if done(&text) {
            return text;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last scrape:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command, returning its stdout when it succeeds.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("cannot run {program}: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The `exposure` a wildcard bind in the exporter's own namespace should
/// get: the widest class among the addresses `ip -o addr show up` lists,
/// of IPv4 (`v4`) and/or IPv6 (`v6`). Read with `ip`, independently of the
/// exporter's own rtnetlink reader.
pub fn host_wildcard_exposure(v4: bool, v6: bool) -> String {
    use unassigned_port_exporter::policy::exposure::{Exposure, classify};
    let text = run("ip", &["-o", "addr", "show", "up"]).expect("ip -o addr show up");
    let mut widest = Exposure::Loopback;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            let wanted = (word == "inet" && v4) || (word == "inet6" && v6);
            if wanted
                && let Some(address) = words.next()
                && let Ok(address) = address.split('/').next().unwrap_or("").parse()
            {
                widest = widest.max(classify(address));
            }
        }
    }
    widest.as_str().to_string()
}

/// Runs between fork and exec (so: raw syscalls only, no allocation): opens
/// a TCP listener or a UDP socket on `port`, without close-on-exec so the
/// program about to run holds it. SO_REUSEPORT lets many children share a port.
pub fn listen_before_exec(port: u16, tcp: bool) -> std::io::Result<()> {
    // SAFETY: plain syscalls on a fresh fd and stack values; nothing here
    // allocates or takes a lock, as the post-fork child requires.
    unsafe {
        let kind = if tcp {
            libc::SOCK_STREAM
        } else {
            libc::SOCK_DGRAM
        };
        let fd = libc::socket(libc::AF_INET, kind, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::UNSPECIFIED).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        if tcp && libc::listen(fd, 8) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The watched port [`events_caught_up`] marks with: no test opens it.
pub const MARKER_PORT: u16 = 279;

/// Waits until the exporter has counted every kernel event that happened
/// before this call, instead of sleeping for "long enough": it listens and
/// closes on 127.0.0.1:[`MARKER_PORT`] (TCP) and binds and closes a UDP
/// socket there, then waits for the TCP open and the UDP close to be
/// counted. The tracepoint's events are described in kernel-time order
/// across CPUs, and one namespace's UDP closes arrive in order, so once the
/// marks are counted so is everything before them (in this namespace for
/// UDP). Panics after 20 s.
pub fn events_caught_up(exporter: &Exporter) {
    const OPENED: &str = "unassigned_port_listener_opened_total";
    const CLOSED: &str = "unassigned_port_listener_closed_total";
    let port = MARKER_PORT.to_string();
    let tcp = [("port", port.as_str()), ("protocol", "tcp")];
    let udp = [("port", port.as_str()), ("protocol", "udp")];
    let text = exporter.scrape();
    let (tcp_before, udp_before) = (total(&text, OPENED, &tcp), total(&text, CLOSED, &udp));
    let address = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, MARKER_PORT));
    drop(std::net::TcpListener::bind(address).expect("mark on the marker port (tcp)"));
    drop(std::net::UdpSocket::bind(address).expect("mark on the marker port (udp)"));
    scrape_until(exporter, "the exporter to count the marks", |text| {
        total(text, OPENED, &tcp) > tcp_before && total(text, CLOSED, &udp) > udp_before
    });
}
