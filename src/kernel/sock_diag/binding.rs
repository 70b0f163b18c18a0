//! How a listener is bound beyond its address, read from an inet_diag
//! reply: `IPV6_V6ONLY` (the `INET_DIAG_SKV6ONLY` attribute) and the bound
//! interface (`idiag_if`). What that means for exposure is
//! `crate::policy::exposure`'s to decide.

pub use crate::kernel::sock_diag::wire::INET_DIAG_MSG_LEN;
use crate::kernel::sock_diag::wire::{attributes, u32_at};
use crate::policy::exposure::Binding;

pub const INET_DIAG_SKV6ONLY: u16 = 11;
/// `INET_DIAG_ULP_INFO`: the upper layer protocol of a TCP socket, nested;
/// `INET_ULP_INFO_NAME` inside it is the protocol's name.
pub const INET_DIAG_ULP_INFO: u16 = 19;
const INET_ULP_INFO_NAME: u16 = 1;
/// Offset of `id.idiag_if` in `struct inet_diag_msg`.
pub const IDIAG_IF_AT: usize = 40;

/// Reads [`Binding`] from one `SOCK_DIAG_BY_FAMILY` payload of an
/// inet_diag dump (the 72-byte `inet_diag_msg` and the attributes after
/// it). A payload shorter than the message gives the default (the
/// caller's own parse reports that as an error).
pub fn binding(payload: &[u8]) -> Binding {
    if payload.len() < INET_DIAG_MSG_LEN {
        return Binding::default();
    }
    let mut found = Binding {
        v6only: None,
        ifindex: u32_at(payload, IDIAG_IF_AT),
    };
    for (kind, value) in attributes(&payload[INET_DIAG_MSG_LEN..]) {
        if kind == INET_DIAG_SKV6ONLY && !value.is_empty() {
            found.v6only = Some(value[0] != 0);
        }
    }
    found
}

/// Whether an inet_diag reply is of a TCP socket whose upper layer is
/// MPTCP: an MPTCP socket's subflow (an MPTCP listener's TCP subflow
/// carries the MPTCP socket's inode, so it stands for that listener).
pub fn upper_layer_is_mptcp(payload: &[u8]) -> bool {
    payload.len() >= INET_DIAG_MSG_LEN
        && attributes(&payload[INET_DIAG_MSG_LEN..]).any(|(kind, value)| {
            kind == INET_DIAG_ULP_INFO
                && attributes(value).any(|(inner, name)| {
                    inner == INET_ULP_INFO_NAME && name.split(|&b| b == 0).next() == Some(b"mptcp")
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::sock_diag::wire::tests::attribute;
    use std::net::IpAddr;

    fn message(family: i32, ifindex: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = family as u8;
        msg[1] = crate::kernel::sock_diag::wire::TCP_LISTEN;
        msg[IDIAG_IF_AT..IDIAG_IF_AT + 4].copy_from_slice(&ifindex.to_ne_bytes());
        for attr in attrs {
            msg.extend_from_slice(attr);
        }
        msg
    }

    #[test]
    fn reads_v6only_and_the_bound_interface() {
        let shutdown = attribute(8, &[0]);
        let dual = message(
            libc::AF_INET6,
            0,
            &[shutdown.clone(), attribute(INET_DIAG_SKV6ONLY, &[0])],
        );
        let only = message(
            libc::AF_INET6,
            2,
            &[shutdown.clone(), attribute(INET_DIAG_SKV6ONLY, &[1])],
        );
        let v4 = message(libc::AF_INET, 0, &[shutdown]);
        assert_eq!(
            binding(&dual),
            Binding {
                v6only: Some(false),
                ifindex: 0
            }
        );
        assert_eq!(
            binding(&only),
            Binding {
                v6only: Some(true),
                ifindex: 2
            }
        );
        assert_eq!(
            binding(&v4),
            Binding {
                v6only: None,
                ifindex: 0
            }
        );
        assert_eq!(binding(&[0; 10]), Binding::default());
        let unspecified: IpAddr = "::".parse().unwrap();
        let specific: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(binding(&dual).dual_stack(unspecified), Some(true));
        assert_eq!(binding(&only).dual_stack(unspecified), Some(false));
        assert_eq!(binding(&dual).dual_stack(specific), Some(false));
        assert_eq!(
            binding(&v4).dual_stack("0.0.0.0".parse().unwrap()),
            Some(false)
        );
        assert_eq!(Binding::default().dual_stack_label(unspecified), "unknown");
        assert_eq!(binding(&dual).dual_stack_label(unspecified), "true");
    }

    #[test]
    fn an_mptcp_subflow_is_told_by_its_upper_layer_name() {
        // As Linux 6.18 sends it: INET_DIAG_ULP_INFO { INET_ULP_INFO_NAME "mptcp\0" }.
        let subflow = message(
            libc::AF_INET,
            0,
            &[attribute(
                INET_DIAG_ULP_INFO,
                b"\n\x00\x01\x00mptcp\x00\x00\x00",
            )],
        );
        assert!(upper_layer_is_mptcp(&subflow));
        let tls = message(
            libc::AF_INET,
            0,
            &[attribute(INET_DIAG_ULP_INFO, b"\x08\x00\x01\x00tls\x00")],
        );
        assert!(!upper_layer_is_mptcp(&tls));
        assert!(!upper_layer_is_mptcp(&message(libc::AF_INET, 0, &[])));
        assert!(!upper_layer_is_mptcp(&[0; 10]));
    }
}
