//! Which requests are served: every request passes, in this order, the web
//! config's `rate_limit` (429), GET or HEAD without a body (405, 413), basic
//! auth (see [`crate::web::auth`]: remembered verdicts cost a hash lookup,
//! others a bcrypt check from the scheduler, 429 when none can be had for
//! them, 401 when wrong), and at most `--web.max-requests` requests being served at
//! once, no client address holding more than half of them (503 straight
//! away past that, so a flood cannot queue up collections or crowd
//! Prometheus out). Every refusal is counted.

use crate::web::auth::{
    BcryptScheduler, ClientShare, ConnectionRecord, Credentials, HttpCounters, PerClientLimit,
    Rejection,
};
use crate::web::config::ActiveWebConfig;
use crate::web::response::{Body, text};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::net::IpAddr;
use tokio::sync::{Semaphore, SemaphorePermit};

/// The limits every request is admitted under; they outlive config reloads.
pub struct Admission {
    /// `--web.max-requests`: one slot per request being served, taken after
    /// auth (so unverified requests never hold one); `None` when the flag is
    /// 0 (no limit).
    request_slots: Option<RequestSlots>,
    /// The threads, queue and ranking of bcrypt checks of credentials
    /// without a remembered verdict.
    bcrypt: BcryptScheduler,
    /// Refusals and auth failures, registered on the metric registry.
    counters: HttpCounters,
}

/// `--web.max-requests` slots: that many requests served at once in all,
/// and no client address holding more than half of them, so one busy client
/// (even with the right password) cannot keep Prometheus out.
struct RequestSlots {
    all: Semaphore,
    per_client: PerClientLimit,
}

/// A request's slot, given back when the request is done.
pub type Slot<'a> = (ClientShare, SemaphorePermit<'a>);

impl RequestSlots {
    fn new(max_requests: usize) -> RequestSlots {
        RequestSlots {
            all: Semaphore::new(max_requests),
            per_client: PerClientLimit::new(max_requests.div_ceil(2)),
        }
    }

    /// A slot for a request from `client`, if one is free to it.
    fn take(&self, client: IpAddr) -> Option<Slot<'_>> {
        let share = self.per_client.take(client)?;
        let permit = self.all.try_acquire().ok()?;
        Some((share, permit))
    }
}

impl Admission {
    /// Registers the HTTP counters on `metrics` and starts the bcrypt
    /// threads. `max_requests` is `--web.max-requests` (0: no limit).
    pub fn new(metrics: &prometheus::Registry, max_requests: usize) -> Result<Admission, String> {
        let counters =
            HttpCounters::register(metrics).map_err(|err| format!("metric setup failed: {err}"))?;
        let bcrypt = BcryptScheduler::for_this_machine()
            .map_err(|err| format!("cannot start the bcrypt threads: {err}"))?;
        Ok(Admission {
            request_slots: (max_requests > 0).then(|| RequestSlots::new(max_requests)),
            bcrypt,
            counters,
        })
    }

    /// Lets the request in, holding its request slot (if slots are limited)
    /// until dropped, or says why not with the response to send.
    /// `connection` is the record of the connection it came on.
    pub async fn admit(
        &self,
        config: &ActiveWebConfig,
        client: IpAddr,
        connection: &ConnectionRecord,
        request: &Request<Incoming>,
    ) -> Result<Option<Slot<'_>>, Response<Body>> {
        if config
            .rate_limit
            .as_ref()
            .is_some_and(|limit| !limit.try_take())
        {
            return Err(self.refuse(Rejection::RateLimit));
        }
        if let Some(refusal) = refuse_method_or_body(request) {
            return Err(refusal);
        }
        if let Some(refusal) = self.authenticate(config, client, connection, request).await {
            return Err(refusal);
        }
        match &self.request_slots {
            None => Ok(None),
            Some(slots) => match slots.take(client) {
                Some(slot) => Ok(Some(slot)),
                None => Err(self.refuse(Rejection::MaxRequests)),
            },
        }
    }

    /// Basic auth, when the config asks for it: `None` lets the request on.
    /// Credentials with a remembered verdict cost a hash; others wait for a
    /// bcrypt check from the scheduler, or are refused at once.
    async fn authenticate(
        &self,
        config: &ActiveWebConfig,
        client: IpAddr,
        connection: &ConnectionRecord,
        request: &Request<Incoming>,
    ) -> Option<Response<Body>> {
        let auth = config.basic_auth.as_ref()?;
        let credentials = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| Credentials::from_header(value.as_bytes()));
        let allowed = match credentials {
            None => false,
            Some(credentials) => match self
                .bcrypt
                .check(auth, credentials, client, connection)
                .await
            {
                Ok(allowed) => allowed,
                Err(rejection) => return Some(self.refuse(rejection)),
            },
        };
        if allowed {
            return None;
        }
        self.counters.auth_failed();
        let mut response = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"unassigned_port_exporter\""),
        );
        Some(response)
    }

    /// Counts the refusal and says why, with the status it calls for.
    fn refuse(&self, rejection: Rejection) -> Response<Body> {
        self.counters.rejected(rejection);
        let (status, message) = match rejection {
            Rejection::MaxRequests => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests being served at once, in all or from your address (see --web.max-requests)\n",
            ),
            Rejection::AuthBudget
            | Rejection::AuthGuessing
            | Rejection::AuthClientBusy
            | Rejection::AuthDisplaced => (
                StatusCode::TOO_MANY_REQUESTS,
                "too many password checks under way; retry later\n",
            ),
            Rejection::RateLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded (rate_limit in the web config)\n",
            ),
        };
        let mut response = text(status, message);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Only GET and HEAD without a body are served.
fn refuse_method_or_body(request: &Request<Incoming>) -> Option<Response<Body>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    has_body(request).then(|| {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n",
        )
    })
}

fn has_body(request: &Request<Incoming>) -> bool {
    let headers = request.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}
