//! The metrics lists read without serde, in the shape metrics-server writes them: objects,
//! arrays, `null`, and strings without escapes, borrowed from the body.
//!
//! Anything else gives up: an escape, a number, `true`/`false` where a string belongs, a
//! known field twice, a list without `items` or of another `kind`, nesting past [`MAX_DEPTH`], malformed JSON. The list is then read by
//! serde (see [`List::parse`](crate::List::parse)), which also decides what is an error.
//! So this never changes a result: on the lists it reads, it gives what serde gives
//! (the tests check that on the published samples, on synthetic lists, and on every way of
//! breaking one), only faster (the usual case is about the cost of serde's `IgnoredAny`).
//! For a shard ([`List::parse_selected`](crate::List::parse_selected)) it gives up where it
//! would for the whole list, and leaves out the pods its `Select` skips, read only to check
//! them: the scrape with that `Select` is the same.

use std::borrow::Cow;

use crate::labels::JsonLabels;
use crate::list::ListItem;
use crate::model::{ContainerMetrics, Metadata, NodeMetrics, PodMetrics, Str, Usage};
use crate::scrape::{All, Select};
use crate::swar::{bytes_equal, word, HIGH, ONES};

/// Deeper than this, unknown values are left to serde (which stops at 128).
const MAX_DEPTH: usize = 64;

/// Fewer bytes than metrics-server writes for an item (a pod with one short-named container
/// takes about 250): how much room to reserve for a list's items.
const ITEM_BYTES: usize = 200;

/// The most room reserved for a list's items: under glibc's largest mmap threshold on 64-bit,
/// 32 MiB, which the image sets (see the Dockerfile), so that malloc takes it from the heap
/// rather than map it afresh. It holds about 218,000 pods' items, more than Kubernetes' limit
/// of 150,000; a larger list grows past it.
const RESERVED_BYTES: usize = 30 * 1024 * 1024;

/// Gave up: read the list with serde instead.
struct GiveUp;

type Scanned<T> = Result<T, GiveUp>;

/// A position in the body.
struct Scan<'a> {
    text: &'a str,
    at: usize,
    /// A pod's containers as they are read, then moved to a `Vec` of their number: one
    /// grown by pushing holds at least four (at 150,000 pods with two each, 21 MB more).
    containers: Vec<ContainerMetrics<'a>>,
    /// Room for the next pod's containers: a pod handed on and done with ([`pods_each`])
    /// gives its `Vec` back, so that a list read pod by pod allocates none a pod.
    spare: Vec<ContainerMetrics<'a>>,
}

impl<'a> Scan<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not whitespace, not taken.
    fn peek(&mut self) -> Scanned<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.at) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Ok(c);
            }
            self.at += 1;
        }
        Err(GiveUp)
    }

    /// Whether nothing but whitespace follows.
    fn ended(&mut self) -> bool {
        self.peek().is_err() && self.at == self.text.len()
    }

    fn eat(&mut self, c: u8) -> Scanned<()> {
        if self.peek()? != c {
            return Err(GiveUp);
        }
        self.at += 1;
        Ok(())
    }

    fn literal(&mut self, word: &str) -> Scanned<()> {
        self.peek()?;
        if !self.bytes()[self.at..].starts_with(word.as_bytes()) {
            return Err(GiveUp);
        }
        self.at += word.len();
        Ok(())
    }

    /// A string with no escape and no control character, borrowed.
    fn string(&mut self) -> Scanned<&'a str> {
        self.eat(b'"')?;
        self.string_rest().ok_or(GiveUp)
    }

    /// The rest of a string whose `"` is taken, and its closing `"`; `None` (having taken
    /// nothing more) at an escape or a control character.
    #[inline]
    fn string_rest(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        let start = self.at;
        let mut i = start;
        // Eight bytes at a time, to the first `"`, `\` or control character.
        while let Some(chunk) = b.get(i..i + 8) {
            let w = word(chunk);
            let special = bytes_equal(w, b'"') | bytes_equal(w, b'\\') | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            if special != 0 {
                i += (special.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        while let Some(&c) = b.get(i) {
            if c == b'"' {
                // Both ends are ASCII quotes, so this is a whole str.
                let s = self.text.get(start..i)?;
                self.at = i + 1;
                return Some(s);
            }
            if c == b'\\' || c < 0x20 {
                return None;
            }
            i += 1;
        }
        None
    }

    /// Takes `bytes` if the text goes on with them, as they are (no whitespace first). Of a
    /// length known when compiled, so the compare is a few words, not a call to `memcmp`.
    #[inline]
    fn exactly<const N: usize>(&mut self, bytes: &[u8; N]) -> Option<()> {
        let next: &[u8; N] = self.bytes().get(self.at..self.at + N)?.try_into().ok()?;
        (next == bytes).then(|| self.at += N)
    }

    /// What `read` reads, or `None` with nothing taken.
    fn attempt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.at;
        let value = read(self);
        if value.is_none() {
            self.at = start;
        }
        value
    }

    /// A string or `null`.
    fn opt_str(&mut self) -> Scanned<Option<Str<'a>>> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            return Ok(None);
        }
        Ok(Some(Cow::Borrowed(self.string()?)))
    }

    /// `null` (then `Ok(false)`), or the start of an object or array `open` (`Ok(true)`).
    fn open_or_null(&mut self, open: u8) -> Scanned<bool> {
        if self.peek()? == b'n' {
            self.literal("null")?;
            return Ok(false);
        }
        self.eat(open)?;
        Ok(true)
    }

    /// The members of an object whose `{` is taken, each given to `member` with its key.
    fn members(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Scanned<()>) -> Scanned<()> {
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(GiveUp),
            }
        }
    }

    /// The elements of an array whose `[` is taken.
    fn elements(&mut self, mut element: impl FnMut(&mut Self) -> Scanned<()>) -> Scanned<()> {
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(GiveUp),
            }
        }
    }

    /// Any value we do not read (numbers give up).
    fn skip(&mut self, depth: usize) -> Scanned<()> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.at += 1;
                self.members(|s, _| s.skip(depth + 1))
            }
            b'[' => {
                self.at += 1;
                self.elements(|s| s.skip(depth + 1))
            }
            b'n' => self.literal("null"),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            _ => Err(GiveUp),
        }
    }

    /// The members of an object whose `{` is taken: each key of `known` is read by `field`
    /// (given the key, so only those), at most once, since a known field twice is serde's
    /// error and not ours to decide; any other key's value is skipped.
    fn fields(&mut self, known: &[&str], mut field: impl FnMut(&mut Self, &str) -> Scanned<()>) -> Scanned<()> {
        let mut seen = 0u32;
        self.members(|s, key| {
            let Some(i) = known.iter().position(|k| *k == key) else { return s.skip(1) };
            if seen & (1 << i) != 0 {
                return Err(GiveUp);
            }
            seen |= 1 << i;
            field(s, key)
        })
    }

    /// `null`, or an array whose elements `element` reads, appended to `out`.
    fn array_into<T>(&mut self, out: &mut Vec<T>, mut element: impl FnMut(&mut Self) -> Scanned<T>) -> Scanned<()> {
        if self.open_or_null(b'[')? {
            self.elements(|s| {
                out.push(element(s)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// `null`, or labels, checked to be an object of strings and kept as its text.
    fn labels(&mut self) -> Scanned<Option<JsonLabels<'a>>> {
        self.labels_kept(true)
    }

    /// [`Scan::labels`], which only checks them unless `keep`: a pod a shard skips needs
    /// none.
    fn labels_kept(&mut self, keep: bool) -> Scanned<Option<JsonLabels<'a>>> {
        if !self.open_or_null(b'{')? {
            return Ok(None);
        }
        let start = self.at - 1;
        if self.compact_labels().is_none() {
            self.members(|s, _| s.string().map(drop))?;
        }
        // Both ends are ASCII braces.
        let text = self.text.get(start..self.at).ok_or(GiveUp)?;
        Ok(keep.then(|| JsonLabels::checked(text)))
    }

    /// The rest of a labels object whose `{` is taken, as the API writes it: `"key":"value"`
    /// pairs with no space, read by matching their fixed parts (a pod has a few labels and
    /// the general path's steps cost more than their short strings); `None`, having taken
    /// nothing, for anything else.
    fn compact_labels(&mut self) -> Option<()> {
        self.attempt(|s| {
            if s.exactly(b"}").is_some() {
                return Some(());
            }
            s.exactly(b"\"")?;
            loop {
                s.string_rest()?;
                s.exactly(b":\"")?;
                s.string_rest()?;
                if s.exactly(b",\"").is_none() {
                    return s.exactly(b"}");
                }
            }
        })
    }

    fn metadata(&mut self) -> Scanned<Metadata<'a>> {
        let mut meta = Metadata::default();
        if self.open_or_null(b'{')? {
            self.fields(&["name", "namespace", "labels"], |s, key| {
                match key {
                    "name" => meta.name = s.opt_str()?,
                    "namespace" => meta.namespace = s.opt_str()?,
                    "labels" => meta.labels = s.labels()?,
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(meta)
    }

    fn usage(&mut self) -> Scanned<Usage<'a>> {
        let mut usage = Usage::default();
        if self.open_or_null(b'{')? {
            self.fields(&["cpu", "memory"], |s, key| {
                match key {
                    "cpu" => usage.cpu = s.opt_str()?,
                    "memory" => usage.memory = s.opt_str()?,
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(usage)
    }

    /// A container as metrics-server writes it, `{"name":"..","usage":{"cpu":"..",
    /// "memory":".."}}` with no space, read by matching its fixed parts; `None`, having
    /// taken nothing, for anything else.
    fn compact_container(&mut self) -> Option<ContainerMetrics<'a>> {
        self.attempt(|s| {
            s.exactly(br#"{"name":""#)?;
            let name = s.string_rest()?;
            s.exactly(br#","usage":{"cpu":""#)?;
            let cpu = s.string_rest()?;
            s.exactly(br#","memory":""#)?;
            let memory = s.string_rest()?;
            s.exactly(b"}}")?;
            let usage = Usage { cpu: Some(Cow::Borrowed(cpu)), memory: Some(Cow::Borrowed(memory)) };
            Some(ContainerMetrics { name: Some(Cow::Borrowed(name)), usage })
        })
    }

    fn container(&mut self) -> Scanned<ContainerMetrics<'a>> {
        self.peek()?;
        if let Some(c) = self.compact_container() {
            return Ok(c);
        }
        let mut c = ContainerMetrics::default();
        self.eat(b'{')?;
        self.fields(&["name", "usage"], |s, key| {
            match key {
                "name" => c.name = s.opt_str()?,
                "usage" => c.usage = s.usage()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(c)
    }

    /// A pod as metrics-server writes it, `{"metadata":{"name":"..","namespace":".."
    /// [,"creationTimestamp":".."][,"labels":{..}]}[,"timestamp":".."][,"window":".."],
    /// "containers":[..]}` with no space, read by matching its fixed parts (its containers
    /// as [`Scan::pod`] reads them, `Some(None)` if `select` skips it); `None`, having taken
    /// nothing, for anything else.
    fn compact_pod(&mut self, select: &dyn Select) -> Option<Option<PodMetrics<'a>>> {
        self.attempt(|s| {
            s.exactly(br#"{"metadata":{"name":""#)?;
            let name = s.string_rest()?;
            s.exactly(br#","namespace":""#)?;
            let namespace = s.string_rest()?;
            let keep = select.pod(namespace, name);
            if s.exactly(br#","creationTimestamp":""#).is_some() {
                s.string_rest()?;
            }
            let labels = match s.exactly(br#","labels":"#) {
                Some(()) => s.labels_kept(keep).ok()?,
                None => None,
            };
            s.exactly(b"}")?;
            let metadata =
                Metadata { name: Some(Cow::Borrowed(name)), namespace: Some(Cow::Borrowed(namespace)), labels };
            let containers = if keep { std::mem::take(&mut s.spare) } else { Vec::new() };
            let mut pod = PodMetrics { metadata, containers, ..PodMetrics::default() };
            if s.exactly(br#","timestamp":""#).is_some() {
                pod.timestamp = Some(Cow::Borrowed(s.string_rest()?));
            }
            if s.exactly(br#","window":""#).is_some() {
                pod.window = Some(Cow::Borrowed(s.string_rest()?));
            }
            s.exactly(br#","containers":"#)?;
            s.containers(&mut pod.containers, keep).ok()?;
            s.exactly(b"}")?;
            Some(keep.then_some(pod))
        })
    }

    /// A pod, or `None` if `select` skips it: once its metadata says so, its labels and
    /// containers are only checked to be well-formed, not kept.
    fn pod(&mut self, select: &dyn Select) -> Scanned<Option<PodMetrics<'a>>> {
        self.peek()?;
        if let Some(pod) = self.compact_pod(select) {
            return Ok(pod);
        }
        let mut pod = PodMetrics { containers: std::mem::take(&mut self.spare), ..PodMetrics::default() };
        let mut skipped = false;
        self.eat(b'{')?;
        self.fields(&["metadata", "timestamp", "window", "containers"], |s, key| {
            match key {
                "metadata" => {
                    pod.metadata = s.metadata()?;
                    let meta = &pod.metadata;
                    // As `Scrape::select` decides: an item without both is always kept.
                    if let (Some(ns), Some(name)) = (meta.namespace.as_deref(), meta.name.as_deref()) {
                        skipped = !select.pod(ns, name);
                    }
                }
                "timestamp" => pod.timestamp = s.opt_str()?,
                "window" => pod.window = s.opt_str()?,
                "containers" => s.containers(&mut pod.containers, !skipped)?,
                _ => {}
            }
            Ok(())
        })?;
        // A pod skipped lets its containers go (read before its metadata, they were kept),
        // and their room with them: it is not handed on.
        Ok((!skipped).then_some(pod))
    }

    /// A pod's containers, into `out` if `keep`. Those of a skipped pod are read as any
    /// pod's are (so no list reads differently) but not kept.
    fn containers(&mut self, out: &mut Vec<ContainerMetrics<'a>>, keep: bool) -> Scanned<()> {
        if keep {
            let mut read = std::mem::take(&mut self.containers);
            let scanned = self.array_into(&mut read, Self::container);
            out.reserve_exact(read.len());
            out.append(&mut read);
            self.containers = read;
            return scanned;
        }
        if self.open_or_null(b'[')? {
            self.elements(|s| s.container().map(drop))?;
        }
        Ok(())
    }

    fn node(&mut self) -> Scanned<NodeMetrics<'a>> {
        let mut node = NodeMetrics::default();
        self.eat(b'{')?;
        self.fields(&["metadata", "timestamp", "window", "usage"], |s, key| {
            match key {
                "metadata" => node.metadata = s.metadata()?,
                "timestamp" => node.timestamp = s.opt_str()?,
                "window" => node.window = s.opt_str()?,
                "usage" => node.usage = s.usage()?,
                _ => {}
            }
            Ok(())
        })?;
        Ok(node)
    }
}

/// How many items to reserve room for in a list of `bytes`: one every [`ITEM_BYTES`],
/// reserved, not touched, so that there is no copy as the list grows (at 150,000 pods the
/// last doubling copied 19 MB into a new 38 MB), only past that. But no more than
/// [`RESERVED_BYTES`]: at 150,000 pods that room was 44 MB, which malloc maps afresh for every
/// list, so the 22 MB used was faulted in at every scrape (5,274 page faults); under it, the
/// heap hands the same block back scrape after scrape.
pub(crate) fn room<T>(bytes: usize) -> usize {
    (bytes / ITEM_BYTES).min(RESERVED_BYTES / std::mem::size_of::<T>().max(1))
}

/// A whole `...List` body of the `kind` `want` (if it says one): its `items`, each read by
/// `item`, those it keeps (`Some`), if it has the usual shape.
fn list<'a, T>(
    text: &'a str,
    want: Option<&str>,
    mut item: impl FnMut(&mut Scan<'a>) -> Scanned<Option<T>>,
) -> Option<Vec<T>> {
    let mut items = Vec::with_capacity(room::<T>(text.len()));
    each_item(text, want, |s| {
        if let Some(kept) = item(s)? {
            items.push(kept);
        }
        Ok(())
    })?;
    Some(items)
}

/// A whole `...List` body of the `kind` `want` (if it says one), if it has the usual shape:
/// `item` reads each of its `items` as they come. `None` if it has not, and then what
/// `item` made of the items before is to be dropped (a `kind` that is not `want` may come
/// after them).
fn each_item<'a>(text: &'a str, want: Option<&str>, mut item: impl FnMut(&mut Scan<'a>) -> Scanned<()>) -> Option<()> {
    let mut s = Scan { text, at: 0, containers: Vec::new(), spare: Vec::new() };
    s.eat(b'{').ok()?;
    let mut listed = false;
    s.fields(&["items", "kind"], |s, key| {
        if key == "kind" {
            // Another kind is no list of these: serde says so.
            return match s.opt_str()? {
                Some(kind) if want.is_some_and(|want| kind != want) => Err(GiveUp),
                _ => Ok(()),
            };
        }
        listed = true;
        if s.open_or_null(b'[')? {
            s.elements(&mut item)?;
        }
        Ok(())
    })
    .ok()?;
    // Without `items` it is no list: serde says so.
    (s.ended() && listed).then_some(())
}

/// A `PodMetricsList`'s items, if it has the usual shape.
pub(crate) fn pods(text: &str) -> Option<Vec<PodMetrics<'_>>> {
    pods_selected(text, &All)
}

/// A `PodMetricsList`'s items, if it has the usual shape, less those `select` skips (read
/// only to check them). A pod without a name after one left out gives up: a scrape names it
/// by its place in the list, which would have moved.
pub(crate) fn pods_selected<'a>(text: &'a str, select: &dyn Select) -> Option<Vec<PodMetrics<'a>>> {
    let mut left_out = false;
    list(text, PodMetrics::KIND, |s| kept_pod(s, select, &mut left_out))
}

/// Each pod [`pods_selected`] gives, handed to `each` as it is read, with its place among
/// them; `None` where `pods_selected` gives `None` (and then what `each` made of the pods
/// before is to be dropped). No list of them is made: a pod's text and containers are done
/// with once `each` returns.
pub(crate) fn pods_each<'a>(
    text: &'a str,
    select: &dyn Select,
    mut each: impl FnMut(usize, &PodMetrics<'a>),
) -> Option<()> {
    let (mut left_out, mut kept) = (false, 0);
    each_item(text, PodMetrics::KIND, |s| {
        if let Some(mut pod) = kept_pod(s, select, &mut left_out)? {
            each(kept, &pod);
            kept += 1;
            pod.containers.clear();
            s.spare = pod.containers;
        }
        Ok(())
    })
}

/// The next pod, if `select` keeps it; `left_out` says whether one was left out before.
fn kept_pod<'a>(s: &mut Scan<'a>, select: &dyn Select, left_out: &mut bool) -> Scanned<Option<PodMetrics<'a>>> {
    match s.pod(select)? {
        Some(pod) if *left_out && pod.metadata.name.is_none() => Err(GiveUp),
        Some(pod) => Ok(Some(pod)),
        None => {
            *left_out = true;
            Ok(None)
        }
    }
}

/// The pairs of a labels object with no escape (the text of a [`JsonLabels`] the scanner
/// made), in document order, borrowed; `None` for anything else.
pub(crate) fn label_pairs(text: &str) -> Option<Vec<(Str<'_>, Str<'_>)>> {
    let mut s = Scan { text, at: 0, containers: Vec::new(), spare: Vec::new() };
    let mut pairs = Vec::new();
    s.eat(b'{').ok()?;
    s.members(|s, key| {
        pairs.push((Cow::Borrowed(key), Cow::Borrowed(s.string()?)));
        Ok(())
    })
    .ok()?;
    s.ended().then_some(pairs)
}

/// A `NodeMetricsList`'s items, if it has the usual shape.
pub(crate) fn nodes(text: &str) -> Option<Vec<NodeMetrics<'_>>> {
    list(text, NodeMetrics::KIND, |s| s.node().map(Some))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(bound(deserialize = "U: Deserialize<'de>"))]
    struct Serde<U> {
        #[serde(default)]
        items: Option<Vec<U>>,
    }

    /// What serde reads from `text`, as text to compare (`Cow`'s Debug does not show
    /// whether it borrows).
    fn by_serde<'a, T: Deserialize<'a> + std::fmt::Debug>(text: &'a str) -> Option<String> {
        serde_json::from_str::<Serde<T>>(text).ok().map(|l| format!("{:?}", l.items.unwrap_or_default()))
    }

    /// On `text`, the fast path gives up or gives what serde gives.
    fn agrees(text: &str) -> bool {
        let pods = pods(text).map(|items| format!("{items:?}"));
        let nodes = nodes(text).map(|items| format!("{items:?}"));
        let pods_ok = pods.is_none() || pods == by_serde::<PodMetrics<'_>>(text);
        let nodes_ok = nodes.is_none() || nodes == by_serde::<NodeMetrics<'_>>(text);
        pods_ok && nodes_ok
    }

    const LIST: &str = r#"{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","metadata":{},"items":[
      {"metadata":{"name":"a","namespace":"n","creationTimestamp":"2021-12-17T17:57:42Z","labels":{"app":"x","tier":"ü"}},
       "timestamp":"2021-12-17T17:57:42Z","window":"30s","containers":[{"name":"c","usage":{"cpu":"7338891n","memory":"14520Ki"}},
       {"name":"d","usage":null}]},
      {"metadata":null,"containers":null},{"metadata":{"name":"b","labels":null},"timestamp":null,"unknown":[{"x":[null,true,false]}]}],
      "usage":{"cpu":"1","memory":"2"}}"#;

    #[test]
    fn reads_what_serde_reads_from_the_published_samples() {
        for text in [
            include_str!("../fixtures/podmetrics-list-kubernetes-website.json"),
            include_str!("../fixtures/seed-podmetrics-list.json"),
            LIST,
        ] {
            let fast = pods(text).expect("the usual shape");
            assert_eq!(Some(format!("{fast:?}")), by_serde::<PodMetrics<'_>>(text));
            assert!(fast.iter().flat_map(|p| &p.metadata.name).all(|n| matches!(n, Cow::Borrowed(_))));
        }
        let node_list = format!(r#"{{"items":[{}]}}"#, include_str!("../fixtures/nodemetrics-kubernetes-website.json"));
        let fast = nodes(&node_list).expect("the usual shape");
        assert_eq!(Some(format!("{fast:?}")), by_serde::<NodeMetrics<'_>>(&node_list));
        assert_eq!(fast[0].usage.cpu.as_deref(), Some("487558164n"));
    }

    #[test]
    fn gives_up_where_serde_decides() {
        for text in [
            r#"{"items":[{"metadata":{"name":"a\"b"}}]}"#,
            r#"{"items":[{"metadata":{"name":"a","name":"b"}}]}"#,
            r#"{"items":[{"metadata":{"labels":{"app":null}}}]}"#,
            r#"{"items":[null]}"#,
            r#"{"items":[{"containers":[{"usage":{"cpu":5}}]}]}"#,
            r#"{"items":[{"window":"30s"}]} x"#,
            r#"{"items":[],"items":[]}"#,
            r#"[[]]"#,
            r#"{}"#,
            r#"{"kind":"Status","message":"forbidden","code":403}"#,
            r#"{"kind":"PodList","items":[]}"#,
            "{\"items\":[{\"metadata\":{\"name\":\"tab\there\"}}]}",
        ] {
            assert!(pods(text).is_none(), "{text}");
        }
        let deep = format!(r#"{{"items":[{{"x":{}{}}}]}}"#, "[".repeat(100), "]".repeat(100));
        assert!(pods(&deep).is_none());
        assert!(pods(r#"  {"items":null}  "#).is_some_and(|p| p.is_empty()));
    }

    /// Keeps the pods whose name has an odd length, and every node.
    struct Odd;

    impl Select for Odd {
        fn pod(&self, _: &str, name: &str) -> bool {
            name.len() % 2 == 1
        }
        fn node(&self, _: &str) -> bool {
            true
        }
    }

    /// A scrape of a list parsed for `select` is the scrape of the whole list, and so is one
    /// that takes the list; and one read straight from the body, which is made wherever the
    /// scan reads the list, for a shard or whole.
    fn selects_alike(text: &str) -> bool {
        use crate::{NodeMetricsList, PodMetricsList, Scrape};
        let nodes = NodeMetricsList::default();
        let straight =
            |select: &dyn Select| Scrape::from_pods_body(text.as_bytes(), NodeMetricsList::default(), select);
        let (straight_part, straight_whole) = (straight(&Odd), straight(&All));
        let read_straight = straight_part.is_ok() == pods_selected(text, &Odd).is_some()
            && straight_whole.is_ok() == pods(text).is_some();
        let alike =
            match (PodMetricsList::parse(text.as_bytes()), PodMetricsList::parse_selected(text.as_bytes(), &Odd)) {
                (Ok(whole), Ok(part)) => {
                    let scrape = Scrape::select(&whole, &nodes, &Odd);
                    let mut held = None;
                    let taken = Scrape::from_lists(part.clone(), NodeMetricsList::default(), &Odd, &mut held);
                    scrape == Scrape::select(&part, &nodes, &Odd)
                        && scrape == taken
                        && straight_part.ok().is_none_or(|s| s == scrape)
                        && straight_whole.ok().is_none_or(|s| s == Scrape::new(&whole, &nodes))
                }
                (Err(a), Err(b)) => a.to_string() == b.to_string() && straight_part.is_err() && straight_whole.is_err(),
                _ => false,
            };
        read_straight && alike
    }

    const SHARDED: &str = r#"{"items":[
      {"metadata":{"name":"ab","namespace":"n","labels":{"app":"a"}},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]},
      {"metadata":{"name":"abc","namespace":"n","labels":{"app":"a"}},"window":"30s","containers":[{"name":"c","usage":{"cpu":"2m","memory":"2Ki"}}]},
      {"containers":[{"name":"c","usage":{"cpu":"3m","memory":"3Ki"}}],"metadata":{"name":"cd","namespace":"n"}},
      {"containers":[{"name":"d","usage":{"cpu":"4m","memory":"4Ki"}}],"metadata":{"name":"cde","namespace":"n"}},
      {"metadata":{"name":"ef","namespace":""},"containers":[{"name":"c","usage":{"cpu":"x","memory":"4Ki"}}]},
      {"metadata":{"name":"gh"},"containers":[{"name":"c","usage":{"cpu":"5m","memory":"5Ki"}}]},
      {"metadata":{"name":"ij","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"bad","memory":"6Ki"}}]}]}"#;

    #[test]
    fn room_is_reserved_for_a_list_but_never_past_the_heaps_largest_block() {
        assert_eq!(room::<PodMetrics<'_>>(250_000), 1_250, "an item every 200 bytes");
        let largest = room::<PodMetrics<'_>>(61_500_000) * std::mem::size_of::<PodMetrics<'_>>();
        assert!(largest <= RESERVED_BYTES && RESERVED_BYTES < 32 << 20, "{largest} bytes");
        assert!(room::<PodMetrics<'_>>(61_500_000) >= 150_000, "Kubernetes' limit fits");
    }

    #[test]
    fn a_pods_containers_take_no_more_room_than_they_need() {
        let text = r#"{"items":[{"metadata":{"name":"a","namespace":"n"},"containers":[
          {"name":"c1","usage":{"cpu":"1m","memory":"1Ki"}},{"name":"c2","usage":{"cpu":"2m","memory":"2Ki"}}]},
          {"metadata":{"name":"b","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]},
          {"metadata":{"name":"c","namespace":"n"},"containers":[]}]}"#;
        let pods = pods(text).expect("the usual shape");
        let room: Vec<_> = pods.iter().map(|p| (p.containers.len(), p.containers.capacity())).collect();
        assert_eq!(room, [(2, 2), (1, 1), (0, 0)]);
        assert_eq!(pods[0].containers[1].name.as_deref(), Some("c2"));
    }

    #[test]
    fn a_pods_labels_are_its_text_in_the_body() {
        let text = r#"{"items":[{"metadata":{"name":"a","namespace":"n","labels":{"x":"1","y":"2","z":"3"}},"containers":[]},
          {"metadata":{"name":"b","namespace":"n","labels":{ "x" : "1" }},"containers":[]},
          {"metadata":{"name":"c","namespace":"n","labels":{}},"containers":[]},
          {"metadata":{"name":"d","namespace":"n","labels":{"x":"1","y":"2" }},"containers":[]},
          {"metadata":{"name":"e","namespace":"n","labels":{"x":"1", "y":"2"}},"containers":[]}]}"#;
        let pods = pods(text).expect("the usual shape");
        let json: Vec<&str> = pods.iter().map(|p| p.metadata.labels.as_ref().expect("labels").as_json()).collect();
        // The last two begin as the API writes labels; once that stops matching, they are
        // read again whole, from their `{`, by the general path.
        let spaced = [r#"{"x":"1","y":"2" }"#, r#"{"x":"1", "y":"2"}"#];
        assert_eq!(json, [r#"{"x":"1","y":"2","z":"3"}"#, r#"{ "x" : "1" }"#, "{}", spaced[0], spaced[1]]);
        // Borrowed from the body: no copy of the text.
        assert!(json.iter().all(|j| text.as_bytes().as_ptr_range().contains(&j.as_ptr())));
        assert_eq!(pods[0].metadata.labels.as_ref().expect("labels").pairs()[2].1, "3");
        assert_eq!(label_pairs(r#"{"a":"1"} x"#), None, "only a whole object");
        assert_eq!(label_pairs(r#"{"a":"\u00fc"}"#), None, "an escape is serde's");
    }

    #[test]
    fn a_shard_reads_only_its_own_pods_and_scrapes_the_same() {
        let part = pods_selected(SHARDED, &Odd).expect("the usual shape");
        let read: Vec<_> = part
            .iter()
            .map(|p| {
                let containers: Vec<_> = p.containers.iter().map(|c| c.name.as_deref().unwrap_or("")).collect();
                (p.metadata.name.as_deref().unwrap_or(""), containers)
            })
            .collect();
        // "ab", "cd" (its containers read before its metadata said so, and not handed on to
        // "cde"), "ef" and "ij" are left out; the pod without a namespace is left to the
        // scrape, which reports it.
        assert_eq!(read, [("abc", vec!["c"]), ("cde", vec!["d"]), ("gh", vec!["c"])]);
        assert!(part[0].metadata.labels.is_some(), "a kept pod keeps its labels");
        assert!(selects_alike(SHARDED));
        // Scraped with another `Select`, the pods left out are not there.
        let nodes = crate::NodeMetricsList::default();
        let list = crate::PodMetricsList::parse_selected(SHARDED.as_bytes(), &Odd).expect("list");
        let all = crate::Scrape::new(&list, &nodes);
        let names: Vec<&str> = all.pods.iter().map(|p| p.name).collect();
        assert_eq!(names, ["abc", "cde"]);
    }

    #[test]
    fn a_pod_without_a_name_after_one_left_out_is_read_by_serde() {
        // The scrape names it by its place in the whole list (#2), which leaving "ab" out
        // would have moved.
        let text = r#"{"items":[
          {"metadata":{"name":"ab","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"1m","memory":"1Ki"}}]},
          {"metadata":{"name":"abc","namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"2m","memory":"2Ki"}}]},
          {"metadata":{"namespace":"n"},"containers":[{"name":"c","usage":{"cpu":"3m","memory":"3Ki"}}]}]}"#;
        assert!(pods_selected(text, &Odd).is_none());
        assert!(selects_alike(text));
        let nodes = crate::NodeMetricsList::default();
        let list = crate::PodMetricsList::parse_selected(text.as_bytes(), &Odd).expect("list");
        let scrape = crate::Scrape::select(&list, &nodes, &Odd);
        let errors: Vec<&str> = scrape.errors.iter().map(|e| e.object.as_str()).collect();
        assert_eq!(errors, ["#2"]);
        // Before any is left out, the scan reads it.
        let first = text.replacen(r#""name":"ab","#, r#""name":"abx","#, 1);
        assert_eq!(pods_selected(&first, &Odd).map(|p| p.len()), Some(3));
    }

    #[test]
    fn never_disagrees_with_serde_however_the_list_is_broken() {
        let mut tried = 0;
        for bytes in [LIST.as_bytes(), SHARDED.as_bytes()] {
            for at in 0..=bytes.len() {
                for c in ["", "\"", "\\", "{", "}", "[", "]", ",", ":", "n", "1", " ", "x", "\u{7f}"] {
                    for replace in [false, true] {
                        if replace && at == bytes.len() {
                            continue;
                        }
                        let mut broken = bytes[..at].to_vec();
                        broken.extend_from_slice(c.as_bytes());
                        broken.extend_from_slice(&bytes[(at + usize::from(replace)).min(bytes.len())..]);
                        let Ok(text) = std::str::from_utf8(&broken) else { continue };
                        assert!(agrees(text), "disagrees on {text}");
                        assert!(selects_alike(text), "a shard disagrees on {text}");
                        tried += 1;
                    }
                }
            }
        }
        assert!(tried > 20_000);
    }
}
