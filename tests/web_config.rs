//! `--web.config.file` with the real binary and a real client (curl): TLS,
//! basic auth and its counters, client certificates, reload without dropping
//! the listener (and forgetting verified passwords), the toolkit's
//! `rate_limit`, and refusal of bad files at start. Certificates are made by the test with the
//! openssl command line (`common::pki`).

mod common;

use common::Exporter;
use common::pki::Pki;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs curl; returns the HTTP status ("000" when no HTTP answer came) and
/// the response headers.
fn curl(args: &[&str], url: &str) -> (String, String) {
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is needed (tests/run-all.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (headers, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().to_string(), headers.to_lowercase())
}

/// Runs curl; returns the body of the answer (empty when none came).
fn curl_body(args: &[&str], url: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is needed (tests/run-all.sh installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of one series in an exposition, if it is there.
fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn tls_with_basic_auth_needs_the_right_password() {
    let pki = Pki::new("auth");
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    let config = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
    ));
    let exporter = Exporter::start_with_web_config(&config);
    let url = format!("https://127.0.0.1:{}/metrics", exporter.port);
    let ca = pki.path("ca.crt");
    let trust = ["--cacert", ca.as_str()];

    let (code, headers) = curl(&trust, &url);
    assert_eq!(code, "401", "no credentials");
    assert!(headers.contains("www-authenticate: basic"), "{headers}");
    assert_eq!(
        curl(&[&trust[..], &["-u", "prometheus:wrong"]].concat(), &url).0,
        "401"
    );
    assert_eq!(
        curl(&[&trust[..], &["-u", "nobody:s3cret"]].concat(), &url).0,
        "401"
    );
    assert_eq!(
        curl(&[&trust[..], &["-u", "prometheus:s3cret"]].concat(), &url).0,
        "200"
    );

    // The three 401s above are counted; nothing was refused.
    let text = curl_body(&[&trust[..], &["-u", "prometheus:s3cret"]].concat(), &url);
    assert_eq!(
        value_of(&text, "unassigned_port_http_auth_failures_total"),
        Some(3.0),
        "{text}"
    );
    for reason in [
        "max_requests",
        "auth_budget",
        "auth_guessing",
        "auth_client_busy",
        "auth_displaced",
        "rate_limit",
    ] {
        let series = format!("unassigned_port_http_requests_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(value_of(&text, &series), Some(0.0), "{series}");
    }

    let plain = format!("http://127.0.0.1:{}/metrics", exporter.port);
    let (code, _) = curl(&[], &plain);
    assert_ne!(code, "200", "plain HTTP to the TLS port must not be served");
    // An untrusted server certificate is refused by the client.
    assert_eq!(curl(&[], &url).0, "000");
}

#[test]
fn required_client_certificates_are_enforced() {
    let pki = Pki::new("mtls");
    let config = pki.write_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let exporter = Exporter::start_with_web_config(&config);
    let url = format!("https://127.0.0.1:{}/metrics", exporter.port);
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    assert_eq!(
        curl(&["--cacert", &ca], &url).0,
        "000",
        "no client certificate: handshake refused"
    );
    let (rogue_crt, rogue_key) = (pki.path("rogue.crt"), pki.path("rogue.key"));
    let rogue = [
        "--cacert",
        ca.as_str(),
        "--cert",
        &rogue_crt,
        "--key",
        &rogue_key,
    ];
    assert_eq!(
        curl(&rogue, &url).0,
        "000",
        "a certificate from an untrusted CA is refused"
    );
    let right = ["--cacert", ca.as_str(), "--cert", &cert, "--key", &key];
    assert_eq!(curl(&right, &url).0, "200");
}

#[test]
fn config_reloads_on_change_and_a_bad_one_keeps_the_old() {
    let pki = Pki::new("reload");
    let config = pki.write_config("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    let exporter = Exporter::start_with_web_config(&config);
    let url = format!("http://127.0.0.1:{}/healthz", exporter.port);
    assert!(curl(&[], &url).1.contains("x-frame-options: deny"));

    let header = || curl(&[], &url).1;

    // Each edit is waited for through the reload metrics, then checked.
    let since = common::unix_now();
    pki.write_config("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n");
    exporter.wait_for_good_reload("web", since);
    assert!(header().contains("x-frame-options: sameorigin"));

    pki.write_config("basic_auth_users:\n  bob: not-a-hash\n");
    exporter.wait_for_failed_reload("web");
    assert!(
        header().contains("x-frame-options: sameorigin"),
        "the old config stays"
    );

    // SIGHUP reloads too: once the edit is in, the unchanged file reloads
    // only because of the signal.
    let written = common::unix_now();
    pki.write_config("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    exporter.wait_for_good_reload("web", written);
    let since = common::unix_now();
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGHUP) };
    exporter.wait_for_good_reload("web", since);
    assert!(header().contains("x-frame-options: deny"));
    assert!(
        exporter
            .log()
            .iter()
            .any(|line| line.contains("reloaded the web config") && line.contains("on_sighup=true")),
        "the SIGHUP reload is logged as one"
    );
}

#[test]
fn a_reload_forgets_verified_passwords() {
    let pki = Pki::new("rotate");
    let user = |password: &str| {
        let hash = bcrypt::hash(password, 6).unwrap();
        format!("basic_auth_users:\n  prometheus: {hash}\n")
    };
    let config = pki.write_config(&user("old"));
    let exporter = Exporter::start_with_web_config(&config);
    let url = format!("http://127.0.0.1:{}/metrics", exporter.port);
    // Verified once, so the exporter remembers it...
    assert_eq!(curl(&["-u", "prometheus:old"], &url).0, "200");
    assert_eq!(curl(&["-u", "prometheus:old"], &url).0, "200");
    // ...until the password changes: the reload drops what it remembered.
    pki.write_config(&user("new"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while curl(&["-u", "prometheus:old"], &url).0 != "401" {
        assert!(
            Instant::now() < deadline,
            "the old password still works 15 s after the change"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(&["-u", "prometheus:new"], &url).0, "200");
}

#[test]
fn the_rate_limit_answers_429_past_the_burst() {
    let pki = Pki::new("rate");
    let config = pki.write_config("rate_limit:\n  interval: 5s\n  burst: 2\n");
    let exporter = Exporter::start_with_web_config(&config);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", exporter.port);
    // Exporter::start's connection test sent no request: the bucket is full.
    assert_eq!(curl(&[], &url("/healthz")).0, "200");
    assert_eq!(curl(&[], &url("/healthz")).0, "200");
    let (code, headers) = curl(&[], &url("/healthz"));
    assert_eq!(code, "429", "the third request within 5 s");
    assert!(headers.contains("retry-after: 1"), "{headers}");
    // A token comes back within an interval; the refusal was counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let text = curl_body(&[], &url("/metrics"));
        if text.contains("unassigned_port_") {
            break text;
        }
        assert!(Instant::now() < deadline, "no token came back: {text}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let refused = value_of(
        &text,
        "unassigned_port_http_requests_rejected_total{reason=\"rate_limit\"}",
    );
    assert!(refused.is_some_and(|n| n >= 1.0), "{text}");
}

#[test]
fn bad_web_configs_stop_the_start_with_one_line() {
    let pki = Pki::new("bad");
    let cases = [
        (
            "tls_server_config:\n  cert_file: server.crt\n",
            "key_file is required",
        ),
        ("tls_server_config: [\n", "invalid YAML"),
        ("basic_auth_users:\n  bob: hunter2\n", "not a bcrypt hash"),
        ("http_server_config:\n  http2: true\n", "HTTP/1.1 only"),
        (
            "rate_limit:\n  interval: 1s\n  burst: 0\n",
            "burst must be at least 1",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n",
            "cannot read key",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: ca.crt\n",
            "bad private key",
        ),
    ];
    for (text, needle) in cases {
        let config = pki.write_config(text);
        let output = Command::new(common::BINARY)
            .arg(format!("--web.config.file={}", config.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{text}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("web.yml"),
            "{needle}: {stderr}"
        );
    }
    let output = Command::new(common::BINARY)
        .arg("--web.config.file=/nonexistent/web.yml")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}
