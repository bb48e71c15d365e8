//! Which pods and nodes a scrape exports: namespaces by glob, a label selector the metrics
//! API applies itself, and this replica's shard.

use msp_core::{Filter, LabelSelector, Select};

use crate::shard::Shard;

/// Which pods and nodes a scrape exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Namespaces to keep (`namespaces.allow`, then `namespaces.deny`).
    pub namespaces: Filter,
    /// Passed to the metrics API as `labelSelector` on the pod list.
    pub label_selector: Option<LabelSelector>,
    /// This replica's share of the pods and nodes.
    pub shard: Shard,
}

/// Keeps the pods of namespaces in scope and this shard's pods and nodes; the scrape
/// checks nothing else.
impl Select for Scope {
    fn pod(&self, namespace: &str, name: &str) -> bool {
        (self.namespaces.keeps_all() || self.namespaces.keeps(namespace)) && self.shard.owns_pod(namespace, name)
    }

    fn node(&self, name: &str) -> bool {
        self.shard.owns_node(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::Scrape;

    #[test]
    fn keeps_only_pods_of_namespaces_in_scope() {
        let pods = serde_json::from_str(
            r#"{"items":[
              {"metadata":{"name":"a","namespace":"kube-system"},"containers":[]},
              {"metadata":{"name":"b","namespace":"shop"},"containers":[]},
              {"metadata":{"name":"c","namespace":"kube-public"},"containers":[]}]}"#,
        )
        .expect("pods");
        let nodes = Default::default();
        let scope = Scope {
            namespaces: Filter::new(&["kube-*", "shop"], &["kube-public"]).expect("filter"),
            ..Scope::default()
        };
        let scrape = Scrape::select(&pods, &nodes, &scope);
        let kept: Vec<&str> = scrape.pods.iter().map(|p| p.name).collect();
        assert_eq!(kept, ["a", "b"]);
        assert_eq!(Scrape::select(&pods, &nodes, &Scope::default()).pods.len(), 3);
    }
}
