//! The HTTP counters that let an operator see an attack, or a limit set too
//! low: requests answered 401, and requests turned away by reason.

use crate::model::NAMESPACE;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why a request was turned away before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `--web.max-requests` requests were already being served, or half of
    /// them for the request's client address (503).
    MaxRequests,
    /// Its credentials needed a bcrypt check and the queue was full of
    /// checks ranked at least as high (429).
    AuthBudget,
    /// Fresh credentials on a connection that had a request refused or a
    /// password wrong before, while the bcrypt threads were busy (429).
    AuthGuessing,
    /// Its client address already had a check of the same kind queued or
    /// running (429).
    AuthClientBusy,
    /// It waited for a check and was pushed out of the queue by a
    /// higher-ranked one (429).
    AuthDisplaced,
    /// The web config's `rate_limit` had no token left (429).
    RateLimit,
}

impl Rejection {
    const ALL: [Rejection; 6] = [
        Rejection::MaxRequests,
        Rejection::AuthBudget,
        Rejection::AuthGuessing,
        Rejection::AuthClientBusy,
        Rejection::AuthDisplaced,
        Rejection::RateLimit,
    ];

    /// The `reason` label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MaxRequests => "max_requests",
            Rejection::AuthBudget => "auth_budget",
            Rejection::AuthGuessing => "auth_guessing",
            Rejection::AuthClientBusy => "auth_client_busy",
            Rejection::AuthDisplaced => "auth_displaced",
            Rejection::RateLimit => "rate_limit",
        }
    }
}

/// `unassigned_port_http_auth_failures_total` and
/// `unassigned_port_http_requests_rejected_total{reason}`.
pub struct HttpCounters {
    auth_failures: IntCounter,
    rejected: IntCounterVec,
}

impl HttpCounters {
    /// Creates the counters, every reason at 0, and registers them.
    pub fn register(registry: &Registry) -> prometheus::Result<HttpCounters> {
        let auth_failures = IntCounter::with_opts(
            Opts::new(
                "http_auth_failures_total",
                "HTTP requests answered 401: missing, malformed or wrong basic-auth credentials.",
            )
            .namespace(NAMESPACE),
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "http_requests_rejected_total",
                "HTTP requests turned away before being served, by reason: max_requests (503: --web.max-requests in all, or half of it from one address), auth_budget (429: no place for a bcrypt check), auth_guessing (429: a new password on a connection with an earlier 401 or 429 while bcrypt was busy), auth_client_busy (429: that address already had such a check under way), auth_displaced (429: pushed out of the bcrypt queue by a better-ranked check), rate_limit (429).",
            )
            .namespace(NAMESPACE),
            &["reason"],
        )?;
        for rejection in Rejection::ALL {
            rejected.with_label_values(&[rejection.reason()]);
        }
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(HttpCounters {
            auth_failures,
            rejected,
        })
    }

    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    pub fn rejected(&self, rejection: Rejection) {
        self.rejected.with_label_values(&[rejection.reason()]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_exists_from_the_start() {
        let registry = Registry::new();
        let counters = HttpCounters::register(&registry).unwrap();
        counters.rejected(Rejection::AuthBudget);
        let families = registry.gather();
        let rejected = families
            .iter()
            .find(|f| f.name() == "unassigned_port_http_requests_rejected_total")
            .unwrap();
        let reasons: Vec<(String, f64)> = rejected
            .get_metric()
            .iter()
            .map(|m| {
                (
                    m.get_label()[0].value().to_string(),
                    m.get_counter().get_value(),
                )
            })
            .collect();
        assert_eq!(
            reasons,
            [
                ("auth_budget".to_string(), 1.0),
                ("auth_client_busy".to_string(), 0.0),
                ("auth_displaced".to_string(), 0.0),
                ("auth_guessing".to_string(), 0.0),
                ("max_requests".to_string(), 0.0),
                ("rate_limit".to_string(), 0.0)
            ]
        );
        assert!(
            families
                .iter()
                .any(|f| f.name() == "unassigned_port_http_auth_failures_total")
        );
    }
}
