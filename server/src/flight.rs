//! Concurrent scrapes share one: a request that arrives while a scrape for the same
//! format and encoding is in flight waits for its body instead of starting its own, but
//! never past its own deadline, and only if that scrape gives upstream about as long as
//! the request would (see [`covers`]): a client asking for a tiny scrape timeout must not
//! hand its cut-short answer (`up` 0) to Prometheus. Bodies are reference-counted, and the
//! buffer of the last one dropped is kept for the next scrape.
//!
//! At most [`MAX_BODIES`] distinct bodies are held at once. Normally one is (each scrape's
//! body is dropped once sent); clients that request and never read would each pin one, so
//! when a new body would exceed the bound, the oldest is evicted: its writers abandon it
//! (see `http1.rs`) and its memory is freed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use msp_core::Format;

/// What a response body is: its format, and whether it is gzipped.
pub type Flavour = (Format, bool);

/// The most distinct response bodies held at once.
pub const MAX_BODIES: usize = 4;

/// One spare response buffer, and the bodies alive. A large exposition (200 MB at 100,000
/// pods) reuses memory already mapped instead of faulting in fresh pages on every scrape.
#[derive(Debug, Default)]
pub(crate) struct Spare(Mutex<Option<Vec<u8>>>, Mutex<VecDeque<Weak<AtomicBool>>>);

impl Spare {
    /// A new body's eviction flag; evicts the oldest bodies beyond [`MAX_BODIES`].
    fn register(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut live = self.1.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        live.push_back(Arc::downgrade(&flag));
        while live.len() > MAX_BODIES {
            if let Some(oldest) = live.pop_front().and_then(|w| w.upgrade()) {
                log::warn!(
                    "more than {MAX_BODIES} response bodies held by clients that do not read: evicting the oldest"
                );
                oldest.store(true, Ordering::Relaxed);
            }
        }
        flag
    }

    /// An empty buffer, with the capacity of the last one given back.
    pub(crate) fn take(&self) -> String {
        let mut buf = self.0.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_default();
        buf.clear();
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Keeps `buf` for the next scrape, unless the one kept is larger.
    pub(crate) fn put(&self, buf: Vec<u8>) {
        let mut spare = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if spare.as_ref().is_none_or(|s| s.capacity() < buf.capacity()) {
            *spare = Some(buf);
        }
    }
}

/// A response body: one scrape's bytes, in the format and encoding asked for. When the last
/// holder drops it, its buffer goes back to the exporter for the next scrape.
#[derive(Debug)]
pub struct Exposition {
    bytes: Vec<u8>,
    spare: Arc<Spare>,
    evicted: Arc<AtomicBool>,
}

impl Exposition {
    pub(crate) fn new(bytes: Vec<u8>, spare: Arc<Spare>) -> Self {
        let evicted = spare.register();
        Exposition { bytes, spare, evicted }
    }

    /// Set once this body is evicted: whoever is still writing it should stop.
    pub fn evicted(&self) -> Arc<AtomicBool> {
        self.evicted.clone()
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl AsRef<[u8]> for Exposition {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Exposition {
    fn drop(&mut self) {
        self.spare.put(std::mem::take(&mut self.bytes));
    }
}

/// A scrape in progress that later arrivals wait for instead of starting their own.
#[derive(Default)]
struct Flight {
    result: async_std::sync::Mutex<Option<Arc<Exposition>>>,
    /// How long its leader gave upstream, from when it started; `None`: no deadline.
    budget: Option<Duration>,
    /// Whether it took the board's place from a flight that did not cover its leader: a
    /// flight that did is joined by every caller, covered or not (each keeping its own
    /// deadline), so that at most two scrapes of a flavour run at once, whatever deadlines
    /// a client sends.
    replacement: bool,
}

/// Whether a scrape whose leader gave upstream `leader` serves a caller that would give
/// it `mine`: a deadline covers one at most a tenth longer (an HA pair of Prometheus
/// servers with one scrape timeout share, however far apart they arrive); no deadline
/// covers only no deadline (its answer may come after any deadline, where the caller's
/// own scrape would have answered in time), and a deadline never covers none.
fn covers(leader: Option<Duration>, mine: Option<Duration>) -> bool {
    match (leader, mine) {
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(leader), Some(mine)) => leader >= mine.mul_f64(0.9),
    }
}

/// The scrapes in flight, by flavour.
#[derive(Default)]
pub(crate) struct Flights(Mutex<HashMap<Flavour, Arc<Flight>>>);

/// Takes a finished (or abandoned) flight off the board, unless a later one with a
/// longer budget has taken its place there.
struct FlightGuard<'a> {
    flights: &'a Flights,
    flavour: Flavour,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.flights.0.lock() {
            if f.get(&self.flavour).is_some_and(|on_board| Arc::ptr_eq(on_board, &self.flight)) {
                f.remove(&self.flavour);
            }
        }
    }
}

/// How a shared scrape went for one caller.
pub(crate) enum Shared {
    /// The body: this caller's own scrape, or the one it joined.
    Body(Arc<Exposition>),
    /// The caller's deadline passed while it waited for a scrape it joined.
    TimedOut,
}

impl Flights {
    /// `scrape()`'s body for `flavour`, shared with every caller that arrives while it runs
    /// and that it [`covers`]. A caller that joins waits at most until its own `deadline`;
    /// one it does not cover starts its own scrape, which later callers join instead.
    pub(crate) async fn share<F: Future<Output = Exposition>>(
        &self,
        flavour: Flavour,
        deadline: Option<Instant>,
        scrape: impl Fn() -> F,
    ) -> Shared {
        let budget = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let (flight, leader) = {
            let mut board = self.0.lock().unwrap_or_else(|p| p.into_inner());
            match board.get(&flavour) {
                Some(f) if f.replacement || covers(f.budget, budget) => (f.clone(), false),
                on_board => {
                    let replacement = on_board.is_some();
                    let f = Arc::new(Flight { result: Default::default(), budget, replacement });
                    board.insert(flavour, f.clone());
                    (f, true)
                }
            }
        };
        if leader {
            // Made before the slot is tried: whatever happens, the flight leaves the board.
            let _guard = FlightGuard { flights: self, flavour, flight: flight.clone() };
            // A caller that joined may have taken the slot between the board's lock and
            // this, found it empty, and scraped alone: then so do we.
            let Some(mut slot) = flight.result.try_lock() else { return Shared::Body(Arc::new(scrape().await)) };
            let body = Arc::new(scrape().await);
            *slot = Some(body.clone());
            return Shared::Body(body);
        }
        let wait = flight.result.lock();
        let shared = match deadline {
            None => wait.await.clone(),
            Some(d) => match async_std::future::timeout(d.saturating_duration_since(Instant::now()), wait).await {
                Ok(slot) => slot.clone(),
                Err(_) => return Shared::TimedOut,
            },
        };
        match shared {
            Some(body) => Shared::Body(body),
            // The leader was cancelled before it finished: scrape alone.
            None => Shared::Body(Arc::new(scrape().await)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn body(text: &str) -> Exposition {
        Exposition::new(text.as_bytes().to_vec(), Arc::default())
    }

    #[test]
    fn callers_that_arrive_during_a_scrape_share_it() {
        async_std::task::block_on(async {
            let flights = Flights::default();
            let runs = AtomicUsize::new(0);
            let scrape = || async {
                runs.fetch_add(1, Ordering::SeqCst);
                async_std::task::sleep(Duration::from_millis(200)).await;
                body("x")
            };
            let flavour = (Format::Text, false);
            let (a, b) = futures_lite::future::zip(flights.share(flavour, None, scrape), async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                flights.share(flavour, None, scrape).await
            })
            .await;
            let (Shared::Body(a), Shared::Body(b)) = (a, b) else { panic!("both get a body") };
            assert!(Arc::ptr_eq(&a, &b));
            assert_eq!(runs.load(Ordering::SeqCst), 1);
        });
    }

    #[test]
    fn bodies_beyond_the_bound_evict_the_oldest() {
        let spare = Arc::new(Spare::default());
        let bodies: Vec<Exposition> =
            (0..MAX_BODIES + 2).map(|i| Exposition::new(vec![i as u8], spare.clone())).collect();
        let evicted: Vec<bool> = bodies.iter().map(|b| b.evicted().load(Ordering::Relaxed)).collect();
        assert_eq!(evicted, [true, true, false, false, false, false]);
        drop(bodies);
        let fresh = Exposition::new(vec![9], spare.clone());
        assert!(!fresh.evicted().load(Ordering::Relaxed), "dropped bodies no longer count");
    }

    #[test]
    fn a_scrape_cut_short_is_not_handed_to_a_caller_with_more_time() {
        async_std::task::block_on(async {
            let flights = Flights::default();
            let runs = AtomicUsize::new(0);
            // Upstream takes 300 ms: a scrape with less time answers "down".
            let scrape = |deadline: Instant| {
                let runs = &runs;
                move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    let upstream = Instant::now() + Duration::from_millis(300);
                    async_std::task::sleep(upstream.min(deadline).saturating_duration_since(Instant::now())).await;
                    body(if upstream <= deadline { "up" } else { "down" })
                }
            };
            let flavour = (Format::OpenMetrics, true);
            let text = |s: &Shared| match s {
                Shared::Body(b) => String::from_utf8_lossy((**b).as_ref()).into_owned(),
                Shared::TimedOut => "timed out".into(),
            };
            let short = Instant::now() + Duration::from_millis(50);
            let ((hasty, prometheus), (later_hasty, twin)) = futures_lite::future::zip(
                futures_lite::future::zip(flights.share(flavour, Some(short), scrape(short)), async {
                    async_std::task::sleep(Duration::from_millis(10)).await;
                    let own = Instant::now() + Duration::from_secs(10);
                    flights.share(flavour, Some(own), scrape(own)).await
                }),
                futures_lite::future::zip(
                    async {
                        async_std::task::sleep(Duration::from_millis(100)).await;
                        let own = Instant::now() + Duration::from_millis(50);
                        flights.share(flavour, Some(own), scrape(own)).await
                    },
                    async {
                        async_std::task::sleep(Duration::from_millis(100)).await;
                        let own = Instant::now() + Duration::from_millis(9_900);
                        flights.share(flavour, Some(own), scrape(own)).await
                    },
                ),
            )
            .await;
            assert_eq!(text(&hasty), "down");
            assert_eq!(text(&prometheus), "up", "not the hasty caller's answer");
            assert_eq!(text(&later_hasty), "timed out", "joined the longer scrape, and kept its own deadline");
            assert_eq!(text(&twin), "up");
            assert_eq!(runs.load(Ordering::SeqCst), 2, "the twin and the later hasty caller joined");
        });
    }

    #[test]
    fn a_joiner_keeps_its_own_deadline() {
        async_std::task::block_on(async {
            let flights = Flights::default();
            let slow = || async {
                async_std::task::sleep(Duration::from_millis(1500)).await;
                body("slow")
            };
            let flavour = (Format::OpenMetrics, true);
            let started = Instant::now();
            let long = Some(started + Duration::from_secs(10));
            let (_, joined) = futures_lite::future::zip(flights.share(flavour, long, slow), async {
                async_std::task::sleep(Duration::from_millis(50)).await;
                let own = Instant::now() + Duration::from_millis(200);
                let shared = flights.share(flavour, Some(own), slow).await;
                (shared, started.elapsed())
            })
            .await;
            assert!(matches!(joined.0, Shared::TimedOut));
            assert!(joined.1 < Duration::from_millis(1000), "gave up at its own deadline: {:?}", joined.1);
        });
    }

    #[test]
    fn no_deadline_serves_no_deadline_only_and_two_scrapes_at_most_run() {
        async_std::task::block_on(async {
            let flights = Flights::default();
            let runs = AtomicUsize::new(0);
            let scrape = || async {
                runs.fetch_add(1, Ordering::SeqCst);
                async_std::task::sleep(Duration::from_millis(300)).await;
                body("x")
            };
            let flavour = (Format::OpenMetrics, true);
            // A caller without a deadline leads; Prometheus' does not wait for it, but leads
            // a scrape of its own (the replacement); then callers whose deadlines grow by half
            // each time, which none before covers, all join the replacement.
            let mut callers: Vec<_> = (0..12u32)
                .map(|k| {
                    let flights = &flights;
                    Box::pin(async move {
                        async_std::task::sleep(Duration::from_millis(10 * u64::from(k))).await;
                        let deadline =
                            (k > 0).then(|| Instant::now() + Duration::from_millis(400).mul_f64(1.5f64.powi(k as i32)));
                        flights.share(flavour, deadline, scrape).await
                    })
                })
                .collect();
            // Every caller at once, in this task.
            let mut answers: Vec<Option<Shared>> = callers.iter().map(|_| None).collect();
            futures_lite::future::poll_fn(|cx| {
                for (caller, answer) in callers.iter_mut().zip(&mut answers) {
                    if answer.is_none() {
                        if let std::task::Poll::Ready(a) = caller.as_mut().poll(cx) {
                            *answer = Some(a);
                        }
                    }
                }
                if answers.iter().all(Option::is_some) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await;
            assert!(answers.iter().all(|a| matches!(a, Some(Shared::Body(_)))));
            assert_eq!(runs.load(Ordering::SeqCst), 2, "the first caller's and one replacement");
        });
    }
}
