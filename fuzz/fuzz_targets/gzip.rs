//! Any bytes, written in any pieces, the stream drained after each or not: our gzip stream
//! decodes (by flate2, an independent inflater that checks the CRC and length) to exactly
//! the bytes written, and drained it is byte for byte the stream written whole. Mostly our
//! own encoder from the first byte (`Gzip::lines`): fuzzed inputs are small, and `Gzip::new`
//! gives a text that ends within 256 KiB to miniz_oxide.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use msp_core::Gzip;

fuzz_target!(|data: &[u8]| {
    // The first byte says (its lowest bit) whether the stream is drained after each write,
    // as the server sends it, and (the next two, one time in four) `Gzip::new` rather than
    // our own encoder throughout; the second, the size of the writes (1 to 256 bytes), so
    // that splits land anywhere in a line.
    let [flags, size, text @ ..] = data else { return };
    let piece = usize::from(*size) + 1;
    let drain = flags & 1 == 1;
    let new = if flags & 0b110 == 0b110 { Gzip::new } else { Gzip::lines };
    let mut gz = new(Vec::new());
    let mut whole = new(Vec::new());
    let mut packed = Vec::new();
    for part in text.chunks(piece) {
        gz.write(part);
        if drain {
            gz.drain(&mut packed);
            whole.write(part);
        }
    }
    packed.extend(gz.finish());
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut out).expect("our stream decodes");
    assert!(out == text, "{} bytes in pieces of {piece} came back different", text.len());
    if drain {
        assert!(packed == whole.finish(), "drained, the stream differs from the stream written whole");
    }
});
