//! An enricher that panics fails alone, as one that returns an error does: its call is
//! caught where the pipeline awaits it, and the scrape goes on without its labels. A
//! [`Cluster`](crate::Cluster) that panics as the memo checks what it kept fails that check
//! alone: every pod goes to the enrichers.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A call that panicked, with what it panicked with when that is text.
#[derive(Debug)]
pub(crate) struct Panicked(String);

impl Panicked {
    fn new(payload: &(dyn Any + Send)) -> Self {
        Panicked(panic_message(payload).to_owned())
    }
}

/// What a panic's `payload` says: its text, as `panic!` gives it (a `&str` or a `String`),
/// or that it is not text. The server's panic hook writes it too.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a value that is not text")
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

/// What `f` returns, or [`Panicked`] if it panics.
pub(crate) fn catch_call<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked::new(payload.as_ref()))
}

/// `F`, with a panic in any of its polls given as [`Panicked`]. The future is not polled
/// again after it panicked: what it held is dropped with it.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        // Nothing of ours is seen half-changed: the enricher's state is its own, and its
        // future is never polled again.
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(Panicked::new(payload.as_ref()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_caught_with_its_message_and_a_value_comes_through() {
        let run = |f| async_std::task::block_on(CatchUnwind(f)).map_err(|p: Panicked| p.to_string());
        let value: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async { 7 });
        assert_eq!(run(value), Ok(7));
        let text: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async { panic!("no cluster for {}", "team") });
        assert_eq!(run(text), Err("panicked: no cluster for team".to_owned()));
        let other: Pin<Box<dyn Future<Output = u8> + Send>> = Box::pin(async { std::panic::panic_any(5u8) });
        assert_eq!(run(other), Err("panicked: a value that is not text".to_owned()));
        assert_eq!(catch_call(|| 3).ok(), Some(3));
        let made: Result<u8, _> = catch_call(|| panic!("before the future"));
        assert_eq!(made.map_err(|p| p.to_string()), Err("panicked: before the future".to_owned()));
    }
}
