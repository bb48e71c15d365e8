//! What enrichers know about the cluster: snapshots of pods, nodes and controllers.
//!
//! A [`Cluster`] hands out shared, immutable snapshots. The server implements it over the
//! Kubernetes API; one snapshot serves every enricher and every pod of a scrape, and tests
//! can implement it with fixed data. The object parsers here read the few fields enrichers
//! use from `Pod`, `Node` and any object's metadata (`PartialObjectMetadata` is enough for
//! ReplicaSets and Jobs).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

/// An error from a metadata source, kept opaque for embedders' own sources.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A shared string.
pub type Text = Arc<str>;

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

    /// The object at `namespace/name`, to change it.
    pub fn get_mut(&mut self, namespace: &str, name: &str) -> Option<&mut T> {
        self.by_namespace.get_mut(namespace)?.get_mut(name)
    }

    /// The objects of one namespace (`""` for cluster-scoped ones).
    pub fn iter_namespace<'s>(&'s self, namespace: &str) -> impl Iterator<Item = (&'s Text, &'s T)> + 's {
        self.by_namespace.get(namespace).into_iter().flat_map(|m| m.iter())
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
    pub labels: Vec<(Text, Text)>,
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
    pub labels: Vec<(Text, Text)>,
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
#[async_trait]
pub trait Cluster: Send + Sync {
    /// All pods.
    async fn pods(&self) -> Result<Arc<Pods>, SourceError>;
    /// All nodes.
    async fn nodes(&self) -> Result<Arc<Nodes>, SourceError>;
    /// All controllers of one kind, with their own controller.
    async fn controllers(&self, kind: ControllerKind) -> Result<Arc<Controllers>, SourceError>;
}

// ---- Kubernetes object shapes (only the fields read) ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OwnerReference<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(default)]
    controller: Option<bool>,
}

/// `ObjectMeta`, the fields enrichers read.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(borrow, default)]
    owner_references: Option<Vec<OwnerReference<'a>>>,
}

impl ObjectMeta<'_> {
    /// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
    pub fn key(&self) -> Option<(Text, Text)> {
        let name = self.name.as_deref().filter(|n| !n.is_empty())?;
        Some((self.namespace.as_deref().unwrap_or("").into(), name.into()))
    }

    fn controller(&self) -> Option<Owner> {
        let refs = self.owner_references.as_deref()?;
        let r = refs.iter().find(|r| r.controller == Some(true))?;
        Some(Owner { kind: r.kind.as_deref()?.into(), name: r.name.as_deref()?.into() })
    }

    fn sorted_labels(&self) -> Vec<(Text, Text)> {
        let mut labels: Vec<(Text, Text)> =
            self.labels.iter().flatten().map(|(k, v)| (Text::from(k.as_str()), Text::from(v.as_str()))).collect();
        labels.sort();
        labels
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec<'a> {
    #[serde(borrow, default)]
    node_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodStatus<'a> {
    #[serde(borrow, default, rename = "podIP")]
    pod_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "hostIP")]
    host_ip: Option<Cow<'a, str>>,
}

/// A Pod object, the fields enrichers read.
#[derive(Deserialize, Default)]
pub struct PodObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    pub metadata: ObjectMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
    #[serde(borrow, default)]
    status: Option<PodStatus<'a>>,
}

impl PodObject<'_> {
    /// The snapshot entry for this pod.
    pub fn info(&self) -> PodInfo {
        let text = |s: Option<&Cow<'_, str>>| s.filter(|s| !s.is_empty()).map(|s| Text::from(s.as_ref()));
        let status = self.status.as_ref();
        let mirror = self.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
        PodInfo {
            node_name: text(self.spec.as_ref().and_then(|s| s.node_name.as_ref())),
            pod_ip: text(status.and_then(|s| s.pod_ip.as_ref())),
            host_ip: text(status.and_then(|s| s.host_ip.as_ref())),
            labels: self.metadata.sorted_labels(),
            controller: self.metadata.controller(),
            mirror,
        }
    }
}

#[derive(Deserialize)]
struct NodeAddress<'a> {
    #[serde(borrow, rename = "type", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    address: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
struct NodeStatus<'a> {
    #[serde(borrow, default)]
    addresses: Option<Vec<NodeAddress<'a>>>,
}

/// A Node object, the fields enrichers read.
#[derive(Deserialize, Default)]
pub struct NodeObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    pub metadata: ObjectMeta<'a>,
    #[serde(borrow, default)]
    status: Option<NodeStatus<'a>>,
}

impl NodeObject<'_> {
    /// The snapshot entry for this node.
    pub fn info(&self) -> NodeInfo {
        let addresses = self.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
        let internal_ip = addresses
            .iter()
            .find(|a| a.kind.as_deref() == Some("InternalIP"))
            .and_then(|a| a.address.as_deref())
            .map(Text::from);
        NodeInfo { internal_ip, labels: self.metadata.sorted_labels() }
    }
}

/// Any object read as metadata only (`PartialObjectMetadata`, or a full object).
#[derive(Deserialize, Default)]
pub struct MetadataObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    pub metadata: ObjectMeta<'a>,
}

impl MetadataObject<'_> {
    /// This object's own controller.
    pub fn controller(&self) -> Option<Owner> {
        self.metadata.controller()
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct ObjectList<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

/// Parses a `PodList` into a snapshot.
pub fn pods_from_list(json: &[u8]) -> Result<Pods, serde_json::Error> {
    let list: ObjectList<PodObject<'_>> = serde_json::from_slice(json)?;
    let mut pods = Pods::default();
    for pod in &list.items {
        if let Some((ns, name)) = pod.metadata.key() {
            pods.insert(ns, name, pod.info());
        }
    }
    Ok(pods)
}

/// Parses a `NodeList` into a snapshot.
pub fn nodes_from_list(json: &[u8]) -> Result<Nodes, serde_json::Error> {
    let list: ObjectList<NodeObject<'_>> = serde_json::from_slice(json)?;
    Ok(list.items.iter().filter_map(|n| Some((n.metadata.key()?.1, n.info()))).collect())
}

/// Parses a list of ReplicaSets or Jobs (full or `PartialObjectMetadataList`).
pub fn controllers_from_list(json: &[u8]) -> Result<Controllers, serde_json::Error> {
    let list: ObjectList<MetadataObject<'_>> = serde_json::from_slice(json)?;
    let mut out = Controllers::default();
    for o in &list.items {
        if let Some((ns, name)) = o.metadata.key() {
            out.insert(ns, name, o.controller());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pods_nodes_and_controllers() {
        let pods = pods_from_list(
            br#"{"items":[
              {"metadata":{"name":"web-1","namespace":"a","labels":{"b":"2","a":"1"},
                 "ownerReferences":[{"kind":"Other","name":"x"},{"kind":"ReplicaSet","name":"web-7d","controller":true}]},
               "spec":{"nodeName":"n1"},"status":{"podIP":"10.0.0.5","hostIP":"192.0.2.1"}},
              {"metadata":{"name":"web-1","namespace":"b","annotations":{"kubernetes.io/config.mirror":"abc"}},
               "spec":{"nodeName":"n2"},"status":{}},
              {"metadata":{"name":"pending","namespace":"a"},"spec":null,"status":null},
              {"metadata":{"namespace":"a"}}
            ]}"#,
        )
        .expect("pods");
        assert_eq!(pods.len(), 3);
        let p = pods.get("a", "web-1").expect("a/web-1");
        assert_eq!(p.node_name.as_deref(), Some("n1"));
        assert_eq!(p.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(p.host_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(p.labels, vec![("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert_eq!(p.controller, Some(Owner { kind: "ReplicaSet".into(), name: "web-7d".into() }));
        let b = pods.get("b", "web-1").expect("b/web-1");
        assert!(b.mirror && b.pod_ip.is_none() && b.controller.is_none());
        assert_eq!(pods.get("a", "pending"), Some(&PodInfo::default()));

        let nodes = nodes_from_list(
            br#"{"items":[{"metadata":{"name":"n1","labels":{"topology.kubernetes.io/zone":"z1"}},
               "status":{"addresses":[{"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"192.0.2.1"}]}}]}"#,
        )
        .expect("nodes");
        assert_eq!(nodes["n1"].internal_ip.as_deref(), Some("192.0.2.1"));

        let rs = controllers_from_list(
            br#"{"kind":"PartialObjectMetadataList","items":[
              {"metadata":{"name":"web-7d","namespace":"a","ownerReferences":[{"kind":"Deployment","name":"web","controller":true}]}},
              {"metadata":{"name":"lone","namespace":"a"}}]}"#,
        )
        .expect("rs");
        assert_eq!(rs.get("a", "web-7d"), Some(&Some(Owner { kind: "Deployment".into(), name: "web".into() })));
        assert_eq!(rs.get("a", "lone"), Some(&None));
    }

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
