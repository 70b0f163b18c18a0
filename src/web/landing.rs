//! The landing page at `/`: version, links, what is watched, and the
//! listeners and packet/raw sockets of a fresh collection, as HTML.

use crate::collect::scrape::Scraper;
use crate::model::Snapshot;
use crate::policy::registry::Transport;
use crate::web::response::Body;
use http_body_util::Full;
use hyper::Response;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use std::sync::Arc;

/// The landing page: what is watched and what listens now, from a fresh
/// look through the same single-flight path as `/metrics`.
pub async fn page(scraper: &Arc<Scraper>, telemetry_path: &str) -> Response<Body> {
    let scrape = scraper.scrape().await.ok();
    let html = render(
        scraper,
        telemetry_path,
        scrape.as_ref().map(|s| &*s.snapshot),
    );
    let mut response = Response::new(Full::new(Bytes::from(html)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn render(scraper: &Scraper, telemetry_path: &str, snapshot: Option<&Snapshot>) -> String {
    let collector = scraper.collector();
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
        path = escape(telemetry_path),
        tcp = watch.count(Transport::Tcp),
        udp = watch.count(Transport::Udp),
        sctp = watch.count(Transport::Sctp),
        source = escape(&registry.source),
        updated = escape(&registry.updated),
        backend = collector.backend_name(),
    )
}

/// HTML-escapes text from the socket table and the command line.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
