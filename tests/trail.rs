//! The event trail, read from the real exporter's stderr: one line per
//! listen and close with the whole story of the process, and a storm that
//! stays within `--log.events-per-second` while the lines and the
//! suppression notices still add up to every event counted.
//!
//! Needs root (perf tracepoint; writing `/proc/self/loginuid` in a child)
//! and the tracepoint capture. Skips with the reason outside CI; fails
//! under CI (CI set, not empty, not 0/false).

mod common;

use common::log::{Line, Log, parse_json, parse_logfmt};
use common::{Exporter, samples};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// The login uid the child is given: `nobody`, so it has a name too.
const LOGIN_UID: u32 = 65534;
/// The script perl runs: listen on ADDRESS:PORT for 5 ms, exit 3 when the
/// port is taken (other tests share 276). No `"` or `\` in it, so its
/// rendering in `cmdline` is the text in double quotes.
const LISTEN_5MS: &str = "use Socket; socket(S, PF_INET, SOCK_STREAM, 0) or exit 2; \
     setsockopt(S, SOL_SOCKET, SO_REUSEADDR, 1); \
     bind(S, pack_sockaddr_in($ARGV[1], inet_aton($ARGV[0]))) or exit 3; \
     listen(S, 8) or exit 2; select(undef, undef, undef, 0.005); exit 0";
const PERL: &str = "/usr/bin/perl";
/// The storm would keep the other test's capture busy: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Attempts at a fully described 5 ms listener: on this shared machine a
/// burst from elsewhere may delay the description past the child's exit.
const ATTEMPTS: usize = 3;

/// True when the test cannot run: it then skips with one line, or fails
/// under CI (see `common::capability`).
fn cannot_run() -> bool {
    use common::capability::{Capability, need, require};
    let perl = if std::path::Path::new(PERL).exists() {
        Ok(())
    } else {
        Err(format!("no {PERL} (Debian's perl-base)"))
    };
    !(require(Capability::Root) && need("perl", perl))
}

/// Waits until the exporter's tracepoint capture runs; `false` (skipped)
/// when it cannot.
fn capture_runs(exporter: &Exporter) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = exporter.scrape();
        let active = samples(&text, "unassigned_port_event_capture_active")
            .into_iter()
            .any(|(labels, value)| labels["source"] == "tracepoint" && value == 1.0);
        if active {
            return true;
        }
        if Instant::now() > deadline {
            use common::capability::{Capability, gate};
            return gate(
                Capability::ListenTracepoint,
                exporter.capture_active("tracepoint"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The exporter with `args`, its log, once its tracepoint capture runs;
/// `None` when the test skips (see [`cannot_run`], [`capture_runs`]).
fn exporter_with_capture(args: &[&str]) -> Option<(Exporter, Log)> {
    if cannot_run() {
        return None;
    }
    let exporter = Exporter::start(args);
    let log = exporter.log_reader();
    capture_runs(&exporter).then_some((exporter, log))
}

/// Runs perl listening on 127.0.0.1:276 for 5 ms with login uid
/// [`LOGIN_UID`]; retries while the port is taken. Returns its pid.
fn listen_5ms_as_login_uid() -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut command = Command::new(PERL);
        command.args(["-e", LISTEN_5MS, "127.0.0.1", "276"]);
        // SAFETY: between fork and exec only async-signal-safe calls (open,
        // write, close) on stack data.
        unsafe {
            command.pre_exec(|| {
                let path = c"/proc/self/loginuid";
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let text = b"65534";
                let written = libc::write(fd, text.as_ptr().cast(), text.len());
                libc::close(fd);
                if written != text.len() as isize {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("start perl");
        let pid = child.id();
        let status = child.wait().unwrap();
        match status.code() {
            Some(0) => return pid,
            Some(3) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => panic!("perl listening on 276 failed: {status}"),
        }
    }
}

fn sha256sum(path: &str) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success(), "sha256sum {path}");
    let text = String::from_utf8(output.stdout).unwrap();
    text.split_whitespace().next().unwrap().to_string()
}

fn events<'a>(lines: &'a [Line], event: &str, pid: u32) -> Vec<&'a Line> {
    let pid = pid.to_string();
    lines
        .iter()
        .filter(|line| line.get("event").map(String::as_str) == Some(event))
        .filter(|line| line.get("pid") == Some(&pid))
        .collect()
}

#[test]
fn a_5ms_listener_gives_one_opened_line_with_its_whole_story_and_its_close() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A high budget: other tests on this machine may open watched ports too.
    let args = ["--log.format=json", "--log.events-per-second=100000"];
    let Some((_exporter, log)) = exporter_with_capture(&args) else {
        return;
    };
    let (pid, lines) = (1..=ATTEMPTS)
        .find_map(|attempt| {
            let pid = listen_5ms_as_login_uid();
            let lines = log.wait_for(
                "the listener's opened and closed lines",
                Duration::from_secs(20),
                |lines| {
                    !events(lines, "listener_opened", pid).is_empty()
                        && !events(lines, "listener_closed", pid).is_empty()
                },
            );
            let described = events(&lines, "listener_opened", pid)[0]["described"].clone();
            if described == "live" || attempt == ATTEMPTS {
                return Some((pid, lines));
            }
            println!("attempt {attempt}: described={described} (the capture was behind); again");
            None
        })
        .unwrap();
    let opened = events(&lines, "listener_opened", pid);
    assert_eq!(opened.len(), 1, "{opened:#?}");
    let line = opened[0];
    let exe = std::fs::canonicalize(PERL).unwrap();
    let exe = exe.to_str().unwrap();
    let expected: BTreeMap<&str, String> = [
        ("level", "info".to_string()),
        ("port", "276".to_string()),
        ("protocol", "tcp".to_string()),
        ("address", "127.0.0.1".to_string()),
        ("netns", "host".to_string()),
        ("ppid", std::process::id().to_string()),
        ("process", "perl".to_string()),
        ("exe", exe.to_string()),
        ("exe_deleted", "false".to_string()),
        ("exe_sha256", sha256sum(exe)),
        (
            "cmdline",
            format!("{PERL} -e \"{LISTEN_5MS}\" 127.0.0.1 276"),
        ),
        ("uid", "0".to_string()),
        ("user", "root".to_string()),
        ("login_uid", LOGIN_UID.to_string()),
        ("login_user", "nobody".to_string()),
        ("exposure", "loopback".to_string()),
        ("expected", "false".to_string()),
        ("described", "live".to_string()),
    ]
    .into_iter()
    .collect();
    for (key, value) in &expected {
        assert_eq!(line.get(*key), Some(value), "key {key} in {line:#?}");
    }
    // Every fixed key is there, flat (no "fields", no "message").
    for key in [
        "time",
        "msg",
        "event",
        "container_id",
        "pod_uid",
        "described",
    ] {
        assert!(line.contains_key(key), "{key} missing: {line:#?}");
    }
    assert!(!line.contains_key("fields") && !line.contains_key("message"));
    let closed = events(&lines, "listener_closed", pid);
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!(closed[0]["port"], "276");
    assert_eq!(closed[0]["address"], "127.0.0.1");
    assert!(
        ["live", "late", "gone"].contains(&closed[0]["described"].as_str()),
        "{:#?}",
        closed[0]
    );
}

/// A free TCP port in 20000-32767 (below Linux's ephemeral ports).
fn quiet_port() -> u16 {
    let start = 20_000 + (std::process::id() % 12_000) as u16;
    (start..32_768)
        .chain(20_000..start)
        .find(|&port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok())
        .expect("a free port below the ephemeral range")
}

/// Sum of every series of `name`.
fn total(text: &str, name: &str) -> f64 {
    samples(text, name).iter().map(|(_, value)| value).sum()
}

/// A watched port's counters as the exporter counts them.
fn port_total(text: &str, name: &str, port: u16) -> f64 {
    let port = port.to_string();
    samples(text, name)
        .iter()
        .filter(|(labels, _)| labels.get("port") == Some(&port))
        .map(|(_, value)| value)
        .sum()
}

#[test]
fn a_storm_of_10000_listens_stays_within_the_budget_and_adds_up() {
    const LISTENS: u32 = 10_000;
    const PER_SECOND: u64 = 50;
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A port of its own, watched on top of the usual set, below the
    // ephemeral range so that no connection on this machine takes it.
    let port = quiet_port();
    let watched = format!("--watch.ports={port}/tcp");
    let Some((exporter, log)) = exporter_with_capture(&["--log.events-per-second=50", &watched])
    else {
        return;
    };
    let started = Instant::now();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut listened: u32 = 0;
    for _ in 0..LISTENS {
        if TcpListener::bind(address).is_ok() {
            listened += 1;
        }
    }
    // A bind fails while the previous listener is still held somewhere
    // (seen here: about 1 in 10 under load); the events counted are
    // what the accounting below checks, whatever their number.
    assert!(
        listened >= LISTENS / 2,
        "the storm's port was taken: {listened} listens"
    );

    // Every event the exporter counted is a line or in a notice's count:
    // once it has counted every event (the marks included), wait for the
    // log to catch up with the counters.
    common::events_caught_up(&exporter);
    let deadline = Instant::now() + Duration::from_secs(120);
    let (counted, lines, suppressed, text) = loop {
        let text = exporter.scrape();
        let counted = total(&text, "unassigned_port_listener_opened_total")
            + total(&text, "unassigned_port_listener_closed_total");
        let parsed = log.parsed();
        let lines = parsed
            .iter()
            .filter(|line| {
                matches!(
                    line.get("event").map(String::as_str),
                    Some("listener_opened" | "listener_closed")
                )
            })
            .count() as f64;
        let suppressed: f64 = parsed
            .iter()
            .filter(|line| line.get("event").map(String::as_str) == Some("lines_suppressed"))
            .map(|line| line["suppressed"].parse::<f64>().unwrap())
            .sum();
        if lines + suppressed == counted && counted > 0.0 {
            break (counted, lines, suppressed, text);
        }
        assert!(
            Instant::now() < deadline,
            "lines {lines} + suppressed {suppressed} never equalled the {counted} events counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed().as_secs_f64();
    let opened = port_total(&text, "unassigned_port_listener_opened_total", port);
    let closed = port_total(&text, "unassigned_port_listener_closed_total", port);
    let lost = total(&text, "unassigned_port_event_capture_lost_total");
    println!(
        "storm: {listened} listens in {elapsed:.1} s; counted {opened} opened and {closed} closed on port {port} \
         ({counted} events in all, {lost} samples lost); {lines} lines + {suppressed} suppressed"
    );
    // The storm's own events were counted (all of them when none was lost).
    assert!(opened > 0.0 && closed > 0.0);
    if lost == 0.0 {
        assert_eq!(opened, f64::from(listened));
        assert_eq!(closed, f64::from(listened));
    }
    // Bounded: one budget per second since the exporter started, at most.
    let parsed = log.parsed();
    let since_start = parsed.len(); // every line is from this exporter
    assert!(since_start > 0);
    let windows = (elapsed + 25.0).ceil() as u64; // start-up and waits included
    assert!(
        (lines as u64) <= PER_SECOND * windows,
        "{lines} lines over at most {windows} windows of {PER_SECOND}"
    );
    assert!(
        suppressed > 0.0,
        "a storm of {LISTENS} listens fits no budget of {PER_SECOND}/s"
    );
    // One notice a second at most, each with a positive count.
    let notices: Vec<&Line> = parsed
        .iter()
        .filter(|line| line.get("event").map(String::as_str) == Some("lines_suppressed"))
        .collect();
    assert!(notices.len() as u64 <= windows, "{} notices", notices.len());
    assert!(notices.iter().all(|n| n["suppressed"] != "0"));
}

/// The script perl runs as root: listen on 127.0.0.1:PORT and say `root`;
/// at a line on its input, close, become uid [`LATER_UID`] (same process,
/// same name), listen again and say `user`; exit at the next line.
const LISTEN_THEN_SETUID: &str = "use Socket; use POSIX; $| = 1; my $a = inet_aton(q(127.0.0.1)); \
     socket(S, PF_INET, SOCK_STREAM, 0) or exit 2; setsockopt(S, SOL_SOCKET, SO_REUSEADDR, 1); \
     bind(S, pack_sockaddr_in($ARGV[0], $a)) or exit 3; listen(S, 8) or exit 2; \
     print qq(root\n); <STDIN>; close(S); POSIX::setuid($ARGV[1]) or exit 4; \
     socket(T, PF_INET, SOCK_STREAM, 0) or exit 2; setsockopt(T, SOL_SOCKET, SO_REUSEADDR, 1); \
     bind(T, pack_sockaddr_in($ARGV[0], $a)) or exit 3; listen(T, 8) or exit 2; \
     print qq(user\n); <STDIN>; exit 0";
/// The uid the child takes between its two listeners.
const LATER_UID: u32 = 1001;

#[test]
fn a_process_that_changes_user_between_two_listens_shows_each_user() {
    use std::io::{BufRead, BufReader, Write};
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let port = quiet_port();
    let watched = format!("--watch.ports={port}/tcp");
    let args = [
        "--log.format=json",
        "--log.events-per-second=100000",
        &watched,
    ];
    let Some((_exporter, log)) = exporter_with_capture(&args) else {
        return;
    };
    let mut child = Command::new(PERL)
        .args([
            "-e",
            LISTEN_THEN_SETUID,
            &port.to_string(),
            &LATER_UID.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start perl");
    let pid = child.id();
    let mut said = BufReader::new(child.stdout.take().unwrap());
    let mut told = child.stdin.take().unwrap();
    let mut line = String::new();
    said.read_line(&mut line).unwrap();
    assert_eq!(line, "root\n", "perl could not listen on {port}");
    let opened_lines = |lines: &[Line]| {
        let port = port.to_string();
        events(lines, "listener_opened", pid)
            .into_iter()
            .filter(|line| line.get("port") == Some(&port))
            .map(|line| line.get("uid").cloned().unwrap_or_default())
            .collect::<Vec<String>>()
    };
    // The first listener is described (as root) before the process
    // changes user; the second listen comes a moment later, well within
    // the 100 ms an owner used to be reused for under the same name.
    log.wait_for(
        "the root listener's line",
        Duration::from_secs(20),
        |lines| !opened_lines(lines).is_empty(),
    );
    told.write_all(b"\n").unwrap();
    line.clear();
    said.read_line(&mut line).unwrap();
    assert_eq!(
        line, "user\n",
        "perl could not listen again as uid {LATER_UID}"
    );
    let lines = log.wait_for(
        "the second listener's line",
        Duration::from_secs(20),
        |lines| opened_lines(lines).len() >= 2,
    );
    told.write_all(b"\n").unwrap();
    let _ = child.wait();
    // Ground truth: the process listened as root, then as LATER_UID.
    assert_eq!(opened_lines(&lines), ["0", &LATER_UID.to_string()]);
}

#[test]
fn the_log_parsers_read_both_formats_alike() {
    let logfmt = parse_logfmt(r#"ts=x level=info msg="a \"b\"" pid=4 cmdline="" e=f"#);
    assert_eq!(logfmt["msg"], "a \"b\"");
    assert_eq!(logfmt["pid"], "4");
    assert_eq!(logfmt["cmdline"], "");
    assert_eq!(logfmt["e"], "f");
    let json = parse_json(r#"{"time":"x","level":"info","msg":"m","port":276,"ok":true}"#);
    assert_eq!(json["port"], "276");
    assert_eq!(json["ok"], "true");
}
