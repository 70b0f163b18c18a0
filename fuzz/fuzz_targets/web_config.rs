//! Feeds arbitrary text to the `--web.config.file` parser (exporter-toolkit
//! YAML: tls_server_config, http_server_config, basic_auth_users), without
//! touching the filesystem.
//!
//! It must never panic. An accepted config keeps the toolkit's rules: only
//! the allowed response headers, user names without ':', a bcrypt hash per
//! user, at least one TLS version, a CA file whenever client certificates are
//! verified and none when they are not, a certificate and a key; and a rate
//! limit, if any, with an interval above zero and a burst of at least one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unassigned_port_exporter::web::config::{ClientAuth, PemSource, parse_str};

const ALLOWED_HEADERS: [&str; 5] = [
    "strict-transport-security",
    "x-frame-options",
    "x-content-type-options",
    "x-xss-protection",
    "content-security-policy",
];

fn is_empty(source: &PemSource) -> bool {
    match source {
        PemSource::File(path) => path.as_os_str().is_empty(),
        PemSource::Inline(text) => text.is_empty(),
    }
}

fuzz_target!(|data: &[u8]| {
    // The file is read as UTF-8 text before it is parsed.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match parse_str(text) {
        Ok(config) => config,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    for (name, value) in &config.headers {
        assert!(
            ALLOWED_HEADERS.contains(&name.as_str()),
            "header {name} let through"
        );
        let _ = value.to_str();
    }
    for (user, hash) in &config.users {
        assert!(!user.contains(':'), "user name {user:?} let through");
        assert!(
            hash.parse::<bcrypt::HashParts>().is_ok(),
            "hash {hash:?} let through"
        );
    }
    if let Some(limit) = &config.rate_limit {
        assert!(
            !limit.interval.is_zero() && limit.burst >= 1,
            "rate limit {limit:?} let through"
        );
    }
    if let Some(tls) = &config.tls {
        assert!(!tls.versions.is_empty(), "no TLS version left");
        assert!(!is_empty(&tls.cert) && !is_empty(&tls.key), "{tls:?}");
        assert_eq!(
            tls.client_ca_file.is_some(),
            tls.client_auth != ClientAuth::NoClientCert,
            "client auth {:?} with CA file {:?}",
            tls.client_auth,
            tls.client_ca_file
        );
        if let Some(suites) = &tls.cipher_suites {
            assert!(!suites.is_empty());
        }
        if let Some(curves) = &tls.curves {
            assert!(!curves.is_empty());
        }
    }
});
