//! The simulated API server: routes, the bearer-token check, fault modes, and a log of
//! the requests it served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_std::net::TcpListener;
use serde_json::json;
use tide::{Request, Response, StatusCode};

use crate::cluster::SimCluster;
use crate::tls::{serve_tls, PkiError, TestPki};

/// A way for one route to misbehave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status and a Kubernetes `Status` body.
    Status(u16),
    /// Never answer (for the length of a long sleep).
    Hang,
    /// Send only the first half of the JSON.
    Truncate,
    /// Send a body that is not JSON.
    NotJson,
}

/// The routes faults can be set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `metrics.k8s.io` pods.
    PodMetrics,
    /// `metrics.k8s.io` nodes.
    NodeMetrics,
    /// `/api/v1/pods`.
    Pods,
    /// `/api/v1/nodes`.
    Nodes,
    /// `apps/v1` replicasets.
    ReplicaSets,
    /// `batch/v1` jobs.
    Jobs,
}

/// The mutable state behind the simulator.
#[derive(Debug)]
pub struct SimState {
    /// The cluster.
    pub cluster: SimCluster,
    /// The bearer token accepted now.
    pub token: String,
    /// Whether `metrics.k8s.io/v1` is served (else 404, as before Kubernetes 1.37).
    pub serve_v1: bool,
    /// Faults by route.
    pub faults: HashMap<Route, Fault>,
    /// Every request served: `(path and query, status)`.
    pub requests: Vec<(String, u16)>,
}

/// A handle to a running simulator.
#[derive(Clone, Debug)]
pub struct Sim {
    state: Arc<Mutex<SimState>>,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its PKI (the CA to trust).
    pub pki: TestPki,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Certificates.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Binding the port.
    #[error("binding the simulator's port: {0}")]
    Bind(#[from] std::io::Error),
}

impl Sim {
    /// Starts a simulator of `cluster` on 127.0.0.1 (a free port), over TLS with a fresh CA,
    /// accepting `token`.
    pub async fn start(cluster: SimCluster, token: &str) -> Result<Sim, SimError> {
        let pki = TestPki::generate()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let state = Arc::new(Mutex::new(SimState {
            cluster,
            token: token.to_owned(),
            serve_v1: true,
            faults: HashMap::new(),
            requests: Vec::new(),
        }));
        let app = app(state.clone());
        let config = pki.server_config()?;
        async_std::task::spawn(async move {
            if let Err(e) = serve_tls(listener, config, app).await {
                log::error!("simulator stopped: {e}");
            }
        });
        Ok(Sim { state, url, pki })
    }

    /// Locks the state to read or change it (the cluster, token, faults, request log).
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests have paths starting with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.state().requests.iter().filter(|(p, _)| p.starts_with(prefix)).count()
    }
}

type State = Arc<Mutex<SimState>>;

fn status(code: u16, reason: &str, message: &str) -> Response {
    let status = StatusCode::try_from(code).unwrap_or(StatusCode::InternalServerError);
    let mut res = Response::new(status);
    res.set_content_type("application/json");
    res.set_body(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": message, "reason": reason, "code": code})
        .to_string(),
    );
    res
}

fn lock(state: &State) -> MutexGuard<'_, SimState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn respond(req: Request<State>, route: Route, version: Option<&str>) -> tide::Result {
    let path = match req.url().query() {
        Some(q) => format!("{}?{q}", req.url().path()),
        None => req.url().path().to_owned(),
    };
    let state = req.state().clone();
    let authorized = {
        let s = lock(&state);
        let want = format!("Bearer {}", s.token);
        req.header("Authorization").map(|h| h.as_str()) == Some(want.as_str())
    };
    let answer = if !authorized {
        status(401, "Unauthorized", "Unauthorized")
    } else {
        let fault = lock(&state).faults.get(&route).cloned();
        match fault {
            Some(Fault::Hang) => {
                async_std::task::sleep(Duration::from_secs(3600)).await;
                status(504, "Timeout", "hung")
            }
            Some(Fault::Status(code)) => status(code, "Injected", &format!("injected fault for {route:?}")),
            other => {
                let body = {
                    let s = lock(&state);
                    if version == Some("v1") && !s.serve_v1 {
                        None
                    } else {
                        let c = &s.cluster;
                        Some(
                            match route {
                                Route::PodMetrics => c.pod_metrics(version.unwrap_or("v1beta1")),
                                Route::NodeMetrics => c.node_metrics(version.unwrap_or("v1beta1")),
                                Route::Pods => c.pod_list(),
                                Route::Nodes => c.node_list(),
                                Route::ReplicaSets => SimCluster::controller_list(&c.replicasets),
                                Route::Jobs => SimCluster::controller_list(&c.jobs),
                            }
                            .to_string(),
                        )
                    }
                };
                match (body, other) {
                    (None, _) => status(404, "NotFound", "the server could not find the requested resource"),
                    (Some(body), Some(Fault::Truncate)) => json_response(body[..body.len() / 2].to_owned()),
                    (Some(_), Some(Fault::NotJson)) => json_response("<html>502 Bad Gateway</html>".into()),
                    (Some(body), _) => json_response(body),
                }
            }
        }
    };
    lock(&state).requests.push((path, answer.status().into()));
    Ok(answer)
}

fn json_response(body: String) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("application/json");
    res.set_body(body);
    res
}

/// The simulator's routes over `state`.
pub fn app(state: State) -> tide::Server<State> {
    let mut app = tide::with_state(state);
    for version in ["v1", "v1beta1"] {
        app.at(&format!("/apis/metrics.k8s.io/{version}/pods"))
            .get(move |r| respond(r, Route::PodMetrics, Some(version)));
        app.at(&format!("/apis/metrics.k8s.io/{version}/nodes"))
            .get(move |r| respond(r, Route::NodeMetrics, Some(version)));
    }
    app.at("/api/v1/pods").get(|r| respond(r, Route::Pods, None));
    app.at("/api/v1/nodes").get(|r| respond(r, Route::Nodes, None));
    app.at("/apis/apps/v1/replicasets").get(|r| respond(r, Route::ReplicaSets, None));
    app.at("/apis/batch/v1/jobs").get(|r| respond(r, Route::Jobs, None));
    app
}
