//! Shared by the benchmarks: the real exporter binary on a loopback port,
//! scraped over HTTP, with its descriptors and peak memory read from /proc.
//!
//! The exporter binds port 0 and the benchmark reads the port back from its
//! `msg="Listening on"` log line (as tests/common does), so no free port is
//! picked first and then raced for. Its other log lines are passed on when
//! they are warnings or errors.

#![allow(dead_code)] // each benchmark uses a different part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The exporter binary, killed when dropped.
pub struct RunningExporter {
    pub child: Child,
    pub port: u16,
}

impl RunningExporter {
    /// Starts the binary with `extra` flags and waits until it has logged
    /// the address it bound.
    pub fn start(extra: &[String]) -> RunningExporter {
        RunningExporter::start_binary(env!("CARGO_BIN_EXE_unassigned_port_exporter"), extra)
    }

    /// [`RunningExporter::start`] with another build of the exporter (a
    /// benchmark comparing two versions in one run).
    pub fn start_binary(binary: &str, extra: &[String]) -> RunningExporter {
        let mut child = Command::new(binary)
            .arg("--web.listen-address=127.0.0.1:0")
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (found, port) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(port) = listening_port(&line) {
                    let _ = found.send(port);
                } else if !line.contains(" level=info ") {
                    eprintln!("exporter: {line}");
                }
            }
        });
        match port.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => RunningExporter { child, port },
            Err(why) => {
                let _ = child.kill();
                panic!("the exporter logged no listening address ({why})");
            }
        }
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

/// The port of a `msg="Listening on" address=HOST:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    let address = line
        .split(' ')
        .find_map(|pair| pair.strip_prefix("address="))?;
    address.rsplit_once(':')?.1.parse().ok()
}

impl Drop for RunningExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
