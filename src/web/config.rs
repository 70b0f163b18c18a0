//! `--web.config.file`: TLS, basic auth, response headers and a rate limit,
//! in the YAML format of Prometheus' exporter-toolkit (the file node_exporter
//! reads).
//!
//! [`parse_str`] checks the YAML alone (no files touched; the fuzz target's
//! entry point); [`load`] also reads the certificates and keys it names and
//! builds the rustls server configuration, so a bad file is refused whole.
//! Relative paths are taken from the config file's folder, as the toolkit does.
//!
//! Differences from the Go toolkit, all refused with a clear message rather
//! than ignored: TLS 1.0/1.1 (rustls does not offer them), the client auth
//! types that accept unverified client certificates (RequestClientCert,
//! RequireAnyClientCert), `client_allowed_sans`, and `http2: true` (only
//! HTTP/1.1 is served; `http2: false` is accepted). The toolkit's top-level
//! `rate_limit` (`interval`, `burst`) is honoured; see [`crate::web::auth`].

use crate::web::auth::{BasicAuth, RateLimit};
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
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RawRateLimit>,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    /// 0 or absent turns the limit off.
    interval: Option<RawDuration>,
    burst: Option<u32>,
}

/// A Go duration: text with a unit ("1s", "250ms"), or a bare number (the
/// toolkit's docs write `0` for "off").
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Text(String),
    Number(u64),
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

/// `rate_limit`: at most `burst` requests at once, then one per `interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Above zero.
    pub interval: Duration,
    /// At least 1.
    pub burst: u32,
}

/// A parsed web config file, paths still unresolved.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// user -> bcrypt hash
    pub users: BTreeMap<String, String>,
    /// `None`: no rate limit.
    pub rate_limit: Option<RateLimitSettings>,
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
    Ok(WebConfig {
        tls: raw.tls_server_config.map(parse_tls).transpose()?,
        headers: parse_http(raw.http_server_config.unwrap_or_default())?,
        users: parse_users(raw.basic_auth_users.unwrap_or_default())?,
        rate_limit: raw.rate_limit.map(parse_rate_limit).transpose()?.flatten(),
    })
}

/// `http_server_config`: the response headers (only the toolkit's five);
/// `http2: true` is refused, as only HTTP/1.1 is served.
fn parse_http(raw: RawHttp) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    if raw.http2 == Some(true) {
        return Err(
            "http_server_config.http2: true is not supported: this exporter serves HTTP/1.1 only (remove the line or set it to false)".into(),
        );
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers.unwrap_or_default() {
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
        headers.push((
            HeaderName::from_bytes(allowed.as_bytes()).expect("valid name"),
            value,
        ));
    }
    Ok(headers)
}

/// `basic_auth_users`: names without ':', each with a bcrypt hash.
fn parse_users(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    for (user, hash) in &raw {
        if user.contains(':') {
            return Err(format!("basic_auth_users: user name {user:?} contains ':'"));
        }
        hash.parse::<bcrypt::HashParts>().map_err(|_| {
            format!("basic_auth_users: the password of {user:?} is not a bcrypt hash")
        })?;
    }
    Ok(raw)
}

/// `rate_limit`: `None` when `interval` is 0 or absent (off, as in the
/// toolkit). A burst of 0 would refuse every request: that is refused.
fn parse_rate_limit(raw: RawRateLimit) -> Result<Option<RateLimitSettings>, String> {
    let interval = match raw.interval {
        None | Some(RawDuration::Number(0)) => Duration::ZERO,
        Some(RawDuration::Number(n)) => {
            return Err(format!(
                "rate_limit.interval: {n} has no unit: write a duration like 1s or 250ms"
            ));
        }
        Some(RawDuration::Text(text)) if text.trim().is_empty() => Duration::ZERO,
        Some(RawDuration::Text(text)) => humantime::parse_duration(text.trim()).map_err(|err| {
            format!("rate_limit.interval: {text:?} is not a duration like 1s or 250ms: {err}")
        })?,
    };
    if interval.is_zero() {
        return Ok(None);
    }
    match raw.burst {
        Some(burst) if burst >= 1 => Ok(Some(RateLimitSettings { interval, burst })),
        _ => Err("rate_limit.burst must be at least 1 when rate_limit.interval is set".into()),
    }
}

/// `tls_server_config`, checked step by step.
fn parse_tls(raw: RawTls) -> Result<TlsSettings, String> {
    let (client_auth, client_ca_file) = parse_client_auth(
        raw.client_auth_type.as_deref(),
        raw.client_ca_file,
        raw.client_allowed_sans,
    )?;
    Ok(TlsSettings {
        cert: pem_source(raw.cert_file, raw.cert, "cert")?,
        key: pem_source(raw.key_file, raw.key, "key")?,
        client_auth,
        client_ca_file,
        versions: tls_versions(raw.min_version.as_deref(), raw.max_version.as_deref())?,
        cipher_suites: cipher_suites(raw.cipher_suites)?,
        curves: curves(raw.curve_preferences)?,
        prefer_server_cipher_suites: raw.prefer_server_cipher_suites.unwrap_or(true),
    })
}

/// `WHAT_file` or inline `WHAT`: exactly one of them, not empty.
fn pem_source(
    file: Option<String>,
    inline: Option<String>,
    what: &str,
) -> Result<PemSource, String> {
    match (file, inline) {
        (Some(_), Some(_)) => Err(format!(
            "tls_server_config: give {what}_file or {what}, not both"
        )),
        (Some(file), None) if !file.is_empty() => Ok(PemSource::File(PathBuf::from(file))),
        (None, Some(inline)) if !inline.is_empty() => Ok(PemSource::Inline(inline)),
        _ => Err(format!("tls_server_config: {what}_file is required")),
    }
}

/// `client_auth_type` with its `client_ca_file`: a CA exactly when client
/// certificates are verified; the unverified types and SAN lists refused.
fn parse_client_auth(
    client_auth_type: Option<&str>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
) -> Result<(ClientAuth, Option<PathBuf>), String> {
    let client_auth = match client_auth_type.unwrap_or("NoClientCert") {
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
    let client_ca_file = client_ca_file.filter(|f| !f.is_empty()).map(PathBuf::from);
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
    if client_allowed_sans.is_some_and(|sans| !sans.is_empty()) {
        return Err(
            "tls_server_config.client_allowed_sans is not supported by this exporter".into(),
        );
    }
    Ok((client_auth, client_ca_file))
}

/// `min_version` and `max_version` (TLS12 to TLS13 by default).
fn tls_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let version = |text: &str| match text {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(format!("{text} is too old: rustls offers TLS12 and TLS13")),
        other => Err(format!("unknown TLS version {other:?}: use TLS12 or TLS13")),
    };
    let min = version(min.unwrap_or("TLS12"))?;
    let max = version(max.unwrap_or("TLS13"))?;
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
    Ok(versions)
}

/// `cipher_suites`: `None` (rustls' defaults) when absent or empty.
fn cipher_suites(names: Option<Vec<String>>) -> Result<Option<Vec<SupportedCipherSuite>>, String> {
    let Some(names) = names.filter(|names| !names.is_empty()) else {
        return Ok(None);
    };
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
    Ok(Some(suites))
}

/// `curve_preferences`: `None` (rustls' defaults) when absent or empty.
fn curves(
    names: Option<Vec<String>>,
) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, String> {
    let Some(names) = names.filter(|names| !names.is_empty()) else {
        return Ok(None);
    };
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
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
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

/// A loaded config, ready to serve with. The server reads the one in force
/// for every request (TLS: for every connection); a reload swaps it whole.
pub struct ActiveWebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None`: no basic auth. Shared with the bcrypt threads checking it.
    pub basic_auth: Option<Arc<BasicAuth>>,
    /// `None`: no rate limit.
    pub rate_limit: Option<RateLimit>,
}

impl ActiveWebConfig {
    /// No TLS, no auth: what runs without `--web.config.file`.
    pub fn plain() -> ActiveWebConfig {
        ActiveWebConfig {
            tls: None,
            headers: Vec::new(),
            basic_auth: None,
            rate_limit: None,
        }
    }

    pub fn requires_auth(&self) -> bool {
        self.basic_auth.is_some()
    }
}

/// Reads the file, checks it, reads every certificate and key it names and
/// builds the TLS configuration. Errors name the file and the problem. Slow
/// with basic auth (the decoy hash is a bcrypt hash): keep it off the async
/// threads.
pub fn load(path: &Path) -> Result<ActiveWebConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("{}: cannot read: {err}", path.display()))?;
    let in_file = |err: String| format!("{}: {err}", path.display());
    let config = parse_str(&text).map_err(in_file)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match &config.tls {
        None => None,
        Some(settings) => Some(Arc::new(build_tls(settings, base).map_err(in_file)?)),
    };
    let basic_auth = if config.users.is_empty() {
        None
    } else {
        Some(Arc::new(BasicAuth::new(config.users).map_err(in_file)?))
    };
    Ok(ActiveWebConfig {
        tls,
        headers: config.headers,
        basic_auth,
        rate_limit: config
            .rate_limit
            .map(|limit| RateLimit::new(limit.interval, limit.burst)),
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
            ("http_server_config:\n  http2: true\n", "HTTP/1.1 only"),
            ("rate_limit:\n  interval: 1s\n", "burst must be at least 1"),
            (
                "rate_limit:\n  interval: 1s\n  burst: 0\n",
                "burst must be at least 1",
            ),
            (
                "rate_limit:\n  interval: soon\n  burst: 1\n",
                "not a duration",
            ),
            ("rate_limit:\n  every: 1s\n", "unknown field"),
            ("rate_limit:\n  interval: 5\n  burst: 1\n", "has no unit"),
        ] {
            let err = parse_str(text).err().unwrap_or_default();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_toolkit_rate_limit_parses() {
        let limit = |text: &str| parse_str(text).unwrap().rate_limit;
        assert_eq!(
            limit("rate_limit:\n  interval: 250ms\n  burst: 5\n"),
            Some(RateLimitSettings {
                interval: Duration::from_millis(250),
                burst: 5
            })
        );
        assert_eq!(
            limit("rate_limit:\n  interval: 1m30s\n  burst: 1\n").map(|l| l.interval),
            Some(Duration::from_secs(90))
        );
        // Off, as in the toolkit: no interval, or 0.
        assert_eq!(limit("rate_limit:\n  interval: 0s\n  burst: 5\n"), None);
        assert_eq!(limit("rate_limit:\n  interval: \"0\"\n"), None);
        assert_eq!(limit("rate_limit:\n  interval: 0\n  burst: 0\n"), None);
        assert_eq!(limit("rate_limit: {}\n"), None);
        assert_eq!(limit(""), None);
    }
}
