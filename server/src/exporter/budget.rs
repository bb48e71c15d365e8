//! A scrape's time: the enrichers' deadline, which leaves the time writing will take, and
//! the reads', which leaves the enrichers theirs ([`WriteCost`]); the guard that holds each
//! enricher call to its deadline ([`Deadline`]); and a read abandoned at one ([`within`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use msp_core::{CheckFuture, EnrichFuture, Enricher, SourceError};

/// Bounds each enricher call by the scrape's deadline: a call begun after it fails
/// unrun. The memo's check is bounded by it too, but begun after it gets one poll.
pub(super) struct Deadline(pub(super) Option<Instant>);

/// The deadline may be Prometheus' (`X-Prometheus-Scrape-Timeout-Seconds`) or an embedder's.
const OUT_OF_TIME: &str = "out of time for this scrape (its deadline, less the time writing takes)";

impl msp_core::Guard for Deadline {
    fn guard<'a>(&'a self, _enricher: &'a dyn Enricher, call: EnrichFuture<'a>) -> EnrichFuture<'a> {
        let Some(deadline) = self.0 else { return call };
        Box::pin(async move {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // A timeout polls its future before its timer: a call that needs no wait
                // (a batch of a cold memo, its caches synced) would run to the end, and
                // a cold start of 150,000 pods ran seconds past the deadline that way.
                return Err(OUT_OF_TIME.into());
            }
            async_std::future::timeout(left, call).await.unwrap_or_else(|_| Err(OUT_OF_TIME.into()))
        })
    }

    /// The memo's check, even past the deadline, as far as it goes without waiting (one
    /// poll): the caches answer it at once, and the pods whose kept labels it serves need
    /// no enricher call, which past the deadline would fail.
    fn check<'a>(&'a self, check: CheckFuture<'a>) -> CheckFuture<'a> {
        let Some(deadline) = self.0 else { return check };
        Box::pin(async move {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                futures_lite::future::poll_once(check).await;
            } else {
                async_std::future::timeout(left, check).await.unwrap_or(());
            }
        })
    }
}

/// How long writing the exposition takes a pod, as the last scrape measured it (plain and
/// gzipped apart, gzip taking most of the time): the
/// enrichers' deadline is the scrape's less the time writing will take, so that an answer
/// cut short by it still arrives in time (at 150,000 pods writing takes most of a second).
/// With the pods the last scrape read.
#[derive(Default)]
pub(super) struct WriteCost(pub(super) [AtomicU64; 2], AtomicUsize);

/// What writing is assumed to take a pod before any scrape has measured it: about twice
/// what it takes at 150,000 pods on two busy cores.
const FIRST_WRITE_NS_PER_POD: u64 = 8_000;

/// The enrichers get this part (its inverse) of the time left before writing must begin,
/// however long the reads take: see [`WriteCost::reads_deadline`].
const ENRICHING_SHARE: u32 = 20;

/// Fewer pods than this say little of what writing a pod takes.
const MIN_MEASURED_PODS: usize = 100;

impl WriteCost {
    /// The enrichers' deadline within the scrape's `deadline`, for `pods` pods: half again
    /// the time writing them took last, or is assumed to take.
    pub(super) fn enrichers_deadline(&self, deadline: Option<Instant>, gzip: bool, pods: usize) -> Option<Instant> {
        let per_pod = self.per_pod(gzip);
        let reserve = Duration::from_nanos(per_pod.saturating_mul(pods as u64).saturating_mul(3) / 2);
        deadline.map(|d| d.checked_sub(reserve).unwrap_or_else(Instant::now))
    }

    /// Remembers what writing `pods` pods took; a scrape of fewer than [`MIN_MEASURED_PODS`]
    /// (its pods' read failed, say) measures the nodes and self-metrics more than the pods,
    /// and is not remembered.
    pub(super) fn record(&self, gzip: bool, pods: usize, took: Duration) {
        if pods < MIN_MEASURED_PODS {
            return;
        }
        let per_pod = u64::try_from(took.as_nanos() / pods as u128).unwrap_or(u64::MAX);
        self.0[usize::from(gzip)].store(per_pod.max(1), Ordering::Relaxed);
    }

    /// Remembers how many pods a scrape read (its pods' read having succeeded), whether or
    /// not its writing is measured: the next scrape's reads and joiners leave the time
    /// writing as many takes.
    pub(super) fn read(&self, pods: usize) {
        self.1.store(pods, Ordering::Relaxed);
    }

    /// Whether writing gzipped took longer a pod than writing text, as last measured (each
    /// as assumed before it is): which of the two a scrape that either may join reserves
    /// time for.
    pub(super) fn slower(&self) -> bool {
        self.per_pod(true) >= self.per_pod(false)
    }

    /// What writing a pod took last, gzipped or not, or is assumed to take.
    fn per_pod(&self, gzip: bool) -> u64 {
        match self.0[usize::from(gzip)].load(Ordering::Relaxed) {
            0 => FIRST_WRITE_NS_PER_POD,
            ns => ns,
        }
    }

    /// The time by which writing must begin to end within `deadline`, for as many pods as
    /// the last scrape read.
    pub(super) fn writing_deadline(&self, deadline: Option<Instant>, gzip: bool) -> Option<Instant> {
        self.enrichers_deadline(deadline, gzip, self.1.load(Ordering::Relaxed))
    }

    /// The time by which the metrics lists must have been read: the
    /// [`writing_deadline`](WriteCost::writing_deadline), less a twentieth of the time until
    /// it, for the enrichers. A read that hangs until it is abandoned then still leaves
    /// them time to enrich what the other read brought: with the pods' read hung, the node
    /// series keep their labels. (A read that ends later would have had its series served
    /// unenriched, under other label sets than the scrape before, or after the deadline.)
    pub(super) fn reads_deadline(&self, deadline: Option<Instant>, gzip: bool) -> Option<Instant> {
        let writing = self.writing_deadline(deadline, gzip)?;
        let now = Instant::now();
        let enriching = writing.saturating_duration_since(now) / ENRICHING_SHARE;
        Some(writing.checked_sub(enriching).unwrap_or(now).max(now))
    }
}

/// `read`, abandoned at `deadline`.
pub(super) async fn within(
    deadline: Option<Instant>,
    read: impl std::future::Future<Output = Result<Vec<u8>, SourceError>>,
) -> Result<Vec<u8>, SourceError> {
    // A source that panics (an embedder's) fails its read, as one that returns an error
    // does, on every path: `scrape` reads on its caller's task.
    use futures_lite::FutureExt;
    let read = async {
        std::panic::AssertUnwindSafe(read).catch_unwind().await.unwrap_or_else(|payload| {
            Err(format!("the metrics source panicked: {}", msp_core::panic_message(payload.as_ref())).into())
        })
    };
    let Some(deadline) = deadline else { return read.await };
    let left = deadline.saturating_duration_since(Instant::now());
    async_std::future::timeout(left, read)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within the scrape's deadline ({left:.1?} given)").into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use msp_core::{async_trait, EnrichError, NodeMetricsList, PodMetricsList, Scrape, StaticCluster};

    #[test]
    fn the_enrichers_deadline_leaves_time_to_write() {
        let cost = WriteCost::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let before = |gzip, pods| deadline - cost.enrichers_deadline(Some(deadline), gzip, pods).expect("a deadline");
        // Before any scrape: 8 µs a pod, half again.
        assert_eq!(before(true, 150_000), Duration::from_millis(1800));
        // A scrape whose pods' read failed wrote nodes and self-metrics only: not a measure.
        cost.record(true, 0, Duration::from_millis(3));
        cost.record(true, 99, Duration::from_millis(3));
        assert_eq!(before(true, 150_000), Duration::from_millis(1800));
        cost.record(true, 150_000, Duration::from_millis(600));
        assert_eq!(before(true, 150_000), Duration::from_millis(900), "what the last gzipped scrape took");
        assert_eq!(before(false, 150_000), Duration::from_millis(1800), "plain text is measured apart");
        assert_eq!(before(true, 10_000), Duration::from_millis(60));
        // The reads and joiners leave the time writing as many pods as the last scrape read
        // takes, measured or not: before any read, none.
        let joiner = cost.writing_deadline(Some(deadline), true).expect("a deadline");
        assert_eq!(joiner, deadline, "no pods read yet");
        cost.read(150_000);
        let joiner = cost.writing_deadline(Some(deadline), true).expect("a deadline");
        assert_eq!(deadline - joiner, Duration::from_millis(900), "a joiner waits no later than that, at 150,000 pods");
        // The reads end a twentieth of the 9.1 s before then earlier (less the time this took).
        let reads = cost.reads_deadline(Some(deadline), true).expect("a deadline");
        let enriching = joiner - reads;
        assert!(enriching > Duration::from_millis(400) && enriching <= Duration::from_millis(455), "{enriching:?}");
        assert!(cost.reads_deadline(None, true).is_none());
        assert!(reads < cost.enrichers_deadline(Some(deadline), true, 150_000).expect("a deadline"), "as many again");
        // More than there is: the enrichers get none, and no deadline stays none.
        assert!(cost.enrichers_deadline(Some(deadline), true, 100_000_000).is_some_and(|d| d <= Instant::now()));
        assert!(cost.enrichers_deadline(None, true, 150_000).is_none());
    }

    #[test]
    fn an_enricher_call_past_the_deadline_is_not_run() {
        struct Counting(std::sync::atomic::AtomicUsize);
        #[async_trait]
        impl Enricher for Counting {
            fn name(&self) -> &str {
                "counting"
            }
            fn labels(&self) -> Vec<msp_core::AddedLabel> {
                Vec::new()
            }
            async fn enrich(
                &self,
                scrape: &Scrape<'_>,
                _: &dyn msp_core::Cluster,
            ) -> Result<msp_core::Enrichment, EnrichError> {
                self.0.fetch_add(1, Ordering::Relaxed);
                Ok(msp_core::Enrichment::new(scrape))
            }
        }
        let counting = Counting(Default::default());
        let (pods, nodes) = (PodMetricsList::default(), NodeMetricsList::default());
        let scrape = Scrape::new(&pods, &nodes);
        let past = Deadline(Some(Instant::now() - Duration::from_millis(1)));
        let cluster = StaticCluster::default();
        let call = msp_core::Guard::guard(&past, &counting, counting.enrich(&scrape, &cluster));
        let got = async_std::task::block_on(call);
        assert!(got.is_err_and(|e| e.to_string().contains("out of time")));
        assert_eq!(counting.0.load(Ordering::Relaxed), 0, "it would have finished at once, but was not run");
    }

    #[test]
    fn the_memos_check_goes_as_far_as_it_can_by_the_deadline() {
        // Whether the check ran to its end.
        let checked = |deadline: Option<Instant>, waits: bool| {
            let ended = std::sync::atomic::AtomicBool::new(false);
            let check: CheckFuture<'_> = Box::pin(async {
                if waits {
                    std::future::pending::<()>().await;
                }
                ended.store(true, Ordering::SeqCst);
            });
            let guard = Deadline(deadline);
            let run = msp_core::Guard::check(&guard, check);
            async_std::task::block_on(async_std::future::timeout(Duration::from_secs(60), run)).expect("it ends");
            ended.load(Ordering::SeqCst)
        };
        let (past, soon) = (Instant::now() - Duration::from_millis(1), Instant::now() + Duration::from_millis(50));
        // Past the deadline, a check the caches answer at once is still made: it spares
        // every call its kept labels would.
        assert!(checked(Some(past), false));
        assert!(checked(Some(soon), false));
        assert!(checked(None, false));
        // One that would wait is cut short, by the deadline or at once past it.
        assert!(!checked(Some(past), true));
        assert!(!checked(Some(soon), true));
    }
}
