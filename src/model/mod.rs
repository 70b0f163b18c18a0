//! The model: what a listener, a raw socket and a listener event are called.

pub mod holder;
pub mod rpc;

pub use holder::Holder;
