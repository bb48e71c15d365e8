//! Concurrent scrapes share one read and one enrichment: a request that arrives while a
//! scrape is being read and enriched joins it instead of starting its own, whatever format
//! and encoding it asks for, but only if that scrape gives upstream about as long as the
//! request would (see [`covers`]): a client asking for a tiny scrape timeout must not hand
//! its cut-short answer (`up` 0) to Prometheus, whatever it sends before or after.
//!
//! Once enriched, the scrape [begins](Lead::begin): it leaves the board (later requests
//! start a scrape of their own), and each request's body is written for it alone, in its
//! own [`Flavour`], into a bounded channel of [`Piece`]s, as its client reads them (see
//! `exporter.rs`). No body is ever held whole; what a scrape holds while it is written is
//! what it read and the enrichment (at 150,000 pods, about 170 MiB: before ded41c7
//! scrapes of two flavours at once were read and held apart, and a Prometheus scrape with a
//! text request of the same timeout beside it peaked at 544 MiB; now at 375, one scrape's
//! 371 and a body).
//!
//! At most [`MAX_SCRAPES`] scrapes are read or written at once, and at most [`MAX_BODIES`]
//! requests wait for or read a body, each counted from when it arrives. Normally one of
//! each is. A request past a bound evicts the scrape or body whose readers took a piece
//! longest ago, if that was [`STALL`] ago or more (a client that stopped reading: its
//! writers abandon it, see `http1.rs`, and its memory is freed), or else the one written
//! longest, if for [`LONG`] or more (past both bounds, a body of the scrape it evicts, which
//! ends with it anyway, rather than another client's); if none may be, the request is
//! refused (`503`, as Prometheus' client libraries refuse requests past their
//! `MaxRequestsInFlight`), and the clients reading are left to read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender};
use msp_core::Format;

use crate::body::{channel, Piece};

/// What a response body is: its format, and whether it is gzipped.
pub type Flavour = (Format, bool);

/// The most scrapes read, enriched or written at once: each holds what it read (at 150,000
/// pods, an 85 MB list) and its enrichment.
pub const MAX_SCRAPES: usize = 4;

/// The most requests for a body at once, from when each arrives: a body being written holds
/// its pieces, its text and its compressor (at 10,000 pods, 64 bodies took 340 MB, about
/// 5 MB each; at 150,000, each body after the first added about 2 MiB to the peak, sharing
/// the scrape's `BaseLabels`), and requests that join one scrape are bounded by no scrape count. Two
/// Prometheus servers, a few agents and people are a handful; node_exporter refuses past
/// 40 (`--web.max-requests`).
pub const MAX_BODIES: usize = 16;

/// How long a body's reader must have taken no piece (once writing began) before, past a
/// bound, its body or scrape may be evicted for a new request: a client that stopped
/// reading, or reads a 256 KiB piece slower than this (17 KB/s). At 5 s, a client reading
/// steadily at 50 KB/s was cut in an adversarial test.
pub const STALL: Duration = Duration::from_secs(15);

/// How long a body or scrape may be written before, past a bound, it may be evicted for a
/// new request although its readers still read (after any that stalled, the oldest first):
/// longer than Prometheus' scrape timeouts, so that clients reading just fast enough never to
/// stall cannot hold every place for as long as their bodies last (a text body of 30 MB at
/// 52 KB/s lasts ten minutes). Until then, new requests are refused.
pub const LONG: Duration = Duration::from_secs(60);

/// Which bound a request was refused at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// [`MAX_SCRAPES`] scrapes are read or written, none of them evictable.
    Scrapes,
    /// [`MAX_BODIES`] requests wait for or read a body, none of them evictable.
    Bodies,
}

impl Busy {
    /// For the self-metrics' `limit` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Busy::Scrapes => "scrapes",
            Busy::Bodies => "bodies",
        }
    }
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Busy::Scrapes => write!(f, "{MAX_SCRAPES} scrapes are being read or written, none stalled or written long"),
            Busy::Bodies => {
                write!(f, "{MAX_BODIES} requests are waiting for or reading a body, none stalled or written long")
            }
        }
    }
}

/// Milliseconds since the first call: when a reader last took a piece.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A scrape's or a body's eviction flag, when writing began, and when a reader of it last
/// took a piece (ms, see [`now_ms`]).
#[derive(Debug)]
pub(crate) struct Flag {
    evicted: AtomicBool,
    /// Notified once `evicted` is set.
    on_evict: event_listener::Event,
    /// `NOT_BEGUN` until writing begins.
    begun: AtomicU64,
    progress: AtomicU64,
    /// A body's scrape, once the body's writing has begun.
    of: std::sync::OnceLock<Weak<Flag>>,
}

const NOT_BEGUN: u64 = u64::MAX;

impl Default for Flag {
    fn default() -> Self {
        Flag {
            evicted: AtomicBool::new(false),
            on_evict: event_listener::Event::new(),
            begun: AtomicU64::new(NOT_BEGUN),
            progress: AtomicU64::new(now_ms()),
            of: std::sync::OnceLock::new(),
        }
    }
}

/// Why a scrape or body may be evicted, in the order they are: the one whose reader stalled
/// longest ago, then the one written longest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Evictable {
    /// Its reader took its last piece then, [`STALL`] or more ago.
    Stalled(u64),
    /// Written since then, [`LONG`] or more ago.
    Long(u64),
}

impl Flag {
    fn progressed(&self) {
        self.progress.store(now_ms(), Ordering::Relaxed);
    }

    /// Writing has begun: from now, a reader that takes no piece for [`STALL`] has stalled.
    /// Until then, its reader waits for the server, not the other way round.
    pub(crate) fn begin(&self) {
        let now = now_ms();
        self.progress.store(now, Ordering::Relaxed);
        // Released after the progress it began with, which whoever sees it begun sees too.
        self.begun.store(now, Ordering::Release);
    }

    /// Whether it may be evicted at `now`, and why.
    fn evictable(&self, now: u64) -> Option<Evictable> {
        let begun = self.begun.load(Ordering::Acquire);
        if begun == NOT_BEGUN {
            return None;
        }
        let progress = self.progress.load(Ordering::Relaxed);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(progress) >= ms(STALL) {
            Some(Evictable::Stalled(progress))
        } else if now.saturating_sub(begun) >= ms(LONG) {
            Some(Evictable::Long(begun))
        } else {
            None
        }
    }

    /// Sets it evicted, and wakes whoever waits for that ([`Evicted::wait`]).
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.on_evict.notify(usize::MAX);
    }
}

/// Whether a body is to be abandoned: its scrape was evicted, or it was.
#[derive(Debug, Clone, Default)]
pub struct Evicted {
    scrape: Arc<Flag>,
    body: Arc<Flag>,
}

impl Evicted {
    /// The flags of a body whose writing has begun (see [`Flag::begin`]).
    pub(crate) fn begun(scrape: Arc<Flag>, body: Arc<Flag>) -> Self {
        // Set once: a body is written from one scrape.
        let _ = body.of.set(Arc::downgrade(&scrape));
        body.begin();
        Evicted { scrape, body }
    }

    /// Whether whoever is still sending the body should stop.
    pub fn get(&self) -> bool {
        self.scrape.evicted.load(Ordering::SeqCst) || self.body.evicted.load(Ordering::SeqCst)
    }

    /// Until the body, or its scrape, is evicted (never, for a body that is not evictable).
    pub async fn wait(&self) {
        loop {
            if self.get() {
                return;
            }
            // Listening before looking again: an eviction in between is not missed.
            let (scrape, body) = (self.scrape.on_evict.listen(), self.body.on_evict.listen());
            if self.get() {
                return;
            }
            futures_lite::future::or(scrape, body).await;
        }
    }

    /// Its reader has taken a piece: the body, and its scrape, are the last to be evicted.
    pub(crate) fn progressed(&self) {
        self.scrape.progressed();
        self.body.progressed();
    }
}

/// Scrapes or bodies, by their flags (one counts while anyone holds its flag), at most `max`
/// of them; and how many were evicted and refused.
#[derive(Debug)]
struct Bounded {
    busy: Busy,
    max: usize,
    live: Mutex<Vec<Weak<Flag>>>,
    evicted: AtomicU64,
    refused: AtomicU64,
    /// When an eviction was last logged (ms, see [`now_ms`]): at most one line a second.
    logged: AtomicU64,
}

impl Bounded {
    const fn new(busy: Busy, max: usize) -> Self {
        Bounded {
            busy,
            max,
            live: Mutex::new(Vec::new()),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            logged: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Flag>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new one's flag, counted from `now` (ms, see [`now_ms`]); past the bound, one is
    /// evicted to make room: the one whose reader stalled ([`STALL`]) longest ago, else the
    /// one written longest, if for [`LONG`] or more; if none may be, the new one is refused.
    #[cfg(test)]
    fn admit_at(&self, now: u64) -> Result<Arc<Flag>, Busy> {
        let mut live = self.lock();
        let room = self.room(&mut live, now)?;
        let (flag, evicted) = self.take(&mut live, room);
        drop(live);
        if let Some(why) = evicted {
            self.log_eviction(now, why);
        }
        Ok(flag)
    }

    /// Whether one more may be admitted at `now` into `live` (this bound's, locked), and
    /// which to evict for it, if any; evicts nothing, so that a request refused at another
    /// bound costs no one here their place. Refused, it is counted.
    fn room(&self, live: &mut Vec<Weak<Flag>>, now: u64) -> Result<Option<(usize, Evictable)>, Busy> {
        live.retain(|w| w.strong_count() > 0);
        if live.len() < self.max {
            return Ok(None);
        }
        let victim = live
            .iter()
            .enumerate()
            .filter_map(|(i, w)| Some((i, w.upgrade()?.evictable(now)?)))
            .min_by_key(|&(_, why)| why);
        match victim {
            Some(victim) => Ok(Some(victim)),
            None => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(self.busy)
            }
        }
    }

    /// Where in `live` (the bodies', locked) a body of `scrape` is, whose writing has begun.
    fn body_of(live: &[Weak<Flag>], scrape: &Arc<Flag>) -> Option<usize> {
        let of_scrape =
            |body: Arc<Flag>| body.of.get().is_some_and(|of| std::ptr::eq(of.as_ptr(), Arc::as_ptr(scrape)));
        live.iter().position(|w| w.upgrade().is_some_and(of_scrape))
    }

    /// Admits one into the `room` [`Bounded::room`] found in `live`, evicting its victim;
    /// returns why it evicted one, to be logged ([`Bounded::log_eviction`]) once the locks
    /// are let go, so that a slow log holds up no admission.
    fn take(&self, live: &mut Vec<Weak<Flag>>, room: Option<(usize, Evictable)>) -> (Arc<Flag>, Option<Evictable>) {
        let mut evicted = None;
        if let Some((victim, why)) = room {
            if let Some(flag) = live.swap_remove(victim).upgrade() {
                flag.evict();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                evicted = Some(why);
            }
        }
        let flag = Arc::new(Flag::default());
        live.push(Arc::downgrade(&flag));
        (flag, evicted)
    }

    /// At most a line a second: a flood of requests evicts as often as it asks.
    fn log_eviction(&self, now: u64, why: Evictable) {
        let last = self.logged.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 1000
            || self.logged.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let secs = |since: u64| now.saturating_sub(since) as f64 / 1000.0;
        let which = match why {
            Evictable::Stalled(since) => format!("whose client took nothing for {:.1} s", secs(since)),
            Evictable::Long(since) => format!("written longest ({:.1} s)", secs(since)),
        };
        log::warn!(
            "{} {} at once, the most: evicting the one {which}, to serve a new request \
             (kube_metrics_server_evicted_total counts them)",
            self.max,
            self.busy.as_str()
        );
    }
}

/// A scrape being read and enriched, that later arrivals join instead of starting their own.
struct Flight {
    /// The joiners' ends of their bodies' channels, and what each asked for, until the
    /// leader [begins](Lead::begin).
    joiners: Mutex<Vec<(Sender<Piece>, Flavour)>>,
    /// Set once this scrape is evicted: whoever is still writing its bodies should stop.
    evicted: Arc<Flag>,
    /// How long its leader gave upstream, from when it started; `None`: no deadline.
    budget: Option<Duration>,
    /// When it started (ms, see [`now_ms`]).
    started: u64,
}

impl Flight {
    /// Whether it serves a caller that would give upstream `mine`, at `now` (ms): by its
    /// leader's whole budget for a caller with a deadline (see [`covers`]), by what is left
    /// of it for a caller with none, who may come late.
    fn serves(&self, mine: Option<Duration>, now: u64) -> bool {
        let budget = match mine {
            Some(_) => self.budget,
            None => self.budget.map(|b| b.saturating_sub(Duration::from_millis(now.saturating_sub(self.started)))),
        };
        covers(budget, mine)
    }
}

/// Whether a scrape whose leader gave upstream `leader` serves a caller that would give
/// it `mine`: a deadline covers one at most a tenth longer (an HA pair of Prometheus
/// servers with one scrape timeout share, however far apart they arrive); no deadline
/// covers only no deadline (its answer may come after any deadline, where the caller's
/// own scrape would have answered in time); and a deadline covers none if it is at least
/// [`COVERS_NONE`] away.
fn covers(leader: Option<Duration>, mine: Option<Duration>) -> bool {
    match (leader, mine) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(leader), None) => leader >= COVERS_NONE,
        (Some(leader), Some(mine)) => leader >= mine.mul_f64(0.9),
    }
}

/// A scrape with at least this long left before its deadline, as the warm-up scrape
/// ([`WARM_UP_TIMEOUT`](crate::WARM_UP_TIMEOUT), 60 s) mostly has, serves a caller with no
/// deadline (curl, an agent that sends no scrape timeout) instead of that caller reading
/// the cluster a second time beside it: it has the time a scrape takes with the shipped
/// settings (`kubernetes.timeout`, 10 s, a read). At 150,000 pods, a curl at start beside
/// the warm-up took the peak from 278 to 480 MiB.
const COVERS_NONE: Duration = Duration::from_secs(30);

/// Where a scrape waits to be joined: by whether its leader has a deadline (one with none
/// serves only callers with none; a caller with none joins a scrape with one only where
/// there is none without, and [`covers`] says it may). Any flavour joins.
type Place = bool;

type Board = Arc<Mutex<HashMap<Place, Arc<Flight>>>>;

/// The scrapes being read and enriched, by flavour, and the bounds on scrapes and bodies.
pub(crate) struct Flights {
    board: Board,
    scrapes: Bounded,
    bodies: Bounded,
}

impl Default for Flights {
    fn default() -> Self {
        Flights {
            board: Board::default(),
            scrapes: Bounded::new(Busy::Scrapes, MAX_SCRAPES),
            bodies: Bounded::new(Busy::Bodies, MAX_BODIES),
        }
    }
}

/// An admitted request: its body's flag, and what it does.
pub(crate) type Entered = (Arc<Flag>, Role);

/// What a caller of [`Flights::enter`] does.
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
    place: Place,
    flight: Arc<Flight>,
}

impl Lead {
    /// The scrape's eviction flag.
    pub(crate) fn evicted(&self) -> Arc<Flag> {
        self.flight.evicted.clone()
    }

    /// The scrape is enriched: it leaves the board, and no one joins it any more; from now
    /// its readers can stall (one still being read is never evicted). Returns the joiners'
    /// ends, and what each asked for, to write each its body.
    pub(crate) fn begin(self) -> Vec<(Sender<Piece>, Flavour)> {
        let joiners = {
            let _board = self.leave();
            std::mem::take(&mut *self.flight.joiners.lock().unwrap_or_else(|p| p.into_inner()))
        };
        self.flight.evicted.begin();
        joiners
    }

    /// Takes the flight off the board, unless a later one has taken its place there; the
    /// board stays locked while the guard lives, so that no one joins meanwhile.
    fn leave(&self) -> std::sync::MutexGuard<'_, HashMap<Place, Arc<Flight>>> {
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        if board.get(&self.place).is_some_and(|on_board| Arc::ptr_eq(on_board, &self.flight)) {
            board.remove(&self.place);
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
    /// A request for a body of `flavour` has arrived, whose deadline is `budget` away: its
    /// body's flag, counted from now, and whether it leads a scrape or joins one being read.
    /// It joins the one on the board if that one [`covers`] it, and otherwise leads its own,
    /// if a scrape more may run, which takes the board's place (it gives upstream longer, so
    /// it covers more of those who come later).
    ///
    /// Refused at either bound (see [`Bounded::room`]), it evicts no one at the other.
    pub(crate) fn enter(&self, flavour: Flavour, budget: Option<Duration>) -> Result<Entered, Busy> {
        self.enter_at(flavour, budget, now_ms())
    }

    /// [`Flights::enter`] at `now` (ms, see [`now_ms`]).
    fn enter_at(&self, flavour: Flavour, budget: Option<Duration>, now: u64) -> Result<Entered, Busy> {
        let (entered, [body_evicted, scrape_evicted]) = self.enter_locked(flavour, budget, now)?;
        for (bound, why) in [(&self.bodies, body_evicted), (&self.scrapes, scrape_evicted)] {
            if let Some(why) = why {
                bound.log_eviction(now, why);
            }
        }
        Ok(entered)
    }

    /// [`Flights::enter_at`]'s work, under the locks; returns why it evicted a body and a
    /// scrape, if it did, to be logged once they are let go.
    fn enter_locked(
        &self,
        flavour: Flavour,
        budget: Option<Duration>,
        now: u64,
    ) -> Result<(Entered, [Option<Evictable>; 2]), Busy> {
        let place = budget.is_some();
        // Always locked in this order: the board, the bodies, the scrapes.
        let mut board = self.board.lock().unwrap_or_else(|p| p.into_inner());
        let mut bodies = self.bodies.lock();
        let body_room = self.bodies.room(&mut bodies, now)?;
        let waiting = board.get(&place).or_else(|| board.get(&true));
        if let Some(f) = waiting.filter(|f| f.serves(budget, now)) {
            let (body, body_evicted) = self.bodies.take(&mut bodies, body_room);
            let (tx, rx) = channel();
            f.joiners.lock().unwrap_or_else(|p| p.into_inner()).push((tx, flavour));
            return Ok(((body, Role::Join(rx, f.evicted.clone())), [body_evicted, None]));
        }
        let mut scrapes = self.scrapes.lock();
        let scrape_room = self.scrapes.room(&mut scrapes, now)?;
        // Past both bounds, a body of the scrape evicted gives way rather than another
        // client's: it ends with its scrape anyway.
        let body_room = match (body_room, scrape_room) {
            (Some(_), Some((victim, why))) => scrapes[victim]
                .upgrade()
                .and_then(|scrape| Bounded::body_of(&bodies, &scrape))
                .map(|body| (body, why))
                .or(body_room),
            _ => body_room,
        };
        let (body, body_evicted) = self.bodies.take(&mut bodies, body_room);
        let (evicted, scrape_evicted) = self.scrapes.take(&mut scrapes, scrape_room);
        let flight = Arc::new(Flight { joiners: Mutex::default(), evicted, budget, started: now });
        board.insert(place, flight.clone());
        let lead = Lead { board: self.board.clone(), place, flight };
        Ok(((body, Role::Lead(lead)), [body_evicted, scrape_evicted]))
    }
}

impl crate::self_metrics::Report for Flights {
    /// `kube_metrics_server_refused_total{limit}` and `kube_metrics_server_evicted_total{limit}`.
    fn write_metrics(&self, w: &mut msp_core::Writer<'_>) -> Result<(), msp_core::ExpositionError> {
        use msp_core::{LabelName, MetricName, MetricType};
        const REFUSED: MetricName = MetricName::from_static("kube_metrics_server_refused_total");
        const EVICTED: MetricName = MetricName::from_static("kube_metrics_server_evicted_total");
        const LIMIT: LabelName = LabelName::from_static("limit");
        let bounds = [&self.scrapes, &self.bodies];
        let help = "Requests for /metrics refused (503) at a bound, where none counted could be evicted.";
        let mut f = w.family(&REFUSED, help, MetricType::Counter)?;
        for b in bounds {
            f.sample([(&LIMIT, b.busy.as_str())], b.refused.load(Ordering::Relaxed) as f64);
        }
        let help = "Scrapes or bodies abandoned at a bound, for a new request: their clients had stalled, or they were written long.";
        let mut f = w.family(&EVICTED, help, MetricType::Counter)?;
        for b in bounds {
            f.sample([(&LIMIT, b.busy.as_str())], b.evicted.load(Ordering::Relaxed) as f64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAVOUR: Flavour = (Format::OpenMetrics, true);
    const STALL_MS: u64 = STALL.as_secs() * 1000;

    fn lead(entered: Result<Entered, Busy>) -> Lead {
        match entered.map(|(_body, role)| role) {
            Ok(Role::Lead(lead)) => lead,
            Ok(Role::Join(..)) => panic!("joined, did not lead"),
            Err(busy) => panic!("refused: {busy}"),
        }
    }

    fn join(entered: Result<Entered, Busy>) -> Receiver<Piece> {
        match entered.map(|(_body, role)| role) {
            Ok(Role::Join(rx, _)) => rx,
            Ok(Role::Lead(_)) => panic!("led, did not join"),
            Err(busy) => panic!("refused: {busy}"),
        }
    }

    #[test]
    fn callers_that_arrive_while_a_scrape_is_read_join_it_and_get_its_pieces() {
        let flights = Flights::default();
        let first = lead(flights.enter(FLAVOUR, None));
        let joined = join(flights.enter(FLAVOUR, None));
        let text = join(flights.enter((Format::Text, false), None));
        let joiners = first.begin();
        let flavours: Vec<Flavour> = joiners.iter().map(|&(_, flavour)| flavour).collect();
        assert_eq!(flavours, [FLAVOUR, (Format::Text, false)], "any flavour joins, and says what it asked for");
        joiners[0].0.try_send(b"piece".to_vec()).expect("room");
        assert_eq!(joined.try_recv().expect("a piece"), b"piece");
        joiners[1].0.try_send(b"text".to_vec()).expect("room");
        assert_eq!(text.try_recv().expect("a piece"), b"text");
        // Begun: a later caller reads a scrape of its own.
        assert!(matches!(flights.enter(FLAVOUR, None), Ok((_, Role::Lead(_)))));
    }

    #[test]
    fn a_leader_that_never_begins_closes_its_joiners_channels() {
        let flights = Flights::default();
        let first = lead(flights.enter(FLAVOUR, None));
        let joined = join(flights.enter(FLAVOUR, None));
        drop(first);
        assert!(joined.is_closed() || async_std::task::block_on(joined.recv()).is_err());
        assert!(matches!(flights.enter(FLAVOUR, None), Ok((_, Role::Lead(_)))), "it left the board");
    }

    #[test]
    fn past_the_bound_only_a_stalled_one_is_evicted_and_otherwise_the_new_one_is_refused() {
        let scrapes = Bounded::new(Busy::Scrapes, 4);
        let now = now_ms();
        let flags: Vec<Arc<Flag>> = (0..4).map(|_| scrapes.admit_at(now).expect("room")).collect();
        // None has begun writing (all are still read): none stalls, however long it takes.
        assert_eq!(scrapes.admit_at(now + 10 * STALL_MS).err(), Some(Busy::Scrapes));
        flags.iter().for_each(|f| f.begin());
        let begun = flags[0].progress.load(Ordering::Relaxed);
        // Begun, and read from within the last STALL: still refused.
        assert_eq!(scrapes.admit_at(begun + STALL_MS - 1).err(), Some(Busy::Scrapes));
        assert_eq!(scrapes.refused.load(Ordering::Relaxed), 2);
        assert!(flags.iter().all(|f| !f.evicted.load(Ordering::Relaxed)), "readers that read keep theirs");
        // Later, the first and the third are read from again; the second stalled longest.
        flags[0].progress.store(begun + 2 * STALL_MS, Ordering::Relaxed);
        flags[2].progress.store(begun + 2 * STALL_MS, Ordering::Relaxed);
        flags[3].progress.store(begun + 10, Ordering::Relaxed);
        let fifth = scrapes.admit_at(begun + 2 * STALL_MS + 20).expect("room made");
        let evicted: Vec<bool> = flags.iter().map(|f| f.evicted.load(Ordering::Relaxed)).collect();
        assert_eq!(evicted, [false, true, false, false]);
        assert!(!fifth.evicted.load(Ordering::Relaxed));
        assert_eq!(scrapes.evicted.load(Ordering::Relaxed), 1);
        drop(flags);
        assert!(scrapes.admit_at(now).is_ok(), "scrapes no one holds no longer count");
    }

    #[test]
    fn past_the_bound_readers_that_never_stall_give_way_once_written_long() {
        let bodies = Bounded::new(Busy::Bodies, 3);
        let flags: Vec<Arc<Flag>> = (0..3).map(|_| bodies.admit_at(now_ms()).expect("room")).collect();
        flags.iter().for_each(|f| f.begin());
        let begun = flags[0].begun.load(Ordering::Relaxed);
        flags[1].begun.store(begun + 5, Ordering::Relaxed);
        flags[2].begun.store(begun + 10, Ordering::Relaxed);
        // Each reads a piece a second, for a minute: none stalls.
        let long = u64::try_from(LONG.as_millis()).expect("ms");
        flags.iter().for_each(|f| f.progress.store(begun + long - 1000, Ordering::Relaxed));
        assert_eq!(bodies.admit_at(begun + long - 1).err(), Some(Busy::Bodies), "none written long yet");
        let _new = bodies.admit_at(begun + long + 5).expect("the one written longest gives way");
        let evicted: Vec<bool> = flags.iter().map(|f| f.evicted.load(Ordering::Relaxed)).collect();
        assert_eq!(evicted, [true, false, false]);
        // A stalled one goes before one written long.
        flags[2].progress.store(begun, Ordering::Relaxed);
        let _newer = bodies.admit_at(begun + long + 5).expect("room");
        let evicted: Vec<bool> = flags.iter().map(|f| f.evicted.load(Ordering::Relaxed)).collect();
        assert_eq!(evicted, [true, false, true]);
    }

    #[test]
    fn bodies_count_from_their_request_and_are_evicted_with_their_scrape_or_alone() {
        let flights = Flights::default();
        let scrape = lead(flights.enter(FLAVOUR, None)).evicted();
        let waiting: Vec<Arc<Flag>> =
            (0..MAX_BODIES).map(|_| flights.bodies.admit_at(now_ms()).expect("room")).collect();
        assert_eq!(
            flights.bodies.admit_at(now_ms()).err(),
            Some(Busy::Bodies),
            "waiting for their scrape, none stalls"
        );
        let bodies: Vec<Evicted> = waiting.into_iter().map(|b| Evicted::begun(scrape.clone(), b)).collect();
        // Later, every reader has stalled; the first one's took its last piece longest ago.
        bodies[0].body.progress.store(0, Ordering::Relaxed);
        let later = now_ms() + 2 * STALL_MS;
        let last = Evicted::begun(scrape.clone(), flights.bodies.admit_at(later).expect("the stalest one's room"));
        assert!(bodies[0].get(), "the body whose reader stalled");
        assert!(!bodies[1].get() && !last.get());
        scrape.evict();
        assert!(bodies.iter().all(Evicted::get) && last.get(), "its scrape evicted, every body is");
    }

    #[test]
    fn a_bodys_writer_is_woken_when_it_or_its_scrape_is_evicted_and_not_before() {
        use std::future::Future;
        let wakes = crate::wakes::Counting::new();
        let mut cx = wakes.context();
        let scrape = Arc::new(Flag::default());
        let (mine, other) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
        let (mine, other) = (Evicted::begun(scrape.clone(), mine), Evicted::begun(scrape.clone(), other));
        let mut waits = [Box::pin(mine.wait()), Box::pin(other.wait())];
        for w in &mut waits {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        // Looked at every 50 ms (as until 2026-12-07), they would have been woken by now.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(wakes.wakes(), 0, "woken with nothing to do");
        mine.body.evict();
        assert_eq!(wakes.wakes(), 1, "the evicted body's writer alone");
        assert!(waits[0].as_mut().poll(&mut cx).is_ready());
        assert!(waits[1].as_mut().poll(&mut cx).is_pending());
        scrape.evict();
        assert!(waits[1].as_mut().poll(&mut cx).is_ready(), "its scrape evicted");
        let never = Evicted::default();
        assert!(Box::pin(never.wait()).as_mut().poll(&mut cx).is_pending(), "not evictable");
    }

    #[test]
    fn past_both_bounds_the_evicted_scrapes_own_body_gives_way_not_another_clients() {
        let flights = Flights::default();
        let secs = |s: u64| Some(Duration::from_secs(s));
        // Every scrape is being written, each to its leader's body.
        let scrapes: Vec<(Arc<Flag>, Arc<Flag>)> = (1..=MAX_SCRAPES as u64)
            .map(|s| match flights.enter(FLAVOUR, secs(s * 10)).expect("room") {
                (body, Role::Lead(lead)) => {
                    let scrape = lead.evicted();
                    lead.begin();
                    (scrape, body)
                }
                (_, Role::Join(..)) => panic!("joined, did not lead"),
            })
            .collect();
        let mut bodies: Vec<Evicted> = scrapes.iter().map(|(s, b)| Evicted::begun(s.clone(), b.clone())).collect();
        // The other bodies read the first scrape.
        for _ in MAX_SCRAPES..MAX_BODIES {
            bodies.push(Evicted::begun(scrapes[0].0.clone(), flights.bodies.admit_at(now_ms()).expect("room")));
        }
        // Every reader reads, but two: one of the first scrape's, which stalled longest (its
        // scrape is still read), and the second scrape's only one (so it stalled too).
        let later = now_ms() + 3 * STALL_MS;
        for e in &bodies {
            e.scrape.progress.store(later - 1, Ordering::Relaxed);
            e.body.progress.store(later - 1, Ordering::Relaxed);
        }
        bodies[MAX_SCRAPES].body.progress.store(0, Ordering::Relaxed);
        bodies[1].body.progress.store(later - 2 * STALL_MS, Ordering::Relaxed);
        scrapes[1].0.progress.store(later - 2 * STALL_MS, Ordering::Relaxed);

        let entered = flights.enter_at(FLAVOUR, secs(1000), later);
        assert!(matches!(entered, Ok((_, Role::Lead(_)))), "room made at both bounds");
        let evicted: Vec<bool> = bodies.iter().map(Evicted::get).collect();
        let mut expected = vec![false; MAX_BODIES];
        expected[1] = true;
        assert_eq!(evicted, expected, "only the second scrape's reader loses its body");
        assert_eq!(flights.bodies.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(flights.scrapes.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn past_max_scrapes_a_caller_that_would_lead_is_refused_but_one_that_joins_is_not() {
        let flights = Flights::default();
        let secs = |s: u64| Some(Duration::from_secs(s));
        let _leads: Vec<Lead> = (1..=MAX_SCRAPES as u64).map(|s| lead(flights.enter(FLAVOUR, secs(s * 10)))).collect();
        assert!(matches!(flights.enter(FLAVOUR, secs(1000)), Err(Busy::Scrapes)));
        let _joined = join(flights.enter(FLAVOUR, secs(5)));
    }

    #[test]
    fn a_request_refused_at_the_scrape_bound_evicts_no_body_but_one_that_joins_does() {
        let flights = Flights::default();
        let secs = |s: u64| Some(Duration::from_secs(s));
        // Every scrape is being read (none may be evicted), and every other body has stalled.
        let leads: Vec<Entered> =
            (1..=MAX_SCRAPES as u64).map(|s| flights.enter(FLAVOUR, secs(s * 10)).expect("room")).collect();
        let stalled: Vec<Arc<Flag>> =
            (MAX_SCRAPES..MAX_BODIES).map(|_| flights.bodies.admit_at(now_ms()).expect("room")).collect();
        let later = now_ms() + 2 * STALL_MS;
        for b in &stalled {
            b.begin();
            b.progress.store(later - STALL_MS, Ordering::Relaxed);
        }
        // The one whose reader stalled first.
        stalled[3].progress.store(0, Ordering::Relaxed);
        let evicted = || stalled.iter().map(|b| b.evicted.load(Ordering::Relaxed)).collect::<Vec<bool>>();

        // One that would lead is refused at the scrapes, and costs no stalled body its place.
        let refused = flights.enter_at(FLAVOUR, secs(1000), later).err();
        assert_eq!(refused, Some(Busy::Scrapes));
        assert!(evicted().iter().all(|&e| !e), "no body evicted for a refused request");
        assert_eq!(flights.bodies.evicted.load(Ordering::Relaxed), 0);
        assert_eq!(flights.scrapes.refused.load(Ordering::Relaxed), 1);
        assert_eq!(flights.bodies.refused.load(Ordering::Relaxed), 0);

        // One that joins the scrape on the board needs no scrape: the stalest body gives way.
        let joined = flights.enter_at(FLAVOUR, secs(35), later);
        assert!(matches!(joined, Ok((_, Role::Join(..)))));
        let mut expected = vec![false; stalled.len()];
        expected[3] = true;
        assert_eq!(evicted(), expected);
        assert_eq!(flights.bodies.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(flights.scrapes.evicted.load(Ordering::Relaxed), 0);
        drop(leads);
    }

    #[test]
    fn a_scrape_that_gives_upstream_less_time_is_never_joined_by_a_caller_with_more() {
        let flights = Flights::default();
        let secs = |s: f64| Some(Duration::from_secs_f64(s));
        let hasty = lead(flights.enter(FLAVOUR, secs(0.05)));
        // A caller with no deadline, between them, reads its own.
        let open = lead(flights.enter(FLAVOUR, None));
        // Prometheus, with 10 s: not covered, so it reads its own, which takes the board.
        let prometheus = lead(flights.enter(FLAVOUR, secs(10.0)));
        // Its HA twin, 9.9 s left, joins; so does a later hasty caller, keeping its own
        // deadline; a caller with no deadline joins the one with none.
        let twin = join(flights.enter(FLAVOUR, secs(9.9)));
        let later_hasty = join(flights.enter(FLAVOUR, secs(0.05)));
        let later_open = join(flights.enter(FLAVOUR, None));
        assert_eq!(hasty.begin().len(), 0, "no one joined the hasty caller's scrape");
        assert_eq!(prometheus.begin().len(), 2);
        assert_eq!(open.begin().len(), 1);
        drop((twin, later_hasty, later_open));
    }

    #[test]
    fn no_deadline_covers_only_no_deadline_and_only_a_far_deadline_covers_none() {
        assert!(covers(None, None));
        assert!(!covers(None, Some(Duration::from_secs(1))));
        assert!(!covers(Some(Duration::from_secs(29)), None));
        let warm_up = crate::WARM_UP_TIMEOUT - Duration::from_millis(1);
        assert!(covers(Some(warm_up), None), "the warm-up serves curl");
        assert!(covers(Some(Duration::from_secs(9)), Some(Duration::from_secs(10))));
        assert!(!covers(Some(Duration::from_secs(8)), Some(Duration::from_secs(10))));
    }

    #[test]
    fn a_caller_with_no_deadline_joins_the_warm_up_but_not_a_prometheus_scrape() {
        let flights = Flights::default();
        // As the warm-up enters: its deadline, 60 s from a moment ago.
        let warm_up = lead(flights.enter(FLAVOUR, Some(crate::WARM_UP_TIMEOUT - Duration::from_millis(1))));
        let curl = join(flights.enter(FLAVOUR, None));
        assert_eq!(warm_up.begin().len(), 1, "curl joined the warm-up");
        let prometheus = lead(flights.enter(FLAVOUR, Some(Duration::from_secs(10))));
        let curl = (curl, lead(flights.enter(FLAVOUR, None)));
        // With one of each waiting, each caller joins its own kind.
        let (open, timed) =
            (join(flights.enter(FLAVOUR, None)), join(flights.enter(FLAVOUR, Some(Duration::from_secs(10)))));
        assert_eq!(curl.1.begin().len(), 1);
        assert_eq!(prometheus.begin().len(), 1);
        drop((curl.0, open, timed));
    }

    #[test]
    fn a_caller_with_no_deadline_joins_only_while_30_s_are_left() {
        let flights = Flights::default();
        let warm_up = lead(flights.enter_at(FLAVOUR, Some(crate::WARM_UP_TIMEOUT), 1_000));
        let early = join(flights.enter_at(FLAVOUR, None, 20_000));
        // 29 s left: it would be cut short where its own scrape would not.
        let late = lead(flights.enter_at(FLAVOUR, None, 32_000));
        // A caller with a deadline is still served by the whole budget (an HA twin).
        let twin = join(flights.enter_at(FLAVOUR, Some(Duration::from_secs(60)), 50_000));
        assert_eq!(warm_up.begin().len(), 2);
        assert_eq!(late.begin().len(), 0);
        drop((early, twin));
    }
}
