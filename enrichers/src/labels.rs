//! `labels`: Kubernetes labels as Prometheus labels, named like kube-state-metrics.
//!
//! Pod labels go on pod and container series, node labels on node series, each as
//! `label_<key>` with every character outside `[a-zA-Z0-9_]` turned into `_`. Keys are
//! filtered by `labels.allow` (globs, default all) and `labels.deny` (globs, default the
//! volatile hash labels). Where PodMetrics already carries the pod's labels (metrics-server
//! 0.5 and later) they are used and the pod list is not read. Colliding names get
//! `_conflictN` as in kube-state-metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use msp_core::{
    async_trait, resolve_conflicts, AddedLabel, Cluster, Depends, EnrichError, Enricher, Enrichment, Filter, GlobError,
    LabelName, Scrape, Series, Text,
};
use serde::{Deserialize, Serialize};

/// Labels that change with every rollout or carry a UID: denied by default.
pub const VOLATILE: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

/// `[labels]` in the configuration; a key left out keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelsOptions {
    /// Glob patterns of label keys to keep (default: `["*"]`).
    pub allow: Vec<String>,
    /// Glob patterns of label keys to drop, applied after `allow`.
    pub deny: Vec<String>,
}

impl Default for LabelsOptions {
    fn default() -> Self {
        LabelsOptions { allow: vec!["*".into()], deny: VOLATILE.iter().map(|s| s.to_string()).collect() }
    }
}

/// Label keys seen before: their sanitized name, or `None` when filtered out. Label keys
/// repeat across pods, so each is matched and sanitized once, not once per pod.
type NameCache = HashMap<Box<str>, Option<LabelName>>;

/// More distinct keys than this and the cache starts over (bounded memory).
const NAME_CACHE_MAX: usize = 10_000;

/// The `labels` enricher.
#[derive(Debug)]
pub struct LabelsEnricher {
    keys: Arc<Filter>,
    names: Mutex<NameCache>,
}

impl Default for LabelsEnricher {
    fn default() -> Self {
        LabelsEnricher::new(LabelsOptions::default()).unwrap_or_else(|_| unreachable!("the defaults compile"))
    }
}

impl LabelsEnricher {
    /// With these options; an empty pattern is an error.
    pub fn new(options: LabelsOptions) -> Result<Self, GlobError> {
        let keys = Filter::new(&options.allow, &options.deny)?;
        Ok(LabelsEnricher { keys: Arc::new(keys), names: Mutex::default() })
    }

    /// Labels for one object's `(key, value)` pairs.
    fn add<'k>(
        &self,
        names: &mut NameCache,
        pairs: impl Iterator<Item = (&'k str, Text)>,
        mut add: impl FnMut(LabelName, Text),
    ) {
        let mut kept: Vec<(&str, LabelName, Text)> = Vec::new();
        for (key, value) in pairs {
            if names.len() > NAME_CACHE_MAX {
                names.clear();
            }
            let name = names.entry(key.into()).or_insert_with(|| {
                if self.keys.keeps(key) {
                    LabelName::sanitized("label_", key).ok()
                } else {
                    None
                }
            });
            if let Some(name) = name {
                kept.push((key, name.clone(), value));
            }
        }
        let collides = kept.iter().enumerate().any(|(i, (_, a, _))| kept[..i].iter().any(|(_, b, _)| a == b));
        if collides {
            // Rare: resolve all of this object's names as kube-state-metrics does.
            let pairs: Vec<(&str, Text)> = kept.into_iter().map(|(k, _, v)| (k, v)).collect();
            for (name, value) in resolve_conflicts("label_", pairs.iter().map(|(k, v)| (*k, v))) {
                add(name, value);
            }
        } else {
            for (_, name, value) in kept {
                add(name, value);
            }
        }
    }
}

impl Clone for LabelsEnricher {
    fn clone(&self) -> Self {
        LabelsEnricher { keys: self.keys.clone(), names: Mutex::default() }
    }
}

#[async_trait]
impl Enricher for LabelsEnricher {
    fn name(&self) -> &str {
        "labels"
    }

    fn depends(&self) -> Depends {
        // Reads only the pod's own entries (see `Depends::Pod`).
        Depends::Pod
    }

    fn config_warnings(&self) -> Vec<String> {
        let warning = |denied: &str| {
            format!(
                "labels.allow has {denied:?}, and labels.deny takes it all back: deny comes after allow, so no \
                 label key {denied:?} allows is exported"
            )
        };
        self.keys.denied_whole().into_iter().map(warning).collect()
    }

    fn labels(&self) -> Vec<AddedLabel> {
        vec![
            AddedLabel::new(
                "label_<key>",
                Series::Pods,
                "Each pod label allowed by labels.allow and not denied by labels.deny.",
            ),
            AddedLabel::new("label_<key>", Series::Nodes, "Each node label, filtered the same way."),
        ]
    }

    async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
        let mut out = Enrichment::new(scrape);
        let need_pod_list = scrape.pods.iter().any(|p| p.labels.is_none());
        let pods = if need_pod_list { Some(cluster.pods().await?) } else { None };
        // Without the nodes, the nodes alone go without: the pods' labels are kept.
        let nodes = match scrape.nodes.is_empty() {
            true => None,
            false => cluster.nodes().await.map_err(|e| out.incomplete(e)).ok(),
        };
        // No await below: the cache lock is never held across one.
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        for (i, pod) in scrape.pods.iter().enumerate() {
            match (pod.labels.as_ref(), &pods) {
                (Some(inline), _) => {
                    let inline = inline.pairs();
                    let pairs = inline.iter().map(|(k, v)| (k.as_ref(), Text::from(v.as_ref())));
                    self.add(&mut names, pairs, |n, v| out.add_pod_label(i, n, v));
                }
                (None, Some(pods)) => {
                    if let Some(info) = pods.get(pod.namespace, pod.name) {
                        let pairs = info.labels.iter().map(|(k, v)| (k.as_ref(), v.clone()));
                        self.add(&mut names, pairs, |n, v| out.add_pod_label(i, n, v));
                    }
                }
                (None, None) => {}
            }
        }
        if let Some(nodes) = &nodes {
            for (i, node) in scrape.nodes.iter().enumerate() {
                let Some(info) = nodes.get(node.name) else { continue };
                let pairs = info.labels.iter().map(|(k, v)| (k.as_ref(), v.clone()));
                self.add(&mut names, pairs, |n, v| out.add_node_label(i, n, v));
            }
        }
        Ok(out)
    }

    /// The nodes: the pods' labels mostly come with their metrics (above), so the pod list
    /// is left to the first scrape that needs it.
    async fn warm_up(&self, cluster: &dyn Cluster) -> Result<(), EnrichError> {
        cluster.nodes().await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, pod_labels, scrape_lists};

    const PODS: &str = r#"{"items":[{"metadata":{"name":"web","namespace":"a","labels":{
        "app":"web","app.kubernetes.io/name":"web","pod-template-hash":"5d78c9869d","app_kubernetes_io_name":"dup"}}}]}"#;
    const NODES: &str = r#"{"items":[{"metadata":{"name":"n1","labels":{"topology.kubernetes.io/zone":"z1"}}}]}"#;

    #[async_std::test]
    async fn ksm_names_default_deny_and_conflicts() {
        let c = cluster(PODS, NODES, r#"{"items":[]}"#);
        let (pods, nodes) = scrape_lists(&["a/web"], &["n1"]);
        let scrape = Scrape::new(&pods, &nodes);
        let e = LabelsEnricher::default().enrich(&scrape, &c).await.expect("enrich");
        assert_eq!(
            pod_labels(&e, 0),
            [
                ("label_app", "web"),
                ("label_app_kubernetes_io_name_conflict1", "web"),
                ("label_app_kubernetes_io_name_conflict2", "dup"),
            ]
        );
        assert_eq!(e.node(0)[0].0.as_str(), "label_topology_kubernetes_io_zone");
    }

    /// A scrape's first batch carries the nodes: without them, its pods are labelled as the
    /// others are.
    #[async_std::test]
    async fn nodes_refused_cost_only_the_nodes_labels() {
        let c = crate::testing::NodesRefused(cluster(PODS, NODES, r#"{"items":[]}"#));
        let (pods, nodes) = scrape_lists(&["a/web"], &["n1"]);
        let scrape = Scrape::new(&pods, &nodes);
        let e = LabelsEnricher::default().enrich(&scrape, &c).await.expect("labels, not an error");
        assert_eq!(pod_labels(&e, 0)[0], ("label_app", "web"));
        assert!(e.node(0).is_empty());
        assert!(msp_core::ReadRefused::caused(e.incompleteness().expect("incomplete")));
    }

    #[async_std::test]
    async fn allow_globs_and_inline_labels() {
        let c = cluster(r#"{"items":[]}"#, NODES, r#"{"items":[]}"#);
        let pods: msp_core::PodMetricsList<'_> = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"w","namespace":"a","labels":{"app.kubernetes.io/name":"w","team":"x"}},
               "containers":[{"name":"c","usage":{"cpu":"1","memory":"1"}}]}]}"#,
        )
        .expect("pods");
        let nodes = Default::default();
        let scrape = Scrape::new(&pods, &nodes);
        let options = LabelsOptions { allow: vec!["app.kubernetes.io/*".into()], deny: vec![] };
        let e = LabelsEnricher::new(options).expect("options").enrich(&scrape, &c).await.expect("enrich");
        assert_eq!(
            pod_labels(&e, 0),
            [("label_app_kubernetes_io_name", "w")],
            "labels from PodMetrics, pod list empty"
        );
    }

    #[test]
    fn an_allow_pattern_that_deny_takes_back_is_found() {
        let options = |allow: &[&str]| LabelsOptions {
            allow: allow.iter().map(|a| a.to_string()).collect(),
            ..LabelsOptions::default()
        };
        let labels = LabelsEnricher::new(options(&["app", "pod-template-hash", "*-hash"])).expect("labels");
        let warnings = labels.config_warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("labels.allow has \"pod-template-hash\", and labels.deny"),
            "the default deny has it"
        );
        assert!(LabelsEnricher::default().config_warnings().is_empty());
    }

    #[async_std::test]
    async fn warms_up_the_nodes_alone() {
        let reads = crate::testing::Reads(Default::default(), Default::default());
        LabelsEnricher::default().warm_up(&reads).await.expect("warm");
        assert_eq!(reads.taken(), ["nodes"], "the pods' labels mostly come with their metrics");
    }
}
