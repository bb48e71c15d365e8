//! GET requests to the API server over surf: bearer token, `User-Agent`, timeout, a size
//! bound, one retry after a 401 with a re-read token, waits and retries after a 429 or 5xx
//! with `Retry-After`, and errors that carry the status and the Kubernetes `Status` message.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use http_types::Url;

use super::endpoint::Endpoint;
use super::exec::ExecError;
use super::impersonation::Impersonation;
use super::token::Auth;
use super::transport::Transport;

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No connection, a TLS failure, a broken response.
    #[error("GET {path}: {source}")]
    Transport {
        /// The request path.
        path: String,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer is not the JSON expected.
    #[error("GET {path}: invalid JSON: {source}")]
    Decode {
        /// The request path.
        path: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A watch stream sent an `ERROR` event.
    #[error("watch {path}: error event: {status}")]
    WatchError {
        /// The request path.
        path: String,
        /// The event's `Status` object, as sent.
        status: String,
    },
    /// No complete answer within the timeout.
    #[error("GET {path}: no answer within {after:?} ({bound})")]
    Timeout {
        /// The request path.
        path: String,
        /// The timeout.
        after: Duration,
        /// Which bound it was: `kubernetes.timeout` (a request's), or a watch's silence.
        bound: &'static str,
    },
    /// A non-2xx answer.
    #[error("GET {path}: HTTP {status}: {message}")]
    Status {
        /// The request path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The `Status` object's message, or the start of the body.
        message: String,
        /// `Retry-After` (in seconds) on a 429 or 5xx.
        retry_after: Option<Duration>,
    },
    /// The exec credential plugin gave no token.
    #[error("GET {path}: {source}")]
    Credentials {
        /// The request path.
        path: String,
        /// Why.
        source: ExecError,
    },
    /// A paged list that does not end: a `continue` token came back as it was sent, or the
    /// pages went on past `MAX_LIST_OBJECTS` objects' worth.
    #[error(
        "GET {path}: the list does not end: {}",
        if *repeated { format!("page {pages} gave back the continue token it was sent") } else { format!("{pages} pages and more") }
    )]
    EndlessList {
        /// The list's path (without its `continue` token).
        path: String,
        /// Pages read.
        pages: u32,
        /// Whether a token came back as sent (else, too many pages).
        repeated: bool,
    },
    /// A streaming list that did not end: its watch closed before the bookmark that ends
    /// the objects, or the objects went on past `MAX_LIST_OBJECTS`.
    #[error(
        "watch {path}: the streaming list did not end: {objects} objects{}",
        if *closed { ", then the watch closed" } else { " and more" }
    )]
    UnendedStream {
        /// The request path.
        path: String,
        /// Objects read.
        objects: usize,
        /// Whether the watch closed (else, too many objects).
        closed: bool,
    },
    /// The bookmark that ends a streaming list has no resourceVersion to watch from.
    #[error("watch {path}: the bookmark that ends the streaming list has no resourceVersion")]
    NoEndVersion {
        /// The request path.
        path: String,
    },
    /// One watch event is longer than a watch line may be (below the response bound).
    #[error("watch {path}: an event larger than {limit} bytes, the most a watch line may be")]
    EventTooLarge {
        /// The request path.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// The body is larger than `kubernetes.max_response_bytes`.
    #[error("GET {path}: response larger than {limit} bytes (kubernetes.max_response_bytes)")]
    TooLarge {
        /// The request path.
        path: String,
        /// The limit.
        limit: usize,
    },
}

impl KubeError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long a 429 or a 5xx asked us to wait (`Retry-After`), if it did: as client-go
    /// reads it. The API server says it with a 429 (API Priority and Fairness), a 503, or a
    /// 504 (`Too large resource version`, when its watch cache has not caught up in 3 s).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KubeError::Status { status: 429 | 500..=599, retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether the request never reached the API server: its connection could not be
    /// opened (refused, a TCP connect or TLS handshake that failed or took too long, a URL
    /// or TLS setup that cannot make one). Another request there fails alike until something
    /// changes.
    pub fn unreached(&self) -> bool {
        matches!(self, KubeError::Transport { source, .. } if source.is::<super::Unreached>())
    }

    /// A short code for counting: the status, or `error`/`timeout`.
    pub fn code(&self) -> String {
        match self {
            KubeError::Status { status, .. } => status.to_string(),
            KubeError::Timeout { .. } => "timeout".into(),
            KubeError::TooLarge { .. } | KubeError::EventTooLarge { .. } => "too_large".into(),
            KubeError::EndlessList { .. } | KubeError::UnendedStream { .. } => "endless_list".into(),
            KubeError::Transport { .. }
            | KubeError::Decode { .. }
            | KubeError::WatchError { .. }
            | KubeError::NoEndVersion { .. }
            | KubeError::Credentials { .. } => "error".into(),
        }
    }
}

/// [`KubeError::Timeout`]'s bound for a request: the setting that gives it.
const REQUEST_TIMEOUT: &str = "kubernetes.timeout, MSP_KUBERNETES__TIMEOUT";

/// Limits on each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole request, body included.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_response_bytes: usize,
}

impl Default for Limits {
    /// The server's defaults: `kubernetes.timeout` 10 s, `max_response_bytes` 256 MiB.
    fn default() -> Self {
        Limits { timeout: Duration::from_secs(10), max_response_bytes: 256 * 1024 * 1024 }
    }
}

/// `User-Agent` on every request: the version and the commit it was built from, so that
/// audit logs and API Priority and Fairness flow schemas can tell our requests apart.
pub const USER_AGENT: &str =
    concat!("metrics-server-prom/", env!("CARGO_PKG_VERSION"), " (", env!("BUILD_REVISION"), ")");

/// Items per page when the caches list (`limit`), unless set otherwise: client-go's
/// reflector uses the same.
pub const DEFAULT_LIST_PAGE_SIZE: u32 = 500;

/// The most objects a paged list may hold, pages times their size, before it is taken
/// for one that never ends: 5 million, over 30 times Kubernetes' published limit of 150,000
/// pods a cluster (10,000 pages of the default 500).
pub const MAX_LIST_OBJECTS: u32 = 5_000_000;

/// How many times a 429 or 5xx with `Retry-After` is retried.
const MAX_RETRIES: u32 = 3;

/// The longest `Retry-After` we wait out (also never more than the request timeout); a
/// longer one fails the request at once.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);

/// A client for one API server.
#[derive(Debug)]
pub struct KubeClient {
    http: surf::Client,
    transport: Transport,
    base: Url,
    auth: Auth,
    impersonation: Impersonation,
    limits: Limits,
    list_page_size: u32,
    streaming_lists: bool,
    counts: Mutex<BTreeMap<(String, String), u64>>,
}

/// A body given back for the next read of the same resource to reuse
/// ([`KubeClient::get_reusing`]): at 150,000 pods the pod metrics are 47 MB, which would
/// otherwise be mapped and faulted in afresh on every scrape.
#[derive(Debug, Default)]
pub struct BodySlot(Mutex<Option<Vec<u8>>>);

impl BodySlot {
    /// Keeps `body` for the next read, which overwrites its bytes (kept, so that they need
    /// not be zeroed again). One much larger than what it held (a one-off huge answer) gives
    /// most of its memory back first.
    pub fn put(&self, mut body: Vec<u8>) {
        if body.capacity() > 2 * body.len() + (1 << 20) {
            body.shrink_to(body.len() + body.len() / 4);
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    }

    /// The body kept, or a new one.
    fn take(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default()
    }
}

/// `path_and_query` (from its `/`) under the base URL's own path, as client-go puts it: a
/// server behind a proxy (`https://rancher.example/k8s/clusters/c-1`) keeps its prefix.
fn under(base: &Url, path_and_query: &str) -> Result<Url, http_types::url::ParseError> {
    let prefix = base.path().trim_end_matches('/');
    base.join(&format!("{prefix}{path_and_query}"))
}

/// A request's failure: [`Unreached`](super::Unreached) kept as itself (see
/// [`KubeError::unreached`]), anything else as what surf's error carries.
fn sent(path: &str, e: surf::Error) -> KubeError {
    match e.downcast::<super::Unreached>() {
        Ok(unreached) => transport(path, unreached),
        Err(e) => transport(path, e.into_inner()),
    }
}

/// What surf's errors carry, as a source error.
fn transport(path: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> KubeError {
    KubeError::Transport { path: path.to_owned(), source: e.into() }
}

/// Counts a request abandoned before it ended (the caller's deadline cut it off) as a
/// timeout, so no request goes uncounted.
struct Abandoned<'a> {
    client: &'a KubeClient,
    resource: &'a str,
    armed: bool,
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.client.count_code(self.resource, "timeout");
        }
    }
}

/// The `message` of a Kubernetes `Status` body.
fn status_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Status {
        message: Option<String>,
    }
    if let Ok(Status { message: Some(m) }) = serde_json::from_slice::<Status>(body) {
        return m;
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.to_owned()
    }
}

impl KubeClient {
    /// The server's client for `config`: the API server its `kubernetes` settings lead to
    /// (`api_url`, else a kubeconfig or the cluster the process runs in), reading the
    /// process's environment, with its limits, page size and streaming lists. For an
    /// embedder that brings its own [`Cluster`](msp_core::Cluster) or source, and wants the
    /// metrics API read ([`MetricsApi`](crate::MetricsApi)) or the caches
    /// ([`CachedCluster`](crate::CachedCluster)) over the client the server would use.
    pub fn from_config(config: &crate::Config) -> Result<Self, super::EndpointError> {
        let endpoint = super::resolve(&config.kubernetes, &|k| std::env::var(k).ok())?;
        endpoint.log();
        Ok(KubeClient::for_config(endpoint, config))
    }

    /// A client for the API server `settings` name (the `[kubernetes]` section alone, where
    /// [`KubeClient::from_config`] takes a whole configuration), with `limits`; it warns, as
    /// the server does, where that is unsafe.
    pub fn from_settings(settings: &super::Settings, limits: Limits) -> Result<Self, super::EndpointError> {
        let endpoint = super::resolve(settings, &|k| std::env::var(k).ok())?;
        endpoint.log();
        Ok(KubeClient::new(endpoint, limits))
    }

    /// [`KubeClient::from_config`] for an `endpoint` already resolved.
    pub(crate) fn for_config(endpoint: Endpoint, config: &crate::Config) -> Self {
        KubeClient::new(endpoint, config.limits)
            .with_list_page_size(config.list_page_size)
            .with_streaming_lists(config.streaming_lists)
    }

    /// A client for `endpoint`.
    pub(crate) fn new(endpoint: Endpoint, limits: Limits) -> Self {
        let transport = Transport::new(endpoint.tls).with_connect_timeout(limits.timeout / 2);
        let transport = match endpoint.server_name {
            Some(name) => transport.with_server_name(name),
            None => transport,
        };
        let http = surf::Client::with_http_client(transport.clone());
        KubeClient {
            http,
            transport,
            base: endpoint.base,
            auth: endpoint.auth,
            impersonation: endpoint.impersonation,
            limits,
            list_page_size: DEFAULT_LIST_PAGE_SIZE,
            streaming_lists: true,
            counts: Mutex::default(),
        }
    }

    /// Whether the caches ask for streaming lists first (`kubernetes.streaming_lists`; the
    /// default) or list in pages only.
    pub fn with_streaming_lists(mut self, on: bool) -> Self {
        self.streaming_lists = on;
        self
    }

    /// Whether the caches ask for streaming lists first.
    pub fn streaming_lists(&self) -> bool {
        self.streaming_lists
    }

    /// Lists page by page with `limit=size` (at least 1): `kubernetes.list_page_size`.
    pub fn with_list_page_size(mut self, size: u32) -> Self {
        self.list_page_size = size.max(1);
        self
    }

    /// Items per page of a list.
    pub fn list_page_size(&self) -> u32 {
        self.list_page_size
    }

    /// The API server's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The request limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `GET path` (with query); the body on 2xx. `resource` labels the request in
    /// [`KubeClient::request_counts`].
    pub async fn get(&self, resource: &str, path_and_query: &str) -> Result<Vec<u8>, KubeError> {
        self.get_as(resource, path_and_query, "application/json", None).await
    }

    /// [`KubeClient::get`], reading into the body `slot` holds, if any (the caller puts the
    /// body back there when done with it).
    pub async fn get_reusing(
        &self,
        resource: &str,
        path_and_query: &str,
        slot: &BodySlot,
    ) -> Result<Vec<u8>, KubeError> {
        self.get_as(resource, path_and_query, "application/json", Some(slot)).await
    }

    /// `GET` asking for metadata only (`PartialObjectMetadataList`), or full JSON from a
    /// server that can't.
    pub async fn get_metadata(&self, resource: &str, path_and_query: &str) -> Result<Vec<u8>, KubeError> {
        const ACCEPT: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        self.get_as(resource, path_and_query, ACCEPT, None).await
    }

    /// A GET; a 429 or 5xx with `Retry-After` is waited out and retried, up to
    /// [`MAX_RETRIES`] times, each wait at most [`MAX_RETRY_WAIT`] and the request timeout.
    /// The wait is a plain sleep: a caller that gives up (a scrape's deadline) drops this
    /// future, and with it the wait and every retry.
    async fn get_as(
        &self,
        resource: &str,
        path_and_query: &str,
        accept: &str,
        slot: Option<&BodySlot>,
    ) -> Result<Vec<u8>, KubeError> {
        let mut retries = 0;
        loop {
            let once = || self.get_once(path_and_query, accept, slot);
            let result = self.authenticated(resource, path_and_query, once).await;
            let wait = match &result {
                Err(e) => e.retry_after().filter(|wait| *wait <= self.max_retry_wait()),
                Ok(_) => None,
            };
            match wait {
                Some(wait) if retries < MAX_RETRIES => {
                    retries += 1;
                    log::info!(
                        resource = resource;
                        "GET {}: {}; retrying in {wait:?} as Retry-After asks ({retries}/{MAX_RETRIES})",
                        path_and_query.split('?').next().unwrap_or(path_and_query),
                        result.as_ref().err().map(|e| e.code()).unwrap_or_default()
                    );
                    async_std::task::sleep(wait).await;
                }
                _ => return result,
            }
        }
    }

    /// The longest `Retry-After` waited out: `MAX_RETRY_WAIT` (10 s), or the timeout if shorter.
    pub fn max_retry_wait(&self) -> Duration {
        MAX_RETRY_WAIT.min(self.limits.timeout)
    }

    /// Runs `attempt`; after a 401, re-reads the token (or runs the exec plugin again) and
    /// runs it once more. Counts every attempt under `resource`.
    async fn authenticated<T, F: std::future::Future<Output = Result<T, KubeError>>>(
        &self,
        resource: &str,
        path_and_query: &str,
        attempt: impl Fn() -> F,
    ) -> Result<T, KubeError> {
        let mut pending = Abandoned { client: self, resource, armed: true };
        let sent = std::time::Instant::now();
        let mut result = attempt().await;
        if matches!(&result, Err(e) if e.status() == Some(401)) && self.auth.refresh(sent).await {
            log::info!(resource = resource; "GET {path_and_query}: 401 Unauthorized; re-read the token, retrying once");
            self.count(resource, &result);
            result = attempt().await;
        }
        pending.armed = false;
        self.count(resource, &result);
        result
    }

    /// A GET of `path_and_query` with `Accept`, `User-Agent`, the bearer token and whom it
    /// acts as.
    async fn request(&self, path_and_query: &str, path: &str, accept: &str) -> Result<surf::RequestBuilder, KubeError> {
        let url = under(&self.base, path_and_query).map_err(|e| transport(path, e))?;
        let mut req = self.http.get(url).header("Accept", accept).header("User-Agent", USER_AGENT);
        let token =
            self.auth.token().await.map_err(|source| KubeError::Credentials { path: path.to_owned(), source })?;
        if let Some(token) = token {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
        }
        for (name, values) in self.impersonation.headers() {
            req = req.header(name.clone(), values);
        }
        Ok(req)
    }

    fn count<T>(&self, resource: &str, result: &Result<T, KubeError>) {
        let code = match result {
            Ok(_) => "200".to_owned(),
            Err(e) => e.code(),
        };
        self.count_code(resource, &code);
    }

    /// Requests made so far, by `(resource, code)`.
    pub fn request_counts(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Opens a watch stream (`?watch=1...` in `path_and_query`): the response once its
    /// headers arrive within the timeout; its body is read line by line by the caller.
    pub async fn watch(
        &self,
        resource: &str,
        path_and_query: &str,
        metadata_only: bool,
    ) -> Result<surf::Response, KubeError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query).to_owned();
        let accept = if metadata_only {
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
        } else {
            "application/json"
        };
        self.authenticated(resource, path_and_query, || self.open_watch(path_and_query, &path, accept)).await
    }

    /// One attempt at opening a watch: the response once its headers arrive in time.
    async fn open_watch(&self, path_and_query: &str, path: &str, accept: &str) -> Result<surf::Response, KubeError> {
        let timeout = self.limits.timeout;
        let request = async { self.request(path_and_query, path, accept).await?.await.map_err(|e| sent(path, e)) };
        let mut res = async_std::future::timeout(timeout, request).await.map_err(|_| KubeError::Timeout {
            path: path.to_owned(),
            after: timeout,
            bound: REQUEST_TIMEOUT,
        })??;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = u16::from(res.status());
        let retry_after = retry_after(&res);
        let body =
            async_std::future::timeout(timeout, res.body_bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
        Err(KubeError::Status { path: path.to_owned(), status, message: status_message(&body), retry_after })
    }

    fn count_code(&self, resource: &str, code: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((resource.to_owned(), code.to_owned())).or_default() += 1;
        }
    }

    async fn get_once(
        &self,
        path_and_query: &str,
        accept: &str,
        slot: Option<&BodySlot>,
    ) -> Result<Vec<u8>, KubeError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query).to_owned();
        let timeout = self.limits.timeout;
        async_std::future::timeout(timeout, self.fetch(path_and_query, &path, accept, slot))
            .await
            .unwrap_or(Err(KubeError::Timeout { path, after: timeout, bound: REQUEST_TIMEOUT }))
    }

    /// The body, read into a buffer that never grows past `max_response_bytes`: a larger
    /// answer is refused as soon as its `Content-Length`, or the bytes read so far, pass the
    /// limit, chunked or not.
    async fn fetch(
        &self,
        path_and_query: &str,
        path: &str,
        accept: &str,
        slot: Option<&BodySlot>,
    ) -> Result<Vec<u8>, KubeError> {
        let mut res = self.request(path_and_query, path, accept).await?.await.map_err(|e| sent(path, e))?;
        let limit = self.limits.max_response_bytes;
        let too_large = || KubeError::TooLarge { path: path.to_owned(), limit };
        if res.len().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        let status = u16::from(res.status());
        let retry_after = retry_after(&res);
        let buf = slot.map(BodySlot::take).unwrap_or_default();
        let body = read_bounded(res.take_body().into_reader(), res.len(), limit, buf)
            .await
            .map_err(|e| e.map_or_else(too_large, |e| transport(path, e)))?;
        if !(200..300).contains(&status) {
            return Err(KubeError::Status {
                path: path.to_owned(),
                status,
                message: status_message(&body),
                retry_after,
            });
        }
        Ok(body)
    }
}

/// `Retry-After` in seconds (what the API server sends); an HTTP date is not used.
fn retry_after(res: &surf::Response) -> Option<Duration> {
    let value = res.header("Retry-After")?.last().as_str().trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads `reader` to its end into `body` (its memory reused, and its bytes, which are
/// overwritten), whose capacity then never grows past `limit` (and a byte, to see the end):
/// to exactly `expected` when the length is known, else by doubling from 64 KiB, capped at
/// the limit. `Err(None)` as soon as more than `limit` bytes arrive.
///
/// The reads go straight into `body`, not through a chunk copied after: the bytes it held
/// are already initialised, so only room past them is zeroed first, 64 KiB at a time (as
/// bytes come: a `Content-Length` that promises more than arrives commits no memory for it).
async fn read_bounded(
    mut reader: impl futures_lite::AsyncRead + Unpin,
    expected: Option<usize>,
    limit: usize,
    mut body: Vec<u8>,
) -> Result<Vec<u8>, Option<std::io::Error>> {
    const CHUNK: usize = 64 * 1024;
    let ceiling = limit.saturating_add(1);
    let mut filled = 0;
    loop {
        if filled == body.len() {
            // The length announced, and a byte to see that nothing follows.
            let announced = expected.filter(|&e| e >= filled).map(|e| e.saturating_add(1).min(ceiling));
            let room = match announced {
                Some(end) => filled.saturating_add(CHUNK).min(end),
                None => filled.saturating_add(CHUNK).min(ceiling),
            };
            if room <= filled {
                return Err(None);
            }
            if room > body.capacity() {
                let grown = announced.unwrap_or_else(|| (body.capacity() * 2).max(room).min(ceiling));
                body.reserve_exact(grown - body.len());
            }
            body.resize(room, 0);
        }
        let n = reader.read(&mut body[filled..]).await.map_err(Some)?;
        if n == 0 {
            body.truncate(filled);
            return Ok(body);
        }
        filled += n;
        if filled > limit {
            return Err(None);
        }
    }
}

impl crate::self_metrics::Report for KubeClient {
    /// `kube_metrics_server_api_requests_total` and `kube_metrics_server_api_connections_total`.
    fn write_metrics(&self, w: &mut msp_core::Writer<'_>) -> Result<(), msp_core::ExpositionError> {
        use msp_core::{LabelName, MetricName, MetricType};
        const REQUESTS: MetricName = MetricName::from_static("kube_metrics_server_api_requests_total");
        const CONNECTIONS: MetricName = MetricName::from_static("kube_metrics_server_api_connections_total");
        const RESOURCE: LabelName = LabelName::from_static("resource");
        const CODE: LabelName = LabelName::from_static("code");
        let help = "Requests to the Kubernetes API, by resource and HTTP status (or error, timeout, too_large).";
        let mut f = w.family(&REQUESTS, help, MetricType::Counter)?;
        for ((resource, code), n) in self.request_counts() {
            f.sample([(&RESOURCE, resource.as_str()), (&CODE, code.as_str())], n as f64);
        }
        let help =
            "TCP connections opened to the Kubernetes API (idle ones are kept and reused; each watch has its own).";
        let mut f = w.family(&CONNECTIONS, help, MetricType::Counter)?;
        f.sample([], self.transport.connects() as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_go_under_the_base_urls_path() {
        let url = |base: &str, p: &str| under(&Url::parse(base).expect("base"), p).expect("url").to_string();
        let pods = "/api/v1/pods?limit=500&continue=a%2Bb";
        assert_eq!(url("https://10.0.0.1:6443", pods), "https://10.0.0.1:6443/api/v1/pods?limit=500&continue=a%2Bb");
        assert_eq!(url("https://10.0.0.1:6443/", pods), "https://10.0.0.1:6443/api/v1/pods?limit=500&continue=a%2Bb");
        assert_eq!(
            url("https://rancher.example/k8s/clusters/c-1", pods),
            "https://rancher.example/k8s/clusters/c-1/api/v1/pods?limit=500&continue=a%2Bb"
        );
        assert_eq!(
            url("https://rancher.example/k8s/clusters/c-1/", "/apis/metrics.k8s.io/v1beta1/nodes"),
            "https://rancher.example/k8s/clusters/c-1/apis/metrics.k8s.io/v1beta1/nodes"
        );
    }

    #[test]
    fn status_messages() {
        let body =
            br#"{"kind":"Status","status":"Failure","message":"pods is forbidden: User \"x\" cannot list","code":403}"#;
        assert_eq!(status_message(body), "pods is forbidden: User \"x\" cannot list");
        assert_eq!(status_message(b"  plain text \n"), "plain text");
        assert_eq!(status_message(b""), "(empty body)");
    }

    #[test]
    fn a_given_back_body_is_reused_and_a_one_off_huge_one_shrinks() {
        let slot = BodySlot::default();
        assert_eq!(slot.take().capacity(), 0, "none kept yet");
        slot.put(vec![1u8; 47_000_000]);
        let body = slot.take();
        assert_eq!((body.len(), body.capacity()), (47_000_000, 47_000_000), "memory and bytes kept");
        assert_eq!(slot.take().capacity(), 0, "taken once");
        let mut huge = Vec::with_capacity(64 << 20);
        huge.resize(3 << 20, 0u8);
        slot.put(huge);
        let body = slot.take();
        assert!(body.capacity() < 8 << 20, "shrunk to about what it held: {}", body.capacity());
    }

    #[test]
    fn bodies_are_bounded_without_doubling() {
        async_std::task::block_on(async {
            let data = vec![7u8; 300 * 1024];
            let read = |expected, limit| {
                read_bounded(futures_lite::io::Cursor::new(data.clone()), expected, limit, Vec::new())
            };
            let body = read(None, 300 * 1024).await.expect("exactly the limit");
            assert_eq!((body.len(), body.capacity()), (300 * 1024, 300 * 1024 + 1), "capped at the limit");
            let body = read(None, 1 << 30).await.expect("unknown length");
            assert_eq!(body, data);
            assert_eq!(body.capacity(), 512 * 1024, "doubled from 64 KiB");
            assert_eq!(body, data);
            let body = read(Some(300 * 1024), 1 << 30).await.expect("known length");
            assert_eq!(body.capacity(), 300 * 1024 + 1, "reserved once, exactly");
            assert_eq!(body, data);
            assert!(matches!(read(None, 300 * 1024 - 1).await, Err(None)), "one byte over");
            assert!(matches!(read(Some(10), 100).await, Err(None)), "a wrong length does not help");
            // A length that is wrong the other way reads what came, and has zeroed no more
            // than a chunk past it.
            let body = read(Some(1 << 20), 1 << 30).await.expect("short");
            assert_eq!(body, data);
            assert_eq!(body.capacity(), (1 << 20) + 1, "reserved, not touched");
        });
    }

    #[test]
    fn a_reused_body_is_overwritten_not_appended_to() {
        async_std::task::block_on(async {
            let old = vec![9u8; 1 << 20];
            let new = vec![7u8; 1000];
            let cursor = futures_lite::io::Cursor::new(new.clone());
            let body = read_bounded(cursor, None, 1 << 30, old).await.expect("read");
            assert_eq!(body, new);
            assert!(body.capacity() >= 1 << 20, "its memory reused");
            let longer = vec![5u8; 3 << 20];
            let cursor = futures_lite::io::Cursor::new(longer.clone());
            let body = read_bounded(cursor, Some(longer.len()), 1 << 30, body).await.expect("read");
            assert_eq!(body, longer);
        });
    }

    #[test]
    fn user_agent_names_version_and_revision() {
        assert!(USER_AGENT.starts_with(concat!("metrics-server-prom/", env!("CARGO_PKG_VERSION"), " (")));
        assert!(USER_AGENT.ends_with(')'));
    }
}
