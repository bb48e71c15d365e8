//! Where usage comes from: metrics-server's two lists, as the JSON it sends.
//!
//! The server reads them from the Kubernetes API (`metrics.k8s.io`); an embedder can read
//! them from anywhere (files, another cache, a test fixture) by implementing
//! [`MetricsSource`].

use async_trait::async_trait;

use crate::cluster::SourceError;

/// A source of `PodMetricsList` and `NodeMetricsList` JSON (lists: one `NodeMetrics` object
/// is no list, and fails the read).
///
/// A scrape with a deadline abandons a read that runs past it (the list is then down);
/// one without (a request without `X-Prometheus-Scrape-Timeout-Seconds`, or
/// `Exporter::scrape(format, None)`) waits as long as the read does, so a source bounds its
/// own time, as the built-in client does with `kubernetes.timeout`. msp-server polls these
/// calls on async-std's threads, as it does [`Enricher`](crate::Enricher)'s.
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
