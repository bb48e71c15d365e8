//! Enrichment kept across scrapes: a pod's merged, escaped labels are reused until one of
//! its own inputs changes.
//!
//! Usage values change every scrape; a pod's labels rarely do. When every configured
//! enricher declares [`Depends::Pod`](crate::Depends::Pod), a [`Memo`] keeps each pod's
//! [`PodLabels`] with what they were computed from, and a scrape enriches only the pods
//! whose inputs changed (new pods, relabelled pods, pods whose controller was adopted...).
//!
//! What a pod's labels were computed from is known exactly: the memo hands enrichers a
//! [`Cluster`] that records which snapshots they read. On the next scrape it takes fresh
//! snapshots of those same resources; where a snapshot is the very same `Arc`, nothing in
//! it changed; where it is not, each pod's own entries (its pod, its node, its controller)
//! are compared by value. Node labels are always recomputed (nodes are few).
//!
//! A round sees the cluster one way: the first answer to each read is the answer to every
//! later one of the round (the enrichers', every batch's), a snapshot or an error. The reads
//! that check the kept labels go through the run's [`Guard`] ([`Guard::check`]): cut short,
//! no kept labels are served, and every pod goes to the enrichers.
//!
//! A round whose enrichers did not all succeed is served, and remembered only when each
//! enricher failed for a read the cluster refused ([`ReadRefused`], kept as its error or
//! its error's source: a 403 on ReplicaSets, say): its entries and its failures are then
//! kept while those reads stay refused and the other inputs do not change. Each scrape
//! reads them again (a refused read answers at once); the kept failures are reported
//! again, with the text they had, while kept labels are served; the first read that
//! succeeds sends every pod back to its enrichers. (A cluster whose owners can't be read
//! would otherwise enrich every pod at every scrape: some 300-450 ms of CPU more at
//! 150,000 pods.) Any other failure (a read that failed for now, a deadline, a panic, an
//! enricher's own error) is served, not remembered. Two rounds that overlap never mix:
//! only a round that started on the memo's current state may replace it.
//!
//! [`enrich`](crate::enrich) drives it; embedders only create one and pass it in:
//!
//! ```
//! # async_std::task::block_on(async {
//! use msp_core::{enrich, Memo, Scrape, StaticCluster, Unguarded};
//!
//! let pods = r#"{"items":[{"metadata":{"name":"p","namespace":"n"},
//!     "containers":[{"name":"c","usage":{"cpu":"7m","memory":"1Ki"}}]}]}"#;
//! let pods = serde_json::from_str(pods).unwrap();
//! let nodes = Default::default();
//! let scrape = Scrape::new(&pods, &nodes);
//! let memo = Memo::default();
//! let enriched = enrich(&scrape, &StaticCluster::default(), &[], Some(&memo), &Unguarded).await;
//! assert_eq!((enriched.enriched_pods, memo.len()), (1, 1));
//! let again = enrich(&scrape, &StaticCluster::default(), &[], Some(&memo), &Unguarded).await;
//! assert_eq!(again.enriched_pods, 0, "nothing changed: the kept labels are served");
//! # });
//! ```

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::cluster::{Cluster, ControllerKind, Controllers, Nodes, Pods, SourceError, Text};
use crate::digest::{Digest, Digester};
use crate::enricher::{EnrichError, Enricher};
use crate::labels::JsonLabels;
use crate::pipeline::{Failure, Guard};
use crate::refused::ReadRefused;
use crate::render::{PodLabels, Prepared};
use crate::scrape::{PodSample, Scrape};
use crate::unwind::CatchUnwind;

/// The snapshots enrichers read, by resource, and the reads that were refused.
#[derive(Debug, Clone, Default)]
struct Snapshots {
    pods: Option<Arc<Pods>>,
    nodes: Option<Arc<Nodes>>,
    /// Indexed by [`kind_index`].
    controllers: [Option<Arc<Controllers>>; 2],
    refused: ReadErrors,
}

/// Reads that failed, by resource as [`Snapshots`] lays them out, with their errors' text.
#[derive(Debug, Clone, Default)]
struct ReadErrors {
    pods: Option<Text>,
    nodes: Option<Text>,
    controllers: [Option<Text>; 2],
}

/// A read refused, as a round hands it to its enrichers (the cluster's [`ReadRefused`],
/// first met in `begin` or in the round): only a failure it caused is one the memo may keep,
/// not an enricher's own `ReadRefused`, which the memo cannot ask again.
#[derive(Debug)]
pub(crate) struct Refusal(Text);

impl Refusal {
    /// Whether `error`, or an error it was caused by, is one.
    pub(crate) fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        std::iter::successors(Some(error), |&e| e.source()).any(|e| e.is::<Refusal>())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// A failure the kept entries were computed with, reported again while they are served.
#[derive(Debug, Clone)]
struct KeptFailure {
    enricher: String,
    /// Its error's text.
    error: Arc<str>,
    partial: bool,
}

impl KeptFailure {
    fn new(f: &Failure) -> Self {
        KeptFailure { enricher: f.enricher.clone(), error: f.error.to_string().into(), partial: f.partial }
    }

    fn failure(&self) -> Failure {
        let error: EnrichError = self.error.to_string().into();
        Failure { enricher: self.enricher.clone(), error, partial: self.partial }
    }
}

const KINDS: [ControllerKind; 2] = [ControllerKind::ReplicaSet, ControllerKind::Job];

fn kind_index(kind: ControllerKind) -> usize {
    match kind {
        ControllerKind::ReplicaSet => 0,
        ControllerKind::Job => 1,
    }
}

fn same<T>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl Snapshots {
    /// Whether the inputs of pod `namespace/name` are equal in `self` and `fresh`. Only
    /// resources `self` holds are inputs; `fresh` holds at least those.
    fn unchanged(&self, fresh: &Snapshots, namespace: &str, name: &str) -> bool {
        let (Some(old_pods), Some(new_pods)) = (&self.pods, &fresh.pods) else {
            // Pods never read: a pod's node and controller are unknown to its enrichers.
            return self.pods.is_none();
        };
        let pod = match Arc::ptr_eq(old_pods, new_pods) {
            true => new_pods.get(namespace, name),
            false => match new_pods.get_same_at(old_pods, namespace, name) {
                (pod, true) => pod,
                (_, false) => return false,
            },
        };
        let Some(pod) = pod else { return true };
        if let (Some(node), Some(old), Some(new)) = (&pod.node_name, &self.nodes, &fresh.nodes) {
            if !Arc::ptr_eq(old, new) && old.get(node) != new.get(node) {
                return false;
            }
        }
        if let Some(controller) = &pod.controller {
            if let Some(kind) = ControllerKind::from_kind(&controller.kind) {
                let i = kind_index(kind);
                if let (Some(old), Some(new)) = (&self.controllers[i], &fresh.controllers[i]) {
                    if !Arc::ptr_eq(old, new) && !new.same_at(old, namespace, &controller.name) {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// `self`, plus what `other` has that `self` lacks; a read refused in either and
    /// made in neither stays refused.
    fn union(mut self, other: Snapshots) -> Snapshots {
        self.pods = self.pods.or(other.pods);
        self.nodes = self.nodes.or(other.nodes);
        for (mine, theirs) in self.controllers.iter_mut().zip(other.controllers) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
        let (a, b) = (std::mem::take(&mut self.refused), other.refused);
        let [a0, a1] = a.controllers;
        let [b0, b1] = b.controllers;
        self.refused = ReadErrors {
            pods: a.pods.or(b.pods).filter(|_| self.pods.is_none()),
            nodes: a.nodes.or(b.nodes).filter(|_| self.nodes.is_none()),
            controllers: [
                a0.or(b0).filter(|_| self.controllers[0].is_none()),
                a1.or(b1).filter(|_| self.controllers[1].is_none()),
            ],
        };
        self
    }
}

/// PodMetrics' own labels, as remembered: a digest of their JSON text, not the text (see
/// [`crate::digest`]: a copy of each label set held some 20 MiB at 150,000 pods with 2 a
/// ReplicaSet). Text that differs, even only in its spacing, is a change: the pod is
/// enriched again, which costs time, never a wrong label.
#[derive(Clone, Copy, PartialEq, Eq)]
struct MetricLabels(Option<Digest>);

/// Whether there are any, not their digest (pairs of text and digest are where finding the
/// keys would start).
impl std::fmt::Debug for MetricLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "MetricLabels(Some(..))" } else { "MetricLabels(None)" })
    }
}

impl MetricLabels {
    fn new(labels: Option<&JsonLabels<'_>>, digester: &Digester) -> Self {
        MetricLabels(labels.map(|labels| digester.digest(labels.as_json().as_bytes())))
    }

    fn matches(&self, labels: Option<&JsonLabels<'_>>, digester: &Digester) -> bool {
        *self == MetricLabels::new(labels, digester)
    }
}

/// One pod's kept enrichment.
#[derive(Debug)]
struct Entry {
    /// Shared by the entries of one namespace.
    namespace: Text,
    /// The pod cache's own copy, where the round that made the entry read the pods (at
    /// 150,000 pods, a copy of every name held some 7 MiB); else, and for a pod the cache
    /// has let go of since, a copy of its own.
    name: Text,
    metric_labels: MetricLabels,
    labels: Arc<PodLabels>,
}

impl Entry {
    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Sorted by `(namespace, name)`, each once: a scrape's pods come in that order, so
    /// its lookups walk the entries in sequence (at 150,000 pods, hashing every pod's key
    /// twice and landing anywhere in memory cost far more).
    entries: Vec<Entry>,
    /// What every entry was computed from.
    base: Snapshots,
    /// What failed as they were: the enrichers refused the reads in `base.refused`.
    failures: Vec<KeptFailure>,
    /// The enrichers that computed them.
    enrichers: Enrichers,
    /// Bumped whenever the state is replaced.
    epoch: u64,
}

/// The enrichers of a round, held (so that no other takes the place of one freed) to be
/// compared by identity: entries computed by others (another list, or one configured
/// otherwise) are not served.
#[derive(Clone, Default)]
struct Enrichers(Vec<Arc<dyn Enricher>>);

impl Enrichers {
    fn same(&self, other: &[Arc<dyn Enricher>]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl std::fmt::Debug for Enrichers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|e| e.name())).finish()
    }
}

impl State {
    /// The index of the entry of `namespace/name`, tried first at `hint` (where the one
    /// after the last found is, in a scrape's sorted walk).
    fn find(&self, namespace: &str, name: &str, hint: usize) -> Option<usize> {
        let key = (namespace, name);
        if self.entries.get(hint).is_some_and(|e| e.key() == key) {
            return Some(hint);
        }
        self.entries.binary_search_by(|e| e.key().cmp(&key)).ok()
    }
}

/// Each pod's enrichment, kept across scrapes while its inputs do not change. When every
/// configured enricher declares [`Depends::Pod`](crate::Depends::Pod), [`enrich`](crate::enrich)
/// enriches only the pods whose own inputs changed and serves the kept labels for the rest;
/// embedders only create one (`Memo::default()`) and pass it in. It keeps the labels of one
/// list of enrichers, the same `Arc`s: called with others, it enriches every pod afresh and
/// keeps theirs.
#[derive(Debug, Default)]
pub struct Memo {
    state: Mutex<State>,
    /// Digests the pods' PodMetrics labels, with keys of this memo's own.
    digester: Digester,
}

/// One scrape's use of a [`Memo`]: which pods it already knows, and the snapshots it
/// checked them against.
#[derive(Debug)]
pub(crate) struct Round {
    epoch: u64,
    fresh: Snapshots,
    /// Per pod of the scrape: its entry's index and kept labels, or `None` to enrich.
    hits: Vec<Option<(usize, Arc<PodLabels>)>>,
    misses: Vec<usize>,
    read: Arc<Mutex<Snapshots>>,
    /// The failures the hits were computed with.
    kept_failures: Vec<KeptFailure>,
    enrichers: Enrichers,
}

impl Round {
    /// The scrapes to give enrichers, in order: the pods to enrich, at most `size` in each,
    /// and every node in the first. There is always a first, if only for the nodes.
    pub(crate) fn batches<'s, 'a>(
        &'s self,
        scrape: &'s Scrape<'a>,
        size: usize,
    ) -> impl Iterator<Item = Cow<'s, Scrape<'a>>> + 's {
        let size = size.max(1);
        (0..self.misses.len().div_ceil(size).max(1)).map(move |k| {
            let rest = self.misses.get(k * size..).unwrap_or_default();
            let batch = &rest[..rest.len().min(size)];
            if k == 0 && batch.len() == scrape.pods.len() {
                return Cow::Borrowed(scrape);
            }
            // The batch's pods, each with its containers, laid out afresh.
            let mut containers = Vec::new();
            let pods = batch
                .iter()
                .filter_map(|&i| scrape.pods.get(i))
                .map(|p| {
                    let start = containers.len();
                    containers.extend_from_slice(scrape.containers_of(p));
                    let mut pod = p.clone();
                    pod.containers = start..containers.len();
                    pod
                })
                .collect::<Vec<PodSample<'a>>>();
            Cow::Owned(Scrape {
                pods,
                containers,
                nodes: if k == 0 { scrape.nodes.clone() } else { Vec::new() },
                errors: Vec::new(),
            })
        })
    }

    /// How many pods must be enriched this round.
    pub(crate) fn miss_count(&self) -> usize {
        self.misses.len()
    }

    /// The failures the kept labels served this round were computed with: reads still
    /// refused, to be reported again.
    pub(crate) fn kept_failures(&self) -> impl Iterator<Item = Failure> + '_ {
        self.kept_failures.iter().map(KeptFailure::failure)
    }

    /// The cluster to give enrichers: `cluster`, as this round sees it (see [`Recording`]).
    pub(crate) fn cluster<'c>(&self, cluster: &'c dyn Cluster) -> Recording<'c> {
        Recording { inner: cluster, read: self.read.clone(), failed: Mutex::default() }
    }
}

/// A [`Cluster`] as one round sees it: the snapshots `begin` checked and the reads it found
/// refused, then the first answer to each other read, given again to every later call of
/// the round (so no pod is enriched with a snapshot, or without one, that another pod of
/// the round was not), all recorded.
pub(crate) struct Recording<'c> {
    inner: &'c dyn Cluster,
    read: Arc<Mutex<Snapshots>>,
    /// Reads that failed for now (not [`ReadRefused`]).
    failed: Mutex<ReadErrors>,
}

impl Recording<'_> {
    /// The round's answer to a read, given before; else its answer now, from `inner`,
    /// kept. `slot` and `error` find the resource's place in a [`Snapshots`] and a
    /// [`ReadErrors`].
    async fn answer<T: Send + Sync + 'static>(
        &self,
        read: impl std::future::Future<Output = Result<Arc<T>, SourceError>>,
        slot: impl Fn(&mut Snapshots) -> &mut Option<Arc<T>>,
        error: impl Fn(&mut ReadErrors) -> &mut Option<Text>,
    ) -> Result<Arc<T>, SourceError> {
        if let Some(given) = self.given(&mut self.view(), &slot, &error) {
            return given;
        }
        let answer = read.await;
        // A call beside this one may have kept its answer meanwhile: the first is the round's
        // (looked for and kept under one lock).
        let mut view = self.view();
        if let Some(given) = self.given(&mut view, &slot, &error) {
            return given;
        }
        match answer {
            Ok(snapshot) => {
                *slot(&mut view) = Some(snapshot.clone());
                Ok(snapshot)
            }
            Err(e) if ReadRefused::caused(&*e) => {
                let text: Text = e.to_string().into();
                *error(&mut view.refused) = Some(text.clone());
                Err(Box::new(Refusal(text)))
            }
            Err(e) => {
                *error(&mut self.failed.lock().unwrap_or_else(|p| p.into_inner())) = Some(e.to_string().into());
                Err(e)
            }
        }
    }

    /// Whether a read failed for now in this round (not refused): what was enriched without
    /// it is not to be kept, whatever the enrichers said (one may keep only its first error).
    pub(crate) fn failed_for_now(&self) -> bool {
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        failed.pods.is_some() || failed.nodes.is_some() || failed.controllers.iter().any(Option::is_some)
    }

    fn view(&self) -> std::sync::MutexGuard<'_, Snapshots> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The round's answer in `view` (this round's, locked), if there is one yet.
    fn given<T>(
        &self,
        view: &mut Snapshots,
        slot: &impl Fn(&mut Snapshots) -> &mut Option<Arc<T>>,
        error: &impl Fn(&mut ReadErrors) -> &mut Option<Text>,
    ) -> Option<Result<Arc<T>, SourceError>> {
        if let Some(snapshot) = slot(view) {
            return Some(Ok(snapshot.clone()));
        }
        if let Some(refused) = error(&mut view.refused) {
            return Some(Err(Box::new(Refusal(refused.clone()))));
        }
        let failed = error(&mut self.failed.lock().unwrap_or_else(|p| p.into_inner())).clone();
        failed.map(|e| Err(e.to_string().into()))
    }
}

#[async_trait]
impl Cluster for Recording<'_> {
    async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
        self.answer(self.inner.pods(), |s| &mut s.pods, |r| &mut r.pods).await
    }

    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
        self.answer(self.inner.nodes(), |s| &mut s.nodes, |r| &mut r.nodes).await
    }

    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
        let i = kind_index(kind);
        self.answer(self.inner.controllers(kind), |s| &mut s.controllers[i], |r| &mut r.controllers[i]).await
    }
}

impl Memo {
    /// Starts a round for `scrape`: takes fresh snapshots of what the kept labels were
    /// computed from and finds the pods whose inputs did not change. A snapshot that
    /// cannot be read makes every pod a miss (its enrichers then report the error), and so
    /// does a read refused before that now succeeds (the labels it gives are added), and so
    /// do reads that `guard` cuts short ([`Guard::check`]).
    pub(crate) async fn begin(
        &self,
        scrape: &Scrape<'_>,
        cluster: &dyn Cluster,
        enrichers: &[Arc<dyn Enricher>],
        guard: &dyn Guard,
    ) -> Round {
        let (epoch, base, same_enrichers) = {
            let state = self.lock();
            (state.epoch, state.base.clone(), state.enrichers.same(enrichers))
        };
        let mut fresh = Snapshots::default();
        let mut readable = true;
        // Read again what was read, and what was refused: each must go as it went (a read
        // refused answers at once, as `ReadRefused` promises). A refusal is kept for the
        // round; another failure is the enrichers' to meet again.
        fn again<T>(
            readable: &mut bool,
            was_read: bool,
            answer: Result<Arc<T>, SourceError>,
            refused: &mut Option<Text>,
        ) -> Option<Arc<T>> {
            *readable &= answer.is_ok() == was_read;
            match answer {
                Ok(snapshot) => Some(snapshot),
                Err(e) => {
                    *readable &= ReadRefused::caused(&*e);
                    *refused = ReadRefused::caused(&*e).then(|| e.to_string().into());
                    None
                }
            }
        }
        let mut ended = false;
        let reads = async {
            if base.pods.is_some() || base.refused.pods.is_some() {
                fresh.pods = again(&mut readable, base.pods.is_some(), cluster.pods().await, &mut fresh.refused.pods);
            }
            if base.nodes.is_some() || base.refused.nodes.is_some() {
                let answer = cluster.nodes().await;
                fresh.nodes = again(&mut readable, base.nodes.is_some(), answer, &mut fresh.refused.nodes);
            }
            for kind in KINDS {
                let i = kind_index(kind);
                if base.controllers[i].is_some() || base.refused.controllers[i].is_some() {
                    let answer = cluster.controllers(kind).await;
                    let refused = &mut fresh.refused.controllers[i];
                    fresh.controllers[i] = again(&mut readable, base.controllers[i].is_some(), answer, refused);
                }
            }
            ended = true;
        };
        // A `Cluster` that panics fails the check alone: its enrichers meet it again, and
        // fail alone too.
        let reads = CatchUnwind(Box::pin(reads));
        guard
            .check(Box::pin(async move {
                let _panicked = reads.await;
            }))
            .await;
        if !ended {
            // Cut short: what was read is not all the kept labels were computed from (a pod
            // whose node was not read would pass as unchanged). Its enrichers read afresh.
            (fresh, readable) = (Snapshots::default(), false);
        }
        let state = self.lock();
        let usable = readable && same_enrichers && state.epoch == epoch;
        let unchanged_all = same(&base.pods, &fresh.pods)
            && same(&base.nodes, &fresh.nodes)
            && base.controllers.iter().zip(&fresh.controllers).all(|(a, b)| same(a, b));
        let mut hits = Vec::with_capacity(scrape.pods.len());
        let mut misses = Vec::new();
        let mut next = 0;
        for (i, pod) in scrape.pods.iter().enumerate() {
            let found = state.find(pod.namespace, pod.name, next);
            if let Some(k) = found {
                next = k + 1;
            }
            let kept = found.filter(|&k| {
                let e = &state.entries[k];
                usable
                    && e.metric_labels.matches(pod.labels.as_ref(), &self.digester)
                    && (unchanged_all || base.unchanged(&fresh, pod.namespace, pod.name))
            });
            match kept {
                Some(k) => hits.push(Some((k, state.entries[k].labels.clone()))),
                None => {
                    hits.push(None);
                    misses.push(i);
                }
            }
        }
        // Said again while kept labels are served: which pods a failure cost is the
        // enricher's to know (one that fails whole cost every pod of its call).
        let kept_failures = if hits.iter().any(Option::is_some) { state.failures.clone() } else { Vec::new() };
        let enrichers = Enrichers(enrichers.to_vec());
        let read = Arc::new(Mutex::new(fresh.clone()));
        Round { epoch, fresh, hits, misses, read, kept_failures, enrichers }
    }

    /// Ends `round`: puts `fresh`, the merged labels of its misses (in order, as its
    /// [`Round::batches`] gave them) with the kept labels, and remembers them with
    /// `failed`, the failures reported, unless that is `None` (a failure that was not
    /// a refused read).
    pub(crate) fn finish(
        &self,
        round: Round,
        scrape: &Scrape<'_>,
        fresh: Prepared,
        failed: Option<&[Failure]>,
    ) -> Prepared {
        let mut missed = fresh.pods.into_iter();
        let mut kept_at = Vec::with_capacity(round.hits.len());
        let pods: Vec<Arc<PodLabels>> = round
            .hits
            .into_iter()
            .map(|hit| {
                kept_at.push(hit.as_ref().map(|(k, _)| *k));
                hit.map_or_else(|| missed.next().unwrap_or_default(), |(_, labels)| labels)
            })
            .collect();
        let prepared = Prepared { pods, nodes: fresh.nodes };
        let Some(failed) = failed else {
            return prepared;
        };
        let mut state = self.lock();
        if state.epoch != round.epoch {
            // Another round replaced the state meanwhile: what we computed may be from
            // other snapshots than its entries. Serve it, keep theirs.
            return prepared;
        }
        let read = std::mem::take(&mut *round.read.lock().unwrap_or_else(|p| p.into_inner()));
        state.base = round.fresh.union(read);
        state.failures = failed.iter().map(KeptFailure::new).collect();
        state.enrichers = round.enrichers;
        state.epoch += 1;
        let same_pods =
            state.entries.len() == scrape.pods.len() && kept_at.iter().enumerate().all(|(i, k)| *k == Some(i));
        if same_pods {
            // Every entry served, in order, and no other: the usual steady state.
            return prepared;
        }
        // The same pods, in order, some of them enriched again (a new IP, new labels): their
        // entries are updated where they lie. In a large cluster some pods change between
        // any two scrapes; rebuilding every entry for them held two lists of them at once
        // (at 150,000 pods with 20 changing a second, some 10-15 MiB more at the peak).
        let in_place = state.entries.len() == scrape.pods.len()
            && kept_at
                .iter()
                .zip(scrape.pods.iter().zip(&state.entries))
                .enumerate()
                .all(|(i, (k, (pod, e)))| *k == Some(i) || (k.is_none() && e.key() == (pod.namespace, pod.name)));
        if in_place {
            for i in (0..kept_at.len()).filter(|&i| kept_at[i].is_none()) {
                let pod = &scrape.pods[i];
                state.entries[i].metric_labels = MetricLabels::new(pod.labels.as_ref(), &self.digester);
                state.entries[i].labels = prepared.pods[i].clone();
            }
            return prepared;
        }
        // The scrape's pods, each with its kept entry (moved, as the epoch says the
        // entries are those `begin` indexed) or a new one; the pods that are gone are
        // forgotten.
        let mut old: Vec<Option<Entry>> = std::mem::take(&mut state.entries).into_iter().map(Some).collect();
        let mut entries: Vec<Entry> = Vec::with_capacity(scrape.pods.len());
        for (i, (pod, labels)) in scrape.pods.iter().zip(&prepared.pods).enumerate() {
            let key = (pod.namespace, pod.name);
            // Taken already (a scrape that lists a pod twice), it is made anew.
            let kept = kept_at.get(i).copied().flatten().and_then(|k| old.get_mut(k)).and_then(Option::take);
            let entry = match kept {
                Some(e) if e.key() == key => e,
                _ => {
                    let namespace = match entries.last() {
                        Some(last) if *last.namespace == *pod.namespace => last.namespace.clone(),
                        _ => Text::from(pod.namespace),
                    };
                    Entry {
                        namespace,
                        name: state
                            .base
                            .pods
                            .as_ref()
                            .and_then(|pods| pods.get_key_value(pod.namespace, pod.name))
                            .map_or_else(|| Text::from(pod.name), |(name, _)| name.clone()),
                        metric_labels: MetricLabels::new(pod.labels.as_ref(), &self.digester),
                        labels: labels.clone(),
                    }
                }
            };
            entries.push(entry);
        }
        // A scrape from `Scrape::select` is sorted and has each pod once; one made by hand
        // may not be.
        if !entries.is_sorted_by(|a, b| a.key() < b.key()) {
            entries.sort_by(|a, b| a.key().cmp(&b.key()));
            entries.dedup_by(|b, a| a.key() == b.key());
        }
        state.entries = entries;
        prepared
    }

    /// How many pods it keeps labels for.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it keeps none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enricher::{Depends, EnrichError, Enricher, Enrichment};
    use crate::list::PodMetricsList;
    use crate::objects::{controllers_from_list, nodes_from_list, pods_from_list};
    use crate::render::prepare;
    use crate::{AddedLabel, LabelName, StaticCluster, Unguarded};

    /// Reads all three resources the way `Depends::Pod` allows.
    struct Probe;

    /// The enrichers the rounds are of: a probe, the same every time.
    fn probes() -> &'static [Arc<dyn Enricher>] {
        static PROBES: std::sync::LazyLock<[Arc<dyn Enricher>; 1]> = std::sync::LazyLock::new(|| [Arc::new(Probe)]);
        &*PROBES
    }

    #[async_trait]
    impl Enricher for Probe {
        fn name(&self) -> &str {
            "probe"
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
            let (pods, nodes) = (cluster.pods().await?, cluster.nodes().await?);
            let rs = cluster.controllers(ControllerKind::ReplicaSet).await?;
            for (i, p) in scrape.pods.iter().enumerate() {
                let Some(info) = pods.get(p.namespace, p.name) else { continue };
                if let Some(node) = &info.node_name {
                    out.add_pod_label(i, LabelName::from_static("node"), node.clone());
                    if let Some(ip) = nodes.get(node).and_then(|n| n.internal_ip.clone()) {
                        out.add_pod_label(i, LabelName::from_static("node_ip"), ip);
                    }
                }
                if let Some(Some(top)) = info.controller.as_ref().and_then(|c| rs.get(p.namespace, &c.name)) {
                    out.add_pod_label(i, LabelName::from_static("workload"), top.name.clone());
                }
            }
            Ok(out)
        }
    }

    fn pod(name: &str, node: &str, rs: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"{name}","namespace":"a","ownerReferences":[{{"kind":"ReplicaSet","name":"{rs}","controller":true}}]}},"spec":{{"nodeName":"{node}"}}}}"#
        )
    }

    fn cluster(pods: &[String], node_ip: &str, deployment: &str) -> StaticCluster {
        let pods = format!(r#"{{"items":[{}]}}"#, pods.join(","));
        let nodes = format!(
            r#"{{"items":[{{"metadata":{{"name":"n1"}},"status":{{"addresses":[{{"type":"InternalIP","address":"{node_ip}"}}]}}}},{{"metadata":{{"name":"n2"}}}}]}}"#
        );
        let rs = format!(
            r#"{{"items":[{{"metadata":{{"name":"rs1","namespace":"a","ownerReferences":[{{"kind":"Deployment","name":"{deployment}","controller":true}}]}}}},{{"metadata":{{"name":"rs2","namespace":"a"}}}}]}}"#
        );
        StaticCluster {
            pods: Arc::new(pods_from_list(pods.as_bytes()).expect("pods")),
            nodes: Arc::new(nodes_from_list(nodes.as_bytes()).expect("nodes")),
            controllers: Arc::new(controllers_from_list(rs.as_bytes()).expect("rs")),
        }
    }

    fn metrics(names: &[&str], labelled: Option<&str>) -> PodMetricsList<'static> {
        let items: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let labels = match labelled {
                    Some(v) if *n == "p1" => format!(r#","labels":{{"app":"{v}"}}"#),
                    _ => String::new(),
                };
                // One, two or no containers, each pod's its own, so a batch that took another
                // pod's would show it.
                let containers: Vec<String> = (0..(i + 1) % 3)
                    .map(|j| format!(r#"{{"name":"{n}-c{j}","usage":{{"cpu":"{}m","memory":"1Ki"}}}}"#, 10 * i + j + 1))
                    .collect();
                format!(
                    r#"{{"metadata":{{"name":"{n}","namespace":"a"{labels}}},"containers":[{}]}}"#,
                    containers.join(",")
                )
            })
            .collect();
        let json: &'static str = Box::leak(format!(r#"{{"items":[{}]}}"#, items.join(",")).into_boxed_str());
        serde_json::from_str(json).expect("metrics")
    }

    /// One memoized round, checked against enriching every pod afresh. Returns the misses.
    fn round(memo: &Memo, pods: &PodMetricsList<'_>, cluster: &StaticCluster, complete: bool) -> usize {
        round_of(memo, pods, cluster, complete, |_| {})
    }

    /// [`round`], of the scrape as `edit` leaves it.
    fn round_of(
        memo: &Memo,
        pods: &PodMetricsList<'_>,
        cluster: &StaticCluster,
        complete: bool,
        edit: impl Fn(&mut Scrape<'_>),
    ) -> usize {
        async_std::task::block_on(async {
            let nodes = Default::default();
            let mut scrape = Scrape::new(pods, &nodes);
            edit(&mut scrape);
            let round = memo.begin(&scrape, cluster, probes(), &Unguarded).await;
            let misses = round.miss_count();
            // Batches of one pod and of two keep each pod's own containers.
            for batch in round.batches(&scrape, 1).chain(round.batches(&scrape, 2)) {
                for p in &batch.pods {
                    let same = |w: &&PodSample<'_>| (w.namespace, w.name) == (p.namespace, p.name);
                    let whole = scrape.pods.iter().find(same).expect("a pod of the scrape");
                    assert_eq!(
                        batch.containers_of(p),
                        scrape.containers_of(whole),
                        "a batch's pod keeps its containers"
                    );
                }
            }
            // A pod at a time, the smallest batches there are.
            let mut fresh = Prepared::default();
            for (k, batch) in round.batches(&scrape, 1).enumerate() {
                let enrichment = Probe.enrich(&batch, &round.cluster(cluster)).await.expect("enrich");
                let prepared = prepare(&batch, &[&enrichment]);
                fresh.pods.extend(prepared.pods);
                if k == 0 {
                    fresh.nodes = prepared.nodes;
                }
            }
            let got = memo.finish(round, &scrape, fresh, complete.then_some(&[]));
            let all = Probe.enrich(&scrape, cluster).await.expect("enrich");
            assert_eq!(got.pods, prepare(&scrape, &[&all]).pods, "memoized labels equal fresh ones");
            misses
        })
    }

    #[test]
    fn only_pods_whose_own_inputs_changed_are_enriched_again() {
        let memo = Memo::default();
        let three = metrics(&["p1", "p2", "p3"], None);
        let mut c =
            cluster(&[pod("p1", "n1", "rs1"), pod("p2", "n2", "rs2"), pod("p3", "n2", "rs1")], "10.0.0.1", "web");
        assert_eq!(round(&memo, &three, &c, true), 3, "first round enriches every pod");
        assert_eq!(round(&memo, &three, &c, true), 0, "nothing changed");
        // Each entry's name is the pod cache's own, not a copy.
        for e in &memo.lock().entries {
            let (cached, _) = c.pods.get_key_value(&e.namespace, &e.name).expect("a pod the cache has");
            assert!(Arc::ptr_eq(cached, &e.name), "{}: a copy", e.name);
        }

        // A new pods snapshot with equal entries: nothing to redo.
        c.pods = Arc::new((*c.pods).clone());
        assert_eq!(round(&memo, &three, &c, true), 0);

        // p2 moves to n1: only p2.
        c.pods = cluster(&[pod("p1", "n1", "rs1"), pod("p2", "n1", "rs2"), pod("p3", "n2", "rs1")], "", "").pods;
        assert_eq!(round(&memo, &three, &c, true), 1);
        assert_eq!(round(&memo, &three, &c, true), 0, "remembered where it lies");

        // n1's address changes: the pods on n1 (p1, p2).
        c.nodes = cluster(&[], "10.0.0.9", "").nodes;
        assert_eq!(round(&memo, &three, &c, true), 2);

        // rs1 is adopted by another Deployment: the pods of rs1 (p1, p3).
        c.controllers = cluster(&[], "", "api").controllers;
        assert_eq!(round(&memo, &three, &c, true), 2);

        // The same, each with a new pods snapshot of equal entries (as a watch event for
        // another pod makes): a pod found unchanged is still followed to its node and owner.
        c.pods = Arc::new((*c.pods).clone());
        c.nodes = cluster(&[], "10.0.0.8", "").nodes;
        assert_eq!(round(&memo, &three, &c, true), 2, "the pods on n1");
        c.pods = Arc::new((*c.pods).clone());
        c.controllers = cluster(&[], "", "web").controllers;
        assert_eq!(round(&memo, &three, &c, true), 2, "the pods of rs1");

        // PodMetrics' own labels change for p1.
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 1);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 0);

        // p1 moves to n2, its labels as they were: enriched again where it lies.
        c.pods = cluster(&[pod("p1", "n2", "rs1"), pod("p2", "n1", "rs2"), pod("p3", "n2", "rs1")], "", "").pods;
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 1);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 0);
        // Its labels change where it lies (the same pods, in order): only p1, and the new
        // ones are remembered.
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("y")), &c, true), 1);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("y")), &c, true), 0);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 1, "and back");
        // Its labels change as another pod comes and one goes (the entries made anew): p1 and
        // the new one, and p1's new labels are remembered.
        c.pods = cluster(&[pod("p1", "n2", "rs1"), pod("p2", "n1", "rs2"), pod("p4", "n2", "rs1")], "", "").pods;
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p4"], Some("y")), &c, true), 2);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p4"], Some("y")), &c, true), 0);
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p3"], Some("x")), &c, true), 2, "and back");

        // A pod goes, a pod comes: the new one is enriched, the old one forgotten.
        assert_eq!(round(&memo, &metrics(&["p1", "p2", "p4"], Some("x")), &c, true), 1);
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn a_scrape_made_by_hand_in_any_order_is_served_alike() {
        let memo = Memo::default();
        let pods = metrics(&["p1", "p2", "p3"], None);
        let c = cluster(&[pod("p1", "n1", "rs1"), pod("p2", "n2", "rs2"), pod("p3", "n2", "rs1")], "10.0.0.1", "web");
        let reversed_twice = |s: &mut Scrape<'_>| {
            s.pods.reverse();
            let first = s.pods[0].clone();
            s.pods.push(first);
        };
        assert_eq!(round_of(&memo, &pods, &c, true, reversed_twice), 4);
        assert_eq!(memo.len(), 3, "each pod once");
        assert_eq!(round_of(&memo, &pods, &c, true, reversed_twice), 0, "every pod is found, the repeated one too");
        assert_eq!(round(&memo, &pods, &c, true), 0, "sorted again, every entry is found");
        assert_eq!(memo.len(), 3);
    }

    #[test]
    fn metric_labels_compare_exactly() {
        let d = Digester::default();
        let labels = |p: &[(&str, &str)]| JsonLabels::new(p.iter().copied());
        let ab = labels(&[("a", "b")]);
        let kept = MetricLabels::new(Some(&ab), &d);
        assert!(kept.matches(Some(&ab), &d));
        assert!(kept.matches(Some(&labels(&[("a", "b")])), &d), "the same labels, another copy");
        assert!(!kept.matches(None, &d));
        assert!(!kept.matches(Some(&labels(&[("a", "bc")])), &d));
        assert!(!kept.matches(Some(&labels(&[("ab", "")])), &d));
        assert!(!kept.matches(Some(&labels(&[("a", "b"), ("c", "d")])), &d));
        assert!(!kept.matches(Some(&labels(&[])), &d));
        assert!(MetricLabels::new(Some(&labels(&[])), &d).matches(Some(&labels(&[])), &d));
        assert!(MetricLabels::new(None, &d).matches(None, &d));
        assert!(!MetricLabels::new(None, &d).matches(Some(&labels(&[])), &d), "no labels and empty labels");
        // Text that reads the same but is written otherwise is a change (enriched again).
        assert!(!kept.matches(Some(&JsonLabels::checked(r#"{ "a":"b"}"#)), &d));
    }

    #[test]
    fn incomplete_and_overlapping_rounds_are_not_remembered() {
        let memo = Memo::default();
        let pods = metrics(&["p1", "p2"], None);
        let c = cluster(&[pod("p1", "n1", "rs1"), pod("p2", "n2", "rs2")], "10.0.0.1", "web");
        assert_eq!(round(&memo, &pods, &c, false), 2);
        assert!(memo.is_empty(), "a round with a failed enricher is served, not kept");
        assert_eq!(round(&memo, &pods, &c, false), 2);

        // Two rounds begin on the same state; only the first to finish is kept.
        async_std::task::block_on(async {
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let (a, b) = (
                memo.begin(&scrape, &c, probes(), &Unguarded).await,
                memo.begin(&scrape, &c, probes(), &Unguarded).await,
            );
            for r in [a, b] {
                let sub = r.batches(&scrape, usize::MAX).next().expect("a batch");
                let e = Probe.enrich(&sub, &r.cluster(&c)).await.expect("enrich");
                let fresh = prepare(&sub, &[&e]);
                drop(sub);
                memo.finish(r, &scrape, fresh, Some(&[]));
            }
        });
        assert_eq!(memo.len(), 2);
        assert_eq!(round(&memo, &pods, &c, true), 0);
    }

    /// A cluster whose pod list fails.
    struct Broken(StaticCluster);

    #[async_trait]
    impl Cluster for Broken {
        async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
            Err("forbidden".into())
        }
        async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
            self.0.nodes().await
        }
        async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
            self.0.controllers(kind).await
        }
    }

    #[test]
    fn an_unreadable_snapshot_makes_every_pod_a_miss() {
        let memo = Memo::default();
        let pods = metrics(&["p1", "p2"], None);
        let c = cluster(&[pod("p1", "n1", "rs1"), pod("p2", "n2", "rs2")], "10.0.0.1", "web");
        assert_eq!(round(&memo, &pods, &c, true), 2);
        async_std::task::block_on(async {
            let nodes = Default::default();
            let scrape = Scrape::new(&pods, &nodes);
            let broken = Broken(c.clone());
            let r = memo.begin(&scrape, &broken, probes(), &Unguarded).await;
            assert_eq!(r.miss_count(), 2, "kept labels cannot be checked");
            let sub = r.batches(&scrape, usize::MAX).next().expect("a batch");
            assert!(Probe.enrich(&sub, &r.cluster(&broken)).await.is_err(), "the enricher reports the error");
            let fresh = prepare(&sub, &[]);
            drop(sub);
            let prepared = memo.finish(r, &scrape, fresh, None);
            assert!(prepared.pods.iter().all(|p| p.is_empty()), "served unenriched");
        });
        assert_eq!(round(&memo, &pods, &c, true), 0, "the kept labels survive a failed round");
    }

    /// A cluster whose ReplicaSets are refused (`ReadRefused`).
    struct RefusingReplicaSets(StaticCluster);

    #[async_trait]
    impl Cluster for RefusingReplicaSets {
        async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
            self.0.pods().await
        }
        async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
            self.0.nodes().await
        }
        async fn controllers(&self, _: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
            Err(Box::new(ReadRefused::new("replicasets: forbidden")))
        }
    }

    #[test]
    fn kept_failures_are_said_again_while_kept_labels_are_served() {
        let unowned = r#"{"metadata":{"name":"p9","namespace":"a"},"spec":{"nodeName":"n1"}}"#.to_owned();
        let c = RefusingReplicaSets(cluster(&[pod("p1", "n1", "rs1"), unowned], "10.0.0.1", "web"));
        let memo = Memo::default();
        let replayed = |names: &[&str]| {
            async_std::task::block_on(async {
                let pods = metrics(names, None);
                let nodes = Default::default();
                let scrape = Scrape::new(&pods, &nodes);
                let r = memo.begin(&scrape, &c, probes(), &Unguarded).await;
                let replayed: Vec<Failure> = r.kept_failures().collect();
                let mut fresh = Prepared::default();
                let mut failures = Vec::new();
                for batch in r.batches(&scrape, usize::MAX) {
                    // The probe reads the pods and nodes, then fails on the ReplicaSets (with
                    // pods to enrich), as `enrich` would run it.
                    match Probe.enrich(&batch, &r.cluster(&c)).await {
                        Ok(e) => fresh = prepare(&batch, &[&e]),
                        Err(error) => {
                            assert!(Refusal::caused(&*error), "the round's refusal");
                            failures.push(Failure { enricher: "probe".into(), error, partial: false });
                            fresh = prepare(&batch, &[]);
                        }
                    }
                }
                let count = replayed.len();
                if failures.is_empty() {
                    failures.extend(replayed);
                }
                memo.finish(r, &scrape, fresh, Some(&failures));
                count
            })
        };
        assert_eq!(replayed(&["p1", "p9"]), 0, "nothing kept yet");
        assert_eq!(memo.len(), 2, "kept: the ReplicaSets are refused");
        assert_eq!(replayed(&["p1", "p9"]), 1);
        // p9 is no ReplicaSet's, but the probe failed whole: its labels were lost too.
        assert_eq!(replayed(&["p9"]), 1, "said while p9's kept labels are served");
    }
}
