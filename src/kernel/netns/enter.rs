//! Running code inside another network namespace.
//!
//! `setns(2)` changes only the calling thread's namespace, so a short-lived
//! thread enters, runs the closure (typically: open a netlink socket, which
//! stays bound to that namespace for its whole life) and exits. The
//! exporter's long-lived threads never leave their namespace; the only
//! threads that move are the ones started here and the namespace set's
//! visiting threads ([`Roaming`]), which all end with their work.

use crate::kernel::procfs::ProcRoot;
use crate::kernel::socket_ns::namespace_of_socket;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::path::Path;

/// Runs `work` on a new thread that has entered the namespace at `path`.
pub fn run_in<T, F>(path: &Path, work: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let file = File::open(path)?;
    run_on_thread_in(file, work)
}

/// Runs `work` on a new thread that has entered the namespace `socket` was
/// created in (a socket is all the exporter keeps of another namespace).
pub fn run_in_namespace_of<T, F>(socket: impl AsFd, work: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    run_on_thread_in(namespace_of_socket(socket)?, work)
}

fn run_on_thread_in<T, F>(namespace: impl AsFd + Send, work: F) -> std::io::Result<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("netns-enter".into())
            .spawn_scoped(scope, move || {
                move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Network))?;
                Ok(work())
            })?
            .join()
            .map_err(|_| std::io::Error::other("namespace thread panicked"))?
    })
}

/// Leave to move the calling thread between namespaces: only the namespace
/// set makes one, on a thread it started for one collection's visits, so
/// no long-lived thread is ever left in another namespace. Not `Send`: it
/// stays on that thread.
pub struct Roaming {
    _this_thread_only: PhantomData<*const ()>,
}

impl Roaming {
    /// For a thread that ends when its visits do.
    pub(super) fn on_a_visiting_thread() -> Roaming {
        Roaming {
            _this_thread_only: PhantomData,
        }
    }

    /// Moves the calling thread into the namespace `socket` was created in,
    /// where what it opens next (a `/proc/thread-self/net` table, a netlink
    /// socket) belongs.
    pub fn enter_namespace_of(&mut self, socket: impl AsFd) -> std::io::Result<()> {
        let namespace = namespace_of_socket(socket)?;
        move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Network))?;
        Ok(())
    }
}

/// Whether this process may enter namespaces: it tries its own.
pub fn can_enter(proc_root: &ProcRoot) -> Result<(), String> {
    run_in(&proc_root.self_path("ns/net"), || ()).map_err(|err| {
        if err.kind() == std::io::ErrorKind::PermissionDenied {
            "setns(2) into a network namespace was refused: it needs CAP_SYS_ADMIN, and a seccomp profile or systemd RestrictNamespaces= that allows it".to_string()
        } else {
            format!("cannot enter network namespaces: {err}")
        }
    })
}
