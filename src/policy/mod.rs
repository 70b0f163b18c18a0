//! Policy: what is watched and what is expected. Decided from IANA's
//! registry ([`registry`]), the operator's port list ([`watch`]), the allow
//! rules ([`allow`], with their reload) and how far a bound address reaches
//! ([`exposure`]). Pure decisions over facts: nothing here reads a socket.

pub mod allow;
pub mod exposure;
pub mod ports;
pub mod registry;
pub mod watch;
