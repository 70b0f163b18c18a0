//! Shared by the benchmarks: the real exporter binary on a loopback port,
//! scraped over HTTP, with its descriptors and peak memory read from /proc.

#![allow(dead_code)] // each benchmark uses a different part of this

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The exporter binary, killed when dropped.
pub struct RunningExporter {
    pub child: Child,
    pub port: u16,
}

impl RunningExporter {
    /// Starts the binary with `extra` flags (and warnings-only logs) and
    /// waits until it accepts connections.
    pub fn start(extra: &[String]) -> RunningExporter {
        RunningExporter::start_binary(env!("CARGO_BIN_EXE_unassigned_port_exporter"), extra)
    }

    /// [`RunningExporter::start`] with another build of the exporter (a
    /// benchmark comparing two versions in one run).
    pub fn start_binary(binary: &str, extra: &[String]) -> RunningExporter {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .args(extra)
            .spawn()
            .unwrap();
        let exporter = RunningExporter { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "exporter did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        exporter
    }

    /// One `/metrics` request; panics unless it answers 200.
    pub fn scrape(&self) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
    }

    /// One `/metrics` request, gzip-encoded when `gzip`; returns the body
    /// as sent (compressed when the exporter compressed it) and whether it
    /// came gzip-encoded. Panics unless it answers 200.
    pub fn scrape_body(&self, gzip: bool) -> (Vec<u8>, bool) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let accept = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: bench\r\n{accept}Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of headers");
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let gzipped = head.contains("content-encoding: gzip");
        (response.split_off(end + 4), gzipped)
    }

    /// Open file descriptors now.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Peak resident memory (VmHWM) in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kib / 1024.0
    }
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
