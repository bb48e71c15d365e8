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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use async_std::channel::{Receiver, Sender};

/// The connections waiting (in a TLS handshake, or for a request), each with when it began
/// to wait and the means to close it.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (Instant, Sender<()>)>>,
}

impl Waiting {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, (Instant, Sender<()>)>> {
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

    /// Closes the connection that has waited longest; `false` when none is waiting (every
    /// one is answering a request).
    pub(crate) fn close_longest(&self) -> bool {
        let mut waiting = self.lock();
        // Ties go to the one accepted first.
        let Some(id) = waiting.iter().min_by_key(|(id, (since, _))| (*since, **id)).map(|(id, _)| *id) else {
            return false;
        };
        if let Some((_, sender)) = waiting.remove(&id) {
            sender.close();
        }
        true
    }

    /// How many are waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
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
        // Checked under the lock `close_longest` closes under, so a connection closed in
        // between cannot come back as waiting.
        let mut waiting = self.waiting.lock();
        if !self.sender.is_closed() {
            waiting.insert(self.id, (since, self.sender.clone()));
        }
    }

    /// Answering a request: not to be closed for room. `false` if it was closed already.
    pub(crate) fn answer(&self) -> bool {
        self.waiting.lock().remove(&self.id);
        !self.sender.is_closed()
    }

    /// Resolves once the connection has been closed for room.
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
        assert!(waiting.close_longest());
        // Closed: its wait for a close ends at once.
        async_std::future::timeout(Duration::from_secs(1), oldest.closed()).await.expect("the oldest is closed");
        assert!(!oldest.answer(), "a closed connection answers nothing more");
        oldest.wait();
        assert_eq!(waiting.len(), 1, "and does not wait again");
        // The one answering is passed over, however long it has been open.
        assert!(waiting.close_longest());
        async_std::future::timeout(Duration::from_secs(1), newer.closed()).await.expect("the newer is closed");
        assert!(!waiting.close_longest(), "none is waiting: the one answering is never closed");
        // Once answered, it waits again, from now.
        answering.wait();
        assert!(waiting.close_longest());
        async_std::future::timeout(Duration::from_secs(1), answering.closed()).await.expect("closed once waiting");
    }

    #[async_std::test]
    async fn a_connection_leaves_when_it_ends() {
        let waiting = Arc::new(Waiting::default());
        drop(waiting.join());
        assert_eq!(waiting.len(), 0);
        assert!(!waiting.close_longest());
    }
}
