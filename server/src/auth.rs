//! Basic auth and client-certificate checks from the web-config file, as tide middleware
//! on each protected route, so they hold wherever the app is mounted (an embedder's
//! `nest()` included). `/healthz` and `/readyz` carry no middleware: kubelet probes them.
//!
//! bcrypt is slow by design, so a check runs on the blocking pool, never on the threads
//! that serve requests.

use std::sync::Arc;

use tide::{Middleware, Next, Request, Response, StatusCode};

use crate::web::WebConfigFile;

/// Set on a request (by the accept loop) whose TLS client presented a certificate the
/// configured CA verified.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedClient;

/// Refuses requests the web-config does not allow.
#[derive(Debug, Clone)]
pub struct Auth {
    web: Arc<WebConfigFile>,
}

impl Auth {
    /// Checks requests against `web`, re-read when it changes.
    pub fn new(web: Arc<WebConfigFile>) -> Self {
        Auth { web }
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
        let Some(config) = self.web.current() else {
            let mut res = Response::new(StatusCode::ServiceUnavailable);
            res.set_body("the web-config file has not loaded: refusing to serve without its checks\n");
            return Ok(res);
        };
        if config.requires_client_cert() && req.ext::<VerifiedClient>().is_none() {
            return Ok(unauthorized());
        }
        if config.has_basic_auth() {
            let header = req.header("Authorization").map(|h| h.as_str().to_owned());
            let allowed = async_std::task::spawn_blocking(move || config.authorized(header.as_deref())).await;
            if !allowed {
                return Ok(unauthorized());
            }
        }
        Ok(next.run(req).await)
    }
}
