//! A deflate encoder (RFC 1951) for text that repeats from line to line, as an exposition
//! does: every series of a family carries the same label names, and neighbouring series
//! mostly the same values.
//!
//! A general-purpose compressor hashes every position to find repeats. This one compares
//! each line only with the line before it, a field at a time (a field ends at `"` or at the
//! end of the line): the common prefix becomes one back-reference, a field that differs
//! becomes literals up to the part it shares with the other line's field, and the two lines
//! are realigned at the next field, or, where one line has a label the other lacks, at the
//! label of the same name. Each symbol is written as it is found, so nothing waits to be
//! written: a block's Huffman codes are built from what the block before it said (the
//! first block has deflate's fixed codes), and every symbol keeps a code, in case it comes
//! back. At 10,000 pods this takes about a third of the time miniz_oxide takes at
//! its fastest level, for a similar size (see the README's Benchmark).
//!
//! Only runs of bytes checked equal become references, so any input comes back whole; the
//! structure of the text decides only how small it gets.

use crate::huffman;
use crate::swar::{bytes_equal, word};

/// How far back a reference may reach.
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Bytes a block writes, at least, before the next begins (at the end of a line), with codes
/// built from its counts.
const BLOCK_BYTES: usize = 64 * 1024;
/// The first block's, which has the fixed codes.
const FIRST_BLOCK_BYTES: usize = 2 * 1024;
const END_OF_BLOCK: usize = 256;

const LEN_BASE: [u16; 29] =
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA: [u8; 29] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145,
    8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] =
    [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
/// The order in which a dynamic block header gives the code-length code's lengths.
const CODE_LENGTH_ORDER: [usize; 19] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/// The length code (0..29, before adding 257) of each match length, at `length - 3`.
const LEN_CODE: [u8; 256] = len_codes();

const fn len_codes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let (mut code, mut len) = (0, MIN_MATCH);
    while len <= MAX_MATCH {
        while code + 1 < LEN_BASE.len() && LEN_BASE[code + 1] as usize <= len {
            code += 1;
        }
        table[len - MIN_MATCH] = code as u8;
        len += 1;
    }
    table
}

/// The distance code (0..30) of a distance of 1..=32768.
fn dist_code(dist: usize) -> usize {
    if dist <= 4 {
        return dist - 1;
    }
    let d = dist - 1;
    let top = (usize::BITS - 1 - d.leading_zeros()) as usize;
    2 * top + ((d >> (top - 1)) & 1)
}

/// How many bytes `a` and `b` share at their start.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut i = 0;
    // Most of a line is the line before it: 32 bytes a step (compared as arrays, which
    // the compiler does a vector at a time), then the word where they differ.
    for (x, y) in a.chunks_exact(32).zip(b.chunks_exact(32)) {
        // Always arrays (`as_chunks` would say so, from Rust 1.88; we build on 1.85).
        let (Ok(x), Ok(y)) = (<&[u8; 32]>::try_from(x), <&[u8; 32]>::try_from(y)) else { break };
        if x != y {
            break;
        }
        i += 32;
    }
    while i + 8 <= n {
        let differ = word(&a[i..i + 8]) ^ word(&b[i..i + 8]);
        if differ != 0 {
            return i + (differ.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// How many bytes `a` and `b` share at their end.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let mut same = 0;
    while same + 8 <= n {
        let (x, y) = (n - same - 8, n - same);
        let differ = word(&a[x..y]) ^ word(&b[x..y]);
        if differ != 0 {
            return same + (differ.leading_zeros() / 8) as usize;
        }
        same += 8;
    }
    while same < n && a[n - same - 1] == b[n - same - 1] {
        same += 1;
    }
    same
}

/// What ends a field: `"` or a newline.
fn delimiter(c: u8) -> bool {
    c == b'"' || c == b'\n'
}

/// The length of the field `s` starts with: up to its first [`delimiter`].
fn field_len(s: &[u8]) -> usize {
    let mut i = 0;
    while i + 8 <= s.len() {
        let w = word(&s[i..i + 8]);
        let found = bytes_equal(w, b'"') | bytes_equal(w, b'\n');
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < s.len() && !delimiter(s[i]) {
        i += 1;
    }
    i
}

/// Where [`Blocks::line`] goes on from a label name that differs from the line before's.
enum Realigned {
    /// Not a label name, in either line (or not read as one).
    No,
    /// At this byte of prev: the same name, further along.
    At(usize),
    /// Prev lacks the name: its value runs to the next `"`, at `cur[value_end]`, and prev's
    /// first name after it in order begins at `prev[next]`.
    Absent { value_end: usize, next: usize },
}

/// Where to go on from `cur[i]` and `prev[j]` (where the lines stopped sharing) when each is
/// in a label's name (a field `,name=`, then `"`: `cur[..field_end]`, `prev[..prev_end]`)
/// and the two names began at the same place. A pod with another workload's labels often
/// has a name more, or one fewer, than the line before; the names after it would then each
/// be compared with the next one's, and every field of the rest of the line differ. A
/// line's labels come sorted by their keys (the API sorts a map's keys, and the enrichers
/// keep or make that order), which is mostly the byte order of their names (`-`, `.` and `/`
/// become `_`), so a merge of the two lines' names, without their `=`, finds the same name
/// in prev, or that prev lacks it. Where the order is not the names', the lines only share
/// less.
///
/// `passed`: where the names of prev not yet passed over begin. Those before it sorted
/// before a name this line had before this one, so before this one too: a line passes over
/// each of prev's names once, however many labels differ (`usize::MAX` once past its last).
#[inline(never)]
fn realigned(
    prev: &[u8],
    cur: &[u8],
    (i, j): (usize, usize),
    (field_end, prev_end): (usize, usize),
    passed: &mut usize,
) -> Realigned {
    // Where the name `s[at]` is in begins.
    let is_name = |s: &[u8], at: usize, end: usize| match end > at && s.get(end) == Some(&b'"') && s[end - 1] == b'=' {
        true => s[..at].iter().rposition(|&b| b == b'"').map(|q| q + 1),
        false => None,
    };
    let (Some(start), Some(pstart)) = (is_name(cur, i, field_end), is_name(prev, j, prev_end)) else {
        return Realigned::No;
    };
    if cur[start] != b',' || prev[pstart] != b',' || i - start != j - pstart {
        return Realigned::No;
    }
    // Without the `=`, which sorts after the digits: `app` before `app2`, as their keys.
    let name = &cur[start..field_end - 1];
    let (mut at, mut end) = (pstart, prev_end);
    loop {
        match name.cmp(&prev[at..end - 1]) {
            std::cmp::Ordering::Equal => return Realigned::At(at + (i - start)),
            std::cmp::Ordering::Less => {
                let value_end = field_end + 1 + field_len(&cur[field_end + 1..]);
                return match cur.get(value_end) {
                    Some(b'"') => Realigned::Absent { value_end, next: at },
                    _ => Realigned::No,
                };
            }
            // Prev's name is not in cur: on to its next, past its value (or on from where
            // an earlier name of this line left off).
            std::cmp::Ordering::Greater => {
                if *passed == usize::MAX {
                    return Realigned::No;
                }
                at = match *passed > at {
                    true => *passed,
                    false => end + 1 + field_len(&prev[end + 1..]) + 1,
                };
                end = at + field_len(&prev[at.min(prev.len())..]);
                if end >= prev.len() || prev[at] != b',' || prev[end] != b'"' || prev[end - 1] != b'=' {
                    *passed = usize::MAX;
                    return Realigned::No;
                }
                *passed = at;
            }
        }
    }
}

/// A block's codes, looked up once per symbol: each literal's bits and their count, each
/// match length's (its extra bits included), and each distance code's bits, their count,
/// and their count with the extra bits.
struct Codes {
    literal: [(u32, u32); 256],
    length: [(u32, u32); 256],
    distance: [(u32, u32, u32); 30],
    end: (u32, u32),
}

impl Codes {
    /// The codes whose lengths are `lit_lens` (literals, end of block, lengths) and
    /// `dist_lens`.
    fn new(lit_lens: &[u8], dist_lens: &[u8]) -> Self {
        let (lit_codes, dist_codes) = (huffman::codes(lit_lens), huffman::codes(dist_lens));
        let code = |s: usize| (u32::from(lit_codes[s]), u32::from(lit_lens[s]));
        let mut codes =
            Codes { literal: [(0, 0); 256], length: [(0, 0); 256], distance: [(0, 0, 0); 30], end: code(END_OF_BLOCK) };
        for (s, row) in codes.literal.iter_mut().enumerate() {
            *row = code(s);
        }
        for (len, row) in (MIN_MATCH..=MAX_MATCH).zip(codes.length.iter_mut()) {
            let lc = LEN_CODE[len - MIN_MATCH] as usize;
            let (code, bits) = code(257 + lc);
            *row = (code | ((len - LEN_BASE[lc] as usize) as u32) << bits, bits + u32::from(LEN_EXTRA[lc]));
        }
        for (d, row) in codes.distance.iter_mut().enumerate() {
            let bits = u32::from(dist_lens[d]);
            *row = (u32::from(dist_codes[d]), bits, bits + u32::from(DIST_EXTRA[d]));
        }
        codes
    }

    /// Deflate's fixed codes (RFC 1951, 3.2.6), which a block's header need not give.
    fn fixed() -> Self {
        let lit_lens: Vec<u8> = (0..288)
            .map(|s| match s {
                0..=143 => 8,
                144..=255 => 9,
                256..=279 => 7,
                _ => 8,
            })
            .collect();
        Codes::new(&lit_lens, &[5; 32])
    }
}

/// A reference's distance as the block's codes say it: `index` is its code (0..30), `bits`
/// the code and then the extra bits, `n` how many bits that is.
#[derive(Clone, Copy)]
struct Distance {
    dist: usize,
    index: usize,
    bits: u32,
    n: u32,
}

/// The bits written so far, the codes of the block being written, and how often it has
/// used each symbol: the next block's codes are built from those counts, so each symbol
/// is written as it is found, with nothing kept to write later.
///
/// Bits are gathered in a word and written without a branch on how many there are: all 8
/// bytes of the word are stored at `pos` (the stream not yet drained is `out[..pos]`; `out`
/// is kept at least 8 bytes longer, to take them, and what lies past `pos` is only ever
/// overwritten), and `pos` moves past the whole bytes. Whether a word is full after a symbol is as good
/// as random, and a branch on it was mispredicted about once in four literals.
struct Blocks {
    out: Vec<u8>,
    /// How many bytes of `out` are the stream.
    pos: usize,
    /// Bits not yet past `pos`, the first in the lowest; `nbits` of them (at most 7
    /// between symbols).
    bits: u64,
    nbits: u32,
    codes: Codes,
    /// Where the block being written began in `out`: once the stream is drained past it
    /// ([`Blocks::drain`]), an offset before `out`, wrapped, so that `pos - start`
    /// (wrapping) is still what the block has written.
    start: usize,
    /// How many bytes it takes before the next block begins (at the end of a line).
    budget: usize,
    lit_freq: [u32; 286],
    dist_freq: [u32; 30],
}

impl Blocks {
    /// Begins the first block after what `out` holds. It has the fixed codes, having no
    /// counts to build others from, and is short, so the next has counts soon.
    fn new(out: Vec<u8>) -> Self {
        let start = out.len();
        let mut blocks = Blocks {
            out,
            pos: start,
            bits: 0,
            nbits: 0,
            codes: Codes::fixed(),
            start,
            budget: FIRST_BLOCK_BYTES,
            lit_freq: [0; 286],
            dist_freq: [0; 30],
        };
        // Not the last block (0), fixed codes (01).
        blocks.put(0b010, 3);
        blocks
    }

    /// Appends the `n` low bits of `value` (which has no others set), least significant first.
    fn put(&mut self, value: u32, n: u32) {
        self.add(value, n);
        self.flush();
    }

    /// [`Blocks::put`] without the [`Blocks::flush`]: between two flushes at most 56 bits may
    /// be added (up to 7 wait after one), 63 in all.
    #[inline(always)]
    fn add(&mut self, value: u32, n: u32) {
        debug_assert!(self.nbits + n <= 63, "{} bits waiting, {n} more", self.nbits);
        self.bits |= u64::from(value) << self.nbits;
        self.nbits += n;
    }

    /// Moves the whole bytes of the waiting bits into the stream, keeping the 0-7 left.
    #[inline(always)]
    fn flush(&mut self) {
        let end = self.pos + 8;
        if end > self.out.len() {
            self.grow(end);
        }
        self.out[self.pos..end].copy_from_slice(&self.bits.to_le_bytes());
        let bytes = self.nbits / 8;
        self.pos += bytes as usize;
        // At most 7 bytes: fewer than 64 bits are ever waiting.
        self.bits >>= bytes * 8;
        self.nbits &= 7;
    }

    /// Room past `need`, 64 KiB at a time: `out` only grows, so over a stream this writes
    /// about its length in zeros (which `resize` must write; they are then overwritten).
    #[cold]
    #[inline(never)]
    fn grow(&mut self, need: usize) {
        self.out.resize(need + 64 * 1024, 0);
    }

    fn literal(&mut self, byte: u8) {
        self.add_literal(byte);
        self.flush();
    }

    /// A literal's bits, waiting: up to three fit (15 bits each at most).
    #[inline(always)]
    fn add_literal(&mut self, byte: u8) {
        let (code, n) = self.codes.literal[byte as usize];
        self.add(code, n);
        // Wrapping: past 2^32 uses in one block (a line of gigabytes) a count only loses
        // precision, and the next block's codes still cover every symbol.
        self.lit_freq[byte as usize] = self.lit_freq[byte as usize].wrapping_add(1);
    }

    /// Literals, three to a flush.
    fn literals(&mut self, bytes: &[u8]) {
        let mut threes = bytes.chunks_exact(3);
        for three in threes.by_ref() {
            for &b in three {
                self.add_literal(b);
            }
            self.flush();
        }
        for &b in threes.remainder() {
            self.add_literal(b);
        }
        self.flush();
    }

    /// A reference to `len` (>= 3) bytes `dist` back, split into pieces deflate can say.
    /// `last` holds the distance the last reference of the line took, as the codes say it:
    /// most of a line's references reach back as far as the one before.
    fn reference(&mut self, mut len: usize, dist: usize, last: &mut Distance) {
        debug_assert!(len >= MIN_MATCH);
        if last.dist != dist {
            let index = dist_code(dist);
            let (code, bits, n) = self.codes.distance[index];
            let extra = (dist - DIST_BASE[index] as usize) as u32;
            *last = Distance { dist, index, bits: code | extra << bits, n };
        }
        // Pieces of at most 258 bytes, none left shorter than 3.
        while len > MAX_MATCH {
            let piece = if len - MAX_MATCH < MIN_MATCH { len - MIN_MATCH } else { MAX_MATCH };
            self.piece(piece, *last);
            len -= piece;
        }
        self.piece(len, *last);
    }

    /// One reference of `len` (3..=258) bytes, at `distance`.
    fn piece(&mut self, len: usize, distance: Distance) {
        // A length with its extra bits takes at most 20, a distance 28: one flush.
        let (code, n) = self.codes.length[len - MIN_MATCH];
        self.add(code, n);
        self.add(distance.bits, distance.n);
        self.flush();
        let length = 257 + LEN_CODE[len - MIN_MATCH] as usize;
        self.lit_freq[length] = self.lit_freq[length].wrapping_add(1);
        self.dist_freq[distance.index] = self.dist_freq[distance.index].wrapping_add(1);
    }

    /// Encodes the line at the start of `cur` (up to and including its first newline, or
    /// all of `cur` if it has none), `prev` being the bytes just before it in the stream:
    /// the line before, or the part of a long line already written (`prev` has no newline
    /// but, perhaps, its last byte). Returns how many bytes it took.
    fn line(&mut self, prev: &[u8], cur: &[u8]) -> usize {
        let (mut i, mut j) = (0, 0);
        // No reference reaches 0 bytes back, so none takes this for its own. It holds bits
        // of this block's codes: blocks change only between lines.
        let mut last = Distance { dist: 0, index: 0, bits: 0, n: 0 };
        // Where [`realigned`] has passed over prev's label names to.
        let mut passed = 0;
        while i < cur.len() {
            // cur[i] is this far after prev[j] in the stream.
            let dist = prev.len() - j + i;
            if dist > WINDOW {
                // Out of reach (lines longer than the window): the rest of the line as it is.
                let end = cur[i..].iter().position(|&b| b == b'\n').map_or(cur.len(), |p| i + p + 1);
                self.literals(&cur[i..end]);
                i = end;
                break;
            }
            if cur[i] == b'\n' {
                // prev's only newline is its last byte: they share at most this one.
                self.literal(b'\n');
                i += 1;
                break;
            }
            let same = common_prefix(&cur[i..], &prev[j..]);
            if same >= MIN_MATCH {
                self.reference(same, dist, &mut last);
                i += same;
                j += same;
                // prev's only newline is its last byte, so a reference ends with cur's.
                if cur[i - 1] == b'\n' || i == cur.len() {
                    break;
                }
                // The bytes here differ (or prev has ended): on to the field, without
                // comparing them again.
            }
            if let (Some(&a), Some(&b)) = (cur.get(i + 1), prev.get(j + 1)) {
                if a == b && delimiter(a) && !delimiter(cur[i]) && !delimiter(prev[j]) {
                    // A field differing in its last byte only (a digit, mostly), as the
                    // steps below would find it, without scanning.
                    self.literal(cur[i]);
                    i += 1;
                    j += 1;
                    continue;
                }
            }
            let field_end = i + field_len(&cur[i..]);
            let prev_end = j + field_len(&prev[j..]);
            if field_end == i {
                // A delimiter here but not in prev: realign after prev's next one.
                let b = cur[i];
                self.literal(b);
                i += 1;
                if prev_end < prev.len() {
                    j = prev_end + 1;
                }
                if b == b'\n' {
                    break;
                }
                continue;
            }
            // Checked here first, as the call is seldom worth making.
            let name_ends = cur[field_end - 1] == b'=' && cur.get(field_end) == Some(&b'"');
            let realign = match name_ends {
                true => realigned(prev, cur, (i, j), (field_end, prev_end), &mut passed),
                false => Realigned::No,
            };
            match realign {
                Realigned::No => {}
                Realigned::At(k) => {
                    // The same label further along in prev: compare with it.
                    j = k;
                    continue;
                }
                Realigned::Absent { value_end, next } => {
                    // A label prev lacks: it and its value as they are, then the next
                    // against prev's next.
                    self.literals(&cur[i..=value_end]);
                    i = value_end + 1;
                    j = next;
                    continue;
                }
            }
            // The fields differ: literals up to what they share at their end.
            let shared = common_suffix(&cur[i..field_end], &prev[j..prev_end]).min(field_end - i - 1);
            self.literals(&cur[i..field_end - shared]);
            i = field_end - shared;
            j = prev_end - shared;
        }
        self.next_block_if_due();
        i
    }

    /// Ends the block once it has written its budget, and begins the next, with codes built
    /// from this one's counts. Each count is one more than the symbol's uses, so the next
    /// block can say any symbol, if at more bits for those this one never used. Only here,
    /// at the end of a line, do the codes change (a line's references keep their distance's
    /// bits).
    fn next_block_if_due(&mut self) {
        if self.pos.wrapping_sub(self.start) >= self.budget {
            self.next_block();
        }
    }

    /// [`Blocks::next_block_if_due`]'s work, once a block in many lines: kept out of
    /// [`Blocks::line`], whose loop it would crowd.
    #[cold]
    #[inline(never)]
    fn next_block(&mut self) {
        self.put(self.codes.end.0, self.codes.end.1);
        let lit_lens = huffman::lengths(&self.lit_freq.map(|f| f.saturating_add(1)), 15);
        let dist_lens = huffman::lengths(&self.dist_freq.map(|f| f.saturating_add(1)), 15);
        self.header(&lit_lens, &dist_lens);
        self.codes = Codes::new(&lit_lens, &dist_lens);
        self.lit_freq = [0; 286];
        self.dist_freq = [0; 30];
        self.start = self.pos;
        self.budget = BLOCK_BYTES;
    }

    /// The header of a block (not the last) with dynamic codes of these lengths.
    fn header(&mut self, lit_lens: &[u8], dist_lens: &[u8]) {
        let hlit = lit_lens.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1).max(257);
        let hdist = dist_lens.iter().rposition(|&l| l > 0).map_or(0, |p| p + 1).max(1);
        let mut lens = lit_lens[..hlit].to_vec();
        lens.extend_from_slice(&dist_lens[..hdist]);
        let runs = run_lengths(&lens);
        let mut cl_freq = [0u32; 19];
        for &(symbol, _) in &runs {
            cl_freq[symbol as usize] += 1;
        }
        let cl_lens = huffman::lengths(&cl_freq, 7);
        let cl_codes = huffman::codes(&cl_lens);
        let hclen = CODE_LENGTH_ORDER.iter().rposition(|&s| cl_lens[s] > 0).map_or(0, |p| p + 1).max(4);

        // Not the last block (0), dynamic codes (10).
        self.put(0b100, 3);
        self.put((hlit - 257) as u32, 5);
        self.put((hdist - 1) as u32, 5);
        self.put((hclen - 4) as u32, 4);
        for &s in &CODE_LENGTH_ORDER[..hclen] {
            self.put(u32::from(cl_lens[s]), 3);
        }
        for &(symbol, extra) in &runs {
            let s = symbol as usize;
            self.put(u32::from(cl_codes[s]), u32::from(cl_lens[s]));
            match symbol {
                16 => self.put(u32::from(extra), 2),
                17 => self.put(u32::from(extra), 3),
                18 => self.put(u32::from(extra), 7),
                _ => {}
            }
        }
    }

    /// Hands the stream's whole bytes so far to `into` and empties `out` of them: only the
    /// bits still waiting (under a byte) stay, so a stream sent as it is written holds no
    /// more than one write's output at a time.
    fn drain(&mut self, into: &mut Vec<u8>) {
        into.extend_from_slice(&self.out[..self.pos]);
        self.start = self.start.wrapping_sub(self.pos);
        self.pos = 0;
    }

    /// Ends the block being written, then the stream with an empty last block (with the
    /// fixed codes: 1, 01, then end-of-block, 0000000), and returns the buffer.
    fn finish(mut self) -> Vec<u8> {
        self.put(self.codes.end.0, self.codes.end.1);
        self.put(0b011, 3);
        self.put(0, 7);
        // The last flush stored the bits left over too, padded with zeros to a byte.
        let end = self.pos + (self.nbits as usize).div_ceil(8);
        self.out.truncate(end);
        self.out
    }
}

/// Code lengths as a dynamic block header says them: `(symbol, extra bits)`, with 16
/// (repeat the last length 3-6 times), 17 (3-10 zeros) and 18 (11-138 zeros).
fn run_lengths(lens: &[u8]) -> Vec<(u8, u8)> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < lens.len() {
        let len = lens[i];
        let run = lens[i..].iter().take_while(|&&l| l == len).count();
        let mut left = run;
        if len == 0 {
            while left >= 11 {
                let n = left.min(138);
                runs.push((18, (n - 11) as u8));
                left -= n;
            }
            if left >= 3 {
                runs.push((17, (left - 3) as u8));
                left = 0;
            }
        } else if run >= 4 {
            runs.push((len, 0));
            left -= 1;
            while left >= 3 {
                let n = left.min(6);
                runs.push((16, (n - 3) as u8));
                left -= n;
            }
        }
        runs.extend(std::iter::repeat_n((len, 0), left));
        i += run;
    }
    runs
}

/// A raw deflate stream, fed text as it is written.
pub(crate) struct Deflate {
    blocks: Blocks,
    /// The last whole line written (or the last part of a long one): what the next bytes
    /// are compared with.
    prev: Vec<u8>,
    /// A line begun but not yet ended, at most [`PENDING_MAX`] bytes.
    pending: Vec<u8>,
}

/// A line that has not ended by this length is compressed as far as it goes.
const PENDING_MAX: usize = 64 * 1024;

impl Deflate {
    /// Writes the stream after what `out` already holds.
    pub(crate) fn new(out: Vec<u8>) -> Self {
        Deflate { blocks: Blocks::new(out), prev: Vec::new(), pending: Vec::new() }
    }

    /// Compresses `data`, the next bytes of the text.
    pub(crate) fn write(&mut self, mut data: &[u8]) {
        if !self.pending.is_empty() {
            let Some(end) = data.iter().position(|&b| b == b'\n') else {
                self.pend(data);
                return;
            };
            self.pending.extend_from_slice(&data[..=end]);
            data = &data[end + 1..];
            self.blocks.line(&self.prev, &self.pending);
            std::mem::swap(&mut self.prev, &mut self.pending);
            self.pending.clear();
        }
        let Some(last) = data.iter().rposition(|&b| b == b'\n') else {
            self.pend(data);
            return;
        };
        let (whole, rest) = data.split_at(last + 1);
        let mut start = 0;
        let mut prev_line: Option<(usize, usize)> = None;
        while start < whole.len() {
            let prev = prev_line.map_or(&self.prev[..], |(a, b)| &whole[a..b]);
            let n = self.blocks.line(prev, &whole[start..]);
            prev_line = Some((start, start + n));
            start += n;
        }
        if let Some((a, b)) = prev_line {
            self.prev.clear();
            self.prev.extend_from_slice(&whole[a..b]);
        }
        self.pend(rest);
    }

    /// Keeps `data`, the start of a line, until its end arrives; past [`PENDING_MAX`] it is
    /// compressed now, and becomes what the rest is compared with.
    fn pend(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        if self.pending.len() > PENDING_MAX {
            self.blocks.line(&self.prev, &self.pending);
            std::mem::swap(&mut self.prev, &mut self.pending);
            self.pending.clear();
        }
    }

    /// Hands the stream's whole bytes so far to `into` (see [`Blocks::drain`]); a line not
    /// yet ended is not compressed until it is.
    pub(crate) fn drain(&mut self, into: &mut Vec<u8>) {
        self.blocks.drain(into);
    }

    /// Ends the stream and returns what of it was not drained.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let mut taken = 0;
        while taken < self.pending.len() {
            taken += self.blocks.line(&self.prev, &self.pending[taken..]);
        }
        self.blocks.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `packed` inflated: a whole deflate stream, ending at its last byte.
    fn inflate(packed: &[u8]) -> Vec<u8> {
        let mut decoder = flate2::Decompress::new(false);
        let mut out = Vec::with_capacity(packed.len() * 4 + 1024);
        loop {
            let (taken, given) = (decoder.total_in(), decoder.total_out());
            let status = decoder
                .decompress_vec(&packed[taken as usize..], &mut out, flate2::FlushDecompress::None)
                .expect("a valid deflate stream");
            if status == flate2::Status::StreamEnd {
                break;
            }
            let stuck = decoder.total_in() == taken && decoder.total_out() == given;
            assert!(!stuck || out.len() == out.capacity(), "the stream ends before its last block");
            out.reserve(out.capacity());
        }
        assert_eq!(decoder.total_in(), packed.len() as u64, "bytes after the last block");
        out
    }

    /// Compresses `text` in writes of `piece` bytes.
    fn deflate(text: &[u8], piece: usize) -> Vec<u8> {
        let mut d = Deflate::new(Vec::new());
        for part in text.chunks(piece.max(1)) {
            d.write(part);
        }
        d.finish()
    }

    /// A small deterministic generator (xorshift), so failures repeat.
    fn random(seed: u64, len: usize, alphabet: &[u8]) -> Vec<u8> {
        let mut x = seed.max(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    fn exposition(series: usize) -> Vec<u8> {
        let mut text = String::from("# HELP kube_metrics_server_container_cpu_usage_cores CPU.\n# TYPE kube_metrics_server_container_cpu_usage_cores gauge\n");
        for i in 0..series {
            let pod = i / 2;
            text.push_str(&format!(
                "kube_metrics_server_container_cpu_usage_cores{{namespace=\"ns-{:03}\",pod=\"app-{}-5d78c9869d-{pod:06}\",container=\"{}\",node=\"node-{:05}\",pod_ip=\"10.100.{}.{}\",label_app=\"app-{}\",escaped=\"a\\\"b\"}} {}\n",
                pod / 10 % 50,
                pod / 10,
                if i % 2 == 0 { "app" } else { "sidecar" },
                pod % 100,
                pod / 256 % 256,
                pod % 256,
                pod / 10,
                0.001 + i as f64 * 1.7e-8,
            ));
        }
        text.push_str("# EOF\n");
        text.into_bytes()
    }

    #[test]
    fn round_trips_blocks_whose_codes_must_be_cut_to_15_bits() {
        // Lines of literals, byte k drawn with chance 2^-(k+1): a block's counts halve from
        // one byte to the next, so the next block's unlimited code would be a chain over
        // them (and the once-used rest below it) far deeper than 15 bits.
        let alphabet = b"etaoinshrdlucmfwypvbgkqjxz";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut text = Vec::new();
        while text.len() < 1_000_000 {
            for _ in 0..99 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push(alphabet[(x.trailing_zeros() as usize).min(alphabet.len() - 1)]);
            }
            text.push(b'\n');
        }
        let packed = deflate(&text, 4096);
        // Blocks of 64 KiB after the first: several have codes built from such counts.
        assert!(packed.len() > 3 * BLOCK_BYTES, "{} bytes", packed.len());
        assert_eq!(inflate(&packed), text);
    }

    #[test]
    fn round_trips_whatever_the_text_and_however_it_is_split() {
        let long_line: Vec<u8> = random(7, 100_000, b"ab\"");
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\n".to_vec(),
            b"no newline at all".to_vec(),
            b"a\"b\"c\n\n\n\"\"\"\n".to_vec(),
            exposition(3000),
            vec![b'x'; 70_000],
            // Lines equal to the one before: references of 258 bytes (length code 285),
            // and the split of longer ones, none left shorter than 3.
            [256, 257, 258, 259, 260, 261, 262, 516, 517, 518, 519, 1500]
                .iter()
                .flat_map(|&len| [vec![b'z'; len], b"\n".to_vec()].concat().repeat(4))
                .collect(),
            [vec![b'y'; 40_000], b"\n".to_vec(), vec![b'y'; 40_000], b"\n".to_vec()].concat(),
            long_line.clone(),
            [long_line.clone(), b"\n".to_vec(), long_line].concat(),
        ];
        for seed in 1..16 {
            cases.push(random(seed, 2_000 + seed as usize * 97, b"aab\"\n=,{}0123"));
            cases.push(random(seed, 1_000, &(0..=255).collect::<Vec<u8>>()));
        }
        for text in &cases {
            for piece in [usize::MAX, 4096, 333, 7, 1] {
                if piece < 64 && text.len() > 5_000 {
                    continue;
                }
                let packed = deflate(text, piece.min(text.len().max(1)));
                assert!(inflate(&packed) == *text, "{} bytes in pieces of {piece}", text.len());
            }
        }
    }

    #[test]
    fn a_line_that_never_ends_takes_bounded_memory() {
        let huge: Vec<u8> = random(3, 1 << 20, b"ab\"=,");
        // Empty lines, each a literal newline.
        let empty = vec![b'\n'; 1 << 20];
        for text in [huge.clone(), [huge.clone(), b"\n".to_vec(), huge.clone()].concat(), empty] {
            for piece in [1000, 1 << 21] {
                let mut d = Deflate::new(Vec::new());
                for part in text.chunks(piece) {
                    d.write(part);
                    // The pending line is all it keeps: each symbol is written as it is found.
                    assert!(d.pending.len() <= PENDING_MAX + piece, "pending {}", d.pending.len());
                }
                assert!(inflate(&d.finish()) == text, "pieces of {piece}");
            }
        }
    }

    #[test]
    fn a_block_can_say_what_the_block_before_it_never_said() {
        // Sections of lines of different alphabets, each several blocks long (random bytes
        // hardly compress), so a block's codes come from counts that lack its symbols; then
        // an exposition, so references come after blocks without any.
        let mut text = Vec::new();
        let sections: [(u64, Vec<u8>); 3] =
            [(1, (b'a'..=b'p').collect()), (2, (128..=255).collect()), (3, b"0123456789=,{}".to_vec())];
        for (seed, alphabet) in sections {
            let mut section = random(seed, 8 * BLOCK_BYTES, &alphabet);
            for end in section.iter_mut().skip(999).step_by(1000) {
                *end = b'\n';
            }
            text.extend(section);
        }
        text.extend(exposition(2000));
        for piece in [usize::MAX, 1000] {
            let packed = deflate(&text, piece);
            assert!(inflate(&packed) == text, "pieces of {piece}");
            // A block ends within a line of its budget, and no line here writes 1000 bytes.
            assert!(packed.len() / (BLOCK_BYTES + 1000) >= 10, "only {} bytes", packed.len());
        }
    }

    #[test]
    fn an_exposition_compresses_like_gzip_at_its_fastest_level() {
        let text = exposition(40_000);
        let ours = deflate(&text, 1 << 20).len();
        let mut miniz = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut miniz, &text).expect("compress");
        let theirs = miniz.finish().expect("compress").len();
        assert!(ours * 10 < text.len(), "at least 10x: {ours} of {}", text.len());
        assert!(ours < theirs * 3 / 2, "ours {ours}, miniz_oxide level 1 {theirs}");
    }

    /// Series whose labels are a subset of `names` (in their order), drawn by `keep` for each
    /// line, with values that differ from line to line.
    fn series_of_labels(lines: usize, names: &[&str], keep: impl Fn(usize, usize) -> bool) -> Vec<u8> {
        let mut text = String::new();
        for line in 0..lines {
            text.push_str(&format!(
                "kube_metrics_server_pod_cpu_usage_cores{{namespace=\"shop\",pod=\"web-{line:05}\""
            ));
            for (n, name) in names.iter().enumerate() {
                if keep(line, n) {
                    text.push_str(&format!(",label_{name}=\"value-of-{name}\""));
                }
            }
            text.push_str(&format!(",owner_kind=\"ReplicaSet\"}} {}\n", line * 7));
        }
        text.into_bytes()
    }

    #[test]
    fn a_line_with_a_label_more_or_fewer_than_the_one_before_shares_the_rest() {
        let names = ["app", "app_kubernetes_io_instance", "app_kubernetes_io_name", "team", "tier", "version"];
        let size = |text: &[u8]| {
            let packed = deflate(text, 4096);
            assert!(inflate(&packed) == text);
            packed.len()
        };
        let base = size(&series_of_labels(2000, &names, |_, _| true));
        assert!(base < 10 * 2000, "{base} bytes with the same labels on every line");
        // Every other line lacks a label in the middle, one more than the line before it has.
        // That label is literals, some 55 bytes every other line; the rest of the line is
        // shared. Comparing each label with the next one's instead made the rest of the line
        // literals too: 71 bytes a line.
        let fewer = size(&series_of_labels(2000, &names, |line, n| line % 2 == 0 || n != 2));
        assert!(fewer < 30 * 2000, "one fewer: {fewer} bytes, {base} with the same labels on every line");
        // Names whose order is not their bytes' with the `=`: `app=` after `app2=`.
        let names = ["app", "app2", "team", "tier"];
        let digits = size(&series_of_labels(2000, &names, |line, n| line % 2 == 0 || n != 0));
        assert!(digits < 18 * 2000, "`app` before `app2`: {digits} bytes");
    }

    #[test]
    fn labels_out_of_order_or_names_that_look_alike_still_round_trip() {
        let mut cases = vec![
            // Names not sorted: the merge misjudges which a line lacks, and only shares less.
            series_of_labels(300, &["tier", "app", "version", "team"], |line, n| (line + n) % 3 != 0),
            // A different set each line: the 3rd, 4th or 5th name left out, or none.
            series_of_labels(300, &["a", "b", "c", "d", "e", "f"], |line, n| n != 2 + line % 4),
            // One name a prefix of the next, names of digits, and a last value with no
            // closing quote.
            b"m{x=\"0\",a=\"1\",ab=\"2\",b=\"3\"\nm{x=\"0\",ab=\"2\",b=\"3\"\nm{x=\"0\",a=\"1\",b=\"3\n\
              m{x=\"0\",a=\"1\",a0=\"3\",a1=\"3\",c=\"\"\nm{x=\"0\",a0=\"3\",c=\"\nm{x=\"0\",a=\"1\",b=\"3\",c="
                .to_vec(),
        ];
        for seed in 1..32 {
            let alphabet = b",,==\"\"abc\n";
            cases.push(random(seed, 3_000, alphabet));
        }
        for text in &cases {
            for piece in [usize::MAX, 61, 5] {
                let packed = deflate(text, piece);
                assert!(inflate(&packed) == *text, "{:?} in pieces of {piece}", String::from_utf8_lossy(text));
            }
        }
    }

    #[test]
    fn lines_of_label_like_fragments_round_trip() {
        // Names that are prefixes of one another or end in digits or `=`, values with escaped
        // quotes or that look like names, stray `,` `=` `"`, unclosed values, lines without
        // a newline: whatever the merge makes of them, the text comes back whole.
        let names = ["a", "ab", "a0", "a_", "b", "", "abc", "a=", "z"];
        let values = ["1", "", "x\\\"y", "\\\\", "=", ",a=", "\\\",a=\\\"", "12"];
        for seed in 1..600u64 {
            let draw = random(seed, 400, &(0..=255).collect::<Vec<u8>>());
            let mut draws = draw.iter().map(|&b| usize::from(b));
            let mut next = |n: usize| draws.next().map_or(0, |d| d % n);
            let mut text = Vec::new();
            for _ in 0..40 {
                if next(3) == 0 {
                    text.extend_from_slice(b"m{");
                }
                for _ in 0..next(6) {
                    match next(10) {
                        0 => text.push(b','),
                        1 => text.push(b'='),
                        2 => text.push(b'"'),
                        _ => {
                            let (name, value) = (names[next(names.len())], values[next(values.len())]);
                            text.extend_from_slice(format!(",{name}=\"{value}").as_bytes());
                            if next(8) != 0 {
                                text.push(b'"');
                            }
                        }
                    }
                }
                text.extend_from_slice([&b""[..], b"} 1", b"} 1\n", b"} 1\n\n"][next(4)]);
            }
            for piece in [usize::MAX, 17, 1] {
                let packed = deflate(&text, piece);
                assert!(inflate(&packed) == text, "{:?} in pieces of {piece}", String::from_utf8_lossy(&text));
            }
        }
        // Lines longer than the window, their names shifting from line to line.
        let draw = random(99, 100_000, &(0..=255).collect::<Vec<u8>>());
        let mut text = Vec::new();
        for line in 0..6 {
            text.extend_from_slice(b"m{");
            for (k, d) in draw[line * 5000..(line + 1) * 5000].iter().enumerate() {
                if d % 3 != 0 {
                    text.extend_from_slice(format!(",label_{k:05}=\"v{}\"", d % 3).as_bytes());
                }
            }
            text.extend_from_slice(b"} 1\n");
        }
        for piece in [usize::MAX, 70_000, 999] {
            assert!(inflate(&deflate(&text, piece)) == text, "pieces of {piece}");
        }
    }

    #[test]
    fn codes_and_distances_match_the_tables() {
        for len in MIN_MATCH..=MAX_MATCH {
            let c = LEN_CODE[len - MIN_MATCH] as usize;
            assert!(len >= LEN_BASE[c] as usize && len - (LEN_BASE[c] as usize) < 1 << LEN_EXTRA[c], "{len}");
        }
        assert_eq!(LEN_CODE[MAX_MATCH - MIN_MATCH], 28, "258 has a code of its own");
        for dist in 1..=WINDOW {
            let c = dist_code(dist);
            assert!(dist >= DIST_BASE[c] as usize && dist - (DIST_BASE[c] as usize) < 1 << DIST_EXTRA[c], "{dist}");
        }
        let lens: Vec<u8> = [vec![0; 150], vec![5; 9], vec![0, 3, 0, 0], vec![8; 3]].concat();
        let expanded: Vec<u8> = run_lengths(&lens)
            .iter()
            .scan(0u8, |last, &(s, extra)| {
                let run = match s {
                    16 => vec![*last; extra as usize + 3],
                    17 => vec![0; extra as usize + 3],
                    18 => vec![0; extra as usize + 11],
                    l => vec![l],
                };
                if let Some(&l) = run.last() {
                    *last = l;
                }
                Some(run)
            })
            .flatten()
            .collect();
        assert_eq!(expanded, lens);
    }

    #[test]
    fn a_field_ends_at_its_first_quote_or_newline_wherever_it_lies() {
        // Bytes next to the delimiters and high bytes, which the word-at-a-time test must
        // not take for them.
        let fillers = [b'!', b'#', 0x0b, 0x09, 0xa2, 0x8a, 0x02, 0x20, 0xff, 0x00];
        for len in 0..40 {
            for end in [b'"', b'\n'] {
                for at in (0..len).chain([len]) {
                    let mut s: Vec<u8> = (0..len).map(|k| fillers[k % fillers.len()]).collect();
                    if at < len {
                        s[at] = end;
                        // A second delimiter after the first changes nothing.
                        if at + 3 < len {
                            s[at + 3] = b'"';
                        }
                    }
                    assert_eq!(field_len(&s), at, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn the_stream_follows_what_out_held() {
        let text = exposition(500);
        for mut out in [b"prefix".to_vec(), Vec::with_capacity(1 << 20)] {
            out.extend_from_slice(b"head");
            let kept = out.clone();
            let mut d = Deflate::new(out);
            d.write(&text);
            let packed = d.finish();
            assert_eq!(&packed[..kept.len()], &kept[..]);
            assert!(inflate(&packed[kept.len()..]) == text);
        }
    }

    #[test]
    fn the_longest_codes_fit_the_waiting_word() {
        // Every code of 15 bits, deflate's longest, and 7 bits waiting: a reference of 257
        // bytes (5 extra bits) at the farthest distance (13) is 48 bits, three literals 45;
        // the debug build checks that no more than 63 ever wait.
        let mut blocks = Blocks::new(Vec::new());
        blocks.codes = Codes::new(&[15; 286], &[15; 30]);
        let written = |b: &Blocks| b.pos * 8 + b.nbits as usize;
        blocks.put(0, 4);
        assert_eq!((written(&blocks), blocks.nbits), (3 + 4, 7));
        let mut last = Distance { dist: 0, index: 0, bits: 0, n: 0 };
        blocks.reference(MAX_MATCH - 1, WINDOW, &mut last);
        assert_eq!((written(&blocks), blocks.nbits), (7 + 15 + 5 + 15 + 13, 7));
        blocks.literals(b"xyz");
        assert_eq!(written(&blocks), 55 + 3 * 15);
    }

    #[test]
    fn the_common_prefix_ends_at_the_first_difference_wherever_it_lies() {
        for n in 0..=100 {
            let a: Vec<u8> = (0..n).map(|k| (k * 7 % 251) as u8).collect();
            assert_eq!(common_prefix(&a, &a), n);
            assert_eq!(common_prefix(&a, &a[..n / 2]), n / 2);
            for k in 0..n {
                let mut b = a.clone();
                b[k] ^= 0x20;
                assert_eq!(common_prefix(&a, &b), k, "{n} bytes, differing at {k}");
                assert_eq!(common_prefix(&b[..k + 1], &a), k);
            }
        }
    }

    #[test]
    fn prefix_and_suffix_count_equal_bytes() {
        assert_eq!(common_prefix(b"abcdefghijXk", b"abcdefghijYk"), 10);
        assert_eq!(common_prefix(b"abc", b"abcdef"), 3);
        assert_eq!(common_suffix(b"kXjihgfedcba", b"kYjihgfedcba"), 10);
        assert_eq!(common_suffix(b"def", b"abcdef"), 3);
        assert_eq!(common_suffix(b"", b"abc"), 0);
    }
}
