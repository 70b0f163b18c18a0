//! Test certificates made with the openssl command line: a CA, a server
//! certificate for 127.0.0.1 signed by it, a client certificate signed by it
//! and a self-signed "rogue" client certificate, in a temporary folder that
//! also holds the test's web config file.

use std::path::PathBuf;
use std::process::Command;

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
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
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

    /// The full path of a file in the folder.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes `web.yml` in the folder (relative paths in it resolve here).
    /// Writes `web.yml` as config management does (a new file renamed
    /// over the old), so the reload poll sees a new inode even within the
    /// file system's mtime granularity.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.dir.join("web.yml");
        let next = self.dir.join("web.yml.new");
        std::fs::write(&next, text).unwrap();
        std::fs::rename(&next, &path).unwrap();
        path
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
