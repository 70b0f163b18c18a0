//! Other operating systems: what only Windows needs. (The netstat2 socket
//! source, which every platform can use, is `crate::sockets::netstat2`.)

#[cfg(windows)]
pub mod windows_service;
