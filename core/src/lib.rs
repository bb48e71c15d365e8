//! # msp-core
//!
//! The I/O-free heart of metrics-server-prom: Kubernetes quantities, the metrics API model,
//! the Prometheus writer, and the [`Enricher`] extension point.
//!
//! ```
//! use msp_core::{render, PodMetricsList, RenderOptions, Scrape};
//!
//! let pods = r#"{"kind":"PodMetricsList","items":[{"metadata":{"name":"coredns-78fcd69978-f6pqv",
//!   "namespace":"kube-system"},"timestamp":"2021-12-17T17:57:42Z","window":"30s",
//!   "containers":[{"name":"coredns","usage":{"cpu":"7338891n","memory":"14520Ki"}}]}]}"#;
//! // An object without `items` (a `Status`, one `PodMetrics`) is an error, not an empty list.
//! let pods = PodMetricsList::parse(pods.as_bytes()).unwrap();
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

mod cluster;
mod deflate;
mod digest;
mod duration;
mod enricher;
mod exposition;
mod glob;
mod gzip;
mod huffman;
mod intern;
mod labels;
mod list;
mod memo;
mod model;
mod namespaced;
mod objects;
mod pipeline;
mod quantity;
mod refused;
mod render;
mod scan;
mod scrape;
mod selector;
mod source;
mod swar;
mod timestamp;
mod unwind;

pub use async_trait::async_trait;
pub use cluster::{
    Cluster, ControllerKind, Controllers, LabelSet, NodeInfo, Nodes, Owner, PodInfo, Pods, SourceError, StaticCluster,
    Text,
};
pub use duration::{DurationError, GoDuration};
pub use enricher::{
    resolve_conflicts, unwritten_labels, AddedLabel, Depends, EnrichError, Enricher, Enrichment, LabelPairs, Series,
};
pub use exposition::{
    ExpositionError, Family, Format, LabelBlock, LabelName, MetricName, MetricType, NameError, Writer,
};
pub use glob::{Filter, Glob, GlobError};
pub use gzip::{compress, Gzip};
pub use intern::Interner;
pub use labels::JsonLabels;
pub use list::{List, ListItem, NodeMetricsList, PodMetricsList};
pub use memo::Memo;
pub use model::{ContainerMetrics, Metadata, NodeMetrics, PodMetrics, Str, Usage};
pub use namespaced::Namespaced;
pub use objects::{
    controllers_from_list, nodes_by_name, nodes_from_list, pods_from_list, Entry, ObjectList, WatchEvent,
};
pub use pipeline::{enrich, warm_up, CheckFuture, EnrichFuture, Enriched, Failure, Guard, Unguarded};
pub use quantity::{Quantity, QuantityError, QuantityErrorKind};
pub use refused::ReadRefused;
pub use render::{
    render, render_prepared, write_families, write_families_with, BaseLabels, Naming, PodLabels, Prepared,
    RenderOptions, NODE_RESERVED, POD_RESERVED,
};
pub use scrape::{All, ContainerSample, ItemError, NodeSample, PodSample, Scrape, Select};
pub use selector::{LabelSelector, LabelSelectorError};
pub use source::MetricsSource;
pub use timestamp::{format_http_date, format_rfc3339_ms, parse_rfc3339_ms};
pub use unwind::panic_message;
