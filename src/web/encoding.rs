//! Content encoding of the exposition: gzip when the client accepts it (as
//! Prometheus does), the plain text otherwise.

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::HeaderMap;
use hyper::header;
use std::io::Write;

/// The body as sent, and whether it is gzip-compressed.
pub struct Encoded {
    pub body: Vec<u8>,
    pub gzip: bool,
}

/// Compresses `text` when the request's `Accept-Encoding` takes gzip (and
/// compression works); the plain text otherwise.
pub fn encode(headers: &HeaderMap, text: &[u8]) -> Encoded {
    if accepts_gzip(headers) {
        let mut encoder = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::fast());
        if let Ok(body) = encoder.write_all(text).and_then(|()| encoder.finish()) {
            return Encoded { body, gzip: true };
        }
    }
    Encoded {
        body: text.to_vec(),
        gzip: false,
    }
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
        let encoded = encode(&accepting("gzip"), b"hello hello hello");
        assert!(encoded.gzip && encoded.body.starts_with(&[0x1f, 0x8b]));
        let plain = encode(&HeaderMap::new(), b"hello");
        assert_eq!((plain.gzip, plain.body.as_slice()), (false, &b"hello"[..]));
    }
}
