//! A watch's bound on silence: one timer for the whole watch, not one a line.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// How long a watch may say nothing, as one timer for the whole watch: moved on only when it
/// fires before the line waited for is due. A timeout around each read registered a timer
/// with async-io's reactor for each line whose read had to wait for the socket (each event
/// and bookmark of a watch at rest, the objects of a streaming list not yet read in), and
/// each registration wakes the reactor's thread: with 20 pods of 10,000 changing a second,
/// a server otherwise at rest took 4.7-4.8 ms of CPU a second (1.2 with none changing),
/// and 3.7-4.1 with one timer a watch. Most of what is left is the runtime's: the
/// reactor's thread wakes an executor's for each line.
pub(super) struct Silence {
    timer: async_io::Timer,
    /// When it fires (`None`: never set, or seen to fire; a time past: fired, and not yet
    /// seen to, the read having won the race: the next wait sees it at once).
    at: Option<Instant>,
}

impl Silence {
    pub(super) fn new() -> Self {
        Silence { timer: async_io::Timer::never(), at: None }
    }

    /// `read`'s output, if it ends by `due` (never: `None`); `None` if it does not. `read`
    /// is only polled: one that has not ended can be waited for again.
    pub(super) async fn within<T>(
        &mut self,
        due: Option<Instant>,
        mut read: Pin<&mut impl Future<Output = T>>,
    ) -> Option<T> {
        if let Some(due) = due {
            self.by(due);
        }
        loop {
            let fired = async {
                self.fired().await;
                None
            };
            match futures_lite::future::or(async { Some(read.as_mut().await) }, fired).await {
                Some(read) => return Some(read),
                None => match due {
                    // Set for an earlier line: on to this one's due time (or never).
                    None => {}
                    Some(due) if Instant::now() < due => self.by(due),
                    Some(_) => return None,
                },
            }
        }
    }

    /// Fires by `due`, at the latest: set again only if it would fire later (lines that
    /// keep coming push `due` on, and the timer stays where it is until it fires).
    fn by(&mut self, due: Instant) {
        if self.at.is_none_or(|at| at > due) {
            self.timer.set_at(due);
            self.at = Some(due);
        }
    }

    /// Waits for it to fire.
    async fn fired(&mut self) {
        (&mut self.timer).await;
        self.at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The bound a watch's first line set fires early for a later line, is set again, and
    /// ends that line's wait at its own due time: not at the earlier one, and not never.
    #[test]
    fn a_silence_bound_set_for_an_earlier_line_ends_a_later_silent_one_when_it_is_due() {
        async_std::task::block_on(async {
            let mut silence = Silence::new();
            let first = std::pin::pin!(async { 1 });
            let started = Instant::now();
            assert_eq!(silence.within(Some(started + Duration::from_millis(100)), first).await, Some(1));
            let never = std::pin::pin!(futures_lite::future::pending::<u8>());
            let due = started + Duration::from_millis(400);
            let waited = async_std::future::timeout(Duration::from_secs(10), silence.within(Some(due), never)).await;
            assert_eq!(waited, Ok(None), "ended, as a silence past its bound");
            assert!(Instant::now() >= due, "at its own due time, not the earlier line's");
            // Never due: the timer, fired for an earlier line, ends nothing.
            let first = std::pin::pin!(async { 2 });
            assert_eq!(silence.within(Some(Instant::now() + Duration::from_millis(50)), first).await, Some(2));
            let never = std::pin::pin!(futures_lite::future::pending::<u8>());
            let waited = async_std::future::timeout(Duration::from_millis(300), silence.within(None, never)).await;
            assert!(waited.is_err(), "still waiting");
        });
    }
}
