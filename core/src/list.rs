//! The metrics API's lists (`PodMetricsList`, `NodeMetricsList`), read item by item: one
//! item that does not fit costs only itself, and what is no list of the kind asked for (a
//! `Status` answered with 200, a `PodList` from a misrouted URL, a proxy's error page) is
//! an error that says what it is, never an empty cluster.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::model::{NodeMetrics, PodMetrics};
use crate::scrape::{All, Select};

/// A `...List` object: only `items` matters, and it must be there (`null` reads as no
/// items). Items are read one at a time: one that does not fit (a `null` where an object
/// belongs, a number where a quantity string belongs, a lone surrogate in a label) is set
/// aside in [`List::invalid`] with the reason, and every other item is kept.
///
/// Read by serde (`serde_json::from_slice`), anything but an object with `items` is an
/// error; [`List::parse`] also checks its `kind`, and names what a refused body is.
#[derive(Debug, Clone)]
pub struct List<T> {
    /// The objects that could be read.
    pub items: Vec<T>,
    /// The items that could not: `(name, reason)`, the name as `namespace/name` when the
    /// item shows one, else `#index`.
    pub invalid: Vec<(String, String)>,
}

/// `PodMetricsList`.
pub type PodMetricsList<'a> = List<PodMetrics<'a>>;
/// `NodeMetricsList`.
pub type NodeMetricsList<'a> = List<NodeMetrics<'a>>;

impl<T> Default for List<T> {
    fn default() -> Self {
        List { items: Vec::new(), invalid: Vec::new() }
    }
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

/// Deserializes `S` from a JSON object only: serde's derived structs also read an array
/// (`[null]` would be a list without items).
fn object<'de, D: Deserializer<'de>, S: Deserialize<'de>>(d: D) -> Result<S, D::Error> {
    struct Object<S>(std::marker::PhantomData<S>);
    impl<'de, S: Deserialize<'de>> Visitor<'de> for Object<S> {
        type Value = S;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list: an object with `items`")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S, A::Error> {
            S::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Object(std::marker::PhantomData))
}

/// Why a body without `items` is no list.
const NO_ITEMS: &str = "not a list: the object has no `items` (List::parse_any reads one object as a list of one)";

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
        Listed::deserialize(d).map(|listed| listed.list)
    }
}

/// A list, and the `kind` it says.
struct Listed<'a, T> {
    list: List<T>,
    kind: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a, T: Deserialize<'a>> Deserialize<'de> for Listed<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'r> {
            #[serde(borrow)]
            kind: Option<Cow<'r, str>>,
            #[serde(borrow, default, deserialize_with = "present")]
            items: Option<Option<Vec<&'r serde_json::value::RawValue>>>,
        }
        let raw = object::<D, Raw<'de>>(d)?;
        let Some(raw_items) = raw.items else {
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
        Ok(Listed { list: List { items, invalid }, kind: raw.kind })
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
    /// [`ListItem::KIND`]; what is not one is an error that says what it is (`not a
    /// PodMetricsList: the object is a Status ("forbidden")`). The whole list is read in one
    /// pass when every item fits (the usual case; for the metrics API's items without
    /// serde, see [`ListItem`]); only when one does not is it read again, item by item.
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
        // UTF-8 is checked once here, not string by string; a body that is not UTF-8 is
        // read as bytes below, so that the error says where.
        if let Ok(text) = std::str::from_utf8(json) {
            if let Some(items) = T::scan_selected(text, select) {
                return Ok(List { items, invalid: Vec::new() });
            }
            if is_object(json) {
                if let Ok(Fast { kind, items: Some(items) }) = serde_json::from_str::<Fast<T>>(text) {
                    if of_kind::<T>(kind.as_deref()) {
                        return Ok(List { items: items.unwrap_or_default(), invalid: Vec::new() });
                    }
                }
            }
        }
        // An item that does not fit (set aside), a body that is not UTF-8, or no list of
        // these (an error that says what it is instead).
        match serde_json::from_slice::<Listed<'a, T>>(json) {
            Ok(Listed { list, kind }) if of_kind::<T>(kind.as_deref()) => Ok(list),
            read => Err(match (not_a_list(json, T::KIND), read) {
                (Some(why), _) => serde::de::Error::custom(why),
                (None, Err(e)) => e,
                (None, Ok(_)) => serde::de::Error::custom(format!("not a {}", T::KIND.unwrap_or("list"))),
            }),
        }
    }

    /// [`List::parse_selected`], and, where that fails on a body that is not UTF-8 (a label
    /// value a broken proxy mangled), the body read again with U+FFFD in place of each bad
    /// sequence, kept in `repaired`: one item's bytes cost no other item. Returns the list
    /// and, when it was repaired, where the first bad byte was (to say so). The server reads
    /// the metrics API so.
    ///
    /// ```
    /// use msp_core::{All, PodMetricsList};
    ///
    /// let body = b"{\"items\":[{\"metadata\":{\"name\":\"p\",\"namespace\":\"n\",\"labels\":{\"a\":\"\xff\"}},
    ///     \"containers\":[{\"name\":\"c\",\"usage\":{\"cpu\":\"1m\",\"memory\":\"1Ki\"}}]}]}";
    /// assert!(PodMetricsList::parse(body).is_err(), "not UTF-8");
    /// let mut repaired = None;
    /// let (pods, bad) = PodMetricsList::parse_repairing(body, &All, &mut repaired).unwrap();
    /// assert_eq!((pods.items.len(), bad), (1, body.iter().position(|&b| b == 0xff)));
    /// ```
    pub fn parse_repairing(
        json: &'a [u8],
        select: &dyn Select,
        repaired: &'a mut Option<Vec<u8>>,
    ) -> Result<(Self, Option<usize>), serde_json::Error> {
        let error = match List::parse_selected(json, select) {
            Ok(list) => return Ok((list, None)),
            Err(e) => e,
        };
        // No list of these (msp-core says what it is instead), or not for its bytes.
        let bad = match std::str::from_utf8(json) {
            Err(bad) if !error.is_data() => bad.valid_up_to(),
            _ => return Err(error),
        };
        let body: &'a [u8] = repaired.insert(String::from_utf8_lossy(json).into_owned().into_bytes());
        Ok((List::parse_selected(body, select)?, Some(bad)))
    }

    /// A `...List` (an object with `items`, `null` too), or one object (as `kubectl get
    /// --raw .../nodes/NAME` prints it) as a list of one: an object without `items` whose
    /// `kind`, if it says one, is the item's (`NodeMetrics`).
    pub fn parse_any(json: &'a [u8]) -> Result<Self, serde_json::Error> {
        let one = match serde_json::from_slice::<Probe<'_>>(json) {
            Ok(Probe { items: None, kind, message }) if is_object(json) => (kind, message),
            _ => return List::parse(json),
        };
        if let (Some(kind), Some(want)) = (one.0.as_deref(), T::KIND) {
            let item = want.strip_suffix("List").unwrap_or(want);
            if kind == want {
                return List::parse(json);
            }
            if kind != item {
                let said = described(Some(kind), one.1.as_deref());
                return Err(serde::de::Error::custom(format!("neither a {want} nor a {item}: {said}")));
            }
        }
        Ok(List { items: vec![serde_json::from_slice(json)?], invalid: Vec::new() })
    }
}

/// Whether a list that says `kind` (or none) holds `T`s.
fn of_kind<'a, T: ListItem<'a>>(kind: Option<&str>) -> bool {
    kind.is_none() || T::KIND.is_none() || kind == T::KIND
}

/// Whether `json` begins as an object does (serde's derived structs also read arrays).
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t')) == Some(&b'{')
}

/// What a body says of itself, to tell a list from what is not one.
#[derive(Deserialize)]
struct Probe<'p> {
    #[serde(borrow)]
    kind: Option<Cow<'p, str>>,
    #[serde(borrow)]
    message: Option<Cow<'p, str>>,
    #[serde(default, deserialize_with = "present")]
    items: Option<IgnoredAny>,
}

/// What an object says it is: `the object is a Status ("forbidden")`.
fn described(kind: Option<&str>, message: Option<&str>) -> String {
    match (kind, message) {
        (Some(kind), Some(m)) => format!("the object is a {kind} ({m:?})"),
        (Some(kind), None) => format!("the object is a {kind}"),
        (None, _) => "the object".to_owned(),
    }
}

/// Why `json` is no list of the kind `want` (any, if `None`): what it is instead (another
/// kind of object, such as a `Status` and its message; an object without `items`; no
/// object at all). `None` for a list (`items` there, `null` too, and `kind` `want` or
/// none), and for what is not JSON (serde's error says where).
fn not_a_list(json: &[u8], want: Option<&str>) -> Option<String> {
    let what = want.unwrap_or("list");
    if !is_object(json) {
        // No tree is built: other values are only skipped.
        let json_at_all = serde_json::from_slice::<IgnoredAny>(json).is_ok();
        return json_at_all.then(|| format!("not a {what}: the JSON is not an object"));
    }
    let probe = match serde_json::from_slice::<Probe<'_>>(json) {
        Ok(probe) => probe,
        // A `kind` or `message` that is no string, an `items` twice.
        Err(e) if e.is_data() => return Some(format!("not a {what}: {e}")),
        Err(_) => return None,
    };
    let kind = probe.kind.as_deref();
    let said = described(kind, probe.message.as_deref());
    if kind.is_some_and(|kind| want.is_some_and(|want| kind != want)) {
        return Some(format!("not a {what}: {said}"));
    }
    let without = if kind.is_some() { ", with no `items`" } else { " has no `items`" };
    probe.items.is_none().then(|| format!("not a {what}: {said}{without}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBSITE_NODE: &str = include_str!("../fixtures/nodemetrics-kubernetes-website.json");

    /// Why `List::parse` refuses `body`.
    fn refused<'a, T: ListItem<'a> + std::fmt::Debug>(body: &'a str) -> String {
        List::<T>::parse(body.as_bytes()).map(drop).expect_err(body).to_string()
    }

    #[test]
    fn what_is_no_list_is_an_error_that_says_what_it_is() {
        let status = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","code":403}"#;
        assert_eq!(refused::<PodMetrics<'_>>(status), r#"not a PodMetricsList: the object is a Status ("forbidden")"#);
        assert_eq!(refused::<PodMetrics<'_>>("{}"), "not a PodMetricsList: the object has no `items`");
        assert_eq!(
            refused::<PodMetrics<'_>>(r#"{"kind":"PodMetricsList"}"#),
            "not a PodMetricsList: the object is a PodMetricsList, with no `items`"
        );
        assert_eq!(refused::<PodMetrics<'_>>(WEBSITE_NODE), "not a PodMetricsList: the object is a NodeMetrics");
        // Another kind of list, whichever way it is read: with items the scanner reads, with
        // one it leaves to serde, with one that does not fit, with a byte that is not UTF-8.
        for items in [r#"{"metadata":{"name":"p","namespace":"n"}}"#, r#"{"metadata":{"name":"p\u0041"}}"#, "7"] {
            let body = format!(r#"{{"kind":"PodList","apiVersion":"v1","items":[{items}]}}"#);
            assert_eq!(refused::<PodMetrics<'_>>(&body), "not a PodMetricsList: the object is a PodList");
        }
        let bad_byte = b"{\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"\xff\"}}]}";
        let e = PodMetricsList::parse(bad_byte).map(drop).expect_err("not UTF-8");
        assert_eq!(e.to_string(), "not a PodMetricsList: the object is a PodList");
        assert_eq!(
            refused::<NodeMetrics<'_>>(r#"{"kind":"PodMetricsList","items":[]}"#),
            "not a NodeMetricsList: the object is a PodMetricsList"
        );
        // No object at all: serde's derived structs would read an array as one.
        for body in ["[]", "[null]", "[[]]", r#"[null,[]]"#, "7", r#""items""#, "null"] {
            assert_eq!(refused::<PodMetrics<'_>>(body), "not a PodMetricsList: the JSON is not an object");
        }
        // Nor is any of these one object, for parse_any.
        let pod_list = r#"{"kind":"PodList","items":[{"metadata":{"name":"p"}}]}"#;
        for body in [status, pod_list, "[]", "[null]", "7"] {
            assert!(PodMetricsList::parse_any(body.as_bytes()).is_err(), "{body}");
        }
        let e = refused::<PodMetrics<'_>>(r#"{"kind":5,"items":[]}"#);
        assert!(e.starts_with("not a PodMetricsList: invalid type: integer `5`, expected"), "{e}");
        // Not JSON: serde's own error, which says where.
        let e = PodMetricsList::parse(br#"{"items":["#).map(drop).expect_err("cut short");
        assert!(e.is_eof(), "{e}");
    }

    #[test]
    fn serde_reads_a_list_only_from_an_object_with_items() {
        let status = br#"{"kind":"Status","message":"forbidden","code":403}"#;
        for body in [&status[..], b"{}", WEBSITE_NODE.as_bytes()] {
            let e = serde_json::from_slice::<PodMetricsList<'_>>(body).map(drop).expect_err("no items");
            assert!(e.to_string().starts_with("not a list: the object has no `items`"), "{e}");
        }
        for body in [&b"[null]"[..], b"[[]]", b"[]"] {
            let e = serde_json::from_slice::<PodMetricsList<'_>>(body).map(drop).expect_err("an array");
            assert!(e.to_string().contains("expected a list: an object with `items`"), "{e}");
        }
    }

    #[test]
    fn lists_of_their_kind_or_none_are_read() {
        for body in [
            r#"{"kind":"PodMetricsList","items":[]}"#,
            r#"{"items":null}"#,
            r#"{"kind":"PodMetricsList","items":null,"x":"\u0041"}"#,
            r#" {"items":[{"metadata":{"name":"a"}},7]}"#,
        ] {
            let list = PodMetricsList::parse(body.as_bytes()).expect(body);
            let any = PodMetricsList::parse_any(body.as_bytes()).expect(body);
            assert_eq!(format!("{list:?}"), format!("{any:?}"), "parse_any reads a list as parse does");
        }
        let list = PodMetricsList::parse(br#"{"items":[{"metadata":{"name":"a"}},7]}"#).expect("one set aside");
        assert_eq!((list.items.len(), list.invalid.len()), (1, 1));
        // One object is a list of one only where that is asked for, and only of the item's
        // kind, or of none.
        let one = NodeMetricsList::parse_any(WEBSITE_NODE.as_bytes()).expect("one node");
        assert_eq!(one.items.len(), 1);
        let unnamed = NodeMetricsList::parse_any(br#"{"metadata":{"name":"n"}}"#).expect("one node");
        assert_eq!(unnamed.items[0].metadata.name.as_deref(), Some("n"));
        let e =
            NodeMetricsList::parse_any(br#"{"kind":"Status","message":"forbidden"}"#).map(drop).expect_err("no node");
        assert_eq!(
            e.to_string(),
            r#"neither a NodeMetricsList nor a NodeMetrics: the object is a Status ("forbidden")"#
        );
    }

    #[test]
    fn a_bad_byte_is_repaired_and_costs_no_other_item() {
        let pod = |name: &str, label: &str| {
            format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"n","labels":{{"a":"{label}"}}}},"containers":[{{"name":"c","usage":{{"cpu":"1m","memory":"1"}}}}]}}"#
            )
        };
        // p's label value is one byte, not UTF-8.
        let mut bytes = format!(r#"{{"items":[{},{}]}}"#, pod("p", ""), pod("q", "fine")).into_bytes();
        let at = bytes.windows(5).position(|w| w == br#""a":""#).expect("label") + 5;
        bytes.insert(at, 0xff);
        let mut repaired = None;
        let (list, bad) = PodMetricsList::parse_repairing(&bytes, &All, &mut repaired).expect("repaired");
        assert_eq!(bad, Some(at));
        let names: Vec<_> = list.items.iter().map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, [Some("p"), Some("q")], "both pods");
        let labels = list.items[0].metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.as_json(), "{\"a\":\"\u{fffd}\"}");

        // UTF-8 already: read as it is, nothing kept.
        let mut repaired = None;
        let good = format!(r#"{{"items":[{}]}}"#, pod("q", "fine"));
        assert_eq!(PodMetricsList::parse_repairing(good.as_bytes(), &All, &mut repaired).expect("list").1, None);
        assert!(repaired.is_none());
        // No list of these, or broken JSON besides the byte: still an error.
        for body in [&b"{\"kind\":\"PodList\",\"items\":[{\"metadata\":{\"name\":\"\xff\"}}]}"[..], b"{\"items\":[\xff"]
        {
            assert!(PodMetricsList::parse_repairing(body, &All, &mut None).is_err());
        }
    }
}
