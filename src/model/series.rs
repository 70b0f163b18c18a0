//! The series of one snapshot: a listener, a packet/raw socket, a process
//! owning one of them. Each is built here from what the readers found and
//! who owns it, so every label is decided in one place.

use super::judge::Judged;
use super::{Judge, NetnsNamer, Protocol};
use crate::kernel::sock_diag::raw::RawKind;
use crate::model::Holder;
use crate::owners::Owner;
use crate::policy::allow::{OwnerFacts, SocketFacts};
use crate::policy::exposure;
use crate::policy::registry::Transport;
use crate::sockets::{Listener, SeenRawSocket};
use std::net::IpAddr;

crate::label_set! {
    /// One series of `unassigned_port_listeners`: labels and socket count.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct ListenerSeries {
        labels {
            port: u16,
            protocol: Protocol,
            family: &'static str,
            address: String,
            process: String,
            pid: String,
            user: String,
            iana: &'static str,
            expected: bool,
            netns: String,
            container_id: String,
            pod_uid: String,
            /// `exposure::Exposure` of the bound address (and interface).
            exposure: &'static str,
            /// An IPv6 socket on `::` that accepts IPv4 too: "true", "false",
            /// or "unknown" where the backend cannot tell.
            dual_stack: &'static str,
            /// `SO_BINDTODEVICE` interface, "" for none.
            interface: String,
            /// Whether a process holds the socket (`model/holder.rs`).
            holder: Holder,
        }
        values {
            sockets: u64,
        }
    }
}

crate::label_set! {
    /// One series of `unassigned_port_rpc_program_info`: an ONC RPC program
    /// version registered with the rpcbind of a reported listener's
    /// namespace on that listener's port and protocol.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct RpcProgramSeries {
        labels {
            port: u16,
            protocol: &'static str,
            netns: String,
            program: u32,
            /// `model/rpc.rs`'s name, or the number.
            name: String,
            version: u32,
        }
        values {}
    }
}

impl RpcProgramSeries {
    pub fn new(port: u16, transport: Transport, netns: String, program: u32, version: u32) -> Self {
        RpcProgramSeries {
            port,
            protocol: transport.as_str(),
            netns,
            program,
            name: super::rpc::label(program),
            version,
        }
    }
}

crate::label_set! {
    /// One series of `unassigned_port_raw_sockets`: labels and socket count.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct RawSocketSeries {
        labels {
            kind: &'static str,
            protocol: String,
            interface: String,
            bpf_filter: &'static str,
            process: String,
            pid: String,
            user: String,
            netns: String,
            container_id: String,
            pod_uid: String,
            expected: bool,
        }
        values {
            sockets: u64,
        }
    }
}

crate::label_set! {
    /// One series of `unassigned_port_forwarded_ports`: a watched port the
    /// kernel forwards elsewhere (`crate::collect::forwarded`), and how many
    /// rules or holders do it.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct ForwardedSeries {
        labels {
            port: u16,
            protocol: Protocol,
            /// Where the forwarding happens.
            netns: String,
            /// "redirect", "dnat" or "holder".
            mechanism: &'static str,
            to_address: String,
            to_port: String,
            to_netns: String,
            container_id: String,
            expected: bool,
        }
        values {
            count: u64,
        }
    }
}

crate::label_set! {
    /// One series of `unassigned_port_listener_process_info`: a process that
    /// owns a reported listener or packet/raw socket.
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
    pub struct ProcessInfoSeries {
        labels {
            pid: u32,
            /// Namespace of the first socket it was found owning.
            netns: String,
            process: String,
            /// The process's user (its real uid, named).
            user: String,
            exe: String,
            exe_deleted: bool,
            /// SHA-256 of the executable; "" until the hash worker has it.
            exe_sha256: String,
            ppid: String,
            parent_process: String,
            unit: String,
            container_id: String,
            /// `/proc/PID/loginuid`; "" when unset.
            login_uid: String,
            login_user: String,
        }
        values {}
    }
}

impl ListenerSeries {
    /// A listener's labels (with a count of 0: the caller counts), given
    /// whether a process holds it and the RPC programs registered on its
    /// port (allow rules may check both). `addresses`: the up addresses of
    /// the listener's namespace, which decide a wildcard's exposure (`None`:
    /// not known).
    pub fn new(
        listener: &Listener,
        owner: &Owner,
        socket: (Holder, &[u32]),
        judge: &Judge,
        namer: &NetnsNamer,
        addresses: Option<&[IpAddr]>,
    ) -> Self {
        let protocol = listener.protocol();
        let exposure = exposure::classify_in_namespace(
            listener.address,
            &listener.interface,
            listener.binding.dual_stack(listener.address),
            addresses,
        );
        let (holder, rpc_programs) = socket;
        let facts = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(exposure),
                holder: Some(holder),
                rpc_programs,
            },
            ..owner.facts()
        };
        ListenerSeries {
            port: listener.port,
            protocol,
            family: listener.family(),
            address: listener.address.to_string(),
            process: owner.process.clone(),
            pid: owner.pid.map(|p| p.to_string()).unwrap_or_default(),
            user: owner.user.clone(),
            iana: judge.iana(protocol, listener.port),
            expected: judge.is_expected(Judged::Listener(protocol, listener.port), &facts),
            netns: namer.label(listener.netns),
            container_id: owner.place.container_id.clone(),
            pod_uid: owner.place.pod_uid.clone(),
            exposure: exposure.as_str(),
            dual_stack: listener.binding.dual_stack_label(listener.address),
            interface: listener.interface.clone(),
            holder,
            sockets: 0,
        }
    }
}

impl RawSocketSeries {
    /// A packet or raw socket's labels (with a count of 0).
    pub fn new(seen: &SeenRawSocket, owner: &Owner, judge: &Judge, namer: &NetnsNamer) -> Self {
        let socket = &seen.found.socket;
        let judged = match socket.kind {
            RawKind::Packet => Judged::Packet,
            RawKind::Raw => Judged::Raw,
        };
        RawSocketSeries {
            kind: socket.kind.as_str(),
            protocol: socket.protocol_label().into_owned(),
            interface: seen.found.interface.clone(),
            bpf_filter: socket.bpf_filter.as_str(),
            process: owner.process.clone(),
            pid: owner.pid.map(|p| p.to_string()).unwrap_or_default(),
            user: owner.user.clone(),
            netns: namer.label(seen.netns),
            container_id: owner.place.container_id.clone(),
            pod_uid: owner.place.pod_uid.clone(),
            expected: judge.is_expected(judged, &owner.facts()),
            sockets: 0,
        }
    }
}

impl ProcessInfoSeries {
    pub fn new(pid: u32, netns: String, owner: &Owner) -> ProcessInfoSeries {
        let exe = owner.provenance.exe.as_ref();
        ProcessInfoSeries {
            pid,
            netns,
            process: owner.process.clone(),
            user: owner.user.clone(),
            exe: exe.map(|exe| exe.path.clone()).unwrap_or_default(),
            exe_deleted: exe.is_some_and(|exe| exe.deleted),
            ppid: owner
                .provenance
                .ppid
                .map(|ppid| ppid.to_string())
                .unwrap_or_default(),
            parent_process: owner.provenance.parent_process.clone(),
            unit: owner.provenance.unit.clone(),
            container_id: owner.place.container_id.clone(),
            exe_sha256: owner.exe_sha256.clone(),
            login_uid: owner
                .login_uid
                .map(|uid| uid.to_string())
                .unwrap_or_default(),
            login_user: owner.login_user.clone(),
        }
    }
}
