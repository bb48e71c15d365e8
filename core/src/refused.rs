//! A read a cluster refuses, and will refuse again at once if asked.

use std::error::Error;
use std::fmt;

use crate::cluster::SourceError;

/// A read a [`Cluster`](crate::Cluster) refuses, and will refuse again at once if asked:
/// what the [`Memo`](crate::Memo) may keep labels without. It says what its cause says.
///
/// A read can fail for now (a list still running, a timeout) or be refused until something
/// changes (a 403: a role without ReplicaSets; a cache whose every list fails). Enrichers
/// report either as their failure. Only for the second does keeping the labels enriched
/// without it pay: the memo then serves them while the read stays refused, rather than
/// enrich every pod again at every scrape, and asks at every scrape whether it still is (a
/// quick answer, by this type's promise). A `Cluster` says a read is refused by returning
/// this; any other error is a failure for now, and nothing enriched with it is kept. An
/// enricher passes it on (as its error, or as its error's source); one that returns it of
/// its own, for a source the memo cannot ask again, gets nothing kept either.
#[derive(Debug)]
pub struct ReadRefused(SourceError);

impl ReadRefused {
    /// `cause`, as a refused read.
    pub fn new(cause: impl Into<SourceError>) -> Self {
        ReadRefused(cause.into())
    }

    /// Whether `error`, or an error it was caused by, is a refused read: an enricher that
    /// wraps the error it was given (keeping it as its source) failed for the refusal.
    pub fn caused(error: &(dyn Error + 'static)) -> bool {
        std::iter::successors(Some(error), |&e| e.source()).any(|e| e.is::<ReadRefused>())
    }
}

impl fmt::Display for ReadRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for ReadRefused {
    /// The cause's own source: its text is this error's already.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(SourceError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "owners: {}", self.0)
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_refusal_is_found_under_the_errors_that_keep_it() {
        let refused = || -> SourceError { Box::new(ReadRefused::new("replicasets: HTTP 403")) };
        assert_eq!(refused().to_string(), "replicasets: HTTP 403");
        assert!(ReadRefused::caused(&*refused()));
        let wrapped = Wrapped(refused());
        assert_eq!(wrapped.to_string(), "owners: replicasets: HTTP 403");
        assert!(ReadRefused::caused(&wrapped));
        // Its text alone is no refusal, nor is another error.
        let retold: SourceError = refused().to_string().into();
        assert!(!ReadRefused::caused(&*retold));
        assert!(!ReadRefused::caused(&Wrapped("out of time".into())));
    }
}
