//! `node`: where a pod runs and its addresses.
//!
//! Adds `node`, `pod_ip` and `host_ip` to pod and container series, from the pod list
//! (`spec.nodeName`, `status.podIP`, `status.hostIP`), and `internal_ip` to node series, from
//! the node list. A pod that metrics-server reports but the pod list no longer has gets none
//! of these labels; its series are still written.

use msp_core::{
    async_trait, AddedLabel, Cluster, Depends, EnrichError, Enricher, Enrichment, LabelName, Scrape, Series,
};

static NODE: LabelName = LabelName::from_static("node");
static POD_IP: LabelName = LabelName::from_static("pod_ip");
static HOST_IP: LabelName = LabelName::from_static("host_ip");
static INTERNAL_IP: LabelName = LabelName::from_static("internal_ip");

/// The `node` enricher.
#[derive(Debug, Default, Clone)]
pub struct NodeEnricher;

#[async_trait]
impl Enricher for NodeEnricher {
    fn name(&self) -> &str {
        "node"
    }

    fn depends(&self) -> Depends {
        // Reads only the pod's own entries (see `Depends::Pod`).
        Depends::Pod
    }

    fn labels(&self) -> Vec<AddedLabel> {
        vec![
            AddedLabel::new("node", Series::Pods, "The node the pod runs on (spec.nodeName)."),
            AddedLabel::new("pod_ip", Series::Pods, "The pod's IP (status.podIP)."),
            AddedLabel::new("host_ip", Series::Pods, "The IP of the pod's node (status.hostIP)."),
            AddedLabel::new("internal_ip", Series::Nodes, "The node's first InternalIP address."),
        ]
    }

    async fn enrich(&self, scrape: &Scrape<'_>, cluster: &dyn Cluster) -> Result<Enrichment, EnrichError> {
        let mut out = Enrichment::new(scrape);
        if !scrape.pods.is_empty() {
            let pods = cluster.pods().await?;
            for (i, sample) in scrape.pods.iter().enumerate() {
                let Some(pod) = pods.get(sample.namespace, sample.name) else { continue };
                for (name, value) in [(&NODE, &pod.node_name), (&POD_IP, &pod.pod_ip), (&HOST_IP, &pod.host_ip)] {
                    if let Some(value) = value {
                        out.add_pod_label(i, name.clone(), value.clone());
                    }
                }
            }
        }
        if !scrape.nodes.is_empty() {
            // The nodes alone go without: the pods' labels above are kept (a scrape's first
            // batch carries the nodes, and its pods would otherwise differ from the rest).
            let nodes = match cluster.nodes().await {
                Ok(nodes) => nodes,
                Err(e) => {
                    out.incomplete(e);
                    return Ok(out);
                }
            };
            for (i, sample) in scrape.nodes.iter().enumerate() {
                if let Some(ip) = nodes.get(sample.name).and_then(|n| n.internal_ip.clone()) {
                    out.add_node_label(i, INTERNAL_IP.clone(), ip);
                }
            }
        }
        Ok(out)
    }

    /// Every scrape reads both lists: both start at once.
    async fn warm_up(&self, cluster: &dyn Cluster) -> Result<(), EnrichError> {
        let (pods, nodes) = futures_lite::future::zip(cluster.pods(), cluster.nodes()).await;
        pods.and(nodes).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, pod_labels, scrape_lists};
    use msp_core::Scrape;

    #[async_std::test]
    async fn joins_on_namespace_and_name() {
        let cluster = cluster(
            r#"{"items":[
              {"metadata":{"name":"web","namespace":"a"},"spec":{"nodeName":"n1"},"status":{"podIP":"10.0.0.1","hostIP":"192.0.2.1"}},
              {"metadata":{"name":"web","namespace":"b"},"spec":{"nodeName":"n2"},"status":{"podIP":"10.0.0.2","hostIP":"192.0.2.2"}}]}"#,
            r#"{"items":[{"metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":"192.0.2.1"}]}}]}"#,
            r#"{"items":[]}"#,
        );
        let (pods, nodes) = scrape_lists(&["a/web", "b/web", "c/gone"], &["n1", "n2"]);
        let scrape = Scrape::new(&pods, &nodes);
        let e = NodeEnricher.enrich(&scrape, &cluster).await.expect("enrich");
        assert_eq!(pod_labels(&e, 0), [("node", "n1"), ("pod_ip", "10.0.0.1"), ("host_ip", "192.0.2.1")]);
        assert_eq!(pod_labels(&e, 1), [("node", "n2"), ("pod_ip", "10.0.0.2"), ("host_ip", "192.0.2.2")]);
        assert!(e.pod(2).is_empty(), "a pod gone from the pod list gets no labels");
        assert_eq!(e.node(0)[0].0.as_str(), "internal_ip");
        assert!(e.node(1).is_empty());
    }

    /// A scrape's first batch carries the nodes: without them, its pods are labelled as the
    /// others are.
    #[async_std::test]
    async fn nodes_refused_cost_only_the_nodes_labels() {
        let cluster = crate::testing::NodesRefused(cluster(
            r#"{"items":[{"metadata":{"name":"web","namespace":"a"},"spec":{"nodeName":"n1"},"status":{"podIP":"10.0.0.1"}}]}"#,
            r#"{"items":[]}"#,
            r#"{"items":[]}"#,
        ));
        let (pods, nodes) = scrape_lists(&["a/web"], &["n1"]);
        let scrape = Scrape::new(&pods, &nodes);
        let e = NodeEnricher.enrich(&scrape, &cluster).await.expect("labels, not an error");
        assert_eq!(pod_labels(&e, 0), [("node", "n1"), ("pod_ip", "10.0.0.1")]);
        assert!(e.node(0).is_empty());
        let why = e.incompleteness().expect("incomplete");
        assert_eq!(why.to_string(), "nodes: HTTP 403");
        assert!(msp_core::ReadRefused::caused(why), "still the refusal, for the memo");
    }

    #[async_std::test]
    async fn warms_up_both_lists() {
        let reads = crate::testing::Reads(Default::default(), Default::default());
        NodeEnricher.warm_up(&reads).await.expect("warm");
        assert_eq!(reads.taken(), ["pods", "nodes"]);
    }
}
