//! The `/proc/net/packet`, `/proc/net/raw` and `/proc/net/raw6` tables: the
//! fallback when the kernel has no packet_diag or raw_diag.
//!
//! `packet`: one header line, then `sk RefCnt Type Proto Iface R Rmem User
//! Inode` with the protocol in hex (host order) and the bound interface
//! index in decimal. No filter information: `bpf_filter` is `Unknown`.
//!
//! `raw`/`raw6`: the `/proc/net/udp` layout; the "port" of the local address
//! is the raw socket's protocol, `uid` is the 8th field and `inode` the
//! 10th. The bound interface is not shown: `ifindex` is `None`.
//!
//! Malformed lines are errors (the kernel writes these tables, so a line
//! that does not parse means a layout this code does not know).

use super::{BpfFilter, RawKind, RawSocket};

/// Parses the text of `/proc/net/packet`, appending to `out`.
pub fn parse_packet(text: &[u8], out: &mut Vec<RawSocket>) -> Result<(), String> {
    for (number, line) in data_lines(text)? {
        let bad = |what: &str| format!("/proc/net/packet line {number}: {what}");
        let mut fields = line.split_ascii_whitespace();
        let mut next = |name: &str| {
            fields
                .next()
                .ok_or_else(|| bad(&format!("no {name} field")))
        };
        let _sk = next("sk")?;
        let _refcnt = next("RefCnt")?;
        let _type = next("Type")?;
        let protocol = next("Proto")?;
        let iface = next("Iface")?;
        let _running = next("R")?;
        let _rmem = next("Rmem")?;
        let user = next("User")?;
        let inode = next("Inode")?;
        out.push(RawSocket {
            kind: RawKind::Packet,
            protocol: u16::from_str_radix(protocol, 16)
                .map_err(|_| bad(&format!("protocol {protocol:?} is not hex")))?,
            ifindex: Some(
                iface
                    .parse()
                    .map_err(|_| bad(&format!("bad interface {iface:?}")))?,
            ),
            bpf_filter: BpfFilter::Unknown,
            uid: Some(
                user.parse()
                    .map_err(|_| bad(&format!("bad uid {user:?}")))?,
            ),
            inode: inode
                .parse()
                .map_err(|_| bad(&format!("bad inode {inode:?}")))?,
        });
    }
    Ok(())
}

/// Parses the text of `/proc/net/raw` or `/proc/net/raw6`, appending to `out`.
pub fn parse_raw(text: &[u8], out: &mut Vec<RawSocket>) -> Result<(), String> {
    for (number, line) in data_lines(text)? {
        let bad = |what: &str| format!("/proc/net/raw line {number}: {what}");
        let mut fields = [""; 10];
        let mut count = 0;
        for (slot, field) in fields.iter_mut().zip(line.split_ascii_whitespace()) {
            *slot = field;
            count += 1;
        }
        if count < 10 {
            return Err(bad("fewer than 10 fields"));
        }
        let (address, protocol) = fields[1]
            .split_once(':')
            .ok_or_else(|| bad("no ADDRESS:PROTOCOL"))?;
        if !matches!(address.len(), 8 | 32) || !address.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(&format!("bad local address {address:?}")));
        }
        out.push(RawSocket {
            kind: RawKind::Raw,
            protocol: u16::from_str_radix(protocol, 16)
                .map_err(|_| bad(&format!("protocol {protocol:?} is not hex")))?,
            ifindex: None,
            bpf_filter: BpfFilter::Unknown,
            uid: Some(fields[7].parse().map_err(|_| bad("bad uid"))?),
            inode: fields[9].parse().map_err(|_| bad("bad inode"))?,
        });
    }
    Ok(())
}

/// The non-empty lines after the header, numbered from 1 as in the file.
fn data_lines(text: &[u8]) -> Result<impl Iterator<Item = (usize, &str)>, String> {
    let text =
        std::str::from_utf8(text).map_err(|_| "a /proc/net table is not text".to_string())?;
    Ok(text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| (index + 1, line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the test machine: a filtered ETH_P_ALL socket and an ARP
    // socket bound to lo; a raw TCP socket bound to 127.0.0.1; raw ICMPv6 and
    // a raw UDP socket bound to ::1.
    const PACKET: &str = "\
sk               RefCnt Type Proto  Iface R Rmem   User   Inode
0000000051613f93 3      3    0003   0     1 0      0      22041 
00000000a1b92b79 3      2    0806   1     1 0      1000   22042 
";
    const RAW: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 241: 0100007F:0006 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 22043 2 00000000b0da2c81 0
";
    const RAW6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   77: 00000000000000000000000000000000:003A 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 22044 2 000000006e780617 0
  111: 00000000000000000000000001000000:0011 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 22045 2 000000000615045e 0
";

    #[test]
    fn reads_proc_net_packet() {
        let mut out = Vec::new();
        parse_packet(PACKET.as_bytes(), &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                RawSocket {
                    kind: RawKind::Packet,
                    protocol: 3,
                    ifindex: Some(0),
                    bpf_filter: BpfFilter::Unknown,
                    uid: Some(0),
                    inode: 22041,
                },
                RawSocket {
                    kind: RawKind::Packet,
                    protocol: 0x0806,
                    ifindex: Some(1),
                    bpf_filter: BpfFilter::Unknown,
                    uid: Some(1000),
                    inode: 22042,
                },
            ]
        );
    }

    #[test]
    fn reads_proc_net_raw_and_raw6() {
        let mut out = Vec::new();
        parse_raw(RAW.as_bytes(), &mut out).unwrap();
        parse_raw(RAW6.as_bytes(), &mut out).unwrap();
        let seen: Vec<(u16, Option<u32>, u64)> =
            out.iter().map(|s| (s.protocol, s.uid, s.inode)).collect();
        assert_eq!(
            seen,
            vec![
                (6, Some(0), 22043),
                (58, Some(0), 22044),
                (17, Some(101), 22045)
            ]
        );
        assert!(
            out.iter()
                .all(|s| s.kind == RawKind::Raw && s.ifindex.is_none())
        );
    }

    #[test]
    fn header_only_tables_are_empty_and_bad_lines_are_errors() {
        let mut out = Vec::new();
        parse_packet(PACKET.lines().next().unwrap().as_bytes(), &mut out).unwrap();
        parse_raw(b"  sl  local_address\n", &mut out).unwrap();
        parse_raw(b"", &mut out).unwrap();
        assert!(out.is_empty());
        let error = parse_packet(b"header\n00 3 3 zz 0 1 0 0 1\n", &mut out).unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("not hex"),
            "{error}"
        );
        assert!(parse_packet(b"header\n00 3 3\n", &mut out).is_err());
        assert!(parse_raw(b"header\n 1: 0100007F:0006 00000000:0000 07\n", &mut out).is_err());
        assert!(
            parse_raw(
                b"header\n 1: 7F:0006 0:0 07 0:0 0:0 0 0 0 1 2 0 0\n",
                &mut out
            )
            .is_err()
        );
        assert!(parse_raw(&[b'h', b'\n', 0xff, 0xfe], &mut out).is_err());
        assert!(out.is_empty());
    }
}
