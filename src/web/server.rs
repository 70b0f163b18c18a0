//! The HTTP face: `/metrics`, a landing page at `/`, and `/healthz`, on hyper 1.
//!
//! Every connection gets a header read timeout (a client that trickles
//! headers is dropped) and, with `--web.config.file`, TLS from the web config
//! in force when it connected. Each request then passes, in this order: the
//! config's `rate_limit` (429), GET or HEAD without a body (405, 413), basic
//! auth (see [`crate::web::auth`]: verified credentials cost a hash lookup, others
//! a bcrypt check on a budget of their own, 429 when it is spent, 401 when
//! wrong), and at most `--web.max-requests` requests being served at once,
//! no client address holding more than half of them (503 straight away past
//! that, so a flood cannot queue up collections or crowd Prometheus out).
//! Every refusal is counted.

use crate::collect::scrape::{Scrape, Scraper};
use crate::model::Snapshot;
use crate::policy::registry::Transport;
use crate::web::auth::{
    BcryptBudget, ClientShare, Credentials, HttpCounters, PerClientLimit, Rejection,
};
use crate::web::config::ActiveWebConfig;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, SemaphorePermit, watch};

/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What every connection and request handler shares.
pub struct App {
    /// Collects and renders; concurrent scrapes share one collection.
    /// `/metrics` and the landing page both go through it, and the landing
    /// page shows the snapshot of the scrape it triggered.
    scraper: Arc<Scraper>,
    /// `--web.telemetry-path`: where `/metrics` is served.
    telemetry_path: String,
    /// `--web.max-requests`: one slot per request being served, taken after
    /// auth (so unverified requests never hold one); `None` when the flag is
    /// 0 (no limit).
    request_slots: Option<RequestSlots>,
    /// The web config in force (TLS, users, headers, rate limit); the
    /// reload task swaps the inner `Arc` whole, and each request and new
    /// connection reads the current one.
    web_config: Arc<RwLock<Arc<ActiveWebConfig>>>,
    /// The threads, queue and per-client limit for bcrypt checks of
    /// credentials not verified before; it outlives config reloads.
    bcrypt: BcryptBudget,
    /// Refusals and auth failures, registered on the metric registry.
    counters: HttpCounters,
}

impl App {
    /// Everything the server needs, from the pieces the wiring
    /// (`crate::exporter`) has built: registers the HTTP counters on `metrics`
    /// (the registry the scraper renders), and starts the bcrypt threads.
    /// `max_requests` is `--web.max-requests` (0: no limit); `web_config` is
    /// the slot [`crate::web::reload::watch`] swaps on reload.
    pub fn new(
        scraper: Arc<Scraper>,
        metrics: &prometheus::Registry,
        telemetry_path: String,
        max_requests: usize,
        web_config: Arc<RwLock<Arc<ActiveWebConfig>>>,
    ) -> Result<App, String> {
        let counters =
            HttpCounters::register(metrics).map_err(|err| format!("metric setup failed: {err}"))?;
        let bcrypt = BcryptBudget::for_this_machine()
            .map_err(|err| format!("cannot start the bcrypt threads: {err}"))?;
        Ok(App {
            scraper,
            telemetry_path,
            request_slots: (max_requests > 0).then(|| RequestSlots::new(max_requests)),
            web_config,
            bcrypt,
            counters,
        })
    }

    fn current_web_config(&self) -> Arc<ActiveWebConfig> {
        Arc::clone(&self.web_config.read().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `--web.max-requests` slots: that many requests served at once in all,
/// and no client address holding more than half of them, so one busy client
/// (even with the right password) cannot keep Prometheus out.
struct RequestSlots {
    all: Semaphore,
    per_client: PerClientLimit,
}

/// A request's slot, given back when the request is done.
type Slot<'a> = (ClientShare, SemaphorePermit<'a>);

impl RequestSlots {
    fn new(max_requests: usize) -> RequestSlots {
        RequestSlots {
            all: Semaphore::new(max_requests),
            per_client: PerClientLimit::new(max_requests.div_ceil(2)),
        }
    }

    /// A slot for a request from `client`, if one is free to it.
    fn take(&self, client: IpAddr) -> Option<Slot<'_>> {
        let share = self.per_client.take(client)?;
        let permit = self.all.try_acquire().ok()?;
        Some((share, permit))
    }
}

type Body = Full<Bytes>;

/// Serves on every listener until `shutdown` turns true, then lets open
/// requests finish (up to a grace period).
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(listener, Arc::clone(&app), shutdown.clone()));
    }
    while tasks.join_next().await.is_some() {}
}

/// Accepts connections on one listener, each served on its own task.
async fn accept_loop(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = accept_next(&listener) => {
                if let Some((stream, peer)) = accepted {
                    tokio::spawn(serve_accepted(stream, peer, Arc::clone(&app), graceful.watcher()));
                }
            }
            () = stop_requested(&mut shutdown) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// The next connection, or `None` after a failed accept (logged, and
/// after a pause, so running out of descriptors does not spin).
async fn accept_next(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok(accepted) => Some(accepted),
        Err(err) => {
            tracing::warn!(error = %err, "accept failed");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// One accepted connection: the TLS handshake when the config in force asks
/// for TLS, then HTTP.
async fn serve_accepted(stream: TcpStream, peer: SocketAddr, app: Arc<App>, watcher: Watcher) {
    let Some(tls) = app.current_web_config().tls.clone() else {
        return serve_connection(stream, peer.ip(), app, watcher).await;
    };
    if let Some(stream) = tls_handshake(tls, stream).await {
        serve_connection(stream, peer.ip(), app, watcher).await;
    }
}

/// The server side of a TLS handshake, bounded like the header read.
async fn tls_handshake(
    tls: Arc<rustls::ServerConfig>,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// Serves HTTP/1.1 on one connection (plain or TLS) from `client`.
async fn serve_connection<IO>(io: IO, client: IpAddr, app: Arc<App>, watcher: Watcher)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let app = Arc::clone(&app);
        async move {
            let config = app.current_web_config();
            let mut response = handle(&app, &config, client, request).await;
            for (name, value) in &config.headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Err(err) = watcher.watch(connection).await {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
async fn stop_requested(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Admits the request (rate limit, method, auth, a request slot), then
/// routes it.
async fn handle(
    app: &App,
    config: &ActiveWebConfig,
    client: IpAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    if config
        .rate_limit
        .as_ref()
        .is_some_and(|limit| !limit.try_take())
    {
        return refuse(app, Rejection::RateLimit);
    }
    if let Some(refusal) = refuse_method_or_body(&request) {
        return refusal;
    }
    if let Some(refusal) = authenticate(app, config, client, &request).await {
        return refusal;
    }
    let _slot = match &app.request_slots {
        None => None,
        Some(slots) => match slots.take(client) {
            Some(slot) => Some(slot),
            None => return refuse(app, Rejection::MaxRequests),
        },
    };
    let path = request.uri().path();
    if path == app.telemetry_path {
        metrics(app, &request).await
    } else if path == "/" {
        landing_page(app).await
    } else if path == "/healthz" {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// Only GET and HEAD without a body are served.
fn refuse_method_or_body(request: &Request<Incoming>) -> Option<Response<Body>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    has_body(request).then(|| {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        )
    })
}

/// Basic auth, when the config asks for it: `None` lets the request on.
/// Credentials verified before cost a hash; others wait for a bcrypt check
/// on the budget, or are refused at once when it is spent.
async fn authenticate(
    app: &App,
    config: &ActiveWebConfig,
    client: IpAddr,
    request: &Request<Incoming>,
) -> Option<Response<Body>> {
    let auth = config.basic_auth.as_ref()?;
    let credentials = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| Credentials::from_header(value.as_bytes()));
    let allowed = match credentials {
        None => false,
        Some(credentials) if auth.is_verified(&credentials) => true,
        Some(credentials) => match app
            .bcrypt
            .check(Arc::clone(auth), credentials, client)
            .await
        {
            Ok(allowed) => allowed,
            Err(_spent) => return Some(refuse(app, Rejection::AuthBudget)),
        },
    };
    if allowed {
        return None;
    }
    app.counters.auth_failed();
    let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"unassigned_port_exporter\""),
    );
    Some(response)
}

/// Counts the refusal and says why, with the status it calls for.
fn refuse(app: &App, rejection: Rejection) -> Response<Body> {
    app.counters.rejected(rejection);
    let (status, message) = match rejection {
        Rejection::MaxRequests => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests being served at once, in all or from your address (see --web.max-requests)\n",
        ),
        Rejection::AuthBudget => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many password checks under way; retry later\n",
        ),
        Rejection::RateLimit => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded (rate_limit in the web config)\n",
        ),
    };
    let mut response = text(status, message);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

async fn metrics(app: &App, request: &Request<Incoming>) -> Response<Body> {
    let budget = scrape_timeout(request);
    let rendered = match budget {
        Some(budget) => match tokio::time::timeout(budget, app.scraper.scrape()).await {
            Ok(rendered) => rendered,
            Err(_) => Err(format!(
                "collection did not finish within the scrape timeout ({:.1}s)",
                budget.as_secs_f64()
            )),
        },
        None => app.scraper.scrape().await,
    };
    let body = match rendered {
        Ok(scrape) => scrape,
        Err(err) => {
            tracing::warn!(error = %err, "scrape failed");
            return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{err}\n"));
        }
    };
    let mut response = if accepts_gzip(request) {
        let mut encoder =
            GzEncoder::new(Vec::with_capacity(body.text.len() / 4), Compression::fast());
        let compressed = encoder
            .write_all(&body.text)
            .and_then(|()| encoder.finish());
        match compressed {
            Ok(compressed) => {
                let mut response = Response::new(Full::new(Bytes::from(compressed)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                response
            }
            Err(_) => Response::new(Full::new(Bytes::from_owner(SharedText(body)))),
        }
    } else {
        // The scrape's own buffer, shared, not copied.
        Response::new(Full::new(Bytes::from_owner(SharedText(body))))
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// A scrape's exposition as a response body, without a copy.
struct SharedText(Arc<Scrape>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        &self.0.text
    }
}

fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// Prometheus says how long it will wait; answer a little sooner than that.
fn scrape_timeout(request: &Request<Incoming>) -> Option<Duration> {
    let seconds: f64 = request
        .headers()
        .get("x-prometheus-scrape-timeout-seconds")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds * 0.95))
}

fn accepts_gzip(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    == Some(0.0)
            });
            coding.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn landing_page(app: &App) -> Response<Body> {
    // A fresh look through the same single-flight path as /metrics.
    let scrape = app.scraper.scrape().await.ok();
    let html = render_landing(app, scrape.as_ref().map(|s| &*s.snapshot));
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn render_landing(app: &App, snapshot: Option<&Snapshot>) -> String {
    let collector = app.scraper.collector();
    let watch = collector.judge().watch();
    let registry = watch.registry();
    let mut rows = String::new();
    let listeners = snapshot.map_or(&[][..], |s| &s.listeners[..]);
    for l in listeners {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            l.port,
            l.protocol,
            escape(&l.address),
            l.exposure,
            escape(&l.netns),
            escape(&l.container_id.chars().take(12).collect::<String>()),
            escape(&l.process),
            escape(&l.pid),
            escape(&l.user),
            l.iana,
            if l.expected { "yes" } else { "<strong>no</strong>" },
            l.sockets,
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"12\">No listeners on watched ports.</td></tr>\n");
    }
    let mut raw_rows = String::new();
    for r in snapshot.map_or(&[][..], |s| &s.raw_sockets[..]) {
        raw_rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            r.kind,
            escape(&r.protocol),
            escape(&r.interface),
            if r.bpf_filter == "true" { "<strong>true</strong>" } else { r.bpf_filter },
            escape(&r.netns),
            escape(&r.process),
            escape(&r.pid),
            escape(&r.user),
            if r.expected { "yes" } else { "<strong>no</strong>" },
            r.sockets,
        ));
    }
    if raw_rows.is_empty() {
        raw_rows.push_str("<tr><td colspan=\"10\">No packet or raw sockets.</td></tr>\n");
    }
    let status = match snapshot {
        Some(s) if s.success => format!(
            "last collection took {:.3} ms",
            s.duration.as_secs_f64() * 1e3
        ),
        Some(_) => {
            "<strong>the last collection could not read the socket table</strong>".to_string()
        }
        None => "<strong>the collection failed</strong>".to_string(),
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>unassigned_port_exporter</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: left; }}
th {{ background: #f3f3f3; }}
code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head>
<body>
<h1>unassigned_port_exporter</h1>
<p>Reports sockets listening on ports IANA never assigned (port 276 among them).
Version {version}.</p>
<ul>
<li><a href="{path}">Metrics</a> (<code>{path}</code>)</li>
<li><a href="/healthz">Health</a> (<code>/healthz</code>)</li>
</ul>
<h2>Watching</h2>
<p>{tcp} TCP, {udp} UDP and {sctp} SCTP ports. IANA registry: {source}, updated {updated}.
Socket backend: {backend}; {status}.</p>
<h2>Listeners now</h2>
<table>
<tr><th>port</th><th>protocol</th><th>address</th><th>exposure</th><th>netns</th><th>container</th><th>process</th><th>pid</th><th>user</th><th>iana</th><th>expected</th><th>sockets</th></tr>
{rows}</table>
<h2>Packet and raw sockets now</h2>
<table>
<tr><th>kind</th><th>protocol</th><th>interface</th><th>bpf filter</th><th>netns</th><th>process</th><th>pid</th><th>user</th><th>expected</th><th>sockets</th></tr>
{raw_rows}</table>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        path = escape(&app.telemetry_path),
        tcp = watch.count(Transport::Tcp),
        udp = watch.count(Transport::Udp),
        sctp = watch.count(Transport::Sctp),
        source = escape(&registry.source),
        updated = escape(&registry.updated),
        backend = collector.backend_name(),
    )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
