//! Reusing the metrics lists a scrape read, for the scrapes that begin soon after it.
//!
//! The two Prometheus servers of an HA pair scrape at offsets of their own, so their
//! requests rarely arrive together, and each read both lists anew: the API server (and
//! metrics-server behind it) answered twice an interval, at 150,000 pods 85 MB each time,
//! though metrics-server's own figures change only once a resolution (15 s in its
//! published manifests). With `reuse_lists_for` set, a scrape that begins less than that
//! after the last read began serves that read's lists, parsed and enriched afresh, and
//! reads nothing; one that begins later reads both anew.
//!
//! Only a read of both lists that succeeded, and that read as lists, is kept, and only the
//! newest: a failed read is tried again by the next scrape. The lists are
//! shared, not copied, so a scrape served from them adds nothing to the peak; once too old,
//! they are handed back to the source to read the next ones into, as a scrape's own lists
//! are, unless a scrape still holds them (the last to let go hands them back then).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msp_core::{MetricsSource, SourceError};

/// A metrics list's body, shared by the scrapes that read it.
pub(crate) type Body = Arc<Vec<u8>>;

/// Both metrics lists, as read for a scrape, and when the scrape's reading began.
pub(crate) struct Lists {
    pub(crate) pods: Result<Body, SourceError>,
    pub(crate) nodes: Result<Body, SourceError>,
    pub(crate) started: Instant,
    /// Read for this scrape, not reused.
    pub(crate) fresh: bool,
}

/// The last lists read, and for how long a scrape may reuse them; and how many have.
#[derive(Debug, Default)]
pub(crate) struct Reuse {
    /// In nanoseconds; zero: every scrape reads.
    window: AtomicU64,
    kept: Mutex<Option<Kept>>,
    reused: AtomicU64,
}

/// A read of both lists that succeeded, begun at `read`.
#[derive(Debug)]
struct Kept {
    read: Instant,
    pods: Body,
    nodes: Body,
}

impl Reuse {
    /// Lists read less than `window` ago are reused.
    #[cfg(test)]
    fn new(window: Duration) -> Self {
        let reuse = Reuse::default();
        reuse.set_window(window);
        reuse
    }

    /// From now, lists read less than `window` ago are reused (none if zero).
    pub(crate) fn set_window(&self, window: Duration) {
        self.window.store(u64::try_from(window.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn window(&self) -> Duration {
        Duration::from_nanos(self.window.load(Ordering::Relaxed))
    }

    /// The lists kept, for a scrape beginning at `now`, if they were read less than the
    /// window before. Lists kept longer are let go: handed back to `source` if no scrape
    /// holds them, to read the next ones into.
    pub(crate) fn get(&self, source: &dyn MetricsSource, now: Instant) -> Option<Lists> {
        let window = self.window();
        if window.is_zero() {
            return None;
        }
        let mut kept = self.lock();
        match kept.as_ref() {
            Some(k) if now.saturating_duration_since(k.read) < window => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                Some(Lists { pods: Ok(k.pods.clone()), nodes: Ok(k.nodes.clone()), started: now, fresh: false })
            }
            Some(_) => {
                let old = kept.take();
                drop(kept);
                if let Some(Kept { pods, nodes, .. }) = old {
                    recycle(source, Some(pods), Some(nodes));
                }
                None
            }
            None => None,
        }
    }

    /// Keeps `pods` and `nodes`, whose read began at `read` and which read as lists, for the
    /// scrapes that begin within the window, unless lists read later are kept.
    pub(crate) fn keep(&self, pods: &Body, nodes: &Body, read: Instant) {
        if self.window().is_zero() {
            return;
        }
        let mut kept = self.lock();
        if kept.as_ref().is_some_and(|k| k.read > read) {
            return;
        }
        // The lists it replaces, if any, are let go by the scrape that still holds them.
        *kept = Some(Kept { read, pods: pods.clone(), nodes: nodes.clone() });
    }

    /// How many scrapes were served lists an earlier scrape read.
    #[cfg(test)]
    fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl crate::self_metrics::Report for Reuse {
    /// `kube_metrics_server_lists_reused_total`.
    fn write_metrics(&self, w: &mut msp_core::Writer<'_>) -> Result<(), msp_core::ExpositionError> {
        const REUSED: msp_core::MetricName =
            msp_core::MetricName::from_static("kube_metrics_server_lists_reused_total");
        let help =
            "Scrapes served the metrics lists an earlier scrape read, less than reuse_lists_for before, reading none.";
        w.family(&REUSED, help, msp_core::MetricType::Counter)?.sample([], self.reused.load(Ordering::Relaxed) as f64);
        Ok(())
    }
}

/// Hands the bodies back to `source`, for its next reads, those no one else holds.
pub(crate) fn recycle(source: &dyn MetricsSource, pods: Option<Body>, nodes: Option<Body>) {
    let only = |body: Option<Body>| body.and_then(|b| Arc::try_unwrap(b).ok());
    source.recycle(only(pods), only(nodes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::async_trait;

    /// Counts what it was given back.
    #[derive(Default)]
    struct Recycling(Mutex<Vec<Vec<u8>>>);

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

    fn read_at(started: Instant, pods: &[u8]) -> Lists {
        Lists { pods: Ok(Arc::new(pods.to_vec())), nodes: Ok(Arc::new(b"nodes".to_vec())), started, fresh: true }
    }

    fn keep(reuse: &Reuse, lists: &Lists) {
        if let (Ok(pods), Ok(nodes)) = (&lists.pods, &lists.nodes) {
            reuse.keep(pods, nodes, lists.started);
        }
    }

    #[test]
    fn lists_read_within_the_window_are_shared_and_later_handed_back_once_let_go() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        let first = read_at(t0, b"pods");
        keep(&reuse, &first);
        let second = reuse.get(&source, t0 + Duration::from_secs(14)).expect("read 14 s ago: reused");
        let (Ok(a), Ok(b)) = (&first.pods, &second.pods) else { panic!("both read") };
        assert!(Arc::ptr_eq(a, b), "shared, not copied");
        assert_eq!(reuse.reused(), 1);

        // Too old: let go, but the first scrape still holds its lists.
        assert!(reuse.get(&source, t0 + Duration::from_secs(15)).is_none());
        assert!(source.0.lock().unwrap().is_empty());
        drop(second);
        // The last to let go hands them back.
        recycle(&source, first.pods.ok(), first.nodes.ok());
        assert_eq!(*source.0.lock().unwrap(), [b"pods".to_vec(), b"nodes".to_vec()]);
        assert_eq!(reuse.reused(), 1);
    }

    #[test]
    fn lists_too_old_that_no_scrape_holds_go_back_to_the_source_at_once() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        let read = read_at(t0, b"pods");
        keep(&reuse, &read);
        drop(read);
        assert!(reuse.get(&source, t0 + Duration::from_secs(20)).is_none());
        assert_eq!(source.0.lock().unwrap().len(), 2, "both, to read the next ones into");
    }

    #[test]
    fn lists_read_earlier_are_not_kept_over_lists_read_later() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::from_secs(15)), Instant::now());
        keep(&reuse, &read_at(t0 + Duration::from_secs(2), b"newer"));
        keep(&reuse, &read_at(t0 + Duration::from_secs(1), b"older, read slower"));
        let got = reuse.get(&source, t0 + Duration::from_secs(3)).expect("kept");
        assert_eq!(got.pods.unwrap().as_slice(), b"newer");
    }

    #[test]
    fn with_no_window_nothing_is_kept() {
        let (source, reuse, t0) = (Recycling::default(), Reuse::new(Duration::ZERO), Instant::now());
        keep(&reuse, &read_at(t0, b"pods"));
        assert!(reuse.get(&source, t0).is_none());
        assert_eq!(reuse.reused(), 0);
    }
}
