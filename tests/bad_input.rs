//! Bad input ends the program at start with one clear line and a non-zero
//! exit code, never a panic.

mod common;

use std::process::Command;

/// Runs the binary and returns (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(common::BINARY).args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_refused(args: &[&str], code: i32, needle: &str) {
    let (status, stderr) = run(args);
    assert_eq!(status, Some(code), "{args:?} -> {stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "{args:?} printed more than one line:\n{stderr}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    assert_refused(
        &["--no-such-flag"],
        2,
        "unexpected argument '--no-such-flag'",
    );
    assert_refused(&["--watch.ports=70000"], 2, "out of range");
    assert_refused(&["--watch.ports=5-3"], 2, "runs backwards");
    assert_refused(&["--watch.ports=abc"], 2, "not a port number");
    assert_refused(&["--watch.allow=x/tcp"], 2, "not a port number");
    assert_refused(
        &["--web.listen-address=nonsense"],
        2,
        "bad --web.listen-address",
    );
    assert_refused(
        &["--web.listen-address=:99999"],
        2,
        "bad --web.listen-address",
    );
    // netstat2 sees the exporter's own namespace only: asking for all is
    // refused, not silently downgraded.
    assert_refused(
        &[
            "--web.listen-address=127.0.0.1:0",
            "--collector.backend=netstat2",
            "--collector.netns=all",
        ],
        2,
        "--collector.netns=all needs the netlink backend",
    );
}

#[test]
fn a_bad_registry_file_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("upe-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("registry.csv");
    std::fs::write(
        &path,
        "Service Name,Port Number,Transport Protocol,Description,Assignee,Contact,Registration Date,Modification Date,Reference,Service Code,Unauthorized Use Reported,Assignment Notes\n\
         echo,7,tcp,Echo,,,,,,,,\n\
         bad,7x,tcp,Bad,,,,,,,,\n",
    )
    .unwrap();
    let flag = format!("--iana.registry-file={}", path.display());
    assert_refused(
        &[&flag],
        2,
        &format!("{}: line 3: bad port number", path.display()),
    );
    assert_refused(
        &["--iana.registry-file=/nonexistent/registry.csv"],
        2,
        "cannot read",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_address_in_use_exits_1_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("--web.listen-address={}", taken.local_addr().unwrap());
    let (status, stderr) = run(&[&address, "--log.level=error"]);
    assert_eq!(status, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[test]
fn help_documents_every_flag() {
    let output = Command::new(common::BINARY).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--web.listen-address",
        "--web.telemetry-path",
        "--web.max-requests",
        "--watch.ports",
        "--watch.scope",
        "--watch.allow",
        "--iana.registry-file",
        "--collector.backend",
        "--path.procfs",
        "--path.netns",
        "--collector.netns",
        "--collector.sample-interval",
        "--web.config.file",
        "--log.level",
        "--log.format",
        "--version",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
