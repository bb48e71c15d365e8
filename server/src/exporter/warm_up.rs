//! The warm-up: a first scrape and the enrichers' first reads when the server starts, made
//! again while they may yet start a cache, and what readiness waits for
//! ([`Exporter::syncing`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msp_core::{Enricher, Format};

use super::Exporter;

/// One warm-up under way, counted in [`Exporter::syncing`] until it is dropped: when it
/// ends, or when its future is dropped unfinished, or when its retries stop being waited
/// for ([`Exporter::warm_up_again`]). It holds the exporter weakly, as the retries do.
struct WarmingUp(std::sync::Weak<Exporter>);

impl WarmingUp {
    fn new(exporter: &Arc<Exporter>) -> Self {
        exporter.warming.fetch_add(1, Ordering::AcqRel);
        WarmingUp(Arc::downgrade(exporter))
    }
}

impl Drop for WarmingUp {
    fn drop(&mut self) {
        if let Some(exporter) = self.0.upgrade() {
            exporter.warming.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// How long the warm-up scrape may take ([`Exporter::warm_up`]): more than any Prometheus
/// scrape's timeout we take (its deadline must cover theirs for them to join it), and time
/// for a cold start of 150,000 pods to list its caches and enrich.
pub const WARM_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an enricher whose warm-up failed (the API server out of reach as the server
/// started) is warmed up again in the background ([`Exporter::warm_up`]), and readiness
/// waits for it, while no cache is still syncing; past it, its sources start at the first
/// scrape, as they would with no warm-up. While a cache is still syncing (the API server
/// still out of reach), the retries go on, each cheap, so that the caches that can only be
/// asked for once it has listed (`owner`'s ReplicaSets, once the pods are) come before
/// readiness.
pub const WARM_UP_RETRIES_FOR: Duration = Duration::from_secs(600);

impl Exporter {
    /// What readiness waits for: the cluster's sources still filling, and the warm-up (its
    /// scrape and the enrichers' first reads, and these made again while they may yet start
    /// a cache: see [`Exporter::warm_up`]). Makes no request.
    ///
    /// Once it has found nothing to wait for, it never waits again: a cache started later
    /// (the first Job, hours on) or a warm-up made again does not turn a Ready pod unready.
    /// So call [`Exporter::warm_up`] before the first probe can come (as `run` does): with
    /// none under way and no cache started, the first probe finds nothing to wait for.
    pub fn syncing(&self) -> Vec<String> {
        if self.ready.load(Ordering::Acquire) {
            return Vec::new();
        }
        // The warm-up first: one that ends between the two reads must not be missed, with the
        // caches it started done.
        let warming = self.warming.load(Ordering::Acquire) > 0;
        let mut syncing = self.cluster.syncing();
        if warming {
            syncing.push("the warm-up (a first scrape, and the enrichers' first reads)".into());
        }
        if syncing.is_empty() {
            self.ready.store(true, Ordering::Release);
        }
        syncing
    }

    /// One scrape as Prometheus asks for it, answered to nobody, when the server starts,
    /// and beside it every enricher's [`Enricher::warm_up`]: together they start the caches
    /// the enrichers use and fill the memo, so that the first scrape after a start (at
    /// 150,000 pods, seconds of listing and enriching) is as quick and as enriched as the
    /// others. Readiness waits for both. A failure of the scrape (metrics-server down) ends
    /// it like any scrape's, reported in `/metrics`; the enrichers' warm-up does not need
    /// it, so the caches fill meanwhile, and the first scrape after the metrics API comes
    /// back finds them filled. An enricher whose warm-up fails (the API server out of reach)
    /// is logged, and warmed up again in the background every second, for up to
    /// [`WARM_UP_RETRIES_FOR`]. Readiness waits for those retries too, until two rounds in a
    /// row (the warm-up's own among them) fail with no cache left syncing: what fails then
    /// (a source refused, 403) is not waiting for a cache to fill, and the scrapes report
    /// it. Until then a retry may still start a cache: `owner`'s ReplicaSets, once the pods
    /// are listed, which, listed between two tries, once let the pod be Ready with the
    /// ReplicaSets not yet asked for.
    ///
    /// It has a deadline, [`WARM_UP_TIMEOUT`] away, longer than any scrape's: a Prometheus
    /// scrape that arrives meanwhile (a PodMonitor's scrapes pods not yet Ready) joins it,
    /// rather than read and enrich the cluster a second time beside it (at 150,000 pods,
    /// 630 MiB at once instead of 380, and its own enrichment out of time).
    ///
    /// Readiness waits from the call, not from when the future first runs (a probe answered
    /// in between would otherwise find the server ready with nothing read), until the
    /// future is dropped unfinished, or it and the retries it leaves are done (see
    /// `warm_up_again`), and for every warm-up under way.
    pub fn warm_up(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let warming = WarmingUp::new(self);
        let exporter = self.clone();
        async move {
            let started = Instant::now();
            let enrichers = exporter.enrichers.clone();
            let ((), failed) =
                futures_lite::future::zip(exporter.warm_up_scrape(), exporter.warm_up_enrichers(enrichers, true)).await;
            if failed.is_empty() {
                log::info!("warm-up done in {:?}", started.elapsed());
            } else {
                let names: Vec<&str> = failed.iter().map(|e| e.name()).collect();
                log::info!(
                    "warm-up: the scrape done in {:?}; {} to warm up again, every second",
                    started.elapsed(),
                    names.join(", ")
                );
                let settled = exporter.cluster.syncing().is_empty();
                let exporter = Arc::downgrade(&exporter);
                drop(async_std::task::spawn(Exporter::warm_up_again(exporter, failed, (warming, settled))));
            }
        }
    }

    /// `enrichers`' [`Enricher::warm_up`]s, within [`WARM_UP_TIMEOUT`]; those that failed
    /// (logged when `loud`).
    async fn warm_up_enrichers(&self, enrichers: Vec<Arc<dyn Enricher>>, loud: bool) -> Vec<Arc<dyn Enricher>> {
        let warming = msp_core::warm_up(self.cluster.as_ref(), &enrichers);
        match async_std::future::timeout(WARM_UP_TIMEOUT, warming).await {
            Ok(failures) => {
                for f in &failures {
                    if loud {
                        log::warn!(enricher = f.enricher; "warm-up: enricher {}: {}; trying again", f.enricher, f.error);
                    } else {
                        log::debug!(enricher = f.enricher; "warm-up: enricher {}: {}", f.enricher, f.error);
                    }
                }
                enrichers.into_iter().filter(|e| failures.iter().any(|f| f.enricher == e.name())).collect()
            }
            Err(_) => {
                if loud {
                    log::warn!(
                        "warm-up: the enrichers' sources were not read within {WARM_UP_TIMEOUT:?}; trying again"
                    );
                }
                enrichers
            }
        }
    }

    /// The warm-ups that `failed`, again, a second apart, until each has worked (the API
    /// server back, or a cache that a list had to come first for: `owner`'s ReplicaSets
    /// after the pods), for up to [`WARM_UP_RETRIES_FOR`], and past it while a cache is still
    /// syncing. Cheap while they fail: a cache that cannot list answers at once with its
    /// last error, and lists on its own backoff. Holds the exporter weakly: dropped, it
    /// stops.
    ///
    /// Readiness waits (`warming`) until every enricher has warmed up, or two failed rounds
    /// in a row have left no cache syncing (`settled`: whether the warm-up's own round
    /// did), or the retries end.
    async fn warm_up_again(
        exporter: std::sync::Weak<Exporter>,
        mut failed: Vec<Arc<dyn Enricher>>,
        (warming, settled): (WarmingUp, bool),
    ) {
        let started = Instant::now();
        let mut warming = Some(warming);
        let mut settled = usize::from(settled);
        while !failed.is_empty() {
            async_std::task::sleep(Duration::from_secs(1)).await;
            let Some(exporter) = exporter.upgrade() else { return };
            if started.elapsed() >= WARM_UP_RETRIES_FOR && exporter.cluster.syncing().is_empty() {
                let names: Vec<&str> = failed.iter().map(|e| e.name()).collect();
                log::warn!(
                    "warm-up: {} could not warm up in {:.0?}; left to the scrapes",
                    names.join(", "),
                    started.elapsed()
                );
                return;
            }
            let still = exporter.warm_up_enrichers(failed.clone(), false).await;
            for done in failed.iter().filter(|e| !still.iter().any(|s| Arc::ptr_eq(s, e))) {
                log::info!(enricher = done.name(); "warm-up: enricher {}: warmed up", done.name());
            }
            failed = still;
            // Nothing left syncing twice in a row: what still fails waits for no cache.
            settled = match exporter.cluster.syncing().is_empty() {
                true => settled + 1,
                false => 0,
            };
            if settled >= 2 {
                drop(warming.take());
            }
        }
    }

    /// One warm-up scrape, as Prometheus asks, read to the end and let go of.
    async fn warm_up_scrape(self: &Arc<Self>) {
        let deadline = Instant::now().checked_add(WARM_UP_TIMEOUT);
        match self.stream(Format::OpenMetrics, true, deadline).await {
            // Read and let go of piece by piece, as a client would.
            Ok(body) => drop(futures_lite::io::copy(body, futures_lite::io::sink()).await),
            Err(busy) => log::warn!("warm-up scrape refused: {busy}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exporter::tests::{gunzip, slow, Fixed, PODS};
    use msp_core::{async_trait, Cluster, EnrichError, Scrape, SourceError, StaticCluster};
    use std::sync::atomic::{AtomicBool, AtomicU64};

    #[test]
    fn a_prometheus_scrape_that_arrives_during_the_warm_up_joins_it() {
        let (source, exporter) = slow();
        async_std::task::block_on(async {
            let warming = async_std::task::spawn(exporter.warm_up());
            async_std::task::sleep(Duration::from_millis(100)).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let body = exporter.stream(Format::OpenMetrics, true, Some(deadline)).await.expect("room");
            let text = gunzip(&body.read_all().await.expect("a whole body"));
            warming.await;
            assert!(text.contains("kube_metrics_server_up{resource=\"pods\"} 1\n"), "{text}");
        });
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "one read for both");
    }

    #[test]
    fn readiness_waits_for_a_warm_up_from_the_call_until_it_ends_or_is_dropped() {
        let source = Fixed(Some(PODS), Some(r#"{"items":[]}"#));
        let exporter = Arc::new(Exporter::new(Arc::new(source), Arc::new(StaticCluster::default())));
        let warming = exporter.warm_up();
        assert_eq!(
            exporter.syncing(),
            ["the warm-up (a first scrape, and the enrichers' first reads)"],
            "from the call, before it runs"
        );
        async_std::task::block_on(warming);
        assert_eq!(exporter.syncing(), Vec::<String>::new(), "done");
        let again = exporter.warm_up();
        assert_eq!(exporter.syncing(), Vec::<String>::new(), "ready once, ready for good");
        drop(again);
        let exporter = Arc::new(Exporter::new(Arc::new(Fixed(Some(PODS), None)), Arc::new(StaticCluster::default())));
        let (a, b) = (exporter.warm_up(), exporter.warm_up());
        async_std::task::block_on(a);
        assert_eq!(exporter.syncing().len(), 1, "one still under way");
        drop(b);
        assert_eq!(exporter.syncing(), Vec::<String>::new(), "one dropped unfinished waits for nothing");
    }

    /// A cluster that counts its reads, and holds nothing.
    #[derive(Default)]
    struct Counted(AtomicU64);

    #[async_trait]
    impl Cluster for Counted {
        async fn pods(&self) -> Result<Arc<msp_core::Pods>, SourceError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Default::default())
        }
        async fn nodes(&self) -> Result<Arc<msp_core::Nodes>, SourceError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Default::default())
        }
        async fn controllers(&self, _: msp_core::ControllerKind) -> Result<Arc<msp_core::Controllers>, SourceError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Default::default())
        }
    }

    /// An enricher whose warm-up fails its first `fails` calls.
    struct WarmsAtLast {
        calls: AtomicU64,
        fails: u64,
    }

    #[async_trait]
    impl Enricher for WarmsAtLast {
        fn name(&self) -> &str {
            "at-last"
        }
        fn labels(&self) -> Vec<msp_core::AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _: &dyn Cluster) -> Result<msp_core::Enrichment, EnrichError> {
            Ok(msp_core::Enrichment::new(scrape))
        }
        async fn warm_up(&self, _: &dyn Cluster) -> Result<(), EnrichError> {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.fails {
                Err("connection refused".into())
            } else {
                Ok(())
            }
        }
    }

    /// Waits (up to 10 s) until `holds` does, else fails saying `what` never happened.
    async fn until(what: &str, holds: impl Fn() -> bool) {
        let started = Instant::now();
        while !holds() {
            assert!(started.elapsed() < Duration::from_secs(10), "{what}");
            async_std::task::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn a_warm_up_that_failed_is_made_again_and_readiness_waits_while_it_may_yet_work() {
        let exporter = |enricher: &Arc<WarmsAtLast>| {
            Arc::new(
                Exporter::new(Arc::new(Fixed(None, None)), Arc::new(StaticCluster::default()))
                    .with_enrichers(vec![enricher.clone()]),
            )
        };
        let calls = |enricher: &Arc<WarmsAtLast>| enricher.calls.load(Ordering::SeqCst);
        let warming = ["the warm-up (a first scrape, and the enrichers' first reads)"];
        async_std::task::block_on(async {
            let enricher = Arc::new(WarmsAtLast { calls: AtomicU64::new(0), fails: 1 });
            let warmed = exporter(&enricher);
            warmed.warm_up().await;
            assert_eq!(
                (calls(&enricher), warmed.syncing()),
                (1, warming.map(String::from).to_vec()),
                "failed: waited for"
            );
            until("made again", || calls(&enricher) >= 2).await;
            until("ready once it worked", || warmed.syncing().is_empty()).await;
            async_std::task::sleep(Duration::from_millis(2500)).await;
            assert_eq!(calls(&enricher), 2, "and no more, once it worked");
            // One that never works, with no cache to wait for: what fails waits for nothing,
            // so readiness stops waiting after a second failed round.
            let never = Arc::new(WarmsAtLast { calls: AtomicU64::new(0), fails: u64::MAX });
            let failing = exporter(&never);
            failing.warm_up().await;
            assert_eq!(failing.syncing(), warming, "not after one round: a retry may yet start a cache");
            until("ready after two rounds", || failing.syncing().is_empty()).await;
            assert!(calls(&never) >= 2, "made again first");
            // Dropped: the background warm-ups stop with it.
            drop(failing);
            let made = calls(&never);
            async_std::task::sleep(Duration::from_millis(1500)).await;
            assert_eq!(calls(&never), made, "the exporter was dropped");
        });
    }

    /// A cluster whose caches are syncing while its flag says so.
    struct Syncing(Arc<AtomicBool>);

    #[async_trait]
    impl Cluster for Syncing {
        async fn pods(&self) -> Result<Arc<msp_core::Pods>, SourceError> {
            Ok(Default::default())
        }
        async fn nodes(&self) -> Result<Arc<msp_core::Nodes>, SourceError> {
            Ok(Default::default())
        }
        async fn controllers(&self, _: msp_core::ControllerKind) -> Result<Arc<msp_core::Controllers>, SourceError> {
            Ok(Default::default())
        }
        fn syncing(&self) -> Vec<String> {
            match self.0.load(Ordering::SeqCst) {
                true => vec!["pods".into()],
                false => Vec::new(),
            }
        }
    }

    /// An enricher whose warm-up always fails, its `k`th leaving the cluster syncing as
    /// `script[k]` says (and not, past it).
    struct Scripted {
        calls: AtomicU64,
        script: Vec<bool>,
        syncing: Arc<AtomicBool>,
    }

    #[async_trait]
    impl Enricher for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn labels(&self) -> Vec<msp_core::AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _: &dyn Cluster) -> Result<msp_core::Enrichment, EnrichError> {
            Ok(msp_core::Enrichment::new(scrape))
        }
        async fn warm_up(&self, _: &dyn Cluster) -> Result<(), EnrichError> {
            let k = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            self.syncing.store(self.script.get(k).copied().unwrap_or(false), Ordering::SeqCst);
            Err("not yet".into())
        }
    }

    /// Two failed rounds in a row with nothing syncing end the wait; a round that leaves a
    /// cache syncing (one it started, say) between them starts the count again.
    #[test]
    fn a_round_that_leaves_a_cache_syncing_starts_the_count_again() {
        let flag = Arc::new(AtomicBool::new(false));
        // The warm-up's own round settled, the first retry's left a cache syncing, the
        // second's settled again.
        let enricher =
            Arc::new(Scripted { calls: AtomicU64::new(0), script: vec![false, true, false], syncing: flag.clone() });
        let exporter = Arc::new(
            Exporter::new(Arc::new(Fixed(None, None)), Arc::new(Syncing(flag))).with_enrichers(vec![enricher.clone()]),
        );
        let warming = ["the warm-up (a first scrape, and the enrichers' first reads)"];
        async_std::task::block_on(async {
            exporter.warm_up().await;
            until("made again", || enricher.calls.load(Ordering::SeqCst) >= 3).await;
            // After the second retry (the third comes a second after it): one settled
            // round since the one that left a cache syncing, not two.
            async_std::task::sleep(Duration::from_millis(300)).await;
            assert_eq!(exporter.syncing(), warming, "the count started again");
            until("ready after the third", || exporter.syncing().is_empty()).await;
            assert!(enricher.calls.load(Ordering::SeqCst) >= 4);
        });
    }

    #[test]
    fn the_warm_up_reads_what_the_enrichers_need_though_the_metrics_api_is_down() {
        let cluster = Arc::new(Counted::default());
        let exporter = Arc::new(
            Exporter::new(Arc::new(Fixed(None, None)), cluster.clone())
                .with_enrichers(vec![Arc::new(msp_enrichers::NodeEnricher)]),
        );
        async_std::task::block_on(exporter.warm_up());
        assert_eq!(cluster.0.load(Ordering::SeqCst), 2, "the pods and the nodes, with no list to enrich");
        assert_eq!(exporter.syncing(), Vec::<String>::new(), "and ready");
    }
}
