//! Faults in what the exporter reads do not break it or make it lie:
//!
//! - hundreds of short-lived processes holding listeners on watched ports
//!   (their pids vanish between the socket dump and the /proc read) never
//!   make a scrape fail, never crash the exporter, and leave no stale series;
//! - an exporter running as an unprivileged user still reports every
//!   listener: root's with empty owner labels and a counted `owners` fault,
//!   its own user's with the right pid and user.
//!
//! As root the listeners use the real unassigned ports (272-279, 276);
//! without root the first test uses free high ports added with
//! `--watch.ports`. The second must create a user: without that capability
//! it skips with one line, or fails in CI (see `common::capability`).

mod common;

use common::capability::{Capability, require};
use common::{Exporter, is_root, listen_before_exec, samples};
use std::collections::BTreeMap;
use std::io;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests that bind fixed ports take turns.
static FIXED_PORTS: Mutex<()> = Mutex::new(());

/// How long the scraper scrapes while listeners come and go.
const CHURN_TIME: Duration = Duration::from_secs(10);
/// At most this many short-lived listener processes in all ...
const CHURN_MAX_CHILDREN: usize = 1000;
/// ... at most this many at once, started at most one per this interval.
const CHURN_ALIVE: usize = 24;
const CHURN_PACE: Duration = Duration::from_millis(8);
/// Fresh unprivileged exporters whose first scrape is checked.
const EXPORTER_ROUNDS: usize = 5;

/// Starts `binary` through `launcher` (e.g. `setpriv ...`) when given, and
/// waits until it answers; its log is kept for [`assert_no_panic`].
fn start_exporter(launcher: &[&str], binary: &Path, args: &[String]) -> Exporter {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::start_program(launcher, &binary.display().to_string(), &args)
}

/// The `number`th short-lived listener: alternately TCP and UDP, spread over
/// the ports, living 0-80 ms; every third one is a shell whose two `sleep`
/// children share its socket and exit at different times.
fn churn_child(number: usize, ports: &[u16]) -> Command {
    let port = ports[number % ports.len()];
    let tcp = (number / ports.len()).is_multiple_of(2);
    let lifetime = ["0", "0.01", "0.03", "0.08"][number % 4];
    let mut command = if number.is_multiple_of(3) {
        let mut command = Command::new("sh");
        command.args(["-c", &format!("sleep {lifetime} & sleep 0.02; wait")]);
        command
    } else {
        let mut command = Command::new("sleep");
        command.arg(lifetime);
        command
    };
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only makes async-signal-safe syscalls.
    unsafe {
        command.pre_exec(move || listen_before_exec(port, tcp));
    }
    command
}

/// Children killed and reaped when dropped, so none outlive a failed test.
#[derive(Default)]
struct Children(Vec<Child>);

impl Children {
    /// Reaps the ones that exited; returns how many are still running.
    fn reap(&mut self) -> usize {
        self.0
            .retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        self.0.len()
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the scraper saw while listeners came and went.
#[derive(Default)]
struct ScrapeLog {
    scrapes: u64,
    failures: u64,
    first_failures: Vec<String>,
    /// Scrapes that showed at least one churned listener.
    with_churn: u64,
    /// Series whose pid was found but whose process was gone before it
    /// could be named.
    pid_without_process: u64,
    processes: std::collections::BTreeSet<String>,
}

impl ScrapeLog {
    fn fail(&mut self, why: String) {
        self.failures += 1;
        if self.first_failures.len() < 5 {
            self.first_failures
                .push(format!("scrape {}: {why}", self.scrapes));
        }
    }
}

fn error_counters(text: &str) -> BTreeMap<String, f64> {
    samples(text, "unassigned_port_collection_errors_total")
        .into_iter()
        .map(|(labels, value)| (labels.get("stage").cloned().unwrap_or_default(), value))
        .collect()
}

/// Listener series on `ports` in this test's own network namespace (the
/// exporter's, labelled `netns="host"`): a container elsewhere on the machine
/// may listen on the same ports, and is none of this test's business.
fn listeners_on(text: &str, ports: &[u16]) -> Vec<BTreeMap<String, String>> {
    samples(text, "unassigned_port_listeners")
        .into_iter()
        .map(|(labels, _)| labels)
        .filter(|labels| {
            labels
                .get("port")
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|p| ports.contains(&p))
                && labels.get("netns").is_none_or(|n| n == "host")
        })
        .collect()
}

/// A fresh directory under /tmp, world-readable, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_no_panic(exporter: &Exporter) {
    let stderr = exporter.log().join("\n");
    assert!(
        !stderr.contains("panicked"),
        "the exporter panicked:\n{stderr}"
    );
}

#[test]
fn short_lived_listeners_never_break_a_scrape() {
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    let (ports, args): (Vec<u16>, Vec<String>) = if is_root() {
        ((272..=279).collect(), Vec::new())
    } else {
        let ports: Vec<u16> = (0..8).map(|_| common::free_port()).collect();
        eprintln!(
            "not root: cannot bind 272-279; using free high ports {ports:?} added with --watch.ports"
        );
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let flag = format!("--watch.ports={}", list.join(","));
        (ports, vec![flag])
    };
    let mut exporter = start_exporter(&[], Path::new(common::BINARY), &args);

    let deadline = Instant::now() + CHURN_TIME;
    let url = exporter.url("/metrics");
    let scraper_ports = ports.clone();
    let scraper = std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let me = common::own_user_name();
        let mut seen = ScrapeLog::default();
        while Instant::now() < deadline {
            seen.scrapes += 1;
            let text = match agent.get(&url).call().map(ureq::Response::into_string) {
                Ok(Ok(text)) => text,
                Ok(Err(err)) => {
                    seen.fail(format!("body unreadable: {err}"));
                    continue;
                }
                Err(err) => {
                    seen.fail(err.to_string());
                    continue;
                }
            };
            if !text.contains("\nunassigned_port_collection_success 1\n") {
                seen.fail(format!("collection failed:\n{text}"));
            }
            let churned = listeners_on(&text, &scraper_ports);
            seen.with_churn += u64::from(!churned.is_empty());
            for labels in &churned {
                if !labels["pid"].is_empty() && labels["process"].is_empty() {
                    seen.pid_without_process += 1;
                }
                // Every process holding these ports is this test's child.
                if !labels["user"].is_empty() && labels["user"] != me {
                    seen.fail(format!(
                        "a churned listener credited to another user: {labels:?}"
                    ));
                }
                seen.processes.insert(labels["process"].clone());
            }
        }
        seen
    });

    let mut children = Children::default();
    let (mut started, mut refused) = (0usize, 0usize);
    let mut first_refusal = None;
    while Instant::now() < deadline && started + refused < CHURN_MAX_CHILDREN {
        if children.reap() < CHURN_ALIVE {
            match churn_child(started + refused, &ports).spawn() {
                Ok(child) => {
                    children.0.push(child);
                    started += 1;
                }
                Err(err) => {
                    refused += 1;
                    first_refusal.get_or_insert(err);
                }
            }
        }
        std::thread::sleep(CHURN_PACE);
    }
    let churn_done = Instant::now();
    while children.reap() > 0 {
        assert!(
            churn_done.elapsed() < Duration::from_secs(10),
            "listener children did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = scraper.join().expect("the scraper thread panicked");

    println!(
        "faults: {started} short-lived listener processes ({refused} could not bind: {first_refusal:?}); \
         {} scrapes, {} of them saw some; {} series had a pid but no process; process labels seen: {:?}",
        seen.scrapes, seen.with_churn, seen.pid_without_process, seen.processes
    );
    assert!(
        seen.failures == 0,
        "{} of {} scrapes failed; the first:\n{}",
        seen.failures,
        seen.scrapes,
        seen.first_failures.join("\n")
    );
    assert!(seen.scrapes > 0);
    assert!(
        started >= refused && started >= 100,
        "too few listener processes started ({started}, {refused} refused: {first_refusal:?}); the test proved little"
    );
    assert!(
        exporter.child.try_wait().unwrap().is_none(),
        "the exporter exited:\n{}",
        exporter.log().join("\n")
    );
    // Every child is gone: so must their series be.
    let text = common::scrape_until(&exporter, "the churned listeners to disappear", |t| {
        listeners_on(t, &ports).is_empty()
    });
    println!(
        "faults: collection_errors_total after the churn: {:?}",
        error_counters(&text)
    );
    assert_no_panic(&exporter);
}

/// A system user made for one test and removed when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// `None` when `useradd` is not installed.
    fn create(name: &str) -> Option<TestUser> {
        let output = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output();
        let output = match output {
            Ok(output) => output,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
            Err(err) => panic!("useradd: {err}"),
        };
        assert!(
            output.status.success(),
            "useradd {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // From here on the user exists: own it before anything can fail.
        let mut user = TestUser {
            name: name.to_string(),
            uid: 0,
            gid: 0,
        };
        let id = |flag: &str| -> u32 {
            let output = Command::new("id").args([flag, name]).output().unwrap();
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("id {flag} {name}: {output:?}"))
        };
        user.uid = id("-u");
        user.gid = id("-g");
        assert_ne!(user.uid, 0);
        Some(user)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        match Command::new("userdel").arg(&self.name).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "userdel {} failed: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(err) => eprintln!("userdel {}: {err}", self.name),
        }
    }
}

/// Binds 0.0.0.0:276/tcp, waiting up to a minute if another test run holds it.
fn bind_276() -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match TcpListener::bind("0.0.0.0:276") {
            Ok(listener) => return listener,
            Err(err) if Instant::now() > deadline => panic!("cannot bind 276/tcp: {err}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn unprivileged_exporter_still_reports_listeners() {
    if !require(Capability::UserAccounts) {
        return;
    }
    let _turn = FIXED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
    // Dropped last (declared first): its processes are gone by then.
    let user = TestUser::create(&format!("upe-test-{}", std::process::id()))
        .expect("useradd is there (checked above)");
    // target/ may sit where the new user cannot reach it: run a copy.
    let dir = TempDir::new("upe-unprivileged");
    let binary = dir.0.join("unassigned_port_exporter");
    std::fs::copy(common::BINARY, &binary).expect("copy the exporter binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();

    let _root_listener = bind_276();
    let own_port = common::free_port();
    let (uid, gid) = (user.uid, user.gid);
    let mut own_listener = Children::default();
    let mut command = Command::new("sleep");
    command.arg("60").uid(uid).gid(gid).stdin(Stdio::null());
    // SAFETY: async-signal-safe syscalls only. std runs this after setuid, so
    // the socket is the new user's from birth.
    unsafe {
        command.pre_exec(move || listen_before_exec(own_port, true));
    }
    own_listener
        .0
        .push(command.spawn().expect("start a listener as the new user"));
    let own_pid = own_listener.0[0].id().to_string();

    assert_eq!(
        listening_socket_uid(own_port),
        Some(uid),
        "the listener on {own_port}/tcp should belong to {}",
        user.name
    );

    let reuid = format!("--reuid={uid}");
    let regid = format!("--regid={gid}");
    let launcher = [
        "setpriv",
        &reuid,
        &regid,
        "--clear-groups",
        "--inh-caps=-all",
        "--",
    ];
    let owner = |labels: &BTreeMap<String, String>| {
        (
            labels["process"].clone(),
            labels["pid"].clone(),
            labels["user"].clone(),
        )
    };
    // Both listeners were bound before the exporter started, so its very
    // first scrape must show them and count the one it cannot place. Whether
    // a counter is gathered before or after the collection that feeds it can
    // depend on the order the registry happens to keep per process, so a few
    // fresh exporters are asked.
    for round in 1..=EXPORTER_ROUNDS {
        let exporter = start_exporter(&launcher, &binary, &[format!("--watch.ports={own_port}")]);
        let status = std::fs::read_to_string(format!("/proc/{}/status", exporter.child.id()))
            .unwrap_or_default();
        let exporter_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or_default()
            .to_string();
        assert!(
            exporter_uid
                .split_whitespace()
                .all(|u| u == uid.to_string()),
            "the exporter does not run as {} ({uid}): Uid:{exporter_uid}",
            user.name
        );

        let text = exporter.scrape();
        let root_owned: Vec<_> = listeners_on(&text, &[276])
            .into_iter()
            .filter(|l| l["protocol"] == "tcp")
            .collect();
        assert!(
            !root_owned.is_empty()
                && root_owned
                    .iter()
                    .all(|l| owner(l) == (String::new(), String::new(), "root".to_string())),
            "root's listener on 276/tcp must be there with empty process and pid, and the socket's own user: {root_owned:?}"
        );
        let own: Vec<_> = listeners_on(&text, &[own_port]);
        assert_eq!(
            own.iter().map(owner).collect::<Vec<_>>(),
            vec![("sleep".to_string(), own_pid.clone(), user.name.clone())],
            "the user's own listener on {own_port}/tcp"
        );
        let errors = error_counters(&text);
        println!(
            "faults: unprivileged exporter {round} as {} ({uid}), first scrape: 276/tcp {:?}; \
             {own_port}/tcp {:?}; collection_errors_total {errors:?}",
            user.name,
            root_owned.iter().map(owner).collect::<Vec<_>>(),
            own.iter().map(owner).collect::<Vec<_>>(),
        );
        assert!(
            errors.get("owners").copied().unwrap_or(0.0) > 0.0,
            "exporter {round}: its first scrape shows a listener whose process could not be \
             read, yet counts no owners fault: {errors:?}"
        );
        assert_no_panic(&exporter);
    }
    drop(own_listener);
}

/// The uid the kernel records for the IPv4 TCP listener on `port`.
fn listening_socket_uid(port: u16) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields.get(3) == Some(&"0A");
        (listening && fields.get(1)?.ends_with(&local)).then(|| fields.get(7)?.parse().ok())?
    })
}
