//! Who may use the HTTP server, and what letting them in may cost: basic auth
//! that a flood of password guesses cannot turn into a denial of service,
//! the exporter-toolkit's `rate_limit`, and the counters that show an
//! operator when requests are refused. One concern a file:
//!
//! - [`credentials`]: the `Authorization: Basic` header, decoded.
//! - [`basic`]: the users of one loaded web config and the bcrypt check;
//!   [`remembered`]: its verdicts, right and wrong in tables of their own,
//!   as HMAC tags under a key drawn at each load (never the password).
//! - [`scheduler`]: who gets a bcrypt check and when, on a few threads of
//!   its own, ranked by what each request has shown: its [`connection`]
//!   (credentials presented before, trouble) and its address ([`sources`]:
//!   recent failures, pressure, credentials presented before); one check of
//!   each kind at a time per client address ([`client_limit`] says what an
//!   address is). Whatever gets no check is refused at once (429), so
//!   guesses never hold the request slots, the async threads or the
//!   blocking pool the collection runs on. An unknown user is checked
//!   against a decoy hash of the same cost, so it takes as long as a wrong
//!   password.
//! - [`rate_limit`]: the toolkit's token bucket over all requests.
//! - [`counters`]: 401s and refusals by reason.

pub mod basic;
pub mod client_limit;
pub mod connection;
pub mod counters;
pub mod credentials;
pub mod rate_limit;
mod remembered;
pub mod scheduler;
mod sources;

pub use basic::BasicAuth;
pub use client_limit::{ClientShare, PerClientLimit};
pub use connection::ConnectionRecord;
pub use counters::{HttpCounters, Rejection};
pub use credentials::Credentials;
pub use rate_limit::RateLimit;
pub use remembered::Tag;
pub use scheduler::BcryptScheduler;
