//! The metrics API's objects (`metrics.k8s.io` v1beta1 and v1 share one shape).
//!
//! Only the fields we read are modelled. Strings borrow from the response body where JSON
//! lets them (no escapes), every field may be missing or `null`, and quantities stay text
//! here: they are parsed, item by item, when a scrape is built, so one bad value costs only
//! its own item.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

use crate::labels::JsonLabels;

/// `null` or missing reads as the type's default.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

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
    use crate::list::PodMetricsList;

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
    fn escaped_strings_are_decoded() {
        let json = r#"{"metadata":{"name":"a\"b","namespace":"n"},"containers":[]}"#;
        let pod: PodMetrics<'_> = serde_json::from_str(json).expect("escaped");
        assert_eq!(pod.metadata.name.as_deref(), Some("a\"b"));
    }
}
