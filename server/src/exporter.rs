//! One scrape, end to end: read both metrics lists from the [`MetricsSource`], check them,
//! run the pipeline ([`msp_core::enrich`]) over the [`Cluster`], write the families and the
//! self-metrics. Around the pipeline the exporter adds only deadlines and counters.
//!
//! - `budget`: a scrape's deadlines, for its reads, its enrichers and its writing.
//! - `warm_up`: the scrape and the enrichers' reads when the server starts, and readiness.

mod budget;
mod warm_up;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_std::channel::Sender;
use msp_core::{
    enrich, write_families_with, BaseLabels, Cluster, Enriched, Enricher, ExpositionError, Format, LabelSelector, Memo,
    MetricsSource, NodeMetricsList, PodMetricsList, RenderOptions, Scrape, SourceError, Writer,
};

pub use warm_up::{WARM_UP_RETRIES_FOR, WARM_UP_TIMEOUT};

use budget::{within, Deadline, WriteCost};

use crate::body::{self, BodyWriter, Ending, Exposition, Piece};
use crate::flight::{Busy, Evicted, Flights, Lead, Role};
use crate::reuse::{self, Lists, Reuse};
use crate::scope::Scope;
use crate::self_metrics::{self, Counters, Health, Report};

/// What turns the metrics API into an exposition: built from a source of usage and a
/// cluster to enrich from, both replaceable.
pub struct Exporter {
    source: Arc<dyn MetricsSource>,
    cluster: Arc<dyn Cluster>,
    enrichers: Vec<Arc<dyn Enricher>>,
    options: RenderOptions,
    scope: Scope,
    reports: Vec<Arc<dyn Report>>,
    counters: Counters,
    flights: Arc<Flights>,
    reuse: Reuse,
    memo: Memo,
    writing: WriteCost,
    /// How many [`Exporter::warm_up`]s are under way.
    warming: AtomicUsize,
    /// Whether [`Exporter::syncing`] has found nothing to wait for.
    ready: AtomicBool,
    /// Failed reads of the pod and node lists since the last that worked, so that the first
    /// to work again says so in the log (an outage's last line is not its last error).
    failed_reads: [AtomicU64; 2],
    /// Whether scrapes carry the `process_*` families (see [`Exporter::without_process_metrics`]).
    process_metrics: bool,
}

/// A metrics list's `resource` as a log field, as `kube_metrics_server_api_requests_total`
/// names it (`pod` is `pod_metrics`): the caches' are `pods`, `nodes`.
fn api_resource(resource: &str) -> &'static str {
    if resource == "pod" {
        "pod_metrics"
    } else {
        "node_metrics"
    }
}

/// Counts a read of `resource`'s list that worked (`up`) or not in `failed`; logs the first
/// that works after any failed.
fn note_read(failed: &AtomicU64, resource: &str, up: bool) {
    if !up {
        failed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let before = failed.swap(0, Ordering::Relaxed);
    if before > 0 {
        log::info!(resource = api_resource(resource), failed = before; "{resource} metrics: read again, after {before} failed read(s)");
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.enrichers.iter().map(|e| e.name()).collect();
        f.debug_struct("Exporter").field("source", &self.source.describe()).field("enrichers", &names).finish()
    }
}

/// How much text is written before it is handed on, to gzip or to the body: small enough
/// that gzip reads it from the core's own cache, where the renderer left it (at 150,000
/// pods 1 MiB cost about 3% more CPU a scrape).
pub const GZIP_CHUNK: usize = 256 * 1024;

/// Parses one metrics list for a scrape that keeps what `select` keeps; on failure logs it
/// and yields an empty list. A body that is not UTF-8 throughout (one bad byte in one pod's
/// label, from a broken proxy) is read again with each bad sequence as U+FFFD, kept in
/// `repaired`: one item's bytes must not cost every series. A body that is not a list of
/// the kind asked for fails too (msp-core refuses it, and says what it is), rather than
/// reading as a cluster without pods.
fn parse_list<'a, T: msp_core::ListItem<'a>>(
    resource: &str,
    fetched: &'a Result<reuse::Body, SourceError>,
    select: &dyn msp_core::Select,
    repaired: &'a mut Option<Vec<u8>>,
) -> (msp_core::List<T>, bool) {
    let body = match fetched {
        Ok(body) => body,
        Err(e) => {
            fetch_failed(resource, e);
            return (msp_core::List::default(), false);
        }
    };
    match msp_core::List::parse_repairing(body, select, repaired) {
        Ok((list, bad)) => (list, reported(resource, body, Ok(bad))),
        Err(e) => (msp_core::List::default(), reported(resource, body, Err(e))),
    }
}

/// Logs a metrics list that could not be fetched.
fn fetch_failed(resource: &str, e: &SourceError) {
    log::error!(resource = api_resource(resource); "{resource} metrics: {e}");
}

/// Logs how a metrics list's `body` read, `read` as [`msp_core::List::parse_repairing`]
/// says it (and [`Scrape::from_pods_json`]); whether it was read.
fn reported(resource: &str, body: &[u8], read: Result<Option<usize>, serde_json::Error>) -> bool {
    match read {
        Ok(None) => true,
        Ok(Some(bad)) => {
            log::warn!(
                "{resource} metrics: the answer is not UTF-8 (at byte {bad}); read with U+FFFD in place of each bad sequence"
            );
            true
        }
        Err(e) => {
            if e.is_data() {
                // No list of these: msp-core says what it is instead (a `Status` and its message).
                log::error!(resource = api_resource(resource); "{resource} metrics: {e}");
            } else {
                // Where the answer is not UTF-8 either, `e` places the fault in the repaired text.
                let not_utf8 = std::str::from_utf8(body)
                    .err()
                    .map(|bad| format!(" (and not UTF-8, from byte {}; read with U+FFFD)", bad.valid_up_to()))
                    .unwrap_or_default();
                log::error!(resource = api_resource(resource); "{resource} metrics: invalid JSON from the metrics API{not_utf8}: {e}");
            }
            false
        }
    }
}

impl Exporter {
    /// An exporter reading usage from `source` and metadata from `cluster`, with no
    /// enrichers, default rendering and every namespace.
    pub fn new(source: Arc<dyn MetricsSource>, cluster: Arc<dyn Cluster>) -> Self {
        let flights = Arc::new(Flights::default());
        Exporter {
            source,
            cluster,
            enrichers: Vec::new(),
            options: RenderOptions::default(),
            scope: Scope::default(),
            // Requests refused and bodies evicted at the bounds.
            reports: vec![flights.clone()],
            counters: Counters::default(),
            flights,
            reuse: Reuse::default(),
            memo: Memo::default(),
            writing: WriteCost::default(),
            warming: Default::default(),
            ready: Default::default(),
            failed_reads: Default::default(),
            process_metrics: true,
        }
    }

    /// With `enrichers`, in order (earlier wins a label name). What their labels say they
    /// add that will never be written ([`msp_core::unwritten_labels`]), two of one name
    /// (which share a `kube_metrics_server_enricher_errors_total` series), and each one's
    /// [`Enricher::config_warnings`] are logged.
    pub fn with_enrichers(mut self, enrichers: Vec<Arc<dyn Enricher>>) -> Self {
        for said in msp_core::unwritten_labels(&enrichers) {
            log::warn!("{said}; that label is left out where it clashes");
        }
        for e in &enrichers {
            for warning in e.config_warnings() {
                log::warn!(enricher = e.name(); "enricher {:?}: {warning}", e.name());
            }
        }
        for (i, e) in enrichers.iter().enumerate() {
            if enrichers[..i].iter().any(|earlier| earlier.name() == e.name()) {
                log::warn!("two enrichers are named {:?}: their errors are counted as one", e.name());
            }
        }
        self.counters = Counters::new(enrichers.iter().map(|e| e.name()));
        self.enrichers = enrichers;
        self
    }

    /// With these rendering options. Their `format` is not used: each scrape is written in the
    /// format its request asks for (`Exporter::scrape`'s, `stream`'s).
    pub fn with_options(mut self, options: RenderOptions) -> Self {
        self.options = options;
        self
    }

    /// Exporting only the pods in `scope`; its shard is said in the self-metrics
    /// (`kube_metrics_server_shard`, `_total_shards`, `_shard_ordinal`).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// The self-metrics reports: those added, then the shard's.
    fn reports(&self) -> Vec<&dyn Report> {
        self.reports.iter().map(|r| r.as_ref()).chain([&self.scope.shard as &dyn Report]).collect()
    }

    /// Reusing the metrics lists read for a scrape in the scrapes that begin less than
    /// `window` after that read began: they parse and enrich those lists afresh, and read
    /// nothing. Only a read of both lists that succeeded is reused. An HA pair of Prometheus
    /// servers whose scrapes are less than `window` apart then costs the API server one read.
    /// Zero (the default): every scrape reads. Keep it below the scrape interval, or one
    /// Prometheus reuses its own last read (see the README's `reuse_lists_for`).
    pub fn reusing_lists_for(mut self, window: Duration) -> Self {
        if !window.is_zero() {
            log::info!("reusing the metrics lists for {window:?} after each read (reuse_lists_for)");
        }
        self.reuse = Reuse::new(window);
        self
    }

    /// Without the `process_*` families (CPU, memory, file descriptors, start time), for an
    /// embedder whose own registry already writes them (prometheus-client's process
    /// collector): one exposition must not hold a family twice. The rest of the self-metrics
    /// stay.
    pub fn without_process_metrics(mut self) -> Self {
        self.process_metrics = false;
        self
    }

    /// Adding `report`'s self-metrics to every scrape.
    pub fn with_report(mut self, report: Arc<dyn Report>) -> Self {
        self.reports.push(report);
        self
    }

    /// How it writes the families (naming, timestamps...): what [`msp_core::render_prepared`]
    /// takes to write a [`Exporter::scrape_with`] as [`Exporter::scrape`] does. Its `format`
    /// is the embedder's to set (each scrape names its own); with OpenMetrics,
    /// `render_prepared` ends with the `# EOF` that `scrape` writes after its self-metrics.
    pub fn options(&self) -> &RenderOptions {
        &self.options
    }

    /// The enrichers, in order.
    pub fn enrichers(&self) -> &[Arc<dyn Enricher>] {
        &self.enrichers
    }

    /// Where usage is read from, for people.
    pub fn describe_source(&self) -> String {
        self.source.describe()
    }

    /// A scrape in `format`, gzipped when `gzip`, whose body is written as it is read.
    /// It is read and enriched once for every other request that arrives meanwhile, and
    /// that it serves (see `flight.rs`), in whatever format and encoding: requests at once
    /// with one scrape timeout cost the API server one read (the two of a Prometheus HA
    /// pair when their scrapes meet, which their offsets make rare), and so does a request
    /// of another format beside Prometheus, if its timeout is about the same. Each body is
    /// then written, in its own format and encoding, and compressed for its own client. A request that joins keeps its own
    /// `deadline`: past it, it gets an answer that reports both lists as down.
    ///
    /// The scrape runs on a thread of its own (and each joiner's body on one more), which
    /// waits while its client reads: writing is paced by the reader, so no body is ever
    /// held whole.
    ///
    /// Refused ([`Busy`]) past [`MAX_SCRAPES`](crate::MAX_SCRAPES) scrapes or
    /// [`MAX_BODIES`](crate::MAX_BODIES) bodies at once, none of which may be evicted (see
    /// `flight.rs`); `/metrics` answers 503.
    pub async fn stream(
        self: &Arc<Self>,
        format: Format,
        gzip: bool,
        deadline: Option<Instant>,
    ) -> Result<Exposition, Busy> {
        let budget = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (body, role) = self.flights.enter((format, gzip), budget)?;
        let (pieces, scrape, wait) = match role {
            Role::Lead(lead) => {
                let (tx, rx) = body::channel();
                let evicted = lead.evicted();
                let exporter = self.clone();
                // Detached: a leader whose client leaves still serves those who joined. The
                // lists are read on the executor, whose threads wait on the sockets
                // themselves; the rest waits for the clients, on a thread of its own.
                drop(async_std::task::spawn(async move {
                    let lists = exporter.read(deadline, exporter.writing.slower()).await;
                    let exporter = exporter.clone();
                    let lead = move || exporter.lead(lead, lists, format, gzip, deadline, tx);
                    async_std::task::spawn_blocking(lead).await;
                }));
                // The scrape keeps the leader's deadline itself.
                (rx, evicted, None)
            }
            // A joiner waits for the scrape to begin writing no later than leaves it the time
            // writing took last (the leader's enrichers keep that time for it too).
            Role::Join(rx, evicted) => (rx, evicted, self.writing.writing_deadline(deadline, gzip)),
        };
        let begun = match wait {
            None => Ok(pieces.recv().await),
            Some(d) => async_std::future::timeout(d.saturating_duration_since(Instant::now()), pieces.recv()).await,
        };
        Ok(match begun {
            Ok(Ok(_begun)) => Exposition::streamed(pieces, Evicted::begun(scrape, body)),
            Ok(Err(_)) => {
                log::error!("scrape: the scrape ended before writing (its thread failed)");
                self.down(format, gzip)
            }
            Err(_) => {
                log::warn!("scrape: the shared scrape did not begin within this request's deadline");
                self.down(format, gzip)
            }
        })
    }

    /// An answer with only the self-metrics, both lists down.
    fn down(&self, format: Format, gzip: bool) -> Exposition {
        let mut out = String::new();
        let health = Health {
            pods_up: false,
            nodes_up: false,
            took: Duration::ZERO,
            lists_age: Duration::ZERO,
            reuse_window: self.reuse.window(),
        };
        let mut w = Writer::new(&mut out, format);
        if let Err(e) = self_metrics::write(&mut w, health, &self.counters, &self.reports(), self.process_metrics) {
            log::error!("writing the self-metrics: {e}");
        }
        w.finish();
        Exposition::whole(if gzip { msp_core::compress(out.as_bytes()) } else { out.into_bytes() })
    }

    /// A scrape led, on its own thread: the `lists` read checked and enriched once, then
    /// written for its leader (`mine`) and for each request that joined meanwhile, each body
    /// on a thread of its own, as its client reads it.
    fn lead(
        &self,
        lead: Lead,
        lists: Lists,
        format: Format,
        gzip: bool,
        deadline: Option<Instant>,
        mine: Sender<Piece>,
    ) {
        // Requests of either encoding may join: the enrichers leave the time the slower
        // writing takes.
        let prepared = self.prepared(lists, self.writing.slower(), deadline, |scrape, enriched, read| {
            let mut bodies = lead.begin();
            // The bodies still being written: the last to end defers its end until the lists
            // are handed back (see `Ending`); the others end at once.
            let writing = AtomicUsize::new(bodies.len() + 1);
            let writing = &writing;
            // Laid out once for all of them, the enrichers' labels copied once (at 150,000
            // pods, 17 and some 15 MiB a body less). Before any body begins, so no body's
            // writing time (which sets the enrichers' deadline) counts them.
            let base = &BaseLabels::with_labels(scrape, &enriched.prepared, &self.options);
            std::thread::scope(|s| {
                let mut joiners = Vec::with_capacity(bodies.len());
                for (tx, (their_format, their_gzip)) in bodies.drain(..) {
                    let send = move || self.send(base, enriched, read, their_format, their_gzip, tx, writing);
                    // Refused a thread (a pids limit), the joiner finds its channel closed,
                    // and answers "down".
                    match std::thread::Builder::new().spawn_scoped(s, send) {
                        Ok(joiner) => joiners.push(joiner),
                        Err(e) => {
                            writing.fetch_sub(1, Ordering::AcqRel);
                            log::error!("scrape: no thread to write a joiner's body: {e}");
                        }
                    }
                }
                let mine = self.send(base, enriched, read, format, gzip, mine, writing);
                // A joiner's thread that panicked dropped its channel: its reader fails.
                joiners.into_iter().filter_map(|j| j.join().ok().flatten()).chain(mine).collect::<Vec<_>>()
            })
        });
        for ending in async_std::task::block_on(prepared) {
            drop(async_std::task::spawn(ending.send()));
        }
    }

    /// One scrape, written in `format`. Never fails: what could not be read is reported in
    /// `kube_metrics_server_up` and the error counters, and everything else is served.
    ///
    /// With a `deadline` (from Prometheus' `X-Prometheus-Scrape-Timeout-Seconds`), reads that
    /// would end after it are abandoned and reported as failed, so the answer arrives in time.
    pub async fn scrape(&self, format: Format, deadline: Option<Instant>) -> String {
        let lists = self.read(deadline, false).await;
        self.prepared(lists, false, deadline, |scrape, enriched, read| {
            let writing = Instant::now();
            let mut out = String::new();
            let mut w = Writer::new(&mut out, format);
            self.write(&mut w, &BaseLabels::of(scrape, &self.options), enriched, read, &Cell::default());
            w.finish();
            self.writing.record(false, scrape.pods.len(), writing.elapsed());
            out
        })
        .await
    }

    /// One scrape, handed to `f` instead of written: for an embedder that wants the samples
    /// themselves (to send elsewhere, to check, to sum in process) rather than text. The
    /// lists are read, selected by the scope and enriched as for [`Exporter::scrape`] (the
    /// memo, the list reuse, the `deadline`, the self-metrics' counters, all alike), and
    /// [`Sampled`] holds what came of it; [`msp_core::render_prepared`] with
    /// [`Exporter::options`] writes its families as `scrape` would have.
    pub async fn scrape_with<R>(&self, deadline: Option<Instant>, f: impl FnOnce(Sampled<'_>) -> R) -> R {
        let lists = self.read(deadline, false).await;
        self.prepared(lists, false, deadline, |scrape, enriched, read| {
            f(Sampled { scrape, enriched, pods_up: read.pods_up, nodes_up: read.nodes_up })
        })
        .await
    }

    /// Reads both metrics lists for a scrape due at `deadline` and written gzipped or not,
    /// abandoned in time to enrich and write them ([`WriteCost::reads_deadline`]); or
    /// reuses the last lists read, if young enough ([`Exporter::reusing_lists_for`]).
    async fn read(&self, deadline: Option<Instant>, gzip: bool) -> Lists {
        let started = Instant::now();
        if let Some(lists) = self.reuse.get(self.source.as_ref(), started) {
            self.counters.lists_reused();
            log::debug!("scrape: reusing the metrics lists read {:?} ago", lists.age());
            return lists;
        }
        let selector = self.scope.label_selector.as_ref().map(LabelSelector::as_str);
        let reads_deadline = self.writing.reads_deadline(deadline, gzip);
        let (pods, nodes) = futures_lite::future::zip(
            within(reads_deadline, self.source.pod_metrics(selector)),
            within(reads_deadline, self.source.node_metrics()),
        )
        .await;
        log::debug!("scrape: read the metrics lists in {:?}", started.elapsed());
        Lists { pods: pods.map(Arc::new), nodes: nodes.map(Arc::new), started, reused_from: None }
    }

    /// Checks the `lists` read, enriches them for a body gzipped or not, and hands the
    /// scrape to `write`; then gives the lists back to the source, for the next scrape's
    /// reads.
    async fn prepared<R>(
        &self,
        lists: Lists,
        gzip: bool,
        deadline: Option<Instant>,
        write: impl FnOnce(&Scrape<'_>, &Enriched, Read) -> R,
    ) -> R {
        let age = lists.age();
        let Lists { pods: pods_raw, nodes: nodes_raw, started, reused_from } = lists;
        let written = {
            let (mut pods_repaired, mut nodes_repaired, mut held) = (None, None, None);
            let (nodes, nodes_up): (NodeMetricsList<'_>, bool) =
                parse_list("node", &nodes_raw, &self.scope, &mut nodes_repaired);
            // The pods straight from their body, as metrics-server writes it, with no list of
            // them between; else (a body of another shape) as a list. Either way the scrape
            // borrows its text from the bodies, and no list is held while it is enriched and
            // written.
            let (scrape, pods_up) = match &pods_raw {
                Ok(body) => {
                    let (scrape, read) =
                        Scrape::from_pods_json(body, nodes, &self.scope, &mut pods_repaired, &mut held);
                    (scrape, reported("pod", body, read))
                }
                Err(e) => {
                    fetch_failed("pod", e);
                    (Scrape::from_lists(PodMetricsList::default(), nodes, &self.scope, &mut held), false)
                }
            };
            note_read(&self.failed_reads[0], "pod", pods_up);
            note_read(&self.failed_reads[1], "node", nodes_up);
            // Lists of its own only: reused ones are kept already, since their read.
            if let (None, true, true, Ok(pods), Ok(nodes)) = (reused_from, pods_up, nodes_up, &pods_raw, &nodes_raw) {
                self.reuse.keep(self.source.as_ref(), pods, nodes, started);
            }
            if pods_up {
                self.writing.read(scrape.pods.len());
            }
            for e in &scrape.errors {
                log::warn!("{e}");
            }
            self.counters.parse_errors(scrape.errors.len());

            let enrichers_deadline = Deadline(self.writing.enrichers_deadline(deadline, gzip, scrape.pods.len()));
            let enriched =
                enrich(&scrape, self.cluster.as_ref(), &self.enrichers, Some(&self.memo), &enrichers_deadline).await;
            for failure in &enriched.failures {
                let lost = if failure.partial {
                    "the labels it could add are kept"
                } else {
                    "its labels are left out of this scrape"
                };
                log::warn!(enricher = failure.enricher.as_str(); "enricher {}: {}; {lost}", failure.enricher, failure.error);
                self.counters.enricher_error(&failure.enricher);
            }
            write(&scrape, &enriched, Read { pods_up, nodes_up, started, age })
        };
        self.reuse.recycle(self.source.as_ref(), pods_raw.ok(), nodes_raw.ok());
        written
    }

    /// The exposition of one scrape: its families, then the self-metrics, whose duration
    /// leaves out the time `waited` for the client.
    fn write(
        &self,
        w: &mut Writer<'_>,
        base: &BaseLabels<'_>,
        enriched: &Enriched,
        read: Read,
        waited: &Cell<Duration>,
    ) {
        match write_families_with(w, base, &enriched.prepared, &self.options) {
            Ok(()) => {}
            // The client has gone.
            Err(ExpositionError::Stopped) => return,
            Err(e) => log::error!("writing the exposition: {e}"),
        }
        let took = read.started.elapsed().saturating_sub(waited.get());
        let health = Health {
            pods_up: read.pods_up,
            nodes_up: read.nodes_up,
            took,
            lists_age: read.age,
            reuse_window: self.reuse.window(),
        };
        match self_metrics::write(w, health, &self.counters, &self.reports(), self.process_metrics) {
            Ok(()) | Err(ExpositionError::Stopped) => {}
            Err(e) => log::error!("writing the self-metrics: {e}"),
        }
    }

    /// Writes one body into `tx` as its reader takes it: the text [`GZIP_CHUNK`] at a time,
    /// through gzip when `gzip`, so the exposition never exists whole, compressed or not.
    /// The body is one of `writing`: the last of them to be written returns its [`Ending`],
    /// to be sent once the scrape has handed back its lists; the others send theirs at once,
    /// each as its reader has room. `None` too if the reader has gone.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        base: &BaseLabels<'_>,
        enriched: &Enriched,
        read: Read,
        format: Format,
        gzip: bool,
        tx: Sender<Piece>,
        writing: &AtomicUsize,
    ) -> Option<Ending> {
        let waited = Cell::default();
        let ending = BodyWriter::begin(tx, gzip, &waited).and_then(|mut body| {
            let started = Instant::now();
            let mut chunk = String::new();
            let mut sink = |text: &str| body.write(text.as_bytes());
            let mut w = Writer::spilling(&mut chunk, format, GZIP_CHUNK, &mut sink);
            self.write(&mut w, base, enriched, read, &waited);
            w.finish();
            // A body left unread (a client gone, an eviction) was not compressed: not a measure.
            let ending = body.finish()?;
            self.writing.record(gzip, base.scrape().pods.len(), started.elapsed().saturating_sub(waited.get()));
            Some(ending)
        });
        let last = writing.fetch_sub(1, Ordering::AcqRel) == 1;
        match ending {
            Some(ending) if !last => {
                drop(async_std::task::spawn(ending.send()));
                None
            }
            ending => ending,
        }
    }
}

/// A scrape's samples and their labels, for [`Exporter::scrape_with`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Sampled<'s> {
    /// The pods and nodes in scope, with their usage (a pod's containers by
    /// [`Scrape::containers_of`]), and the items dropped as invalid.
    pub scrape: &'s Scrape<'s>,
    /// Their enrichers' labels (indexed like `scrape`'s pods and nodes; a pod's as
    /// [`PodLabels::pairs`](msp_core::PodLabels::pairs)) and the enrichers that failed.
    pub enriched: &'s Enriched,
    /// Whether the pod metrics list was read (`kube_metrics_server_up{resource="pods"}`):
    /// when not, `scrape` has no pods.
    pub pods_up: bool,
    /// Whether the node metrics list was read.
    pub nodes_up: bool,
}

impl<'s> Sampled<'s> {
    /// Each pod in scope, with its containers and its enrichers' labels (read them with
    /// [`PodLabels::pairs`](msp_core::PodLabels::pairs)).
    pub fn pods(
        &self,
    ) -> impl Iterator<Item = (&'s msp_core::PodSample<'s>, &'s [msp_core::ContainerSample<'s>], &'s msp_core::PodLabels)>
    {
        let (scrape, labels) = (self.scrape, &self.enriched.prepared.pods);
        scrape.pods.iter().zip(labels).map(move |(pod, labels)| (pod, scrape.containers_of(pod), &**labels))
    }
}

/// What a scrape read, for its self-metrics.
#[derive(Debug, Clone, Copy)]
struct Read {
    pods_up: bool,
    nodes_up: bool,
    started: Instant,
    /// How long before the scrape its lists were read (reused: see `reuse.rs`).
    age: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::{async_trait, EnrichError, StaticCluster};

    /// Usage from fixed JSON; `None` fails the read.
    pub(super) struct Fixed(pub(super) Option<&'static str>, pub(super) Option<&'static str>);

    #[async_trait]
    impl MetricsSource for Fixed {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            self.0.map(|s| s.as_bytes().to_vec()).ok_or_else(|| "pods down".into())
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            self.1.map(|s| s.as_bytes().to_vec()).ok_or_else(|| "nodes down".into())
        }
        fn describe(&self) -> String {
            "fixed".into()
        }
    }

    pub(super) const PODS: &str = r#"{"items":[{"metadata":{"name":"p","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"7m","memory":"1Ki"}}]},
        {"metadata":{"name":"bad","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"x","memory":"1Ki"}}]}]}"#;

    #[test]
    fn a_scrape_serves_what_it_could_read_and_reports_the_rest() {
        let exporter = Exporter::new(Arc::new(Fixed(Some(PODS), None)), Arc::new(StaticCluster::default()))
            .with_enrichers(vec![Arc::new(msp_enrichers::NodeEnricher)]);
        let out = async_std::task::block_on(exporter.scrape(Format::Text, None));
        for line in [
            "kube_metrics_server_pod_cpu_usage_cores{namespace=\"n\",pod=\"p\"} 0.007\n",
            "kube_metrics_server_up{resource=\"pods\"} 1\n",
            "kube_metrics_server_up{resource=\"nodes\"} 0\n",
            "kube_metrics_server_parse_errors_total 1\n",
            "kube_metrics_server_enricher_errors_total{enricher=\"node\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        assert!(!out.contains("pod=\"bad\""));
    }

    #[test]
    fn an_answer_that_is_not_a_list_is_down_not_empty() {
        let nodes = r#"{"kind":"NodeMetricsList","items":[]}"#;
        for (pods, up) in [
            (
                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server is shutting down","code":503}"#,
                0,
            ),
            (r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}"#, 0),
            // A misrouted URL's real pods: no usage, and no cluster without pods either.
            (
                r#"{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"p","namespace":"n"},"spec":{}}]}"#,
                0,
            ),
            (r#"{"error":"upstream unavailable"}"#, 0),
            (r#"{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1","metadata":{},"items":[]}"#, 1),
            (r#"{"kind":"PodMetricsList","items":null}"#, 1),
            (r#"{"items":[]}"#, 1),
            ("[]", 0),
            (r#"{"kind":"Status","message":"a \"quoted\" reason","items":7}"#, 0),
        ] {
            let exporter = Exporter::new(Arc::new(Fixed(Some(pods), Some(nodes))), Arc::new(StaticCluster::default()));
            let out = async_std::task::block_on(exporter.scrape(Format::Text, None));
            assert!(out.contains(&format!("kube_metrics_server_up{{resource=\"pods\"}} {up}\n")), "{pods}: {out}");
            assert!(out.contains("kube_metrics_server_up{resource=\"nodes\"} 1\n"), "{pods}: {out}");
        }
    }

    #[test]
    fn a_list_whose_pods_are_all_skipped_is_up_and_empty() {
        // A shard, or namespaces, without pods in this list: it is still a list.
        struct Nothing;
        impl msp_core::Select for Nothing {
            fn pod(&self, _: &str, _: &str) -> bool {
                false
            }
            fn node(&self, _: &str) -> bool {
                false
            }
        }
        let list = r#"{"kind":"PodMetricsList","items":[
          {"metadata":{"name":"a","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]},
          {"metadata":{"name":"b","namespace":"n"},"containers":[]}]}"#;
        let fetched = Ok(Arc::new(list.as_bytes().to_vec()));
        let mut repaired = None;
        let (pods, up): (PodMetricsList<'_>, bool) = parse_list("pod", &fetched, &Nothing, &mut repaired);
        assert_eq!((pods.items.len(), up), (0, true));
        // What is not a list is still down.
        let fetched = Ok(Arc::new(br#"{"kind":"Status","message":"m"}"#.to_vec()));
        let mut repaired = None;
        let (pods, up): (PodMetricsList<'_>, bool) = parse_list("pod", &fetched, &Nothing, &mut repaired);
        assert_eq!((pods.items.len(), up), (0, false));
    }

    /// An embedder's enricher that panics; with `Depends::Pod` (`.0`) the memo is in play.
    struct Panics(msp_core::Depends);

    #[async_trait]
    impl Enricher for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        fn depends(&self) -> msp_core::Depends {
            self.0
        }
        fn labels(&self) -> Vec<msp_core::AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, _: &Scrape<'_>, _: &dyn Cluster) -> Result<msp_core::Enrichment, EnrichError> {
            panic!("an embedder's bug")
        }
    }

    #[test]
    fn an_enricher_that_panics_costs_only_its_own_labels() {
        let pods = msp_core::pods_from_list(
            br#"{"items":[{"metadata":{"name":"p","namespace":"n"},"spec":{"nodeName":"n1"}}]}"#,
        )
        .expect("pods");
        let cluster = Arc::new(StaticCluster { pods: Arc::new(pods), ..StaticCluster::default() });
        for depends in [msp_core::Depends::Scrape, msp_core::Depends::Pod] {
            let exporter = Exporter::new(Arc::new(Fixed(Some(PODS), None)), cluster.clone())
                .with_enrichers(vec![Arc::new(Panics(depends)), Arc::new(msp_enrichers::NodeEnricher)]);
            scrapes_without_the_panicking_enrichers_labels(&exporter);
        }
    }

    fn scrapes_without_the_panicking_enrichers_labels(exporter: &Exporter) {
        for scrape in 1..=2 {
            let out = async_std::task::block_on(exporter.scrape(Format::Text, None));
            for line in [
                "kube_metrics_server_pod_cpu_usage_cores{namespace=\"n\",pod=\"p\",node=\"n1\"} 0.007\n",
                "kube_metrics_server_up{resource=\"pods\"} 1\n",
                &format!("kube_metrics_server_enricher_errors_total{{enricher=\"panics\"}} {scrape}\n"),
                "kube_metrics_server_enricher_errors_total{enricher=\"node\"} 0\n",
            ] {
                assert!(out.contains(line), "scrape {scrape}: {line} in\n{out}");
            }
        }
    }

    /// Usage from fixed bytes, not necessarily UTF-8.
    struct Bytes(Vec<u8>);

    #[async_trait]
    impl MetricsSource for Bytes {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            Ok(self.0.clone())
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Ok(br#"{"items":[]}"#.to_vec())
        }
        fn describe(&self) -> String {
            "bytes".into()
        }
    }

    /// A source whose pod read panics.
    struct PanickingSource;

    #[async_trait]
    impl MetricsSource for PanickingSource {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            panic!("an embedder's bug")
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Ok(br#"{"items":[]}"#.to_vec())
        }
        fn describe(&self) -> String {
            "panics".into()
        }
    }

    #[test]
    fn a_source_that_panics_fails_its_read_alone_on_every_path() {
        let exporter = Arc::new(Exporter::new(Arc::new(PanickingSource), Arc::new(StaticCluster::default())));
        let out = async_std::task::block_on(exporter.scrape(Format::Text, None));
        let streamed = async_std::task::block_on(async {
            let body = exporter.stream(Format::Text, false, None).await.expect("not busy");
            text_of(body).await
        });
        for out in [out, streamed] {
            for line in
                ["kube_metrics_server_up{resource=\"pods\"} 0\n", "kube_metrics_server_up{resource=\"nodes\"} 1\n"]
            {
                assert!(out.contains(line), "{line} in\n{out}");
            }
        }
    }

    #[test]
    fn process_metrics_can_be_left_to_the_embedder() {
        let with = Exporter::new(Arc::new(Fixed(Some(PODS), None)), Arc::new(StaticCluster::default()));
        let without = Exporter::new(Arc::new(Fixed(Some(PODS), None)), Arc::new(StaticCluster::default()))
            .without_process_metrics();
        let (with, without) = async_std::task::block_on(async {
            (with.scrape(Format::Text, None).await, without.scrape(Format::Text, None).await)
        });
        assert!(with.contains("\nprocess_start_time_seconds "), "{with}");
        assert!(!without.contains("process_"), "{without}");
        for family in ["kube_metrics_server_up{", "kube_metrics_server_build_info{"] {
            assert!(without.contains(family), "{family} in\n{without}");
        }
    }

    #[test]
    fn an_exporter_says_its_shard() {
        let shard = crate::Shard::new(3, Some(1), &|_| None).expect("shard");
        let scope = Scope { shard, ..Scope::default() };
        let exporter = Exporter::new(Arc::new(Fixed(Some(PODS), None)), Arc::new(StaticCluster::default()));
        let (unsharded, sharded) = async_std::task::block_on(async {
            let unsharded = exporter.scrape(Format::Text, None).await;
            (unsharded, exporter.with_scope(scope).scrape(Format::Text, None).await)
        });
        for (text, index, total) in [(unsharded, 0, 1), (sharded, 1, 3)] {
            let said = format!("kube_metrics_server_shard{{index=\"{index}\",total=\"{total}\"}} 1\n");
            assert!(text.contains(&said), "{said} in\n{text}");
            assert!(text.contains(&format!("kube_metrics_server_total_shards {total}\n")), "{text}");
        }
    }

    #[test]
    fn one_bad_byte_costs_no_other_pod() {
        let mut body = PODS.as_bytes().to_vec();
        // The second pod's name, "bad", with a byte that is not UTF-8.
        let at = PODS.find("\"bad\"").expect("bad") + 2;
        body[at] = 0xff;
        let exporter = Exporter::new(Arc::new(Bytes(body)), Arc::new(StaticCluster::default()));
        let out = async_std::task::block_on(exporter.scrape(Format::Text, None));
        for line in [
            "kube_metrics_server_pod_cpu_usage_cores{namespace=\"n\",pod=\"p\"} 0.007\n",
            "kube_metrics_server_up{resource=\"pods\"} 1\n",
            "kube_metrics_server_parse_errors_total 1\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }

    /// A source that never answers.
    struct Stalled;

    #[async_trait]
    impl MetricsSource for Stalled {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            std::future::pending().await
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            std::future::pending().await
        }
        fn describe(&self) -> String {
            "stalled".into()
        }
    }

    /// [`PODS`] (or the list given) after a while (2 s unless given: long enough that a
    /// request sent 50 ms after another finds it still reading on a busy machine),
    /// counting the reads.
    pub(super) struct Slow(pub(super) std::sync::atomic::AtomicUsize, Option<&'static str>, Duration);

    impl Default for Slow {
        fn default() -> Self {
            Slow(Default::default(), None, Duration::from_secs(2))
        }
    }

    #[async_trait]
    impl MetricsSource for Slow {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            async_std::task::sleep(self.2).await;
            Ok(self.1.unwrap_or(PODS).as_bytes().to_vec())
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Ok(br#"{"items":[]}"#.to_vec())
        }
        fn describe(&self) -> String {
            "slow".into()
        }
    }

    pub(super) fn slow() -> (Arc<Slow>, Arc<Exporter>) {
        let source = Arc::new(Slow::default());
        (source.clone(), Arc::new(Exporter::new(source, Arc::new(StaticCluster::default()))))
    }

    /// A gzipped body's text.
    pub(super) fn gunzip(packed: &[u8]) -> String {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(packed), &mut text).expect("gunzip");
        text
    }

    /// A body, read whole, as text without its scrape duration and process figures (which
    /// differ between bodies).
    async fn text_of(body: Exposition) -> String {
        let text = String::from_utf8(body.read_all().await.expect("a whole body")).expect("UTF-8");
        let differ =
            |l: &&str| l.starts_with("kube_metrics_server_scrape_duration_seconds ") || l.starts_with("process_");
        text.lines().filter(|l| !differ(l)).map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn requests_that_arrive_while_a_scrape_is_read_share_it_and_each_get_the_whole_body() {
        let (source, exporter) = slow();
        let (a, b) = async_std::task::block_on(futures_lite::future::zip(
            async { text_of(exporter.stream(Format::Text, false, None).await.expect("room")).await },
            async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                text_of(exporter.stream(Format::Text, false, None).await.expect("room")).await
            },
        ));
        assert!(a.contains("pod=\"p\"") && a.contains("kube_metrics_server_up{resource=\"pods\"} 1"), "{a}");
        assert_eq!(a, b);
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "one read for both");
    }

    #[test]
    fn past_max_scrapes_a_request_that_would_read_is_refused_and_counted() {
        // Reads of 3 s, which stay in flight on a busy machine.
        let source = Arc::new(Slow(Default::default(), None, Duration::from_secs(3)));
        let exporter = Arc::new(Exporter::new(source.clone(), Arc::new(StaticCluster::default())));
        let (refused, joined, bodies) = async_std::task::block_on(async {
            // Four scrapes being read: no deadline, then longer and longer deadlines, each
            // arriving once the one before reads, so none joins the one before (a scrape
            // covers a later request of any format that would give upstream at most a
            // ninth longer)...
            let within = |s: u64| Some(Instant::now() + Duration::from_secs(s));
            let mut reading = Vec::new();
            let asks = [(Format::Text, None), (Format::Text, within(10)), (Format::OpenMetrics, within(30))];
            for (n, (format, deadline)) in asks.into_iter().chain([(Format::OpenMetrics, within(60))]).enumerate() {
                let exporter = exporter.clone();
                reading.push(async_std::task::spawn(async move { exporter.stream(format, false, deadline).await }));
                // (reading, however busy the machine)
                let started = Instant::now();
                while source.0.load(Ordering::SeqCst) <= n && started.elapsed() < Duration::from_secs(20) {
                    async_std::task::sleep(Duration::from_millis(5)).await;
                }
            }
            // ...so one more that would read its own (120 s: the 60 s scrape does not cover
            // it) is refused, while one that can join is served.
            let refused = exporter.stream(Format::Text, false, within(120)).await.err();
            let joined = exporter.stream(Format::Text, false, None).await.expect("joins").read_all().await;
            let mut bodies = Vec::new();
            for r in reading {
                bodies.push(text_of(r.await.expect("room")).await);
            }
            (refused, joined.expect("a whole body"), bodies)
        });
        assert_eq!(refused, Some(Busy::Scrapes));
        assert_eq!(source.0.load(Ordering::SeqCst), 4, "the refused request read nothing");
        let joined = String::from_utf8(joined).expect("UTF-8");
        assert!(joined.contains("kube_metrics_server_refused_total{limit=\"scrapes\"} 1\n"), "{joined}");
        assert!(joined.contains("kube_metrics_server_evicted_total{limit=\"bodies\"} 0\n"), "{joined}");
        assert!(bodies.iter().all(|b| b.contains("pod=\"p\"")), "those reading were left to read");
    }

    #[test]
    fn a_request_of_another_format_and_encoding_shares_the_read_and_gets_its_own() {
        let (source, exporter) = slow();
        let within = |s: u64| Some(Instant::now() + Duration::from_secs(s));
        let (prometheus, text) = async_std::task::block_on(futures_lite::future::zip(
            async { exporter.stream(Format::OpenMetrics, true, within(10)).await.expect("room").read_all().await },
            async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                text_of(exporter.stream(Format::Text, false, within(10)).await.expect("room")).await
            },
        ));
        let open_metrics = gunzip(&prometheus.expect("a whole body"));
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "one read for both");
        assert!(open_metrics.contains("pod=\"p\"") && open_metrics.ends_with("# EOF\n"), "{open_metrics}");
        assert!(text.contains("pod=\"p\"") && !text.contains("# EOF"), "{text}");
    }

    #[test]
    fn a_joiner_keeps_its_own_deadline() {
        let (_, exporter) = slow();
        let started = Instant::now();
        let long = Some(started + Duration::from_secs(10));
        let (_, (joined, after)) = async_std::task::block_on(futures_lite::future::zip(
            async { text_of(exporter.stream(Format::OpenMetrics, false, long).await.expect("room")).await },
            async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                let own = Instant::now() + Duration::from_millis(100);
                let body = exporter.stream(Format::OpenMetrics, false, Some(own)).await.expect("room");
                (text_of(body).await, started.elapsed())
            },
        ));
        assert!(joined.contains("kube_metrics_server_up{resource=\"pods\"} 0"), "{joined}");
        // At its own (150 ms), not when the leader's read ends (2 s).
        assert!(after < Duration::from_secs(1), "gave up at its own deadline: {after:?}");
    }

    #[test]
    fn a_leader_whose_client_left_still_serves_its_joiners() {
        let (source, exporter) = slow();
        let joined = async_std::task::block_on(async {
            // The leader's request is dropped while its scrape is read.
            let left =
                async_std::future::timeout(Duration::from_millis(50), exporter.stream(Format::OpenMetrics, true, None))
                    .await;
            assert!(left.is_err(), "still reading");
            exporter
                .stream(Format::OpenMetrics, true, None)
                .await
                .expect("room")
                .read_all()
                .await
                .expect("a whole body")
        });
        let text = gunzip(&joined);
        assert!(text.contains("pod=\"p\"") && text.ends_with("# EOF\n"), "{text}");
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "joined the scrape its leader left");
    }

    /// A pod list whose text is more than a body's channel holds, so that its writer must
    /// wait for a reader.
    fn many_pods() -> &'static str {
        let pods: String = (0..8000)
            .map(|i| format!(r#"{{"metadata":{{"name":"p{i}","namespace":"n"}},"containers":[{{"name":"c","usage":{{"cpu":"{i}m","memory":"1Ki"}}}}]}}"#))
            .collect::<Vec<_>>()
            .join(",");
        Box::leak(format!(r#"{{"items":[{pods}]}}"#).into_boxed_str())
    }

    #[test]
    fn a_body_read_to_its_end_does_not_wait_for_a_stalled_one_of_its_scrape() {
        let source = Arc::new(Slow(Default::default(), Some(many_pods()), Duration::from_secs(2)));
        let exporter = Arc::new(Exporter::new(source.clone(), Arc::new(StaticCluster::default())));
        let read = async_std::task::block_on(async_std::future::timeout(Duration::from_secs(20), async {
            let (fast, stalled) = futures_lite::future::zip(exporter.stream(Format::Text, false, None), async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                exporter.stream(Format::Text, false, None).await
            })
            .await;
            let whole = fast.expect("room").read_all().await.expect("a whole body");
            drop(stalled);
            whole
        }));
        let whole = read.expect("the fast reader got its end while the other stalled");
        assert!(whole.len() > 4 * crate::PIECE && whole.ends_with(b"} 1\n"), "{} bytes", whole.len());
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "one scrape for both");
    }

    /// Two scrapes, one after the other, from an exporter over `source` reusing lists for
    /// `window`; and how many times the pods were read.
    fn two_scrapes(source: Slow, window: Duration) -> ([String; 2], usize) {
        let source = Arc::new(source);
        let exporter = Exporter::new(source.clone(), Arc::new(StaticCluster::default())).reusing_lists_for(window);
        let scrape = || async_std::task::block_on(exporter.scrape(Format::Text, None));
        ([scrape(), scrape()], source.0.load(Ordering::SeqCst))
    }

    #[test]
    fn a_scrape_within_the_window_serves_the_lists_the_last_read_and_says_so() {
        let ([first, second], reads) =
            two_scrapes(Slow(Default::default(), None, Duration::ZERO), Duration::from_secs(3600));
        assert_eq!(reads, 1);
        let usage = |text: &str| text.lines().filter(|l| l.contains("_usage_")).map(str::to_owned).collect::<Vec<_>>();
        assert!(!usage(&first).is_empty());
        assert_eq!(usage(&first), usage(&second));
        assert!(first.contains("kube_metrics_server_lists_reused_total 0\n"), "{first}");
        assert!(second.contains("kube_metrics_server_lists_reused_total 1\n"), "{second}");
        assert!(second.contains("kube_metrics_server_up{resource=\"pods\"} 1\n"), "{second}");

        let (_, reads) = two_scrapes(Slow(Default::default(), None, Duration::ZERO), Duration::ZERO);
        assert_eq!(reads, 2, "no window (the default): every scrape reads");
    }

    #[test]
    fn lists_are_reused_for_the_window_from_their_read_not_from_the_scrapes_that_reused_them() {
        let source = Arc::new(Slow(Default::default(), None, Duration::ZERO));
        let window = Duration::from_secs(1);
        let exporter = Exporter::new(source.clone(), Arc::new(StaticCluster::default())).reusing_lists_for(window);
        let (begun, mut ages) = (Instant::now(), Vec::new());
        // Scrapes 50 ms apart for 2.5 s: were the lists' age counted from the last scrape that
        // reused them, the first read would serve them all.
        while begun.elapsed() < Duration::from_millis(2500) {
            let text = async_std::task::block_on(exporter.scrape(Format::Text, None));
            let age = text.lines().find_map(|l| l.strip_prefix("kube_metrics_server_lists_age_seconds "));
            ages.push(age.expect("the age").parse::<f64>().expect("a number"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let reads = source.0.load(Ordering::SeqCst);
        assert!(reads >= 2 && reads < ages.len(), "{reads} reads for {} scrapes", ages.len());
        assert!(ages.iter().all(|&a| a < window.as_secs_f64()) && ages.iter().any(|&a| a > 0.0), "{ages:?}");
    }

    #[test]
    fn an_answer_that_is_no_list_is_not_reused() {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","code":403}"#;
        let ([first, second], reads) =
            two_scrapes(Slow(Default::default(), Some(status), Duration::ZERO), Duration::from_secs(3600));
        assert_eq!(reads, 2, "the second scrape tries again");
        for text in [first, second] {
            assert!(text.contains("kube_metrics_server_up{resource=\"pods\"} 0\n"), "{text}");
            assert!(text.contains("kube_metrics_server_lists_reused_total 0\n"), "{text}");
        }
    }

    #[test]
    fn a_body_left_unread_is_no_measure_of_writing() {
        let pods = many_pods();
        let exporter = Arc::new(Exporter::new(
            Arc::new(Fixed(Some(pods), Some(r#"{"items":[]}"#))),
            Arc::new(StaticCluster::default()),
        ));
        let measured = || exporter.writing.0[0].load(Ordering::Relaxed);
        async_std::task::block_on(async {
            // Asked, then hung up on: HEAD, or a client gone.
            drop(exporter.stream(Format::Text, false, None).await.expect("room"));
            async_std::task::sleep(Duration::from_millis(300)).await;
            assert_eq!(measured(), 0, "not compressed, so not a measure");
            let body =
                exporter.stream(Format::Text, false, None).await.expect("room").read_all().await.expect("a whole body");
            assert!(body.len() > 4 * crate::PIECE, "{} bytes", body.len());
            async_std::task::sleep(Duration::from_millis(300)).await;
            assert!(measured() > 0, "read whole, it is");
        });
    }

    #[test]
    fn the_deadline_cuts_a_stalled_read() {
        let exporter = Exporter::new(Arc::new(Stalled), Arc::new(StaticCluster::default()));
        let deadline = Instant::now() + std::time::Duration::from_millis(100);
        let out = async_std::task::block_on(exporter.scrape(Format::OpenMetrics, Some(deadline)));
        assert!(out.contains("kube_metrics_server_up{resource=\"pods\"} 0\n"), "{out}");
        assert!(out.ends_with("# EOF\n"));
    }

    /// The nodes from fixed JSON; the pods' read never ends.
    struct PodsStalled(&'static str);

    #[async_trait]
    impl MetricsSource for PodsStalled {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            std::future::pending().await
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Ok(self.0.as_bytes().to_vec())
        }
        fn describe(&self) -> String {
            "pods stalled".into()
        }
    }

    #[test]
    fn a_read_that_hangs_to_the_end_leaves_the_enrichers_time_for_the_other() {
        let nodes = msp_core::nodes_from_list(
            br#"{"items":[{"metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}]}"#,
        )
        .expect("nodes");
        let cluster = StaticCluster { nodes: Arc::new(nodes), ..Default::default() };
        let exporter = Exporter::new(
            Arc::new(PodsStalled(r#"{"items":[{"metadata":{"name":"n1"},"usage":{"cpu":"1","memory":"1Ki"}}]}"#)),
            Arc::new(cluster),
        )
        .with_enrichers(vec![Arc::new(msp_enrichers::NodeEnricher)]);
        // 2 s: the enrichers' twentieth, 100 ms, is room enough on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(2);
        let out = async_std::task::block_on(exporter.scrape(Format::Text, Some(deadline)));
        for line in [
            "kube_metrics_server_node_cpu_usage_cores{node=\"n1\",internal_ip=\"192.0.2.1\"} 1\n",
            "kube_metrics_server_up{resource=\"pods\"} 0\n",
            "kube_metrics_server_up{resource=\"nodes\"} 1\n",
            "kube_metrics_server_enricher_errors_total{enricher=\"node\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
    }

    #[test]
    fn gzip_is_fed_as_the_text_is_written_and_says_the_same() {
        let exporter = Arc::new(Exporter::new(
            Arc::new(Fixed(Some(PODS), Some(r#"{"items":[]}"#))),
            Arc::new(StaticCluster::default()),
        ));
        let body = |gzip| {
            async_std::task::block_on(async {
                exporter
                    .stream(Format::OpenMetrics, gzip, None)
                    .await
                    .expect("room")
                    .read_all()
                    .await
                    .expect("a whole body")
            })
        };
        let (text, packed) = (body(false), body(true));
        let unpacked = gunzip(&packed);
        let strip = |b: &[u8]| -> String {
            // The duration, the counters and the process differ between two scrapes.
            String::from_utf8_lossy(b)
                .lines()
                .filter(|l| {
                    !l.starts_with("kube_metrics_server_scrape_duration_seconds ")
                        && !l.starts_with("kube_metrics_server_parse_errors_total ")
                        && !l.starts_with("process_")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(unpacked.as_bytes()), strip(&text));
        assert!(strip(&text).ends_with("# EOF"));
        let once = async_std::task::block_on(exporter.scrape(Format::OpenMetrics, None));
        assert_eq!(strip(&text), strip(once.as_bytes()), "streamed as rendered once");
    }
}
