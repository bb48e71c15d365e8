//! An object's labels kept as the JSON text they came in, read into pairs only when asked.
//!
//! metrics-server 0.5 and later copy every pod's labels into its PodMetrics. A scrape
//! mostly only compares them with the last scrape's (see [`Memo`](crate::Memo)); only the
//! pods whose labels changed need them as pairs. Held as pairs, 8 labels took 384 bytes a
//! pod (about 58 MB at 150,000 pods); held as the text they came in, 16 bytes and the body
//! they borrow from, which the scrape holds anyway.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::model::Str;

/// `metadata.labels`: a JSON object of label names to values (`{"app":"web"}`), checked
/// to be one when it was read. Two are equal when their pairs are, whatever the spacing
/// or escapes of their text.
#[derive(Clone)]
pub struct JsonLabels<'a>(Str<'a>);

impl<'a> JsonLabels<'a> {
    /// Labels from pairs, written in their order.
    pub fn new<'p>(pairs: impl IntoIterator<Item = (&'p str, &'p str)>) -> JsonLabels<'static> {
        let mut text = String::from("{");
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            push_json_string(&mut text, name);
            text.push(':');
            push_json_string(&mut text, value);
        }
        text.push('}');
        JsonLabels(Cow::Owned(text))
    }

    /// Text the scanner checked to be an object of strings.
    pub(crate) fn checked(text: &'a str) -> Self {
        JsonLabels(Cow::Borrowed(text))
    }

    /// The same labels, borrowing this one's text.
    pub fn borrowed(&self) -> JsonLabels<'_> {
        JsonLabels(Cow::Borrowed(&self.0))
    }

    /// The object's text, as it came (or as [`JsonLabels::new`] wrote it).
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The labels as pairs, in the order they came (a name twice is kept twice, as serde's
    /// map visitor gives it), borrowing their text where it has no escape.
    pub fn pairs(&self) -> Vec<(Str<'_>, Str<'_>)> {
        // The text was checked when this was made, so one of the two reads it.
        crate::scan::label_pairs(&self.0)
            .or_else(|| serde_json::from_str::<Pairs<'_>>(&self.0).ok().map(|p| p.0))
            .unwrap_or_default()
    }
}

impl PartialEq for JsonLabels<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 || self.pairs() == other.pairs()
    }
}

impl fmt::Debug for JsonLabels<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.pairs()).finish()
    }
}

/// A string in JSON, quoted and escaped by serde_json (as the server's JSON logs write theirs).
fn push_json_string(out: &mut String, s: &str) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        // Serializing a str cannot fail; keep the text a valid object regardless.
        Err(_) => out.push_str("\"\""),
    }
}

/// Labels read by serde, as pairs in document order, borrowing where they can.
struct Pairs<'a>(Vec<(Str<'a>, Str<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Pairs<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<crate::model::Borrowed<'a>, crate::model::Borrowed<'a>>()? {
                    pairs.push((k.0, v.0));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// `metadata.labels` as serde reads it: `null`, missing or an object of strings, which is
/// written out again as the text of [`JsonLabels`] (serde reads a list only when the scanner
/// gave up on it, which metrics-server's lists do not make it do).
pub(crate) fn deserialize<'de: 'a, 'a, D>(d: D) -> Result<Option<JsonLabels<'a>>, D::Error>
where
    D: Deserializer<'de>,
{
    let pairs = Option::<Pairs<'a>>::deserialize(d)?;
    Ok(pairs.map(|p| JsonLabels::new(p.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_come_back_in_order_with_escapes_decoded() {
        let written = JsonLabels::new([("app", "web"), ("say", "a \"b\" \\ c\n"), ("app", "twice")]);
        assert_eq!(written.as_json(), r#"{"app":"web","say":"a \"b\" \\ c\n","app":"twice"}"#);
        let pairs = written.pairs();
        assert_eq!(
            pairs,
            [("app".into(), "web".into()), ("say".into(), "a \"b\" \\ c\n".into()), ("app".into(), "twice".into())]
        );
        let plain = JsonLabels::checked(r#"{ "a" : "1" , "b":"2" }"#);
        assert!(plain.pairs().iter().all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
        assert_eq!(plain, JsonLabels::new([("a", "1"), ("b", "2")]), "equal by their pairs, not their spacing");
        assert_ne!(plain, JsonLabels::new([("b", "2"), ("a", "1")]));
        assert_eq!(format!("{plain:?}"), r#"{"a": "1", "b": "2"}"#);
        assert!(JsonLabels::new([]).pairs().is_empty());
    }

    #[test]
    fn serde_reads_null_an_object_or_an_error() {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, default, deserialize_with = "deserialize")]
            labels: Option<JsonLabels<'a>>,
        }
        let read =
            |text: &str| serde_json::from_str::<Meta<'_>>(text).map(|m| m.labels.map(|l| l.as_json().to_owned()));
        assert_eq!(read("{}").expect("missing"), None);
        assert_eq!(read(r#"{"labels":null}"#).expect("null"), None);
        assert_eq!(read(r#"{"labels":{"a":"\u00fc"}}"#).expect("escaped").as_deref(), Some(r#"{"a":"ü"}"#));
        assert!(read(r#"{"labels":{"a":1}}"#).is_err(), "a number is no label value");
        assert!(read(r#"{"labels":["a"]}"#).is_err());
    }
}
