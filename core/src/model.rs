//! The metrics API's objects (`metrics.k8s.io` v1beta1 and v1 share one shape).
//!
//! Only the fields we read are modelled. Strings borrow from the response body where JSON
//! lets them (no escapes), every field may be missing or `null`, and quantities stay text
//! here: they are parsed, item by item, when a scrape is built, so one bad value costs only
//! its own item.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::labels::JsonLabels;
use crate::scrape::{All, Select};

/// `null` or missing reads as the type's default.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A member that is there, `null` included, as `Some`; with `#[serde(default)]`, one that
/// is not there as `None`.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Why a body without `items` is no list: a `Status`, a proxy's error page, one object.
const NO_ITEMS: &str = "not a list: the object has no `items` (List::parse_any reads one object as a list of one)";

/// A string that borrows from the input when it can.
pub type Str<'a> = Cow<'a, str>;

/// Object metadata: the part of `ObjectMeta` the metrics API fills in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// Object name.
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Option<Str<'a>>,
    /// Namespace (empty for nodes).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub namespace: Option<Str<'a>>,
    /// Labels: metrics-server 0.5 and later copy the pod's labels here; older ones leave it
    /// out. Kept as the JSON they came in, read into pairs when asked.
    #[serde(borrow, default, deserialize_with = "crate::labels::deserialize")]
    pub labels: Option<JsonLabels<'a>>,
}

/// The usage map of a container or node.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Usage<'a> {
    /// CPU, as a quantity in cores (`"7338891n"`).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub cpu: Option<Str<'a>>,
    /// Memory working set, as a quantity in bytes (`"14520Ki"`).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub memory: Option<Str<'a>>,
}

/// One container's usage inside a [`PodMetrics`].
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerMetrics<'a> {
    /// Container name.
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Option<Str<'a>>,
    /// Its usage.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub usage: Usage<'a>,
}

/// `metrics.k8s.io` PodMetrics.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodMetrics<'a> {
    /// Pod name, namespace and (on newer servers) labels.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub metadata: Metadata<'a>,
    /// When the sample was taken (RFC 3339).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub timestamp: Option<Str<'a>>,
    /// The window the rate was computed over, a Go duration (`"30s"`).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub window: Option<Str<'a>>,
    /// Per-container usage.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub containers: Vec<ContainerMetrics<'a>>,
}

/// `metrics.k8s.io` NodeMetrics.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NodeMetrics<'a> {
    /// Node name and labels.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub metadata: Metadata<'a>,
    /// When the sample was taken (RFC 3339).
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub timestamp: Option<Str<'a>>,
    /// The window the rate was computed over, a Go duration.
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub window: Option<Str<'a>>,
    /// Node usage.
    #[serde(borrow, default, deserialize_with = "nullable")]
    pub usage: Usage<'a>,
}

/// A `...List` object: only `items` matters, and it must be there (`null` reads as no items;
/// an object without it, such as a `Status` answered with 200, is an error, not an empty
/// list). Items are read one at a time: one that does not fit (a `null` where an object belongs, a number where a quantity string belongs, a
/// lone surrogate in a label) is set aside in [`List::invalid`] with the reason, and every
/// other item is kept.
#[derive(Debug, Clone)]
pub struct List<T> {
    /// The objects that could be read.
    pub items: Vec<T>,
    /// The items that could not: `(name, reason)`, the name as `namespace/name` when the
    /// item shows one, else `#index`.
    pub invalid: Vec<(String, String)>,
}

/// Enough of an item to name it in an error.
#[derive(Deserialize, Default)]
struct NameProbe {
    #[serde(default)]
    metadata: Option<NameMeta>,
}

#[derive(Deserialize, Default)]
struct NameMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

fn item_name(raw: &str, index: usize) -> String {
    let meta = serde_json::from_str::<NameProbe>(raw).ok().and_then(|p| p.metadata).unwrap_or_default();
    match (meta.namespace, meta.name) {
        (Some(ns), Some(name)) if !ns.is_empty() => format!("{ns}/{name}"),
        (_, Some(name)) => name,
        _ => format!("#{index}"),
    }
}

impl<'de: 'a, 'a, T: Deserialize<'a>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'r> {
            #[serde(borrow, default, deserialize_with = "present")]
            items: Option<Option<Vec<&'r serde_json::value::RawValue>>>,
        }
        let Some(raw_items) = Raw::deserialize(d)?.items else {
            return Err(serde::de::Error::custom(NO_ITEMS));
        };
        let raw_items = raw_items.unwrap_or_default();
        let mut items = Vec::with_capacity(raw_items.len());
        let mut invalid = Vec::new();
        for (i, item) in raw_items.into_iter().enumerate() {
            let text: &'a str = item.get();
            match serde_json::from_str::<T>(text) {
                Ok(v) => items.push(v),
                Err(e) => invalid.push((item_name(text, i), e.to_string())),
            }
        }
        Ok(List { items, invalid })
    }
}

/// What a [`List`] holds. The metrics API's own items ([`PodMetrics`], [`NodeMetrics`])
/// are read without serde when the list has the shape metrics-server writes; any other
/// type takes the default, serde alone (`impl ListItem<'_> for MyItem<'_> {}`).
pub trait ListItem<'a>: Deserialize<'a> {
    /// The `kind` of a list of these (`"PodMetricsList"`): [`List::parse`] refuses a list
    /// that says another (a `PodList` from a misrouted URL). `None`: any kind.
    const KIND: Option<&'static str> = None;

    /// The items of a whole list body, or `None` to read it with serde. It must give what
    /// serde would, or `None`.
    #[doc(hidden)]
    fn scan(list: &'a str) -> Option<Vec<Self>> {
        let _ = list;
        None
    }

    /// As [`ListItem::scan`] (`None` where it gives `None`, and perhaps elsewhere; each item
    /// `select` keeps the same), but the items `select` skips may be left out.
    #[doc(hidden)]
    fn scan_selected(list: &'a str, select: &dyn Select) -> Option<Vec<Self>> {
        let _ = select;
        Self::scan(list)
    }
}

impl<'a> ListItem<'a> for PodMetrics<'a> {
    const KIND: Option<&'static str> = Some("PodMetricsList");

    fn scan(list: &'a str) -> Option<Vec<Self>> {
        crate::scan::pods(list)
    }

    fn scan_selected(list: &'a str, select: &dyn Select) -> Option<Vec<Self>> {
        crate::scan::pods_selected(list, select)
    }
}

impl<'a> ListItem<'a> for NodeMetrics<'a> {
    const KIND: Option<&'static str> = Some("NodeMetricsList");

    fn scan(list: &'a str) -> Option<Vec<Self>> {
        crate::scan::nodes(list)
    }
}

impl<'a, T: ListItem<'a>> List<T> {
    /// Parses a `...List`: an object with `items`, and, if it says its `kind`, of
    /// [`ListItem::KIND`]. The whole list is read in one pass when every item fits (the
    /// usual case; for the metrics API's items without serde, see [`ListItem`]); only when
    /// one does not is it read again, item by item (see [`List`]).
    pub fn parse(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        List::parse_selected(json, &All)
    }

    /// Parses a `...List` for [`Scrape::select`](crate::Scrape::select) with the same
    /// `select`: the items it would skip may be left out, read only to check that the list
    /// is well-formed (a shard holds only its own pods). The scrape is the same as from
    /// [`List::parse`]'s list. Scraped with another `Select`, the pods left out are missing.
    pub fn parse_selected(json: &'a [u8], select: &dyn Select) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(bound(deserialize = "U: Deserialize<'de>"))]
        struct Fast<'k, U> {
            #[serde(borrow)]
            kind: Option<Cow<'k, str>>,
            #[serde(default, deserialize_with = "present")]
            items: Option<Option<Vec<U>>>,
        }
        /// The `kind`, for a list read item by item.
        #[derive(Deserialize)]
        struct Kind<'k> {
            #[serde(borrow)]
            kind: Option<Cow<'k, str>>,
        }
        // UTF-8 is checked once here, not string by string; a body that is not UTF-8 is
        // read as bytes, so that the error says where.
        let Ok(text) = std::str::from_utf8(json) else { return serde_json::from_slice(json) };
        if let Some(items) = T::scan_selected(text, select) {
            return Ok(List { items, invalid: Vec::new() });
        }
        match serde_json::from_str::<Fast<T>>(text) {
            Ok(Fast { kind, items: Some(items) }) => {
                of_kind::<T>(kind.as_deref())?;
                Ok(List { items: items.unwrap_or_default(), invalid: Vec::new() })
            }
            // No items (an error), or one that does not fit (set aside).
            _ => {
                let list = serde_json::from_str(text)?;
                // A `kind` that is no string is not ours to judge, as it is not above.
                of_kind::<T>(serde_json::from_str::<Kind<'_>>(text).ok().and_then(|k| k.kind).as_deref())?;
                Ok(list)
            }
        }
    }

    /// A `...List` (an object with `items`, `null` too), or one object (as `kubectl get
    /// --raw .../nodes/NAME` prints it) as a list of one.
    pub fn parse_any(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default, deserialize_with = "present")]
            items: Option<serde::de::IgnoredAny>,
        }
        if serde_json::from_slice::<Probe>(json)?.items.is_some() {
            List::parse(json)
        } else {
            Ok(List { items: vec![serde_json::from_slice(json)?], invalid: Vec::new() })
        }
    }
}

/// A list that says its `kind` is of `T`'s.
fn of_kind<'a, T: ListItem<'a>>(kind: Option<&str>) -> Result<(), serde_json::Error> {
    match (kind, T::KIND) {
        (Some(kind), Some(want)) if kind != want => {
            Err(serde::de::Error::custom(format!("not a {want}: the object is a {kind}")))
        }
        _ => Ok(()),
    }
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List { items: Vec::new(), invalid: Vec::new() }
    }
}

/// `PodMetricsList`.
pub type PodMetricsList<'a> = List<PodMetrics<'a>>;
/// `NodeMetricsList`.
pub type NodeMetricsList<'a> = List<NodeMetrics<'a>>;

/// An optional string that borrows from the input when it has no escapes.
fn opt_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Str<'a>>, D::Error> {
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

/// A `Cow<str>` that borrows when the JSON string has no escapes (serde's plain `Cow`
/// impl always copies; `#[serde(borrow)]` only applies to fields).
pub(crate) struct Borrowed<'a>(pub(crate) Str<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Borrowed<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
                Ok(Borrowed(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../fixtures/seed-podmetrics-list.json");
    const WEBSITE_PODS: &str = include_str!("../fixtures/podmetrics-list-kubernetes-website.json");
    const WEBSITE_NODE: &str = include_str!("../fixtures/nodemetrics-kubernetes-website.json");

    #[test]
    fn reads_the_published_samples() {
        let list: PodMetricsList<'_> = serde_json::from_str(WEBSITE_PODS).expect("fixture");
        let pod = &list.items[0];
        assert_eq!(pod.metadata.name.as_deref(), Some("coredns-78fcd69978-f6pqv"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(pod.window.as_deref(), Some("30s"));
        assert_eq!(pod.containers[0].usage.cpu.as_deref(), Some("7338891n"));
        assert_eq!(pod.containers[0].usage.memory.as_deref(), Some("14520Ki"));
        assert!(pod.metadata.labels.is_none());
        // Borrowed, not copied.
        assert!(matches!(pod.containers[0].usage.cpu, Some(Cow::Borrowed(_))));

        let seed: PodMetricsList<'_> = serde_json::from_str(SEED).expect("fixture");
        assert_eq!(seed.items[0].containers[0].usage.cpu.as_deref(), Some("7m"));
        assert_eq!(seed.items[0].window.as_deref(), Some("1m0s"));

        let node: NodeMetrics<'_> = serde_json::from_str(WEBSITE_NODE).expect("fixture");
        assert_eq!(node.metadata.name.as_deref(), Some("minikube"));
        assert_eq!(node.usage.cpu.as_deref(), Some("487558164n"));
    }

    #[test]
    fn tolerates_missing_and_null_fields() {
        let json = r#"{"items":[
            {"metadata":null,"containers":null},
            {"metadata":{"name":"a","namespace":null,"labels":null},"timestamp":null,"window":null},
            {"metadata":{"name":"b","namespace":"ns","labels":{"app":"x","tier":"y"}},
             "containers":[{"name":"c","usage":null},{"usage":{"cpu":null}}]}
        ]}"#;
        let list: PodMetricsList<'_> = serde_json::from_str(json).expect("tolerant");
        assert_eq!(list.items.len(), 3);
        assert!(list.items[0].metadata.name.is_none());
        let labels = list.items[2].metadata.labels.as_ref().expect("labels").pairs();
        assert_eq!(labels, [("app".into(), "x".into()), ("tier".into(), "y".into())]);
        assert!(list.items[2].containers[0].usage.cpu.is_none());
        let empty: PodMetricsList<'_> = serde_json::from_str(r#"{"items":null}"#).expect("null items");
        assert!(empty.items.is_empty());
    }

    #[test]
    fn an_object_without_items_is_no_list() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","code":403}"#;
        let node = WEBSITE_NODE.as_bytes();
        for body in [&status[..], b"{}", node] {
            let text = String::from_utf8_lossy(body);
            for e in [
                PodMetricsList::parse(body).map(drop).expect_err(&text),
                serde_json::from_slice::<PodMetricsList<'_>>(body).map(drop).expect_err(&text),
                NodeMetricsList::parse(body).map(drop).expect_err(&text),
            ] {
                assert!(e.to_string().contains("not a list: the object has no `items`"), "{text}: {e}");
            }
        }
        // One object is a list of one only where that is asked for.
        let one = NodeMetricsList::parse_any(node).expect("one node");
        assert_eq!(one.items.len(), 1);
        // Another kind of list, whichever way it is read: with items the scanner reads, with
        // one it leaves to serde, with one that does not fit.
        for items in [r#"{"metadata":{"name":"p","namespace":"n"}}"#, r#"{"metadata":{"name":"p\u0041"}}"#, "7"] {
            let body = format!(r#"{{"kind":"PodList","apiVersion":"v1","items":[{items}]}}"#);
            let e = PodMetricsList::parse(body.as_bytes()).map(drop).expect_err(&body);
            assert_eq!(e.to_string(), "not a PodMetricsList: the object is a PodList", "{body}");
            let e = PodMetricsList::parse_any(body.as_bytes()).map(drop).expect_err(&body);
            assert_eq!(e.to_string(), "not a PodMetricsList: the object is a PodList", "{body}");
        }
        assert!(NodeMetricsList::parse(br#"{"kind":"PodMetricsList","items":[]}"#).is_err());
        assert!(PodMetricsList::parse(br#"{"kind":"PodMetricsList","items":[]}"#).is_ok());
        // `null` items are no items, whichever way it is read.
        for body in [&br#"{"kind":"NodeMetricsList","items":null}"#[..], br#"{"items":null,"x":"\u0041"}"#] {
            assert!(NodeMetricsList::parse(body).expect("a list").items.is_empty());
            assert!(NodeMetricsList::parse_any(body).expect("a list, not one node").items.is_empty());
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let json = r#"{"metadata":{"name":"a\"b","namespace":"n"},"containers":[]}"#;
        let pod: PodMetrics<'_> = serde_json::from_str(json).expect("escaped");
        assert_eq!(pod.metadata.name.as_deref(), Some("a\"b"));
    }
}
