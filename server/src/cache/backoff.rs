//! How long a cache waits before trying again: exponential, jittered, and bounded.

use std::time::Duration;

use crate::random::random;

/// The longest a cache waits before trying again, whatever a `Retry-After` asked (and then
/// up to a tenth more, at random: see [`Backoff::next`]).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Exponential backoff, 0.2 s doubling to [`MAX_BACKOFF`], each wait jittered down to as
/// little as half of that, as client-go's and kube-rs's are: the four caches fail together
/// when the API server goes away, and would otherwise all come back in the same
/// millisecond, and so would every replica.
pub(super) struct Backoff {
    failures: u32,
    /// xorshift state, never 0.
    random: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::seeded(random())
    }
}

impl Backoff {
    fn seeded(seed: u64) -> Self {
        // splitmix64's finalizer, so that near seeds do not begin near each other.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Backoff { failures: 0, random: (z ^ (z >> 31)) | 1 }
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    /// The next backoff; or `at_least` (a `Retry-After`) if that is longer, up to
    /// [`MAX_BACKOFF`] (a `Retry-After` of a day, or of 2^64 - 1 seconds, which never ends,
    /// from a broken proxy must not stop the cache for good), and then up to a tenth more:
    /// the caches (and replicas) told at once would otherwise all come back to the
    /// millisecond together, whatever the jitter.
    pub(super) fn next(&mut self, at_least: Option<Duration>) -> Duration {
        let doubled = Duration::from_millis(200u64 << self.failures.min(8)).min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        let x = &mut self.random;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let r = (*x >> 11) as f64 / (1u64 << 53) as f64;
        // Half the wait, plus up to the other half.
        let jittered = doubled / 2 + doubled.mul_f64(r / 2.0);
        let floor = at_least.unwrap_or_default().min(MAX_BACKOFF);
        if floor > jittered {
            floor + floor.mul_f64(r / 10.0)
        } else {
            jittered
        }
    }

    /// Waits [`Backoff::next`].
    pub(super) async fn wait_at_least(&mut self, at_least: Option<Duration>) {
        async_std::task::sleep(self.next(at_least)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_takes_retry_after_and_is_bounded() {
        let ceilings = [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000];
        let (mut firsts, mut retried) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
        for seed in 0..50 {
            let mut b = Backoff::seeded(seed);
            for (round, ceiling) in ceilings.iter().enumerate() {
                let wait = b.next(None).as_millis();
                assert!((ceiling / 2..=*ceiling).contains(&wait), "seed {seed}, round {round}: {wait} ms");
                if round == 0 {
                    firsts.insert(wait);
                }
            }
            b.reset();
            let wait = b.next(Some(Duration::from_secs(5))).as_millis();
            assert!((5000..=5500).contains(&wait), "Retry-After is the least, and a tenth more the most: {wait}");
            retried.insert(wait);
            let wait = b.next(Some(Duration::from_millis(1))).as_millis();
            assert!((200..=400).contains(&wait), "{wait}");
            for huge in [Duration::from_secs(86_400), Duration::from_secs(u64::MAX), Duration::MAX] {
                let wait = b.next(Some(huge));
                assert!(wait >= MAX_BACKOFF && wait <= MAX_BACKOFF.mul_f64(1.1), "{huge:?}: {wait:?}");
            }
        }
        assert!(firsts.len() > 25, "the waits are spread: {firsts:?}");
        assert!(retried.len() > 25, "so are the Retry-After ones: {retried:?}");
        let (mut a, mut b) = (Backoff::default(), Backoff::default());
        let same = (0..8).filter(|_| a.next(None) == b.next(None)).count();
        assert!(same < 8, "two caches' backoffs are seeded apart");
    }
}
