//! One scrape's worth of metrics: the lists from the metrics API, checked item by item.
//!
//! Building a [`Scrape`] parses every quantity and window. An item that fails (a bad
//! quantity, a missing name or usage) is dropped alone and reported in
//! [`Scrape::errors`]; every other item is kept. Pods are sorted by `(namespace, name)`,
//! containers by name and nodes by name, so series come out in a stable order, and
//! duplicates are dropped (and reported) so no series is written twice.
//!
//! A scrape borrows its text from the lists ([`Scrape::select`]), or, taking them, from the
//! response body they borrow from ([`Scrape::from_lists`]), so that they can go before the
//! scrape is written.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use crate::duration::GoDuration;
use crate::labels::JsonLabels;
use crate::list::{NodeMetricsList, PodMetricsList};
use crate::model::{PodMetrics, Str, Usage};
use crate::quantity::{parse_whole, Quantity};
use crate::scan::room;

/// One container's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSample<'a> {
    /// Container name.
    pub name: &'a str,
    /// CPU usage.
    pub cpu: Quantity,
    /// Memory working set.
    pub memory: Quantity,
}

/// One pod's usage, joined on `(namespace, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSample<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Pod name.
    pub name: &'a str,
    /// The pod's labels when metrics-server (0.5 and later) sent them.
    pub labels: Option<JsonLabels<'a>>,
    /// When metrics-server took the sample (RFC 3339).
    pub timestamp: Option<&'a str>,
    /// The sampling window.
    pub window: Option<GoDuration>,
    /// Where its containers lie in its scrape's buffer (read them with
    /// [`Scrape::containers_of`]): one buffer for every pod's, not a `Vec` each.
    pub(crate) containers: Range<usize>,
    cpu: Quantity,
    memory: Quantity,
}

impl PodSample<'_> {
    /// The pod's CPU: the exact sum over its containers, as checked.
    pub fn cpu(&self) -> Quantity {
        self.cpu
    }

    /// The pod's memory working set: the exact sum over its containers, as checked.
    pub fn memory(&self) -> Quantity {
        self.memory
    }
}

/// One node's usage.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSample<'a> {
    /// Node name.
    pub name: &'a str,
    /// When metrics-server took the sample (RFC 3339).
    pub timestamp: Option<&'a str>,
    /// The sampling window.
    pub window: Option<GoDuration>,
    /// CPU usage.
    pub cpu: Quantity,
    /// Memory working set.
    pub memory: Quantity,
}

/// An item that was dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// `"pod"` or `"node"`.
    pub resource: &'static str,
    /// `namespace/name` of a pod, the name of a node, or `#index` when the name is missing.
    pub object: String,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dropped {} {}: {}", self.resource, self.object, self.reason)
    }
}

/// The checked contents of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape<'a> {
    /// Pods, sorted by `(namespace, name)`, unique.
    pub pods: Vec<PodSample<'a>>,
    /// The pods' containers, each pod's together, as [`Scrape::select`] lays them out; a
    /// pod finds its own by its range ([`Scrape::containers_of`]). Equal scrapes have them
    /// laid out alike.
    pub(crate) containers: Vec<ContainerSample<'a>>,
    /// Nodes, sorted by name, unique.
    pub nodes: Vec<NodeSample<'a>>,
    /// Items that were dropped.
    pub errors: Vec<ItemError>,
}

fn usage(u: &Usage<'_>) -> Result<(Quantity, Quantity), String> {
    // The usual case, digits and a suffix (never negative), without the general path's
    // errors to carry.
    if let (Some(cpu), Some(memory)) = (u.cpu.as_deref(), u.memory.as_deref()) {
        if let (Some(cpu), Some(memory)) = (parse_whole(cpu), parse_whole(memory)) {
            return Ok((cpu, memory));
        }
    }
    let field = |v: &Option<Str<'_>>, what: &str| -> Result<Quantity, String> {
        let text = v.as_deref().ok_or_else(|| format!("no {what} usage"))?;
        let q = text.parse::<Quantity>().map_err(|e| format!("{what}: {e}"))?;
        // apimachinery allows negative quantities; usage cannot be negative.
        if q < Quantity::ZERO {
            return Err(format!("{what}: negative usage {text:?}"));
        }
        Ok(q)
    };
    Ok((field(&u.cpu, "cpu")?, field(&u.memory, "memory")?))
}

fn window(w: &Option<Str<'_>>) -> Result<Option<GoDuration>, String> {
    w.as_deref().map(str::parse::<GoDuration>).transpose().map_err(|e| format!("window: {e}"))
}

/// The last window parsed: pods of one scrape mostly share it.
#[derive(Default)]
struct LastWindow(Option<(String, GoDuration)>);

impl LastWindow {
    fn parse(&mut self, w: &Option<Str<'_>>) -> Result<Option<GoDuration>, String> {
        let Some(text) = w.as_deref() else { return Ok(None) };
        if let Some((last, d)) = &self.0 {
            if last == text {
                return Ok(Some(*d));
            }
        }
        let d = window(w)?;
        self.0 = d.map(|d| (text.to_owned(), d));
        Ok(d)
    }
}

/// Where a scrape's text comes from, read from a list's items borrowed for `'l`: the list
/// itself ([`Lists`], `'a` is `'l`), or the body the list borrows from ([`Body`], `'a` is
/// `'x`, so that the list can go).
trait Texts<'l, 'x: 'l, 'a> {
    /// Why the text can't be kept.
    type Lost;
    fn text(&self, s: &'l Option<Str<'x>>) -> Result<Option<&'a str>, Self::Lost>;
    /// Labels are a value of their own, so they can always be kept.
    fn labels(&self, l: &'l Option<JsonLabels<'x>>) -> Option<JsonLabels<'a>>;
}

/// Text borrowed from the lists.
struct Lists;

impl<'l, 'x: 'l> Texts<'l, 'x, 'l> for Lists {
    type Lost = std::convert::Infallible;
    fn text(&self, s: &'l Option<Str<'x>>) -> Result<Option<&'l str>, Self::Lost> {
        Ok(s.as_deref())
    }
    fn labels(&self, l: &'l Option<JsonLabels<'x>>) -> Option<JsonLabels<'l>> {
        l.as_ref().map(JsonLabels::borrowed)
    }
}

/// Text borrowed from the body the lists borrow from; a list's text of its own (a string
/// serde unescaped) can't be. Labels are a value of their own: those that borrow from the
/// body are borrowed, the others (serde's, which reads them into pairs) copied.
struct Body;

/// Some of a list's text is its own, not the body's.
struct OwnText;

impl<'l, 'x: 'l> Texts<'l, 'x, 'x> for Body {
    type Lost = OwnText;
    fn text(&self, s: &'l Option<Str<'x>>) -> Result<Option<&'x str>, OwnText> {
        match s {
            None => Ok(None),
            Some(Cow::Borrowed(text)) => Ok(Some(text)),
            Some(Cow::Owned(_)) => Err(OwnText),
        }
    }
    fn labels(&self, l: &'l Option<JsonLabels<'x>>) -> Option<JsonLabels<'x>> {
        l.clone()
    }
}

/// Why a pod has no sample: it is bad (and reported), or its text can't be kept.
enum Unsampled<L> {
    Bad(String),
    Lost(L),
}

impl<L> From<String> for Unsampled<L> {
    fn from(why: String) -> Self {
        Unsampled::Bad(why)
    }
}

impl<L> From<&str> for Unsampled<L> {
    fn from(why: &str) -> Self {
        Unsampled::Bad(why.to_owned())
    }
}

/// The pod `item`, its containers appended to `all` (and taken away again if it fails).
fn pod_sample<'l, 'x: 'l, 'a, T: Texts<'l, 'x, 'a>>(
    item: &'l PodMetrics<'x>,
    texts: &T,
    last_window: &mut LastWindow,
    all: &mut Vec<ContainerSample<'a>>,
) -> Result<PodSample<'a>, Unsampled<T::Lost>> {
    let start = all.len();
    let sample = pod_sample_into(item, texts, last_window, all, start);
    if sample.is_err() {
        all.truncate(start);
    }
    sample
}

fn pod_sample_into<'l, 'x: 'l, 'a, T: Texts<'l, 'x, 'a>>(
    item: &'l PodMetrics<'x>,
    texts: &T,
    last_window: &mut LastWindow,
    all: &mut Vec<ContainerSample<'a>>,
    start: usize,
) -> Result<PodSample<'a>, Unsampled<T::Lost>> {
    let text = |s| texts.text(s).map_err(Unsampled::Lost);
    let meta = &item.metadata;
    let namespace = text(&meta.namespace)?.filter(|s| !s.is_empty()).ok_or("no namespace")?;
    let name = text(&meta.name)?.filter(|s| !s.is_empty()).ok_or("no name")?;
    let (mut cpu, mut memory) = (Quantity::ZERO, Quantity::ZERO);
    for c in &item.containers {
        let cname = text(&c.name)?.filter(|s| !s.is_empty()).ok_or("a container has no name")?;
        let (c_cpu, c_memory) = usage(&c.usage).map_err(|e| format!("container {cname}: {e}"))?;
        (cpu, memory) = (cpu.saturating_add(c_cpu), memory.saturating_add(c_memory));
        all.push(ContainerSample { name: cname, cpu: c_cpu, memory: c_memory });
    }
    let containers = &mut all[start..];
    // Often in order already, and then none is there twice: one pass to see.
    if !containers.is_sorted_by(|a, b| a.name < b.name) {
        containers.sort_unstable_by(|a, b| a.name.cmp(b.name));
        if let Some(w) = containers.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(format!("container {} listed twice", w[0].name).into());
        }
    }
    Ok(PodSample {
        namespace,
        name,
        labels: texts.labels(&meta.labels),
        timestamp: text(&item.timestamp)?,
        window: last_window.parse(&item.window)?,
        containers: start..all.len(),
        cpu,
        memory,
    })
}

/// Which items a scrape keeps, decided by name before their values are checked (a shard
/// checks only its own share).
pub trait Select {
    /// Whether the pod `namespace/name` is kept.
    fn pod(&self, namespace: &str, name: &str) -> bool;
    /// Whether the node `name` is kept.
    fn node(&self, name: &str) -> bool;
}

/// Keeps everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct All;

impl Select for All {
    fn pod(&self, _: &str, _: &str) -> bool {
        true
    }
    fn node(&self, _: &str) -> bool {
        true
    }
}

impl<'a> Scrape<'a> {
    /// Checks both lists. Either may be empty (when its fetch failed, say).
    pub fn new(pods: &'a PodMetricsList<'a>, nodes: &'a NodeMetricsList<'a>) -> Self {
        Scrape::select(pods, nodes, &All)
    }

    /// Checks the items of both lists that `select` keeps; the others are skipped, errors
    /// and all (an item without a name is always checked, and reported). The scrape borrows
    /// its text from the lists.
    pub fn select(pods: &'a PodMetricsList<'a>, nodes: &'a NodeMetricsList<'a>, select: &dyn Select) -> Self {
        match Scrape::checked(pods, nodes, select, &Lists) {
            Ok(scrape) => scrape,
            Err(never) => match never {},
        }
    }

    /// As [`Scrape::select`], but taking the lists: the scrape borrows its text from the
    /// body they were read from, not from them, so they are freed before this returns and
    /// are not held while the scrape is enriched and written (at 150,000 pods, 32 MiB off
    /// the server's peak). Only if a name or a timestamp it keeps is their own text (a
    /// string with an escape, which serde unescaped; metrics-server writes none) are they
    /// kept, in `held`, and the scrape borrows from them there. The server makes its
    /// scrapes so where [`Scrape::from_pods_body`] cannot.
    ///
    /// ```
    /// use msp_core::{All, NodeMetricsList, PodMetricsList, Scrape};
    ///
    /// let body = br#"{"items":[{"metadata":{"name":"web-1","namespace":"shop"},
    ///     "containers":[{"name":"app","usage":{"cpu":"5m","memory":"1Mi"}}]}]}"#;
    /// let pods = PodMetricsList::parse(body).unwrap();
    /// let mut held = None;
    /// let scrape = Scrape::from_lists(pods, NodeMetricsList::default(), &All, &mut held);
    /// assert_eq!((scrape.pods[0].namespace, scrape.pods[0].name), ("shop", "web-1"));
    /// assert!(held.is_none(), "the lists are gone");
    /// ```
    pub fn from_lists<'x: 'a>(
        pods: PodMetricsList<'x>,
        nodes: NodeMetricsList<'x>,
        select: &dyn Select,
        held: &'a mut Option<(PodMetricsList<'x>, NodeMetricsList<'x>)>,
    ) -> Self {
        match Scrape::checked(&pods, &nodes, select, &Body) {
            Ok(scrape) => scrape,
            Err(OwnText) => {
                let (pods, nodes) = held.insert((pods, nodes));
                Scrape::select(pods, nodes, select)
            }
        }
    }

    /// As [`Scrape::from_lists`], but the pods read straight from their body as each is
    /// checked, with no list of them in between (at 150,000 pods with two containers each,
    /// some 45 MB of items and 150,000 allocations a scrape).
    /// The scrape is the one `from_lists` makes of `pods` parsed with
    /// [`List::parse_selected`](crate::List::parse_selected) and `select`, and borrows from
    /// `pods` as that one does. Where the body is not in the shape metrics-server writes (an
    /// escape, items that do not fit, not a `PodMetricsList`, not UTF-8), or a node's text is
    /// `nodes`' own, `nodes` is given back: parse the body, and take `from_lists`, which says
    /// what is wrong: [`Scrape::from_pods_json`] does both, as the server, `render_once`
    /// and the benchmark read.
    ///
    /// ```
    /// use msp_core::{All, NodeMetricsList, Scrape};
    ///
    /// let body = br#"{"kind":"PodMetricsList","items":[{"metadata":{"name":"web-1","namespace":"shop"},
    ///     "containers":[{"name":"app","usage":{"cpu":"5m","memory":"1Mi"}}]}]}"#;
    /// let scrape = Scrape::from_pods_body(body, NodeMetricsList::default(), &All).unwrap();
    /// assert_eq!((scrape.pods[0].namespace, scrape.pods[0].name), ("shop", "web-1"));
    ///
    /// // An escape: the nodes come back.
    /// let escaped = br#"{"items":[{"metadata":{"name":"web\u002d1","namespace":"shop"},"containers":[]}]}"#;
    /// assert!(Scrape::from_pods_body(escaped, NodeMetricsList::default(), &All).is_err());
    /// ```
    pub fn from_pods_body(
        pods: &'a [u8],
        nodes: NodeMetricsList<'a>,
        select: &dyn Select,
    ) -> Result<Self, NodeMetricsList<'a>> {
        let Ok(text) = std::str::from_utf8(pods) else { return Err(nodes) };
        let mut checking = Checking::new(
            room::<PodSample<'_>>(text.len()),
            room::<ContainerSample<'_>>(text.len()),
            listed_errors(&[], &nodes.invalid, select),
        );
        let mut lost = false;
        let read = crate::scan::pods_each(text, select, |i, pod| {
            // The scan hands on only the pods `select` keeps: asking it again would hash a
            // shard's every pod twice. It borrows every string from the body, so no text
            // is lost; if one were, the list would be read instead.
            lost |= checking.pod(i, pod, &All, &Body).is_err();
        });
        if read.is_none() || lost {
            return Err(nodes);
        }
        // The room was reserved for the whole body's pods: a shard, or a scope of a few
        // namespaces, keeps a part of them, and the rest is given back before the scrape is
        // enriched and written.
        checking.checked.shrink_to_fit();
        checking.containers.shrink_to_fit();
        match checking.scrape(&nodes, select, &Body) {
            Ok(scrape) => Ok(scrape),
            Err(OwnText) => Err(nodes),
        }
    }

    /// The scrape of a pod metrics body and `nodes`, as the server reads them: straight from
    /// the body ([`Scrape::from_pods_body`]) where it is in the shape metrics-server writes;
    /// else parsed into a list ([`List::parse_repairing`](crate::List::parse_repairing): a
    /// body that is not UTF-8 is read with U+FFFD in place of each bad sequence, in
    /// `repaired`) and taken ([`Scrape::from_lists`], which keeps the lists in `held` only
    /// if it must). Beside the scrape, how the body read: `Ok(None)`; `Ok(Some(byte))`,
    /// repaired from that byte on; or why it is no pod list, and then the scrape has the
    /// nodes alone.
    ///
    /// ```
    /// use msp_core::{All, NodeMetricsList, Scrape};
    ///
    /// let escaped = br#"{"items":[{"metadata":{"name":"web\u002d1","namespace":"shop"},"containers":[]}]}"#;
    /// let (mut repaired, mut held) = (None, None);
    /// let (scrape, read) =
    ///     Scrape::from_pods_json(escaped, NodeMetricsList::default(), &All, &mut repaired, &mut held);
    /// assert_eq!((scrape.pods[0].name, read.ok()), ("web-1", Some(None)));
    /// ```
    pub fn from_pods_json(
        pods: &'a [u8],
        nodes: NodeMetricsList<'a>,
        select: &dyn Select,
        repaired: &'a mut Option<Vec<u8>>,
        held: &'a mut Option<(PodMetricsList<'a>, NodeMetricsList<'a>)>,
    ) -> (Self, Result<Option<usize>, serde_json::Error>) {
        let nodes = match Scrape::from_pods_body(pods, nodes, select) {
            Ok(scrape) => return (scrape, Ok(None)),
            Err(nodes) => nodes,
        };
        match PodMetricsList::parse_repairing(pods, select, repaired) {
            Ok((list, bad)) => (Scrape::from_lists(list, nodes, select, held), Ok(bad)),
            Err(e) => (Scrape::from_lists(PodMetricsList::default(), nodes, select, held), Err(e)),
        }
    }

    fn checked<'l, 'x: 'l, T: Texts<'l, 'x, 'a>>(
        pods: &'l PodMetricsList<'x>,
        nodes: &'l NodeMetricsList<'x>,
        select: &dyn Select,
        texts: &T,
    ) -> Result<Self, T::Lost> {
        let mut checking = Checking::new(
            pods.items.len(),
            pods.items.iter().map(|p| p.containers.len()).sum(),
            listed_errors(&pods.invalid, &nodes.invalid, select),
        );
        for (i, item) in pods.items.iter().enumerate() {
            checking.pod(i, item, select, texts)?;
        }
        checking.scrape(nodes, select, texts)
    }
}

/// The items the lists set aside ([`List::invalid`](crate::List::invalid)) that `select`
/// keeps, as a scrape reports them: the pods', then the nodes'.
fn listed_errors(pods: &[(String, String)], nodes: &[(String, String)], select: &dyn Select) -> Vec<ItemError> {
    let mut errors = Vec::new();
    for (object, reason) in pods {
        if object.split_once('/').is_none_or(|(ns, name)| select.pod(ns, name)) {
            errors.push(ItemError { resource: "pod", object: object.clone(), reason: reason.clone() });
        }
    }
    for (object, reason) in nodes {
        if object.starts_with('#') || select.node(object) {
            errors.push(ItemError { resource: "node", object: object.clone(), reason: reason.clone() });
        }
    }
    errors
}

/// A scrape being made: its pods checked one at a time in list order, so each item and its
/// strings are read where they lie, one after another (at 150,000 pods, reading them in
/// sorted order missed the cache on nearly every item); then sorted, and the containers
/// laid out in that order.
struct Checking<'a> {
    checked: Vec<PodSample<'a>>,
    containers: Vec<ContainerSample<'a>>,
    last_window: LastWindow,
    errors: Vec<ItemError>,
}

impl<'a> Checking<'a> {
    /// Room for `pods` pods and `containers` containers, after `errors`.
    fn new(pods: usize, containers: usize, errors: Vec<ItemError>) -> Self {
        Checking {
            checked: Vec::with_capacity(pods),
            containers: Vec::with_capacity(containers),
            last_window: LastWindow::default(),
            errors,
        }
    }

    /// Checks the pod `item`, the `i`th of its list, if `select` keeps it.
    fn pod<'l, 'x: 'l, T: Texts<'l, 'x, 'a>>(
        &mut self,
        i: usize,
        item: &'l PodMetrics<'x>,
        select: &dyn Select,
        texts: &T,
    ) -> Result<(), T::Lost> {
        // An item without a namespace or a name is always checked (and reported).
        if let (Some(ns), Some(name)) = (item.metadata.namespace.as_deref(), item.metadata.name.as_deref()) {
            if !select.pod(ns, name) {
                return Ok(());
            }
        }
        match pod_sample(item, texts, &mut self.last_window, &mut self.containers) {
            Ok(p) => self.checked.push(p),
            Err(Unsampled::Bad(reason)) => {
                self.errors.push(ItemError { resource: "pod", object: pod_object(item, i), reason })
            }
            Err(Unsampled::Lost(lost)) => return Err(lost),
        }
        Ok(())
    }

    /// The scrape of the pods checked and of the `nodes` `select` keeps.
    fn scrape<'l, 'x: 'l, T: Texts<'l, 'x, 'a>>(
        self,
        nodes: &'l NodeMetricsList<'x>,
        select: &dyn Select,
        texts: &T,
    ) -> Result<Scrape<'a>, T::Lost> {
        let Checking { checked, containers, mut errors, .. } = self;
        // Errors in list order, then the duplicates.
        let (pod_samples, containers) = sorted_unique(checked, containers, &mut errors);

        let mut node_samples = Vec::with_capacity(nodes.items.len());
        for (i, item) in nodes.items.iter().enumerate() {
            // As for pods, the nodes skipped are skipped before their text is read.
            if item.metadata.name.as_deref().is_some_and(|n| !n.is_empty() && !select.node(n)) {
                continue;
            }
            let name = texts.text(&item.metadata.name)?.filter(|s| !s.is_empty());
            let timestamp = texts.text(&item.timestamp)?;
            let sample = name.ok_or_else(|| "no name".to_owned()).and_then(|name| {
                let (cpu, memory) = usage(&item.usage)?;
                let window = window(&item.window)?;
                Ok(NodeSample { name, timestamp, window, cpu, memory })
            });
            match sample {
                Ok(n) => node_samples.push(n),
                Err(reason) => {
                    let object = name.map_or_else(|| format!("#{i}"), str::to_owned);
                    errors.push(ItemError { resource: "node", object, reason });
                }
            }
        }
        node_samples.sort_by(|a, b| a.name.cmp(b.name));
        dedup(&mut node_samples, |n| n.name, &mut errors, "node", |n| n.name.to_owned());

        Ok(Scrape { pods: pod_samples, containers, nodes: node_samples, errors })
    }
}

impl<'a> Scrape<'a> {
    /// The containers of `pod`, sorted by name. `pod` must be one of this scrape's
    /// [`Scrape::pods`] (reordered or cloned, as you like): another scrape's pod would read
    /// whatever lies where its own were.
    pub fn containers_of(&self, pod: &PodSample<'_>) -> &[ContainerSample<'a>] {
        debug_assert!(pod.containers.end <= self.containers.len(), "a pod of another scrape");
        self.containers.get(pod.containers.clone()).unwrap_or_default()
    }

    /// The index of a pod in [`Scrape::pods`], by `(namespace, name)`.
    pub fn pod_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pods.binary_search_by(|p| (p.namespace, p.name).cmp(&(namespace, name))).ok()
    }
}

/// `checked` (in list order, their containers in `all`) sorted by `(namespace, name)`, list
/// order among equals, each pod once: a later one with the same name is reported in
/// `errors` as listed twice. Their containers are laid out afresh, in that order, leaving out
/// those of the pods dropped.
///
/// metrics-server sorts its list so (as the API server's lists are), and then the pods are
/// taken as they are, after one pass to see it. Otherwise the sort compares small keys held
/// together (a rank for the namespace, the name's first 36 bytes), not the strings where
/// they lie in the response body: at 150,000 pods those reads missed the cache on nearly
/// every comparison.
fn sorted_unique<'a>(
    checked: Vec<PodSample<'a>>,
    all: Vec<ContainerSample<'a>>,
    errors: &mut Vec<ItemError>,
) -> (Vec<PodSample<'a>>, Vec<ContainerSample<'a>>) {
    // In order, each once: their containers already lie in that order.
    if checked.windows(2).all(|w| (w[0].namespace, w[0].name) < (w[1].namespace, w[1].name)) {
        return (checked, all);
    }
    // Namespaces are few: rank them once.
    let mut namespaces: Vec<&str> = Vec::new();
    for p in &checked {
        if namespaces.last() != Some(&p.namespace) {
            namespaces.push(p.namespace);
        }
    }
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut keys: Vec<([u64; 5], u32)> = Vec::with_capacity(checked.len());
    let mut last: Option<(&str, u32)> = None;
    for (k, p) in checked.iter().enumerate() {
        let rank = match last {
            Some((l, r)) if l == p.namespace => r,
            _ => namespaces.binary_search(&p.namespace).map_or(0, |r| r as u32),
        };
        last = Some((p.namespace, rank));
        keys.push((sort_key(rank, p.name.as_bytes()), k as u32));
    }
    keys.sort_unstable_by(|a, b| {
        // Zero padding sorts a shorter name first, as comparing the strings does; equal
        // keys (names alike in their first 36 bytes, or with NUL bytes) fall back to the
        // names themselves, then to list order.
        a.0.cmp(&b.0).then_with(|| checked[a.1 as usize].name.cmp(checked[b.1 as usize].name)).then(a.1.cmp(&b.1))
    });
    // Into that order in place, each pod moved once, so that the pods are not held twice (at
    // 150,000 pods, 19 MB): `dest[k]` is where the pod now at `k` belongs.
    let mut pods = checked;
    let mut dest = vec![0u32; keys.len()];
    for (to, &(_, from)) in keys.iter().enumerate() {
        dest[from as usize] = to as u32;
    }
    for k in 0..pods.len() {
        while dest[k] as usize != k {
            let to = dest[k] as usize;
            pods.swap(k, to);
            dest.swap(k, to);
        }
    }
    // Then each once, its containers laid out afresh.
    let mut containers = Vec::with_capacity(all.len());
    let mut kept = 0;
    for (at, &(key, _)) in keys.iter().enumerate() {
        // Equal keys are one namespace (its rank) and names alike in their first 36 bytes.
        if kept > 0 && keys[at - 1].0 == key && pods[kept - 1].name == pods[at].name {
            let p = &pods[at];
            errors.push(ItemError {
                resource: "pod",
                object: format!("{}/{}", p.namespace, p.name),
                reason: "listed twice".into(),
            });
            continue;
        }
        let start = containers.len();
        containers.extend_from_slice(all.get(pods[at].containers.clone()).unwrap_or_default());
        pods[at].containers = start..containers.len();
        if kept != at {
            pods.swap(kept, at);
        }
        kept += 1;
    }
    pods.truncate(kept);
    (pods, containers)
}

/// The namespace's rank and the name's first 36 bytes, zero-padded, as big-endian numbers:
/// they compare as the pair of strings does, up to those bytes. 36 bytes hold most pod
/// names whole (`web-5d78c9869d-x2k4q`, and those of workloads with longer names), so the
/// sort seldom reads the names themselves, where they lie in the response body (at
/// 150,000 pods, a cache miss each).
fn sort_key(rank: u32, name: &[u8]) -> [u64; 5] {
    let mut bytes = [0u8; 40];
    bytes[..4].copy_from_slice(&rank.to_be_bytes());
    let n = name.len().min(36);
    bytes[4..4 + n].copy_from_slice(&name[..n]);
    let mut key = [0u64; 5];
    for (k, chunk) in key.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        *k = u64::from_be_bytes(w);
    }
    key
}

fn pod_object(item: &PodMetrics<'_>, index: usize) -> String {
    match (item.metadata.namespace.as_deref(), item.metadata.name.as_deref()) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.to_owned(),
        _ => format!("#{index}"),
    }
}

/// Drops every item after the first with the same key (the input is sorted by key).
fn dedup<T, K: PartialEq>(
    items: &mut Vec<T>,
    key: impl Fn(&T) -> K,
    errors: &mut Vec<ItemError>,
    resource: &'static str,
    object: impl Fn(&T) -> String,
) {
    let mut kept: Vec<T> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        match kept.last() {
            Some(last) if key(last) == key(&item) => {
                errors.push(ItemError { resource, object: object(&item), reason: "listed twice".into() })
            }
            _ => kept.push(item),
        }
    }
    *items = kept;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantity::Quantity;

    fn lists(pods: &str, nodes: &str) -> (PodMetricsList<'static>, NodeMetricsList<'static>) {
        let pods: &'static str = Box::leak(pods.to_owned().into_boxed_str());
        let nodes: &'static str = Box::leak(nodes.to_owned().into_boxed_str());
        (serde_json::from_str(pods).expect("pods"), serde_json::from_str(nodes).expect("nodes"))
    }

    #[test]
    fn one_bad_item_costs_only_itself() {
        let (pods, nodes) = lists(
            r#"{"items":[
              {"metadata":{"name":"b","namespace":"x"},"window":"30s","containers":[{"name":"c","usage":{"cpu":"7m","memory":"1Ki"}}]},
              {"metadata":{"name":"bad","namespace":"x"},"containers":[{"name":"c","usage":{"cpu":"7 m","memory":"1Ki"}}]},
              {"metadata":{"name":"nomem","namespace":"x"},"containers":[{"name":"c","usage":{"cpu":"1"}}]},
              {"metadata":{"name":"a","namespace":"x"},"containers":[{"name":"z","usage":{"cpu":"1","memory":"1"}},{"name":"y","usage":{"cpu":"2","memory":"2"}}]},
              {"metadata":{"name":"a","namespace":"x"},"containers":[]},
              {"metadata":{"name":"nons"},"containers":[]},
              {"metadata":{"name":"badwin","namespace":"x"},"window":"30 s","containers":[]}
            ]}"#,
            r#"{"items":[{"metadata":{"name":"n2"},"usage":{"cpu":"1","memory":"1"}},
                          {"metadata":{},"usage":{"cpu":"1","memory":"1"}},
                          {"metadata":{"name":"n1"},"usage":{"cpu":"250000000n","memory":"1Gi"}}]}"#,
        );
        let s = Scrape::new(&pods, &nodes);
        let names: Vec<_> = s.pods.iter().map(|p| (p.namespace, p.name)).collect();
        assert_eq!(names, [("x", "a"), ("x", "b")]);
        assert_eq!(s.containers_of(&s.pods[0]).iter().map(|c| c.name).collect::<Vec<_>>(), ["y", "z"]);
        assert_eq!(s.pods[0].cpu().as_f64(), 3.0);
        assert_eq!(s.pods[1].window, Some("30s".parse().expect("dur")));
        assert_eq!(s.nodes.iter().map(|n| n.name).collect::<Vec<_>>(), ["n1", "n2"]);
        let errors: Vec<String> = s.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "dropped pod x/bad: container c: cpu: invalid quantity \"7 m\": unknown suffix \" m\"",
                "dropped pod x/nomem: container c: no memory usage",
                "dropped pod nons: no namespace",
                "dropped pod x/badwin: window: invalid duration \"30 s\": unknown unit",
                "dropped pod x/a: listed twice",
                "dropped node #1: no name",
            ]
        );
        assert_eq!(s.pod_index("x", "b"), Some(1));
        assert_eq!(s.pod_index("y", "b"), None);
    }

    #[test]
    fn the_containers_of_dropped_pods_leave_the_shared_buffer() {
        let c = |name: &str, cpu: &str| format!(r#"{{"name":"{name}","usage":{{"cpu":"{cpu}","memory":"1Ki"}}}}"#);
        let pod = |name: &str, containers: &[String]| {
            format!(r#"{{"metadata":{{"name":"{name}","namespace":"x"}},"containers":[{}]}}"#, containers.join(","))
        };
        let items = [
            pod("a", &[c("a1", "1m"), c("a2", "2m")]),
            // Fails at its second container, after the first was laid out.
            pod("b", &[c("b1", "1m"), c("b2", "two")]),
            pod("c", &[c("c1", "3m")]),
            // The second of two "c": dropped, its container with it.
            pod("c", &[c("c9", "9m")]),
            pod("d", &[c("d2", "5m"), c("d1", "4m")]),
            // The first "e" fails: the second, valid, is the one kept.
            pod("e", &[c("e1", "bad")]),
            pod("e", &[c("e2", "6m")]),
        ];
        let (pods, nodes) = lists(&format!(r#"{{"items":[{}]}}"#, items.join(",")), r#"{"items":[]}"#);
        let s = Scrape::new(&pods, &nodes);
        let kept: Vec<_> = s
            .pods
            .iter()
            .map(|p| (p.name, s.containers_of(p).iter().map(|c| c.name).collect::<Vec<_>>(), p.cpu().to_string()))
            .collect();
        assert_eq!(
            kept,
            [
                ("a", vec!["a1", "a2"], "3000000n".to_owned()),
                ("c", vec!["c1"], "3000000n".to_owned()),
                ("d", vec!["d1", "d2"], "9000000n".to_owned()),
                ("e", vec!["e2"], "6000000n".to_owned()),
            ]
        );
        assert_eq!(s.containers.len(), 6, "only the kept pods' containers: {:?}", s.containers);
        // Failures in list order, then the pods listed twice.
        let errors: Vec<(&str, &str)> = s.errors.iter().map(|e| (e.object.as_str(), &e.reason[..10])).collect();
        assert_eq!(errors, [("x/b", "container "), ("x/e", "container "), ("x/c", "listed twi")], "{:?}", s.errors);
    }

    #[test]
    fn a_container_listed_twice_drops_its_pod() {
        let c = |name: &str| format!(r#"{{"name":"{name}","usage":{{"cpu":"1m","memory":"1Ki"}}}}"#);
        let pod = |name: &str, containers: &[&str]| {
            let containers: Vec<String> = containers.iter().map(|n| c(n)).collect();
            format!(r#"{{"metadata":{{"name":"{name}","namespace":"x"}},"containers":[{}]}}"#, containers.join(","))
        };
        let items = [
            pod("in-order", &["a", "b", "c"]),
            pod("twice-in-order", &["a", "a", "b"]),
            pod("out-of-order", &["c", "a", "b"]),
            pod("twice-out-of-order", &["b", "a", "b"]),
        ];
        let (pods, nodes) = lists(&format!(r#"{{"items":[{}]}}"#, items.join(",")), r#"{"items":[]}"#);
        let s = Scrape::new(&pods, &nodes);
        let kept: Vec<_> =
            s.pods.iter().map(|p| (p.name, s.containers_of(p).iter().map(|c| c.name).collect::<Vec<_>>())).collect();
        assert_eq!(kept, [("in-order", vec!["a", "b", "c"]), ("out-of-order", vec!["a", "b", "c"])]);
        let errors: Vec<String> = s.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "dropped pod x/twice-in-order: container a listed twice",
                "dropped pod x/twice-out-of-order: container b listed twice"
            ]
        );
    }

    #[test]
    fn each_bad_item_costs_only_itself() {
        let good = |name: &str| {
            format!(
                r#"{{"metadata":{{"name":"{name}","namespace":"a"}},"containers":[{{"name":"c","usage":{{"cpu":"1m","memory":"1Ki"}}}}]}}"#
            )
        };
        let bad = [
            r#"{"metadata":{"name":"null-container","namespace":"a"},"containers":[null]}"#,
            r#"{"metadata":{"name":"null-label","namespace":"a","labels":{"app":null}},"containers":[]}"#,
            r#"{"metadata":{"name":"surrogate","namespace":"a","labels":{"app":"\udcff"}},"containers":[]}"#,
            r#"{"metadata":{"name":"numeric-cpu","namespace":"a"},"containers":[{"name":"c","usage":{"cpu":5,"memory":"1Ki"}}]}"#,
            r#"{"metadata":{"name":"negative","namespace":"a"},"containers":[{"name":"c","usage":{"cpu":"-5m","memory":"1Ki"}}]}"#,
        ];
        let json = format!(r#"{{"items":[{},{},{}]}}"#, good("first"), bad.join(","), good("last"));
        let pods: PodMetricsList<'_> = serde_json::from_str(&json).expect("the list itself is valid JSON");
        let nodes = Default::default();
        let scrape = Scrape::new(&pods, &nodes);
        let kept: Vec<&str> = scrape.pods.iter().map(|p| p.name).collect();
        assert_eq!(kept, ["first", "last"]);
        let mut dropped: Vec<&str> = scrape.errors.iter().map(|e| e.object.as_str()).collect();
        dropped.sort_unstable();
        assert_eq!(dropped, ["a/negative", "a/null-container", "a/null-label", "a/numeric-cpu", "a/surrogate"]);
        let negative = scrape.errors.iter().find(|e| e.object == "a/negative").expect("negative");
        assert!(negative.reason.contains("negative usage"), "{}", negative.reason);
    }

    #[test]
    fn pods_come_out_in_namespace_and_name_order_as_the_strings_sort() {
        // Names that share their first 16, 24 or 36 bytes, end inside them, carry a NUL, or
        // repeat.
        let names = [
            "a-long-deployment-name-7d9f8c6b5d-x2k4q",
            "a-long-deployment-name-7d9f8c6b5d-x2k4p",
            "a-long-deployment-name-7d9f8c6b5d-x2",
            "a-long-deployment-name-7d9f8c6b5d-x",
            r"a-long-deployment-name-7d9f8c6b5d-x2\u0000",
            "a-long-deployment-name-7d9f8c6b5d-x2k4p",
            "web-5d78c9869d-x2k4q-000b",
            "web-5d78c9869d-x2k4q-000a",
            "web-5d78c9869d-x2k4q",
            "web-5d78c9869d-x2k4",
            r"web-5d78c9869d-x2k4q\u0000",
            "web-5d78c9869d-x2k4q-000a",
            "app-5d78c9869d-0002",
            "app-5d78c9869d-0001",
            "app-5d78c9869d-00010",
            "app-5d78c9869d",
            "app-5d78c9869",
            r"app-5d78c9869d\u0000",
            "b",
            "a",
            "app-5d78c9869d-0001",
            "zz",
        ];
        let mut items = Vec::new();
        for (i, ns) in ["kube-system", "a", "kube-system-2", "kube-systen", "a"].iter().enumerate() {
            for (j, name) in names.iter().enumerate() {
                let cpu = i * 100 + j;
                items.push(format!(
                    r#"{{"metadata":{{"name":"{name}","namespace":"{ns}"}},"containers":[{{"name":"c","usage":{{"cpu":"{cpu}m","memory":"1"}}}}]}}"#
                ));
            }
        }
        let (pods, nodes) = lists(&format!(r#"{{"items":[{}]}}"#, items.join(",")), r#"{"items":[]}"#);
        let s = Scrape::new(&pods, &nodes);
        let got: Vec<(&str, &str, f64)> = s.pods.iter().map(|p| (p.namespace, p.name, p.cpu().as_f64())).collect();
        // The naive way: a stable sort of the strings, keeping the first of equals.
        let mut want: Vec<(&str, &str, f64)> = pods
            .items
            .iter()
            .map(|p| {
                let cpu: Quantity = p.containers[0].usage.cpu.as_deref().unwrap_or("").parse().expect("cpu");
                (p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""), cpu.as_f64())
            })
            .collect();
        want.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        want.dedup_by(|b, a| (a.0, a.1) == (b.0, b.1));
        assert_eq!(got, want);
        assert_eq!(s.errors.iter().filter(|e| e.reason == "listed twice").count(), pods.items.len() - want.len());

        // The same pods in order, as metrics-server lists them, come out the same, taken as
        // they are; one out of place, or one twice, and they are sorted as before.
        let in_order = |items: &[String]| {
            let (pods, nodes) = lists(&format!(r#"{{"items":[{}]}}"#, items.join(",")), r#"{"items":[]}"#);
            let s = Scrape::new(&pods, &nodes);
            let got: Vec<(String, String, f64, f64)> = s
                .pods
                .iter()
                .map(|p| {
                    let c = s.containers_of(p);
                    (p.namespace.to_owned(), p.name.to_owned(), p.cpu().as_f64(), c[0].cpu.as_f64())
                })
                .collect();
            (got, s.errors.len())
        };
        let mut sorted = items.clone();
        let key = |item: &String| {
            let v: serde_json::Value = serde_json::from_str(item).expect("item");
            (v["metadata"]["namespace"].as_str().map(str::to_owned), v["metadata"]["name"].as_str().map(str::to_owned))
        };
        sorted.sort_by_key(key);
        sorted.dedup_by_key(|i| key(i));
        let (from_sorted, errors) = in_order(&sorted);
        assert_eq!(errors, 0);
        let want: Vec<(String, String, f64, f64)> =
            got.iter().map(|(ns, name, cpu)| (ns.to_string(), name.to_string(), *cpu, *cpu)).collect();
        assert_eq!(from_sorted.len(), want.len());
        assert_eq!(
            from_sorted.iter().map(|p| (&p.0, &p.1)).collect::<Vec<_>>(),
            want.iter().map(|p| (&p.0, &p.1)).collect::<Vec<_>>()
        );
        assert!(from_sorted.iter().all(|p| p.2 == p.3), "each pod with its own containers");
        let mut swapped = sorted.clone();
        swapped.swap(3, 4);
        assert_eq!(in_order(&swapped).0, from_sorted, "one out of place");
        let mut twice = sorted.clone();
        twice.insert(5, sorted[4].clone());
        assert_eq!(in_order(&twice), (from_sorted, 1), "one twice");
    }

    #[test]
    fn taking_the_lists_scrapes_what_borrowing_them_does_and_borrows_from_the_body() {
        // Out of order, twice, broken, skipped; and below, escaped (serde's path).
        let pods = r#"{"kind":"PodMetricsList","items":[
          {"metadata":{"name":"b","namespace":"x","labels":{"app":"web"}},"timestamp":"2026-12-07T10:00:00Z","window":"30s",
           "containers":[{"name":"z","usage":{"cpu":"1m","memory":"1Ki"}},{"name":"y","usage":{"cpu":"2m","memory":"2Ki"}}]},
          {"metadata":{"name":"abc","namespace":"x"},"containers":[{"name":"c","usage":{"cpu":"3m","memory":"3Ki"}}]},
          {"metadata":{"name":"bad","namespace":"x"},"containers":[{"name":"c","usage":{"cpu":"7 m","memory":"1Ki"}}]},
          {"metadata":{"name":"b","namespace":"x"},"containers":[]},
          {"metadata":{"name":"skipped","namespace":"x"},"containers":[]},
          {"metadata":{"name":"a","namespace":"w"},"timestamp":"2026-12-07T10:00:01Z","containers":[{"name":"c","usage":{"cpu":"4m","memory":"4Ki"}}]}
        ]}"#;
        let nodes = r#"{"items":[{"metadata":{"name":"n2"},"timestamp":"2026-12-07T10:00:02Z","usage":{"cpu":"1","memory":"1"}},
          {"metadata":{},"usage":{}},{"metadata":{"name":"skipped"},"usage":{"cpu":"1","memory":"1"}},
          {"metadata":{"name":"n1"},"usage":{"cpu":"x","memory":"1"}}]}"#;
        struct NotSkipped;
        impl Select for NotSkipped {
            fn pod(&self, _: &str, name: &str) -> bool {
                name != "skipped"
            }
            fn node(&self, name: &str) -> bool {
                name != "skipped"
            }
        }
        // Whether the lists were held, (read by serde, which reads labels into pairs)
        // whether the labels lie in the body or are a copy, and whether the pods can be read
        // straight from their body (with no escape in them, nor in a node kept).
        let check = |pods: &'static str, nodes: &'static str, held_want: bool, labels_copied: bool, straight: bool| {
            let (pod_list, node_list) = lists(pods, nodes);
            let borrowed = Scrape::select(&pod_list, &node_list, &NotSkipped);
            let (pod_list, node_list) =
                (PodMetricsList::parse(pods.as_bytes()), NodeMetricsList::parse(nodes.as_bytes()));
            let mut held = None;
            let taken = Scrape::from_lists(pod_list.expect("pods"), node_list.expect("nodes"), &NotSkipped, &mut held);
            assert_eq!(taken, borrowed);
            let names: Vec<_> = taken.pods.iter().map(|p| (p.namespace, p.name)).collect();
            assert_eq!(names, [("w", "a"), ("x", "abc"), ("x", "b")]);
            assert_eq!(taken.errors.len(), 4, "{:?}", taken.errors);
            assert_eq!(taken.nodes.iter().map(|n| n.name).collect::<Vec<_>>(), ["n2"]);
            // Unless it held the lists, what it borrows lies in the bodies.
            let in_body = |s: &str| pods.as_bytes().as_ptr_range().contains(&s.as_ptr());
            let all_in_body = taken.pods.iter().all(|p| {
                [p.namespace, p.name]
                    .into_iter()
                    .chain(p.timestamp)
                    .chain(p.labels.as_ref().map(JsonLabels::as_json).filter(|_| !labels_copied))
                    .all(in_body)
                    && taken.containers_of(p).iter().all(|c| in_body(c.name))
            });
            assert!(all_in_body || held_want);
            let node_in_body = |n: &NodeSample<'_>| {
                let in_nodes = |s: &str| nodes.as_bytes().as_ptr_range().contains(&s.as_ptr());
                in_nodes(n.name) && n.timestamp.is_some_and(in_nodes)
            };
            assert!(taken.nodes.iter().all(node_in_body) || held_want);
            // Straight from the body: the same scrape, or the nodes given back as they were.
            let node_list = NodeMetricsList::parse(nodes.as_bytes()).expect("nodes");
            let given = format!("{node_list:?}");
            match Scrape::from_pods_body(pods.as_bytes(), node_list, &NotSkipped) {
                Ok(read) => assert!(straight && read == taken, "{read:?}"),
                Err(back) => assert!(!straight && format!("{back:?}") == given),
            }
            // Either way, as the server reads: the same scrape.
            let node_list = NodeMetricsList::parse(nodes.as_bytes()).expect("nodes");
            let (mut repaired, mut held_here) = (None, None);
            let (read, how) =
                Scrape::from_pods_json(pods.as_bytes(), node_list, &NotSkipped, &mut repaired, &mut held_here);
            assert!(read == taken && how.is_ok_and(|bad| bad.is_none()), "{read:?}");
            assert!(repaired.is_none());
            assert_eq!(held.is_some(), held_want);
        };
        check(pods, nodes, false, false, true);
        // Escaped, and so unescaped by serde, in a pod's name, a container's, a node's name:
        // the lists are held.
        let leak = |s: String| -> &'static str { s.leak() };
        check(leak(pods.replace(r#""abc""#, r#""a\u0062c""#)), nodes, true, true, false);
        check(leak(pods.replace(r#""z""#, r#""\u007a""#)), nodes, true, true, false);
        check(pods, leak(nodes.replace(r#""n2""#, r#""n\u0032""#)), true, false, false);
        // In a label (copied), or a node skipped: they are not.
        check(leak(pods.replace(r#""web""#, r#""w\u0065b""#)), nodes, false, true, false);
        check(pods, leak(nodes.replace(r#""skipped""#, r#""skipp\u0065d""#)), false, false, true);
        // Not UTF-8, or not a pod list: no scrape straight from the body.
        // A label's byte that is not UTF-8.
        let at = pods.find("\"web\"").expect("the label") + 2;
        let mut bytes = pods.as_bytes().to_vec();
        bytes[at] = 0xff;
        assert!(Scrape::from_pods_body(&bytes, NodeMetricsList::default(), &All).is_err());
        let other = pods.replace("PodMetricsList", "PodList");
        assert!(Scrape::from_pods_body(other.as_bytes(), NodeMetricsList::default(), &All).is_err());
        // Read as the server reads: repaired from the bad byte on, or the nodes alone with why.
        let (mut repaired, mut held) = (None, None);
        let (read, how) = Scrape::from_pods_json(&bytes, NodeMetricsList::default(), &All, &mut repaired, &mut held);
        let fixed = pods.replacen("\"web\"", "\"w\u{FFFD}b\"", 1);
        let (whole, mut held_whole) = (PodMetricsList::parse(fixed.as_bytes()).expect("pods"), None);
        let want = Scrape::from_lists(whole, NodeMetricsList::default(), &All, &mut held_whole);
        assert!(read == want && !read.pods.is_empty(), "{read:?}");
        assert_eq!(how.ok(), Some(Some(at)), "repaired from the bad byte on");
        let node_list = NodeMetricsList::parse(nodes.as_bytes()).expect("nodes");
        let (mut repaired, mut held) = (None, None);
        let (read, how) = Scrape::from_pods_json(other.as_bytes(), node_list, &All, &mut repaired, &mut held);
        let why = how.expect_err("a PodList is no pod metrics list").to_string();
        assert!(read.pods.is_empty() && !read.nodes.is_empty() && why.contains("PodList"), "{why}");
    }
}
