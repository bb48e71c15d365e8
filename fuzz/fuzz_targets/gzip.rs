//! Any bytes, written in any pieces: our gzip stream decodes (by flate2, an independent
//! inflater that checks the CRC and length) to exactly the bytes written.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use msp_core::Gzip;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the size of the writes, so splits land anywhere in a line.
    let Some((&split, text)) = data.split_first() else { return };
    let piece = usize::from(split) + 1;
    let mut gz = Gzip::new(Vec::new());
    for part in text.chunks(piece) {
        gz.write(part);
    }
    let packed = gz.finish();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&packed[..]).read_to_end(&mut out).expect("our stream decodes");
    assert!(out == text, "{} bytes in pieces of {piece} came back different", text.len());
});
