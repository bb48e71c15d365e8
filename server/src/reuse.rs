//! Reusing the metrics lists a scrape read, for the scrapes that begin soon after it.
//!
//! The two Prometheus servers of an HA pair scrape at offsets of their own, so their
//! requests rarely arrive together, and each read both lists anew: the API server (and
//! metrics-server behind it) answered twice an interval, at 150,000 pods 61-92 MB each
//! time, though metrics-server's own figures change only once a resolution (15 s in its
//! published manifests). With `reuse_lists_for` set, a scrape that begins less than that
//! after the last read began serves that read's lists, parsed and enriched afresh, and
//! reads nothing; one that begins later reads both anew. The age is always counted from
//! the read: a scrape served kept lists never makes them last longer.
//!
//! Only a read of both lists that succeeded, and that read as lists, is kept, and only the
//! newest: a failed read is tried again by the next scrape. The lists are shared, not
//! copied, so a scrape served from them adds nothing to the peak. While lists are kept,
//! they are what the next read is read into, once too old (handed back to the source as a
//! scrape's own lists are, or by the last scrape to let go of them); other bodies let go
//! meanwhile are freed, not held idle beside them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msp_core::{MetricsSource, SourceError};

/// A metrics list's body, shared by the scrapes that read it.
pub(crate) type Body = Arc<Vec<u8>>;

/// Both metrics lists, as a scrape has them.
pub(crate) struct Lists {
    pub(crate) pods: Result<Body, SourceError>,
    pub(crate) nodes: Result<Body, SourceError>,
    /// When the scrape began.
    pub(crate) started: Instant,
    /// When the read of lists reused by this scrape began; `None`: it read them itself.
    pub(crate) reused_from: Option<Instant>,
}

impl Lists {
    /// How long before the scrape began its lists were read (zero for a read of its own).
    pub(crate) fn age(&self) -> Duration {
        self.reused_from.map_or(Duration::ZERO, |read| self.started.saturating_duration_since(read))
    }
}

/// The last lists read, and for how long scrapes may reuse them.
#[derive(Debug, Default)]
pub(crate) struct Reuse {
    /// Zero: every scrape reads.
    window: Duration,
    kept: Mutex<Option<Kept>>,
}

/// A read of both lists that succeeded, begun at `read`.
#[derive(Debug)]
struct Kept {
    read: Instant,
    pods: Body,
    nodes: Body,
}

impl Reuse {
    /// Lists read less than `window` ago are reused (none if zero).
    pub(crate) fn new(window: Duration) -> Self {
        Reuse { window, kept: Mutex::default() }
    }

    /// The lists kept, for a scrape beginning at `now`, if their read began less than the
    /// window before. Lists kept longer are let go: handed back to `source` if no scrape
    /// holds them, to read the next ones into.
    pub(crate) fn get(&self, source: &dyn MetricsSource, now: Instant) -> Option<Lists> {
        if self.window.is_zero() {
            return None;
        }
        let old = {
            let mut kept = self.lock();
            match kept.as_ref() {
                Some(k) if now.saturating_duration_since(k.read) < self.window => {
                    let (pods, nodes) = (Ok(k.pods.clone()), Ok(k.nodes.clone()));
                    return Some(Lists { pods, nodes, started: now, reused_from: Some(k.read) });
                }
                _ => kept.take(),
            }
        };
        if let Some(Kept { pods, nodes, .. }) = old {
            self.recycle(source, Some(pods), Some(nodes));
        }
        None
    }

    /// Keeps `pods` and `nodes`, whose read began at `read` and which read as lists, for the
    /// scrapes that begin within the window, unless lists read later are kept.
    pub(crate) fn keep(&self, source: &dyn MetricsSource, pods: &Body, nodes: &Body, read: Instant) {
        if self.window.is_zero() {
            return;
        }
        let replaced = {
            let mut kept = self.lock();
            if kept.as_ref().is_some_and(|k| k.read > read) {
                return;
            }
            kept.replace(Kept { read, pods: pods.clone(), nodes: nodes.clone() })
        };
        if let Some(Kept { pods, nodes, .. }) = replaced {
            self.recycle(source, Some(pods), Some(nodes));
        }
    }

    /// Lets go of a scrape's bodies: those no one else holds go back to `source`, for its
    /// next reads, unless lists are kept (which the next read is read into), and are freed.
    pub(crate) fn recycle(&self, source: &dyn MetricsSource, pods: Option<Body>, nodes: Option<Body>) {
        // Exactly one of those letting go of a body at once gets it back.
        let (pods, nodes) = (pods.and_then(Arc::into_inner), nodes.and_then(Arc::into_inner));
        if (pods.is_none() && nodes.is_none()) || (!self.window.is_zero() && self.lock().is_some()) {
            return;
        }
        source.recycle(pods, nodes);
    }

    /// How long lists read are reused (zero: never).
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::async_trait;

    /// Keeps what it was given back.
    #[derive(Default)]
    struct Recycling(Mutex<Vec<Vec<u8>>>);

    impl Recycling {
        fn given_back(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl MetricsSource for Recycling {
        async fn pod_metrics(&self, _: Option<&str>) -> Result<Vec<u8>, SourceError> {
            Err("unused".into())
        }
        async fn node_metrics(&self) -> Result<Vec<u8>, SourceError> {
            Err("unused".into())
        }
        fn describe(&self) -> String {
            "recycling".into()
        }
        fn recycle(&self, pods: Option<Vec<u8>>, nodes: Option<Vec<u8>>) {
            self.0.lock().unwrap().extend(pods.into_iter().chain(nodes));
        }
    }

    fn body(text: &str) -> Body {
        Arc::new(text.as_bytes().to_vec())
    }

    /// Lists read at `read`, which `reuse` keeps.
    fn read_and_kept(reuse: &Reuse, source: &Recycling, read: Instant, pods: &str) -> (Body, Body) {
        let (pods, nodes) = (body(pods), body("nodes"));
        reuse.keep(source, &pods, &nodes, read);
        (pods, nodes)
    }

    #[test]
    fn lists_read_within_the_window_are_shared_and_handed_back_by_the_last_to_let_go() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        let (pods, nodes) = read_and_kept(&reuse, &source, t0, "pods");
        let reused = reuse.get(&source, t0 + Duration::from_secs(14)).expect("read 14 s ago: reused");
        assert!(Arc::ptr_eq(&pods, reused.pods.as_ref().expect("read")), "shared, not copied");
        assert_eq!(reused.age(), Duration::from_secs(14));

        // Too old: let go, but two scrapes still hold them.
        assert!(reuse.get(&source, t0 + Duration::from_secs(15)).is_none());
        reuse.recycle(&source, Some(pods), Some(nodes));
        assert!(source.given_back().is_empty());
        // The last to let go hands them back.
        reuse.recycle(&source, reused.pods.ok(), reused.nodes.ok());
        assert_eq!(source.given_back(), [b"pods".to_vec(), b"nodes".to_vec()]);
    }

    #[test]
    fn lists_too_old_that_no_scrape_holds_go_back_to_the_source_at_once() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        drop(read_and_kept(&reuse, &source, t0, "pods"));
        assert!(reuse.get(&source, t0 + Duration::from_secs(20)).is_none());
        assert_eq!(source.given_back().len(), 2, "both, to read the next ones into");
    }

    #[test]
    fn while_lists_are_kept_other_bodies_let_go_are_freed_not_held_beside_them() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        let (pods, nodes) = read_and_kept(&reuse, &source, t0, "older");
        let older = [Arc::downgrade(&pods), Arc::downgrade(&nodes)];
        drop((pods, nodes));
        // Replaced by a newer read: no scrape holds the older lists, and they are freed.
        let _newer = read_and_kept(&reuse, &source, t0 + Duration::from_secs(1), "newer");
        let failed = body("a failed scrape's");
        let let_go = Arc::downgrade(&failed);
        reuse.recycle(&source, Some(failed), None);
        assert!(source.given_back().is_empty());
        assert!(older.iter().chain([&let_go]).all(|body| body.upgrade().is_none()), "freed");
    }

    #[test]
    fn lists_read_earlier_are_not_kept_over_lists_read_later() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        let _newer = read_and_kept(&reuse, &source, t0 + Duration::from_secs(2), "newer");
        let _older = read_and_kept(&reuse, &source, t0 + Duration::from_secs(1), "older, read slower");
        let got = reuse.get(&source, t0 + Duration::from_secs(3)).expect("kept");
        assert_eq!(got.age(), Duration::from_secs(1));
        assert_eq!(got.pods.expect("read").as_slice(), b"newer");
    }

    #[test]
    fn with_no_window_nothing_is_kept_and_every_body_goes_back() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::ZERO), Instant::now());
        let (pods, nodes) = read_and_kept(&reuse, &source, t0, "pods");
        assert!(reuse.get(&source, t0).is_none());
        reuse.recycle(&source, Some(pods), Some(nodes));
        assert_eq!(source.given_back().len(), 2);
    }
}
