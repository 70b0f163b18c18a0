//! The web face, one concern a file: the hyper server ([`server`]: accept
//! loop, connections, routing of `/metrics`, `/` and `/healthz`), what gets
//! in ([`admission`]: rate limit, method, basic auth, request slots), who may
//! and at what cost ([`auth`]: credentials, bcrypt under load, counters), the
//! landing page ([`landing`]), gzip ([`encoding`]), plain answers
//! ([`response`]), TLS and basic-auth configuration ([`config`]) and its
//! reload ([`reload`]).

pub mod admission;
pub mod auth;
pub mod config;
pub mod encoding;
pub mod landing;
pub mod reload;
pub mod response;
pub mod server;
