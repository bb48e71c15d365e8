//! `labels`: Kubernetes labels as Prometheus labels, named like kube-state-metrics.
//!
//! Pod labels go on pod and container series, node labels on node series, each as
//! `label_<key>` with every character outside `[a-zA-Z0-9_]` turned into `_`. Keys are
//! filtered by `labels.allow` (globs, default all) and `labels.deny` (globs, default the
//! volatile hash labels). Where PodMetrics already carries the pod's labels (metrics-server
//! 0.5 and later) they are used and the pod list is not read. Colliding names get
//! `_conflictN` as in kube-state-metrics.

use std::sync::Arc;

use msp_core::cluster::Text;
use msp_core::enricher::resolve_conflicts;
use msp_core::{async_trait, AddedLabel, Cluster, EnrichError, Enricher, Enrichment, Scrape, Series};
use serde::{Deserialize, Serialize};

use crate::glob;

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

/// `[labels]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// The `labels` enricher.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    options: Arc<LabelsOptions>,
}

impl Labels {
    /// With these options.
    pub fn new(options: LabelsOptions) -> Self {
        Labels { options: Arc::new(options) }
    }

    fn wanted(&self, key: &str) -> bool {
        self.options.allow.iter().any(|p| glob::matches(p, key))
            && !self.options.deny.iter().any(|p| glob::matches(p, key))
    }
}

#[async_trait]
impl Enricher for Labels {
    fn name(&self) -> &str {
        "labels"
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
        for (i, pod) in scrape.pods.iter().enumerate() {
            let labels: Vec<(&str, Text)> = match (pod.labels, &pods) {
                (Some(inline), _) => inline.iter().map(|(k, v)| (k.as_ref(), Text::from(v.as_ref()))).collect(),
                (None, Some(pods)) => match pods.get(pod.namespace, pod.name) {
                    Some(info) => info.labels.iter().map(|(k, v)| (k.as_ref(), v.clone())).collect(),
                    None => continue,
                },
                (None, None) => continue,
            };
            let kept = labels.iter().filter(|(k, _)| self.wanted(k)).map(|(k, v)| (*k, v));
            for (name, value) in resolve_conflicts("label_", kept) {
                out.add_pod_label(i, name, value);
            }
        }
        if !scrape.nodes.is_empty() {
            let nodes = cluster.nodes().await?;
            for (i, node) in scrape.nodes.iter().enumerate() {
                let Some(info) = nodes.get(node.name) else { continue };
                let kept = info.labels.iter().filter(|(k, _)| self.wanted(k)).map(|(k, v)| (&**k, v));
                for (name, value) in resolve_conflicts("label_", kept) {
                    out.add_node_label(i, name, value);
                }
            }
        }
        Ok(out)
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
        let e = Labels::default().enrich(&scrape, &c).await.expect("enrich");
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

    #[async_std::test]
    async fn allow_globs_and_inline_labels() {
        let c = cluster(r#"{"items":[]}"#, NODES, r#"{"items":[]}"#);
        let pods: msp_core::model::PodMetricsList<'_> = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"w","namespace":"a","labels":{"app.kubernetes.io/name":"w","team":"x"}},
               "containers":[{"name":"c","usage":{"cpu":"1","memory":"1"}}]}]}"#,
        )
        .expect("pods");
        let nodes = Default::default();
        let scrape = Scrape::new(&pods, &nodes);
        let options = LabelsOptions { allow: vec!["app.kubernetes.io/*".into()], deny: vec![] };
        let e = Labels::new(options).enrich(&scrape, &c).await.expect("enrich");
        assert_eq!(
            pod_labels(&e, 0),
            [("label_app_kubernetes_io_name", "w")],
            "labels from PodMetrics, pod list empty"
        );
    }
}
