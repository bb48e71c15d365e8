//! The metrics API, at v1 where served, else v1beta1: the server's [`MetricsSource`].
//! (Metadata for enrichers comes from the watch-backed caches in [`crate::cache`]; the
//! metrics API has no watch.)

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use msp_core::{async_trait, MetricsSource, SourceError};

use crate::kube::{BodySlot, KubeClient, KubeError};

const UNKNOWN: u8 = 0;
const V1: u8 = 1;
const V1BETA1: u8 = 2;

/// `metrics.k8s.io`, at the newest version the server has.
#[derive(Debug)]
pub struct MetricsApi {
    client: Arc<KubeClient>,
    version: AtomicU8,
    /// The last pod and node metrics bodies, given back, to read the next ones into.
    spare: [BodySlot; 2],
}

impl MetricsApi {
    /// Over `client`; the version is found on first use.
    pub fn new(client: Arc<KubeClient>) -> Self {
        MetricsApi { client, version: AtomicU8::new(UNKNOWN), spare: Default::default() }
    }

    /// Lists `pods` or `nodes`. Tries v1 first; on 404 uses v1beta1 from then on. A 404 on
    /// the version in use sends the next call back to trying v1.
    async fn list(&self, resource: &'static str, query: &str) -> Result<Vec<u8>, KubeError> {
        let known = self.version.load(Ordering::Relaxed);
        let first = if known == V1BETA1 { V1BETA1 } else { V1 };
        let path = |v: u8| format!("/apis/metrics.k8s.io/{}/{resource}{query}", if v == V1 { "v1" } else { "v1beta1" });
        let metric = if resource == "pods" { "pod_metrics" } else { "node_metrics" };
        let slot = &self.spare[usize::from(resource != "pods")];
        match self.client.get_reusing(metric, &path(first), slot).await {
            Ok(body) => {
                self.version.store(first, Ordering::Relaxed);
                Ok(body)
            }
            Err(e) if e.status() == Some(404) && first == V1 => {
                let body = self.client.get_reusing(metric, &path(V1BETA1), slot).await?;
                // The pod and node lists find this out together: the first to record it says so.
                if self.version.swap(V1BETA1, Ordering::Relaxed) != V1BETA1 {
                    log::info!("metrics.k8s.io/v1 is not served; using v1beta1");
                }
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

#[async_trait]
impl MetricsSource for MetricsApi {
    async fn pod_metrics(&self, label_selector: Option<&str>) -> Result<Vec<u8>, SourceError> {
        let query = match label_selector {
            Some(selector) => {
                let mut url =
                    http_types::Url::parse("http://encode.invalid/").unwrap_or_else(|_| unreachable!("a valid URL"));
                url.query_pairs_mut().append_pair("labelSelector", selector);
                format!("?{}", url.query().unwrap_or_default())
            }
            None => String::new(),
        };
        Ok(self.list("pods", &query).await?)
    }

    async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
        Ok(self.list("nodes", "").await?)
    }

    fn describe(&self) -> String {
        crate::kube::redacted(self.client.base())
    }

    fn recycle(&self, pod_metrics: Option<Vec<u8>>, node_metrics: Option<Vec<u8>>) {
        for (slot, body) in self.spare.iter().zip([pod_metrics, node_metrics]) {
            if let Some(body) = body {
                slot.put(body);
            }
        }
    }
}
