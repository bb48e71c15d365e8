//! The extension point: enrichers add labels to a whole scrape at once.
//!
//! An [`Enricher`] sees the entire [`Scrape`] and a [`Cluster`] to read metadata from, so one
//! upstream read serves every pod, and it answers with an [`Enrichment`]: labels per pod
//! (they go on the pod's series and on each of its containers' series) and per node.
//!
//! When the output is written, labels are merged in a fixed way, so a series never has two
//! labels with one name:
//! 1. the base labels `namespace`, `pod`, `container` (pod series) and `node` (node series)
//!    always win, and no enricher may add `namespace`, `pod` or `container`;
//! 2. then enrichers in their configured order: the first to add a name keeps it, later
//!    ones are dropped for that series.
//!
//! Enrichers that derive several label names from free text (like `labels`) resolve their
//! own collisions first, the way kube-state-metrics does: see [`resolve_conflicts`].
//!
//! A complete custom enricher, run against a fixed cluster:
//!
//! ```
//! use std::sync::Arc;
//! use msp_core::{async_trait, AddedLabel, Cluster, Enricher, EnrichError, Enrichment, LabelName, Scrape, Series};
//!
//! /// Adds `team` from a pod's namespace, by a fixed table.
//! struct Team;
//!
//! const TEAM: LabelName = LabelName::from_static("team");
//!
//! #[async_trait]
//! impl Enricher for Team {
//!     fn name(&self) -> &str { "team" }
//!     fn labels(&self) -> Vec<AddedLabel> {
//!         vec![AddedLabel::new("team", Series::Pods, "The team that owns the namespace.")]
//!     }
//!     async fn enrich(&self, scrape: &Scrape<'_>, _cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
//!         let mut out = Enrichment::new(scrape);
//!         for (i, pod) in scrape.pods.iter().enumerate() {
//!             let team = if pod.namespace.starts_with("kube-") { "platform" } else { "apps" };
//!             out.add_pod_label(i, TEAM, team.into());
//!         }
//!         Ok(out)
//!     }
//! }
//!
//! # async_std::task::block_on(async {
//! let pods = r#"{"items":[{"metadata":{"name":"dns","namespace":"kube-system"},
//!     "containers":[{"name":"c","usage":{"cpu":"7m","memory":"1Ki"}}]}]}"#;
//! let pods = serde_json::from_str(pods).unwrap();
//! let nodes = Default::default();
//! let scrape = Scrape::new(&pods, &nodes);
//! let cluster = msp_core::StaticCluster::default();
//! let enrichment = Team.enrich(&scrape, &cluster).await.unwrap();
//!
//! let mut out = String::new();
//! msp_core::render(&mut out, &scrape, &[&enrichment], &msp_core::RenderOptions::default()).unwrap();
//! assert!(out.contains(
//!     r#"kube_metrics_server_container_cpu_usage_cores{namespace="kube-system",pod="dns",container="c",team="platform"} 0.007"#
//! ));
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;

use crate::cluster::{Cluster, Text};
use crate::exposition::{sanitize, LabelName};
use crate::render::{NODE_RESERVED, POD_RESERVED};
use crate::scrape::Scrape;

/// An enricher's failure: its labels are left out of this scrape (those it could not add,
/// when it returns them with [`Enrichment::incomplete`]), nothing else is lost.
pub type EnrichError = Box<dyn std::error::Error + Send + Sync>;

/// An enricher's labels for one pod or node, in the order it added them.
pub type LabelPairs = Vec<(LabelName, Text)>;

/// Which series an added label goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Pod and container series.
    Pods,
    /// Node series.
    Nodes,
    /// Both.
    All,
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Series::Pods => "pod, container",
            Series::Nodes => "node",
            Series::All => "pod, container, node",
        })
    }
}

/// Documentation of a label an enricher adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedLabel {
    /// The label name, or a pattern such as `label_<key>`.
    pub name: String,
    /// The series it goes on.
    pub series: Series,
    /// What it means.
    pub help: String,
}

impl AddedLabel {
    /// Describes one label.
    pub fn new(name: impl Into<String>, series: Series, help: impl Into<String>) -> Self {
        AddedLabel { name: name.into(), series, help: help.into() }
    }
}

/// Adds labels to the series of a scrape.
///
/// Implementations must be cheap per series: do one read of whatever source they need per
/// call (through the [`Cluster`], which shares its snapshots between enrichers), then
/// look pods up by `(namespace, name)`.
///
/// Bound your own waits (a remote lookup's timeout): a scrape with a deadline (Prometheus'
/// `X-Prometheus-Scrape-Timeout-Seconds`) abandons a call that runs past it, and serves the
/// scrape without its labels, but one without (a `curl`, `Exporter::scrape(format, None)`)
/// waits for the call as long as it takes.
///
/// msp-server polls `enrich` and `warm_up` on async-std's threads, not an embedder's
/// runtime: work that needs tokio's is spawned there and awaited (see the README's
/// Embedding).
#[async_trait]
pub trait Enricher: Send + Sync {
    /// The name configuration selects it by (`enrichers = ["node"]`).
    fn name(&self) -> &str;

    /// The labels this enricher may add, for the README and the landing page.
    fn labels(&self) -> Vec<AddedLabel>;

    /// Labels for the pods and nodes of `scrape`.
    async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError>;

    /// Starts what [`enrich`](Enricher::enrich) will read, before any scrape: the server
    /// calls it as it starts (see [`warm_up`](crate::warm_up)), and again a second apart
    /// while it fails, whether the metrics API answers or not, so that the sources behind
    /// the [`Cluster`] (the server's watch-backed caches) fill while metrics-server is
    /// still down or the first scrape is on its way. Read through `cluster` what every
    /// scrape will read; leave out what only some scrapes need (a cache the API server may
    /// refuse would then be tried for nothing). An error is logged and costs nothing else:
    /// `enrich` runs as ever, and tries again. The default reads nothing: the sources start
    /// at the first `enrich`.
    async fn warm_up(&self, _cluster: &dyn Cluster) -> Result<(), EnrichError> {
        Ok(())
    }

    /// What this enricher's configuration likely got wrong (a filter that can keep
    /// nothing), each a sentence naming the setting: the server logs them as it starts. The
    /// default has none.
    fn config_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// What this enricher's labels for one pod depend on. The default,
    /// [`Depends::Scrape`], is always right; [`Depends::Pod`] lets a [`Memo`](crate::Memo)
    /// reuse a pod's labels across scrapes until that pod's own metadata changes.
    fn depends(&self) -> Depends {
        Depends::Scrape
    }
}

/// What an enricher's labels for one pod are a function of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depends {
    /// Anything: the whole scrape, usage values, other pods, sources outside the
    /// [`Cluster`]. The pod is enriched afresh on every scrape.
    Scrape,
    /// Only the pod's own inputs, read through the [`Cluster`]:
    /// - its namespace, name and the labels its PodMetrics carries;
    /// - its entry in [`Cluster::pods`];
    /// - the entry, in [`Cluster::nodes`], of the node that entry names;
    /// - the entry, in [`Cluster::controllers`] of the controller's kind, of the controller
    ///   that entry names.
    ///
    /// Labels for nodes are not memoized, so they may depend on anything.
    Pod,
}

/// An enricher's labels for one scrape, indexed like [`Scrape::pods`] and [`Scrape::nodes`].
#[derive(Debug, Default)]
pub struct Enrichment {
    pods: Vec<LabelPairs>,
    nodes: Vec<LabelPairs>,
    incomplete: Option<EnrichError>,
}

impl Enrichment {
    /// An empty enrichment sized for `scrape`.
    pub fn new(scrape: &Scrape<'_>) -> Self {
        Enrichment {
            pods: std::iter::repeat_with(Vec::new).take(scrape.pods.len()).collect(),
            nodes: std::iter::repeat_with(Vec::new).take(scrape.nodes.len()).collect(),
            incomplete: None,
        }
    }

    /// Says that some of the labels could not be added, and why (one source of several
    /// failed): the run counts and logs `error` as this enricher's failure, as if it had
    /// returned it, but keeps the labels this enrichment has. A memo keeps none of them, so
    /// the pods are enriched afresh next scrape. The first error said is the one kept.
    pub fn incomplete(&mut self, error: impl Into<EnrichError>) {
        self.incomplete.get_or_insert(error.into());
    }

    /// Why some labels are missing, if [`incomplete`](Enrichment::incomplete) was called.
    pub fn incompleteness(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.incomplete.as_deref()
    }

    pub(crate) fn take_incomplete(&mut self) -> Option<EnrichError> {
        self.incomplete.take()
    }

    /// Adds a label to pod `index` (and its containers). Ignores an index outside the
    /// scrape, a reserved name, and a name this enrichment already gave the pod.
    pub fn add_pod_label(&mut self, index: usize, name: LabelName, value: Text) {
        if POD_RESERVED.contains(&&name) {
            return;
        }
        if let Some(labels) = self.pods.get_mut(index) {
            if !labels.iter().any(|(n, _)| *n == name) {
                labels.push((name, value));
            }
        }
    }

    /// Adds a label to node `index`. Ignores an index outside the scrape, the name `node`,
    /// and a name this enrichment already gave the node.
    pub fn add_node_label(&mut self, index: usize, name: LabelName, value: Text) {
        if NODE_RESERVED.contains(&&name) {
            return;
        }
        if let Some(labels) = self.nodes.get_mut(index) {
            if !labels.iter().any(|(n, _)| *n == name) {
                labels.push((name, value));
            }
        }
    }

    /// The labels for pod `index`.
    pub fn pod(&self, index: usize) -> &[(LabelName, Text)] {
        self.pods.get(index).map_or(&[], Vec::as_slice)
    }

    /// The labels for node `index`.
    pub fn node(&self, index: usize) -> &[(LabelName, Text)] {
        self.nodes.get(index).map_or(&[], Vec::as_slice)
    }
}

/// What the enrichers' own [`Enricher::labels`] say they add that will never be written,
/// in words: a name reserved for the series it goes on (`namespace`, `pod`, `container` on
/// pod and container series, `node` on node series), or a name an earlier enricher adds to
/// the same series (the earlier wins). Names with a pattern (`label_<key>`) are not
/// checked. For a log at startup: an enricher that does this is still run.
pub fn unwritten_labels(enrichers: &[std::sync::Arc<dyn Enricher>]) -> Vec<String> {
    let overlap = |a: Series, b: Series| a == Series::All || b == Series::All || a == b;
    let mut said = Vec::new();
    let mut earlier: Vec<(&str, String, Series)> = Vec::new();
    for enricher in enrichers {
        for label in enricher.labels() {
            let Ok(name) = LabelName::new(label.name.clone()) else { continue };
            let series = label.series;
            if series != Series::Nodes && POD_RESERVED.contains(&&name) {
                said.push(format!(
                    "enricher {:?}: `{name}` is set by the scrape on pod and container series",
                    enricher.name()
                ));
            }
            if series != Series::Pods && NODE_RESERVED.contains(&&name) {
                said.push(format!("enricher {:?}: `{name}` is set by the scrape on node series", enricher.name()));
            }
            if let Some((first, _, _)) = earlier.iter().find(|(_, n, s)| *n == label.name && overlap(*s, series)) {
                said.push(format!(
                    "enricher {:?}: `{name}` is added by {first:?} first, which wins it",
                    enricher.name()
                ));
            }
            earlier.push((enricher.name(), label.name, series));
        }
    }
    said
}

/// Turns `(key, value)` pairs into labels named `prefix` + sanitized key, resolving
/// collisions exactly as kube-state-metrics does: keys are taken in sorted order, and when
/// several sanitize to one name, all of them get `_conflict1`, `_conflict2`... in that order.
pub fn resolve_conflicts<'k>(prefix: &str, pairs: impl IntoIterator<Item = (&'k str, &'k Text)>) -> LabelPairs {
    let mut sorted: Vec<(&str, &Text)> = pairs.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut names: Vec<String> = Vec::with_capacity(sorted.len());
    // name -> (how many so far, index of the first)
    let mut seen: HashMap<String, (usize, usize)> = HashMap::new();
    for (key, _) in &sorted {
        let base = sanitize(prefix, key);
        match seen.get_mut(&base) {
            Some((count, first)) => {
                if *count == 1 {
                    names[*first] = format!("{base}_conflict1");
                }
                *count += 1;
                names.push(format!("{base}_conflict{count}"));
            }
            None => {
                seen.insert(base.clone(), (1, names.len()));
                names.push(base);
            }
        }
    }
    names
        .into_iter()
        .zip(sorted)
        .filter_map(|(name, (_, value))| Some((LabelName::new(name).ok()?, value.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Says it adds `labels`; adds nothing.
    struct Saying(&'static str, Vec<(&'static str, Series)>);

    #[async_trait]
    impl Enricher for Saying {
        fn name(&self) -> &str {
            self.0
        }
        fn labels(&self) -> Vec<AddedLabel> {
            self.1.iter().map(|&(n, s)| AddedLabel::new(n, s, "")).collect()
        }
        async fn enrich(&self, scrape: &Scrape<'_>, _: &dyn Cluster) -> Result<Enrichment, EnrichError> {
            Ok(Enrichment::new(scrape))
        }
    }

    #[test]
    fn labels_said_that_will_never_be_written_are_named() {
        let enrichers: Vec<std::sync::Arc<dyn Enricher>> = vec![
            std::sync::Arc::new(Saying("node", vec![("node", Series::Pods), ("internal_ip", Series::Nodes)])),
            std::sync::Arc::new(Saying(
                "mine",
                vec![
                    ("pod", Series::All),
                    ("node", Series::All),
                    ("internal_ip", Series::Pods),
                    ("label_<key>", Series::All),
                    ("team", Series::All),
                ],
            )),
        ];
        assert_eq!(
            unwritten_labels(&enrichers),
            [
                "enricher \"mine\": `pod` is set by the scrape on pod and container series",
                "enricher \"mine\": `node` is set by the scrape on node series",
                "enricher \"mine\": `node` is added by \"node\" first, which wins it",
            ]
        );
        assert!(unwritten_labels(&enrichers[..1]).is_empty());
    }

    fn names(labels: &LabelPairs) -> Vec<(&str, &str)> {
        labels.iter().map(|(n, v)| (n.as_str(), &**v)).collect()
    }

    #[test]
    fn conflicts_resolve_like_kube_state_metrics() {
        let pairs: Vec<(String, Text)> = [
            ("app.kubernetes.io/name", "a"),
            ("app_kubernetes_io_name", "b"),
            ("app-kubernetes-io/name", "c"),
            ("tier", "web"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Text::from(*v)))
        .collect();
        let labels = resolve_conflicts("label_", pairs.iter().map(|(k, v)| (k.as_str(), v)));
        // Sorted keys: "app-kubernetes-io/name" < "app.kubernetes.io/name" < "app_kubernetes_io_name" < "tier".
        assert_eq!(
            names(&labels),
            [
                ("label_app_kubernetes_io_name_conflict1", "c"),
                ("label_app_kubernetes_io_name_conflict2", "a"),
                ("label_app_kubernetes_io_name_conflict3", "b"),
                ("label_tier", "web"),
            ]
        );
        // Order of the input does not matter.
        let reversed = resolve_conflicts("label_", pairs.iter().rev().map(|(k, v)| (k.as_str(), v)));
        assert_eq!(labels, reversed);
    }

    #[test]
    fn reserved_and_repeated_names_are_ignored() {
        let pods = serde_json::from_str(r#"{"items":[{"metadata":{"name":"p","namespace":"n"},"containers":[]}]}"#)
            .expect("pods");
        let nodes = serde_json::from_str(r#"{"items":[{"metadata":{"name":"n1"},"usage":{"cpu":"1","memory":"1"}}]}"#)
            .expect("nodes");
        let scrape = Scrape::new(&pods, &nodes);
        let mut e = Enrichment::new(&scrape);
        e.add_pod_label(0, LabelName::from_static("pod"), "x".into());
        e.add_pod_label(0, LabelName::from_static("node"), "n1".into());
        e.add_pod_label(0, LabelName::from_static("node"), "n2".into());
        e.add_pod_label(7, LabelName::from_static("node"), "n3".into());
        e.add_node_label(0, LabelName::from_static("node"), "x".into());
        e.add_node_label(0, LabelName::from_static("zone"), "z".into());
        assert_eq!(names(&e.pod(0).to_vec()), [("node", "n1")]);
        assert_eq!(names(&e.node(0).to_vec()), [("zone", "z")]);
        assert!(e.pod(7).is_empty());
    }
}
