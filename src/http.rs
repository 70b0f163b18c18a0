//! The HTTP face: `/metrics`, a landing page at `/`, and `/healthz`, on hyper 1.
//!
//! Every connection gets a header read timeout (a client that trickles
//! headers is dropped) and, with `--web.config.file`, TLS and basic auth
//! from the web config in force when it connected. Only GET and HEAD without
//! a body are served, and at most `--web.max-requests` requests run at once:
//! past that the answer is 503 straight away, so a flood cannot queue up
//! collections.

use crate::collector::Snapshot;
use crate::registry::Transport;
use crate::scrape::Scraper;
use crate::web_config::ActiveWebConfig;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the handlers share.
pub struct App {
    pub scraper: Arc<Scraper>,
    pub telemetry_path: String,
    /// `None` when `--web.max-requests=0` (no limit).
    pub request_slots: Option<Arc<Semaphore>>,
    pub max_requests: usize,
    /// TLS, users and headers; swapped whole when the web config reloads.
    pub web_config: Arc<RwLock<Arc<ActiveWebConfig>>>,
}

impl App {
    fn current_web_config(&self) -> Arc<ActiveWebConfig> {
        Arc::clone(&self.web_config.read().unwrap_or_else(|p| p.into_inner()))
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

async fn accept_loop(listener: TcpListener, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let app = Arc::clone(&app);
                let config = app.current_web_config();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    match config.tls.clone() {
                        None => serve_connection(stream, app, config, watcher).await,
                        Some(tls) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                            match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => serve_connection(stream, app, config, watcher).await,
                                Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                                Err(_) => tracing::debug!("TLS handshake timed out"),
                            }
                        }
                    }
                });
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

/// Serves HTTP/1.1 on one accepted connection (plain or TLS).
async fn serve_connection<IO>(
    io: IO,
    app: Arc<App>,
    config: Arc<ActiveWebConfig>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let app = Arc::clone(&app);
        let config = Arc::clone(&config);
        async move {
            let mut response = handle(&app, &config, request).await;
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

async fn handle(
    app: &App,
    config: &Arc<ActiveWebConfig>,
    request: Request<Incoming>,
) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if has_body(&request) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        );
    }
    let _slot = match &app.request_slots {
        None => None,
        Some(slots) => match Arc::clone(slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "too many concurrent requests (--web.max-requests={})\n",
                        app.max_requests
                    ),
                );
            }
        },
    };
    if config.requires_auth() {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|value| value.as_bytes().to_vec());
        let config = Arc::clone(config);
        // bcrypt is slow on purpose: keep it off the reactor threads.
        let allowed =
            tokio::task::spawn_blocking(move || config.authorized(authorization.as_deref()))
                .await
                .unwrap_or(false);
        if !allowed {
            let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"unassigned_port_exporter\""),
            );
            return response;
        }
    }
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
            Err(_) => Response::new(Full::new(Bytes::from(body.text.clone()))),
        }
    } else {
        Response::new(Full::new(Bytes::from(body.text.clone())))
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
    let html = render_landing(app, scrape.as_ref().map(|s| &s.snapshot));
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn render_landing(app: &App, snapshot: Option<&Snapshot>) -> String {
    let collector = app.scraper.collector();
    let watch = collector.watch();
    let registry = watch.registry();
    let mut rows = String::new();
    let listeners = snapshot.map_or(&[][..], |s| &s.listeners[..]);
    for l in listeners {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            l.port,
            l.transport,
            escape(&l.address),
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
        rows.push_str("<tr><td colspan=\"11\">No listeners on watched ports.</td></tr>\n");
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
<tr><th>port</th><th>protocol</th><th>address</th><th>netns</th><th>container</th><th>process</th><th>pid</th><th>user</th><th>iana</th><th>expected</th><th>sockets</th></tr>
{rows}</table>
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
