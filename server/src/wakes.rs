//! A waker that counts how often it is woken: for tests that a future is woken when it
//! should be, and not before (a future that looks at something every few milliseconds is).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker, and how often it has been woken.
pub(crate) struct Counting {
    count: Arc<Count>,
    waker: Waker,
}

impl Counting {
    pub(crate) fn new() -> Self {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        Counting { waker: Waker::from(count.clone()), count }
    }

    /// A context to poll with this waker.
    pub(crate) fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    /// How often it has been woken.
    pub(crate) fn wakes(&self) -> usize {
        self.count.0.load(Ordering::SeqCst)
    }
}
