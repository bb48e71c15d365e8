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

/// A cluster whose controllers of one kind cannot be read (a 403 on ReplicaSets).
pub struct Refusing(pub StaticCluster, pub msp_core::ControllerKind);

#[msp_core::async_trait]
impl msp_core::Cluster for Refusing {
    async fn pods(&self) -> Result<Arc<msp_core::Pods>, msp_core::SourceError> {
        self.0.pods().await
    }
    async fn nodes(&self) -> Result<Arc<msp_core::Nodes>, msp_core::SourceError> {
        self.0.nodes().await
    }
    async fn controllers(
        &self,
        kind: msp_core::ControllerKind,
    ) -> Result<Arc<msp_core::Controllers>, msp_core::SourceError> {
        if kind == self.1 {
            return Err("HTTP 403".into());
        }
        self.0.controllers(kind).await
    }
}

/// A cluster whose nodes cannot be read.
pub struct NodesRefused(pub StaticCluster);

#[msp_core::async_trait]
impl msp_core::Cluster for NodesRefused {
    async fn pods(&self) -> Result<Arc<msp_core::Pods>, msp_core::SourceError> {
        self.0.pods().await
    }
    async fn nodes(&self) -> Result<Arc<msp_core::Nodes>, msp_core::SourceError> {
        Err(Box::new(msp_core::ReadRefused::new("nodes: HTTP 403")))
    }
    async fn controllers(
        &self,
        kind: msp_core::ControllerKind,
    ) -> Result<Arc<msp_core::Controllers>, msp_core::SourceError> {
        self.0.controllers(kind).await
    }
}

/// A cluster that notes what is read of it, in order: `pods`, `nodes`, `ReplicaSet`,
/// `Job`.
pub struct Reads(pub StaticCluster, pub std::sync::Mutex<Vec<String>>);

impl Reads {
    /// What was read, in order.
    pub fn taken(&self) -> Vec<String> {
        self.1.lock().expect("reads").clone()
    }

    fn note(&self, what: &str) {
        self.1.lock().expect("reads").push(what.to_owned());
    }
}

#[msp_core::async_trait]
impl msp_core::Cluster for Reads {
    async fn pods(&self) -> Result<Arc<msp_core::Pods>, msp_core::SourceError> {
        self.note("pods");
        self.0.pods().await
    }
    async fn nodes(&self) -> Result<Arc<msp_core::Nodes>, msp_core::SourceError> {
        self.note("nodes");
        self.0.nodes().await
    }
    async fn controllers(
        &self,
        kind: msp_core::ControllerKind,
    ) -> Result<Arc<msp_core::Controllers>, msp_core::SourceError> {
        self.note(kind.kind());
        self.0.controllers(kind).await
    }
}
