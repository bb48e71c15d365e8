//! A keyed 128-bit digest of short texts, to tell whether a text changed without keeping it.
//!
//! The [`Memo`](crate::Memo) remembers each pod's PodMetrics labels to see, at the next
//! scrape, whether they changed. Kept as text, they held a copy of every label set in the
//! cluster (at 150,000 pods, 2 a ReplicaSet with 8 labels each, some 20 MiB); kept as a
//! digest, 16 bytes a pod.
//!
//! Two lanes of 64 bits, each word folded in by a full 64×64→128-bit multiply whose halves
//! are xored (as foldhash and wyhash do), each lane with its own secret keys, drawn from the
//! process's random source once per [`Digester`]. A text that changed and digests the same
//! is served its old labels: by chance, well under once in 2⁶⁴ changes. It is not a
//! cryptographic hash, so a collision made on purpose is not ruled out, but it needs the
//! secret keys to aim at, and would only keep its maker's own pod's old labels (which they
//! set anyway).

use std::hash::BuildHasher;

/// Digests texts with keys of its own.
pub(crate) struct Digester {
    /// Each lane's starting state and multiplier (odd).
    keys: [(u64, u64); 2],
}

/// Not its keys.
impl std::fmt::Debug for Digester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digester { .. }")
    }
}

impl Default for Digester {
    /// Keys drawn from the process's random source (std's `RandomState`).
    fn default() -> Self {
        let random = std::collections::hash_map::RandomState::new();
        let key = |n: u64| random.hash_one(n);
        Digester { keys: [(key(0), key(1) | 1), (key(2), key(3) | 1)] }
    }
}

/// A digest; equal texts have equal ones.
pub(crate) type Digest = [u64; 2];

/// The high and low halves of `a × b`, xored.
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Digester {
    /// The digest of `text`.
    pub(crate) fn digest(&self, text: &[u8]) -> Digest {
        let [(s0, m0), (s1, m1)] = self.keys;
        // The length first: a text and the same with zeros after it differ.
        let len = text.len() as u64;
        let (mut a, mut b) = (fold(s0 ^ len, m0), fold(s1 ^ len, m1));
        let mut words = text.chunks_exact(8);
        for word in &mut words {
            // Always 8 bytes (`chunks_exact`): the 0 is never taken.
            let w = <[u8; 8]>::try_from(word).map_or(0, u64::from_le_bytes);
            (a, b) = (fold(a ^ w, m0), fold(b ^ w, m1));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let w = rest.iter().rev().fold(0, |w, &byte| w << 8 | u64::from(byte));
            (a, b) = (fold(a ^ w, m0), fold(b ^ w, m1));
        }
        // A last round, so that the final word's bits reach every bit of each lane.
        [fold(a ^ m1, m0), fold(b ^ m0, m1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `a` and `b` differ in each lane (a lane that went wrong would pass unseen
    /// beside one that did not, where only the whole digests were compared).
    fn apart(a: Digest, b: Digest) -> bool {
        a[0] != b[0] && a[1] != b[1]
    }

    #[test]
    fn equal_texts_digest_alike_and_any_change_differs() {
        let d = Digester::default();
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for len in 0..=text.len() {
            let t = &text[..len];
            let copy = t.to_vec();
            assert_eq!(d.digest(t), d.digest(&copy), "equal texts of {len} bytes, each its own");
            // Every byte changed, one at a time, in every bit.
            for at in 0..len {
                for bit in 0..8 {
                    let mut changed = t.to_vec();
                    changed[at] ^= 1 << bit;
                    assert!(apart(d.digest(t), d.digest(&changed)), "{len} bytes, byte {at} bit {bit}");
                }
            }
            // Longer by a zero byte, or shorter by one: the length is part of it.
            let mut longer = t.to_vec();
            longer.push(0);
            assert!(apart(d.digest(t), d.digest(&longer)), "{len} bytes and a zero");
            // Two words swapped: the order counts.
            if len >= 16 {
                let mut swapped = t.to_vec();
                swapped[..16].rotate_left(8);
                assert!(apart(d.digest(t), d.digest(&swapped)), "{len} bytes, words swapped");
            }
            let both = d.digest(t);
            assert_ne!(both[0], both[1], "{len} bytes: the lanes are keyed apart");
        }
    }

    #[test]
    fn each_digester_has_its_own_keys() {
        let (a, b) = (Digester::default(), Digester::default());
        let text = br#"{"app":"web","pod-template-hash":"5d9c7b"}"#;
        assert!(apart(a.digest(text), b.digest(text)));
        assert_eq!(format!("{a:?}"), "Digester { .. }", "its keys are not shown");
    }

    #[test]
    fn label_sets_that_differ_a_little_digest_apart() {
        // Texts as PodMetrics labels come: many alike, differing in a value or a name.
        let d = Digester::default();
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            let text = format!(r#"{{"app":"api-{}","pod-template-hash":"{:010x}","team":"t{}"}}"#, i % 100, i, i % 7);
            let [x, y] = d.digest(text.as_bytes());
            assert!(seen.insert(x) && seen.insert(y), "{text}: a lane's digest seen before");
        }
    }
}
