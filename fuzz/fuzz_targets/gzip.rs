//! Any bytes, written in any pieces, the stream drained after each or not: our gzip stream
//! decodes (by flate2, an independent inflater that checks the CRC and length) to exactly
//! the bytes written, and drained it is byte for byte the stream written whole.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use msp_core::Gzip;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the writes, so splits land anywhere in a line, and
    // (its lowest bit) whether the stream is drained after each, as the server sends it.
    let Some((&split, text)) = data.split_first() else { return };
    let piece = usize::from(split >> 1) + 1;
    let drain = split & 1 == 1;
    let mut gz = Gzip::new(Vec::new());
    let mut whole = Gzip::new(Vec::new());
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
