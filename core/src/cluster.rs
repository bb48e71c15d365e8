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

use crate::namespaced::Namespaced;

/// An error from a metadata source, kept opaque for embedders' own sources.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A shared string.
pub type Text = Arc<str>;

/// An object's labels, sorted by key; objects with the same labels share one copy (see
/// [`Interner::labels`](crate::Interner::labels)).
pub type LabelSet = Arc<[(Text, Text)]>;

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
