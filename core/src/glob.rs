//! Glob patterns (for label keys and namespaces): `*` matches any run of characters, `?`
//! any one.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

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
            ("*uid*", "batch.kubernetes.io/controller-uid", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ];
        for (p, t, want) in table {
            assert_eq!(matches(p, t), want, "{p} ~ {t}");
        }
    }
}
