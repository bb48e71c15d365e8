//! Kubernetes objects as the API sends them, reading only the fields enrichers use: lists
//! (one page of them), watch events, and the `Pod`, `Node` and metadata-only shapes that
//! become snapshot entries. One parser serves a fixed cluster ([`pods_from_list`]) and the
//! server's watch-backed caches alike.
//!
//! Items are read one at a time: an item that does not parse is skipped alone, never the
//! whole list (the server's caches count them; [`pods_from_list`] and its kin, for a fixed
//! cluster, do not).

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cluster::{Controllers, LabelSet, NodeInfo, Nodes, Owner, PodInfo, Pods, Text};
use crate::intern::Interner;
use crate::namespaced::Namespaced;

/// A list (`PodList`, `PartialObjectMetadataList`...): its resourceVersion, its continue
/// token, and its items, not yet parsed.
#[derive(Deserialize)]
pub struct ObjectList<'a> {
    #[serde(borrow, default)]
    metadata: Option<ListMeta<'a>>,
    /// The items, each still JSON. An empty list may say `"items": null`: the API server's
    /// metadata-only lists (`PartialObjectMetadataList`, as the ReplicaSet and Job caches
    /// ask) build their items by appending to a nil slice, which Go writes as `null`.
    #[serde(borrow, default, deserialize_with = "crate::model::nullable")]
    pub items: Vec<&'a RawValue>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListMeta<'a> {
    #[serde(borrow, default)]
    resource_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "continue")]
    continue_token: Option<Cow<'a, str>>,
}

impl<'a> ObjectList<'a> {
    /// Reads the list's shape; the items stay unparsed.
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// `metadata.resourceVersion`.
    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.as_ref()?.resource_version.as_deref().filter(|v| !v.is_empty())
    }

    /// `metadata.continue`: there are more pages.
    pub fn continue_token(&self) -> Option<&str> {
        self.metadata.as_ref()?.continue_token.as_deref().filter(|v| !v.is_empty())
    }

    /// Every item that parses as a `T` entry, its repeated strings shared through
    /// `interner`; also says how many did not parse.
    pub fn entries<T: Entry>(&self, interner: &Interner) -> (Vec<(Text, Text, T)>, usize) {
        let mut bad = 0;
        let entries = self
            .items
            .iter()
            .filter_map(|item| {
                let entry = T::from_object(item.get().as_bytes(), interner);
                bad += usize::from(entry.is_none());
                entry
            })
            .collect();
        (entries, bad)
    }
}

/// One line of a watch stream.
#[derive(Deserialize)]
pub struct WatchEvent<'a> {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The object (a `Status` for `ERROR`), still JSON.
    #[serde(borrow)]
    pub object: &'a RawValue,
}

#[derive(Deserialize, Default)]
struct VersionOnly<'a> {
    #[serde(borrow, default)]
    metadata: ListMeta<'a>,
    #[serde(default)]
    code: Option<u16>,
}

impl WatchEvent<'_> {
    /// The object's `metadata.resourceVersion` (a bookmark carries only that).
    pub fn resource_version(&self) -> Option<String> {
        let o: VersionOnly<'_> = serde_json::from_str(self.object.get()).ok()?;
        o.metadata.resource_version.map(Cow::into_owned).filter(|v| !v.is_empty())
    }

    /// For a `BOOKMARK`, whether it ends the initial events of a watch that asked for them
    /// (`sendInitialEvents=true`, a streaming list): its object is annotated
    /// `k8s.io/initial-events-end: "true"`, and its resourceVersion is the state they gave.
    pub fn initial_events_end(&self) -> bool {
        #[derive(Deserialize)]
        struct Annotated<'a> {
            #[serde(borrow, default)]
            metadata: Annotations<'a>,
        }
        #[derive(Deserialize, Default)]
        struct Annotations<'a> {
            #[serde(borrow, default)]
            annotations: Option<HashMap<Cow<'a, str>, Cow<'a, str>>>,
        }
        serde_json::from_str::<Annotated<'_>>(self.object.get())
            .ok()
            .and_then(|o| o.metadata.annotations)
            .is_some_and(|a| a.get("k8s.io/initial-events-end").is_some_and(|v| v == "true"))
    }

    /// For an `ERROR` event, the `Status` code (410: the resourceVersion expired).
    pub fn status_code(&self) -> Option<u16> {
        serde_json::from_str::<VersionOnly<'_>>(self.object.get()).ok()?.code
    }
}

/// `s`, unless missing or empty.
fn present(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// What a snapshot keeps of one object, keyed by `(namespace, name)`.
pub trait Entry: Sized {
    /// The entry for one object (JSON), or `None` if it is not one (no name, bad shape);
    /// repeated strings come from `interner`.
    fn from_object(json: &[u8], interner: &Interner) -> Option<(Text, Text, Self)>;
}

impl Entry for PodInfo {
    fn from_object(json: &[u8], interner: &Interner) -> Option<(Text, Text, Self)> {
        let o: PodObject<'_> = serde_json::from_slice(json).ok()?;
        let (ns, name) = o.metadata.key(interner)?;
        Some((ns, name, o.info(interner)))
    }
}

impl Entry for NodeInfo {
    fn from_object(json: &[u8], interner: &Interner) -> Option<(Text, Text, Self)> {
        let o: NodeObject<'_> = serde_json::from_slice(json).ok()?;
        let (ns, name) = o.metadata.key(interner)?;
        Some((ns, name, o.info(interner)))
    }
}

/// A ReplicaSet or Job: its own controller, if any.
impl Entry for Option<Owner> {
    fn from_object(json: &[u8], interner: &Interner) -> Option<(Text, Text, Self)> {
        let o: MetadataObject<'_> = serde_json::from_slice(json).ok()?;
        let (ns, name) = o.metadata.key(interner)?;
        Some((ns, name, o.metadata.controller(interner)))
    }
}

fn snapshot<T: Entry>(json: &[u8]) -> Result<Namespaced<T>, serde_json::Error> {
    let mut out = Namespaced::default();
    for (ns, name, entry) in ObjectList::parse(json)?.entries::<T>(&Interner::default()).0 {
        out.insert(ns, name, entry);
    }
    Ok(out)
}

/// Parses a `PodList` into a snapshot.
pub fn pods_from_list(json: &[u8]) -> Result<Pods, serde_json::Error> {
    snapshot(json)
}

/// Parses a `NodeList` into a snapshot.
pub fn nodes_from_list(json: &[u8]) -> Result<Nodes, serde_json::Error> {
    Ok(nodes_by_name(&snapshot::<NodeInfo>(json)?))
}

/// Nodes are cluster-scoped: a namespaced store holds them under "".
pub fn nodes_by_name(store: &Namespaced<NodeInfo>) -> Nodes {
    store.iter_namespace("").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Parses a list of ReplicaSets or Jobs (full or `PartialObjectMetadataList`).
pub fn controllers_from_list(json: &[u8]) -> Result<Controllers, serde_json::Error> {
    snapshot(json)
}

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
struct ObjectMeta<'a> {
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
    fn key(&self, interner: &Interner) -> Option<(Text, Text)> {
        let name = self.name.as_deref().filter(|n| !n.is_empty())?;
        // Pod names are unique: only the namespace repeats.
        Some((interner.text(self.namespace.as_deref().unwrap_or("")), name.into()))
    }

    fn controller(&self, interner: &Interner) -> Option<Owner> {
        let refs = self.owner_references.as_deref()?;
        let r = refs.iter().find(|r| r.controller == Some(true))?;
        Some(Owner { kind: interner.text(r.kind.as_deref()?), name: interner.text(r.name.as_deref()?) })
    }

    fn sorted_labels(&self, interner: &Interner) -> LabelSet {
        let mut labels: Vec<(Text, Text)> =
            self.labels.iter().flatten().map(|(k, v)| (interner.text(k), interner.text(v))).collect();
        labels.sort();
        interner.labels(&labels)
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
struct PodObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    metadata: ObjectMeta<'a>,
    #[serde(borrow, default)]
    spec: Option<PodSpec<'a>>,
    #[serde(borrow, default)]
    status: Option<PodStatus<'a>>,
}

impl PodObject<'_> {
    /// The snapshot entry for this pod.
    fn info(&self, interner: &Interner) -> PodInfo {
        let status = self.status.as_ref();
        let mirror = self.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
        let node_name = self.spec.as_ref().and_then(|s| present(s.node_name.as_deref()));
        PodInfo {
            node_name: node_name.map(|n| interner.text(n)),
            // Pod IPs are unique: not worth a table entry.
            pod_ip: status.and_then(|s| present(s.pod_ip.as_deref())).map(Text::from),
            host_ip: status.and_then(|s| present(s.host_ip.as_deref())).map(|ip| interner.text(ip)),
            labels: self.metadata.sorted_labels(interner),
            controller: self.metadata.controller(interner),
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
struct NodeObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    metadata: ObjectMeta<'a>,
    #[serde(borrow, default)]
    status: Option<NodeStatus<'a>>,
}

impl NodeObject<'_> {
    /// The snapshot entry for this node.
    fn info(&self, interner: &Interner) -> NodeInfo {
        let addresses = self.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
        let internal_ip = addresses
            .iter()
            .find(|a| a.kind.as_deref() == Some("InternalIP"))
            .and_then(|a| a.address.as_deref())
            .map(|ip| interner.text(ip));
        NodeInfo { internal_ip, labels: self.metadata.sorted_labels(interner) }
    }
}

/// Any object read as metadata only (`PartialObjectMetadata`, or a full object).
#[derive(Deserialize, Default)]
struct MetadataObject<'a> {
    /// Its metadata.
    #[serde(borrow, default)]
    metadata: ObjectMeta<'a>,
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
        assert_eq!(&*p.labels, [("a".into(), "1".into()), ("b".into(), "2".into())]);
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
    fn one_bad_item_costs_only_itself() {
        let list = ObjectList::parse(
            br#"{"metadata":{"resourceVersion":"42","continue":"abc"},"items":[
              {"metadata":{"name":"a","namespace":"n"}},
              {"metadata":{"name":7}},
              {"metadata":{"name":"b","namespace":"n","labels":{"x":null}}},
              null]}"#,
        )
        .expect("list");
        assert_eq!((list.resource_version(), list.continue_token()), (Some("42"), Some("abc")));
        let (entries, bad) = list.entries::<PodInfo>(&Interner::default());
        let names: Vec<&str> = entries.iter().map(|(_, n, _)| &**n).collect();
        assert_eq!((names, bad), (vec!["a"], 3));
    }

    #[test]
    fn an_empty_list_may_say_null() {
        for json in
            [&br#"{"metadata":{"resourceVersion":"7"},"items":null}"#[..], br#"{"metadata":{"resourceVersion":"7"}}"#]
        {
            let list = ObjectList::parse(json).expect("an empty list");
            assert_eq!((list.items.len(), list.resource_version()), (0, Some("7")));
        }
        assert!(ObjectList::parse(br#"{"items":7}"#).is_err(), "not a list");
    }

    #[test]
    fn watch_events() {
        let e: WatchEvent<'_> =
            serde_json::from_str(r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}"#)
                .expect("event");
        assert_eq!((&*e.kind, e.resource_version()), ("BOOKMARK", Some("9".into())));
        assert!(!e.initial_events_end());
        let e: WatchEvent<'_> = serde_json::from_str(
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12","annotations":{"k8s.io/initial-events-end":"true"}}}}"#,
        )
        .expect("event");
        assert!(e.initial_events_end());
        let e: WatchEvent<'_> =
            serde_json::from_str(r#"{"type":"ERROR","object":{"kind":"Status","code":410}}"#).expect("event");
        assert_eq!(e.status_code(), Some(410));
    }
}
