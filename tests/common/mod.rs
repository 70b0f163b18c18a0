//! Shared by the integration tests: start the real exporter binary on a free
//! loopback port, scrape it over real HTTP, and read its series.

#![allow(dead_code)] // each test file uses a different part of this

pub mod log;
pub mod pki;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_unassigned_port_exporter");

/// A running exporter, killed when dropped.
pub struct Exporter {
    pub child: Child,
    pub port: u16,
}

impl Exporter {
    pub fn start(extra_args: &[&str]) -> Exporter {
        Exporter::start_under(&[], extra_args)
    }

    /// Starts the binary through a wrapper command (e.g. `prlimit
    /// --nofile=1024:1024`); an empty `wrapper` runs it directly.
    pub fn start_under(wrapper: &[&str], extra_args: &[&str]) -> Exporter {
        let exporter = Exporter::spawn(wrapper, extra_args);
        exporter.wait_ready();
        exporter
    }

    /// Starts the binary with `--web.config.file=CONFIG` and waits until its
    /// port accepts connections (with TLS or basic auth a plain `/healthz`
    /// may not answer 200).
    pub fn start_with_web_config(config: &std::path::Path) -> Exporter {
        let flag = format!("--web.config.file={}", config.display());
        let exporter = Exporter::spawn(&[], &[flag.as_str()]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", exporter.port)).is_err() {
            assert!(Instant::now() < deadline, "the exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    /// Starts the binary with its stderr read into a [`log::Log`].
    pub fn start_logged(extra_args: &[&str]) -> (Exporter, log::Log) {
        let mut exporter = Exporter::spawn_with(&[], extra_args, Stdio::piped());
        let stderr = exporter.child.stderr.take().expect("piped stderr");
        let log = log::Log::read(stderr);
        exporter.wait_ready();
        (exporter, log)
    }

    fn spawn(wrapper: &[&str], extra_args: &[&str]) -> Exporter {
        Exporter::spawn_with(wrapper, extra_args, Stdio::inherit())
    }

    fn spawn_with(wrapper: &[&str], extra_args: &[&str], stderr: Stdio) -> Exporter {
        let port = free_port();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(BINARY);
                command
            }
            None => Command::new(BINARY),
        };
        let child = command
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start the exporter binary");
        Exporter { child, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
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
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
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
    unsafe { libc::geteuid() == 0 }
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

/// Whether the environment variable CI is set (non-empty, not 0/false).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// A missing capability: under CI the test fails naming it; elsewhere it
/// prints why it skips. Returns so the caller can `return`.
pub fn skip_or_fail(reason: &str) {
    assert!(!in_ci(), "CI is set but {reason}");
    eprintln!("skipped: {reason}");
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
