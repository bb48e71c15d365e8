//! What enrichers know about the cluster: snapshots of pods, nodes and controllers.
//!
//! A [`Cluster`] hands out shared, immutable snapshots. The server implements it over the
//! Kubernetes API; one snapshot serves every enricher and every pod of a scrape, and tests
//! can implement it with fixed data ([`StaticCluster`]). The snapshots are built from the
//! API's objects by [`crate::objects`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

/// An error from a metadata source, kept opaque for embedders' own sources.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A shared string.
pub type Text = Arc<str>;

/// An object's labels, sorted by key; objects with the same labels share one copy (see
/// [`Interner::labels`](crate::Interner::labels)).
pub type LabelSet = Arc<[(Text, Text)]>;

/// Objects keyed by `(namespace, name)`; looked up by `&str` without allocating.
#[derive(Debug, Clone)]
pub struct Namespaced<T> {
    by_namespace: HashMap<Text, HashMap<Text, T>>,
    len: usize,
}

impl<T> Default for Namespaced<T> {
    fn default() -> Self {
        Namespaced { by_namespace: HashMap::new(), len: 0 }
    }
}

impl<T> Namespaced<T> {
    /// The object at `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.by_namespace.get(namespace)?.get(name)
    }

    /// The object at `namespace/name`, with the name as kept (to share it).
    pub fn get_key_value(&self, namespace: &str, name: &str) -> Option<(&Text, &T)> {
        self.by_namespace.get(namespace)?.get_key_value(name)
    }

    /// Adds or replaces an object; returns the one it replaced.
    pub fn insert(&mut self, namespace: Text, name: Text, value: T) -> Option<T> {
        let old = self.by_namespace.entry(namespace).or_default().insert(name, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes an object.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<T> {
        let names = self.by_namespace.get_mut(namespace)?;
        let old = names.remove(name);
        if names.is_empty() {
            self.by_namespace.remove(namespace);
        }
        self.len -= usize::from(old.is_some());
        old
    }

    /// Keeps only the objects for which `keep(namespace, name, object)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str, &mut T) -> bool) {
        let mut len = 0;
        self.by_namespace.retain(|ns, names| {
            names.retain(|name, v| keep(ns, name, v));
            len += names.len();
            !names.is_empty()
        });
        self.len = len;
    }

    /// The objects of one namespace (`""` for cluster-scoped ones).
    pub fn iter_namespace<'s>(&'s self, namespace: &str) -> impl Iterator<Item = (&'s Text, &'s T)> + 's {
        self.by_namespace.get(namespace).into_iter().flat_map(|m| m.iter())
    }

    /// Every object, with its namespace and name, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Text, &Text, &T)> + '_ {
        self.by_namespace.iter().flat_map(|(ns, names)| names.iter().map(move |(name, v)| (ns, name, v)))
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A controller owner reference (`ownerReferences[]` with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `ReplicaSet`, `Job`, `DaemonSet`, `Node`...
    pub kind: Text,
    /// The owner's name (in the same namespace, but for cluster-scoped kinds like Node).
    pub name: Text,
}

/// What enrichers use of a Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    /// `spec.nodeName`.
    pub node_name: Option<Text>,
    /// `status.podIP`.
    pub pod_ip: Option<Text>,
    /// `status.hostIP`.
    pub host_ip: Option<Text>,
    /// `metadata.labels`, sorted by key.
    pub labels: LabelSet,
    /// The controller owner reference.
    pub controller: Option<Owner>,
    /// A mirror pod (a static pod the kubelet runs), by its `kubernetes.io/config.mirror`
    /// annotation.
    pub mirror: bool,
}

/// What enrichers use of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The first `InternalIP` in `status.addresses`.
    pub internal_ip: Option<Text>,
    /// `metadata.labels`, sorted by key.
    pub labels: LabelSet,
}

/// The controllers whose owners the `owner` enricher follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerKind {
    /// `apps/v1` ReplicaSet (owned by a Deployment).
    ReplicaSet,
    /// `batch/v1` Job (owned by a CronJob).
    Job,
}

impl ControllerKind {
    /// The `kind` string in owner references.
    pub fn kind(self) -> &'static str {
        match self {
            ControllerKind::ReplicaSet => "ReplicaSet",
            ControllerKind::Job => "Job",
        }
    }

    /// The kind for an owner reference's `kind`, if we follow it.
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "ReplicaSet" => Some(ControllerKind::ReplicaSet),
            "Job" => Some(ControllerKind::Job),
            _ => None,
        }
    }
}

impl fmt::Display for ControllerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())
    }
}

/// Pods by `(namespace, name)`.
pub type Pods = Namespaced<PodInfo>;
/// Nodes by name.
pub type Nodes = HashMap<Text, NodeInfo>;
/// For each ReplicaSet or Job, its own controller (a Deployment, a CronJob), if any.
pub type Controllers = Namespaced<Option<Owner>>;

/// A source of cluster metadata snapshots.
///
/// Implementations decide freshness (the server lists per scrape, or keeps watch-backed
/// caches) but must never serve data older than a few seconds without saying so by an error.
/// msp-server polls these calls on async-std's threads, as it does [`Enricher`](crate::Enricher)'s.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// All pods.
    async fn pods(&self) -> Result<Arc<Pods>, SourceError>;
    /// All nodes.
    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError>;
    /// All controllers of one kind, with their own controller.
    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError>;

    /// The sources that have not yet been read once (caches still filling), for
    /// readiness. A fixed cluster has none.
    fn syncing(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_index_counts() {
        let mut idx = Namespaced::default();
        assert!(idx.insert("a".into(), "x".into(), 1).is_none());
        assert_eq!(idx.insert("a".into(), "x".into(), 2), Some(1));
        idx.insert("b".into(), "x".into(), 3);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.remove("a", "x"), Some(2));
        assert_eq!(idx.remove("a", "x"), None);
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.get("b", "x"), Some(&3));
        idx.insert("b".into(), "y".into(), 4);
        let mut all: Vec<_> = idx.iter().map(|(ns, name, v)| (ns.to_string(), name.to_string(), *v)).collect();
        all.sort();
        assert_eq!(all, [("b".into(), "x".into(), 3), ("b".into(), "y".into(), 4)]);
    }
}

/// A [`Cluster`] with fixed snapshots: for tests, and for embedders whose metadata comes
/// from elsewhere. Every controller kind shares one map.
#[derive(Debug, Clone, Default)]
pub struct StaticCluster {
    /// Pods.
    pub pods: Arc<Pods>,
    /// Nodes.
    pub nodes: Arc<Nodes>,
    /// ReplicaSets and Jobs, by `(namespace, name)`.
    pub controllers: Arc<Controllers>,
}

#[async_trait]
impl Cluster for StaticCluster {
    async fn pods(&self) -> Result<Arc<Pods>, SourceError> {
        Ok(self.pods.clone())
    }
    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError> {
        Ok(self.nodes.clone())
    }
    async fn controllers(&self, _kind: ControllerKind) -> Result<Arc<Controllers>, SourceError> {
        Ok(self.controllers.clone())
    }
}
