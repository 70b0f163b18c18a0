//! What the local rpcbind says is registered: the ONC RPC programs, their
//! versions and the ports they listen on (what `rpcinfo -p` prints), read
//! over the portmapper protocol on `127.0.0.1:111` of the calling thread's
//! network namespace.
//!
//! One call, `DUMP` (procedure 4), in rpcbind version 3 (RFC 1833), which
//! names each registration's transport (`tcp`, `udp6`, ...) and universal
//! address (`0.0.0.0.200.148`, `::.192.47`), so IPv6 registrations are seen
//! too; a portmapper that knows only version 2 (RFC 1057, `PMAPPROC_DUMP`:
//! program, version, IP protocol, port, IPv4 only) is asked again in that
//! version. Both go over TCP with record marking (RFC 5531 section 11).
//!
//! Why by hand and not a crate: the whole client is two fixed call headers
//! and a list decoder, under 200 lines of XDR; the ONC RPC crates on
//! crates.io are code generators or full async client/server stacks
//! (rpcgen-style `.x` compilers, tokio services) that would add more code
//! and dependencies than this file, and none reads rpcbind v3's list.
//!
//! Everything here is bounded: one connect and every read and write share
//! one deadline, and a reply larger than [`MAX_REPLY`] is refused, so a
//! hostile or wedged listener on port 111 (inside a container's namespace,
//! anyone can run one) costs at most the deadline and a little memory. What
//! it returns is a claim by whatever answers on port 111, not a kernel fact;
//! `policy/allow` says so where `rpc=` is matched.

use crate::policy::registry::Transport;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The portmapper's well-known port.
pub const PORTMAPPER_PORT: u16 = 111;
/// The portmapper's program number.
pub const PORTMAPPER: u32 = 100_000;
/// Largest reply accepted (a host with every NFS service registers a few
/// dozen entries, a few KiB).
pub const MAX_REPLY: usize = 256 * 1024;

const DUMP: u32 = 4;
const CALL: u32 = 0;
const REPLY: u32 = 1;
const MSG_ACCEPTED: u32 = 0;
const SUCCESS: u32 = 0;
const PROG_MISMATCH: u32 = 2;
const LAST_FRAGMENT: u32 = 0x8000_0000;

/// One registration: a program version listening on a port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registration {
    pub program: u32,
    pub version: u32,
    /// `Tcp` or `Udp`.
    pub transport: Transport,
    /// Registered for IPv6 (`tcp6`, `udp6`); version 2 lists IPv4 only.
    pub ipv6: bool,
    pub port: u16,
}

/// Asks the portmapper on `127.0.0.1:111` of this thread's network
/// namespace for every registration, within `timeout`.
pub fn dump(timeout: Duration) -> io::Result<Vec<Registration>> {
    let deadline = Instant::now() + timeout;
    match call(deadline, 3) {
        Err(err) if err.kind() == io::ErrorKind::Unsupported => call(deadline, 2),
        other => other,
    }
}

/// One DUMP in `version` (2 or 3) on a fresh connection. A portmapper that
/// does not speak `version` gives `Unsupported`.
fn call(deadline: Instant, version: u32) -> io::Result<Vec<Registration>> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, PORTMAPPER_PORT));
    let mut stream = TcpStream::connect_timeout(&address, remaining(deadline)?)?;
    stream.set_nodelay(true)?;
    let xid = std::process::id() ^ (version << 24) ^ 0x5250_4301;
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream.write_all(&call_message(xid, version))?;
    let reply = read_record(&mut stream, deadline)?;
    parse_reply(&reply, xid, version)
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "rpcbind did not answer in time",
        ))
    } else {
        Ok(left)
    }
}

/// A record-marked CALL of DUMP with no credentials.
fn call_message(xid: u32, version: u32) -> Vec<u8> {
    let words = [
        xid, CALL, 2, // RPC protocol version
        PORTMAPPER, version, DUMP, 0, // credentials: AUTH_NONE, empty
        0, 0, // verifier: AUTH_NONE, empty
        0,
    ];
    let mut message = Vec::with_capacity(4 + words.len() * 4);
    message.extend_from_slice(&(LAST_FRAGMENT | (words.len() as u32 * 4)).to_be_bytes());
    for word in words {
        message.extend_from_slice(&word.to_be_bytes());
    }
    message
}

/// Reads fragments until the last one; refuses more than [`MAX_REPLY`].
fn read_record(stream: &mut TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut record = Vec::new();
    loop {
        let mut mark = [0u8; 4];
        read_exact_by(stream, &mut mark, deadline)?;
        let mark = u32::from_be_bytes(mark);
        let length = (mark & !LAST_FRAGMENT) as usize;
        if record.len() + length > MAX_REPLY {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("rpcbind's reply is larger than {MAX_REPLY} bytes"),
            ));
        }
        let start = record.len();
        record.resize(start + length, 0);
        read_exact_by(stream, &mut record[start..], deadline)?;
        if mark & LAST_FRAGMENT != 0 {
            return Ok(record);
        }
    }
}

fn read_exact_by(stream: &mut TcpStream, buffer: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut filled = 0;
    while filled < buffer.len() {
        stream.set_read_timeout(Some(remaining(deadline)?))?;
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "rpcbind closed the connection mid-reply",
                ));
            }
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// An XDR reader over a reply.
struct Xdr<'a> {
    bytes: &'a [u8],
}

impl Xdr<'_> {
    fn u32(&mut self) -> io::Result<u32> {
        let Some((word, rest)) = self.bytes.split_first_chunk::<4>() else {
            return Err(truncated());
        };
        self.bytes = rest;
        Ok(u32::from_be_bytes(*word))
    }

    /// Variable-length opaque data or string, padded to 4 bytes.
    fn opaque(&mut self) -> io::Result<&[u8]> {
        let length = self.u32()? as usize;
        let padded = length.checked_add(3).ok_or_else(truncated)? & !3;
        if padded > self.bytes.len() {
            return Err(truncated());
        }
        let (value, rest) = self.bytes.split_at(padded);
        self.bytes = rest;
        Ok(&value[..length])
    }
}

fn truncated() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "rpcbind's reply is truncated")
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Decodes a DUMP reply of `version`.
fn parse_reply(reply: &[u8], xid: u32, version: u32) -> io::Result<Vec<Registration>> {
    let mut xdr = Xdr { bytes: reply };
    if xdr.u32()? != xid || xdr.u32()? != REPLY {
        return Err(invalid("not a reply to our call".to_string()));
    }
    if xdr.u32()? != MSG_ACCEPTED {
        return Err(invalid("rpcbind refused the call".to_string()));
    }
    let _verifier_flavor = xdr.u32()?;
    xdr.opaque()?;
    match xdr.u32()? {
        SUCCESS => {}
        PROG_MISMATCH => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the portmapper does not speak version {version}"),
            ));
        }
        status => return Err(invalid(format!("rpcbind answered status {status}"))),
    }
    let mut registrations = Vec::new();
    while xdr.u32()? == 1 {
        let entry = if version == 2 {
            let (program, version, protocol, port) =
                (xdr.u32()?, xdr.u32()?, xdr.u32()?, xdr.u32()?);
            let transport = match protocol {
                6 => Some(Transport::Tcp),
                17 => Some(Transport::Udp),
                _ => None,
            };
            transport
                .zip(u16::try_from(port).ok())
                .map(|(transport, port)| Registration {
                    program,
                    version,
                    transport,
                    ipv6: false,
                    port,
                })
        } else {
            let (program, version) = (xdr.u32()?, xdr.u32()?);
            let netid = String::from_utf8_lossy(xdr.opaque()?).into_owned();
            let address = String::from_utf8_lossy(xdr.opaque()?).into_owned();
            xdr.opaque()?; // owner
            parse_netid(&netid)
                .zip(universal_port(&address))
                .map(|((transport, ipv6), port)| Registration {
                    program,
                    version,
                    transport,
                    ipv6,
                    port,
                })
        };
        registrations.extend(entry);
    }
    registrations.sort();
    registrations.dedup();
    Ok(registrations)
}

/// `tcp`, `udp`, `tcp6`, `udp6`: the transports with ports.
fn parse_netid(netid: &str) -> Option<(Transport, bool)> {
    match netid {
        "tcp" => Some((Transport::Tcp, false)),
        "udp" => Some((Transport::Udp, false)),
        "tcp6" => Some((Transport::Tcp, true)),
        "udp6" => Some((Transport::Udp, true)),
        _ => None, // local (unix socket) registrations and the rest
    }
}

/// The port of a universal address: its last two dotted numbers.
fn universal_port(address: &str) -> Option<u16> {
    let mut parts = address.rsplitn(3, '.');
    let low: u16 = parts.next()?.parse().ok()?;
    let high: u16 = parts.next()?.parse().ok()?;
    parts.next()?; // the host part must be there
    if high > 255 || low > 255 {
        return None;
    }
    Some(high << 8 | low)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(values: &[u32]) -> Vec<u8> {
        values.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    fn string(text: &str) -> Vec<u8> {
        let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes.resize(4 + text.len().div_ceil(4) * 4, 0);
        bytes
    }

    const HEADER: [u32; 6] = [7, REPLY, MSG_ACCEPTED, 0, 0, SUCCESS];

    #[test]
    fn call_is_a_record_marked_dump() {
        let message = call_message(7, 3);
        assert_eq!(message.len(), 44);
        assert_eq!(&message[..4], &(LAST_FRAGMENT | 40).to_be_bytes());
        assert_eq!(
            &message[4..28],
            &words(&[7, CALL, 2, PORTMAPPER, 3, DUMP])[..]
        );
    }

    #[test]
    fn version_3_lists_carry_transport_and_universal_address() {
        let mut reply = words(&HEADER);
        for (program, version, netid, address) in [
            (100024, 1, "udp", "0.0.0.0.201.242"),
            (100024, 1, "tcp6", "::.141.141"),
            (100000, 4, "local", "/run/rpcbind.sock"),
        ] {
            reply.extend(words(&[1, program, version]));
            reply.extend(string(netid));
            reply.extend(string(address));
            reply.extend(string("superuser"));
        }
        reply.extend(words(&[0]));
        let parsed = parse_reply(&reply, 7, 3).unwrap();
        assert_eq!(
            parsed,
            [
                Registration {
                    program: 100024,
                    version: 1,
                    transport: Transport::Tcp,
                    ipv6: true,
                    port: 36237,
                },
                Registration {
                    program: 100024,
                    version: 1,
                    transport: Transport::Udp,
                    ipv6: false,
                    port: 51698,
                },
            ]
        );
    }

    #[test]
    fn version_2_lists_are_ipv4_tuples() {
        let mut reply = words(&HEADER);
        reply.extend(words(&[1, 100021, 4, 17, 40157, 1, 100000, 2, 6, 111, 0]));
        let parsed = parse_reply(&reply, 7, 2).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].program, 100021);
        assert_eq!(parsed[1].transport, Transport::Udp);
        assert_eq!(parsed[1].port, 40157);
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        let mut mismatch = words(&HEADER);
        mismatch[20..24].copy_from_slice(&PROG_MISMATCH.to_be_bytes());
        mismatch.extend(words(&[2, 2]));
        assert_eq!(
            parse_reply(&mismatch, 7, 3).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        assert!(parse_reply(&words(&[8, REPLY]), 7, 3).is_err(), "wrong xid");
        let mut cut = words(&HEADER);
        cut.extend(words(&[1, 100024, 1, 400]));
        assert!(
            parse_reply(&cut, 7, 3).is_err(),
            "a string longer than the reply"
        );
        assert!(parse_reply(&words(&HEADER), 7, 3).is_err(), "no list end");
        assert_eq!(universal_port("127.0.0.1.0.111"), Some(111));
        assert_eq!(universal_port("1.300"), None);
        assert_eq!(universal_port("0.1"), None);
    }
}
