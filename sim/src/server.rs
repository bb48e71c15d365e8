//! The simulated API server: routes, the bearer-token check, fault modes, and a log of
//! the requests it served.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_std::net::TcpListener;
use serde_json::json;
use tide::{Request, Response, StatusCode};

use crate::cluster::{SimCluster, SimPod};
use crate::tls::{serve_tls, PkiError, TestPki};
use msp_core::{LabelSelector, LabelSelectorError};

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
    /// Answer 200 with exactly this body (attack mode: malformed items, huge answers).
    Body(Arc<String>),
    /// Answer `status` (429, 503, 504) with `Retry-After: seconds`, `times` times, then serve
    /// normally again (the fault removes itself).
    RetryAfter {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` value, in seconds.
        seconds: u64,
        /// How many requests get it.
        times: u32,
    },
    /// Watches get 200 and exactly these bytes, then the end of the body (none: a proxy
    /// that cuts watches off at once); lists are served as usual.
    WatchBody(Arc<Vec<u8>>),
    /// Watches (streaming lists among them) get this status; lists are served as usual (a
    /// role that may list but not watch answers 403 so).
    WatchStatus(u16),
    /// Pages after the first (requests with a `continue` token) get this status `times`
    /// times, then are served as usual (the fault removes itself): an API server that sheds
    /// load partway through a list.
    ContinuedPages {
        /// The HTTP status.
        status: u16,
        /// How many requests get it.
        times: u32,
    },
    /// Lists are answered as usual, but only after this long (a busy API server or
    /// metrics-server), so that requests to the exporter meanwhile find the read in flight.
    Delay(Duration),
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
    /// Every request's path and query as it arrives, answered yet or not (a request
    /// held by [`Fault::Hang`] is here and never in [`SimState::requests`]).
    pub arrived: Vec<String>,
    /// The `User-Agent` of each request in [`SimState::requests`], in the same order
    /// (empty when there was none).
    pub user_agents: Vec<String>,
    /// The `Impersonate-*` headers of each request in [`SimState::requests`], in the same
    /// order: `(name, value)`, names in lower case, a header sent twice twice.
    pub impersonation: Vec<Vec<(String, String)>>,
    /// The next this many list requests that carry a `continue` token get 410 Gone
    /// (`Expired`), as an API server does once the token's resourceVersion is compacted.
    pub expire_continue: u32,
    /// Pages answer with the `continue` token they were sent (the first page, with one
    /// that points at the start): a list that never ends, as a broken API server's.
    pub loop_continue: bool,
    /// Whether watches with `sendInitialEvents=true` are served as streaming lists (the API
    /// server's `WatchList` feature, on by default in 1.32 and from 1.34, off in 1.33): the
    /// objects as `ADDED` events, then a bookmark annotated `k8s.io/initial-events-end`. Off
    /// (the default here, as on older servers), such a watch gets 422 Invalid.
    pub streams_lists: bool,
    /// The next this many streaming lists (watches with `sendInitialEvents=true`) get 503,
    /// whatever else is served; with `Retry-After` when [`SimState::fail_streams_retry_after`]
    /// says how long.
    pub fail_streams: u32,
    /// The `Retry-After` (seconds) of the streaming lists' 503s.
    pub fail_streams_retry_after: Option<u64>,
    /// Every watch from a resourceVersion (not a streaming list) is answered 410 Gone, as
    /// the status of the request: a server whose history is always gone.
    pub expire_watches: bool,
    /// Watches with `sendInitialEvents=true` are served as a watch without a
    /// resourceVersion was before it: every object as `ADDED`, with no end, then the changes
    /// from now, with bookmarks; as a server that does not know the parameters might.
    pub ignore_send_initial_events: bool,
    /// How long a streaming list waits before its first event, as a busy API server's does
    /// while its watch cache catches up with the request (up to 3 s, then an error).
    pub first_event_delay: Duration,
    /// The current resourceVersion.
    pub resource_version: u64,
    /// Watch events since the start: `(route, resourceVersion, type, object)`.
    pub events: Vec<(Route, u64, &'static str, serde_json::Value)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted_before: u64,
    /// Bumped to close every open watch (as an API server restart would).
    pub watch_generation: u64,
    /// Watches (streaming lists included) being answered now: opened, and not yet ended by
    /// the simulator or by the client going away (which a bookmark finds within a second).
    pub open_watches: usize,
    /// Rendered bodies by route and version, valid until the next [`SimState::update`].
    bodies: HashMap<(Route, &'static str), Arc<String>>,
    /// Each list route's items, for pages, valid until the next [`SimState::update`]: a
    /// 100,000-pod list in pages of 500 is built once, not 200 times.
    page_items: HashMap<Route, Arc<Vec<serde_json::Value>>>,
}

/// The objects of a list route, keyed by `namespace/name`.
fn objects(cluster: &SimCluster, route: Route) -> Vec<(String, serde_json::Value)> {
    if !WATCHED.contains(&route) {
        return Vec::new();
    }
    let list = list(cluster, route, "v1beta1");
    let items = list.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default();
    items
        .into_iter()
        .map(|o| {
            let m = &o["metadata"];
            (format!("{}/{}", m["namespace"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or("")), o)
        })
        .collect()
}

/// What `route` lists, as the API server would send it (`version` for the metrics API).
fn list(cluster: &SimCluster, route: Route, version: &str) -> serde_json::Value {
    match route {
        Route::PodMetrics => cluster.pod_metrics(version),
        Route::NodeMetrics => cluster.node_metrics(version),
        Route::Pods => cluster.pod_list(),
        Route::Nodes => cluster.node_list(),
        Route::ReplicaSets => SimCluster::controller_list(&cluster.replicasets),
        Route::Jobs => SimCluster::controller_list(&cluster.jobs),
    }
}

const WATCHED: [Route; 4] = [Route::Pods, Route::Nodes, Route::ReplicaSets, Route::Jobs];

impl SimState {
    /// Changes the cluster and records what changed as watch events.
    pub fn update(&mut self, change: impl FnOnce(&mut SimCluster)) {
        let before: Vec<Vec<(String, serde_json::Value)>> =
            WATCHED.iter().map(|r| objects(&self.cluster, *r)).collect();
        change(&mut self.cluster);
        self.bodies.clear();
        self.page_items.clear();
        for (route, old) in WATCHED.iter().zip(before) {
            let new = objects(&self.cluster, *route);
            let old_map: HashMap<&String, &serde_json::Value> = old.iter().map(|(k, v)| (k, v)).collect();
            let new_keys: std::collections::HashSet<&String> = new.iter().map(|(k, _)| k).collect();
            for (key, obj) in &new {
                match old_map.get(key) {
                    None => self.push_event(*route, "ADDED", obj.clone()),
                    Some(o) if *o != obj => self.push_event(*route, "MODIFIED", obj.clone()),
                    Some(_) => {}
                }
            }
            for (key, obj) in &old {
                if !new_keys.contains(key) {
                    self.push_event(*route, "DELETED", obj.clone());
                }
            }
        }
    }

    /// Changes the listed pod at `index` of the cluster and records it as one `MODIFIED`
    /// event, without comparing the whole cluster as [`SimState::update`] does (which takes
    /// seconds at 150,000 pods): churn, as a large cluster's pods are scheduled, get their
    /// IPs and come and go all the time.
    pub fn change_pod(&mut self, index: usize, change: impl FnOnce(&mut SimPod)) {
        let Some(pod) = self.cluster.pods.get_mut(index).filter(|p| p.listed) else { return };
        change(pod);
        let object = SimCluster::pod_object(pod);
        self.bodies.retain(|(route, _), _| *route != Route::Pods);
        self.page_items.remove(&Route::Pods);
        self.push_event(Route::Pods, "MODIFIED", object);
    }

    /// Sends the watches of `route` an `ERROR` event with this status code, as an API server
    /// does for an error it meets mid-watch. It stays in the history: a watch from before
    /// it gets it too.
    pub fn watch_error(&mut self, route: Route, code: u16) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "injected: an error mid-watch", "reason": "InternalError", "code": code});
        self.resource_version += 1;
        self.events.push((route, self.resource_version, "ERROR", status));
    }

    /// Sends the watches of `route` the `ERROR` event a watch cache that has not caught up
    /// with the resourceVersion asked for sends (the apiserver's cacher: code 504, cause
    /// `ResourceVersionTooLarge`, as after an etcd restore).
    pub fn watch_too_large_resource_version(&mut self, route: Route) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": format!("Timeout: Too large resource version: {}, current: {}", self.resource_version + 10, self.resource_version),
            "reason": "Timeout", "code": 504,
            "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}});
        self.resource_version += 1;
        self.events.push((route, self.resource_version, "ERROR", status));
    }

    fn push_event(&mut self, route: Route, kind: &'static str, mut object: serde_json::Value) {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.events.push((route, self.resource_version, kind, object));
    }

    /// Forgets all history: every watch from a resourceVersion up to now gets 410 Gone and
    /// must re-list. The current resourceVersion moves past them, as a live cluster's does,
    /// so that a list made after the compaction can be watched from: a list that reported
    /// a compacted one had its watch end in 410 too, and re-listed again.
    pub fn compact(&mut self) {
        self.compacted_before = self.resource_version + 1;
        self.resource_version = self.compacted_before;
        self.events.clear();
    }
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
        Sim::start_under(cluster, token, "").await
    }

    /// [`Sim::start`], serving every route under `prefix` (`/k8s/clusters/c-1`), as an API
    /// server behind a proxy is reached; its [`Sim::url`] ends in the prefix. The request log
    /// holds the paths without it.
    pub async fn start_under(cluster: SimCluster, token: &str, prefix: &str) -> Result<Sim, SimError> {
        Sim::start_with(cluster, token, prefix, TestPki::generate()?).await
    }

    /// [`Sim::start`], presenting a certificate for `names` only (see
    /// [`TestPki::generate_for`]), not for the 127.0.0.1 it is reached at.
    pub async fn start_named(cluster: SimCluster, token: &str, names: &[&str]) -> Result<Sim, SimError> {
        Sim::start_with(cluster, token, "", TestPki::generate_for(names)?).await
    }

    async fn start_with(cluster: SimCluster, token: &str, prefix: &str, pki: TestPki) -> Result<Sim, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let prefix = prefix.trim_end_matches('/');
        let url = format!("https://127.0.0.1:{}{prefix}", listener.local_addr()?.port());
        let state = Arc::new(Mutex::new(SimState {
            cluster,
            token: token.to_owned(),
            serve_v1: true,
            faults: HashMap::new(),
            requests: Vec::new(),
            arrived: Vec::new(),
            user_agents: Vec::new(),
            impersonation: Vec::new(),
            expire_continue: 0,
            loop_continue: false,
            streams_lists: false,
            fail_streams: 0,
            fail_streams_retry_after: None,
            expire_watches: false,
            ignore_send_initial_events: false,
            first_event_delay: Duration::ZERO,
            resource_version: 1000,
            events: Vec::new(),
            compacted_before: 0,
            watch_generation: 0,
            open_watches: 0,
            bodies: HashMap::new(),
            page_items: HashMap::new(),
        }));
        let app = if prefix.is_empty() {
            app(state.clone())
        } else {
            let mut outer = tide::with_state(state.clone());
            outer.at(prefix).nest(app(state.clone()));
            outer
        };
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

    /// How many requests with paths starting with `prefix` have arrived, answered or not.
    pub fn arrivals(&self, prefix: &str) -> usize {
        self.state().arrived.iter().filter(|p| p.starts_with(prefix)).count()
    }

    /// How many list (not watch) requests have paths starting with `prefix`.
    pub fn lists(&self, prefix: &str) -> usize {
        self.state().requests.iter().filter(|(p, _)| p.starts_with(prefix) && !p.contains("watch=")).count()
    }

    /// List requests for `prefix` that asked for a page (`limit=`), continued or not.
    pub fn pages(&self, prefix: &str) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|(p, _)| p.starts_with(prefix) && !p.contains("watch=") && p.contains("limit="))
            .count()
    }

    /// Closes every open watch connection.
    pub fn drop_watches(&self) {
        self.state().watch_generation += 1;
    }

    /// Changes the cluster, recording watch events (see [`SimState::update`]).
    pub fn update(&self, change: impl FnOnce(&mut SimCluster)) {
        self.state().update(change)
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

/// What a watch sends before the changes.
#[derive(Clone, Copy, PartialEq)]
enum Initial {
    /// Nothing: the changes after its resourceVersion.
    None,
    /// A streaming list: the objects as `ADDED` events, then the bookmark that ends them,
    /// at the resourceVersion they are of; the changes after it.
    Streamed,
    /// A watch of old without a resourceVersion: the objects as `ADDED` events, no end; the
    /// changes from now.
    Unended,
}

/// Streams watch events for `route` after `from`, with bookmarks, until `timeout` passes or
/// the client goes away, after what `initial` sends first.
fn watch_body(
    state: State,
    route: Route,
    from: u64,
    timeout: Duration,
    initial: Initial,
) -> std::io::Result<tide::Body> {
    use async_std::io::WriteExt;
    let (reader, mut writer) = async_std::os::unix::net::UnixStream::pair()?;
    /// Counts a watch in [`SimState::open_watches`] for as long as it is answered.
    struct Open(State);
    impl Drop for Open {
        fn drop(&mut self) {
            lock(&self.0).open_watches -= 1;
        }
    }
    lock(&state).open_watches += 1;
    let open = Open(state.clone());
    async_std::task::spawn(async move {
        let _open = open;
        let started = std::time::Instant::now();
        if initial == Initial::Streamed {
            let delay = lock(&state).first_event_delay;
            async_std::task::sleep(delay).await;
        }
        let (generation, from, first) = {
            let s = lock(&state);
            let rv = s.resource_version;
            let end = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                "metadata": {"resourceVersion": rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
            let added = || {
                objects(&s.cluster, route).into_iter().map(|(_, o)| json!({"type": "ADDED", "object": o}).to_string())
            };
            match initial {
                Initial::None => (s.watch_generation, from, Vec::new()),
                Initial::Streamed => (s.watch_generation, rv, added().chain([end.to_string()]).collect()),
                Initial::Unended => (s.watch_generation, rv, added().collect()),
            }
        };
        for line in &first {
            if writer.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                return;
            }
        }
        let mut sent = from;
        let mut last_bookmark = std::time::Instant::now();
        loop {
            let (lines, gone, rv) = {
                let s = lock(&state);
                if s.watch_generation != generation {
                    return;
                }
                if from < s.compacted_before {
                    let status = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": format!("too old resource version: {from} ({})", s.compacted_before), "reason": "Expired", "code": 410}});
                    (vec![status.to_string()], true, s.resource_version)
                } else {
                    let lines: Vec<String> = s
                        .events
                        .iter()
                        .filter(|(r, v, _, _)| *r == route && *v > sent)
                        .map(|(_, _, kind, obj)| json!({"type": kind, "object": obj}).to_string())
                        .collect();
                    (lines, false, s.resource_version)
                }
            };
            for line in &lines {
                if writer.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                    return;
                }
            }
            if gone {
                return;
            }
            sent = sent.max(rv);
            if last_bookmark.elapsed() > Duration::from_millis(500) {
                let bookmark = json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}}});
                if writer.write_all(format!("{bookmark}\n").as_bytes()).await.is_err() {
                    return;
                }
                last_bookmark = std::time::Instant::now();
            }
            if started.elapsed() > timeout {
                return;
            }
            async_std::task::sleep(Duration::from_millis(20)).await;
        }
    });
    Ok(tide::Body::from_reader(async_std::io::BufReader::new(reader), None))
}

async fn respond(req: Request<State>, route: Route, version: Option<&str>) -> tide::Result {
    let path = match req.url().query() {
        Some(q) => format!("{}?{q}", req.url().path()),
        None => req.url().path().to_owned(),
    };
    let state = req.state().clone();
    lock(&state).arrived.push(path.clone());
    let authorized = {
        let s = lock(&state);
        let want = format!("Bearer {}", s.token);
        req.header("Authorization").map(|h| h.as_str()) == Some(want.as_str())
    };
    let answer = if !authorized {
        status(401, "Unauthorized", "Unauthorized")
    } else if let Some((code, reason, message)) = invalid_options(&req, ignores_initial_events(&state)) {
        status(code, reason, &message)
    } else {
        let fault = lock(&state).faults.get(&route).cloned();
        match fault {
            Some(Fault::Hang) => {
                async_std::task::sleep(Duration::from_secs(3600)).await;
                status(504, "Timeout", "hung")
            }
            Some(Fault::Status(code)) => status(code, "Injected", &format!("injected fault for {route:?}")),
            Some(Fault::RetryAfter { status: code, seconds, times }) => {
                spend(&mut lock(&state), route, times, Fault::RetryAfter { status: code, seconds, times: times - 1 });
                let mut res = match code {
                    429 => status(code, "TooManyRequests", "the server has received too many requests"),
                    504 => status(code, "Timeout", "Timeout: Too large resource version: 1001, current: 1000"),
                    _ => status(code, "ServiceUnavailable", "the server is currently unable to handle the request"),
                };
                res.insert_header("Retry-After", seconds.to_string());
                res
            }
            Some(Fault::ContinuedPages { status: code, times })
                if req.url().query_pairs().any(|(k, _)| k == "continue") =>
            {
                spend(&mut lock(&state), route, times, Fault::ContinuedPages { status: code, times: times - 1 });
                status(code, "ServiceUnavailable", "injected: a page after the first fails")
            }
            Some(Fault::WatchStatus(code)) if req.url().query_pairs().any(|(k, _)| k == "watch") => {
                status(code, "Injected", &format!("injected fault for watches of {route:?}"))
            }
            Some(Fault::WatchBody(bytes)) if req.url().query_pairs().any(|(k, _)| k == "watch") => {
                let mut res = Response::new(StatusCode::Ok);
                res.set_content_type("application/json");
                res.set_body(bytes.to_vec());
                res
            }
            _ if watching(&req) => {
                let q = |name: &str| query(&req, name);
                let from = q("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
                let timeout = Duration::from_secs(q("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(300));
                let initial = q("sendInitialEvents").as_deref() == Some("true");
                let (streams, ignores, fails, retry_after, expired) = {
                    let mut s = lock(&state);
                    let fails = initial && s.fail_streams > 0;
                    s.fail_streams -= u32::from(fails);
                    let expired = !initial && s.expire_watches;
                    (s.streams_lists, s.ignore_send_initial_events, fails, s.fail_streams_retry_after, expired)
                };
                if fails {
                    let mut res = status(503, "ServiceUnavailable", "injected: the streaming list fails");
                    if let Some(seconds) = retry_after {
                        res.insert_header("Retry-After", seconds.to_string());
                    }
                    res
                } else if expired {
                    status(410, "Expired", "too old resource version")
                } else if initial && !ignores && !streams {
                    status(
                        422,
                        "Invalid",
                        "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                    )
                } else {
                    let mut res = Response::new(StatusCode::Ok);
                    res.set_content_type("application/json");
                    let initial = match (initial, ignores) {
                        (false, _) => Initial::None,
                        (true, false) => Initial::Streamed,
                        (true, true) => Initial::Unended,
                    };
                    res.set_body(watch_body(state.clone(), route, from, timeout, initial)?);
                    res
                }
            }
            _ if WATCHED.contains(&route) && req.url().query_pairs().any(|(k, _)| k == "limit") => {
                let q = |name: &str| query(&req, name);
                let limit = q("limit").and_then(|v| v.parse::<usize>().ok()).filter(|l| *l > 0);
                page(&mut lock(&state), route, limit, q("continue").as_deref())
            }
            other => match label_selector(&req, route) {
                Err(e) => status(400, "BadRequest", &e.to_string()),
                Ok(selector) => {
                    if let Some(Fault::Delay(d)) = other {
                        async_std::task::sleep(d).await;
                    }
                    let body = list_body(&mut lock(&state), route, version, &selector);
                    match (body, other) {
                        (None, _) => status(404, "NotFound", "the server could not find the requested resource"),
                        (Some(body), Some(Fault::Truncate)) => {
                            json_response(Arc::new(body[..body.len() / 2].to_owned()))
                        }
                        (Some(_), Some(Fault::NotJson)) => {
                            json_response(Arc::new("<html>502 Bad Gateway</html>".into()))
                        }
                        (Some(_), Some(Fault::Body(body))) => json_response(body),
                        (Some(body), _) => json_response(body),
                    }
                }
            },
        }
    };
    let agent = req.header("User-Agent").map(|h| h.as_str().to_owned()).unwrap_or_default();
    let impersonation: Vec<(String, String)> = req
        .iter()
        .filter(|(name, _)| name.as_str().to_ascii_lowercase().starts_with("impersonate-"))
        .flat_map(|(name, values)| values.iter().map(|v| (name.as_str().to_ascii_lowercase(), v.as_str().to_owned())))
        .collect();
    let mut s = lock(&state);
    s.requests.push((path, answer.status().into()));
    s.user_agents.push(agent);
    s.impersonation.push(impersonation);
    drop(s);
    Ok(answer)
}

/// Whether the simulated server (or a proxy before it) ignores `sendInitialEvents`.
fn ignores_initial_events(state: &State) -> bool {
    lock(state).ignore_send_initial_events
}

/// One of a fault's `times` used: `left`, the fault with one fewer, stays for the next
/// request, unless that was the last.
fn spend(s: &mut SimState, route: Route, times: u32, left: Fault) {
    if times <= 1 {
        s.faults.remove(&route);
    } else {
        s.faults.insert(route, left);
    }
}

/// The value of query parameter `name`, decoded.
fn query(req: &Request<State>, name: &str) -> Option<String> {
    req.url().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Whether the request asks for a watch (`watch=1` or `watch=true`).
fn watching(req: &Request<State>) -> bool {
    matches!(query(req, "watch").as_deref(), Some("1" | "true"))
}

/// What a real API server refuses of list and watch options, as it says it: its option
/// validation (`ValidateListOptions`: 422 Invalid), and its storage (a `continue` with a
/// resourceVersion other than `0`: 400). A client that dropped one of the parameters that go
/// together would be refused by a real server, so it is here too. A server or proxy that
/// `ignores` `sendInitialEvents` checks nothing of it.
fn invalid_options(req: &Request<State>, ignores: bool) -> Option<(u16, &'static str, String)> {
    let q = |name: &str| query(req, name);
    let invalid = |message: &str| Some((422, "Invalid", format!("ListOptions.meta.k8s.io \"\" is invalid: {message}")));
    let watch = watching(req);
    let initial = q("sendInitialEvents").is_some() && !ignores;
    let matching = q("resourceVersionMatch").filter(|_| !ignores);
    if q("continue").is_some() && q("resourceVersion").is_some_and(|v| !v.is_empty() && v != "0") {
        return Some((400, "BadRequest", "specifying resource version is not allowed when using continue".into()));
    }
    match (watch, initial, matching.as_deref()) {
        (false, true, _) => invalid("sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"),
        (true, true, Some("NotOlderThan")) => None,
        (true, true, _) => {
            invalid("resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
        }
        (true, false, Some(_)) => {
            invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
        }
        _ => None,
    }
}

/// The `labelSelector` of a request: pod metrics are filtered by it, as metrics-server does;
/// other routes ignore it (the exporter sends none there).
fn label_selector(req: &Request<State>, route: Route) -> Result<LabelSelector, LabelSelectorError> {
    match req.url().query_pairs().find(|(k, _)| k == "labelSelector") {
        Some((_, selector)) if route == Route::PodMetrics => selector.parse(),
        _ => Ok(LabelSelector::default()),
    }
}

/// The whole list `route` answers (`version` for the metrics API), `selector`'s pods only;
/// none when that version is not served. Unfiltered bodies are rendered once per change
/// (the metrics lists every time, if their samples' time follows the clock).
fn list_body(s: &mut SimState, route: Route, version: Option<&str>, selector: &LabelSelector) -> Option<Arc<String>> {
    let version = match version {
        Some("v1") => "v1",
        _ => "v1beta1",
    };
    if route_version_missing(s, route, version) {
        return None;
    }
    let cached = selector.is_empty() && (s.cluster.resolution.is_none() || WATCHED.contains(&route));
    if cached {
        if let Some(body) = s.bodies.get(&(route, version)) {
            return Some(body.clone());
        }
    }
    let mut value = match route {
        Route::PodMetrics => s.cluster.pod_metrics_matching(version, selector),
        _ => list(&s.cluster, route, version),
    };
    if WATCHED.contains(&route) {
        value["metadata"]["resourceVersion"] = json!(s.resource_version.to_string());
    }
    let body = Arc::new(crate::go_json::to_string(&value));
    if cached {
        s.bodies.insert((route, version), body.clone());
    }
    Some(body)
}

/// One page of a list route: `limit` items from the offset in the `continue` token, which
/// also holds the resourceVersion of the list's first page (every page reports it, as the
/// API server does). A token from before a compaction, or one [`SimState::expire_continue`]
/// picks, gets 410 Gone with reason `Expired`. No `limit` (0): everything that is left.
fn page(s: &mut SimState, route: Route, limit: Option<usize>, token: Option<&str>) -> Response {
    let (offset, rv) = match token {
        None => (0, s.resource_version),
        Some(token) => {
            let parsed = token
                .strip_prefix("sim-")
                .and_then(|t| t.split_once('-'))
                .and_then(|(o, v)| Some((o.parse::<usize>().ok()?, v.parse::<u64>().ok()?)));
            let Some((offset, rv)) = parsed else {
                return status(400, "BadRequest", "invalid continue token");
            };
            if s.expire_continue > 0 || rv < s.compacted_before {
                s.expire_continue = s.expire_continue.saturating_sub(1);
                return status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                );
            }
            (offset, rv)
        }
    };
    let mut value = list(&SimCluster::default(), route, "v1beta1");
    let items = match s.page_items.get(&route) {
        Some(items) => items.clone(),
        None => {
            let mut all = list(&s.cluster, route, "v1beta1");
            let items = all.get_mut("items").and_then(|i| i.as_array_mut()).map(std::mem::take).unwrap_or_default();
            let items = Arc::new(items);
            s.page_items.insert(route, items.clone());
            items
        }
    };
    let end = limit.map_or(items.len(), |l| offset.saturating_add(l)).min(items.len());
    let rest = items.len() - end;
    let page: Vec<serde_json::Value> = items.iter().skip(offset).take(end.saturating_sub(offset)).cloned().collect();
    value["items"] = if page.is_empty() && matches!(route, Route::ReplicaSets | Route::Jobs) {
        // As the API server writes an empty metadata-only list: its items are appended to a
        // nil slice, which Go encodes as `null`.
        serde_json::Value::Null
    } else {
        serde_json::Value::Array(page)
    };
    value["metadata"]["resourceVersion"] = json!(rv.to_string());
    if rest > 0 || s.loop_continue {
        let next = if s.loop_continue { offset } else { end };
        value["metadata"]["continue"] = json!(format!("sim-{next}-{rv}"));
        value["metadata"]["remainingItemCount"] = json!(rest);
    }
    json_response(Arc::new(crate::go_json::to_string(&value)))
}

/// Shared body bytes, served without copying.
struct Shared(Arc<String>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn json_response(body: Arc<String>) -> Response {
    let mut res = Response::new(StatusCode::Ok);
    res.set_content_type("application/json");
    let len = body.len();
    res.set_body(tide::Body::from_reader(futures_lite::io::Cursor::new(Shared(body)), Some(len)));
    res
}

/// `metrics.k8s.io/v1` while the simulator plays a server without it.
fn route_version_missing(s: &SimState, route: Route, version: &str) -> bool {
    matches!(route, Route::PodMetrics | Route::NodeMetrics) && version == "v1" && !s.serve_v1
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
