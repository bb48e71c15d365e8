//! GET requests to the API server over surf: bearer token, timeout, a size bound, one
//! retry after a 401 with a re-read token, and errors that carry the status and the
//! Kubernetes `Status` message.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use http_types::Url;

use super::endpoint::Endpoint;
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
    #[error("GET {path}: no answer within {after:?}")]
    Timeout {
        /// The request path.
        path: String,
        /// The timeout.
        after: Duration,
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

    /// A short code for counting: the status, or `error`/`timeout`.
    pub fn code(&self) -> String {
        match self {
            KubeError::Status { status, .. } => status.to_string(),
            KubeError::Timeout { .. } => "timeout".into(),
            KubeError::TooLarge { .. } => "too_large".into(),
            KubeError::Transport { .. } | KubeError::Decode { .. } | KubeError::WatchError { .. } => "error".into(),
        }
    }
}

/// Limits on each request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole request, body included.
    pub timeout: Duration,
    /// The largest body accepted.
    pub max_response_bytes: usize,
}

/// A client for one API server.
#[derive(Debug)]
pub struct KubeClient {
    http: surf::Client,
    base: Url,
    auth: Auth,
    limits: Limits,
    counts: Mutex<BTreeMap<(String, String), u64>>,
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
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint, limits: Limits) -> Self {
        let http = surf::Client::with_http_client(Transport::new(endpoint.tls));
        KubeClient { http, base: endpoint.base, auth: endpoint.auth, limits, counts: Mutex::default() }
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
        self.get_as(resource, path_and_query, "application/json").await
    }

    /// `GET` asking for metadata only (`PartialObjectMetadataList`), or full JSON from a
    /// server that can't.
    pub async fn get_metadata(&self, resource: &str, path_and_query: &str) -> Result<Vec<u8>, KubeError> {
        const ACCEPT: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        self.get_as(resource, path_and_query, ACCEPT).await
    }

    async fn get_as(&self, resource: &str, path_and_query: &str, accept: &str) -> Result<Vec<u8>, KubeError> {
        self.authenticated(resource, path_and_query, || self.get_once(path_and_query, accept)).await
    }

    /// Runs `attempt`; after a 401, re-reads the token and runs it once more. Counts every
    /// attempt under `resource`.
    async fn authenticated<T, F: std::future::Future<Output = Result<T, KubeError>>>(
        &self,
        resource: &str,
        path_and_query: &str,
        attempt: impl Fn() -> F,
    ) -> Result<T, KubeError> {
        let mut pending = Abandoned { client: self, resource, armed: true };
        let mut result = attempt().await;
        if matches!(&result, Err(e) if e.status() == Some(401)) && self.auth.refresh() {
            log::info!("GET {path_and_query}: 401 Unauthorized; re-read the token, retrying once");
            self.count(resource, &result);
            result = attempt().await;
        }
        pending.armed = false;
        self.count(resource, &result);
        result
    }

    /// A GET of `path_and_query` with `Accept` and the bearer token.
    fn request(&self, path_and_query: &str, path: &str, accept: &str) -> Result<surf::RequestBuilder, KubeError> {
        let url = self.base.join(path_and_query).map_err(|e| transport(path, e))?;
        let mut req = self.http.get(url).header("Accept", accept);
        if let Some(token) = self.auth.bearer() {
            req = req.header("Authorization", format!("Bearer {}", token.expose()));
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
        let mut res = async_std::future::timeout(timeout, self.request(path_and_query, path, accept)?)
            .await
            .map_err(|_| KubeError::Timeout { path: path.to_owned(), after: timeout })?
            .map_err(|e| transport(path, e.into_inner()))?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = u16::from(res.status());
        let body =
            async_std::future::timeout(timeout, res.body_bytes()).await.ok().and_then(Result::ok).unwrap_or_default();
        Err(KubeError::Status { path: path.to_owned(), status, message: status_message(&body) })
    }

    fn count_code(&self, resource: &str, code: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((resource.to_owned(), code.to_owned())).or_default() += 1;
        }
    }

    async fn get_once(&self, path_and_query: &str, accept: &str) -> Result<Vec<u8>, KubeError> {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query).to_owned();
        let timeout = self.limits.timeout;
        async_std::future::timeout(timeout, self.fetch(path_and_query, &path, accept))
            .await
            .unwrap_or(Err(KubeError::Timeout { path, after: timeout }))
    }

    async fn fetch(&self, path_and_query: &str, path: &str, accept: &str) -> Result<Vec<u8>, KubeError> {
        let mut res = self.request(path_and_query, path, accept)?.await.map_err(|e| transport(path, e.into_inner()))?;
        let limit = self.limits.max_response_bytes;
        if res.len().is_some_and(|len| len > limit) {
            return Err(KubeError::TooLarge { path: path.to_owned(), limit });
        }
        let mut body = Vec::with_capacity(res.len().unwrap_or(64 * 1024).min(limit));
        let reader = res.take_body().into_reader();
        reader.take(limit as u64 + 1).read_to_end(&mut body).await.map_err(|e| transport(path, e))?;
        if body.len() > limit {
            return Err(KubeError::TooLarge { path: path.to_owned(), limit });
        }
        let status = u16::from(res.status());
        if !(200..300).contains(&status) {
            return Err(KubeError::Status { path: path.to_owned(), status, message: status_message(&body) });
        }
        Ok(body)
    }
}

impl crate::self_metrics::Report for KubeClient {
    /// `kube_metrics_server_api_requests_total`.
    fn write_metrics(&self, w: &mut msp_core::Writer<'_>) -> Result<(), msp_core::ExpositionError> {
        use msp_core::{LabelName, MetricName, MetricType};
        const REQUESTS: MetricName = MetricName::from_static("kube_metrics_server_api_requests_total");
        const RESOURCE: LabelName = LabelName::from_static("resource");
        const CODE: LabelName = LabelName::from_static("code");
        let help = "Requests to the Kubernetes API, by resource and HTTP status (or error, timeout, too_large).";
        let mut f = w.family(&REQUESTS, help, MetricType::Counter)?;
        for ((resource, code), n) in self.request_counts() {
            f.sample([(&RESOURCE, resource.as_str()), (&CODE, code.as_str())], n as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages() {
        let body =
            br#"{"kind":"Status","status":"Failure","message":"pods is forbidden: User \"x\" cannot list","code":403}"#;
        assert_eq!(status_message(body), "pods is forbidden: User \"x\" cannot list");
        assert_eq!(status_message(b"  plain text \n"), "plain text");
        assert_eq!(status_message(b""), "(empty body)");
    }
}
