//! Any string: parsing never panics; a parsed quantity converts, and its canonical form
//! parses back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::Quantity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.parse::<Quantity>() {
        Ok(q) => {
            let f = q.as_f64();
            assert!(!f.is_nan(), "{text:?} gave NaN");
            let back: Quantity = q.to_string().parse().expect("canonical form parses");
            assert_eq!(back, q, "{text:?}");
        }
        Err(e) => assert_eq!(e.input, text),
    }
});
