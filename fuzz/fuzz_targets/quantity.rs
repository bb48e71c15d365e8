//! Any string: parsing never panics; a parsed quantity converts to the nearest f64 (as
//! the standard library's decimal parser rounds its nano-units), and its canonical form
//! parses back to the same value. A string that starts with a digit reads as it does with
//! a `+` before it, which takes the general path past the shortcut for digits and a suffix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msp_core::Quantity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = text.parse::<Quantity>();
    if text.starts_with(|c: char| c.is_ascii_digit()) {
        let general = format!("+{text}").parse::<Quantity>();
        assert_eq!(parsed.as_ref().ok(), general.as_ref().ok(), "{text:?}");
    }
    match parsed {
        Ok(q) => {
            let f = q.as_f64();
            assert!(!f.is_nan(), "{text:?} gave NaN");
            let nearest: f64 = format!("{}e-9", q.nanos()).parse().expect("a decimal number");
            assert_eq!(f, nearest, "{text:?}");
            let back: Quantity = q.to_string().parse().expect("canonical form parses");
            assert_eq!(back, q, "{text:?}");
        }
        Err(e) => assert_eq!(e.input, text),
    }
});
