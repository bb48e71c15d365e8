//! # msp-enrichers
//!
//! The built-in [`Enricher`]s of metrics-server-prom, chosen by name in the configuration:
//!
//! | name | adds |
//! |---|---|
//! | `node` | `node`, `pod_ip`, `host_ip` on pod series; `internal_ip` on node series |
//! | `labels` | `label_<key>` for pod labels on pod series and node labels on node series |
//! | `owner` | `owner_kind`, `owner_name`, `workload_kind`, `workload_name` on pod series |
//!
//! ```
//! let known: Vec<&str> = msp_enrichers::KNOWN.to_vec();
//! assert!(known.contains(&"node"));
//! let node = msp_enrichers::builtin("node", &Default::default()).unwrap();
//! assert_eq!(node.name(), "node");
//! ```

use std::sync::Arc;

use msp_core::Enricher;

mod labels;
mod node;
mod owner;
#[cfg(test)]
mod testing;

pub use labels::{Labels, LabelsOptions, VOLATILE};
pub use node::Node;
pub use owner::OwnerEnricher;

/// The names of the built-in enrichers.
pub const KNOWN: &[&str] = &["node", "labels", "owner"];

/// The enrichers used when the configuration names none.
pub const DEFAULT: &[&str] = &["node", "labels", "owner"];

/// Options for the built-in enrichers, each under its own key in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `[labels]`.
    pub labels: LabelsOptions,
}

/// An invalid enricher option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(String);

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}

impl Options {
    /// Checks the options.
    pub fn new(labels: LabelsOptions) -> Result<Self, OptionsError> {
        if let Some(p) = labels.allow.iter().chain(&labels.deny).find(|p| p.is_empty()) {
            return Err(OptionsError(format!("empty pattern {p:?}")));
        }
        Ok(Options { labels })
    }
}

/// The built-in enricher called `name`, or `None` if there is none.
pub fn builtin(name: &str, options: &Options) -> Option<Arc<dyn Enricher>> {
    match name {
        "node" => Some(Arc::new(Node)),
        "labels" => Some(Arc::new(Labels::new(options.labels.clone()))),
        "owner" => Some(Arc::new(OwnerEnricher)),
        _ => None,
    }
}
