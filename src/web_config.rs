//! `--web.config.file`: TLS, basic auth and response headers, in the YAML
//! format of Prometheus' exporter-toolkit (the file node_exporter reads).
//!
//! [`parse_str`] checks the YAML alone (no files touched; the fuzz target's
//! entry point); [`load`] also reads the certificates and keys it names and
//! builds the rustls server configuration, so a bad file is refused whole.
//! Relative paths are taken from the config file's folder, as the toolkit does.
//!
//! Differences from the Go toolkit, all refused with a clear message rather
//! than ignored: TLS 1.0/1.1 (rustls does not offer them), the client auth
//! types that accept unverified client certificates (RequestClientCert,
//! RequireAnyClientCert), and `client_allowed_sans`. `http2: true` is
//! accepted, but only HTTP/1.1 is served.

use base64::Engine;
use hyper::header::{HeaderName, HeaderValue};
use rustls::crypto::{CryptoProvider, SupportedKxGroup, ring};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Where a certificate or key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    Inline(String),
}

/// Client certificate policy (`client_auth_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// The checked TLS settings, before any file is read.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    pub cert: PemSource,
    pub key: PemSource,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// `None`: rustls' defaults.
    pub cipher_suites: Option<Vec<SupportedCipherSuite>>,
    pub curves: Option<Vec<&'static dyn SupportedKxGroup>>,
    pub prefer_server_cipher_suites: bool,
}

/// A parsed web config file, paths still unresolved.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// user -> bcrypt hash
    pub users: BTreeMap<String, String>,
}

/// The only headers the toolkit lets a config set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Strict-Transport-Security",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
];

/// Parses and checks the YAML text without reading any other file.
pub fn parse_str(text: &str) -> Result<WebConfig, String> {
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_norway::from_str(text).map_err(|err| format!("invalid YAML: {err}"))?
    };
    let mut config = WebConfig::default();
    if let Some(tls) = raw.tls_server_config {
        config.tls = Some(parse_tls(tls)?);
    }
    if let Some(http) = raw.http_server_config {
        let _ = http.http2; // accepted for compatibility; HTTP/1.1 is served
        for (name, value) in http.headers.unwrap_or_default() {
            let allowed = ALLOWED_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&name))
                .ok_or_else(|| {
                    format!(
                        "http_server_config.headers: {name:?} may not be set (allowed: {})",
                        ALLOWED_HEADERS.join(", ")
                    )
                })?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("http_server_config.headers: bad value for {name}"))?;
            config.headers.push((
                HeaderName::from_bytes(allowed.as_bytes()).expect("valid name"),
                value,
            ));
        }
    }
    for (user, hash) in raw.basic_auth_users.unwrap_or_default() {
        if user.contains(':') {
            return Err(format!("basic_auth_users: user name {user:?} contains ':'"));
        }
        hash.parse::<bcrypt::HashParts>().map_err(|_| {
            format!("basic_auth_users: the password of {user:?} is not a bcrypt hash")
        })?;
        config.users.insert(user, hash);
    }
    Ok(config)
}

fn parse_tls(raw: RawTls) -> Result<TlsSettings, String> {
    let pick = |file: Option<String>, inline: Option<String>, what: &str| match (file, inline) {
        (Some(_), Some(_)) => Err(format!(
            "tls_server_config: give {what}_file or {what}, not both"
        )),
        (Some(file), None) if !file.is_empty() => Ok(PemSource::File(PathBuf::from(file))),
        (None, Some(inline)) if !inline.is_empty() => Ok(PemSource::Inline(inline)),
        _ => Err(format!("tls_server_config: {what}_file is required")),
    };
    let cert = pick(raw.cert_file, raw.cert, "cert")?;
    let key = pick(raw.key_file, raw.key, "key")?;
    let client_auth = match raw.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" | "" => ClientAuth::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other @ ("RequestClientCert" | "RequireAnyClientCert") => {
            return Err(format!(
                "tls_server_config.client_auth_type {other} accepts unverified client certificates, which this exporter does not support: use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type: unknown value {other:?}"
            ));
        }
    };
    let client_ca_file = raw
        .client_ca_file
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    if client_auth != ClientAuth::NoClientCert && client_ca_file.is_none() {
        return Err(
            "tls_server_config: client_ca_file is required to verify client certificates".into(),
        );
    }
    if client_auth == ClientAuth::NoClientCert && client_ca_file.is_some() {
        return Err(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert".into(),
        );
    }
    if raw.client_allowed_sans.is_some_and(|sans| !sans.is_empty()) {
        return Err(
            "tls_server_config.client_allowed_sans is not supported by this exporter".into(),
        );
    }
    let version = |text: &str| match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!("{text} is too old: rustls offers TLS12 and TLS13")),
        other => Err(format!("unknown TLS version {other:?}: use TLS12 or TLS13")),
    };
    let min = version(raw.min_version.as_deref().unwrap_or("TLS12"))?;
    let max = version(raw.max_version.as_deref().unwrap_or("TLS13"))?;
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let mut versions = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        versions.push(&rustls::version::TLS13);
    }
    let cipher_suites = match raw.cipher_suites {
        None => None,
        Some(names) if names.is_empty() => None,
        Some(names) => {
            // Go's list names TLS 1.2 suites only; TLS 1.3 suites stay on.
            let mut suites: Vec<SupportedCipherSuite> = names
                .iter()
                .map(|name| tls12_suite(name))
                .collect::<Result<_, _>>()?;
            suites.extend_from_slice(&[
                ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
                ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
                ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            ]);
            Some(suites)
        }
    };
    let curves = match raw.curve_preferences {
        None => None,
        Some(names) if names.is_empty() => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| match name.as_str() {
                    "X25519" => Ok(ring::kx_group::X25519),
                    "CurveP256" => Ok(ring::kx_group::SECP256R1),
                    "CurveP384" => Ok(ring::kx_group::SECP384R1),
                    other => Err(format!(
                        "tls_server_config.curve_preferences: unsupported curve {other:?} (X25519, CurveP256, CurveP384)"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca_file,
        versions,
        cipher_suites,
        curves,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
    })
}

fn tls12_suite(name: &str) -> Result<SupportedCipherSuite, String> {
    use ring::cipher_suite as cs;
    Ok(match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        other => {
            return Err(format!(
                "tls_server_config.cipher_suites: {other:?} is not offered (only ECDHE with AES-GCM or ChaCha20-Poly1305)"
            ));
        }
    })
}

/// A loaded config, ready to serve with.
pub struct ActiveWebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    users: BTreeMap<String, String>,
    /// Checked when the user is unknown, so a wrong name costs as long as a
    /// wrong password and timing does not reveal which names exist.
    decoy_hash: String,
}

impl ActiveWebConfig {
    /// No TLS, no auth: what runs without `--web.config.file`.
    pub fn plain() -> ActiveWebConfig {
        ActiveWebConfig {
            tls: None,
            headers: Vec::new(),
            users: BTreeMap::new(),
            decoy_hash: String::new(),
        }
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks an `Authorization` header value. Slow by design (bcrypt): call
    /// it off the async reactor.
    pub fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some((user, password)) = authorization.and_then(decode_basic) else {
            return false;
        };
        let (hash, known) = match self.users.get(&user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.decoy_hash.as_str(), false),
        };
        bcrypt::verify(password.as_bytes(), hash).unwrap_or(false) && known
    }
}

fn decode_basic(value: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Reads the file, checks it, reads every certificate and key it names and
/// builds the TLS configuration. Errors name the file and the problem.
pub fn load(path: &Path) -> Result<ActiveWebConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
    let config = parse_str(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match &config.tls {
        None => None,
        Some(settings) => Some(Arc::new(
            build_tls(settings, base).map_err(|err| format!("{}: {err}", path.display()))?,
        )),
    };
    let decoy_hash = if config.users.is_empty() {
        String::new()
    } else {
        // Same cost as the first real hash, so both paths take as long.
        let cost = config
            .users
            .values()
            .next()
            .and_then(|h| h.parse::<bcrypt::HashParts>().ok())
            .map_or(bcrypt::DEFAULT_COST, |parts| parts.get_cost());
        bcrypt::hash("decoy", cost).map_err(|err| format!("bcrypt: {err}"))?
    };
    Ok(ActiveWebConfig {
        tls,
        headers: config.headers,
        users: config.users,
        decoy_hash,
    })
}

/// Every file a config depends on, to notice changes for reload.
pub fn watched_files(path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    let base = path.parent().unwrap_or(Path::new("."));
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(WebConfig { tls: Some(tls), .. }) = parse_str(&text)
    {
        for source in [&tls.cert, &tls.key] {
            if let PemSource::File(file) = source {
                files.push(base.join(file));
            }
        }
        if let Some(ca) = &tls.client_ca_file {
            files.push(base.join(ca));
        }
    }
    files
}

fn read_pem(source: &PemSource, base: &Path, what: &str) -> Result<Vec<u8>, String> {
    match source {
        PemSource::Inline(text) => Ok(text.clone().into_bytes()),
        PemSource::File(file) => {
            let path = base.join(file);
            std::fs::read(&path)
                .map_err(|err| format!("cannot read {what} {}: {err}", path.display()))
        }
    }
}

fn build_tls(settings: &TlsSettings, base: &Path) -> Result<ServerConfig, String> {
    let cert_pem = read_pem(&settings.cert, base, "certificate")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| format!("bad certificate PEM: {err}"))?;
    if certs.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key_pem = read_pem(&settings.key, base, "key")?;
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| format!("bad private key: {err}"))?;

    let mut provider = ring::default_provider();
    if let Some(suites) = &settings.cipher_suites {
        provider.cipher_suites = suites.clone();
    }
    if let Some(curves) = &settings.curves {
        provider.kx_groups = curves.clone();
    }
    let provider = Arc::new(CryptoProvider { ..provider });
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&settings.versions)
        .map_err(|err| format!("TLS settings rejected: {err}"))?;
    let builder = match settings.client_auth {
        ClientAuth::NoClientCert => builder.with_no_client_auth(),
        auth => {
            let ca_path = base.join(settings.client_ca_file.as_ref().expect("checked in parse"));
            let ca_pem = std::fs::read(&ca_path).map_err(|err| {
                format!("cannot read client_ca_file {}: {err}", ca_path.display())
            })?;
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&ca_pem) {
                let cert = cert.map_err(|err| format!("bad client CA PEM: {err}"))?;
                roots
                    .add(cert)
                    .map_err(|err| format!("bad client CA certificate: {err}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::VerifyClientCertIfGiven => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|err| format!("client certificate verification: {err}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|err| format!("certificate and key do not work together: {err}"))?;
    config.ignore_client_order = settings.prefer_server_cipher_suites;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_plain_http() {
        let config = parse_str("").unwrap();
        assert!(config.tls.is_none() && config.users.is_empty());
    }

    #[test]
    fn toolkit_keys_parse() {
        let config = parse_str(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519]\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: $2y$10$mDwo.lAisC94iLAyP81MCesa29IzH37oigHC/42V2pdJlUprsJPze\n",
        )
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(tls.versions.len(), 1);
        assert_eq!(config.headers[0].0, "x-frame-options");
        assert!(config.users.contains_key("alice"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            (
                "tls_server_config:\n  cert_file: a\n",
                "key_file is required",
            ),
            ("nonsense: 1\n", "unknown field"),
            ("basic_auth_users:\n  bob: plaintext\n", "not a bcrypt hash"),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "may not be set",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
                "too old",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
                "client_ca_file is required",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "unverified",
            ),
            ("[", "invalid YAML"),
        ] {
            let err = parse_str(text).err().unwrap_or_default();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn basic_auth_checks_name_and_password() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let config = ActiveWebConfig {
            tls: None,
            headers: vec![],
            users: [("alice".to_string(), hash.clone())].into(),
            decoy_hash: hash,
        };
        let header = |user: &str, pass: &str| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            format!("Basic {encoded}")
        };
        assert!(config.authorized(Some(header("alice", "secret").as_bytes())));
        assert!(!config.authorized(Some(header("alice", "wrong").as_bytes())));
        assert!(!config.authorized(Some(header("mallory", "secret").as_bytes())));
        assert!(!config.authorized(None));
        assert!(!config.authorized(Some(b"Bearer x")));
    }
}
