//! One line of the event trail: its fixed keys, filled from the event and
//! the owner, and written through the exporter's logger at info level.
//!
//! Every line carries the same keys, in this order, so a log shipper can
//! index them without guessing: `event`, `port`, `protocol`, `address`,
//! `netns`, `pid`, `ppid`, `process`, `exe`, `exe_deleted`, `exe_sha256`,
//! `cmdline`, `uid`, `user`, `login_uid`, `login_user`, `container_id`,
//! `pod_uid`, `exposure`, `expected`, `described`. Every value is a string
//! (a JSON line keeps one type per key), empty when it is not known.
//!
//! `cmdline` is `/proc/PID/cmdline` with its arguments joined by spaces;
//! an argument that is empty or holds a space, a quote or a backslash is
//! put in double quotes with `"` and `\` escaped, bytes that are not
//! printable UTF-8 are written `\xNN`, and the whole is cut at
//! [`CMDLINE_MAX`] bytes, ending in `...` when cut.
//!
//! `described` says how complete the owner's facts are:
//! - `live`: read while the process still ran, right after the event;
//! - `late`: the process was found but some facts were gone (it was
//!   exiting), or they were read more than [`LATE_AFTER`] after the event
//!   (a burst kept the describing thread busy), so they may be a later
//!   state of the pid;
//! - `gone`: the process had exited before it was described: only what the
//!   kernel event carries (port, address, namespace, pid, the name read at
//!   the event) is there, the rest is empty;
//! - `none`: the event names no process (a UDP socket's destroy broadcast).

use crate::owners::Owner;
use std::fmt::Write as _;
use std::time::Duration;

/// Bytes of `/proc/PID/cmdline` read.
pub const CMDLINE_READ: usize = 4096;
/// Bytes of the rendered `cmdline` value kept.
pub const CMDLINE_MAX: usize = 1024;
/// An owner described this long after its event is `described="late"`.
pub const LATE_AFTER: Duration = Duration::from_secs(1);

/// The `event` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailEvent {
    /// A socket entered LISTEN on a watched port (kernel event).
    ListenerOpened,
    /// A listener (or bound UDP socket) on a watched port closed.
    ListenerClosed,
    /// A collection saw an AF_PACKET socket for the first time.
    PacketSocketSeen,
    /// A collection saw a raw IP socket for the first time.
    RawSocketSeen,
    /// A collection saw a watched port forwarded elsewhere (a NAT rule or a
    /// container runtime's port holder) for the first time.
    ForwardedPortSeen,
}

impl TrailEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TrailEvent::ListenerOpened => "listener_opened",
            TrailEvent::ListenerClosed => "listener_closed",
            TrailEvent::PacketSocketSeen => "packet_socket_seen",
            TrailEvent::RawSocketSeen => "raw_socket_seen",
            TrailEvent::ForwardedPortSeen => "forwarded_port_seen",
        }
    }

    fn message(self) -> &'static str {
        match self {
            TrailEvent::ListenerOpened => "listener opened on a watched port",
            TrailEvent::ListenerClosed => "listener closed on a watched port",
            TrailEvent::PacketSocketSeen => "packet socket seen",
            TrailEvent::RawSocketSeen => "raw socket seen",
            TrailEvent::ForwardedPortSeen => "forwarded port seen",
        }
    }
}

/// The `described` key (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Described {
    Live,
    Late,
    Gone,
    None,
}

impl Described {
    pub fn as_str(self) -> &'static str {
        match self {
            Described::Live => "live",
            Described::Late => "late",
            Described::Gone => "gone",
            Described::None => "none",
        }
    }
}

/// One line's values, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailLine {
    pub event: TrailEvent,
    pub port: String,
    pub protocol: String,
    pub address: String,
    pub netns: String,
    pub pid: String,
    pub ppid: String,
    pub process: String,
    pub exe: String,
    pub exe_deleted: String,
    pub exe_sha256: String,
    pub cmdline: String,
    pub uid: String,
    pub user: String,
    pub login_uid: String,
    pub login_user: String,
    pub container_id: String,
    pub pod_uid: String,
    pub exposure: String,
    pub expected: bool,
    pub described: Described,
    /// Where a forwarded port sends packets: the keys of
    /// `unassigned_port_forwarded_ports` (empty for other events).
    pub forward: ForwardKeys,
}

/// The forwarding keys of a `forwarded_port_seen` line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForwardKeys {
    pub mechanism: String,
    pub to_address: String,
    pub to_port: String,
    pub to_netns: String,
}

fn number(value: Option<u32>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

impl TrailLine {
    /// A line whose owner keys come from `owner` (the socket keys empty).
    pub fn of_owner(event: TrailEvent, owner: &Owner) -> TrailLine {
        let exe = owner.provenance.exe.as_ref();
        TrailLine {
            event,
            port: String::new(),
            protocol: String::new(),
            address: String::new(),
            netns: String::new(),
            pid: number(owner.pid),
            ppid: number(owner.provenance.ppid),
            process: owner.process.clone(),
            exe: exe.map(|exe| exe.path.clone()).unwrap_or_default(),
            exe_deleted: exe.map(|exe| exe.deleted.to_string()).unwrap_or_default(),
            exe_sha256: owner.exe_sha256.clone(),
            cmdline: String::new(),
            uid: number(owner.uid),
            user: owner.user.clone(),
            login_uid: number(owner.login_uid),
            login_user: owner.login_user.clone(),
            container_id: owner.place.container_id.clone(),
            pod_uid: owner.place.pod_uid.clone(),
            exposure: String::new(),
            expected: false,
            described: Described::Live,
            forward: ForwardKeys::default(),
        }
    }

    /// Writes the line through the global logger at info level.
    pub fn write(&self) {
        tracing::info!(
            event = self.event.as_str(),
            port = self.port.as_str(),
            protocol = self.protocol.as_str(),
            address = self.address.as_str(),
            netns = self.netns.as_str(),
            pid = self.pid.as_str(),
            ppid = self.ppid.as_str(),
            process = self.process.as_str(),
            exe = self.exe.as_str(),
            exe_deleted = self.exe_deleted.as_str(),
            exe_sha256 = self.exe_sha256.as_str(),
            cmdline = self.cmdline.as_str(),
            uid = self.uid.as_str(),
            user = self.user.as_str(),
            login_uid = self.login_uid.as_str(),
            login_user = self.login_user.as_str(),
            container_id = self.container_id.as_str(),
            pod_uid = self.pod_uid.as_str(),
            exposure = self.exposure.as_str(),
            expected = if self.expected { "true" } else { "false" },
            described = self.described.as_str(),
            mechanism = self.forward.mechanism.as_str(),
            to_address = self.forward.to_address.as_str(),
            to_port = self.forward.to_port.as_str(),
            to_netns = self.forward.to_netns.as_str(),
            "{}",
            self.event.message()
        );
    }
}

/// Writes the notice that `count` lines were left out.
pub fn write_suppressed(count: u64, per_second: u32) {
    tracing::info!(
        event = "lines_suppressed",
        suppressed = count.to_string().as_str(),
        limit_per_second = per_second.to_string().as_str(),
        "event trail lines suppressed: more events than --log.events-per-second; the counters still count every event"
    );
}

/// Renders raw `/proc/PID/cmdline` bytes (see the module doc).
pub fn render_cmdline(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    let mut out = String::new();
    if raw.is_empty() {
        return out;
    }
    for (index, arg) in raw.split(|&byte| byte == 0).enumerate() {
        if index > 0 {
            out.push(' ');
        }
        push_arg(&mut out, arg);
        if out.len() > CMDLINE_MAX {
            let mut cut = CMDLINE_MAX;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push_str("...");
            break;
        }
    }
    out
}

/// One argument, quoted when it must be, with odd bytes as `\xNN`.
fn push_arg(out: &mut String, arg: &[u8]) {
    let quote = arg.is_empty()
        || arg
            .iter()
            .any(|&byte| matches!(byte, b' ' | b'"' | b'\\' | b'\t' | b'\n'));
    if quote {
        out.push('"');
    }
    for chunk in arg.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' if quote => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => {
                    let mut bytes = [0u8; 4];
                    for byte in c.encode_utf8(&mut bytes).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    if quote {
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_unambiguous_and_bounded() {
        assert_eq!(render_cmdline(b""), "");
        assert_eq!(render_cmdline(b"/usr/sbin/sshd\0-D\0"), "/usr/sbin/sshd -D");
        assert_eq!(
            render_cmdline(b"perl\0-e\0print \"hi\"\0\0"),
            r#"perl -e "print \"hi\"" """#
        );
        assert_eq!(render_cmdline(b"a\\b\0c"), r#""a\\b" c"#);
        assert_eq!(render_cmdline(b"bad\xff\x01\0ok"), r"bad\xff\x01 ok");
        // setproctitle: one string with spaces and no NUL.
        assert_eq!(render_cmdline(b"nginx: master"), "\"nginx: master\"");
        let long = vec![b'x'; 5000];
        let rendered = render_cmdline(&long);
        assert_eq!(rendered.len(), CMDLINE_MAX + 3);
        assert!(rendered.ends_with("..."));
        let wide = "é".repeat(600);
        assert!(render_cmdline(wide.as_bytes()).ends_with("é..."));
    }

    #[test]
    fn owner_keys_come_from_the_owner() {
        let owner = Owner {
            pid: Some(42),
            process: "nc".into(),
            user: "root".into(),
            uid: Some(0),
            login_uid: Some(1000),
            login_user: "alice".into(),
            exe_sha256: "ab".repeat(32),
            ..Owner::default()
        };
        let line = TrailLine::of_owner(TrailEvent::ListenerOpened, &owner);
        assert_eq!(line.pid, "42");
        assert_eq!(line.ppid, "");
        assert_eq!(line.exe, "");
        assert_eq!(line.exe_deleted, "");
        assert_eq!(line.login_uid, "1000");
        assert_eq!(line.login_user, "alice");
        assert_eq!(line.exe_sha256.len(), 64);
        assert_eq!(line.event.as_str(), "listener_opened");
    }
}
