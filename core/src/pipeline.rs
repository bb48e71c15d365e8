//! The one enrichment pipeline: a checked [`Scrape`], a [`Cluster`], the enrichers in
//! order and an optional [`Memo`] in; the merged labels of every pod and node out, ready
//! for [`render_prepared`](crate::render_prepared). The server, the benchmark and
//! embedders all call [`enrich`].
//!
//! ```
//! # async_std::task::block_on(async {
//! use msp_core::{enrich, render_prepared, Memo, RenderOptions, Scrape, StaticCluster, Unguarded};
//!
//! let pods = r#"{"items":[{"metadata":{"name":"p","namespace":"n"},
//!     "containers":[{"name":"c","usage":{"cpu":"7m","memory":"1Ki"}}]}]}"#;
//! let pods = serde_json::from_str(pods).unwrap();
//! let nodes = Default::default();
//! let scrape = Scrape::new(&pods, &nodes);
//! let memo = Memo::default();
//! let enriched = enrich(&scrape, &StaticCluster::default(), &[], Some(&memo), &Unguarded).await;
//! assert!(enriched.failures.is_empty());
//!
//! let mut out = String::new();
//! render_prepared(&mut out, &scrape, &enriched.prepared, &RenderOptions::default()).unwrap();
//! assert!(out.contains(r#"kube_metrics_server_pod_cpu_usage_cores{namespace="n",pod="p"} 0.007"#));
//! # });
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use crate::cluster::Cluster;
use crate::enricher::{Depends, EnrichError, Enricher, Enrichment};
use crate::memo::{Memo, Refusal};
use crate::render::{prepare, Prepared};
use crate::scrape::Scrape;
use crate::unwind::{catch_call, CatchUnwind};

/// The most pods one enricher call is given when a memo is used: what enrichers return is
/// kept only until it is merged, so a cold start of a large cluster holds it for this many
/// pods at a time, not for all of them.
const BATCH: usize = 8192;

/// One enricher's call, as [`Guard::guard`] sees it.
pub type EnrichFuture<'a> = Pin<Box<dyn Future<Output = Result<Enrichment, EnrichError>> + Send + 'a>>;

/// The [`Memo`]'s reads of the cluster snapshots its kept labels were computed from, as
/// [`Guard::check`] sees them.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Wraps every enricher call of a pipeline run, and the memo's reads before them: the
/// server bounds each by the scrape's deadline here. A guard that fails a call (a timeout)
/// only drops that enricher's labels.
pub trait Guard: Send + Sync {
    /// Runs `call`, the enrichment by `enricher`, or fails it.
    fn guard<'a>(&'a self, enricher: &'a dyn Enricher, call: EnrichFuture<'a>) -> EnrichFuture<'a>;

    /// Runs `check`, the [`Memo`]'s reads of the snapshots its kept labels were computed
    /// from (a [`Cluster`] read of each resource, which the server's caches answer at once),
    /// or ends before it does. The memo sees whether its reads ended: if not, no kept label
    /// is served, and every pod goes to the enrichers, each call through [`Guard::guard`].
    /// By default it runs as it is; a guard that bounds calls by a deadline should bound
    /// this by it too.
    fn check<'a>(&'a self, check: CheckFuture<'a>) -> CheckFuture<'a> {
        check
    }
}

/// Runs every call as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unguarded;

impl Guard for Unguarded {
    fn guard<'a>(&'a self, _enricher: &'a dyn Enricher, call: EnrichFuture<'a>) -> EnrichFuture<'a> {
        call
    }
}

/// An enricher that failed in this run: its labels are left out (or, when `partial`, those
/// it could not add), nothing else is lost.
#[derive(Debug)]
#[non_exhaustive]
pub struct Failure {
    /// The enricher's name.
    pub enricher: String,
    /// Why.
    pub error: EnrichError,
    /// Whether it returned labels all the same, some missing ([`Enrichment::incomplete`]):
    /// those it returned are kept. Or it failed only for the nodes, the memo serving every
    /// pod the labels it added before (their inputs unchanged).
    pub partial: bool,
}

/// What [`enrich`] returns.
#[derive(Debug)]
pub struct Enriched {
    /// Every pod's and node's labels, merged in enricher order.
    pub prepared: Prepared,
    /// The enrichers that failed, in order.
    pub failures: Vec<Failure>,
    /// How many pods the enrichers were run for (the rest came from the memo).
    pub enriched_pods: usize,
}

/// Enriches `scrape`: runs `enrichers` in order over `cluster`, each call through `guard`,
/// and merges their labels (the first enricher to add a name keeps it).
///
/// With a `memo`, and when every enricher declares [`Depends::Pod`], only the pods whose
/// own inputs changed since the memo last saw them are enriched; the others reuse their
/// kept labels. Otherwise the memo is not used. Either way the result is the same as
/// enriching every pod afresh.
pub async fn enrich(
    scrape: &Scrape<'_>,
    cluster: &dyn Cluster,
    enrichers: &[Arc<dyn Enricher>],
    memo: Option<&Memo>,
    guard: &dyn Guard,
) -> Enriched {
    let memo = memo.filter(|_| enrichers.iter().all(|e| e.depends() == Depends::Pod));
    let Some(memo) = memo else {
        let (enrichments, failures) = run(scrape, cluster, enrichers, guard).await;
        let refs: Vec<&Enrichment> = enrichments.iter().collect();
        return Enriched { prepared: prepare(scrape, &refs), failures, enriched_pods: scrape.pods.len() };
    };
    let round = memo.begin(scrape, cluster, enrichers, guard).await;
    let recording = round.cluster(cluster);
    let mut fresh = Prepared { pods: Vec::with_capacity(round.miss_count()), nodes: Vec::new() };
    let mut failures: Vec<Failure> = Vec::new();
    // Whether every enricher that failed failed for a read the cluster refused (its error,
    // or one it keeps as its source, is the refusal the round handed it): not a deadline, a
    // panic, its own error (a `ReadRefused` of its own too).
    let mut refused_only = true;
    // Every pod served the labels the memo kept, which every enricher added: the one batch
    // left holds only the nodes, and an enricher that fails it (past the deadline, say) loses
    // only its labels for them, and says it failed in part.
    let nodes_only = round.miss_count() == 0 && !scrape.pods.is_empty();
    for (k, batch) in round.batches(scrape, BATCH).enumerate() {
        let (enrichments, failed) = run(&batch, &recording, enrichers, guard).await;
        refused_only &= failed.iter().all(|f| Refusal::caused(&*f.error));
        for mut f in failed {
            f.partial |= nodes_only;
            merge(&mut failures, f);
        }
        let refs: Vec<&Enrichment> = enrichments.iter().collect();
        let prepared = prepare(&batch, &refs);
        fresh.pods.extend(prepared.pods);
        if k == 0 {
            fresh.nodes = prepared.nodes;
        }
    }
    // The kept labels served were computed with these: still so, as the memo checked.
    for f in round.kept_failures() {
        merge(&mut failures, f);
    }
    refused_only &= !recording.failed_for_now();
    failures.sort_by_key(|f| enrichers.iter().position(|e| e.name() == f.enricher));
    let enriched_pods = fresh.pods.len();
    let prepared = memo.finish(round, scrape, fresh, refused_only.then_some(&failures[..]));
    Enriched { prepared, failures, enriched_pods }
}

/// Adds `f` to `failures`, where its enricher may be already: a failure that lost all of
/// an enricher's labels is what to say, not one that lost some.
fn merge(failures: &mut Vec<Failure>, f: Failure) {
    match failures.iter_mut().find(|known| known.enricher == f.enricher) {
        Some(known) if known.partial && !f.partial => *known = f,
        Some(_) => {}
        None => failures.push(f),
    }
}

/// Warms every enricher up over `cluster` ([`Enricher::warm_up`]), all at once (one slow
/// to list holds up none of the others); returns those that failed, in order. A panic
/// fails its enricher alone, as in [`enrich`]. The server calls it as it starts, beside its
/// first scrape, and again for those that failed.
pub async fn warm_up(cluster: &dyn Cluster, enrichers: &[Arc<dyn Enricher>]) -> Vec<Failure> {
    let calls = enrichers.iter().map(|enricher| {
        let call: Pin<Box<dyn Future<Output = Option<Failure>> + Send + '_>> = Box::pin(async move {
            let result = match catch_call(|| enricher.warm_up(cluster)) {
                Ok(future) => CatchUnwind(future).await.unwrap_or_else(|p| Err(Box::new(p))),
                Err(p) => Err(Box::new(p) as EnrichError),
            };
            result.err().map(|error| Failure { enricher: enricher.name().to_owned(), error, partial: false })
        });
        Some(call)
    });
    let mut calls: Vec<_> = calls.collect();
    let mut failures: Vec<Option<Failure>> = std::iter::repeat_with(|| None).take(calls.len()).collect();
    // Each polled until it is done, in one task: the core spawns nothing.
    std::future::poll_fn(|cx| {
        for (call, failure) in calls.iter_mut().zip(&mut failures) {
            if let Some(Poll::Ready(done)) = call.as_mut().map(|c| c.as_mut().poll(cx)) {
                (*call, *failure) = (None, done);
            }
        }
        if calls.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    failures.into_iter().flatten().collect()
}

/// Runs each enricher once; keeps what succeeded, in order.
async fn run(
    scrape: &Scrape<'_>,
    cluster: &dyn Cluster,
    enrichers: &[Arc<dyn Enricher>],
    guard: &dyn Guard,
) -> (Vec<Enrichment>, Vec<Failure>) {
    let mut enrichments = Vec::with_capacity(enrichers.len());
    let mut failures = Vec::new();
    for enricher in enrichers {
        // A panic in the enricher fails its call alone, as an error would: in the call that
        // makes its future (a hand-written impl may work there) or in any poll of it.
        let call: EnrichFuture<'_> = Box::pin(async move {
            match catch_call(|| enricher.enrich(scrape, cluster)) {
                Ok(future) => CatchUnwind(future).await.unwrap_or_else(|p| Err(Box::new(p))),
                Err(p) => Err(Box::new(p) as EnrichError),
            }
        });
        let failed = |error, partial| Failure { enricher: enricher.name().to_owned(), error, partial };
        match guard.guard(enricher.as_ref(), call).await {
            Ok(mut e) => {
                if let Some(error) = e.take_incomplete() {
                    failures.push(failed(error, true));
                }
                enrichments.push(e);
            }
            Err(error) => failures.push(failed(error, false)),
        }
    }
    (enrichments, failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{async_trait, AddedLabel, LabelName, StaticCluster};

    /// Adds `n=<calls>` to every pod; fails when asked to.
    struct Counting {
        calls: std::sync::atomic::AtomicUsize,
        warmed: std::sync::atomic::AtomicUsize,
        fail: bool,
        depends: Depends,
    }

    #[async_trait]
    impl Enricher for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        fn depends(&self) -> Depends {
            self.depends
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail {
                return Err("broken".into());
            }
            let mut out = Enrichment::new(scrape);
            for i in 0..scrape.pods.len() {
                out.add_pod_label(i, LabelName::from_static("n"), n.to_string().into());
            }
            Ok(out)
        }
        async fn warm_up(&self, _cluster: &dyn Cluster) -> Result<(), EnrichError> {
            self.warmed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail {
                return Err("broken".into());
            }
            Ok(())
        }
    }

    fn counting(fail: bool, depends: Depends) -> Arc<dyn Enricher> {
        Arc::new(Counting { calls: Default::default(), warmed: Default::default(), fail, depends })
    }

    fn scrape_json() -> crate::list::PodMetricsList<'static> {
        serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"p","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1"}}]},
                         {"metadata":{"name":"q","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1"}}]}]}"#,
        )
        .expect("pods")
    }

    #[test]
    fn the_memo_is_used_only_when_every_enricher_allows_it() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let cluster = StaticCluster::default();
            let memo = Memo::default();
            for (depends, second_run) in [(Depends::Pod, 0), (Depends::Scrape, 2)] {
                let enrichers = [counting(false, depends)];
                let first = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
                assert_eq!(first.enriched_pods, 2);
                let again = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
                assert_eq!(again.enriched_pods, second_run, "{depends:?}");
                let label = again.prepared.pods[0].text();
                let want = if depends == Depends::Pod { "n=\"0\"" } else { "n=\"1\"" };
                assert_eq!(label, want, "{depends:?}: kept or fresh labels");
            }
        });
    }

    #[test]
    fn a_memo_serves_the_labels_of_the_enrichers_that_made_them_only() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let cluster = StaticCluster::default();
            let memo = Memo::default();
            let none: [Arc<dyn Enricher>; 0] = [];
            let (one, other) = ([counting(false, Depends::Pod)], [counting(false, Depends::Pod)]);
            // Which, how many pods enriched, the first pod's labels. The enricher runs once
            // for the nodes when no pod is to enrich: the last is `one`'s third call.
            let runs = [
                (&none[..], 2, ""),
                (&one, 2, "n=\"0\""),
                (&one, 0, "n=\"0\""),
                (&other, 2, "n=\"0\""),
                (&one, 2, "n=\"2\""),
            ];
            for (k, (enrichers, enriched, label)) in runs.into_iter().enumerate() {
                let out = enrich(&scrape, &cluster, enrichers, Some(&memo), &Unguarded).await;
                assert_eq!((out.enriched_pods, out.prepared.pods[0].text().as_str()), (enriched, label), "run {k}");
            }
        });
    }

    #[test]
    fn a_failed_enricher_costs_only_its_labels() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers = [counting(true, Depends::Pod), counting(false, Depends::Pod)];
            let memo = Memo::default();
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.failures.len(), 1);
            assert_eq!(out.failures[0].enricher, "counting");
            assert_eq!(out.prepared.pods.len(), 2);
            assert_eq!(out.prepared.pods[1].text(), "n=\"0\"");
            assert!(memo.is_empty(), "an incomplete run is not remembered");
        });
    }

    /// Labels the first pod, and says it could not label the others; with `whole_alone`, a
    /// call for one pod fails whole (a small last batch out of time).
    struct Partly {
        whole_alone: bool,
    }

    #[async_trait]
    impl Enricher for Partly {
        fn name(&self) -> &str {
            "partly"
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        fn depends(&self) -> Depends {
            Depends::Pod
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            if self.whole_alone && scrape.pods.len() == 1 {
                return Err("out of time".into());
            }
            let mut out = Enrichment::new(scrape);
            out.add_pod_label(0, LabelName::from_static("first"), "yes".into());
            out.incomplete("the second source is down");
            out.incomplete("said again");
            assert_eq!(out.incompleteness().map(ToString::to_string).as_deref(), Some("the second source is down"));
            Ok(out)
        }
    }

    /// `BATCH + 1` pods' metrics: two batches.
    fn two_batches() -> String {
        let names: Vec<String> = (0..=BATCH).map(|i| format!("p{i}")).collect();
        pod_list(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    #[test]
    fn an_incomplete_enrichment_keeps_its_labels_and_is_reported() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers: [Arc<dyn Enricher>; 2] =
                [Arc::new(Partly { whole_alone: false }), counting(false, Depends::Pod)];
            let memo = Memo::default();
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Unguarded).await;
            let failures: Vec<_> =
                out.failures.iter().map(|f| (f.enricher.as_str(), f.error.to_string(), f.partial)).collect();
            assert_eq!(failures, [("partly", "the second source is down".to_owned(), true)]);
            assert_eq!(out.prepared.pods[0].text(), "first=\"yes\",n=\"0\"");
            assert_eq!(out.prepared.pods[1].text(), "n=\"0\"");
            assert!(memo.is_empty(), "an incomplete run is not remembered: the missing labels are tried again");
        });
    }

    #[test]
    fn a_cold_memo_enriches_in_batches_and_reports_a_failure_once() {
        async_std::task::block_on(async {
            let json = two_batches();
            let pods: crate::list::PodMetricsList<'_> = serde_json::from_str(&json).expect("pods");
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers = [counting(true, Depends::Pod), counting(false, Depends::Pod)];
            let memo = Memo::default();
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.enriched_pods, BATCH + 1);
            assert_eq!(out.failures.len(), 1, "one failure per enricher, however many batches");
            let labelled = |call: &str| out.prepared.pods.iter().filter(|p| p.text() == call).count();
            assert_eq!((labelled("n=\"0\""), labelled("n=\"1\"")), (BATCH, 1), "two calls, every pod labelled");
            assert!(memo.is_empty(), "an incomplete run is not remembered");
        });
    }

    #[test]
    fn a_batch_that_fails_whole_is_reported_over_one_that_failed_in_part() {
        async_std::task::block_on(async {
            let json = two_batches();
            let pods: crate::list::PodMetricsList<'_> = serde_json::from_str(&json).expect("pods");
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Partly { whole_alone: true })];
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&Memo::default()), &Unguarded).await;
            let failures: Vec<_> = out.failures.iter().map(|f| (f.error.to_string(), f.partial)).collect();
            assert_eq!(failures, [("out of time".to_owned(), false)], "not the first batch's partial failure");
        });
    }

    /// Labels every pod `owners="read"` once it has read the ReplicaSets; when they can't
    /// be read, says so: in part (the other labels kept), or, when `whole`, failing. With
    /// `then`, fails with that error of its own after reading them. Like the built-in, it
    /// reads nothing for no pods.
    struct Owners {
        whole: bool,
        then: Option<&'static str>,
    }

    #[async_trait]
    impl Enricher for Owners {
        fn name(&self) -> &str {
            "owners"
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        fn depends(&self) -> Depends {
            Depends::Pod
        }
        async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            let mut out = Enrichment::new(scrape);
            if scrape.pods.is_empty() {
                return Ok(out);
            }
            let read = cluster.controllers(crate::ControllerKind::ReplicaSet).await;
            if let Some(own) = self.then {
                return Err(own.into());
            }
            match read {
                Ok(_) => (0..scrape.pods.len())
                    .for_each(|i| out.add_pod_label(i, LabelName::from_static("owners"), "read".into())),
                Err(e) if self.whole => return Err(e),
                Err(e) => out.incomplete(e),
            }
            Ok(out)
        }
    }

    /// What a [`Says`] cluster answers a read of `kind`'s controllers: an error, or none
    /// (the empty table).
    type Answer = Box<dyn Fn(crate::ControllerKind) -> Option<crate::SourceError> + Send + Sync>;

    /// A cluster of nothing (or, with `pods`, failing its pods for now), whose controllers'
    /// reads go as its answer says.
    struct Says {
        answer: Answer,
        pods: Option<&'static str>,
    }

    impl Says {
        fn controllers(
            answer: impl Fn(crate::ControllerKind) -> Option<crate::SourceError> + Send + Sync + 'static,
        ) -> Self {
            Says { answer: Box::new(answer), pods: None }
        }
    }

    #[async_trait]
    impl Cluster for Says {
        async fn pods(&self) -> Result<Arc<crate::Pods>, crate::SourceError> {
            match self.pods {
                Some(failed) => Err(failed.into()),
                None => StaticCluster::default().pods().await,
            }
        }
        async fn nodes(&self) -> Result<Arc<crate::Nodes>, crate::SourceError> {
            StaticCluster::default().nodes().await
        }
        async fn controllers(
            &self,
            kind: crate::ControllerKind,
        ) -> Result<Arc<crate::Controllers>, crate::SourceError> {
            match (self.answer)(kind) {
                Some(error) => Err(error),
                None => StaticCluster::default().controllers(kind).await,
            }
        }
    }

    /// The ReplicaSets refused, as a cache whose lists get a 403 says.
    fn forbidden() -> crate::SourceError {
        Box::new(crate::ReadRefused::new("replicasets: forbidden"))
    }

    /// A `PodMetricsList` of `names`, in namespace `n`.
    fn pod_list(names: &[&str]) -> String {
        let items: Vec<String> = names
            .iter()
            .map(|p| format!(r#"{{"metadata":{{"name":"{p}","namespace":"n"}},"containers":[{{"name":"c","usage":{{"cpu":"1m","memory":"1"}}}}]}}"#))
            .collect();
        format!(r#"{{"items":[{}]}}"#, items.join(","))
    }

    fn said(out: &Enriched) -> Vec<(String, String, bool)> {
        out.failures.iter().map(|f| (f.enricher.clone(), f.error.to_string(), f.partial)).collect()
    }

    #[test]
    fn a_run_refused_a_read_is_remembered_while_the_read_stays_refused() {
        async_std::task::block_on(async {
            let (two, three) = (pod_list(&["p", "q"]), pod_list(&["o", "p", "q"]));
            let two: crate::list::PodMetricsList<'_> = serde_json::from_str(&two).expect("pods");
            let three: crate::list::PodMetricsList<'_> = serde_json::from_str(&three).expect("pods");
            let nodes = Default::default();
            let (two, three) = (Scrape::new(&two, &nodes), Scrape::new(&three, &nodes));
            for whole in [false, true] {
                let refuse = Arc::new(std::sync::atomic::AtomicBool::new(true));
                let refusing = refuse.clone();
                let cluster =
                    Says::controllers(move |_| refusing.load(std::sync::atomic::Ordering::SeqCst).then(forbidden));
                let enrichers: [Arc<dyn Enricher>; 2] =
                    [Arc::new(Owners { whole, then: None }), counting(false, Depends::Pod)];
                let memo = Memo::default();
                let run = |scrape| enrich(scrape, &cluster, &enrichers, Some(&memo), &Unguarded);
                let want = [("owners".to_owned(), "replicasets: forbidden".to_owned(), !whole)];

                let first = run(&two).await;
                assert_eq!((first.enriched_pods, memo.len()), (2, 2), "whole: {whole}");
                assert_eq!(said(&first), want);
                let again = run(&two).await;
                assert_eq!(again.enriched_pods, 0, "kept while the read is refused (whole: {whole})");
                assert_eq!(said(&again), want, "and the failure said again");
                assert_eq!(again.prepared.pods, first.prepared.pods);
                let grown = run(&three).await;
                assert_eq!(grown.enriched_pods, 1, "a new pod alone");
                assert_eq!(said(&grown), want, "the failure said once");
                assert_eq!(grown.prepared.pods[0].text(), "n=\"2\"");

                refuse.store(false, std::sync::atomic::Ordering::SeqCst);
                let read = run(&three).await;
                assert_eq!(read.enriched_pods, 3, "the read succeeds: every pod again");
                assert!(read.failures.is_empty(), "{:?}", said(&read));
                assert!(read.prepared.pods.iter().all(|p| p.text().starts_with("owners=\"read\",")));
                assert_eq!(run(&three).await.enriched_pods, 0);
                assert_eq!(said(&run(&three).await), []);
            }
        });
    }

    #[test]
    fn a_run_sees_a_read_as_it_first_went_and_the_next_one_sees_it_come_back() {
        async_std::task::block_on(async {
            let (two, three) = (pod_list(&["p", "q"]), pod_list(&["o", "p", "q"]));
            let two: crate::list::PodMetricsList<'_> = serde_json::from_str(&two).expect("pods");
            let three: crate::list::PodMetricsList<'_> = serde_json::from_str(&three).expect("pods");
            let nodes = Default::default();
            let (two, three) = (Scrape::new(&two, &nodes), Scrape::new(&three, &nodes));
            // Refused as the first run enriches and as the second begins; readable from then
            // on. The second enriches its new pod as it kept p's and q's: without them (one
            // run, one view), and the third sees them come back.
            let refusals = std::sync::atomic::AtomicUsize::new(2);
            let left = |n: usize| n.checked_sub(1);
            let cluster = Says::controllers(move |_| {
                let ordering = std::sync::atomic::Ordering::SeqCst;
                refusals.fetch_update(ordering, ordering, left).is_ok().then(forbidden)
            });
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Owners { whole: false, then: None })];
            let memo = Memo::default();
            let run = |scrape| enrich(scrape, &cluster, &enrichers, Some(&memo), &Unguarded);
            assert_eq!(said(&run(&two).await).len(), 1);
            let second = run(&three).await;
            assert_eq!(second.enriched_pods, 1);
            assert!(second.prepared.pods.iter().all(|p| p.text().is_empty()));
            assert_eq!(said(&second).len(), 1);
            let third = run(&three).await;
            assert_eq!(third.enriched_pods, 3, "every pod again, now that the read succeeds");
            assert!(third.failures.is_empty(), "{:?}", said(&third));
            assert!(third.prepared.pods.iter().all(|p| p.text() == "owners=\"read\""));
        });
    }

    /// What an [`Acts`] enricher does.
    enum Act {
        /// Reads the pods, and fails as that read does.
        ReadPods,
        /// Reads the pods, then the nodes, and fails as either read does.
        ReadPodsAndNodes,
        /// Reads the ReplicaSets, then the Jobs, saying each that fails (an `Enrichment`
        /// keeps the first).
        ReadControllers,
        /// Fails with a `ReadRefused` of its own, reading nothing.
        RefuseOnItsOwn,
    }

    /// An enricher of that name that does that.
    struct Acts(&'static str, Act);

    #[async_trait]
    impl Enricher for Acts {
        fn name(&self) -> &str {
            self.0
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        fn depends(&self) -> Depends {
            Depends::Pod
        }
        async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            let mut out = Enrichment::new(scrape);
            match self.1 {
                Act::ReadPods => drop(cluster.pods().await?),
                Act::ReadPodsAndNodes => drop((cluster.pods().await?, cluster.nodes().await?)),
                Act::ReadControllers => {
                    for kind in [crate::ControllerKind::ReplicaSet, crate::ControllerKind::Job] {
                        if let Err(e) = cluster.controllers(kind).await {
                            out.incomplete(e);
                        }
                    }
                }
                Act::RefuseOnItsOwn => return Err(Box::new(crate::ReadRefused::new("its own API: 403"))),
            }
            Ok(out)
        }
    }

    #[test]
    fn a_failure_that_is_not_a_refused_read_is_not_remembered() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let cluster = Says::controllers(|_| Some(forbidden()));
            let refused = || -> Arc<dyn Enricher> { Arc::new(Owners { whole: false, then: None }) };
            type Case = (&'static str, Vec<Arc<dyn Enricher>>, &'static [&'static str]);
            let cases: [Case; 3] = [
                (
                    "one refused a read, another broken",
                    vec![refused(), counting(true, Depends::Pod)],
                    &["owners", "counting"],
                ),
                // Its own error (a deadline, say) after the read was refused.
                (
                    "refused, then its own error",
                    vec![Arc::new(Owners { whole: true, then: Some("out of time") })],
                    &["owners"],
                ),
                ("one that reads nothing, broken", vec![counting(true, Depends::Pod)], &["counting"]),
            ];
            for (case, enrichers, failed) in cases {
                let memo = Memo::default();
                for _ in 0..2 {
                    let out = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
                    assert_eq!(out.enriched_pods, 2, "{case}");
                    let names: Vec<_> = out.failures.iter().map(|f| f.enricher.as_str()).collect();
                    assert_eq!(names, failed, "{case}");
                    assert!(memo.is_empty(), "{case}: tried again at the next scrape");
                }
            }
            // A read that failed for now (not `ReadRefused`: a list still running) is no
            // refusal either.
            let memo = Memo::default();
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Acts("node", Act::ReadPods))];
            let unsynced = Says { answer: Box::new(|_| None), pods: Some("pods cache not synced: no answer yet") };
            let out = enrich(&scrape, &unsynced, &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.failures.len(), 1);
            assert!(memo.is_empty(), "a read that failed for now is tried again at the next scrape");

            // Nor when the enricher says only the refusal it met first: ReplicaSets refused,
            // Jobs still on their first list (an `Enrichment` keeps its first error).
            let memo = Memo::default();
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Acts("owner", Act::ReadControllers))];
            let refused_then_unsynced = Says::controllers(|kind| match kind {
                crate::ControllerKind::ReplicaSet => Some(forbidden()),
                crate::ControllerKind::Job => Some("jobs cache not synced: no answer yet".into()),
            });
            let out = enrich(&scrape, &refused_then_unsynced, &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(said(&out), [("owner".to_owned(), "replicasets: forbidden".to_owned(), true)]);
            assert!(memo.is_empty(), "the Jobs are asked for again at the next scrape");

            // Nor an enricher's own `ReadRefused`: no read of the cluster's to ask again.
            let memo = Memo::default();
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Acts("own", Act::RefuseOnItsOwn))];
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.failures.len(), 1);
            assert!(memo.is_empty(), "its source is asked again at the next scrape");
            // Even beside a read the cluster refused.
            let memo = Memo::default();
            let enrichers: [Arc<dyn Enricher>; 2] =
                [Arc::new(Owners { whole: false, then: None }), Arc::new(Acts("own", Act::RefuseOnItsOwn))];
            let out =
                enrich(&scrape, &Says::controllers(|_| Some(forbidden())), &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.failures.len(), 2);
            assert!(memo.is_empty(), "its source is asked again at the next scrape, beside a refusal too");
        });
    }

    /// Panics as it warms up.
    struct PanicsWarmingUp;

    #[async_trait]
    impl Enricher for PanicsWarmingUp {
        fn name(&self) -> &str {
            "panics"
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            Ok(Enrichment::new(scrape))
        }
        async fn warm_up(&self, _cluster: &dyn Cluster) -> Result<(), EnrichError> {
            panic!("no cluster for {}", "team")
        }
    }

    #[test]
    fn a_warm_up_that_fails_or_panics_costs_only_its_own() {
        let last = Arc::new(Counting {
            calls: Default::default(),
            warmed: Default::default(),
            fail: false,
            depends: Depends::Pod,
        });
        let enrichers: [Arc<dyn Enricher>; 3] = [counting(true, Depends::Pod), Arc::new(PanicsWarmingUp), last.clone()];
        let failures = async_std::task::block_on(warm_up(&StaticCluster::default(), &enrichers));
        let failures: Vec<(String, String)> = failures.into_iter().map(|f| (f.enricher, f.error.to_string())).collect();
        assert_eq!(
            failures,
            [
                ("counting".to_owned(), "broken".to_owned()),
                ("panics".to_owned(), "panicked: no cluster for team".to_owned())
            ]
        );
        assert_eq!(last.warmed.load(std::sync::atomic::Ordering::SeqCst), 1, "the one after them warmed up");
        assert_eq!(last.calls.load(std::sync::atomic::Ordering::SeqCst), 0, "and was not asked to enrich");
    }

    /// Warms up by sending on, or (`waits`) waiting for, a channel.
    struct Handshake {
        send: async_std::channel::Sender<()>,
        receive: async_std::channel::Receiver<()>,
        waits: bool,
    }

    #[async_trait]
    impl Enricher for Handshake {
        fn name(&self) -> &str {
            "handshake"
        }
        fn labels(&self) -> Vec<AddedLabel> {
            Vec::new()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            Ok(Enrichment::new(scrape))
        }
        async fn warm_up(&self, _cluster: &dyn Cluster) -> Result<(), EnrichError> {
            if self.waits {
                self.receive.recv().await.map_err(|e| e.to_string().into())
            } else {
                self.send.send(()).await.map_err(|e| e.to_string().into())
            }
        }
    }

    #[test]
    fn warm_ups_run_at_once() {
        let (tx, rx) = async_std::channel::bounded(1);
        // The first waits for the second: one after the other, it never would be done.
        let enrichers: [Arc<dyn Enricher>; 2] = [
            Arc::new(Handshake { send: tx.clone(), receive: rx.clone(), waits: true }),
            Arc::new(Handshake { send: tx, receive: rx, waits: false }),
        ];
        let cluster = StaticCluster::default();
        let warming = warm_up(&cluster, &enrichers);
        let failures =
            async_std::task::block_on(async_std::future::timeout(std::time::Duration::from_secs(10), warming));
        assert!(failures.expect("done").is_empty());
    }

    /// Fails every call, as a deadline would.
    struct Expired;

    impl Guard for Expired {
        fn guard<'a>(&'a self, _: &'a dyn Enricher, _: EnrichFuture<'a>) -> EnrichFuture<'a> {
            Box::pin(async { Err("out of time".into()) })
        }
    }

    #[test]
    fn a_failure_for_the_nodes_alone_is_said_to_be_partial() {
        async_std::task::block_on(async {
            let json = pod_list(&["p", "q"]);
            let pods: crate::list::PodMetricsList<'_> = serde_json::from_str(&json).expect("pods");
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers = [counting(false, Depends::Pod)];
            let memo = Memo::default();
            let cold = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Expired).await;
            assert_eq!(said(&cold), [("counting".to_owned(), "out of time".to_owned(), false)], "nothing kept yet");
            enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Unguarded).await;

            // Past a deadline, every pod kept: only the nodes' batch is cut short.
            let warm = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Expired).await;
            assert_eq!(said(&warm), [("counting".to_owned(), "out of time".to_owned(), true)]);
            assert!(warm.prepared.pods.iter().all(|p| p.text() == "n=\"0\""), "{:?}", warm.prepared.pods);

            // A new pod must be enriched: its batch fails whole, as any batch that fails whole
            // is said to (the others' kept labels are served all the same).
            let json = pod_list(&["p", "q", "r"]);
            let grown: crate::list::PodMetricsList<'_> = serde_json::from_str(&json).expect("pods");
            let scrape = Scrape::new(&grown, &nodes);
            let new_pod = enrich(&scrape, &StaticCluster::default(), &enrichers, Some(&memo), &Expired).await;
            assert_eq!(said(&new_pod), [("counting".to_owned(), "out of time".to_owned(), false)]);
            let texts: Vec<String> = new_pod.prepared.pods.iter().map(|p| p.text()).collect();
            assert_eq!(texts, ["n=\"0\"", "n=\"0\"", ""]);
        });
    }

    #[test]
    fn the_guard_sees_every_call() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers = [counting(false, Depends::Scrape)];
            let out = enrich(&scrape, &StaticCluster::default(), &enrichers, None, &Expired).await;
            assert_eq!(out.failures.len(), 1);
            assert!(out.prepared.pods.iter().all(|p| p.is_empty()));
        });
    }

    /// Bounds the memo's check and every call by a timeout, as the server's deadline does.
    struct Within(std::time::Duration);

    impl Guard for Within {
        fn guard<'a>(&'a self, _: &'a dyn Enricher, call: EnrichFuture<'a>) -> EnrichFuture<'a> {
            Box::pin(async move {
                async_std::future::timeout(self.0, call).await.unwrap_or_else(|_| Err("out of time".into()))
            })
        }
        fn check<'a>(&'a self, check: CheckFuture<'a>) -> CheckFuture<'a> {
            Box::pin(async move { async_std::future::timeout(self.0, check).await.unwrap_or(()) })
        }
    }

    /// A cluster of nothing whose nodes' read never answers, or panics, while it says so.
    #[derive(Default)]
    struct Nodes {
        hang: std::sync::atomic::AtomicBool,
        panic: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Cluster for Nodes {
        async fn pods(&self) -> Result<Arc<crate::Pods>, crate::SourceError> {
            StaticCluster::default().pods().await
        }
        async fn nodes(&self) -> Result<Arc<crate::Nodes>, crate::SourceError> {
            if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            assert!(!self.panic.load(std::sync::atomic::Ordering::SeqCst), "a broken cluster");
            StaticCluster::default().nodes().await
        }
        async fn controllers(
            &self,
            kind: crate::ControllerKind,
        ) -> Result<Arc<crate::Controllers>, crate::SourceError> {
            StaticCluster::default().controllers(kind).await
        }
    }

    #[test]
    fn the_guard_bounds_the_memos_reads_too() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers: [Arc<dyn Enricher>; 1] = [Arc::new(Acts("node", Act::ReadPodsAndNodes))];
            let cluster = Nodes::default();
            let memo = Memo::default();
            let first = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!((first.enriched_pods, memo.len()), (2, 2));

            // The memo's read of the nodes, to check what it kept, never answers: the guard
            // cuts it short, after the pods were read, and the pods are enriched again (each
            // call cut short too), not judged on the pods alone.
            cluster.hang.store(true, std::sync::atomic::Ordering::SeqCst);
            let guard = Within(std::time::Duration::from_millis(100));
            let run = enrich(&scrape, &cluster, &enrichers, Some(&memo), &guard);
            // (Not a bound on its time: without the check's guard, the run never ends.)
            let stalled = async_std::future::timeout(std::time::Duration::from_secs(60), run).await;
            let stalled = stalled.expect("the run ends at the guard's timeout");
            assert_eq!(stalled.enriched_pods, 2, "no kept labels are served unchecked");
            assert_eq!(said(&stalled), [("node".to_owned(), "out of time".to_owned(), false)]);

            // What the memo kept is intact: once the read answers, it is served again.
            cluster.hang.store(false, std::sync::atomic::Ordering::SeqCst);
            let after = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!((after.enriched_pods, memo.len()), (0, 2));
        });
    }

    #[test]
    fn a_cluster_that_panics_as_the_memo_reads_it_fails_its_enrichers_alone() {
        async_std::task::block_on(async {
            let pods = scrape_json();
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let enrichers: [Arc<dyn Enricher>; 2] =
                [Arc::new(Acts("node", Act::ReadPodsAndNodes)), counting(false, Depends::Pod)];
            let cluster = Nodes::default();
            let memo = Memo::default();
            assert_eq!(enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await.enriched_pods, 2);

            // The memo's read of the nodes panics: the pods go to the enrichers, and the one
            // that reads the nodes fails alone.
            cluster.panic.store(true, std::sync::atomic::Ordering::SeqCst);
            let out = enrich(&scrape, &cluster, &enrichers, Some(&memo), &Unguarded).await;
            assert_eq!(out.enriched_pods, 2, "no kept labels are served unchecked");
            assert_eq!(said(&out), [("node".to_owned(), "panicked: a broken cluster".to_owned(), false)]);
            assert!(out.prepared.pods.iter().all(|p| p.text() == "n=\"1\""), "the other enricher's labels");
        });
    }
}
