//! Basic auth and client-certificate checks from the web-config file, as tide middleware
//! on each protected route, so they hold wherever the app is mounted (an embedder's
//! `nest()` included). `/healthz` and `/readyz` carry no middleware: kubelet probes them.
//!
//! bcrypt is slow by design, so a check runs on the blocking pool, never on the threads
//! that serve requests, one at a time (at most one core), with a bounded queue: past
//! [`QUEUE`] waiting checks, a request is refused with 503 at once. Successful checks are
//! remembered (by digest), so Prometheus' own scrapes cost one bcrypt per configuration.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tide::{Middleware, Next, Request, Response, StatusCode};

use crate::web::{Credentials, WebConfig, WebConfigFile};

/// Set on a request (by [`serve_with`](crate::serve_with)'s accept loop) whose TLS client
/// presented a certificate the configured CA verified.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedClient;

/// Set on a request (by [`serve_with`](crate::serve_with)'s accept loop) that came over TLS.
/// With `tls_server_config` in the web-config file, a request without it is refused: the
/// app was served by something that does not apply the file's TLS (tide's own `listen`,
/// say), and its passwords would cross the network in clear. An embedder whose own server
/// terminates TLS inserts it itself.
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// How many password checks may wait for the one that runs.
pub const QUEUE: usize = 16;

/// One bcrypt at a time, and a bounded queue of those waiting.
#[derive(Debug)]
struct Verifier {
    permit: (async_std::channel::Sender<()>, async_std::channel::Receiver<()>),
    waiting: AtomicUsize,
}

/// Refuses requests the web-config does not allow.
#[derive(Debug, Clone)]
pub struct Auth {
    web: Arc<WebConfigFile>,
    verifier: Arc<Verifier>,
    /// Whether a request without TLS has been refused (and logged) yet.
    refused_plain: Arc<AtomicBool>,
}

impl Auth {
    /// Checks requests against `web`, re-read when it changes.
    pub fn new(web: Arc<WebConfigFile>) -> Self {
        let permit = async_std::channel::bounded(1);
        // One permit: bcrypt runs on one blocking thread at a time.
        let _ = permit.0.try_send(());
        let verifier = Arc::new(Verifier { permit, waiting: AtomicUsize::new(0) });
        Auth { web, verifier, refused_plain: Arc::default() }
    }

    /// Runs the slow check for `credentials`, or `None` when too many are waiting.
    async fn verify(&self, config: Arc<WebConfig>, credentials: Credentials) -> Option<bool> {
        let v = &self.verifier;
        if v.waiting.fetch_add(1, Ordering::SeqCst) >= QUEUE {
            v.waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = v.permit.1.recv().await;
        v.waiting.fetch_sub(1, Ordering::SeqCst);
        let ok = async_std::task::spawn_blocking(move || config.verify(&credentials)).await;
        if permit.is_ok() {
            let _ = v.permit.0.try_send(());
        }
        Some(ok)
    }
}

fn unauthorized() -> Response {
    let mut res = Response::new(StatusCode::Unauthorized);
    res.insert_header("WWW-Authenticate", "Basic realm=\"metrics-server-prom\"");
    res.set_body("Unauthorized\n");
    res
}

#[async_trait::async_trait]
impl<S: Clone + Send + Sync + 'static> Middleware<S> for Auth {
    async fn handle(&self, req: Request<S>, next: Next<'_, S>) -> tide::Result {
        let config = self.web.current();
        // An error becomes its answer here, not later, so that it carries the headers too.
        let mut res = self.checked(config.clone(), req, next).await.unwrap_or_else(|e| {
            let mut res = Response::new(e.status());
            res.set_error(e);
            res
        });
        for (name, value) in config.iter().flat_map(|c| c.headers()) {
            res.insert_header(name.clone(), value.clone());
        }
        Ok(res)
    }
}

impl Auth {
    /// The answer, once the file's checks pass; else the refusal.
    async fn checked<S: Clone + Send + Sync + 'static>(
        &self,
        config: Option<Arc<WebConfig>>,
        req: Request<S>,
        next: Next<'_, S>,
    ) -> tide::Result {
        let Some(config) = config else {
            let mut res = Response::new(StatusCode::ServiceUnavailable);
            res.set_body("the web-config file has not loaded: refusing to serve without its checks\n");
            return Ok(res);
        };
        if config.tls.is_some() && req.ext::<OverTls>().is_none() {
            if !self.refused_plain.swap(true, Ordering::Relaxed) {
                log::error!(
                    "the web-config file configures TLS, but a request came without it: refused (403); \
                     serve the app with msp_server::serve_with, which applies the file's TLS"
                );
            }
            let mut res = Response::new(StatusCode::Forbidden);
            res.set_body(
                "the web-config file configures TLS, and this request came without it: the server does not \
                 apply the file's TLS (serve the app with msp_server::serve_with)\n",
            );
            return Ok(res);
        }
        if config.requires_client_cert() && req.ext::<VerifiedClient>().is_none() {
            return Ok(unauthorized());
        }
        if config.has_basic_auth() {
            let header = req.header("Authorization").map(|h| h.as_str());
            let Some(credentials) = WebConfig::credentials(header) else { return Ok(unauthorized()) };
            if !config.verified_before(&credentials) {
                match self.verify(config, credentials).await {
                    Some(true) => {}
                    Some(false) => return Ok(unauthorized()),
                    None => {
                        let mut res = Response::new(StatusCode::ServiceUnavailable);
                        res.insert_header("Retry-After", "1");
                        res.set_body("too many password checks in progress\n");
                        return Ok(res);
                    }
                }
            }
        }
        Ok(next.run(req).await)
    }
}
