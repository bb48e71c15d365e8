//! A scrape and its enrichments, written as metric families.
//!
//! Two namings: [`Naming::Prometheus`] (ours: base units in names, pod sums) and
//! [`Naming::Seed`] (the original project's families and label sets, for migration, but with
//! values in cores and bytes).

use std::borrow::Cow;
use std::sync::Arc;

use crate::cluster::Text;
use crate::enricher::Enrichment;
use crate::exposition::{push_label, ExpositionError, Format, LabelName, MetricName, MetricType, Writer};
use crate::scrape::{PodSample, Scrape};

/// The `namespace` label.
pub static NAMESPACE: LabelName = LabelName::from_static("namespace");
/// The `pod` label.
pub static POD: LabelName = LabelName::from_static("pod");
/// The `container` label.
pub static CONTAINER: LabelName = LabelName::from_static("container");
/// The `node` label.
pub static NODE: LabelName = LabelName::from_static("node");
static IP: LabelName = LabelName::from_static("ip");

/// The labels only a scrape itself sets on pod and container series: enrichers never add
/// them, and they always win a name.
pub static POD_RESERVED: [&LabelName; 3] = [&NAMESPACE, &POD, &CONTAINER];
/// The label only a scrape itself sets on node series.
pub static NODE_RESERVED: [&LabelName; 1] = [&NODE];

/// Which metric names and label sets to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// `kube_metrics_server_{container,pod,node}_{cpu_usage_cores,memory_working_set_bytes}`.
    #[default]
    Prometheus,
    /// The original's `kube_metrics_server_{pod,node}_{cpu,mem}` with `{node,pod,ip,container,namespace}`.
    Seed,
}

/// How to write a scrape.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Metric names and label sets.
    pub naming: Naming,
    /// Write metrics-server's sample time as the sample timestamp.
    pub timestamps: bool,
    /// Text 0.0.4 (the default) or OpenMetrics, for [`render`] and [`render_prepared`]; a
    /// [`Writer`](crate::Writer) has its own, which the server's `Exporter` takes from each
    /// request (it ignores this one).
    pub format: Option<Format>,
}

const fn metric(name: &'static str) -> MetricName {
    MetricName::from_static(name)
}

const CONTAINER_CPU: MetricName = metric("kube_metrics_server_container_cpu_usage_cores");
const CONTAINER_MEM: MetricName = metric("kube_metrics_server_container_memory_working_set_bytes");
const POD_CPU: MetricName = metric("kube_metrics_server_pod_cpu_usage_cores");
const POD_MEM: MetricName = metric("kube_metrics_server_pod_memory_working_set_bytes");
const NODE_CPU: MetricName = metric("kube_metrics_server_node_cpu_usage_cores");
const NODE_MEM: MetricName = metric("kube_metrics_server_node_memory_working_set_bytes");
const SEED_POD_CPU: MetricName = metric("kube_metrics_server_pod_cpu");
const SEED_POD_MEM: MetricName = metric("kube_metrics_server_pod_mem");
const SEED_NODE_CPU: MetricName = metric("kube_metrics_server_node_cpu");
const SEED_NODE_MEM: MetricName = metric("kube_metrics_server_node_mem");

/// The labels enrichers add to one pod or node, merged: first enricher wins a name.
fn merge<'e>(
    base: &[&LabelName],
    enrichments: &'e [&Enrichment],
    pick: impl Fn(&'e Enrichment) -> &'e [(LabelName, Text)],
) -> Vec<(&'e LabelName, &'e Text)> {
    merge_grouped(base, enrichments, pick).0
}

/// [`merge`], and where each enrichment's labels end in the merged ones.
fn merge_grouped<'e>(
    base: &[&LabelName],
    enrichments: &'e [&Enrichment],
    pick: impl Fn(&'e Enrichment) -> &'e [(LabelName, Text)],
) -> (Vec<(&'e LabelName, &'e Text)>, Vec<usize>) {
    let mut merged: Vec<(&LabelName, &Text)> = Vec::new();
    let mut ends = Vec::with_capacity(enrichments.len());
    for e in enrichments {
        for (name, value) in pick(e) {
            if !base.contains(&name) && !merged.iter().any(|(n, _)| *n == name) {
                merged.push((name, value));
            }
        }
        ends.push(merged.len());
    }
    (merged, ends)
}

/// One pod's enrichment, merged and escaped once: what each of its series carries.
///
/// Kept as one part per enricher (`node="..",pod_ip="..",host_ip=".."`, then the
/// `label_...` ones, then the owner's), each shared with the pod before it in the scrape
/// when that pod's is the same: the pods of one ReplicaSet carry the same labels and owner,
/// and lie next to each other. At 150,000 pods with 8 labels, one block of text a pod held
/// about 70 MB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLabels {
    /// Rendered and escaped (`a="1",b="2"`), none empty.
    parts: Box<[Text]>,
    /// `node` and `pod_ip`, which the seed naming writes in its own label set.
    node: Option<Text>,
    ip: Option<Text>,
}

impl PodLabels {
    /// From merged labels (unique names, none of the base ones) in `groups`, one an
    /// enricher, sharing the parts of `before` that come out the same.
    fn new<'m>(
        groups: impl Iterator<Item = &'m [(&'m LabelName, &'m Text)]>,
        before: Option<&PodLabels>,
        scratch: &mut String,
    ) -> Self {
        let mut parts = Vec::new();
        let (mut node, mut ip) = (None, None);
        for group in groups.filter(|g| !g.is_empty()) {
            scratch.clear();
            for (i, (name, value)) in group.iter().enumerate() {
                if i > 0 {
                    scratch.push(',');
                }
                push_label(scratch, name, value);
                match name.as_str() {
                    "node" if node.is_none() => node = Some(Text::clone(value)),
                    "pod_ip" if ip.is_none() => ip = Some(Text::clone(value)),
                    _ => {}
                }
            }
            let part = match before.and_then(|b| b.parts.get(parts.len())) {
                Some(same) if **same == **scratch => Text::clone(same),
                _ => Text::from(scratch.as_str()),
            };
            parts.push(part);
        }
        PodLabels { parts: parts.into_boxed_slice(), node, ip }
    }

    /// The rendered parts, each `a="1",b="2"`: the series carry them joined with commas.
    pub fn parts(&self) -> &[Text] {
        &self.parts
    }

    /// The rendered labels, joined (`a="1",b="2"`).
    pub fn text(&self) -> String {
        self.parts.join(",")
    }

    /// The labels as `(name, value)`, unescaped, in the order the series carry them: for an
    /// embedder that writes them elsewhere, instead of parsing [`text`](PodLabels::text).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> + '_ {
        self.parts.iter().flat_map(|part| Pairs(part))
    }

    /// Whether the pod has no labels from enrichers.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The rendered length in bytes, joined.
    fn len(&self) -> usize {
        joined_len(&self.parts)
    }
}

/// The `(name, value)` pairs of one rendered part (`a="1",b="2"`), unescaped.
struct Pairs<'p>(&'p str);

impl<'p> Iterator for Pairs<'p> {
    type Item = (&'p str, Cow<'p, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.0.strip_prefix(',').unwrap_or(self.0);
        // A name has no `=` and a value's `"` are escaped: the value ends at the first `"`
        // that no backslash escapes.
        let (name, rest) = rest.split_once("=\"")?;
        let (bytes, mut end, mut escaped) = (rest.as_bytes(), 0, false);
        while bytes.get(end).is_some_and(|&b| b != b'"') {
            escaped |= bytes[end] == b'\\';
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let (Some(value), Some(after)) = (rest.get(..end), rest.get(end + 1..)) else {
            self.0 = "";
            return None;
        };
        self.0 = after;
        Some((name, if escaped { Cow::Owned(unescape(value)) } else { Cow::Borrowed(value) }))
    }
}

/// A label value as it was before [`push_label`] escaped it.
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A scrape's enrichments merged (the first enricher wins a label name), indexed like
/// [`Scrape::pods`] and [`Scrape::nodes`]: what [`render_prepared`] writes.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Per pod; shared, so a [`Memo`](crate::Memo) can hand out what it keeps.
    pub pods: Vec<Arc<PodLabels>>,
    /// Per node.
    pub nodes: Vec<Vec<(LabelName, Text)>>,
}

/// Merges `enrichments` (in the configured enricher order) for every pod and node of
/// `scrape`.
pub fn prepare(scrape: &Scrape<'_>, enrichments: &[&Enrichment]) -> Prepared {
    prepare_pods(scrape, enrichments, 0..scrape.pods.len())
}

/// [`prepare`], for only the pods at `indexes`; `pods` is in the order of `indexes`.
pub(crate) fn prepare_pods(
    scrape: &Scrape<'_>,
    enrichments: &[&Enrichment],
    indexes: impl Iterator<Item = usize>,
) -> Prepared {
    let mut scratch = String::new();
    let mut before: Option<Arc<PodLabels>> = None;
    let pods = indexes
        .map(|i| {
            let (merged, ends) = merge_grouped(&POD_RESERVED, enrichments, |e| e.pod(i));
            let groups = ends.iter().scan(0, |start, &end| Some(&merged[std::mem::replace(start, end)..end]));
            let labels = Arc::new(PodLabels::new(groups, before.as_deref(), &mut scratch));
            before = Some(labels.clone());
            labels
        })
        .collect();
    let nodes = (0..scrape.nodes.len())
        .map(|i| {
            merge(&NODE_RESERVED, enrichments, |e| e.node(i)).into_iter().map(|(n, v)| (n.clone(), v.clone())).collect()
        })
        .collect();
    Prepared { pods, nodes }
}

/// Milliseconds since the epoch of an RFC 3339 timestamp, if it is one.
fn timestamp_ms(ts: Option<&str>, enabled: bool) -> Option<i64> {
    if enabled {
        crate::timestamp::parse_rfc3339_ms(ts?)
    } else {
        None
    }
}

/// Writes the families of `scrape` into `out`, in a stable order. `enrichments` are in the
/// configured enricher order (earlier wins a label name).
pub fn render(
    out: &mut String,
    scrape: &Scrape<'_>,
    enrichments: &[&Enrichment],
    options: &RenderOptions,
) -> Result<(), ExpositionError> {
    render_prepared(out, scrape, &prepare(scrape, enrichments), options)
}

/// [`render`], with the enrichments already merged.
pub fn render_prepared(
    out: &mut String,
    scrape: &Scrape<'_>,
    prepared: &Prepared,
    options: &RenderOptions,
) -> Result<(), ExpositionError> {
    let format = options.format.unwrap_or(Format::Text);
    let mut w = Writer::new(out, format);
    write_families(&mut w, scrape, prepared, options)?;
    w.finish();
    Ok(())
}

/// Writes the families of `scrape` with an existing writer (to add more families after).
pub fn write_families(
    w: &mut Writer<'_>,
    scrape: &Scrape<'_>,
    prepared: &Prepared,
    options: &RenderOptions,
) -> Result<(), ExpositionError> {
    write_families_with(w, &BaseLabels::of(scrape, options), prepared, options)
}

/// [`write_families`] for the scrape `base` was laid out from, with that layout: several
/// bodies written from one scrape (a server's concurrent requests) share it instead of
/// each laying out its own. `prepared` must be that scrape's too, as for
/// [`write_families`]; if `base` was made [`with_labels`](BaseLabels::with_labels) of this
/// `prepared` (the same one, not an equal one), its copy of their labels is used rather than
/// made again.
pub fn write_families_with(
    w: &mut Writer<'_>,
    base: &BaseLabels<'_>,
    prepared: &Prepared,
    options: &RenderOptions,
) -> Result<(), ExpositionError> {
    let scrape = base.scrape;
    // In milliseconds for text, in seconds for OpenMetrics (the writer's).
    let stamps = options.timestamps;
    let none = Arc::new(PodLabels::default());
    let pod_labels = |i: usize| prepared.pods.get(i).unwrap_or(&none);
    let node_labels: Vec<&[(LabelName, Text)]> =
        (0..scrape.nodes.len()).map(|i| prepared.nodes.get(i).map_or(&[][..], Vec::as_slice)).collect();
    match options.naming {
        Naming::Prometheus => {
            let own;
            let copied = match base.copied_for(prepared) {
                Some(copied) => copied,
                None => {
                    own = CopiedParts::of(scrape, prepared);
                    &own
                }
            };
            let parts = copied.gathered();
            w.reserve(estimate(scrape, parts.each().map(joined_len), &node_labels));
            type Pick = fn(&PodSample<'_>) -> crate::Quantity;
            let container_families: [(&MetricName, &str, bool); 2] = [
                (&CONTAINER_CPU, "CPU usage of a container in cores, averaged over metrics-server's window.", true),
                (&CONTAINER_MEM, "Memory working set of a container in bytes.", false),
            ];
            let laid_out;
            let heads = if base.laid_out() {
                base
            } else {
                laid_out = BaseLabels::new(scrape);
                &laid_out
            };
            for (name, help, cpu) in container_families {
                let mut f = w.family(name, help, MetricType::Gauge)?;
                let mut pieces = heads.pieces();
                for (pod, parts) in scrape.pods.iter().zip(parts.each()) {
                    let ts = timestamp_ms(pod.timestamp, stamps);
                    let head = pieces.next_piece();
                    for c in scrape.containers_of(pod) {
                        let value = if cpu { c.cpu } else { c.memory };
                        f.sample_escaped(&[head, pieces.next_piece()], parts, value, ts);
                    }
                }
            }
            let pod_families: [(&MetricName, &str, Pick); 2] = [
                (&POD_CPU, "CPU usage of a pod in cores: the sum over its containers.", |p| p.cpu()),
                (&POD_MEM, "Memory working set of a pod in bytes: the sum over its containers.", |p| p.memory()),
            ];
            for (name, help, pick) in pod_families {
                let mut f = w.family(name, help, MetricType::Gauge)?;
                let mut pieces = heads.pieces();
                for (pod, parts) in scrape.pods.iter().zip(parts.each()) {
                    let head = pieces.next_piece();
                    let containers = scrape.containers_of(pod);
                    pieces.skip(containers.len());
                    if containers.is_empty() {
                        continue;
                    }
                    let ts = timestamp_ms(pod.timestamp, stamps);
                    f.sample_escaped(&[head], parts, pick(pod), ts);
                }
            }
            write_nodes(
                w,
                scrape,
                &node_labels,
                stamps,
                [
                    (&NODE_CPU, "CPU usage of a node in cores, averaged over metrics-server's window.", true),
                    (&NODE_MEM, "Memory working set of a node in bytes.", false),
                ],
            )?;
        }
        Naming::Seed => {
            w.reserve(estimate(scrape, (0..scrape.pods.len()).map(|i| pod_labels(i).len()), &node_labels));
            let seed_families: [(&MetricName, &str, bool); 2] = [
                (&SEED_POD_CPU, "CPU usage of a container in cores (the original reported minutes).", true),
                (
                    &SEED_POD_MEM,
                    "Memory working set of a container in bytes (the original reported kibibytes times 1024).",
                    false,
                ),
            ];
            for (name, help, cpu) in seed_families {
                let mut f = w.family(name, help, MetricType::Gauge)?;
                for (i, pod) in scrape.pods.iter().enumerate() {
                    let extra = pod_labels(i);
                    let (node, ip) = (extra.node.as_deref().unwrap_or(""), extra.ip.as_deref().unwrap_or(""));
                    let ts = timestamp_ms(pod.timestamp, stamps);
                    for c in scrape.containers_of(pod) {
                        let labels = [
                            (&NODE, node),
                            (&POD, pod.name),
                            (&IP, ip),
                            (&CONTAINER, c.name),
                            (&NAMESPACE, pod.namespace),
                        ];
                        f.sample_at(labels, if cpu { c.cpu } else { c.memory }.as_f64(), ts);
                    }
                }
            }
            let none: Vec<&[(LabelName, Text)]> = vec![&[]; scrape.nodes.len()];
            write_nodes(
                w,
                scrape,
                &none,
                stamps,
                [
                    (&SEED_NODE_CPU, "CPU usage of a node in cores (the original reported minutes).", true),
                    (&SEED_NODE_MEM, "Memory working set of a node in bytes.", false),
                ],
            )?;
        }
    }
    Ok(())
}

/// The labels a scrape itself sets on pod and container series, escaped once and laid out
/// in pod order: `namespace="..",pod=".."`, then `container=".."` for each of its
/// containers. Each family's pass reads them one after another, instead of from wherever
/// they lie in the response body (at 150,000 pods, a cache miss a series). They take about
/// 120 bytes a pod (17 MiB at 150,000): bodies written from one scrape share them (see
/// [`write_families_with`]). They hold the scrape they were laid out from, so they are
/// never written with another. Made [`with_labels`](BaseLabels::with_labels), they also
/// hold the enrichers' labels copied in pod order, which each body would copy otherwise.
pub struct BaseLabels<'s> {
    scrape: &'s Scrape<'s>,
    text: String,
    /// Where each piece ends in `text`; empty if not laid out.
    ends: Vec<usize>,
    /// The labels copied, and what from: used only to write that.
    copied: Option<(&'s Prepared, CopiedParts<'s>)>,
}

/// Their size, not their text (at 150,000 pods, 17 MiB of it).
impl std::fmt::Debug for BaseLabels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseLabels")
            .field("pods", &self.scrape.pods.len())
            .field("pieces", &self.ends.len())
            .field("bytes", &self.text.len())
            .field("copied_bytes", &self.copied.as_ref().map(|(_, c)| c.bytes()))
            .finish()
    }
}

impl<'s> BaseLabels<'s> {
    /// Lays out `scrape`'s, if `options` name series so that they are used (the
    /// [`Naming::Seed`] families write theirs in another order); otherwise none, and
    /// [`write_families_with`] lays them out if other options need them.
    pub fn of(scrape: &'s Scrape<'s>, options: &RenderOptions) -> Self {
        match options.naming {
            Naming::Prometheus => BaseLabels::new(scrape),
            Naming::Seed => BaseLabels { scrape, text: String::new(), ends: Vec::new(), copied: None },
        }
    }

    /// [`BaseLabels::of`], and the enrichers' labels of `prepared` (the scrape's) copied in
    /// pod order once for every body written with them and `prepared`, where each would
    /// otherwise copy its own (at 150,000 synthetic pods some 15 MiB: each pod's own labels,
    /// and where each lies; see [`write_families_with`]).
    pub fn with_labels(scrape: &'s Scrape<'s>, prepared: &'s Prepared, options: &RenderOptions) -> Self {
        let mut base = BaseLabels::of(scrape, options);
        if options.naming == Naming::Prometheus {
            base.copied = Some((prepared, CopiedParts::of(scrape, prepared)));
        }
        base
    }

    /// Their copy of the labels of `prepared`, if they hold one of that very `Prepared`.
    fn copied_for(&self, prepared: &Prepared) -> Option<&CopiedParts<'s>> {
        self.copied.as_ref().filter(|(from, _)| std::ptr::eq(*from, prepared)).map(|(_, copied)| copied)
    }

    /// The scrape they were laid out from.
    pub fn scrape(&self) -> &'s Scrape<'s> {
        self.scrape
    }

    /// Whether they were laid out ([`BaseLabels::of`] leaves them out for the seed naming).
    fn laid_out(&self) -> bool {
        // Every pod has a piece: none means none was laid out, or there are no pods.
        !self.ends.is_empty() || self.scrape.pods.is_empty()
    }

    fn new(scrape: &'s Scrape<'s>) -> Self {
        // `namespace="",pod=""` and `container=""`, before escaping.
        let (pod_head, container_head) =
            (NAMESPACE.as_str().len() + POD.as_str().len() + 7, CONTAINER.as_str().len() + 3);
        let bytes = scrape
            .pods
            .iter()
            .map(|p| {
                let containers: usize = scrape.containers_of(p).iter().map(|c| container_head + c.name.len()).sum();
                pod_head + p.namespace.len() + p.name.len() + containers
            })
            .sum();
        let pieces = scrape.pods.iter().map(|p| 1 + scrape.containers_of(p).len()).sum();
        let mut heads =
            BaseLabels { scrape, text: String::with_capacity(bytes), ends: Vec::with_capacity(pieces), copied: None };
        for pod in &scrape.pods {
            push_label(&mut heads.text, &NAMESPACE, pod.namespace);
            heads.text.push(',');
            push_label(&mut heads.text, &POD, pod.name);
            heads.ends.push(heads.text.len());
            for c in scrape.containers_of(pod) {
                push_label(&mut heads.text, &CONTAINER, c.name);
                heads.ends.push(heads.text.len());
            }
        }
        heads
    }

    fn pieces(&self) -> Pieces<'_> {
        Pieces { heads: self, next: 0, start: 0 }
    }
}

/// The room a chunk of [`CopiedParts`] has, at least: a larger part gets a chunk of its own
/// size, and none is split. Far under the size past which malloc maps a block afresh, as
/// the image sets it (32 MiB, see the Dockerfile), so that the chunks of one body are
/// handed back to the next. (glibc's threshold starts at 128 KiB, and rises to the size of
/// a mapped block once one is freed.)
const PARTS_CHUNK: usize = 1024 * 1024;

/// Each pod's [`PodLabels::parts`] in pod order, gathered once a body (of the Prometheus
/// naming: the seed naming writes none of them, but `node` and `pod_ip`), so that the
/// families' passes read them one after another. A part that is the pod's own (neither
/// neighbour shares it: its `node="..",pod_ip="..",host_ip=".."`) is copied, into chunks in
/// pod order; one shared with a neighbour (the memo shares a ReplicaSet's labels and owner
/// between neighbours that have them alike) is read where the memo keeps it, once for all
/// of them.
///
/// At 150,000 pods following every pod's own part to the memo missed the cache at every
/// series: rendering the synthetic cluster in process took 125-176 ms, and takes 84-108
/// (2026-12-07, runs alternated, a noisy hour). Copying every part that changes from the
/// pod before took it to 75-89, but cost a realistic cluster with 2 pods a ReplicaSet
/// (8 labels a pod) 43 MiB more at its peak (417 → 460), for no CPU it could measure;
/// copying every part whole, 60-70 MiB on 10 pods a ReplicaSet. Copying only the pods' own
/// costs that cluster 18-27 MiB (435-444), and the synthetic one 13 (288 → 301): the text
/// (about 60 bytes a pod there), 12 bytes a part for where it lies, and each body's 16 bytes
/// a part for its `&str`s (which the pointers it replaced took too).
///
/// Tried instead, and not kept (2026-12-07, in process, the fastest of 5 renders, 5 runs
/// alternated): the pointers, with the text of the next 4, 16 or 32 pods read ahead a batch
/// at a time (a load of its first and last byte), so that their misses overlap. At 150,000
/// synthetic pods 94-102 ms with 16 ahead, 108-121 with 4, against 82-86 for the copy and
/// 134-156 for the pointers alone; on the realistic cluster with 2 pods a ReplicaSet, 145-175
/// and 154-179, against 134-146 copied and 127-156 for the pointers alone. (Without `unsafe`,
/// which the workspace forbids, there is no prefetch instruction; a plain load, unlike a
/// prefetch, must complete before the instructions after it can.)
struct CopiedParts<'p> {
    chunks: Vec<String>,
    /// Each pod's parts in turn: the chunk, start and end of its text, or ([`KEPT`], `i`, 0)
    /// for `kept[i]`.
    spans: Vec<(u32, u32, u32)>,
    /// The parts left where the memo keeps them.
    kept: Vec<&'p str>,
    /// Where each pod's parts end in `spans`.
    ends: Vec<usize>,
}

/// The chunk of a span that is a part kept, not copied.
const KEPT: u32 = u32::MAX;

impl<'p> CopiedParts<'p> {
    /// The parts of `scrape`'s pods in `prepared` (none for a pod it lacks).
    fn of(scrape: &Scrape<'_>, prepared: &'p Prepared) -> Self {
        CopiedParts::new(scrape.pods.len(), |i| prepared.pods.get(i).map_or(&[][..], |p| p.parts()))
    }

    /// The bytes of text copied.
    fn bytes(&self) -> usize {
        self.chunks.iter().map(String::len).sum()
    }

    /// The parts of the `pods` pods, pod `i`'s `parts(i)`.
    fn new(pods: usize, parts: impl Fn(usize) -> &'p [Text]) -> Self {
        let (mut chunks, mut chunk, mut kept) = (Vec::new(), String::new(), Vec::new());
        let per_pod = if pods > 0 { parts(0).len() } else { 0 };
        let (mut spans, mut ends) = (Vec::with_capacity(pods * per_pod), Vec::with_capacity(pods));
        // No part is 4 GiB, nor a body 4 billion chunks.
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX - 1);
        let (mut before, mut before_at): (&[Text], usize) = (&[], 0);
        // Each pod's parts looked up once, though each is also the pod before's `after`.
        let mut each = (0..pods).map(parts).peekable();
        while let Some(own) = each.next() {
            let after = each.peek().copied().unwrap_or_default();
            let first = spans.len();
            for (k, part) in own.iter().enumerate() {
                let shared = before.get(k).is_some_and(|b| Arc::ptr_eq(b, part));
                if let Some(&span) = spans.get(before_at + k).filter(|_| shared) {
                    spans.push(span);
                    continue;
                }
                // Shared with the pod after it: read once for both, from the memo.
                if after.get(k).is_some_and(|a| Arc::ptr_eq(a, part)) {
                    spans.push((KEPT, at(kept.len()), 0));
                    kept.push(&**part);
                    continue;
                }
                if chunk.capacity() - chunk.len() < part.len() {
                    let full = std::mem::replace(&mut chunk, String::with_capacity(part.len().max(PARTS_CHUNK)));
                    // (The first, empty, is not one.)
                    if full.capacity() > 0 {
                        chunks.push(full);
                    }
                }
                let start = chunk.len();
                chunk.push_str(part);
                spans.push((at(chunks.len()), at(start), at(chunk.len())));
            }
            ends.push(spans.len());
            (before, before_at) = (own, first);
        }
        chunks.push(chunk);
        CopiedParts { chunks, spans, kept, ends }
    }

    /// The parts, each pod's in turn.
    fn gathered(&self) -> PodParts<'_> {
        let text = |&(c, start, end): &(u32, u32, u32)| match c {
            KEPT => self.kept.get(start as usize).copied().unwrap_or_default(),
            c => self.chunks.get(c as usize).and_then(|t| t.get(start as usize..end as usize)).unwrap_or_default(),
        };
        PodParts { parts: self.spans.iter().map(text).collect(), ends: &self.ends }
    }
}

/// Each pod's parts, in pod order.
struct PodParts<'p> {
    parts: Vec<&'p str>,
    /// Where each pod's parts end in `parts`.
    ends: &'p [usize],
}

impl<'p> PodParts<'p> {
    /// Each pod's parts, in pod order.
    fn each(&self) -> impl Iterator<Item = &[&'p str]> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let parts = self.parts.get(start..end).unwrap_or_default();
            start = end;
            parts
        })
    }
}

/// The length of labels in `parts`, joined with commas.
fn joined_len(parts: &[impl AsRef<str>]) -> usize {
    parts.iter().map(|p| p.as_ref().len() + 1).sum::<usize>().saturating_sub(1)
}

/// The pieces of [`BaseLabels`], in order.
struct Pieces<'h> {
    heads: &'h BaseLabels<'h>,
    next: usize,
    start: usize,
}

impl<'h> Pieces<'h> {
    fn next_piece(&mut self) -> &'h str {
        debug_assert!(self.next < self.heads.ends.len(), "more pieces taken than made");
        let end = self.heads.ends.get(self.next).copied().unwrap_or(self.start);
        let piece = self.heads.text.get(self.start..end).unwrap_or("");
        (self.next, self.start) = (self.next + 1, end);
        piece
    }

    fn skip(&mut self, n: usize) {
        for _ in 0..n {
            self.next_piece();
        }
    }
}

/// About how many bytes the families take: label text per series, plus names and values.
/// `label_lens` are the pods' enrichers' labels' lengths, in pod order.
fn estimate(
    scrape: &Scrape<'_>,
    label_lens: impl Iterator<Item = usize>,
    node_labels: &[&[(LabelName, Text)]],
) -> usize {
    const PER_SERIES: usize = 64 + 30; // metric name, punctuation, value
    let pods: usize = scrape
        .pods
        .iter()
        .zip(label_lens)
        .map(|(p, labels)| {
            let base = p.namespace.len() + p.name.len() + 20 + labels + PER_SERIES;
            let containers: usize = scrape.containers_of(p).iter().map(|c| base + c.name.len() + 13).sum();
            2 * containers + 2 * base
        })
        .sum();
    let text = |labels: &[(LabelName, Text)]| labels.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>();
    let nodes: usize =
        scrape.nodes.iter().zip(node_labels).map(|(n, extra)| 2 * (n.name.len() + 8 + text(extra) + PER_SERIES)).sum();
    pods + nodes + 4096
}

fn write_nodes(
    w: &mut Writer<'_>,
    scrape: &Scrape<'_>,
    node_labels: &[&[(LabelName, Text)]],
    stamps: bool,
    families: [(&MetricName, &str, bool); 2],
) -> Result<(), ExpositionError> {
    for (name, help, cpu) in families {
        let mut f = w.family(name, help, MetricType::Gauge)?;
        for (node, extra) in scrape.nodes.iter().zip(node_labels) {
            let value = if cpu { node.cpu } else { node.memory };
            let labels = std::iter::once((&NODE, node.name)).chain(extra.iter().map(|(n, v)| (n, &**v)));
            f.sample_at(labels, value.as_f64(), timestamp_ms(node.timestamp, stamps));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::{NodeMetricsList, PodMetricsList};

    const PODS: &str = r#"{"items":[
      {"metadata":{"name":"etcd-server-events-abc","namespace":"kube-system"},"timestamp":"2018-08-20T03:19:00Z","window":"1m0s",
       "containers":[{"name":"etcd-container","usage":{"cpu":"7m","memory":"125448Ki"}},
                     {"name":"sidecar","usage":{"cpu":"1500000n","memory":"52Mi"}}]}]}"#;
    const NODES: &str = r#"{"items":[{"metadata":{"name":"ip-10-30-78-99"},"timestamp":"2018-08-20T03:19:00Z","usage":{"cpu":"250000000n","memory":"1Gi"}}]}"#;

    fn enrichment(scrape: &Scrape<'_>) -> Enrichment {
        let mut e = Enrichment::new(scrape);
        e.add_pod_label(0, NODE.clone(), "ip-10-30-78-99".into());
        e.add_pod_label(0, LabelName::from_static("pod_ip"), "10.1.2.3".into());
        e.add_node_label(0, LabelName::from_static("internal_ip"), "10.30.78.99".into());
        e
    }

    fn rendered(options: RenderOptions) -> String {
        let pods: PodMetricsList<'_> = serde_json::from_str(PODS).expect("pods");
        let nodes: NodeMetricsList<'_> = serde_json::from_str(NODES).expect("nodes");
        let scrape = Scrape::new(&pods, &nodes);
        let e = enrichment(&scrape);
        let mut out = String::new();
        render(&mut out, &scrape, &[&e], &options).expect("render");
        out
    }

    #[test]
    fn golden_prometheus_naming() {
        let golden = r#"# HELP kube_metrics_server_container_cpu_usage_cores CPU usage of a container in cores, averaged over metrics-server's window.
# TYPE kube_metrics_server_container_cpu_usage_cores gauge
kube_metrics_server_container_cpu_usage_cores{namespace="kube-system",pod="etcd-server-events-abc",container="etcd-container",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 0.007
kube_metrics_server_container_cpu_usage_cores{namespace="kube-system",pod="etcd-server-events-abc",container="sidecar",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 0.0015
# HELP kube_metrics_server_container_memory_working_set_bytes Memory working set of a container in bytes.
# TYPE kube_metrics_server_container_memory_working_set_bytes gauge
kube_metrics_server_container_memory_working_set_bytes{namespace="kube-system",pod="etcd-server-events-abc",container="etcd-container",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 128458752
kube_metrics_server_container_memory_working_set_bytes{namespace="kube-system",pod="etcd-server-events-abc",container="sidecar",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 54525952
# HELP kube_metrics_server_pod_cpu_usage_cores CPU usage of a pod in cores: the sum over its containers.
# TYPE kube_metrics_server_pod_cpu_usage_cores gauge
kube_metrics_server_pod_cpu_usage_cores{namespace="kube-system",pod="etcd-server-events-abc",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 0.0085
# HELP kube_metrics_server_pod_memory_working_set_bytes Memory working set of a pod in bytes: the sum over its containers.
# TYPE kube_metrics_server_pod_memory_working_set_bytes gauge
kube_metrics_server_pod_memory_working_set_bytes{namespace="kube-system",pod="etcd-server-events-abc",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 182984704
# HELP kube_metrics_server_node_cpu_usage_cores CPU usage of a node in cores, averaged over metrics-server's window.
# TYPE kube_metrics_server_node_cpu_usage_cores gauge
kube_metrics_server_node_cpu_usage_cores{node="ip-10-30-78-99",internal_ip="10.30.78.99"} 0.25
# HELP kube_metrics_server_node_memory_working_set_bytes Memory working set of a node in bytes.
# TYPE kube_metrics_server_node_memory_working_set_bytes gauge
kube_metrics_server_node_memory_working_set_bytes{node="ip-10-30-78-99",internal_ip="10.30.78.99"} 1073741824
"#;
        assert_eq!(rendered(RenderOptions::default()), golden);
    }

    #[test]
    fn golden_seed_naming() {
        let golden = r#"# HELP kube_metrics_server_pod_cpu CPU usage of a container in cores (the original reported minutes).
# TYPE kube_metrics_server_pod_cpu gauge
kube_metrics_server_pod_cpu{node="ip-10-30-78-99",pod="etcd-server-events-abc",ip="10.1.2.3",container="etcd-container",namespace="kube-system"} 0.007
kube_metrics_server_pod_cpu{node="ip-10-30-78-99",pod="etcd-server-events-abc",ip="10.1.2.3",container="sidecar",namespace="kube-system"} 0.0015
# HELP kube_metrics_server_pod_mem Memory working set of a container in bytes (the original reported kibibytes times 1024).
# TYPE kube_metrics_server_pod_mem gauge
kube_metrics_server_pod_mem{node="ip-10-30-78-99",pod="etcd-server-events-abc",ip="10.1.2.3",container="etcd-container",namespace="kube-system"} 128458752
kube_metrics_server_pod_mem{node="ip-10-30-78-99",pod="etcd-server-events-abc",ip="10.1.2.3",container="sidecar",namespace="kube-system"} 54525952
# HELP kube_metrics_server_node_cpu CPU usage of a node in cores (the original reported minutes).
# TYPE kube_metrics_server_node_cpu gauge
kube_metrics_server_node_cpu{node="ip-10-30-78-99"} 0.25
# HELP kube_metrics_server_node_mem Memory working set of a node in bytes.
# TYPE kube_metrics_server_node_mem gauge
kube_metrics_server_node_mem{node="ip-10-30-78-99"} 1073741824
"#;
        assert_eq!(rendered(RenderOptions { naming: Naming::Seed, ..Default::default() }), golden);
    }

    #[test]
    fn a_pods_labels_read_back_as_the_enrichers_gave_them() {
        let pods: PodMetricsList<'_> = serde_json::from_str(PODS).expect("pods");
        let nodes: NodeMetricsList<'_> = serde_json::from_str(NODES).expect("nodes");
        let scrape = Scrape::new(&pods, &nodes);
        let values = ["plain", "a \"quoted\" \\ back\\slash", "two\nlines", "x=\"y\",z=\"", "caf\u{e9}", "", "\\"];
        let mut first = Enrichment::new(&scrape);
        let mut second = Enrichment::new(&scrape);
        for (i, value) in values.iter().enumerate() {
            let e = if i % 2 == 0 { &mut first } else { &mut second };
            e.add_pod_label(0, LabelName::new(format!("l{i}")).expect("name"), Text::from(*value));
        }
        let prepared = prepare(&scrape, &[&first, &second]);
        let pairs: Vec<(String, String)> =
            prepared.pods[0].pairs().map(|(n, v)| (n.to_owned(), v.into_owned())).collect();
        let mut want: Vec<(String, String)> =
            values.iter().enumerate().map(|(i, v)| (format!("l{i}"), v.to_string())).collect();
        // The first enricher's, then the second's.
        want.sort_by_key(|(n, _)| n[1..].parse::<usize>().map(|i| (i % 2, i)).unwrap_or_default());
        assert_eq!(pairs, want);
    }

    #[test]
    fn shared_base_labels_write_what_each_body_lays_out_alone() {
        let pods: PodMetricsList<'_> = serde_json::from_str(PODS).expect("pods");
        let nodes: NodeMetricsList<'_> = serde_json::from_str(NODES).expect("nodes");
        let scrape = Scrape::new(&pods, &nodes);
        let e = enrichment(&scrape);
        let prepared = prepare(&scrape, &[&e]);
        let with = |base: &BaseLabels<'_>, options: &RenderOptions| {
            let mut out = String::new();
            let mut w = Writer::new(&mut out, Format::Text);
            write_families_with(&mut w, base, &prepared, options).expect("render");
            w.finish();
            out
        };
        let (ours, seed) = (RenderOptions::default(), RenderOptions { naming: Naming::Seed, ..Default::default() });
        for options in [&ours, &seed] {
            let mut alone = String::new();
            render_prepared(&mut alone, &scrape, &prepared, options).expect("render");
            assert_eq!(with(&BaseLabels::of(&scrape, options), options), alone, "{:?}", options.naming);
        }
        // Laid out for ours, not for the seed naming, which writes them in another order.
        assert!(BaseLabels::of(&scrape, &ours).laid_out());
        assert!(!BaseLabels::of(&scrape, &seed).laid_out());
        // Not laid out, then written with ours: laid out afresh.
        let mut alone = String::new();
        render_prepared(&mut alone, &scrape, &prepared, &ours).expect("render");
        assert_eq!(with(&BaseLabels::of(&scrape, &seed), &ours), alone);

        // With the enrichers' labels copied once (for ours): the same.
        let copied = BaseLabels::with_labels(&scrape, &prepared, &ours);
        assert!(copied.copied_for(&prepared).is_some(), "used for the labels it copied");
        assert_eq!(with(&copied, &ours), alone);
        assert!(BaseLabels::with_labels(&scrape, &prepared, &seed).copied.is_none());
        // Copied from other labels, they are not written for these.
        let mut other = Enrichment::new(&scrape);
        other.add_pod_label(0, LabelName::from_static("pod_ip"), "10.9.9.9".into());
        let other = prepare(&scrape, &[&other]);
        let theirs = BaseLabels::with_labels(&scrape, &other, &ours);
        assert!(format!("{theirs:?}").contains("copied_bytes: Some(17)"), "{theirs:?}");
        assert!(theirs.copied_for(&prepared).is_none() && theirs.copied_for(&other).is_some());
        assert!(theirs.copied_for(&prepared.clone()).is_none(), "an equal one is another");
        assert_eq!(with(&theirs, &ours), alone);
    }

    #[test]
    fn each_pods_parts_are_gathered_in_order() {
        let pods: PodMetricsList<'_> = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"a","namespace":"n"}},{"metadata":{"name":"b","namespace":"n"}},
            {"metadata":{"name":"c","namespace":"n"}}]}"#,
        )
        .expect("pods");
        let nodes = NodeMetricsList::default();
        let scrape = Scrape::new(&pods, &nodes);
        let (mut ips, mut apps) = (Enrichment::new(&scrape), Enrichment::new(&scrape));
        for i in [0, 2] {
            ips.add_pod_label(i, LabelName::from_static("pod_ip"), format!("10.0.0.{i}").into());
        }
        apps.add_pod_label(2, LabelName::from_static("app"), "web".into());
        let prepared = prepare(&scrape, &[&ips, &apps]);
        let copied = CopiedParts::new(3, |i| prepared.pods[i].parts());
        let gathered = copied.gathered();
        let each: Vec<&[&str]> = gathered.each().collect();
        assert_eq!(each, [&[r#"pod_ip="10.0.0.0""#][..], &[], &[r#"pod_ip="10.0.0.2""#, r#"app="web""#]]);
        for (parts, labels) in each.iter().zip(&prepared.pods) {
            assert_eq!(joined_len(parts), labels.text().len(), "{labels:?}");
        }
    }

    #[test]
    fn only_a_part_no_neighbour_shares_is_copied() {
        let (ip, app) = (|i: u8| Text::from(format!("pod_ip=\"10.0.0.{i}\"")), Text::from("app=\"web\""));
        let labels = |parts: Vec<Text>| PodLabels { parts: parts.into(), node: None, ip: None };
        let pods = [
            // `app` is shared with the pod after (in a pod of more parts): kept.
            labels(vec![ip(0), app.clone(), Text::from("z=\"1\"")]),
            // Shared with the pod before: as it is there.
            labels(vec![ip(1), app.clone()]),
            // The same text, not shared (the memo shares it only between neighbours): copied.
            labels(vec![ip(2), Text::from("app=\"web\"")]),
            // Shared with the pod before the one before only: copied.
            labels(vec![ip(3), app.clone()]),
            // Shared with the pod before, but in another place there; and with the pod after.
            labels(vec![app.clone()]),
            labels(vec![app.clone()]),
        ];
        let copied = CopiedParts::new(pods.len(), |i| pods[i].parts());
        let gathered = copied.gathered();
        for (i, (parts, pod)) in gathered.each().zip(&pods).enumerate() {
            assert_eq!(parts.join(","), pod.text(), "pod {i}");
        }
        let copies = |text: &str| copied.chunks.iter().map(|c| c.matches(text).count()).sum::<usize>();
        assert_eq!(copies("app=\"web\""), 2, "copied for pods 2 and 3 only");
        assert_eq!(copied.kept, ["app=\"web\""; 2], "kept for pods 0 and 4 (and 1 and 5 with them)");
        assert_eq!((copies("pod_ip="), copies("z=")), (4, 1));
    }

    #[test]
    fn parts_are_copied_in_chunks_none_split_and_none_too_small_for_its_part() {
        let labels = |text: String| PodLabels { parts: Box::new([Text::from(text)]), node: None, ip: None };
        // 128 bytes: a whole number of them fills a chunk to its last byte.
        let small = || labels(format!("a=\"{}\"", "x".repeat(124)));
        let large = labels(format!("a=\"{}\"", "y".repeat(PARTS_CHUNK)));
        let (small_len, large_len) = (small().len(), large.len());
        // A chunk's worth of small parts and then some, one larger than a chunk, small ones:
        // each a pod's own (none shared with the pod before).
        let per_chunk = PARTS_CHUNK / small_len;
        let pods: Vec<PodLabels> = (0..per_chunk + 3)
            .map(|_| small())
            .chain([large, PodLabels::default()])
            .chain((0..2).map(|_| small()))
            .collect();
        let copied = CopiedParts::new(pods.len(), |i| pods[i].parts());
        let gathered = copied.gathered();
        let each: Vec<&[&str]> = gathered.each().collect();
        assert_eq!(each.len(), pods.len());
        for (i, (parts, pod)) in each.iter().zip(&pods).enumerate() {
            assert_eq!(parts.join(","), pod.text(), "pod {i}");
        }
        // A chunk of small ones, the 3 more, the large one, the last two.
        let lens: Vec<usize> = copied.chunks.iter().map(String::len).collect();
        assert_eq!(lens, [per_chunk * small_len, 3 * small_len, large_len, 2 * small_len]);
        assert!(copied.chunks.iter().all(|c| c.capacity() >= PARTS_CHUNK));
    }

    #[test]
    fn neighbouring_pods_share_the_parts_they_have_alike() {
        let pods: PodMetricsList<'_> = serde_json::from_str(
            r#"{"items":[{"metadata":{"name":"a","namespace":"n"}},{"metadata":{"name":"b","namespace":"n"}},
            {"metadata":{"name":"c","namespace":"n"},"containers":[{"name":"x","usage":{"cpu":"1m","memory":"1Ki"}}]}]}"#,
        )
        .expect("pods");
        let nodes = NodeMetricsList::default();
        let scrape = Scrape::new(&pods, &nodes);
        let (mut ips, mut apps) = (Enrichment::new(&scrape), Enrichment::new(&scrape));
        for (i, app) in ["web", "web", "db"].into_iter().enumerate() {
            ips.add_pod_label(i, LabelName::from_static("pod_ip"), format!("10.0.0.{i}").into());
            apps.add_pod_label(i, LabelName::from_static("app"), app.into());
            apps.add_pod_label(i, LabelName::from_static("tier"), "\"1\"".into());
        }
        let prepared = prepare(&scrape, &[&ips, &apps]);
        let parts: Vec<&[Text]> = prepared.pods.iter().map(|p| p.parts()).collect();
        assert_eq!(&*parts[1][1], r#"app="web",tier="\"1\"""#);
        assert!(Arc::ptr_eq(&parts[0][1], &parts[1][1]), "the same labels, one copy");
        assert!(!Arc::ptr_eq(&parts[1][1], &parts[2][1]));
        assert_eq!(prepared.pods[0].text(), r#"pod_ip="10.0.0.0",app="web",tier="\"1\"""#);
        assert_eq!(prepared.pods[0].len(), prepared.pods[0].text().len());
        let mut out = String::new();
        render_prepared(&mut out, &scrape, &prepared, &RenderOptions::default()).expect("render");
        assert!(
            out.contains(r#"{namespace="n",pod="c",container="x",pod_ip="10.0.0.2",app="db",tier="\"1\""} 0.001"#),
            "{out}"
        );
        assert!(out.contains(r#"{namespace="n",pod="c",pod_ip="10.0.0.2",app="db",tier="\"1\""} 1024"#), "{out}");
    }

    #[test]
    fn timestamps_when_asked() {
        let out = rendered(RenderOptions { timestamps: true, ..Default::default() });
        assert!(
            out.contains(r#"container="sidecar",node="ip-10-30-78-99",pod_ip="10.1.2.3"} 0.0015 1534735140000"#),
            "{out}"
        );
        let om = rendered(RenderOptions { timestamps: true, format: Some(Format::OpenMetrics), ..Default::default() });
        // OpenMetrics' timestamps are in seconds.
        assert!(
            om.contains(
                r#"pod_ip="10.1.2.3"} 0.0015 1534735140
"#
            ) && om.ends_with("# EOF\n"),
            "{om}"
        );
    }
}
