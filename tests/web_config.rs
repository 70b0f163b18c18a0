//! `--web.config.file` with the real binary and a real client (curl): TLS,
//! basic auth, client certificates, reload without dropping the listener, and
//! refusal of bad files at start. Certificates are made by the test with the
//! openssl command line.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// openssl arguments for a new unencrypted P-256 key.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A temporary folder with a CA, a server certificate for 127.0.0.1 and a
/// client certificate, removed when dropped.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("upe-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        pki.self_signed("ca", "upe-test-ca");
        // A client certificate from a CA the exporter does not trust.
        pki.self_signed("rogue", "rogue");
        pki.signed_by_ca("server", "subjectAltName=IP:127.0.0.1,DNS:localhost");
        pki.signed_by_ca("client", "extendedKeyUsage=clientAuth");
        pki
    }

    /// A new P-256 key NAME.key and a self-signed certificate NAME.crt.
    fn self_signed(&self, name: &str, subject: &str) {
        let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
        let subject = format!("/CN={subject}");
        self.openssl(
            &[
                &["req", "-x509"][..],
                &NEW_EC_KEY,
                &[
                    "-keyout", &key, "-out", &crt, "-days", "2", "-subj", &subject,
                ],
            ]
            .concat(),
        );
    }

    /// A new key NAME.key and a certificate NAME.crt signed by ca.key, with
    /// one X.509 extension.
    fn signed_by_ca(&self, name: &str, extension: &str) {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        std::fs::write(self.dir.join(&ext), format!("{extension}\n")).unwrap();
        let subject = format!("/CN={name}");
        self.openssl(
            &[
                &["req"][..],
                &NEW_EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl command line is needed (tests/run-all.sh installs it)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("web.yml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The exporter started with a web config; waits for the port to accept.
struct Exporter {
    child: Child,
    port: u16,
}

impl Exporter {
    fn start(config: &Path) -> Exporter {
        let port = common::free_port();
        let child = Command::new(common::BINARY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", config.display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Exporter { child, port }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

#[test]
fn tls_with_basic_auth_needs_the_right_password() {
    let pki = Pki::new("auth");
    let hash = bcrypt::hash("s3cret", 6).unwrap();
    let config = pki.write_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: {hash}\n"
    ));
    let exporter = Exporter::start(&config);
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
    let exporter = Exporter::start(&config);
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
    let exporter = Exporter::start(&config);
    let url = format!("http://127.0.0.1:{}/healthz", exporter.port);
    assert!(curl(&[], &url).1.contains("x-frame-options: deny"));

    let wait_for = |what: &str, check: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (code, headers) = curl(&[], &url);
            if code == "200" && check(&headers) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {code} {headers}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Sleep past the mtime granularity so the edit is visible.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        &config,
        "http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n",
    )
    .unwrap();
    wait_for("the new header", &|h| {
        h.contains("x-frame-options: sameorigin")
    });

    std::fs::write(&config, "basic_auth_users:\n  bob: not-a-hash\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    wait_for("the old config to stay", &|h| {
        h.contains("x-frame-options: sameorigin")
    });

    // SIGHUP reloads too.
    std::fs::write(
        &config,
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    .unwrap();
    unsafe { libc::kill(exporter.child.id() as i32, libc::SIGHUP) };
    wait_for("the header after SIGHUP", &|h| {
        h.contains("x-frame-options: deny")
    });
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
