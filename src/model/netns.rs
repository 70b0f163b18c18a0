//! The `netns` label: `host` for the exporter's own network namespace, the
//! namespace's inode number for any other. Decided here for snapshots and
//! events alike, from the one inode the exporter read for itself at start.

/// The `netns` label of the exporter's own network namespace.
pub const HOST_NETNS: &str = "host";

/// Names network namespaces; built once at start from the exporter's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetnsNamer {
    /// Inode of the exporter's own namespace; 0 when it could not be read
    /// (then only `None` is "host").
    own: u64,
}

impl NetnsNamer {
    pub fn new(own_inode: Option<u64>) -> NetnsNamer {
        NetnsNamer {
            own: own_inode.unwrap_or(0),
        }
    }

    /// `None` (a reader's "our own") and the exporter's own inode are
    /// `host`; any other inode is its number.
    pub fn label(&self, inode: Option<u64>) -> String {
        match inode {
            Some(inode) if inode != self.own && inode != 0 => inode.to_string(),
            _ => HOST_NETNS.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_is_host_whichever_way_it_is_named() {
        let namer = NetnsNamer::new(Some(4026531840));
        assert_eq!(namer.label(None), "host");
        assert_eq!(namer.label(Some(4026531840)), "host");
        assert_eq!(namer.label(Some(4026532999)), "4026532999");
        assert_eq!(NetnsNamer::new(None).label(Some(7)), "7");
    }
}
