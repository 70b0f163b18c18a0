//! Who may use the HTTP server, and what letting them in may cost: basic auth
//! that a flood of password guesses cannot turn into a denial of service,
//! the exporter-toolkit's `rate_limit`, and the counters that show an
//! operator when requests are refused. One concern a file:
//!
//! - [`credentials`]: the `Authorization: Basic` header, decoded.
//! - [`basic`]: the users of one loaded web config and the bcrypt check;
//!   [`remembered`]: the credentials verified under that config, as
//!   HMAC-SHA256 tags under a random key drawn when the config loads (the
//!   password itself is never stored), so Prometheus' scrapes cost a hash,
//!   not a bcrypt. Only successes are remembered, so guesses cannot push
//!   Prometheus out, and a reload starts a new cache.
//! - [`budget`]: the bcrypt checks of everything else, on a few threads of
//!   their own (half the CPUs), with a short queue and one check at a time
//!   per client address ([`client_limit`]). Past that a request is refused
//!   at once (429), so guesses never hold the request slots, the async
//!   threads or the blocking pool the collection runs on. An unknown user is
//!   checked against a decoy hash of the same cost, so it takes as long as a
//!   wrong password.
//! - [`rate_limit`]: the toolkit's token bucket over all requests.
//! - [`counters`]: 401s and refusals by reason.

pub mod basic;
pub mod budget;
pub mod client_limit;
pub mod counters;
pub mod credentials;
pub mod rate_limit;
mod remembered;

pub use basic::BasicAuth;
pub use budget::{BcryptBudget, BudgetSpent};
pub use client_limit::{ClientShare, PerClientLimit};
pub use counters::{HttpCounters, Rejection};
pub use credentials::Credentials;
pub use rate_limit::RateLimit;
