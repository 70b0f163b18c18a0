//! Allow rules: which listeners and which packet/raw sockets the operator
//! expects, matched on facts a process cannot choose for itself.
//!
//! Grammar (`--watch.allow`, and one rule a line in `--watch.allow-file`):
//!
//! ```text
//! RULE     = TARGET [ ":" SELECTOR { "," SELECTOR } ]
//! TARGET   = PORT [ "-" LAST ] [ "/" ( "tcp" | "udp" | "sctp" ) ]
//!          | "packet" | "raw"
//!          | "forward:" PORT [ "-" LAST ] [ "/" PROTO ]
//! SELECTOR = "exe=" PATH-GLOB     resolved /proc/PID/exe (see allow/glob.rs)
//!          | "user=" NAME | UID   owning user
//!          | "unit=" NAME         systemd unit from the cgroup (ssh.service)
//!          | "container=" HEX     container id prefix
//!          | "comm=" NAME         process name (/proc/PID/comm)
//!          | "sha256=" HEX        SHA-256 of the executable (64 hex digits)
//!          | NAME                 same as comm=NAME (the original grammar)
//!          | "exposure=" EXPOSURE loopback, link-local, private, public or
//!                                 any: the listener reaches at most that
//!                                 far, in that order (policy/exposure.rs;
//!                                 listeners only)
//!          | "holder=" HOLDER     process, none or unknown: whether a
//!                                 process holds the socket (model/holder.rs;
//!                                 listeners only)
//!          | "rpc=" NAME | NUMBER an ONC RPC program registered with the
//!                                 rpcbind of the listener's namespace on its
//!                                 port and protocol (model/rpc.rs names)
//! ```
//!
//! `forward:` rules cover forwarded ports (`unassigned_port_forwarded_ports`:
//! NAT rules and container port holders), not listeners. A NAT rule has no
//! owning process, so the only selector they take is `container=` (the
//! container the port is forwarded to, where known).
//!
//! `holder=none` is how the kernel's own sockets (lockd, the NFS callback)
//! are allowed: they have no process to name. Combine it with a port range,
//! `exposure=` and `rpc=` so that it lets through only what the kernel opens.
//!
//! Every selector of a rule must match; a rule without selectors matches any
//! owner; a listener or socket is expected when any rule matches. A selector
//! kind may appear once per rule (write two rules for alternatives). Values
//! cannot contain commas. A fact the exporter could not read (no exe for a
//! process it may not inspect, no owner at all) never matches.
//!
//! `comm` is the 15-character name a process gives itself with
//! `prctl(PR_SET_NAME)`: a rule that checks nothing else is accepted, and
//! [`AllowRule::trusts_comm_only`] lets the exporter warn at start that any
//! process can claim it. `exe=` matches the executable's path even when the
//! file was replaced or deleted after start (a package upgrade does that);
//! the deleted state has its own label and alert. `sha256=` matches the
//! bytes the process runs, whatever its path: the hash is computed off the
//! scrape path (`crate::owners::exe_hash`), so until a new file has been
//! hashed (normally by the next collection) the rule does not match it.
//!
//! `exe=`, `unit=` and `comm=` values are written as the labels show them
//! (`crate::owners::escape`): `\xNN` is the byte NN, `\\` a backslash, so a
//! name that is not UTF-8 or holds a newline can be allowed, and a value
//! names exactly one name. `exe=` is matched against the executable's raw
//! bytes: a file merely named `/tmp/z (deleted)` is that path, never
//! `/tmp/z`.
//!
//! In a file, `#` starts a comment (at the start of a line, or after
//! whitespace) and blank lines are skipped; errors name `FILE:LINE`.

mod glob;
pub mod reload;
pub mod shipped;

pub use glob::Glob;

use crate::model::{Holder, rpc};
use crate::owners::escape::canonical;
use crate::policy::exposure::Exposure;
use crate::policy::ports::{PortRange, parse_port_range};
use crate::policy::registry::Transport;
use std::fmt;
use std::path::{Path, PathBuf};

/// What a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Ports(PortRange),
    /// `AF_PACKET` sockets.
    Packet,
    /// Raw IP sockets.
    Raw,
    /// Forwarded ports (NAT rules, port holders).
    Forward(PortRange),
}

/// One condition on the owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Exe(Glob),
    /// A user name, or a uid when all digits.
    User(String),
    Unit(String),
    /// Lower-case hex prefix of the container id.
    Container(String),
    Comm(String),
    /// Lower-case hex SHA-256 of the executable.
    Sha256(String),
    /// The widest exposure allowed (`loopback` < `link-local` < `private`
    /// < `public` < `any`).
    Exposure(Exposure),
    Holder(Holder),
    /// An RPC program number.
    Rpc(u32),
}

impl Selector {
    fn key(&self) -> &'static str {
        match self {
            Selector::Exe(_) => "exe",
            Selector::User(_) => "user",
            Selector::Unit(_) => "unit",
            Selector::Container(_) => "container",
            Selector::Comm(_) => "comm",
            Selector::Sha256(_) => "sha256",
            Selector::Exposure(_) => "exposure",
            Selector::Holder(_) => "holder",
            Selector::Rpc(_) => "rpc",
        }
    }

    fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty selector (a stray comma?)".to_string());
        }
        let Some((key, value)) = text.split_once('=') else {
            return Ok(Selector::Comm(canonical(text)?)); // a bare process name
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("selector {key}= has an empty value"));
        }
        match key.trim() {
            "exe" if value.starts_with('/') => Ok(Selector::Exe(Glob::new(value)?)),
            "exe" => Err(format!("exe={value}: the path must be absolute")),
            "user" => Ok(Selector::User(value.to_string())),
            "unit" if value.contains('/') => Err(format!(
                "unit={value}: a unit name has no '/' (e.g. unit=ssh.service)"
            )),
            "unit" => Ok(Selector::Unit(canonical(value)?)),
            "container" if value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Selector::Container(value.to_ascii_lowercase()))
            }
            "container" => Err(format!(
                "container={value}: a container id prefix is hexadecimal"
            )),
            "comm" => Ok(Selector::Comm(canonical(value)?)),
            "sha256" if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Selector::Sha256(value.to_ascii_lowercase()))
            }
            "sha256" => Err(format!(
                "sha256={value}: a SHA-256 is 64 hexadecimal digits (as sha256sum prints it)"
            )),
            "exposure" => Exposure::parse(value).map(Selector::Exposure).ok_or_else(|| {
                format!("exposure={value}: use loopback, link-local, private, public or any")
            }),
            "holder" => Holder::parse(value)
                .map(Selector::Holder)
                .ok_or_else(|| format!("holder={value}: use process, none or unknown")),
            "rpc" => match value.parse::<u32>() {
                Ok(number) => Ok(Selector::Rpc(number)),
                Err(_) => rpc::number_of(value).map(Selector::Rpc).ok_or_else(|| {
                    format!("rpc={value}: not a known RPC program name; give its number (rpcinfo -p shows it)")
                }),
            },
            other => Err(format!(
                "unknown selector {other:?}: use exe=, user=, unit=, container=, comm=, sha256=, exposure=, holder= or rpc="
            )),
        }
    }

    fn matches(&self, owner: &OwnerFacts<'_>) -> bool {
        match self {
            Selector::Exe(glob) => owner.exe.is_some_and(|exe| glob.is_match(exe)),
            Selector::User(wanted) => match wanted.parse::<u32>() {
                Ok(uid) => {
                    owner.uid == Some(uid) || (!owner.user.is_empty() && owner.user == wanted)
                }
                Err(_) => !owner.user.is_empty() && owner.user == wanted,
            },
            Selector::Unit(unit) => owner.unit == unit,
            Selector::Container(prefix) => {
                !owner.container_id.is_empty() && owner.container_id.starts_with(prefix.as_str())
            }
            Selector::Comm(name) => !owner.comm.is_empty() && owner.comm == name,
            Selector::Sha256(hex) => owner.exe_sha256 == hex,
            Selector::Exposure(exposure) => owner.socket.exposure.is_some_and(|e| e <= *exposure),
            Selector::Holder(holder) => owner.socket.holder == Some(*holder),
            Selector::Rpc(program) => owner.socket.rpc_programs.contains(program),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Exe(glob) => write!(f, "exe={}", as_read_back(&glob.to_string())),
            Selector::User(v)
            | Selector::Unit(v)
            | Selector::Container(v)
            | Selector::Comm(v)
            | Selector::Sha256(v) => write!(f, "{}={}", self.key(), as_read_back(v)),
            Selector::Exposure(exposure) => write!(f, "exposure={}", exposure.as_str()),
            Selector::Holder(holder) => write!(f, "holder={holder}"),
            Selector::Rpc(program) => match rpc::name_of(*program) {
                Some(name) => write!(f, "rpc={name}"),
                None => write!(f, "rpc={program}"),
            },
        }
    }
}

/// A selector's value as a rule must print it to read back as itself: a
/// comma would end the selector and whitespace at either end would be
/// trimmed, so those are written in the `\xNN` notation.
fn as_read_back(value: &str) -> String {
    let first_kept = value.len() - value.trim_start().len();
    let last_kept = value.trim_end().len().max(first_kept);
    let mut printed = String::with_capacity(value.len());
    for (at, c) in value.char_indices() {
        if c == ',' || ((at < first_kept || at >= last_kept) && c.is_whitespace()) {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                printed.push_str(&format!("\\x{byte:02x}"));
            }
        } else {
            printed.push(c);
        }
    }
    printed
}

/// What the exporter knows about a socket's owning process. Empty strings
/// and `None` mean "not known", which no selector matches.
#[derive(Clone, Copy, Debug, Default)]
pub struct OwnerFacts<'a> {
    /// `/proc/PID/comm` as the `process` label writes it (escaped).
    pub comm: &'a str,
    /// Resolved `/proc/PID/exe`, raw bytes, without the " (deleted)" the
    /// kernel appends to an unlinked file.
    pub exe: Option<&'a [u8]>,
    /// User name, or the uid as text when no passwd entry has it.
    pub user: &'a str,
    pub uid: Option<u32>,
    /// systemd unit, e.g. `ssh.service` (escaped like `comm`).
    pub unit: &'a str,
    pub container_id: &'a str,
    /// Lower-case hex SHA-256 of the executable; "" until it is known.
    pub exe_sha256: &'a str,
    /// Facts about the socket itself rather than its owner.
    pub socket: SocketFacts<'a>,
}

/// What the exporter knows about a listening socket beyond its port and
/// owner. `None` and empty mean "not known", which no selector matches.
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketFacts<'a> {
    /// How far the bound address (and interface) reaches.
    pub exposure: Option<Exposure>,
    /// Whether a process holds it.
    pub holder: Option<Holder>,
    /// RPC programs registered with the namespace's rpcbind on the
    /// socket's port and protocol.
    pub rpc_programs: &'a [u32],
}

/// What is being judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Listener(Transport, u16),
    Packet,
    Raw,
    /// A forwarded port.
    Forward(Transport, u16),
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pub target: Target,
    pub selectors: Vec<Selector>,
}

impl AllowRule {
    pub fn parse(text: &str) -> Result<AllowRule, String> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("forward:") {
            return AllowRule::parse_forward(text, rest);
        }
        let (target, selectors) = match text.split_once(':') {
            None => (text, None),
            Some((target, selectors)) => (target, Some(selectors)),
        };
        let target = match target.trim() {
            "packet" => Target::Packet,
            "raw" => Target::Raw,
            other if other.starts_with("packet/") || other.starts_with("raw/") => {
                return Err(format!(
                    "{other:?}: packet and raw rules take no /PROTO; use \"packet\" or \"raw\""
                ));
            }
            other => Target::Ports(parse_port_range(other)?),
        };
        let mut parsed: Vec<Selector> = Vec::new();
        if let Some(selectors) = selectors {
            if selectors.trim().is_empty() {
                return Err(format!("allow rule {text:?} has an empty process name"));
            }
            for piece in selectors.split(',') {
                let selector = Selector::parse(piece)?;
                if parsed.iter().any(|s| s.key() == selector.key()) {
                    return Err(format!(
                        "selector {}= appears twice; all selectors of a rule must match, so write one rule per alternative",
                        selector.key()
                    ));
                }
                parsed.push(selector);
            }
        }
        Ok(AllowRule {
            target,
            selectors: parsed,
        })
    }

    /// `forward:PORT[-LAST][/PROTO][:container=PREFIX]`.
    fn parse_forward(text: &str, rest: &str) -> Result<AllowRule, String> {
        let mut rule = AllowRule::parse(rest)?;
        let Target::Ports(range) = rule.target else {
            return Err(format!("{text:?}: forward: takes a port or range"));
        };
        if let Some(other) = rule
            .selectors
            .iter()
            .find(|s| !matches!(s, Selector::Container(_)))
        {
            return Err(format!(
                "{text:?}: a forwarded port has no owning process, so {}= does not apply; forward: rules take container= only",
                other.key()
            ));
        }
        rule.target = Target::Forward(range);
        Ok(rule)
    }

    /// True when the rule covers `subject` owned by `owner`.
    pub fn matches(&self, subject: Subject, owner: &OwnerFacts<'_>) -> bool {
        let target = match (&self.target, subject) {
            (Target::Ports(range), Subject::Listener(transport, port)) => {
                (range.first..=range.last).contains(&port)
                    && range.transport.is_none_or(|t| t == transport)
            }
            (Target::Forward(range), Subject::Forward(transport, port)) => {
                (range.first..=range.last).contains(&port)
                    && range.transport.is_none_or(|t| t == transport)
            }
            (Target::Packet, Subject::Packet) | (Target::Raw, Subject::Raw) => true,
            _ => false,
        };
        target && self.selectors.iter().all(|s| s.matches(owner))
    }

    /// True when the rule's only conditions are on `comm`, which any
    /// process sets for itself.
    pub fn trusts_comm_only(&self) -> bool {
        !self.selectors.is_empty()
            && self
                .selectors
                .iter()
                .all(|s| matches!(s, Selector::Comm(_)))
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Packet => f.write_str("packet")?,
            Target::Raw => f.write_str("raw")?,
            Target::Forward(range) => {
                write!(f, "forward:{}-{}", range.first, range.last)?;
                if let Some(t) = range.transport {
                    write!(f, "/{t}")?;
                }
            }
            Target::Ports(range) => {
                write!(f, "{}-{}", range.first, range.last)?;
                if let Some(t) = range.transport {
                    write!(f, "/{t}")?;
                }
            }
        }
        for (i, selector) in self.selectors.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            write!(f, "{selector}")?;
        }
        Ok(())
    }
}

/// Parses allow rules one per line; `origin` names the file in errors
/// (`origin:LINE: message`).
pub fn parse_rules(text: &str, origin: &str) -> Result<Vec<AllowRule>, String> {
    let mut rules = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = strip_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        let rule =
            AllowRule::parse(line).map_err(|err| format!("{origin}:{}: {err}", index + 1))?;
        rules.push(rule);
    }
    Ok(rules)
}

/// The line up to a `#` that starts it or follows whitespace.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        if byte == b'#' && (at == 0 || bytes[at - 1].is_ascii_whitespace()) {
            return &line[..at];
        }
    }
    line
}

/// `--watch.allow-file`: the path, and the rules it held when last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowFile {
    pub path: PathBuf,
    pub rules: Vec<AllowRule>,
}

impl AllowFile {
    /// Reads and parses the file; one line of error naming the file.
    pub fn load(path: &Path) -> Result<AllowFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| format!("cannot read the allow file {}: {err}", path.display()))?;
        Ok(AllowFile {
            path: path.to_path_buf(),
            rules: parse_rules(&text, &path.display().to_string())?,
        })
    }

    /// For clap: `--watch.allow-file=PATH` is read and checked at start.
    pub fn parse_flag(text: &str) -> Result<AllowFile, String> {
        AllowFile::load(Path::new(text))
    }
}

/// Logs one warning naming the rules that only check `comm`, if any.
pub fn warn_about_comm_only(rules: &[AllowRule], origin: &str) {
    let named: Vec<String> = rules
        .iter()
        .filter(|rule| rule.trusts_comm_only())
        .map(ToString::to_string)
        .collect();
    if !named.is_empty() {
        tracing::warn!(
            rules = %named.join(" "),
            origin,
            "allow rules that check only the process name (comm): any process can give itself that name; add exe=, user=, unit= or container="
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_inside_a_value_survives_printing() {
        // Found by the port_list fuzz target.
        let text = "2:72:7d1]'\r:\\xd17:\\x2CP";
        let rule = AllowRule::parse(text).unwrap();
        let shown = rule.to_string();
        assert_eq!(AllowRule::parse(&shown).as_ref(), Ok(&rule), "{shown:?}");
    }

    #[test]
    fn whitespace_at_either_end_of_a_value_survives_printing() {
        // Found by the port_list fuzz target ("2:\x20").
        for text in [
            "2:\\x20",
            "2:comm=\\x09a b\\x20",
            "2:user=\\xe3\\x80\\x80x",
            "2:exe=/a b\\x20",
        ] {
            let rule = AllowRule::parse(text).unwrap();
            let shown = rule.to_string();
            assert_eq!(
                AllowRule::parse(&shown).as_ref(),
                Ok(&rule),
                "{text} -> {shown:?}"
            );
        }
    }

    fn owner<'a>(comm: &'a str, exe: &'a str) -> OwnerFacts<'a> {
        OwnerFacts {
            comm,
            exe: Some(exe.as_bytes()),
            user: "root",
            uid: Some(0),
            unit: "ssh.service",
            container_id: "4f1c2e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e",
            exe_sha256: SSHD_SHA256,
            socket: SocketFacts {
                exposure: Some(Exposure::Private),
                ..SocketFacts::default()
            },
        }
    }

    const SSHD_SHA256: &str = "0d5c0e5b7f0e4f1a6c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a";

    #[test]
    fn forward_rules_cover_forwarded_ports_by_container_only() {
        let rule = AllowRule::parse("forward:277/tcp:container=4F1C").unwrap();
        let facts = owner("", "/x");
        assert!(rule.matches(Subject::Forward(Transport::Tcp, 277), &facts));
        assert!(!rule.matches(TCP_276, &facts));
        assert!(!rule.matches(Subject::Forward(Transport::Tcp, 276), &facts));
        let other = OwnerFacts {
            container_id: "",
            ..facts
        };
        assert!(!rule.matches(Subject::Forward(Transport::Tcp, 277), &other));
        assert!(
            !AllowRule::parse("277")
                .unwrap()
                .matches(Subject::Forward(Transport::Tcp, 277), &facts)
        );
        let any = AllowRule::parse("forward:272-279").unwrap();
        assert!(any.matches(
            Subject::Forward(Transport::Udp, 276),
            &OwnerFacts::default()
        ));
        assert_eq!(rule.to_string(), "forward:277-277/tcp:container=4f1c");
        assert_eq!(AllowRule::parse(&rule.to_string()), Ok(rule));
        let err = AllowRule::parse("forward:277:exe=/usr/bin/conmon").unwrap_err();
        assert!(err.contains("container= only"), "{err}");
        assert!(AllowRule::parse("forward:packet").is_err());
    }

    #[test]
    fn exposure_selects_listeners_that_reach_at_most_a_class() {
        let rule = AllowRule::parse("276:exposure=private").unwrap();
        assert!(rule.matches(TCP_276, &owner("x", "/x")));
        for (exposure, expected) in [
            (Some(Exposure::Loopback), true),
            (Some(Exposure::Public), false),
            (Some(Exposure::Any), false),
            (None, false),
        ] {
            let base = owner("x", "/x");
            let facts = OwnerFacts {
                socket: SocketFacts {
                    exposure,
                    ..base.socket
                },
                ..base
            };
            assert_eq!(rule.matches(TCP_276, &facts), expected, "{exposure:?}");
        }
        assert_eq!(rule.to_string(), "276-276:exposure=private");
        assert!(
            AllowRule::parse("276:exposure=world")
                .unwrap_err()
                .contains("use loopback, link-local")
        );
    }

    const TCP_276: Subject = Subject::Listener(Transport::Tcp, 276);

    #[test]
    fn the_original_grammar_keeps_its_meaning() {
        let rule = AllowRule::parse("276/tcp:sshd").unwrap();
        assert!(rule.matches(TCP_276, &owner("sshd", "/anything")));
        assert!(!rule.matches(Subject::Listener(Transport::Udp, 276), &owner("sshd", "/x")));
        assert!(!rule.matches(TCP_276, &owner("nc", "/usr/bin/nc")));
        assert!(rule.trusts_comm_only());
        let any = AllowRule::parse("272-279").unwrap();
        assert!(any.matches(
            Subject::Listener(Transport::Udp, 279),
            &OwnerFacts::default()
        ));
        assert!(!any.trusts_comm_only());
        assert_eq!(rule.to_string(), "276-276/tcp:comm=sshd");
        assert!(
            AllowRule::parse("276:")
                .unwrap_err()
                .contains("empty process name")
        );
        assert!(
            AllowRule::parse("x:sshd")
                .unwrap_err()
                .contains("not a port number")
        );
    }

    #[test]
    fn a_renamed_process_does_not_satisfy_exe() {
        let rule = AllowRule::parse("276/tcp:exe=/usr/sbin/sshd").unwrap();
        let impostor = owner("sshd", "/usr/bin/python3.11");
        assert!(!rule.matches(TCP_276, &impostor));
        assert!(rule.matches(TCP_276, &owner("sshd", "/usr/sbin/sshd")));
        assert!(!rule.trusts_comm_only());
        // No readable exe: no match, whatever the name.
        let hidden = OwnerFacts {
            exe: None,
            ..owner("sshd", "")
        };
        assert!(!rule.matches(TCP_276, &hidden));
    }

    #[test]
    fn names_are_matched_as_the_kernel_has_them() {
        // A file merely named "... (deleted)" is that path, not /tmp/z.
        let rule = AllowRule::parse("276/tcp:exe=/tmp/z").unwrap();
        let look_alike = OwnerFacts {
            exe: Some(b"/tmp/z (deleted)"),
            ..owner("z", "")
        };
        assert!(!rule.matches(TCP_276, &look_alike));
        // Bytes that are not UTF-8 are written \xNN, a backslash \\.
        let bad = AllowRule::parse("276:exe=/opt/bad\\xff,comm=bad\\xFF").unwrap();
        let owner_bad = OwnerFacts {
            exe: Some(b"/opt/bad\xff"),
            ..owner("bad\\xff", "")
        };
        assert!(bad.matches(TCP_276, &owner_bad));
        assert_eq!(bad.to_string(), "276-276:exe=/opt/bad\\xff,comm=bad\\xff");
        let literal = OwnerFacts {
            exe: Some(b"/opt/bad\\xff"),
            ..owner("bad\\\\xff", "")
        };
        assert!(!bad.matches(TCP_276, &literal));
        assert!(
            AllowRule::parse("276:exe=/opt/a\\b")
                .unwrap_err()
                .contains("backslash")
        );
    }

    #[test]
    fn every_selector_must_match() {
        let rule = AllowRule::parse(
            "276/tcp:exe=/usr/sbin/*,user=root,unit=ssh.service,container=4F1C,comm=sshd",
        )
        .unwrap();
        let good = owner("sshd", "/usr/sbin/sshd");
        assert!(rule.matches(TCP_276, &good));
        for spoiled in [
            OwnerFacts {
                user: "nobody",
                uid: Some(65534),
                ..good
            },
            OwnerFacts {
                unit: "evil.service",
                ..good
            },
            OwnerFacts {
                container_id: "",
                ..good
            },
            OwnerFacts {
                container_id: "ab",
                ..good
            },
            OwnerFacts { comm: "nc", ..good },
            OwnerFacts {
                exe: Some(b"/usr/sbin/x/sshd"),
                ..good
            },
        ] {
            assert!(!rule.matches(TCP_276, &spoiled), "{spoiled:?}");
        }
    }

    #[test]
    fn users_match_by_name_or_uid() {
        let by_uid = AllowRule::parse("276:user=0").unwrap();
        let by_name = AllowRule::parse("276:user=root").unwrap();
        let good = owner("x", "/x");
        assert!(by_uid.matches(TCP_276, &good));
        assert!(by_name.matches(TCP_276, &good));
        // A container user with no passwd entry is labelled by number.
        let numeric = OwnerFacts {
            user: "1000",
            uid: None,
            ..good
        };
        assert!(
            AllowRule::parse("276:user=1000")
                .unwrap()
                .matches(TCP_276, &numeric)
        );
        assert!(!by_name.matches(
            TCP_276,
            &OwnerFacts {
                user: "",
                uid: None,
                ..good
            }
        ));
    }

    #[test]
    fn packet_and_raw_rules_apply_to_their_kind_only() {
        let dhcp = AllowRule::parse("packet:exe=/usr/sbin/dhclient").unwrap();
        let facts = owner("dhclient", "/usr/sbin/dhclient");
        assert!(dhcp.matches(Subject::Packet, &facts));
        assert!(!dhcp.matches(Subject::Raw, &facts));
        assert!(!dhcp.matches(TCP_276, &facts));
        let raw = AllowRule::parse("raw").unwrap();
        assert!(raw.matches(Subject::Raw, &OwnerFacts::default()));
        assert!(
            !AllowRule::parse("276")
                .unwrap()
                .matches(Subject::Raw, &facts)
        );
        assert!(
            AllowRule::parse("packet/arp")
                .unwrap_err()
                .contains("no /PROTO")
        );
        assert_eq!(dhcp.to_string(), "packet:exe=/usr/sbin/dhclient");
    }

    #[test]
    fn sha256_matches_the_bytes_not_the_name() {
        let upper = SSHD_SHA256.to_ascii_uppercase();
        let rule = AllowRule::parse(&format!("276/tcp:sha256={upper}")).unwrap();
        assert_eq!(
            rule.to_string(),
            format!("276-276/tcp:sha256={SSHD_SHA256}")
        );
        let good = owner("anything", "/tmp/renamed");
        assert!(rule.matches(TCP_276, &good));
        let other = "1".repeat(64);
        assert!(!rule.matches(
            TCP_276,
            &OwnerFacts {
                exe_sha256: &other,
                ..good
            }
        ));
        // Not hashed yet: no match.
        assert!(!rule.matches(
            TCP_276,
            &OwnerFacts {
                exe_sha256: "",
                ..good
            }
        ));
        assert!(!rule.trusts_comm_only());
    }

    #[test]
    fn socket_selectors_match_the_socket_not_the_owner() {
        let kernel = AllowRule::parse("512-65535:holder=none,rpc=nlockmgr").unwrap();
        let statd =
            AllowRule::parse("512-1023/udp:exe=/usr/sbin/rpc.statd,user=root,exposure=loopback")
                .unwrap();
        let udp_800 = Subject::Listener(Transport::Udp, 800);
        let lockd = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(Exposure::Any),
                holder: Some(Holder::None),
                rpc_programs: &[100021],
            },
            ..OwnerFacts::default()
        };
        assert!(kernel.matches(udp_800, &lockd));
        // A hidden holder is not "none"; another program is not nlockmgr.
        for spoiled in [
            OwnerFacts {
                socket: SocketFacts {
                    holder: Some(Holder::Unknown),
                    ..lockd.socket
                },
                ..lockd
            },
            OwnerFacts {
                socket: SocketFacts {
                    rpc_programs: &[100024],
                    ..lockd.socket
                },
                ..lockd
            },
            OwnerFacts::default(),
        ] {
            assert!(!kernel.matches(udp_800, &spoiled), "{spoiled:?}");
        }
        assert!(!kernel.matches(TCP_276, &lockd), "276 is outside the range");
        let real = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(Exposure::Loopback),
                holder: Some(Holder::Process),
                rpc_programs: &[],
            },
            ..owner("rpc.statd", "/usr/sbin/rpc.statd")
        };
        assert!(statd.matches(udp_800, &real));
        let public = OwnerFacts {
            socket: SocketFacts {
                exposure: Some(Exposure::Public),
                ..real.socket
            },
            ..real
        };
        assert!(!statd.matches(udp_800, &public));
        let impostor = owner("rpc.statd", "/usr/bin/python3.11");
        assert!(!statd.matches(
            udp_800,
            &OwnerFacts {
                socket: real.socket,
                ..impostor
            }
        ));
        assert_eq!(
            kernel.to_string(),
            "512-65535:holder=none,rpc=nlockmgr",
            "names print back"
        );
        assert_eq!(
            AllowRule::parse("1-65535:rpc=100024").unwrap().to_string(),
            "1-65535:rpc=status"
        );
        assert_eq!(
            AllowRule::parse("1-65535:rpc=400123").unwrap().to_string(),
            "1-65535:rpc=400123"
        );
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (text, expected) in [
            ("276:exe=sshd", "must be absolute"),
            ("276:exe=", "empty value"),
            ("276:unit=a/b", "no '/'"),
            ("276:container=xyz", "hexadecimal"),
            ("276:sha256=abc", "64 hexadecimal digits"),
            (
                format!("276:sha256={}", "g".repeat(64)).as_str(),
                "64 hexadecimal digits",
            ),
            ("276:color=red", "unknown selector \"color\""),
            ("276:exposure=lan", "use loopback, link-local"),
            ("276:holder=kernel", "use process, none or unknown"),
            ("276:rpc=statd", "not a known RPC program name"),
            ("276:sshd,,user=root", "empty selector"),
            ("276:user=root,user=admin", "appears twice"),
            ("276:sshd,comm=nc", "appears twice"),
            ("70000:sshd", "out of range"),
        ] {
            let err = AllowRule::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn rules_print_as_text_that_parses_back() {
        for text in [
            "276",
            "272-279/udp:sshd",
            " 276/tcp : exe=/opt/**/bin/x , user=1000 ",
            "raw:unit=lldpd.service,container=AB12",
            "packet:comm=a=b",
            "800/udp:exposure=link-local,holder=none,rpc=ypbind",
        ] {
            let rule = AllowRule::parse(text).unwrap();
            assert_eq!(
                AllowRule::parse(&rule.to_string()),
                Ok(rule.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn files_hold_one_rule_a_line_with_comments() {
        let text = "\
# managed by config management
276/tcp:exe=/usr/sbin/sshd   # the old ssh port

packet:exe=/usr/sbin/dhclient
  raw:unit=lldpd.service
";
        let rules = parse_rules(text, "/etc/allow").unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].to_string(), "276-276/tcp:exe=/usr/sbin/sshd");
        let err = parse_rules("276\n\n277:color=red\n", "/etc/allow").unwrap_err();
        assert!(err.starts_with("/etc/allow:3: unknown selector"), "{err}");
        assert_eq!(strip_comment("276:exe=/opt/a#b"), "276:exe=/opt/a#b");
    }

    #[test]
    fn an_unreadable_file_is_one_clear_line() {
        let err = AllowFile::load(Path::new("/nonexistent/allow")).unwrap_err();
        assert!(
            err.starts_with("cannot read the allow file /nonexistent/allow"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1);
    }
}
