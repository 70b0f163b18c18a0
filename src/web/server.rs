//! The HTTP face: accepts connections (TLS from the web config in force when
//! one connects, a header read timeout for every request) and routes
//! `/metrics`, the landing page at `/` and `/healthz`, on hyper 1. What
//! gets in is [`crate::web::admission`]'s decision; the page is
//! [`crate::web::landing`], the encoding [`crate::web::encoding`].

use crate::collect::scrape::{Scrape, Scraper};
use crate::web::admission::Admission;
use crate::web::auth::ConnectionRecord;
use crate::web::config::ActiveWebConfig;
use crate::web::encoding;
use crate::web::landing;
use crate::web::response::{Body, text};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

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
    /// Rate limit, auth, request slots and their counters.
    admission: Admission,
    /// The web config in force (TLS, users, headers, rate limit); the
    /// reload task swaps the inner `Arc` whole, and each request and new
    /// connection reads the current one.
    web_config: Arc<RwLock<Arc<ActiveWebConfig>>>,
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
        Ok(App {
            scraper,
            telemetry_path,
            admission: Admission::new(metrics, max_requests)?,
            web_config,
        })
    }

    fn current_web_config(&self) -> Arc<ActiveWebConfig> {
        Arc::clone(&self.web_config.read().unwrap_or_else(|p| p.into_inner()))
    }
}

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
    // What this connection has shown the bcrypt scheduler, across its requests.
    let record = Arc::new(ConnectionRecord::new());
    let service = hyper::service::service_fn(move |request| {
        let app = Arc::clone(&app);
        let record = Arc::clone(&record);
        async move {
            let config = app.current_web_config();
            let mut response = handle(&app, &config, client, &record, request).await;
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

/// Admits the request (see [`Admission::admit`]), then routes it.
async fn handle(
    app: &App,
    config: &ActiveWebConfig,
    client: IpAddr,
    connection: &ConnectionRecord,
    request: Request<Incoming>,
) -> Response<Body> {
    let _slot = match app
        .admission
        .admit(config, client, connection, &request)
        .await
    {
        Ok(slot) => slot,
        Err(refusal) => return refusal,
    };
    let path = request.uri().path();
    if path == app.telemetry_path {
        metrics(app, &request).await
    } else if path == "/" {
        landing::page(&app.scraper, &app.telemetry_path).await
    } else if path == "/healthz" {
        text(StatusCode::OK, "ok\n")
    } else {
        text(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// `/metrics`: one collection (shared with concurrent scrapes), bounded by
/// the scrape timeout Prometheus announces, gzip-encoded when accepted.
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
    let scrape = match rendered {
        Ok(scrape) => scrape,
        Err(err) => {
            tracing::warn!(error = %err, "scrape failed");
            return text(StatusCode::SERVICE_UNAVAILABLE, &format!("{err}\n"));
        }
    };
    let mut response = match encoding::gzip(request.headers(), &scrape.text) {
        Some(compressed) => {
            let mut response = Response::new(Full::new(Bytes::from(compressed)));
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        // The scrape's own buffer, shared, not copied.
        None => Response::new(Full::new(Bytes::from_owner(SharedText(scrape)))),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
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

/// A scrape's exposition as a response body, without a copy.
struct SharedText(std::sync::Arc<Scrape>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        &self.0.text
    }
}
