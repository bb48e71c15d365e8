//! Numbers random enough to spread retries, timeouts and connection lifetimes, without a
//! crate for it.

use std::hash::{BuildHasher, Hasher};

/// A number random enough to spread retries and timeouts: std seeds each `RandomState`
/// from the OS, and a per-thread counter.
pub(crate) fn random() -> u64 {
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

/// `random` as a fraction in `[0, 1)`, from its top 53 bits (all an `f64` holds).
pub(crate) fn fraction(random: u64) -> f64 {
    (random >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_lie_in_the_unit_interval_and_spread() {
        assert_eq!(fraction(0), 0.0);
        assert!(fraction(u64::MAX) < 1.0);
        let drawn: Vec<f64> = (0..200).map(|_| fraction(random())).collect();
        assert!(drawn.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(drawn.iter().any(|&f| f < 0.25) && drawn.iter().any(|&f| f > 0.75), "{drawn:?}");
    }
}
