//! Impersonation (a kubeconfig user's `as`, `as-uid`, `as-groups`): every request says,
//! in `Impersonate-*` headers, whom the API server is to treat it as, as client-go's do.
//! The credentials' user needs the `impersonate` verb on those users and groups.

use std::fmt;

use http_types::headers::{HeaderName, HeaderValue};

/// Whom requests act as, from a kubeconfig user; empty: the credentials' own user.
#[derive(Clone, Default)]
pub struct Impersonation {
    user: Option<String>,
    groups: Vec<String>,
    /// The headers, ready to send.
    headers: Vec<(HeaderName, Vec<HeaderValue>)>,
}

/// Why a kubeconfig's impersonation cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// Groups or a UID, without a user to act as (the API server refuses them alone).
    #[error("{what} without `as`: impersonation needs a user to act as")]
    NoUser {
        /// `as-groups` or `as-uid`.
        what: &'static str,
    },
    /// A value that cannot be sent in a header.
    #[error("{what}: {problem} (at byte {at})")]
    NotAHeader {
        /// `as`, `as-uid` or `as-groups`.
        what: &'static str,
        /// What is wrong with it.
        problem: &'static str,
        /// Where.
        at: usize,
    },
}

impl Impersonation {
    /// Impersonation of `user` (`as`), with `uid` (`as-uid`) and `groups` (`as-groups`);
    /// empty strings are as good as absent, as client-go reads them.
    pub fn new(
        user: Option<String>,
        uid: Option<String>,
        groups: Vec<String>,
    ) -> Result<Impersonation, ImpersonationError> {
        let user = user.filter(|u| !u.is_empty());
        let uid = uid.filter(|u| !u.is_empty());
        if user.is_none() {
            if !groups.is_empty() {
                return Err(ImpersonationError::NoUser { what: "as-groups" });
            }
            if uid.is_some() {
                return Err(ImpersonationError::NoUser { what: "as-uid" });
            }
        }
        let mut headers = Vec::new();
        let fields = [
            ("as", "Impersonate-User", user.as_slice()),
            ("as-uid", "Impersonate-Uid", uid.as_slice()),
            ("as-groups", "Impersonate-Group", groups.as_slice()),
        ];
        for (what, name, values) in fields {
            let values = values.iter().map(|v| header_value(what, v)).collect::<Result<Vec<_>, _>>()?;
            if !values.is_empty() {
                headers.push((HeaderName::from(name), values));
            }
        }
        Ok(Impersonation { user, groups, headers })
    }

    /// The headers each request carries: `Impersonate-User`, `Impersonate-Uid`, and
    /// `Impersonate-Group` once a group.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &[HeaderValue])> {
        self.headers.iter().map(|(name, values)| (name, values.as_slice()))
    }
}

/// `value` as a header's, refusing what a header cannot carry: control characters (a line
/// break would end it), other than ASCII, and space at either end (which HTTP strips).
fn header_value(what: &'static str, value: &str) -> Result<HeaderValue, ImpersonationError> {
    let not = |problem, at| Err(ImpersonationError::NotAHeader { what, problem, at });
    if let Some(at) = value.bytes().position(|b| b.is_ascii_control()) {
        return not("a control character", at);
    }
    if let Some(at) = value.bytes().position(|b| !b.is_ascii()) {
        return not("not ASCII", at);
    }
    if value.starts_with([' ', '\t']) {
        return not("space at its start", 0);
    }
    if value.ends_with([' ', '\t']) {
        return not("space at its end", value.len() - 1);
    }
    HeaderValue::from_bytes(value.as_bytes().to_vec()).or_else(|_| not("not a header value", 0))
}

impl fmt::Debug for Impersonation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impersonation").field("user", &self.user).field("groups", &self.groups).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_its_uid_and_groups_become_headers() {
        let who = Impersonation::new(Some("limited".into()), Some("42".into()), vec!["a".into(), "b".into()])
            .expect("impersonation");
        let headers: Vec<(String, Vec<String>)> = who
            .headers()
            .map(|(n, v)| (n.as_str().to_owned(), v.iter().map(|v| v.as_str().to_owned()).collect()))
            .collect();
        let want = |n: &str, v: &[&str]| (n.to_lowercase(), v.iter().map(|v| v.to_string()).collect::<Vec<_>>());
        assert_eq!(
            headers,
            [
                want("Impersonate-User", &["limited"]),
                want("Impersonate-Uid", &["42"]),
                want("Impersonate-Group", &["a", "b"])
            ]
        );
        let nobody = Impersonation::new(Some(String::new()), None, vec![]).expect("none");
        assert!(nobody.user.is_none() && nobody.headers().next().is_none(), "an empty `as` is none");
    }

    #[test]
    fn groups_or_a_uid_alone_and_values_a_header_cannot_carry_are_refused() {
        let err = |user: Option<&str>, uid: Option<&str>, groups: &[&str]| {
            Impersonation::new(
                user.map(Into::into),
                uid.map(Into::into),
                groups.iter().map(|g| g.to_string()).collect(),
            )
            .expect_err("refused")
            .to_string()
        };
        assert_eq!(err(None, None, &["g"]), "as-groups without `as`: impersonation needs a user to act as");
        assert_eq!(err(None, Some("1"), &[]), "as-uid without `as`: impersonation needs a user to act as");
        assert_eq!(err(Some("a\r\nX-Evil: 1"), None, &[]), "as: a control character (at byte 1)");
        assert_eq!(err(Some("u"), None, &["ok", " g"]), "as-groups: space at its start (at byte 0)");
        assert_eq!(err(Some("josé"), None, &[]), "as: not ASCII (at byte 3)");
    }
}
