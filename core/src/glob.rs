//! Glob patterns (for label keys and namespaces), compiled once: `*` matches any run of
//! characters, `?` any one. A [`Filter`] is the allow/deny pair both the namespace scope
//! and the `labels` enricher use.

use std::fmt;

/// A glob pattern, split into characters once so matching allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: Box<str>,
    chars: Box<[char]>,
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("empty pattern {0:?}")]
pub struct GlobError(pub String);

impl std::str::FromStr for Glob {
    type Err = GlobError;

    fn from_str(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError(pattern.into()));
        }
        Ok(Glob { source: pattern.into(), chars: pattern.chars().collect() })
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Glob {
    /// Whether `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        let p = &self.chars;
        if p.len() == 1 && p[0] == '*' {
            return true;
        }
        let (mut pi, mut ti) = (0, 0);
        // (pattern index after the last `*`, text byte index it was tried at)
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = text[ti..].chars().next() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == c) {
                pi += 1;
                ti += c.len_utf8();
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                let skipped = text[st..].chars().next().map_or(1, char::len_utf8);
                pi = sp + 1;
                ti = st + skipped;
                star = Some((sp, ti));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }

    /// Whether this is `*`, which matches everything.
    pub fn is_any(&self) -> bool {
        &*self.source == "*"
    }

    /// Whether everything `other` matches, this matches too (`shop*` covers `shop-*`). Read
    /// `other` as text whose `?` is one character and whose `*` is any run: this covers it
    /// if it matches that text with its own `*` taking in `other`'s wildcards and its `?`
    /// taking an `other`'s `?`. That never says yes wrongly; it can say no to a pair that
    /// matches the same names written differently (`a*?` does cover `a?*`).
    pub fn covers(&self, other: &Glob) -> bool {
        let (p, t) = (&self.chars, &other.chars);
        // covered[j]: whether p[i..] covers t[j..], for the row i being filled.
        let mut covered = vec![false; t.len() + 1];
        covered[t.len()] = true;
        for &c in p.iter().rev() {
            let mut row = vec![false; t.len() + 1];
            for j in (0..=t.len()).rev() {
                row[j] = match c {
                    '*' => covered[j] || (j < t.len() && row[j + 1]),
                    '?' => j < t.len() && t[j] != '*' && covered[j + 1],
                    _ => j < t.len() && t[j] == c && covered[j + 1],
                };
            }
            covered = row;
        }
        covered[0]
    }
}

/// Keep what matches some `allow` pattern and no `deny` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    allow: Vec<Glob>,
    deny: Vec<Glob>,
}

impl Default for Filter {
    /// Keeps everything.
    fn default() -> Self {
        Filter { allow: vec![Glob { source: "*".into(), chars: Box::new(['*']) }], deny: Vec::new() }
    }
}

impl Filter {
    /// Compiles both lists; an empty pattern is an error.
    pub fn new<S: AsRef<str>>(allow: &[S], deny: &[S]) -> Result<Self, GlobError> {
        let compile = |list: &[S]| list.iter().map(|p| p.as_ref().parse()).collect::<Result<Vec<Glob>, _>>();
        Ok(Filter { allow: compile(allow)?, deny: compile(deny)? })
    }

    /// Whether `text` is kept.
    pub fn keeps(&self, text: &str) -> bool {
        self.allow.iter().any(|g| g.matches(text)) && !self.deny.iter().any(|g| g.matches(text))
    }

    /// The `allow` patterns that can keep nothing, `deny` coming after: those a `deny`
    /// pattern [covers](Glob::covers) (`shop-*` when `deny` has `shop*`, a name it matches,
    /// any when it has `*`). A configuration's likely mistake, to warn of.
    pub fn denied_whole(&self) -> Vec<&str> {
        let denies = |a: &Glob| self.deny.iter().any(|d| d.covers(a));
        self.allow.iter().filter(|a| denies(a)).map(|a| &*a.source).collect()
    }

    /// Whether it keeps everything without looking (`allow = ["*"]`, no `deny`).
    pub fn keeps_all(&self) -> bool {
        self.deny.is_empty() && self.allow.iter().any(Glob::is_any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_table() {
        let table = [
            ("*", "anything", true),
            ("*", "", true),
            ("app.kubernetes.io/*", "app.kubernetes.io/name", true),
            ("app.kubernetes.io/*", "app", false),
            ("*-hash", "pod-template-hash", true),
            ("*-hash", "pod-template-hash-x", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("*é", "café", true),
            ("*uid*", "batch.kubernetes.io/controller-uid", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**", "", true),
        ];
        for (p, t, want) in table {
            let glob: Glob = p.parse().expect("pattern");
            assert_eq!(glob.matches(t), want, "{p} ~ {t}");
        }
        assert_eq!("".parse::<Glob>(), Err(GlobError(String::new())));
    }

    #[test]
    fn filter_allows_then_denies() {
        let f = Filter::new(&["kube-*", "shop"], &["kube-public"]).expect("filter");
        assert!(f.keeps("kube-system") && f.keeps("shop"));
        assert!(!f.keeps("kube-public") && !f.keeps("other"));
        assert!(!f.keeps_all());
        assert!(Filter::default().keeps_all() && Filter::default().keeps("x"));
        assert!(Filter::new(&["*"], &[]).expect("filter").keeps_all());
        assert!(Filter::new(&["a", ""], &[]).is_err());
    }

    #[test]
    fn allow_patterns_that_deny_undoes_are_found() {
        let f = Filter::new(&["shop", "kube-*", "web"], &["shop", "kube-public"]).expect("filter");
        assert_eq!(f.denied_whole(), ["shop"]);
        let f = Filter::new(&["kube-system", "kube-*", "web"], &["kube-*"]).expect("filter");
        assert_eq!(f.denied_whole(), ["kube-system", "kube-*"]);
        let f = Filter::new(&["shop", "kube-*"], &["*"]).expect("filter");
        assert_eq!(f.denied_whole(), ["shop", "kube-*"]);
        assert!(Filter::default().denied_whole().is_empty());
        let f = Filter::new(&["shop-*", "shop", "web-?", "team-*-prod", "kube-*"], &["shop*", "web-*", "team-*"]);
        assert_eq!(f.expect("filter").denied_whole(), ["shop-*", "shop", "web-?", "team-*-prod"]);
    }

    #[test]
    fn a_pattern_covers_what_it_matches_all_of() {
        let glob = |s: &str| s.parse::<Glob>().expect("glob");
        let table = [
            ("*", "anything-*?", true),
            ("shop*", "shop-*", true),
            ("shop*", "shop", true),
            ("shop*", "sho*", false),
            ("shop-*", "shop*", false),
            ("*-prod", "team-*-prod", true),
            ("*-prod", "team-*", false),
            ("a?c", "a?c", true),
            ("a?c", "abc", true),
            ("a?c", "a*c", false),
            ("abc", "a?c", false),
            ("*?", "*", false),
            // Both match one character or more, written differently: the no the docs own to.
            ("*?", "?*", false),
            ("?*", "*?", false),
            ("?*", "?*", true),
            ("a*b*c", "a-b-*-c", true),
            ("a*b*c", "a*c", false),
            ("café*", "café-?", true),
        ];
        for (p, other, want) in table {
            assert_eq!(glob(p).covers(&glob(other)), want, "{p:?} covers {other:?}");
            if !other.contains(['*', '?']) {
                assert_eq!(glob(p).matches(other), want, "a name is covered where it is matched: {p:?} {other:?}");
            }
        }
    }
}
