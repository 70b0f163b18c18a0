//! The web face: the hyper server ([`server`]: `/metrics`, landing page,
//! `/healthz`), basic-auth checks under load ([`auth`]), TLS and basic-auth
//! configuration ([`config`]) and its reload ([`reload`]).

pub mod auth;
pub mod config;
pub mod reload;
pub mod server;
