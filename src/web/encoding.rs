//! Content encoding of the exposition: gzip when the client accepts it (as
//! Prometheus does), the plain text otherwise.

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::HeaderMap;
use hyper::header;
use std::io::Write;

/// `text` compressed, when the request's `Accept-Encoding` takes gzip (and
/// compression works); `None`: send the plain text (the caller shares the
/// scrape's buffer rather than copying it).
pub fn gzip(headers: &HeaderMap, text: &[u8]) -> Option<Vec<u8>> {
    if !accepts_gzip(headers) {
        return None;
    }
    let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::fast());
    encoder.write_all(text).and_then(|()| encoder.finish()).ok()
}

/// `Accept-Encoding` names gzip without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn accepting(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip(&accepting("gzip")));
        assert!(accepts_gzip(&accepting("deflate, GZIP;q=0.5")));
        assert!(!accepts_gzip(&accepting("gzip;q=0")));
        assert!(!accepts_gzip(&accepting("br")));
        assert!(!accepts_gzip(&HeaderMap::new()));
        let compressed = gzip(&accepting("gzip"), b"hello hello hello").unwrap();
        assert!(compressed.starts_with(&[0x1f, 0x8b]));
        assert_eq!(gzip(&HeaderMap::new(), b"hello"), None);
    }
}
