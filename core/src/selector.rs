//! Label selectors (`app=frontend,tier notin (cache)`), parsed and matched as the API server
//! does (apimachinery `pkg/labels/selector.go`) for the forms `k=v`, `k==v`, `k!=v`, `k`,
//! `!k`, `k in (a,b)`, `k notin (a,b)`, and the numeric `k>1` and `k<1`, the requirements
//! separated by commas and all ANDed.
//!
//! The exporter parses its `label_selector` setting here, so that one the API server would
//! refuse stops it at startup instead of failing every scrape; the simulator filters with it.

use std::fmt;
use std::str::FromStr;

/// A parsed label selector, with the text it was parsed from (which is what goes to the API
/// server); the empty one matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

/// One requirement on one label.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// `k=v`, `k==v`, `k in (a,b)`: the label is there with one of these values.
    In(Vec<String>),
    /// `k!=v`, `k notin (a,b)`: the label is missing or has none of these values.
    NotIn(Vec<String>),
    /// `k`.
    Exists,
    /// `!k`.
    DoesNotExist,
    /// `k>n`: the label is there, an integer greater than `n`.
    Gt(i64),
    /// `k<n`: the label is there, an integer less than `n`.
    Lt(i64),
}

/// A selector that does not parse, with the input it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse label selector {original:?}: {reason}")]
pub struct LabelSelectorError {
    /// The whole selector.
    pub original: String,
    /// What is wrong with it.
    pub reason: String,
}

impl LabelSelector {
    /// Whether an object with `labels` is selected.
    pub fn matches<K: AsRef<str>, V: AsRef<str>>(&self, labels: &[(K, V)]) -> bool {
        self.requirements.iter().all(|r| {
            let value = labels.iter().find(|(k, _)| k.as_ref() == r.key).map(|(_, v)| v.as_ref());
            match &r.op {
                Op::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
                Op::NotIn(values) => value.is_none_or(|v| !values.iter().any(|x| x == v)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Gt(n) => integer_label(value).is_some_and(|v| v > *n),
                Op::Lt(n) => integer_label(value).is_some_and(|v| v < *n),
            }
        })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The selector as it was written, trimmed: what a list request sends as `labelSelector`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LabelSelector {
    type Err = LabelSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| LabelSelectorError { original: s.to_owned(), reason };
        if s.trim().is_empty() {
            return Ok(LabelSelector::default());
        }
        let requirements = split_requirements(s)
            .map_err(|r| fail(r.into()))?
            .into_iter()
            .map(|r| requirement(r.trim()).map_err(fail))
            .collect::<Result<_, _>>()?;
        Ok(LabelSelector { text: s.trim().to_owned(), requirements })
    }
}

/// The requirements of `s`: split at the commas outside parentheses.
fn split_requirements(s: &str) -> Result<Vec<&str>, &'static str> {
    let (mut parts, mut start, mut open) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '(' if open => return Err("nested '('"),
            '(' => open = true,
            ')' if !open => return Err("')' without '('"),
            ')' => open = false,
            ',' if !open => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if open {
        return Err("expected ')'");
    }
    parts.push(&s[start..]);
    Ok(parts)
}

/// One requirement, trimmed.
fn requirement(r: &str) -> Result<Requirement, String> {
    let (key, op) = if let Some(key) = r.strip_prefix('!') {
        (key, Op::DoesNotExist)
    } else if let Some((key, v)) = r.split_once("!=") {
        (key, Op::NotIn(vec![value(v)?]))
    } else if let Some((key, v)) = r.split_once("==").or_else(|| r.split_once('=')) {
        (key, Op::In(vec![value(v)?]))
    } else if let Some((key, v)) = r.split_once('>') {
        (key, Op::Gt(integer(v)?))
    } else if let Some((key, v)) = r.split_once('<') {
        (key, Op::Lt(integer(v)?))
    } else if let Some((key, rest)) = r.split_once(char::is_whitespace) {
        let rest = rest.trim_start();
        let (set, op): (_, fn(Vec<String>) -> Op) = match (rest.strip_prefix("notin"), rest.strip_prefix("in")) {
            (Some(set), _) => (set, Op::NotIn),
            (None, Some(set)) => (set, Op::In),
            (None, None) => return Err(format!("{r:?}: expected '=', '!=', 'in' or 'notin' after the key")),
        };
        (key, op(values(set)?))
    } else {
        (r, Op::Exists)
    };
    let key = key.trim();
    if !valid_key(key) {
        return Err(format!("{key:?} is not a valid label key"));
    }
    Ok(Requirement { key: key.to_owned(), op })
}

/// The values of `(a, b)`: at least one.
fn values(set: &str) -> Result<Vec<String>, String> {
    let inner = set.trim().strip_prefix('(').and_then(|s| s.strip_suffix(')'));
    let Some(inner) = inner else {
        return Err(format!("{set:?}: expected a set of values in parentheses"));
    };
    if inner.trim().is_empty() {
        return Err("for 'in', 'notin' operators, values set can't be empty".into());
    }
    inner.split(',').map(value).collect()
}

/// One label value, trimmed: empty or a valid name.
fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.is_empty() || valid_name(v) {
        Ok(v.to_owned())
    } else {
        Err(format!("{v:?} is not a valid label value"))
    }
}

/// The value of `k>n` or `k<n`: a label value that is a (64-bit) integer.
fn integer(v: &str) -> Result<i64, String> {
    let v = value(v)?;
    v.parse().map_err(|_| format!("{v:?}: for 'gt', 'lt' operators, the value must be an integer"))
}

/// A label's value as the numeric operators read it; one that is not an integer matches
/// neither.
fn integer_label(value: Option<&str>) -> Option<i64> {
    value?.parse().ok()
}

/// `[prefix/]name`, the prefix a DNS subdomain.
fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => valid_subdomain(prefix) && valid_name(name),
        None => valid_name(key),
    }
}

/// At most 63 characters, alphanumeric at both ends, `-`, `_` and `.` between.
fn valid_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// At most 253 characters, dot-separated lowercase DNS labels.
fn valid_subdomain(s: &str) -> bool {
    let label = |l: &str| {
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        l.starts_with(alnum) && l.ends_with(alnum) && l.chars().all(|c| alnum(c) || c == '-')
    };
    s.len() <= 253 && s.split('.').all(label)
}

#[cfg(test)]
mod tests {
    use super::LabelSelector;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matches_as_the_api_server_does() {
        let frontend = labels(&[("app", "frontend"), ("tier", "web"), ("example.com/team", "shop"), ("replicas", "3")]);
        let cases: &[(&str, bool)] = &[
            ("", true),
            ("app=frontend", true),
            ("app==frontend", true),
            (" app = frontend ", true),
            ("app=cart", false),
            ("app!=cart", true),
            ("app!=frontend", false),
            ("missing!=x", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("! app", false),
            ("app in (cart,frontend)", true),
            ("app in(cart, frontend )", true),
            ("app in (cart)", false),
            ("missing in (x)", false),
            ("app notin (cart,redis)", true),
            ("app notin (frontend)", false),
            ("missing notin (x)", true),
            ("example.com/team=shop", true),
            ("app=frontend,tier=web", true),
            ("app=frontend,tier=db", false),
            ("tier!=control-plane,app in (frontend,cart),!missing", true),
            ("missing=", false),
            ("app in (frontend,)", true),
            ("replicas>2", true),
            ("replicas > 3", false),
            ("replicas<4", true),
            ("replicas<3", false),
            ("replicas>0012", false),
            ("app>1", false),
            ("missing<100", false),
        ];
        for (selector, want) in cases {
            let parsed: LabelSelector = selector.parse().unwrap_or_else(|e| panic!("{selector:?}: {e}"));
            assert_eq!(parsed.matches(&frontend), *want, "{selector:?}");
        }
        let unlabelled: LabelSelector = "tier=".parse().expect("empty value");
        assert!(!unlabelled.matches(&frontend) && unlabelled.matches(&labels(&[("tier", "")])));
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for bad in [
            "app in (",
            "app in ()",
            "app in (a",
            "app in a",
            "app in (a)(b)",
            "app)",
            "app in ((a))",
            "app=frontend,",
            ",app",
            "app notin",
            "app exists",
            "=frontend",
            "!",
            "!app=frontend",
            "-app=x",
            "app=-x",
            "app=a b",
            "Example.com/team=shop",
            "a/b/c=d",
            "replicas>",
            "replicas>x",
            "replicas>1.5",
            "replicas>-1",
            "replicas>99999999999999999999",
            "replicas<(1)",
        ] {
            let err = bad.parse::<LabelSelector>().expect_err(bad);
            assert_eq!(err.original, bad);
        }
    }
}
