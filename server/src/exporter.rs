//! One scrape, end to end: fetch both metrics lists, check them, enrich, write the
//! families and our own health metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use msp_core::exposition::{Format, LabelName, MetricName, MetricType, Writer};
use msp_core::model::{NodeMetricsList, PodMetricsList};
use msp_core::render::write_families;
use msp_core::{prepare, Cluster, Depends, Enricher, Enrichment, Memo, RenderOptions, Scrape};

use crate::cache::CachedCluster;
use crate::kube::{KubeClient, KubeError};
use crate::source::MetricsApi;

/// What turns the metrics API into an exposition.
pub struct Exporter {
    client: Arc<KubeClient>,
    metrics: MetricsApi,
    cluster: CachedCluster,
    enrichers: Vec<Arc<dyn Enricher>>,
    options: RenderOptions,
    scope: Scope,
    parse_errors: AtomicU64,
    enricher_errors: Mutex<BTreeMap<String, u64>>,
    flights: Mutex<HashMap<Flavour, Arc<Flight>>>,
    /// Each pod's labels across scrapes, when every enricher allows it.
    memo: Option<Memo>,
    spare: Arc<Spare>,
}

/// Which pods a scrape exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Globs of namespaces to keep.
    pub allow: Vec<String>,
    /// Globs of namespaces to drop, after `allow`.
    pub deny: Vec<String>,
    /// Passed to the metrics API as `labelSelector` on the pod list.
    pub label_selector: Option<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Scope { allow: vec!["*".into()], deny: Vec::new(), label_selector: None }
    }
}

impl Scope {
    /// Whether pods of `namespace` are exported.
    pub fn keeps(&self, namespace: &str) -> bool {
        self.allow.iter().any(|p| msp_core::glob::matches(p, namespace))
            && !self.deny.iter().any(|p| msp_core::glob::matches(p, namespace))
    }

    fn pod_query(&self) -> String {
        match &self.label_selector {
            Some(sel) => {
                let mut url =
                    http_types::Url::parse("http://encode.invalid/").unwrap_or_else(|_| unreachable!("a valid URL"));
                url.query_pairs_mut().append_pair("labelSelector", sel);
                format!("?{}", url.query().unwrap_or_default())
            }
            None => String::new(),
        }
    }

    fn filters(&self) -> bool {
        self.allow.iter().any(|p| p != "*") || !self.deny.is_empty()
    }
}

/// What a response body is: its format, and whether it is gzipped.
pub type Flavour = (Format, bool);

/// A scrape in progress that later arrivals wait for instead of starting their own.
#[derive(Default)]
struct Flight {
    result: async_std::sync::Mutex<Option<Arc<Exposition>>>,
}

/// One spare response buffer. A large exposition (200 MB at 100,000 pods) then reuses
/// memory already mapped instead of faulting in fresh pages on every scrape.
#[derive(Debug, Default)]
struct Spare(Mutex<Option<Vec<u8>>>);

impl Spare {
    /// An empty buffer, with the capacity of the last one given back.
    fn take(&self) -> String {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        buf.clear();
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Keeps `buf` for the next scrape, unless the one kept is larger.
    fn put(&self, buf: Vec<u8>) {
        let mut spare = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if spare.as_ref().is_none_or(|s| s.capacity() < buf.capacity()) {
            *spare = Some(buf);
        }
    }
}

/// A response body: one scrape's bytes, in the format and encoding asked for. When the last
/// holder drops it, its buffer goes back to the exporter for the next scrape.
#[derive(Debug)]
pub struct Exposition {
    bytes: Vec<u8>,
    spare: Arc<Spare>,
}

impl Exposition {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl AsRef<[u8]> for Exposition {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.spare.put(std::mem::take(&mut self.bytes));
    }
}

/// Takes a finished (or abandoned) flight off the board.
struct Landing<'a> {
    flights: &'a Mutex<HashMap<Flavour, Arc<Flight>>>,
    flavour: Flavour,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.flights.lock() {
            f.remove(&self.flavour);
        }
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.enrichers.iter().map(|e| e.name()).collect();
        f.debug_struct("Exporter").field("api", &self.client.base().as_str()).field("enrichers", &names).finish()
    }
}

const RESOURCE: LabelName = LabelName::from_static("resource");
const CODE: LabelName = LabelName::from_static("code");
const ENRICHER: LabelName = LabelName::from_static("enricher");
const VERSION: LabelName = LabelName::from_static("version");

/// `fetch`, abandoned at `deadline` as a timeout.
async fn within(
    deadline: Option<Instant>,
    resource: &str,
    fetch: impl std::future::Future<Output = Result<Vec<u8>, KubeError>>,
) -> Result<Vec<u8>, KubeError> {
    let Some(deadline) = deadline else { return fetch.await };
    let left = deadline.saturating_duration_since(Instant::now());
    async_std::future::timeout(left, fetch).await.unwrap_or_else(|_| {
        Err(KubeError::Timeout { path: format!("{resource} metrics (scrape deadline)"), after: left })
    })
}

/// Parses one metrics list; on failure logs it and yields an empty list.
fn parse_list<'a, T: serde::Deserialize<'a> + Default>(
    resource: &str,
    fetched: &'a Result<Vec<u8>, KubeError>,
) -> (T, bool) {
    match fetched {
        Ok(body) => match serde_json::from_slice(body) {
            Ok(list) => (list, true),
            Err(e) => {
                log::error!("{resource} metrics: invalid JSON from the metrics API: {e}");
                (T::default(), false)
            }
        },
        Err(e) => {
            log::error!("{resource} metrics: {e}");
            (T::default(), false)
        }
    }
}

impl Exporter {
    /// An exporter over `client`, with `enrichers` in order.
    pub fn new(
        client: Arc<KubeClient>,
        enrichers: Vec<Arc<dyn Enricher>>,
        options: RenderOptions,
        scope: Scope,
    ) -> Self {
        let enricher_errors = Mutex::new(enrichers.iter().map(|e| (e.name().to_owned(), 0)).collect());
        Exporter {
            metrics: MetricsApi::new(client.clone()),
            cluster: CachedCluster::new(client.clone()),
            client,
            options,
            scope,
            parse_errors: AtomicU64::new(0),
            enricher_errors,
            flights: Mutex::default(),
            spare: Arc::default(),
            memo: enrichers.iter().all(|e| e.depends() == Depends::Pod).then(Memo::default),
            enrichers,
        }
    }

    /// A scrape shared with every other request for the same format and encoding that
    /// arrives while it runs: Prometheus HA pairs and a human with curl cost the API server
    /// one read, and the body is compressed once.
    pub async fn scrape_shared(&self, format: Format, gzip: bool, deadline: Option<Instant>) -> Arc<Exposition> {
        let flavour = (format, gzip);
        let (flight, leader) = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get(&flavour) {
                Some(f) => (f.clone(), None),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(flavour, f.clone());
                    (f.clone(), Some(f))
                }
            }
        };
        if let Some(flight) = leader {
            // Nobody else can hold it yet: we created it under the board's lock.
            let Some(mut slot) = flight.result.try_lock() else {
                return Arc::new(self.body(format, gzip, deadline).await);
            };
            let _landing = Landing { flights: &self.flights, flavour };
            let body = Arc::new(self.body(format, gzip, deadline).await);
            *slot = Some(body.clone());
            return body;
        }
        let shared = flight.result.lock().await.clone();
        match shared {
            Some(body) => body,
            // The leader was cancelled before it finished: scrape alone.
            None => Arc::new(self.body(format, gzip, deadline).await),
        }
    }

    async fn body(&self, format: Format, gzip: bool, deadline: Option<Instant>) -> Exposition {
        let text = self.scrape(format, deadline).await.into_bytes();
        let bytes = if !gzip {
            text
        } else {
            match crate::negotiate::compress(&text) {
                Ok(packed) => {
                    self.spare.put(text);
                    packed
                }
                Err(e) => {
                    log::error!("gzip: {e}");
                    text
                }
            }
        };
        Exposition { bytes, spare: self.spare.clone() }
    }

    /// The enrichers, in order.
    pub fn enrichers(&self) -> &[Arc<dyn Enricher>] {
        &self.enrichers
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &KubeClient {
        &self.client
    }

    /// Whether the metrics API answers now.
    pub async fn ready(&self) -> Result<(), KubeError> {
        self.metrics.list("nodes", "").await.map(drop)
    }

    /// One scrape, written in `format`. Never fails: what could not be read is reported in
    /// `kube_metrics_server_up` and the error counters, and everything else is served.
    ///
    /// With a `deadline` (from Prometheus' `X-Prometheus-Scrape-Timeout-Seconds`), reads that
    /// would end after it are abandoned and reported as failed, so the answer arrives in time.
    pub async fn scrape(&self, format: Format, deadline: Option<Instant>) -> String {
        let started = Instant::now();
        let (pods_raw, nodes_raw) = futures_lite::future::zip(
            within(deadline, "pods", self.metrics.list("pods", &self.scope.pod_query())),
            within(deadline, "nodes", self.metrics.list("nodes", "")),
        )
        .await;
        let (pods, pods_up): (PodMetricsList<'_>, bool) = parse_list("pod", &pods_raw);
        let (nodes, nodes_up): (NodeMetricsList<'_>, bool) = parse_list("node", &nodes_raw);
        let mut scrape = Scrape::new(&pods, &nodes);
        if self.scope.filters() {
            scrape.pods.retain(|p| self.scope.keeps(p.namespace));
        }
        for e in &scrape.errors {
            log::warn!("{e}");
        }
        self.parse_errors.fetch_add(scrape.errors.len() as u64, Ordering::Relaxed);

        let prepared = match &self.memo {
            Some(memo) => {
                let round = memo.begin(&scrape, &self.cluster).await;
                let sub = round.scrape_of_misses(&scrape);
                let (enrichments, complete) = self.enrich(&sub, &round.cluster(&self.cluster), deadline).await;
                let refs: Vec<&Enrichment> = enrichments.iter().collect();
                memo.finish(round, &scrape, &sub, &refs, complete)
            }
            None => {
                let (enrichments, _) = self.enrich(&scrape, &self.cluster, deadline).await;
                let refs: Vec<&Enrichment> = enrichments.iter().collect();
                prepare(&scrape, &refs)
            }
        };

        // The renderer reserves what the families need.
        let mut out = self.spare.take();
        let mut w = Writer::new(&mut out, format);
        if let Err(e) = write_families(&mut w, &scrape, &prepared, &self.options) {
            log::error!("writing the exposition: {e}");
        }
        self.write_self_metrics(&mut w, [("pods", pods_up), ("nodes", nodes_up)], started);
        w.finish();
        out
    }

    /// Runs every enricher on `scrape`, in order; a failed one is logged, counted and left
    /// out. Also says whether all of them succeeded.
    async fn enrich(
        &self,
        scrape: &Scrape<'_>,
        cluster: &dyn Cluster,
        deadline: Option<Instant>,
    ) -> (Vec<Enrichment>, bool) {
        let mut enrichments: Vec<Enrichment> = Vec::with_capacity(self.enrichers.len());
        for enricher in &self.enrichers {
            let enriched = match deadline {
                Some(d) => async_std::future::timeout(
                    d.saturating_duration_since(Instant::now()),
                    enricher.enrich(scrape, cluster),
                )
                .await
                .unwrap_or_else(|_| Err("out of time for this scrape (X-Prometheus-Scrape-Timeout-Seconds)".into())),
                None => enricher.enrich(scrape, cluster).await,
            };
            match enriched {
                Ok(e) => enrichments.push(e),
                Err(err) => {
                    log::warn!("enricher {}: {err}; its labels are left out of this scrape", enricher.name());
                    if let Ok(mut counts) = self.enricher_errors.lock() {
                        *counts.entry(enricher.name().to_owned()).or_default() += 1;
                    }
                }
            }
        }
        let complete = enrichments.len() == self.enrichers.len();
        (enrichments, complete)
    }

    fn write_self_metrics(&self, w: &mut Writer<'_>, up: [(&str, bool); 2], started: Instant) {
        macro_rules! fam {
            ($w:expr, $name:literal, $help:literal, $kind:expr, |$f:ident| $body:block) => {{
                const NAME: MetricName = MetricName::from_static($name);
                match $w.family(&NAME, $help, $kind) {
                    Ok(mut $f) => $body,
                    Err(e) => log::error!("{e}"),
                }
            }};
        }
        fam!(
            w,
            "kube_metrics_server_up",
            "Whether the last read of the metrics API for this resource succeeded (1) or not (0).",
            MetricType::Gauge,
            |f| {
                for (resource, ok) in up {
                    f.sample([(&RESOURCE, resource)], if ok { 1.0 } else { 0.0 });
                }
            }
        );
        fam!(
            w,
            "kube_metrics_server_scrape_duration_seconds",
            "Time this scrape took to read and transform, before writing these self-metrics.",
            MetricType::Gauge,
            |f| {
                f.sample([], started.elapsed().as_secs_f64());
            }
        );
        fam!(
            w,
            "kube_metrics_server_parse_errors_total",
            "Metrics API items dropped because a value was invalid or missing.",
            MetricType::Counter,
            |f| {
                f.sample([], self.parse_errors.load(Ordering::Relaxed) as f64);
            }
        );
        fam!(
            w,
            "kube_metrics_server_enricher_errors_total",
            "Scrapes in which an enricher failed and its labels were left out.",
            MetricType::Counter,
            |f| {
                let counts = self.enricher_errors.lock().map(|c| c.clone()).unwrap_or_default();
                for (name, n) in &counts {
                    f.sample([(&ENRICHER, name.as_str())], *n as f64);
                }
            }
        );
        fam!(
            w,
            "kube_metrics_server_api_requests_total",
            "Requests to the Kubernetes API, by resource and HTTP status (or error, timeout).",
            MetricType::Counter,
            |f| {
                for ((resource, code), n) in self.client.request_counts() {
                    f.sample([(&RESOURCE, resource.as_str()), (&CODE, code.as_str())], n as f64);
                }
            }
        );
        fam!(
            w,
            "kube_metrics_server_cache_objects",
            "Objects held in the watch-backed metadata caches, by resource.",
            MetricType::Gauge,
            |f| {
                for (resource, n) in self.cluster.sizes() {
                    f.sample([(&RESOURCE, resource)], n as f64);
                }
            }
        );
        fam!(
            w,
            "kube_metrics_server_build_info",
            "Always 1; the version of metrics-server-prom.",
            MetricType::Gauge,
            |f| {
                f.sample([(&VERSION, env!("CARGO_PKG_VERSION"))], 1.0);
            }
        );
    }
}
