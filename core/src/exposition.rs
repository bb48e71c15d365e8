//! The Prometheus text exposition writer (format 0.0.4, and OpenMetrics 1.0 text).
//!
//! Families are written one at a time, each with its `# HELP` and `# TYPE` once and all of
//! its samples together; writing a family name twice is an error. Metric and label names are
//! types validated when they are made, so the writer never emits an invalid name. Label
//! values and HELP text are escaped. Values are written as Prometheus' parser reads them.
//!
//! ```
//! use msp_core::{Format, LabelName, MetricName, MetricType, Writer};
//!
//! let name = MetricName::new("demo_bytes").unwrap();
//! let pod = LabelName::from_static("pod");
//! let mut out = String::new();
//! let mut w = Writer::new(&mut out, Format::Text);
//! let mut family = w.family(&name, "Bytes, with a \\ backslash.", MetricType::Gauge).unwrap();
//! family.sample([(&pod, "web-\"1\"")], 1024.0);
//! family.sample([(&pod, "db\n2")], 0.5);
//! w.finish();
//! assert_eq!(out, "\
//! ## HELP demo_bytes Bytes, with a \\\\ backslash.
//! ## TYPE demo_bytes gauge
//! demo_bytes{pod=\"web-\\\"1\\\"\"} 1024
//! demo_bytes{pod=\"db\\n2\"} 0.5
//! ");
//! ```

use crate::quantity::Quantity;
use crate::swar::{bytes_equal, word};
use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

/// The exposition formats we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text format.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The metric types we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic count; its name ends in `_total`.
    Counter,
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    #[error("invalid metric name {0:?}")]
    Metric(String),
    /// Not a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`).
    #[error("invalid label name {0:?}")]
    Label(String),
}

/// An error while writing an exposition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpositionError {
    /// The same family name was written twice; its samples would not be grouped.
    #[error("metric family {0:?} written twice")]
    DuplicateFamily(String),
    /// A counter's name must end in `_total`.
    #[error("counter {0:?} does not end in _total")]
    CounterName(String),
    /// A spilling writer's sink said stop (its reader has gone): nothing more is written.
    #[error("the exposition's reader has gone")]
    Stopped,
}

const fn valid_name(s: &[u8], colons: bool) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        let ok = c.is_ascii_alphabetic() || c == b'_' || (colons && c == b':') || (i > 0 && c.is_ascii_digit());
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// A string that is either static or shared; cheap to clone.
#[derive(Clone, Eq)]
enum Shared {
    Static(&'static str),
    Arc(Arc<str>),
}

impl Shared {
    fn as_str(&self) -> &str {
        match self {
            Shared::Static(s) => s,
            Shared::Arc(s) => s,
        }
    }
}

impl PartialEq for Shared {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Hash for Shared {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

/// A valid metric name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MetricName(Shared);

impl MetricName {
    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        if valid_name(name.as_bytes(), true) {
            Ok(MetricName(Shared::Arc(name.into())))
        } else {
            Err(NameError::Metric(name.to_owned()))
        }
    }

    /// A metric name known at compile time; panics (at compile time in a `const`) if invalid.
    pub const fn from_static(name: &'static str) -> Self {
        assert!(valid_name(name.as_bytes(), true), "invalid metric name");
        MetricName(Shared::Static(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// A valid label name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LabelName(Shared);

impl LabelName {
    /// Validates `name`: `[a-zA-Z_][a-zA-Z0-9_]*`, and not reserved (`__` prefix).
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        if valid_name(name.as_bytes(), false) && !name.starts_with("__") {
            Ok(LabelName(Shared::Arc(name.into())))
        } else {
            Err(NameError::Label(name.to_owned()))
        }
    }

    /// A label name known at compile time; panics (at compile time in a `const`) if invalid.
    pub const fn from_static(name: &'static str) -> Self {
        let b = name.as_bytes();
        assert!(valid_name(b, false), "invalid label name");
        assert!(!(b.len() >= 2 && b[0] == b'_' && b[1] == b'_'), "reserved label name");
        LabelName(Shared::Static(name))
    }

    /// Makes a valid label name from any text the way kube-state-metrics does: every
    /// character outside `[a-zA-Z0-9_]` becomes `_`, and `prefix` is put in front
    /// (`("label_", "app.kubernetes.io/name")` gives `label_app_kubernetes_io_name`).
    ///
    /// `prefix` must itself be a valid, non-empty label name start (`label_`, `annotation_`).
    pub fn sanitized(prefix: &str, text: &str) -> Result<Self, NameError> {
        LabelName::new(sanitize(prefix, text))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for LabelName {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a spilling writer hands its text to; [`ControlFlow::Break`] stops the writing.
type Sink<'s> = dyn FnMut(&str) -> ControlFlow<()> + 's;

/// Where a [`Writer`] hands its text once `out` holds at least `threshold` bytes: the
/// exposition then never has to exist whole (the server feeds gzip this way).
struct Spill<'s> {
    threshold: usize,
    sink: &'s mut Sink<'s>,
    /// Whether the sink said stop.
    stopped: bool,
}

impl fmt::Debug for Spill<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spill").field("threshold", &self.threshold).finish_non_exhaustive()
    }
}

/// Writes families into a `String` (the response buffer, sized by the caller), or through
/// it into a sink ([`Writer::spilling`]).
#[derive(Debug)]
pub struct Writer<'o> {
    out: &'o mut String,
    format: Format,
    written: HashSet<String>,
    spill: Option<Spill<'o>>,
}

impl<'o> Writer<'o> {
    /// A writer appending to `out`.
    pub fn new(out: &'o mut String, format: Format) -> Self {
        Writer { out, format, written: HashSet::new(), spill: None }
    }

    /// A writer that uses `out` as a buffer of about `threshold` bytes: whenever it holds
    /// that much (between samples), the text goes to `sink` and `out` is emptied. Call
    /// [`Writer::finish`] to hand over the rest. Once `sink` answers
    /// [`ControlFlow::Break`] (its reader has gone), samples are no longer written and
    /// [`Writer::family`] fails with [`ExpositionError::Stopped`], so the writing ends early.
    pub fn spilling(
        out: &'o mut String,
        format: Format,
        threshold: usize,
        sink: &'o mut (dyn FnMut(&str) -> ControlFlow<()> + 'o),
    ) -> Self {
        Writer { out, format, written: HashSet::new(), spill: Some(Spill { threshold, sink, stopped: false }) }
    }

    /// Reserves room for `additional` more bytes, so a large exposition is not copied as
    /// it grows (a spilling writer never needs more than its threshold and a sample).
    pub fn reserve(&mut self, additional: usize) {
        let additional = match &self.spill {
            Some(spill) => additional.min(spill.threshold + 64 * 1024),
            None => additional,
        };
        self.out.reserve(additional);
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Starts a family: writes its HELP and TYPE lines. Its samples follow through the
    /// returned [`Family`], which must be dropped before the next family starts.
    pub fn family(&mut self, name: &MetricName, help: &str, kind: MetricType) -> Result<Family<'_>, ExpositionError> {
        if self.spill.as_ref().is_some_and(|s| s.stopped) {
            return Err(ExpositionError::Stopped);
        }
        let full = name.as_str();
        if kind == MetricType::Counter && !full.ends_with("_total") {
            return Err(ExpositionError::CounterName(full.to_owned()));
        }
        if !self.written.insert(full.to_owned()) {
            return Err(ExpositionError::DuplicateFamily(full.to_owned()));
        }
        // OpenMetrics names a counter family without its `_total` sample suffix.
        let family = match (self.format, kind) {
            (Format::OpenMetrics, MetricType::Counter) => &full[..full.len() - "_total".len()],
            _ => full,
        };
        let out = &mut *self.out;
        out.push_str("# HELP ");
        out.push_str(family);
        out.push(' ');
        escape_into(out, help, self.format == Format::OpenMetrics);
        out.push_str("\n# TYPE ");
        out.push_str(family);
        out.push_str(match kind {
            MetricType::Gauge => " gauge\n",
            MetricType::Counter => " counter\n",
        });
        let spill = self.spill.as_mut().map(|s| (s.threshold, &mut *s.sink as &mut Sink<'_>, &mut s.stopped));
        Ok(Family { out: &mut *self.out, format: self.format, spill, name: full.to_owned() })
    }

    /// Ends the exposition (`# EOF` in OpenMetrics); a spilling writer hands over the rest.
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        if let Some(spill) = self.spill.filter(|s| !s.stopped) {
            // Headers and self-metrics never reach the threshold on their own: hand them over.
            if !self.out.is_empty() {
                let _ = (spill.sink)(self.out);
                self.out.clear();
            }
        }
    }
}

/// The samples of one family.
pub struct Family<'w> {
    out: &'w mut String,
    /// How timestamps are written.
    format: Format,
    /// The threshold, sink and whether it said stop, of a spilling writer.
    spill: Option<(usize, &'w mut Sink<'w>, &'w mut bool)>,
    name: String,
}

impl fmt::Debug for Family<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family").field("name", &self.name).field("spilling", &self.spill.is_some()).finish()
    }
}

impl Family<'_> {
    /// Writes one sample. The caller keeps label names unique within the sample and label
    /// sets unique within the family.
    pub fn sample<'l>(&mut self, labels: impl IntoIterator<Item = (&'l LabelName, &'l str)>, value: f64) {
        self.sample_at(labels, value, None)
    }

    /// Writes one sample with an optional timestamp in milliseconds since the epoch (written
    /// in seconds in OpenMetrics).
    pub fn sample_at<'l>(
        &mut self,
        labels: impl IntoIterator<Item = (&'l LabelName, &'l str)>,
        value: f64,
        timestamp_ms: Option<i64>,
    ) {
        self.sample_with(labels, &LabelBlock::default(), value, timestamp_ms)
    }

    /// Writes one sample: `labels`, then the labels of `block` (already escaped), which
    /// lets many series that share labels escape them once.
    pub fn sample_with<'l>(
        &mut self,
        labels: impl IntoIterator<Item = (&'l LabelName, &'l str)>,
        block: &LabelBlock,
        value: f64,
        timestamp_ms: Option<i64>,
    ) {
        if self.stopped() {
            return;
        }
        let out = &mut *self.out;
        out.push_str(&self.name);
        let mut first = true;
        for (name, value) in labels {
            out.push(if first { '{' } else { ',' });
            first = false;
            push_label(out, name, value);
        }
        self.end_sample(first, block.as_str(), Value::Float(value), timestamp_ms);
    }

    /// [`Family::sample_with`], with the labels already escaped and written as
    /// `name="value"` pieces, `labels` then `parts` (joined with commas here, none empty),
    /// and the value a quantity, written from its digits (see [`write_quantity`]). The
    /// labels' names must be valid and unique.
    pub(crate) fn sample_escaped(
        &mut self,
        labels: &[&str],
        parts: &[&str],
        value: Quantity,
        timestamp_ms: Option<i64>,
    ) {
        if self.stopped() {
            return;
        }
        let out = &mut *self.out;
        out.push_str(&self.name);
        let pieces = labels.iter().chain(parts);
        for (i, piece) in pieces.enumerate() {
            out.push(if i == 0 { '{' } else { ',' });
            out.push_str(piece);
        }
        let first = labels.is_empty() && parts.is_empty();
        self.end_sample(first, "", Value::Quantity(value), timestamp_ms);
    }

    /// The block, the value and the timestamp of a sample whose first labels are written
    /// (`first`: none were).
    fn end_sample(&mut self, mut first: bool, block: &str, value: Value, timestamp_ms: Option<i64>) {
        let out = &mut *self.out;
        if !block.is_empty() {
            out.push(if first { '{' } else { ',' });
            first = false;
            out.push_str(block);
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        match value {
            Value::Float(v) => write_value(out, v),
            Value::Quantity(q) => write_quantity(out, q),
        }
        if let Some(ts) = timestamp_ms {
            write_timestamp(out, ts, self.format);
        }
        out.push('\n');
        if let Some((threshold, sink, stopped)) = &mut self.spill {
            if self.out.len() >= *threshold {
                **stopped = sink(self.out).is_break();
                self.out.clear();
            }
        }
    }

    /// Whether the sink said stop: samples are then not written.
    #[inline]
    fn stopped(&self) -> bool {
        self.spill.as_ref().is_some_and(|(_, _, stopped)| **stopped)
    }
}

/// `prefix` + `text` with every character outside `[a-zA-Z0-9_]` turned into `_`, as
/// kube-state-metrics names labels.
pub(crate) fn sanitize(prefix: &str, text: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + text.len());
    name.push_str(prefix);
    name.extend(text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }));
    name
}

/// Writes `name="value"`, the value escaped.
pub(crate) fn push_label(out: &mut String, name: &LabelName, value: &str) {
    out.push_str(name.as_str());
    out.push_str("=\"");
    escape_into(out, value, true);
    out.push('"');
}

/// Labels rendered and escaped once (`a="1",b="2"`), to be written on many series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelBlock(String);

impl LabelBlock {
    /// Renders `labels`; names must be unique (and not repeat those written beside it).
    pub fn new<'l>(labels: impl IntoIterator<Item = (&'l LabelName, &'l str)>) -> Self {
        let mut block = String::new();
        for (name, value) in labels {
            if !block.is_empty() {
                block.push(',');
            }
            push_label(&mut block, name, value);
        }
        // Blocks are kept across scrapes (see `Memo`): no spare capacity.
        block.shrink_to_fit();
        LabelBlock(block)
    }

    /// The rendered text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rendered length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Escapes `\` and newline, and `"` when `quotes` (label values, OpenMetrics HELP).
fn escape_into(out: &mut String, s: &str, quotes: bool) {
    if !needs_escape(s.as_bytes(), quotes) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Whether `s` holds a backslash, a newline, or (when `quotes`) `"`: eight bytes at a time
/// (see `swar`), the rest one by one.
fn needs_escape(s: &[u8], quotes: bool) -> bool {
    let has = |w: u64, b: u8| bytes_equal(w, b) != 0;
    let special = |b: u8| b == b'\\' || b == b'\n' || (quotes && b == b'"');
    let mut words = s.chunks_exact(8);
    for chunk in &mut words {
        let w = word(chunk);
        if has(w, b'\\') || has(w, b'\n') || (quotes && has(w, b'"')) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| special(b))
}

/// A sample's value: a float, or a quantity, whose exact digits can be written as they are.
#[derive(Clone, Copy)]
enum Value {
    Float(f64),
    Quantity(Quantity),
}

/// A quantity in units as [`write_value`] writes its [`Quantity::as_f64`], the bytes alike,
/// from its digits where that is sure, and by [`write_value`] otherwise. Sure are: whole
/// units below 2^64 nano-units (about 1.8e10 units, which `write_value` too writes as an
/// integer), and fractions of 10^-5 and up with at most 15 significant digits, which a
/// double keeps, so that its shortest decimal is the quantity's own.
fn write_quantity(out: &mut String, q: Quantity) {
    const NANOS: u64 = 1_000_000_000;
    const FIFTEEN_DIGITS: u64 = 1_000_000_000_000_000; // nano-units
    const FIXED_FROM: u64 = 10_000; // 10^-5 units: below, zmij writes an exponent
    let Ok(n) = u64::try_from(q.nanos()) else { return write_value(out, q.as_f64()) };
    let (units, mut frac) = (n / NANOS, n % NANOS);
    if frac == 0 {
        out.push_str(itoa::Buffer::new().format(units));
        return;
    }
    if !(FIXED_FROM..FIFTEEN_DIGITS).contains(&n) {
        return write_value(out, q.as_f64());
    }
    out.push_str(itoa::Buffer::new().format(units));
    // The nine places after the point, less the zeros at the end: the zeros after the
    // point, then the digits.
    let mut places = 9;
    while frac % 10 == 0 {
        frac /= 10;
        places -= 1;
    }
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(frac);
    out.push('.');
    out.push_str(&"00000000"[..places - digits.len()]);
    out.push_str(digits);
}

/// A sample's timestamp, `ms` milliseconds since the epoch, after a space: in milliseconds
/// for text 0.0.4, in seconds for OpenMetrics (`1534735140`, `1534735140.5`).
fn write_timestamp(out: &mut String, ms: i64, format: Format) {
    match format {
        Format::Text => {
            let _ = write!(out, " {ms}");
        }
        Format::OpenMetrics => {
            let (sign, abs) = (if ms < 0 { "-" } else { "" }, ms.unsigned_abs());
            let (secs, frac) = (abs / 1000, abs % 1000);
            let _ = write!(out, " {sign}{secs}");
            if frac != 0 {
                let digits = format!("{frac:03}");
                out.push('.');
                out.push_str(digits.trim_end_matches('0'));
            }
        }
    }
}

/// A float as Prometheus reads it: shortest round-trip decimal, `NaN`, `+Inf`, `-Inf`.
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Whole numbers without a fractional part or exponent: `128458752`, not `1.28e8`.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        // The shortest representation that round-trips, with an exponent for very large or
        // small magnitudes (`1e-9`), which Prometheus parses.
        out.push_str(zmij::Buffer::new().format_finite(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: LabelName = LabelName::from_static("pod");
    const NS: LabelName = LabelName::from_static("namespace");

    #[test]
    fn timestamps_are_milliseconds_in_text_and_seconds_in_openmetrics() {
        let written = |ms: i64, format: Format| {
            let mut out = String::new();
            write_timestamp(&mut out, ms, format);
            out
        };
        assert_eq!(written(1_534_735_140_000, Format::Text), " 1534735140000");
        for (ms, om) in [
            (1_534_735_140_000, " 1534735140"),
            (1_534_735_140_500, " 1534735140.5"),
            (1_534_735_140_007, " 1534735140.007"),
            (1_534_735_140_120, " 1534735140.12"),
            (0, " 0"),
            (-1_500, " -1.5"),
            (i64::MIN, " -9223372036854775.808"),
        ] {
            assert_eq!(written(ms, Format::OpenMetrics), om);
        }
    }

    fn render(f: impl FnOnce(&mut Writer<'_>)) -> String {
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        f(&mut w);
        w.finish();
        out
    }

    /// What [`write_quantity`] writes, and what [`write_value`] writes for the double.
    fn both_ways(nanos: i128) -> (String, String) {
        let q = Quantity::from_nanos(nanos);
        let (mut exact, mut float) = (String::new(), String::new());
        write_quantity(&mut exact, q);
        write_value(&mut float, q.as_f64());
        (exact, float)
    }

    #[test]
    fn a_quantity_is_written_as_its_double_is() {
        let mut cases: Vec<i128> = vec![0, 1, 9_999, 10_000, 10_001, 999_999_999, 1_000_000_000, 1_000_000_001];
        // Both sides of every power of ten, and of the limits, to 10^20 nano-units.
        let mut p: i128 = 1;
        while p <= 100_000_000_000_000_000_000 {
            cases.extend([p - 1, p, p + 1, 3 * p, p + p / 2]);
            p *= 10;
        }
        // Every value near the smallest written from its digits, and spread over all sizes.
        cases.extend(0..20_000);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(i128::from(x >> (x % 64)));
        }
        cases.extend([i128::from(u64::MAX), i128::from(u64::MAX) + 1, -1, -1_000_000_000, -15_000]);
        for nanos in cases {
            let (exact, float) = both_ways(nanos);
            assert_eq!(exact, float, "{nanos} nano-units");
        }
        // The digits themselves, for the forms metrics-server writes.
        assert_eq!(both_ways(1_000_017).0, "0.001000017");
        assert_eq!(both_ways(500_000_000).0, "0.5");
        assert_eq!(both_ways(102_401_024_000_000_000).0, "102401024");
        assert_eq!(both_ways(12_300).0, "0.0000123");
    }

    #[test]
    fn the_word_at_a_time_check_finds_every_special_byte_anywhere() {
        for len in 0..20 {
            for at in 0..len {
                for (b, quotes) in
                    [(b'\\', false), (b'\n', false), (b'"', true), (b'"', false), (0x80, true), (b'[', true)]
                {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let naive = b == b'\\' || b == b'\n' || (quotes && b == b'"');
                    assert_eq!(needs_escape(&s, quotes), naive, "{b:#x} at {at} of {len}, quotes {quotes}");
                }
            }
            assert!(!needs_escape(&vec![b'z'; len], true));
        }
    }

    #[test]
    fn golden_escaping() {
        let name = MetricName::new("x_bytes").expect("valid");
        let out = render(|w| {
            let mut f = w.family(&name, "line one\nback\\slash \"quoted\"", MetricType::Gauge).expect("family");
            f.sample([(&NS, "a\\b"), (&POD, "say \"hi\"\nbye")], 1.0);
            f.sample([(&NS, "plain"), (&POD, "ünïcødé")], 2.5);
        });
        let golden = concat!(
            "# HELP x_bytes line one\\nback\\\\slash \"quoted\"\n",
            "# TYPE x_bytes gauge\n",
            "x_bytes{namespace=\"a\\\\b\",pod=\"say \\\"hi\\\"\\nbye\"} 1\n",
            "x_bytes{namespace=\"plain\",pod=\"ünïcødé\"} 2.5\n",
        );
        assert_eq!(out, golden);
    }

    #[test]
    fn values_prometheus_parses() {
        let name = MetricName::new("v").expect("valid");
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (0.007, "0.007"),
            (0.0015, "0.0015"),
            (128458752.0, "128458752"),
            (2147483648.0, "2147483648"),
            (1e-9, "1e-9"),
            (0.000000123, "1.23e-7"),
            (1e300, "1e+300"),
            (9223372036854775807.0, "9.223372036854776e+18"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for &(v, want) in cases {
            let out = render(|w| {
                w.family(&name, "h", MetricType::Gauge).expect("family").sample([], v);
            });
            let line = out.lines().last().expect("sample line");
            assert_eq!(line, format!("v {want}"), "{v}");
            if v.is_finite() {
                let parsed: f64 = want.parse().expect("reparse");
                assert_eq!(parsed, v);
            }
        }
    }

    #[test]
    fn a_family_is_written_once() {
        let name = MetricName::new("dup").expect("valid");
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        drop(w.family(&name, "h", MetricType::Gauge).expect("first"));
        assert_eq!(w.family(&name, "h", MetricType::Gauge).err(), Some(ExpositionError::DuplicateFamily("dup".into())));
    }

    #[test]
    fn counters_in_both_formats() {
        let name = MetricName::new("errors_total").expect("valid");
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::OpenMetrics);
        w.family(&name, "Errors.", MetricType::Counter).expect("family").sample([], 3.0);
        w.finish();
        assert_eq!(out, "# HELP errors Errors.\n# TYPE errors counter\nerrors_total 3\n# EOF\n");
        let bad = MetricName::new("errors").expect("valid");
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        assert!(matches!(w.family(&bad, "h", MetricType::Counter), Err(ExpositionError::CounterName(_))));
    }

    #[test]
    fn names_are_validated() {
        assert!(MetricName::new("kube_metrics_server:cpu").is_ok());
        for bad in ["", "1abc", "a-b", "a b", "é"] {
            assert!(MetricName::new(bad).is_err(), "{bad}");
            assert!(LabelName::new(bad).is_err(), "{bad}");
        }
        assert!(LabelName::new("a:b").is_err());
        assert!(LabelName::new("__name__").is_err());
        assert_eq!(
            LabelName::sanitized("label_", "app.kubernetes.io/name").expect("valid").as_str(),
            "label_app_kubernetes_io_name"
        );
        assert_eq!(LabelName::sanitized("label_", "ünï-x").expect("valid").as_str(), "label__n__x");
    }

    #[test]
    fn a_spilling_writer_writes_the_same_text_in_pieces() {
        const N: MetricName = MetricName::from_static("x_total");
        const L: LabelName = LabelName::from_static("i");
        let write = |w: &mut Writer<'_>| {
            let mut f = w.family(&N, "Things.", MetricType::Counter).expect("family");
            for i in 0..100 {
                f.sample([(&L, i.to_string().as_str())], i as f64);
            }
        };
        let mut whole = String::new();
        let mut w = Writer::new(&mut whole, Format::OpenMetrics);
        write(&mut w);
        w.finish();

        let mut pieces: Vec<String> = Vec::new();
        let mut sink = |s: &str| {
            pieces.push(s.to_owned());
            ControlFlow::Continue(())
        };
        let mut buf = String::new();
        let mut w = Writer::spilling(&mut buf, Format::OpenMetrics, 256, &mut sink);
        w.reserve(1 << 30);
        write(&mut w);
        w.finish();
        assert!(buf.is_empty(), "everything was handed over");
        assert!(buf.capacity() < 1 << 20, "the buffer stays near the threshold");
        assert!(pieces.len() > 5 && pieces.iter().all(|p| p.len() < 256 + 64), "{} pieces", pieces.len());
        assert_eq!(pieces.concat(), whole);
    }

    #[test]
    fn a_sink_that_says_stop_ends_the_writing() {
        const N: MetricName = MetricName::from_static("x");
        const M: MetricName = MetricName::from_static("y");
        const L: LabelName = LabelName::from_static("i");
        let mut handed = 0;
        let mut sink = |_: &str| {
            handed += 1;
            if handed == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut buf = String::new();
        let mut w = Writer::spilling(&mut buf, Format::OpenMetrics, 256, &mut sink);
        let mut f = w.family(&N, "Things.", MetricType::Gauge).expect("family");
        for i in 0..1000 {
            f.sample([(&L, i.to_string().as_str())], 1.0);
        }
        assert!(f.out.is_empty(), "no sample written after the stop");
        assert_eq!(w.family(&M, "More.", MetricType::Gauge).err(), Some(ExpositionError::Stopped));
        w.finish();
        assert_eq!(handed, 2, "nothing handed over after the stop, not even at the end");
    }
}
