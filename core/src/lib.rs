//! # msp-core
//!
//! The I/O-free heart of metrics-server-prom: Kubernetes quantities, the metrics API model,
//! the Prometheus writer, and the [`Enricher`] extension point.
//!
//! ```
//! use msp_core::{render, RenderOptions, Scrape};
//!
//! let pods = r#"{"kind":"PodMetricsList","items":[{"metadata":{"name":"coredns-78fcd69978-f6pqv",
//!   "namespace":"kube-system"},"timestamp":"2021-12-17T17:57:42Z","window":"30s",
//!   "containers":[{"name":"coredns","usage":{"cpu":"7338891n","memory":"14520Ki"}}]}]}"#;
//! let pods = serde_json::from_str(pods).unwrap();
//! let nodes = Default::default();
//! let scrape = Scrape::new(&pods, &nodes);
//!
//! let mut out = String::new();
//! render(&mut out, &scrape, &[], &RenderOptions::default()).unwrap();
//! assert!(out.contains(
//!     "kube_metrics_server_container_cpu_usage_cores{namespace=\"kube-system\",\
//!      pod=\"coredns-78fcd69978-f6pqv\",container=\"coredns\"} 0.007338891\n"));
//! assert!(out.contains("container=\"coredns\"} 14868480\n"));
//! ```

pub mod cluster;
pub mod duration;
pub mod enricher;
pub mod exposition;
pub mod glob;
pub mod memo;
pub mod model;
pub mod quantity;
pub mod render;
pub mod scrape;
pub mod timestamp;

pub use async_trait::async_trait;
pub use cluster::{Cluster, ControllerKind, NodeInfo, Owner, PodInfo, SourceError, StaticCluster};
pub use enricher::{AddedLabel, Depends, EnrichError, Enricher, Enrichment, Labels, Series};
pub use exposition::{Format, LabelName, MetricName, MetricType, Writer};
pub use memo::Memo;
pub use quantity::{Quantity, QuantityError};
pub use render::{prepare, render, render_prepared, Naming, Prepared, RenderOptions};
pub use scrape::{ItemError, Scrape};
