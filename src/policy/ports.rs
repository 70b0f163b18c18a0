//! Port lists as operators write them: `276`, `8000-8100`, `53/udp`,
//! comma-separated (`--watch.ports`, allow-rule targets). The parser and
//! the transports it accepts live here, below both the watch set and the
//! allow rules, which use them.

use crate::policy::registry::Transport;

/// The transports the exporter collects and watches.
pub const WATCHED_TRANSPORTS: [Transport; 3] = [Transport::Tcp, Transport::Udp, Transport::Sctp];

/// An inclusive port range from `--watch.ports`, optionally for one transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
    /// `None` means every watched transport.
    pub transport: Option<Transport>,
}

/// Parses one `PORT`, `FIRST-LAST`, optionally followed by `/tcp`, `/udp` or `/sctp`.
pub fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let text = text.trim();
    let (ports, transport) = split_transport(text)?;
    let port = |part: &str| -> Result<u16, String> {
        let part = part.trim();
        match part.parse::<u32>() {
            Ok(n) if n <= 65535 => Ok(n as u16),
            Ok(_) => Err(format!("port {part} is out of range (0-65535)")),
            Err(_) => Err(format!("{part:?} is not a port number")),
        }
    };
    let (first, last) = match ports.split_once('-') {
        None => {
            let p = port(ports)?;
            (p, p)
        }
        Some((a, b)) => (port(a)?, port(b)?),
    };
    if first > last {
        return Err(format!("port range {ports:?} runs backwards"));
    }
    Ok(PortRange {
        first,
        last,
        transport,
    })
}

/// Parses a comma-separated list such as `276,8000-8100,53/udp`.
pub fn parse_port_list(text: &str) -> Result<Vec<PortRange>, String> {
    if text.trim().is_empty() {
        return Err("empty port list".to_string());
    }
    text.split(',').map(parse_port_range).collect()
}

fn split_transport(text: &str) -> Result<(&str, Option<Transport>), String> {
    match text.split_once('/') {
        None => Ok((text, None)),
        Some((ports, name)) => match Transport::parse(name) {
            Some(t) if WATCHED_TRANSPORTS.contains(&t) => Ok((ports, Some(t))),
            _ => Err(format!("unknown transport {name:?}: use tcp, udp or sctp")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_reject_bad_input_clearly() {
        assert_eq!(
            parse_port_list("70000").unwrap_err(),
            "port 70000 is out of range (0-65535)"
        );
        assert_eq!(
            parse_port_list("5-3").unwrap_err(),
            "port range \"5-3\" runs backwards"
        );
        assert_eq!(
            parse_port_list("abc").unwrap_err(),
            "\"abc\" is not a port number"
        );
        assert!(parse_port_list("").is_err());
        assert!(parse_port_list("1,").is_err());
        assert!(parse_port_list("53/quic").unwrap_err().contains("quic"));
        assert_eq!(
            parse_port_list("276, 8000-8100").unwrap(),
            vec![
                PortRange {
                    first: 276,
                    last: 276,
                    transport: None
                },
                PortRange {
                    first: 8000,
                    last: 8100,
                    transport: None
                }
            ]
        );
    }
}
