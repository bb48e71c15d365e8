//! Concurrent scrapes share one read and one enrichment: a request that arrives while a
//! scrape for the same format and encoding is being read and enriched joins it instead of
//! starting its own, but never past its own deadline, and only if that scrape gives
//! upstream about as long as the request would (see [`covers`]): a client asking for a
//! tiny scrape timeout must not hand its cut-short answer (`up` 0) to Prometheus.
//!
//! Once enriched, the scrape [begins](Lead::begin): it leaves the board (later requests
//! start a scrape of their own), and each request's body is written for it alone, into
//! a bounded channel of [`Piece`]s, as its client reads them (see `exporter.rs`). No body
//! is ever held whole; what a scrape holds while it is written is what it read and the
//! enrichment.
//!
//! At most [`MAX_STREAMING`] scrapes, and [`MAX_BODIES`] bodies, are written at once.
//! Normally one of each is; clients that stop reading, or read slowly but never stall long
//! enough for the write timeout (`http1.rs`), would each keep theirs, so when a new scrape
//! or body would exceed the bound, the one whose reader took a piece longest ago is
//! evicted: its writers abandon it (see `http1.rs`), and its memory is freed. A client
//! reading slowly but steadily outlasts clients that have stopped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender};
use msp_core::Format;

use crate::body::{channel, Piece};

/// What a response body is: its format, and whether it is gzipped.
pub type Flavour = (Format, bool);

/// The most scrapes whose bodies are written at once.
pub const MAX_STREAMING: usize = 4;

/// The most bodies written at once: each holds a few pieces (one or two MiB), and requests
/// that join one scrape are bounded by no scrape count.
pub const MAX_BODIES: usize = 64;

/// Milliseconds since the first call: when a reader last took a piece.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A scrape's or a body's eviction flag, and when a reader of it last took a piece.
#[derive(Debug)]
pub(crate) struct Flag {
    evicted: AtomicBool,
    progress: AtomicU64,
}

impl Default for Flag {
    fn default() -> Self {
        Flag { evicted: AtomicBool::new(false), progress: AtomicU64::new(now_ms()) }
    }
}

impl Flag {
    fn progressed(&self) {
        self.progress.store(now_ms(), Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
    }
}

/// Whether a body is to be abandoned: its scrape was evicted, or it was.
#[derive(Debug, Clone, Default)]
pub struct Evicted {
    scrape: Arc<Flag>,
    body: Arc<Flag>,
}

impl Evicted {
    /// Whether whoever is still sending the body should stop.
    pub fn get(&self) -> bool {
        self.scrape.evicted.load(Ordering::Relaxed) || self.body.evicted.load(Ordering::Relaxed)
    }

    /// Its reader has taken a piece: the body, and its scrape, are the last to be evicted.
    pub(crate) fn progressed(&self) {
        self.scrape.progressed();
        self.body.progressed();
    }
}

/// Things being written, by their flags (one counts while anyone holds its flag), at most
/// `max` of them.
#[derive(Debug)]
struct Bounded {
    what: &'static str,
    max: usize,
    live: Mutex<Vec<Weak<Flag>>>,
}

impl Bounded {
    const fn new(what: &'static str, max: usize) -> Self {
        Bounded { what, max, live: Mutex::new(Vec::new()) }
    }

    /// A new one's flag; see [`Bounded::track`].
    fn register(&self) -> Arc<Flag> {
        let flag = Arc::new(Flag::default());
        self.track(&flag);
        flag
    }

    /// Counts the one whose flag is `flag` from now. Beyond the bound, evicts the one whose
    /// reader took a piece longest ago: a client that stopped reading, not one reading slowly
    /// but steadily.
    fn track(&self, flag: &Arc<Flag>) {
        flag.progressed();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|w| w.strong_count() > 0);
        while live.len() >= self.max {
            let stalest = live
                .iter()
                .enumerate()
                .filter_map(|(i, w)| Some((i, w.upgrade()?.progress.load(Ordering::Relaxed))))
                .min_by_key(|&(_, progress)| progress)
                .map(|(i, _)| i);
            let Some(stalest) = stalest else { break };
            if let Some(evicted) = live.swap_remove(stalest).upgrade() {
                log::warn!(
                    "more than {} {} written at once to clients that read slowly: evicting the one that stalled longest",
                    self.max,
                    self.what
                );
                evicted.evicted.store(true, Ordering::Relaxed);
            }
        }
        live.push(Arc::downgrade(flag));
    }
}

/// A scrape being read and enriched, that later arrivals join instead of starting their own.
struct Flight {
    /// The joiners' ends of their bodies' channels, until the leader [begins](Lead::begin).
    joiners: Mutex<Vec<Sender<Piece>>>,
    /// Set once this scrape is evicted: whoever is still writing its bodies should stop.
    evicted: Arc<Flag>,
    /// How long its leader gave upstream, from when it started; `None`: no deadline.
    budget: Option<Duration>,
    /// Whether it took the board's place from a flight that did not cover its leader: a
    /// flight that did is joined by every caller, covered or not (each keeping its own
    /// deadline), so that at most two scrapes of a flavour are read at once, whatever
    /// deadlines a client sends.
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

type Board = Arc<Mutex<HashMap<Flavour, Arc<Flight>>>>;

/// The scrapes being read and enriched, by flavour, and the scrapes and bodies being
/// written.
pub(crate) struct Flights {
    board: Board,
    scrapes: Arc<Bounded>,
    bodies: Bounded,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            board: Board::default(),
            scrapes: Arc::new(Bounded::new("scrapes", MAX_STREAMING)),
            bodies: Bounded::new("bodies", MAX_BODIES),
        }
    }
}

/// What a caller of [`Flights::role`] does.
pub(crate) enum Role {
    /// Reads and enriches, then writes for itself and for whoever joined.
    Lead(Lead),
    /// Reads its body's pieces from the leader, and holds the scrape's eviction flag.
    Join(Receiver<Piece>, Arc<Flag>),
}

/// A scrape's leader. Dropped without [`Lead::begin`] (its thread panicked), it leaves
/// the board, and its joiners find their channels closed.
pub(crate) struct Lead {
    board: Board,
    scrapes: Arc<Bounded>,
    flavour: Flavour,
    flight: Arc<Flight>,
}

impl Lead {
    /// The scrape's eviction flag.
    pub(crate) fn evicted(&self) -> Arc<Flag> {
        self.flight.evicted.clone()
    }

    /// The scrape is enriched: it leaves the board, and no one joins it any more; it counts
    /// among the scrapes being written (one still being read is not evicted), if anyone is
    /// left to read it (the leader's reader, if `read`, or a joiner's). Returns the joiners'
    /// ends, to write each its body.
    pub(crate) fn begin(self, read: bool) -> Vec<Sender<Piece>> {
        let joiners = {
            let _board = self.leave();
            std::mem::take(&mut *self.flight.joiners.lock().unwrap_or_else(|p| p.into_inner()))
        };
        if read || joiners.iter().any(|j| !j.is_closed()) {
            self.scrapes.track(&self.flight.evicted);
        }
        joiners
    }

    /// Takes the flight off the board, unless a later one has taken its place there; the
    /// board stays locked while the guard lives, so that no one joins meanwhile.
    fn leave(&self) -> std::sync::MutexGuard<'_, HashMap<Flavour, Arc<Flight>>> {
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        if board.get(&self.flavour).is_some_and(|on_board| Arc::ptr_eq(on_board, &self.flight)) {
            board.remove(&self.flavour);
        }
        board
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        drop(self.leave());
    }
}

impl Flights {
    /// A new body's eviction flags, for a body of the scrape whose flag is `scrape`; beyond
    /// [`MAX_BODIES`], evicts the body whose reader took a piece longest ago.
    pub(crate) fn body(&self, scrape: Arc<Flag>) -> Evicted {
        Evicted { scrape, body: self.bodies.register() }
    }

    /// Whether a caller whose deadline is `budget` away leads a scrape of `flavour` or
    /// joins one being read: it joins a scrape that [`covers`] it; one that does not is
    /// replaced on the board by the caller's own, which later callers join instead.
    pub(crate) fn role(&self, flavour: Flavour, budget: Option<Duration>) -> Role {
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        let on_board = board.get(&flavour);
        if let Some(f) = on_board.filter(|f| f.replacement || covers(f.budget, budget)) {
            let (tx, rx) = channel();
            f.joiners.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
            return Role::Join(rx, f.evicted.clone());
        }
        let flight = Arc::new(Flight {
            joiners: Mutex::default(),
            evicted: Arc::default(),
            budget,
            replacement: on_board.is_some(),
        });
        board.insert(flavour, flight.clone());
        Role::Lead(Lead { board: self.board.clone(), scrapes: self.scrapes.clone(), flavour, flight })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAVOUR: Flavour = (Format::OpenMetrics, true);

    fn lead(role: Role) -> Lead {
        match role {
            Role::Lead(lead) => lead,
            Role::Join(..) => panic!("joined, did not lead"),
        }
    }

    fn join(role: Role) -> Receiver<Piece> {
        match role {
            Role::Join(rx, _) => rx,
            Role::Lead(_) => panic!("led, did not join"),
        }
    }

    #[test]
    fn callers_that_arrive_while_a_scrape_is_read_join_it_and_get_its_pieces() {
        let flights = Flights::default();
        let first = lead(flights.role(FLAVOUR, None));
        let joined = join(flights.role(FLAVOUR, None));
        let other_flavour = flights.role((Format::Text, true), None);
        assert!(matches!(other_flavour, Role::Lead(_)), "each flavour is read apart");
        let joiners = first.begin(true);
        assert_eq!(joiners.len(), 1);
        joiners[0].try_send(b"piece".to_vec()).expect("room");
        assert_eq!(joined.try_recv().expect("a piece"), b"piece");
        // Begun: a later caller reads a scrape of its own.
        assert!(matches!(flights.role(FLAVOUR, None), Role::Lead(_)));
    }

    #[test]
    fn a_leader_that_never_begins_closes_its_joiners_channels() {
        let flights = Flights::default();
        let first = lead(flights.role(FLAVOUR, None));
        let joined = join(flights.role(FLAVOUR, None));
        drop(first);
        assert!(joined.is_closed() || async_std::task::block_on(joined.recv()).is_err());
        assert!(matches!(flights.role(FLAVOUR, None), Role::Lead(_)), "it left the board");
    }

    #[test]
    fn beyond_the_bound_the_one_read_longest_ago_is_evicted() {
        let scrapes = Bounded::new("scrapes", 4);
        let flags: Vec<Arc<Flag>> = (0..4).map(|_| scrapes.register()).collect();
        std::thread::sleep(Duration::from_millis(5));
        // The first is read from steadily; the second stalled longest.
        flags[0].progressed();
        std::thread::sleep(Duration::from_millis(5));
        flags[2].progressed();
        flags[3].progressed();
        let fifth = scrapes.register();
        let evicted: Vec<bool> = flags.iter().map(|f| f.evicted.load(Ordering::Relaxed)).collect();
        assert_eq!(evicted, [false, true, false, false]);
        assert!(!fifth.evicted.load(Ordering::Relaxed));
        drop(flags);
        assert!(!scrapes.register().evicted.load(Ordering::Relaxed), "scrapes no one holds no longer count");
    }

    #[test]
    fn a_body_is_evicted_with_its_scrape_or_alone() {
        let flights = Flights::default();
        let scrape = lead(flights.role(FLAVOUR, None)).evicted();
        let bodies: Vec<Evicted> = (0..MAX_BODIES).map(|_| flights.body(scrape.clone())).collect();
        std::thread::sleep(Duration::from_millis(5));
        bodies.iter().skip(1).for_each(Evicted::progressed);
        let last = flights.body(scrape.clone());
        assert!(bodies[0].get(), "the body whose reader stalled, past the bound");
        assert!(!bodies[1].get() && !last.get());
        scrape.evict();
        assert!(bodies.iter().all(Evicted::get) && last.get(), "its scrape evicted, every body is");
    }

    #[test]
    fn a_scrape_that_gives_upstream_less_time_is_not_joined_by_a_caller_with_more() {
        let flights = Flights::default();
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        let hasty = lead(flights.role(FLAVOUR, secs(0.05)));
        // Prometheus, with 10 s: not covered, so it reads its own (the replacement).
        let prometheus = lead(flights.role(FLAVOUR, secs(10.0)));
        // Its HA twin, 9.9 s left, joins; so does a later hasty caller: every caller joins
        // a replacement, keeping its own deadline, so at most two are read at once.
        let twin = join(flights.role(FLAVOUR, secs(9.9)));
        let later_hasty = join(flights.role(FLAVOUR, secs(0.05)));
        assert_eq!(hasty.begin(true).len(), 0, "no one joined the hasty caller's scrape");
        let joiners = prometheus.begin(true);
        assert_eq!(joiners.len(), 2);
        drop((twin, later_hasty));
    }

    #[test]
    fn no_deadline_covers_only_no_deadline() {
        assert!(covers(None, None));
        assert!(!covers(None, Some(Duration::from_secs(1))));
        assert!(!covers(Some(Duration::from_secs(100)), None));
        assert!(covers(Some(Duration::from_secs(9)), Some(Duration::from_secs(10))));
        assert!(!covers(Some(Duration::from_secs(8)), Some(Duration::from_secs(10))));
        let flights = Flights::default();
        let _open = lead(flights.role(FLAVOUR, None));
        let _prometheus = lead(flights.role(FLAVOUR, Some(Duration::from_secs(10))));
        assert!(matches!(flights.role(FLAVOUR, None), Role::Join(..)), "the replacement is joined by all");
    }
}
