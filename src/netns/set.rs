//! What the exporter keeps open inside each other namespace, for as long as
//! that namespace exists.
//!
//! A handle opened inside a namespace (a netlink socket) keeps it alive, so
//! the set must drop handles of namespaces discovery no longer finds, or it
//! would pin every namespace that ever existed. A handle whose use fails is
//! dropped too and reopened at the next collection.

use super::discovery::{Discovery, Namespace};
use super::enter;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

/// One handle of type `T` per other network namespace.
pub struct NamespaceSet<T> {
    /// Finds the namespaces that exist now.
    discovery: Discovery,
    /// namespace inode -> what was opened inside it.
    open: HashMap<u64, T>,
}

/// One namespace's handle, lent out for a collection.
pub struct Entered<'a, T> {
    pub namespace: &'a Namespace,
    pub handle: &'a mut T,
}

impl<T: Send + 'static> NamespaceSet<T> {
    pub fn new(discovery: Discovery) -> NamespaceSet<T> {
        NamespaceSet {
            discovery,
            open: HashMap::new(),
        }
    }

    /// Discovers the namespaces, drops handles of vanished ones, opens
    /// handles in new ones with `open` (run inside the namespace), then calls
    /// `visit` for each. Returns how many namespaces could not be entered or
    /// read (a `visit` returning false drops that handle).
    pub fn for_each<O, V>(&mut self, open: O, mut visit: V) -> u64
    where
        O: Fn() -> Result<T, String> + Clone + Send + 'static,
        V: FnMut(Entered<'_, T>) -> bool,
    {
        let found = self.discovery.namespaces();
        self.open
            .retain(|inode, _| found.iter().any(|ns| ns.inode == *inode));
        let mut faults = 0;
        for namespace in &found {
            let handle = match self.open.entry(namespace.inode) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => match enter_and_open(namespace, open.clone()) {
                    Ok(handle) => entry.insert(handle),
                    Err(err) => {
                        tracing::debug!(error = %err, "skipping a network namespace");
                        faults += 1;
                        continue;
                    }
                },
            };
            if !visit(Entered { namespace, handle }) {
                faults += 1;
                self.open.remove(&namespace.inode);
            }
        }
        faults
    }
}

fn enter_and_open<T, O>(namespace: &Namespace, open: O) -> Result<T, String>
where
    T: Send + 'static,
    O: Fn() -> Result<T, String> + Send + 'static,
{
    enter::run_in(&namespace.path, open)
        .map_err(|err| format!("cannot enter {}: {err}", namespace.path.display()))?
}
