//! Connections waiting for their next request, and since when.
//!
//! At [`MAX_CONNECTIONS`](crate::MAX_CONNECTIONS) the accept loop closes the connection
//! that has waited longest, to make room for the new one, instead of turning the new one
//! away. Otherwise clients that connect and say nothing, or send a request every two
//! minutes (which keeps a keep-alive connection open), could hold every slot, and
//! Prometheus, reconnecting, would find none. A reconnecting Prometheus is the newest
//! connection, and sends its request at once, so it is the last to be closed. A
//! connection answering a request is not closed for room while its client takes the
//! answer; one whose client has taken nothing of a write for a second waits here again,
//! from when that write began ([`Place::wait_since`]), as does a refusal once written.
//!
//! When none is waiting, the one that has been answering pipelined requests longest is
//! closed, if for [`MIN_ANSWERING`] or more: clients that pipeline thousands of small
//! requests and read their answers slowly but steadily (an adversarial trial, at 10 KB/s
//! each) held every connection answering, and Prometheus out. A connection answering one
//! request is never closed for room (a third trial had Prometheus' scrapes, older than the
//! attacker's fresh connections, closed): that answer is bounded by the write timeout, the
//! stall rule above and the bounds on bodies (`flight.rs`). A connection waiting less than
//! a second (one just accepted, its request on its way) is closed only after those: under
//! a churn of connections that pipeline at once, it was the only one waiting. Only when no
//! connection is waiting and none has pipelined for a second is the new one turned away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_std::channel::{Receiver, Sender};

/// How long a connection must have been pipelining before it may be closed for room when
/// none has waited as long: longer than a burst of requests takes to answer.
pub(crate) const MIN_ANSWERING: Duration = Duration::from_secs(1);

/// Where a connection is, since when.
#[derive(Debug, Clone, Copy)]
enum State {
    /// In a TLS handshake, waiting for a request, or stalled on its client.
    Waiting(Instant),
    /// Answering requests since then: how many, those it pipelined after the first counted.
    Answering(Instant, u32),
}

/// Which connection [`Waiting::close_longest`] closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The one that had waited longest (for a request, in its handshake, or on its client).
    Waiting,
    /// None had waited a second: the one that had been pipelining requests longest.
    Answering,
}

/// The connections, each with where it is since when, and the means to close it.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (State, Sender<()>)>>,
    /// Shutting down: each connection is closed once it waits (see [`Waiting::close_all`]).
    shut: AtomicBool,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (State, Sender<()>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection's place, waiting from now.
    pub(crate) fn join(self: &Arc<Self>) -> Place {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, closed) = async_std::channel::bounded(1);
        let place = Place { waiting: self.clone(), id, sender, closed };
        place.wait();
        place
    }

    /// Closes the connection that has waited longest, if for [`MIN_ANSWERING`] or more; else
    /// the one pipelining longest, if as long; else the one waiting longest, however briefly
    /// (a connection just accepted is in its first second, its request on its way, and under
    /// a churn of connections it was closed before it was read); `None` when none is waiting
    /// and none has pipelined that long.
    pub(crate) fn close_longest(&self) -> Option<Closed> {
        let mut all = self.lock();
        let answered_long = Instant::now().checked_sub(MIN_ANSWERING);
        // Ties go to the one accepted first.
        let waiting = || {
            all.iter().filter_map(|(id, (state, _))| match state {
                State::Waiting(since) => Some((*since, *id)),
                State::Answering(..) => None,
            })
        };
        let waited_long = waiting().filter(|(since, _)| answered_long.is_some_and(|long| *since <= long));
        let pipelining = all.iter().filter_map(|(id, (state, _))| match state {
            State::Answering(since, answers) if *answers > 1 && answered_long.is_some_and(|long| *since <= long) => {
                Some((*since, *id))
            }
            _ => None,
        });
        let (id, closed) = match (waited_long.min(), pipelining.min()) {
            (Some((_, id)), _) => (id, Closed::Waiting),
            (None, Some((_, id))) => (id, Closed::Answering),
            (None, None) => (waiting().min()?.1, Closed::Waiting),
        };
        if let Some((_, sender)) = all.remove(&id) {
            sender.close();
        }
        Some(closed)
    }

    /// Shutting down, as Go's `Server.Shutdown` does: closes every connection waiting now
    /// (idle, in its handshake, or stalled on its client for a second, which Go would wait
    /// for), and each other once it has answered what it is answering and would wait for
    /// its next request, or stalls.
    pub(crate) fn close_all(&self) {
        let mut all = self.lock();
        self.shut.store(true, Ordering::SeqCst);
        all.retain(|_, (state, sender)| match state {
            State::Waiting(_) => {
                sender.close();
                false
            }
            State::Answering(..) => true,
        });
    }

    /// How many are waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().values().filter(|(state, _)| matches!(state, State::Waiting(_))).count()
    }
}

/// One connection's entry in [`Waiting`]; it leaves when dropped.
#[derive(Debug)]
pub(crate) struct Place {
    waiting: Arc<Waiting>,
    id: u64,
    sender: Sender<()>,
    closed: Receiver<()>,
}

impl Place {
    /// Waiting from now (a request has been answered), unless already closed.
    pub(crate) fn wait(&self) {
        self.wait_since(Instant::now());
    }

    /// Waiting since `since` (an answer whose client has stopped reading since then),
    /// unless already closed.
    pub(crate) fn wait_since(&self, since: Instant) {
        // Checked under the lock `close_longest` and `close_all` close under, so a
        // connection closed in between cannot come back as waiting.
        let mut all = self.waiting.lock();
        if self.waiting.shut.load(Ordering::SeqCst) {
            self.sender.close();
            all.remove(&self.id);
        } else if !self.sender.is_closed() {
            all.insert(self.id, (State::Waiting(since), self.sender.clone()));
        }
    }

    /// Answering a request: from now, or, pipelined behind the one before, with it. Not to
    /// be closed for room unless none waits and it has pipelined longest. `false` if it was
    /// closed already.
    pub(crate) fn answer(&self) -> bool {
        self.set(|state| match state {
            Some(State::Answering(since, answers)) => State::Answering(since, answers.saturating_add(1)),
            _ => State::Answering(Instant::now(), 1),
        })
    }

    /// Answering again after a write its client took (a stalled one made it wait): the
    /// same answer, not another. `false` if it was closed meanwhile.
    pub(crate) fn resume(&self) -> bool {
        self.set(|state| match state {
            Some(answering @ State::Answering(..)) => answering,
            _ => State::Answering(Instant::now(), 1),
        })
    }

    /// Moves it to `next(where it is)`, unless it was closed.
    fn set(&self, next: impl FnOnce(Option<State>) -> State) -> bool {
        let mut all = self.waiting.lock();
        if self.sender.is_closed() {
            return false;
        }
        let now = all.get(&self.id).map(|(state, _)| *state);
        all.insert(self.id, (next(now), self.sender.clone()));
        true
    }

    /// Resolves once the connection has been closed for room, or for a shutdown.
    pub(crate) async fn closed(&self) {
        let _ = self.closed.recv().await;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[async_std::test]
    async fn the_connection_that_waited_longest_is_closed_first() {
        let waiting = Arc::new(Waiting::default());
        let oldest = waiting.join();
        async_std::task::sleep(Duration::from_millis(2)).await;
        let answering = waiting.join();
        async_std::task::sleep(Duration::from_millis(2)).await;
        let newer = waiting.join();
        assert!(answering.answer(), "not closed yet");
        assert!(waiting.close_longest().is_some());
        // Closed: its wait for a close ends at once.
        async_std::future::timeout(Duration::from_secs(1), oldest.closed()).await.expect("the oldest is closed");
        assert!(!oldest.answer(), "a closed connection answers nothing more");
        oldest.wait();
        assert_eq!(waiting.len(), 1, "and does not wait again");
        // The one answering is passed over, however long it has been open.
        assert!(waiting.close_longest().is_some());
        async_std::future::timeout(Duration::from_secs(1), newer.closed()).await.expect("the newer is closed");
        assert!(waiting.close_longest().is_none(), "none is waiting: the one answering is never closed");
        // Once answered, it waits again, from now.
        answering.wait();
        assert!(waiting.close_longest().is_some());
        async_std::future::timeout(Duration::from_secs(1), answering.closed()).await.expect("closed once waiting");
    }

    #[async_std::test]
    async fn with_none_waiting_the_one_pipelining_longest_is_closed_once_it_has_for_a_second() {
        let waiting = Arc::new(Waiting::default());
        let older = waiting.join();
        assert!(older.answer());
        let single = waiting.join();
        assert!(single.answer());
        async_std::task::sleep(MIN_ANSWERING + Duration::from_millis(100)).await;
        assert!(older.resume(), "a write taken goes on with the same answer");
        assert_eq!(waiting.close_longest(), None, "one answer each, however long: none is closed");
        // Pipelined: answering again while it still is keeps its start.
        assert!(older.answer());
        let newer = waiting.join();
        assert!(newer.answer());
        assert_eq!(waiting.close_longest(), Some(Closed::Answering), "the one answering for over a second");
        async_std::future::timeout(Duration::from_secs(1), older.closed()).await.expect("the older is closed");
        assert!(!older.answer(), "a closed connection answers nothing more");
        assert!(waiting.close_longest().is_none(), "the newer has not answered for a second");
        // Once it has waited, it answers from then on.
        newer.wait();
        assert!(newer.answer());
        assert!(waiting.close_longest().is_none());
    }

    #[async_std::test]
    async fn a_connection_leaves_when_it_ends() {
        let waiting = Arc::new(Waiting::default());
        drop(waiting.join());
        assert_eq!(waiting.len(), 0);
        assert!(waiting.close_longest().is_none());
    }
}
