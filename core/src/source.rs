//! Where usage comes from: metrics-server's two lists, as the JSON it sends.
//!
//! The server reads them from the Kubernetes API (`metrics.k8s.io`); an embedder can read
//! them from anywhere (files, another cache, a test fixture) by implementing
//! [`MetricsSource`].

use async_trait::async_trait;

use crate::cluster::SourceError;

/// A source of `PodMetricsList` and `NodeMetricsList` JSON.
#[async_trait]
pub trait MetricsSource: Send + Sync {
    /// The `PodMetricsList`, restricted to pods matching `label_selector` when given.
    async fn pod_metrics(&self, label_selector: Option<&str>) -> Result<Vec<u8>, SourceError>;

    /// The `NodeMetricsList`.
    async fn node_metrics(&self) -> Result<Vec<u8>, SourceError>;

    /// Where it reads from, for people (the landing page, logs). Never holds credentials.
    fn describe(&self) -> String;

    /// Takes back the bodies [`MetricsSource::pod_metrics`] and
    /// [`MetricsSource::node_metrics`] returned, once the scrape is done with them, so the
    /// next reads can reuse their memory. The default drops them.
    fn recycle(&self, pod_metrics: Option<Vec<u8>>, node_metrics: Option<Vec<u8>>) {
        drop((pod_metrics, node_metrics));
    }
}
