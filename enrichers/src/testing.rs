//! Helpers for the enrichers' unit tests.

use std::sync::Arc;

use msp_core::{controllers_from_list, nodes_from_list, pods_from_list};
use msp_core::{Enrichment, StaticCluster};
use msp_core::{NodeMetricsList, PodMetricsList};

/// A fixed cluster from PodList, NodeList and controller list JSON.
pub fn cluster(pods: &str, nodes: &str, controllers: &str) -> StaticCluster {
    StaticCluster {
        pods: Arc::new(pods_from_list(pods.as_bytes()).expect("pods")),
        nodes: Arc::new(nodes_from_list(nodes.as_bytes()).expect("nodes")),
        controllers: Arc::new(controllers_from_list(controllers.as_bytes()).expect("controllers")),
    }
}

/// Metrics lists for `ns/name` pods (one container each) and named nodes.
pub fn scrape_lists(pods: &[&str], nodes: &[&str]) -> (PodMetricsList<'static>, NodeMetricsList<'static>) {
    let pods: Vec<String> = pods
        .iter()
        .map(|p| {
            let (ns, name) = p.split_once('/').expect("ns/name");
            format!(r#"{{"metadata":{{"name":"{name}","namespace":"{ns}"}},"containers":[{{"name":"c","usage":{{"cpu":"1m","memory":"1Ki"}}}}]}}"#)
        })
        .collect();
    let nodes: Vec<String> = nodes
        .iter()
        .map(|n| format!(r#"{{"metadata":{{"name":"{n}"}},"usage":{{"cpu":"1","memory":"1Ki"}}}}"#))
        .collect();
    let pods: &'static str = Box::leak(format!(r#"{{"items":[{}]}}"#, pods.join(",")).into_boxed_str());
    let nodes: &'static str = Box::leak(format!(r#"{{"items":[{}]}}"#, nodes.join(",")).into_boxed_str());
    (serde_json::from_str(pods).expect("pods"), serde_json::from_str(nodes).expect("nodes"))
}

/// A pod's labels as `(name, value)` strings.
pub fn pod_labels(e: &Enrichment, index: usize) -> Vec<(&str, &str)> {
    e.pod(index).iter().map(|(n, v)| (n.as_str(), &**v)).collect()
}
