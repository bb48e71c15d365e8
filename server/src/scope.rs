//! Which pods and nodes a scrape exports: namespaces by glob, a label selector the metrics
//! API applies itself, and this replica's shard.

use msp_core::{Filter, Scrape};

use crate::shard::Shard;

/// Which pods and nodes a scrape exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Namespaces to keep (`namespaces.allow`, then `namespaces.deny`).
    pub namespaces: Filter,
    /// Passed to the metrics API as `labelSelector` on the pod list.
    pub label_selector: Option<String>,
    /// This replica's share of the pods and nodes.
    pub shard: Shard,
}

impl Scope {
    /// Drops the pods of namespaces outside the scope, and the pods and nodes of other
    /// shards.
    pub fn apply(&self, scrape: &mut Scrape<'_>) {
        if !self.namespaces.keeps_all() {
            scrape.pods.retain(|p| self.namespaces.keeps(p.namespace));
        }
        if self.shard.total > 1 {
            scrape.pods.retain(|p| self.shard.owns_pod(p.namespace, p.name));
            scrape.nodes.retain(|n| self.shard.owns_node(n.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut scrape = Scrape::new(&pods, &nodes);
        let scope = Scope {
            namespaces: Filter::new(&["kube-*", "shop"], &["kube-public"]).expect("filter"),
            ..Scope::default()
        };
        scope.apply(&mut scrape);
        let kept: Vec<&str> = scrape.pods.iter().map(|p| p.name).collect();
        assert_eq!(kept, ["a", "b"]);

        let mut all = Scrape::new(&pods, &nodes);
        Scope::default().apply(&mut all);
        assert_eq!(all.pods.len(), 3);
    }
}
