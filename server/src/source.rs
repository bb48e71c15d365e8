//! Reading the cluster: the metrics API (v1 where served, else v1beta1), and the pod, node,
//! ReplicaSet and Job lists behind the enrichers.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use async_std::sync::Mutex;
use msp_core::cluster::{self, Controllers, Nodes, Pods, SourceError};
use msp_core::{async_trait, Cluster, ControllerKind};

use crate::kube::{KubeClient, KubeError};

const UNKNOWN: u8 = 0;
const V1: u8 = 1;
const V1BETA1: u8 = 2;

/// `metrics.k8s.io`, at the newest version the server has.
#[derive(Debug)]
pub struct MetricsApi {
    client: Arc<KubeClient>,
    version: AtomicU8,
}

impl MetricsApi {
    /// Over `client`; the version is found on first use.
    pub fn new(client: Arc<KubeClient>) -> Self {
        MetricsApi { client, version: AtomicU8::new(UNKNOWN) }
    }

    /// The version in use, once known.
    pub fn version(&self) -> Option<&'static str> {
        match self.version.load(Ordering::Relaxed) {
            V1 => Some("v1"),
            V1BETA1 => Some("v1beta1"),
            _ => None,
        }
    }

    /// Lists `pods` or `nodes`. Tries v1 first; on 404 uses v1beta1 from then on. A 404 on
    /// the version in use sends the next call back to trying v1.
    pub async fn list(&self, resource: &'static str) -> Result<Vec<u8>, KubeError> {
        let known = self.version.load(Ordering::Relaxed);
        let first = if known == V1BETA1 { V1BETA1 } else { V1 };
        let path = |v: u8| format!("/apis/metrics.k8s.io/{}/{resource}", if v == V1 { "v1" } else { "v1beta1" });
        let metric = if resource == "pods" { "pod_metrics" } else { "node_metrics" };
        match self.client.get(metric, &path(first)).await {
            Ok(body) => {
                self.version.store(first, Ordering::Relaxed);
                Ok(body)
            }
            Err(e) if e.status() == Some(404) && first == V1 => {
                let body = self.client.get(metric, &path(V1BETA1)).await?;
                if known != V1BETA1 {
                    log::info!("metrics.k8s.io/v1 is not served; using v1beta1");
                }
                self.version.store(V1BETA1, Ordering::Relaxed);
                Ok(body)
            }
            Err(e) => {
                if e.status() == Some(404) {
                    self.version.store(UNKNOWN, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// A [`Cluster`] that lists from the API server, at most once per resource for its
/// lifetime: make one per scrape, so every enricher shares each read.
pub struct ListCluster {
    client: Arc<KubeClient>,
    pods: Mutex<Option<Arc<Pods>>>,
    nodes: Mutex<Option<Arc<Nodes>>>,
    replicasets: Mutex<Option<Arc<Controllers>>>,
    jobs: Mutex<Option<Arc<Controllers>>>,
}

impl ListCluster {
    /// For one scrape.
    pub fn new(client: Arc<KubeClient>) -> Self {
        ListCluster {
            client,
            pods: Mutex::new(None),
            nodes: Mutex::new(None),
            replicasets: Mutex::new(None),
            jobs: Mutex::new(None),
        }
    }
}

async fn once<T>(
    slot: &Mutex<Option<Arc<T>>>,
    client: &KubeClient,
    resource: &str,
    path: &str,
    parse: fn(&[u8]) -> Result<T, serde_json::Error>,
    metadata_only: bool,
) -> Result<Arc<T>, SourceError> {
    let mut slot = slot.lock().await;
    if let Some(v) = &*slot {
        return Ok(v.clone());
    }
    let body =
        if metadata_only { client.get_metadata(resource, path).await? } else { client.get(resource, path).await? };
    let value = Arc::new(parse(&body).map_err(|e| format!("GET {path}: invalid JSON: {e}"))?);
    *slot = Some(value.clone());
    Ok(value)
}

/// Lists from the API server's watch cache (cheaper for etcd; may lag by moments).
const METADATA_ONLY: &str = "?resourceVersion=0";

#[async_trait]
impl Cluster for ListCluster {
    async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
        once(&self.pods, &self.client, "pods", "/api/v1/pods?resourceVersion=0", cluster::pods_from_list, false).await
    }

    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
        once(&self.nodes, &self.client, "nodes", "/api/v1/nodes?resourceVersion=0", cluster::nodes_from_list, false)
            .await
    }

    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
        let (slot, resource, path) = match kind {
            ControllerKind::ReplicaSet => (&self.replicasets, "replicasets", "/apis/apps/v1/replicasets"),
            ControllerKind::Job => (&self.jobs, "jobs", "/apis/batch/v1/jobs"),
        };
        once(slot, &self.client, resource, &format!("{path}{METADATA_ONLY}"), cluster::controllers_from_list, true)
            .await
    }
}
