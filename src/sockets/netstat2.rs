//! The portable socket source, on netstat2.
//!
//! netstat2 returns every socket in every state and, on Linux, the pids
//! holding each (it walks every fd in /proc to find them), so this backend
//! costs time proportional to the whole socket table. It is the fallback and
//! the reference. One difference from netlink: netstat2 does not report UDP
//! socket state, so a connected UDP socket whose local port is watched is
//! counted here and not by netlink (which asks for unconnected ones only).
//! It sees the exporter's own network namespace only, and no SCTP.

use super::{Collected, Listener, SocketSource, SourceError};
use crate::policy::registry::Transport;
use crate::policy::watch::WatchSet;
use netstat2::{AddressFamilyFlags, ProtocolFlags, ProtocolSocketInfo, TcpState};

pub struct Netstat2Source;

impl SocketSource for Netstat2Source {
    fn name(&self) -> &'static str {
        "netstat2"
    }

    fn coverage(&self) -> Vec<(Transport, bool)> {
        vec![
            (Transport::Tcp, true),
            (Transport::Udp, true),
            (Transport::UdpLite, false),
            (Transport::Sctp, false),
        ]
    }

    fn collect(&self, watch: &WatchSet) -> Result<Collected, SourceError> {
        let mut out = Collected::default();
        let families = AddressFamilyFlags::IPV4 | AddressFamilyFlags::IPV6;
        let protocols = ProtocolFlags::TCP | ProtocolFlags::UDP;
        let sockets = netstat2::get_sockets_info(families, protocols)
            .map_err(|err| SourceError(format!("netstat2 could not list sockets: {err}")))?;
        out.namespaces_read += 1;
        for socket in sockets {
            let (transport, address, port) = match &socket.protocol_socket_info {
                ProtocolSocketInfo::Tcp(tcp) if tcp.state == TcpState::Listen => {
                    (Transport::Tcp, tcp.local_addr, tcp.local_port)
                }
                ProtocolSocketInfo::Tcp(_) => continue,
                ProtocolSocketInfo::Udp(udp) => (Transport::Udp, udp.local_addr, udp.local_port),
            };
            if !watch.is_watched(transport, port) {
                continue;
            }
            let mut pids = socket.associated_pids;
            pids.sort_unstable();
            pids.dedup();
            out.listeners.push(Listener {
                transport,
                address,
                port,
                #[cfg(target_os = "linux")]
                inode: u64::from(socket.inode),
                #[cfg(target_os = "linux")]
                uid: socket.uid,
                #[cfg(not(target_os = "linux"))]
                inode: 0,
                #[cfg(not(target_os = "linux"))]
                uid: 0,
                known_pids: Some(pids),
                netns: None,
                binding: Default::default(),
                interface: String::new(),
                multipath: false,
            });
        }
        Ok(out)
    }
}
