//! The `holder` label of a listener: whether a process holds the socket.
//!
//! The kernel keeps listening sockets that no process holds: lockd's and
//! nfsd's, the NFSv4 callback server's, ksmbd's, and any socket in flight in
//! an unread `SCM_RIGHTS` message. Their `process` and `pid` labels are empty,
//! exactly as for a socket whose holder the exporter had no privilege to
//! find; `holder` tells the two apart, and no process can fake it by naming
//! itself:
//!
//! - `process`: the fd walk found the process holding it (the labels name it);
//! - `none`: the walk read every process's fd table (every thread's too, in
//!   the initial pid namespace, with no permission refused) and no table
//!   held it;
//! - `unknown`: the walk could not read everything (a process's fds were
//!   hidden, or `/proc` is not the host's), or the backend named no pid.

use std::fmt;

/// The `holder` label; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    Process,
    None,
    Unknown,
}

impl Holder {
    pub fn as_str(self) -> &'static str {
        match self {
            Holder::Process => "process",
            Holder::None => "none",
            Holder::Unknown => "unknown",
        }
    }

    /// Parses a label value (the allow selector `holder=`).
    pub fn parse(text: &str) -> Option<Holder> {
        match text {
            "process" => Some(Holder::Process),
            "none" => Some(Holder::None),
            "unknown" => Some(Holder::Unknown),
            _ => None,
        }
    }
}

impl super::LabelValue for Holder {
    fn label(&self) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(self.as_str())
    }

    fn label_ref(&self) -> super::labels::LabelRef<'_> {
        super::labels::LabelRef::Text(self.as_str())
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_back() {
        for holder in [Holder::Process, Holder::None, Holder::Unknown] {
            assert_eq!(Holder::parse(holder.as_str()), Some(holder));
        }
        assert_eq!(Holder::parse("kernel"), None);
    }
}
