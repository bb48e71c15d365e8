//! Length-limited Huffman codes, as deflate (RFC 1951, 3.2.2) writes them: code lengths
//! from symbol frequencies, then canonical codes from the lengths.

/// Code lengths for `freqs`, none longer than `max_len`: a complete prefix code over the
/// symbols that occur. Fewer than two symbols that occur are padded to two (symbols 0 and
/// 1 first), so every decoder accepts the code. `max_len` is deflate's (15, or 7 for the
/// code-length code), which leaves room for every symbol (at most 2^max_len).
pub(crate) fn lengths(freqs: &[u32], max_len: u8) -> Vec<u8> {
    let mut freqs: Vec<u32> = freqs.to_vec();
    let mut used = freqs.iter().filter(|&&f| f > 0).count();
    for pad in freqs.iter_mut().take(2) {
        if used < 2 && *pad == 0 {
            *pad = 1;
            used += 1;
        }
    }
    debug_assert!((1..=15).contains(&max_len) && used <= 1 << max_len, "{used} symbols in {max_len} bits");
    let (leaves, depths) = unlimited(&freqs);
    let mut lens = vec![0u8; freqs.len()];
    let deepest = depths.iter().copied().max().unwrap_or(0);
    if deepest <= max_len {
        for (&(_, symbol), &depth) in leaves.iter().zip(&depths) {
            lens[symbol] = depth;
        }
        return lens;
    }
    // Too deep: how many codes each length has, the deeper ones lifted to `max_len`...
    let max = usize::from(max_len);
    let mut count = vec![0u32; max + 1];
    for &depth in &depths {
        count[usize::from(depth).min(max)] += 1;
    }
    // ...which over-fills the code (Kraft's sum, in units of 2^-max, is past 2^max). Each
    // step takes one code of `max_len` away and splits the deepest shorter one in two, a
    // level down: the sum falls by one, the number of codes stays. It takes as many steps
    // as the lifted codes outnumber the tree's nodes at `max_len`, and each lifted pair had
    // such a node above it, so `max_len` never runs out of codes to give.
    let mut total: u64 = (1..=max).map(|len| u64::from(count[len]) << (max - len)).sum();
    while total > 1 << max {
        count[max] -= 1;
        if let Some(len) = (1..max).rev().find(|&len| count[len] > 0) {
            count[len] -= 1;
            count[len + 1] += 2;
        }
        total -= 1;
    }
    // The rarest symbols (the leaves come rarest first) take the longest codes.
    let mut leaves = leaves.iter();
    for len in (1..=max).rev() {
        for &(_, symbol) in leaves.by_ref().take(count[len] as usize) {
            lens[symbol] = len as u8;
        }
    }
    lens
}

/// Huffman code lengths with no limit (two-queue construction over the sorted leaves):
/// the used symbols as `(frequency, symbol)`, rarest first, and the depth of each, which
/// never rises as the leaves go (both queues are taken first in, first out).
fn unlimited(freqs: &[u32]) -> (Vec<(u32, usize)>, Vec<u8>) {
    let mut leaves: Vec<(u32, usize)> =
        freqs.iter().enumerate().filter(|(_, &f)| f > 0).map(|(s, &f)| (f, s)).collect();
    match leaves.len() {
        0 => return (leaves, Vec::new()),
        1 => return (leaves, vec![1]),
        _ => {}
    }
    leaves.sort_unstable();
    let n = leaves.len();
    // Nodes 0..n are the leaves in order of weight, n.. the internal nodes in the order
    // made, which is also their order of weight.
    let mut weight: Vec<u64> = leaves.iter().map(|&(f, _)| u64::from(f)).collect();
    weight.resize(2 * n - 1, 0);
    let mut parent = vec![0usize; 2 * n - 1];
    let (mut leaf, mut inner) = (0, n);
    for node in n..2 * n - 1 {
        let mut pick = |weight: &[u64]| {
            let take_leaf = leaf < n && (inner >= node || weight[leaf] <= weight[inner]);
            if take_leaf {
                leaf += 1;
                leaf - 1
            } else {
                inner += 1;
                inner - 1
            }
        };
        let (a, b) = (pick(&weight), pick(&weight));
        weight[node] = weight[a] + weight[b];
        parent[a] = node;
        parent[b] = node;
    }
    // A parent always comes after its children: walk down from the root.
    let mut depth = vec![0u8; 2 * n - 1];
    for node in (0..2 * n - 2).rev() {
        depth[node] = depth[parent[node]].saturating_add(1);
    }
    depth.truncate(n);
    (leaves, depth)
}

/// The canonical codes for `lens` (RFC 1951, 3.2.2), bit-reversed so they can be written
/// least significant bit first.
pub(crate) fn codes(lens: &[u8]) -> Vec<u16> {
    let max = lens.iter().copied().max().unwrap_or(0) as usize;
    let mut count = vec![0u16; max + 1];
    for &l in lens.iter().filter(|&&l| l > 0) {
        count[l as usize] += 1;
    }
    let mut next = vec![0u16; max + 2];
    let mut code = 0u16;
    for bits in 1..=max {
        code = (code + count[bits - 1]) << 1;
        next[bits] = code;
    }
    lens.iter()
        .map(|&l| {
            if l == 0 {
                return 0;
            }
            let c = next[l as usize];
            next[l as usize] += 1;
            c.reverse_bits() >> (16 - u32::from(l))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kraft(lens: &[u8]) -> f64 {
        lens.iter().filter(|&&l| l > 0).map(|&l| 0.5f64.powi(i32::from(l))).sum()
    }

    #[test]
    fn codes_are_complete_and_within_the_limit() {
        // Fibonacci frequencies make the deepest unlimited trees.
        let mut fib = vec![1u32, 1];
        while fib.len() < 30 {
            let n = fib.len();
            fib.push(fib[n - 1] + fib[n - 2]);
        }
        for (freqs, limit) in [
            (vec![5, 0, 0, 9, 1, 0, 3], 15u8),
            (vec![0, 0, 7, 0], 15),
            (vec![0; 19], 7),
            ((0..286).map(|i| (i * 7919 % 1000) as u32).collect(), 15),
            // As a block's counts are: a few symbols used millions of times, the rest 1-3.
            ((0..286).map(|i| if i % 40 == 0 { 3_000_000 + i } else { 1 + i % 3 }).collect(), 15),
        ] {
            check(&freqs, limit);
        }
        // Trees deeper than the limit, which the lengths must be lifted and split to fit.
        for (freqs, limit) in [
            (fib.clone(), 15u8),
            (fib.clone(), 7),
            ((0..32).map(|i| 1u32 << i).collect(), 15),
            // Twenty symbols each twice as common as the next, and 266 used once (a block
            // whose literals are mostly a few bytes: 29 deep).
            ((0..286).map(|i| if i < 20 { 1u32 << (31 - i) } else { 1 }).collect(), 15),
        ] {
            let deepest = unlimited(&freqs).1.into_iter().max().unwrap_or(0);
            assert!(deepest > limit, "{deepest} deep: the case no longer needs lifting");
            check(&freqs, limit);
        }
    }

    /// The lengths for `freqs` are within `limit`, give every used symbol a code, make a
    /// complete code, and never give a commoner symbol the longer code.
    fn check(freqs: &[u32], limit: u8) {
        let lens = lengths(freqs, limit);
        assert!(lens.iter().all(|&l| l <= limit), "{lens:?}");
        for (i, j) in (0..freqs.len()).flat_map(|i| (0..freqs.len()).map(move |j| (i, j))) {
            if freqs[i] > freqs[j] && freqs[j] > 0 {
                assert!(lens[i] <= lens[j], "symbol {i} is commoner than {j} but has the longer code: {lens:?}");
            }
        }
        assert!(freqs.iter().zip(&lens).all(|(&f, &l)| f == 0 || l > 0), "every used symbol has a code");
        assert!((kraft(&lens) - 1.0).abs() < 1e-12, "complete: {lens:?}");
    }

    #[test]
    fn canonical_codes_match_rfc_1951() {
        // The example of RFC 1951, 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) give
        // 010 011 100 101 110 00 1110 1111.
        let codes = codes(&[3, 3, 3, 3, 3, 2, 4, 4]);
        let msb_first: Vec<u16> =
            codes.iter().zip([3u32, 3, 3, 3, 3, 2, 4, 4]).map(|(&c, l)| c.reverse_bits() >> (16 - l)).collect();
        assert_eq!(msb_first, [0b010, 0b011, 0b100, 0b101, 0b110, 0b00, 0b1110, 0b1111]);
    }
}
