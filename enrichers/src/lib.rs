//! # msp-enrichers
//!
//! The built-in [`Enricher`](msp_core::Enricher)s of metrics-server-prom, chosen by name in the configuration:
//!
//! | name | adds |
//! |---|---|
//! | `node` | `node`, `pod_ip`, `host_ip` on pod series; `internal_ip` on node series |
//! | `labels` | `label_<key>` for pod labels on pod series and node labels on node series |
//! | `owner` | `owner_kind`, `owner_name`, `workload_kind`, `workload_name` on pod series |
//!
//! Each is a plain [`Enricher`](msp_core::Enricher); the server's registry maps the names
//! above to them, and gives `labels` its `[labels]` section of the configuration.
//!
//! ```
//! use msp_core::Enricher;
//! use msp_enrichers::{LabelsEnricher, LabelsOptions, NodeEnricher};
//!
//! assert_eq!(NodeEnricher.name(), "node");
//! let only_app = LabelsOptions { allow: vec!["app*".into()], deny: vec![] };
//! assert_eq!(LabelsEnricher::new(only_app).unwrap().name(), "labels");
//! ```

mod labels;
mod node;
mod owner;
#[cfg(test)]
mod testing;

pub use labels::{LabelsEnricher, LabelsOptions, VOLATILE};
pub use node::NodeEnricher;
pub use owner::OwnerEnricher;

/// The enrichers used when the configuration names none, in order.
pub const DEFAULT: &[&str] = &["node", "labels", "owner"];
