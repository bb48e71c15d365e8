//! Kubernetes resource quantities (`7m`, `123456n`, `125448Ki`, `1e6`), parsed exactly.
//!
//! The grammar is apimachinery's (`k8s.io/apimachinery/pkg/api/resource`):
//!
//! ```text
//! quantity  ::= sign? number suffix
//! number    ::= digits | digits "." digits? | "." digits
//! suffix    ::= "" | n u m k M G T P E | Ki Mi Gi Ti Pi Ei | (e|E) sign? digits
//! ```
//!
//! The value is kept as a whole number of nano-units (`i128`), which is how apimachinery
//! itself treats quantities: anything finer than `1n` is rounded up (away from zero). Any
//! magnitude beyond `2^63 - 1` units saturates there (apimachinery caps only binary-suffixed
//! ones; no usage comes near). Sums of quantities are therefore exact, and
//! [`Quantity::as_f64`] rounds only once, correctly, at the very end.
//!
//! A quantity with no digit (`-`, `.`, `Ki`) is an error, as the grammar above says;
//! apimachinery's parser reads those as zero.

use std::fmt;
use std::str::FromStr;

/// Nano-units per unit.
const NANOS: i128 = 1_000_000_000;
/// apimachinery's largest quantity, `2^63 - 1` units, in nano-units.
const MAX_NANOS: u128 = (i64::MAX as u128) * 1_000_000_000;
/// Significant digits kept exactly; the rest only decide rounding (they can't matter otherwise).
const MAX_DIGITS: usize = 36;

/// A parsed quantity: an exact count of nano-units (nanocores for CPU, nanobytes for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    nanos: i128,
}

/// Why a string is not a quantity. Always carries the input it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {kind}")]
pub struct QuantityError {
    /// The text that failed to parse, as given.
    pub input: String,
    /// What was wrong with it.
    pub kind: QuantityErrorKind,
}

/// The ways a quantity can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityErrorKind {
    /// The string was empty.
    #[error("empty string")]
    Empty,
    /// No digit before the suffix (`"."`, `"-"`, `"Ki"`).
    #[error("no digits")]
    NoDigits,
    /// The suffix is not one apimachinery knows (`"1i"`, `"0.1mi"`, `"1 "`).
    #[error("unknown suffix {0:?}")]
    UnknownSuffix(String),
    /// An exponent too large to represent (`"1e99999999999"`).
    #[error("exponent out of range")]
    Overflow,
}

impl Quantity {
    /// The zero quantity.
    pub const ZERO: Quantity = Quantity { nanos: 0 };

    /// A quantity of exactly `nanos` nano-units.
    pub const fn from_nanos(nanos: i128) -> Self {
        Quantity { nanos }
    }

    /// The exact value in nano-units.
    pub const fn nanos(self) -> i128 {
        self.nanos
    }

    /// The value in whole units (cores, bytes) as the nearest `f64`.
    ///
    /// Exact whenever the value is representable as an `f64`; otherwise correctly rounded.
    pub fn as_f64(self) -> f64 {
        const EXACT: i128 = 1 << 53;
        // Up to 9.2 billion units (cores, or bytes: 9.2 GB) the nano-units fit in 64 bits:
        // the same steps in the machine's own arithmetic, which `as` rounds alike.
        if let Ok(nanos) = i64::try_from(self.nanos) {
            const N: i64 = NANOS as i64;
            if nanos % N == 0 {
                return (nanos / N) as f64;
            }
            if nanos.unsigned_abs() <= EXACT as u64 {
                return nanos as f64 / 1e9;
            }
        }
        let (whole, frac) = (self.nanos / NANOS, self.nanos % NANOS);
        if frac == 0 {
            // An integer; `as` rounds correctly for i128 -> f64.
            return whole as f64;
        }
        if self.nanos.unsigned_abs() <= EXACT as u128 {
            // Both operands exact, so IEEE division rounds the quotient correctly.
            return self.nanos as f64 / 1e9;
        }
        // Rare: large and fractional. Let the correctly rounded decimal parser do it.
        format!("{}e-9", self.nanos).parse().unwrap_or(f64::NAN)
    }

    /// The exact sum, saturating at apimachinery's bounds.
    pub fn saturating_add(self, other: Quantity) -> Quantity {
        let max = MAX_NANOS as i128;
        // Saturating first: a quantity made by `from_nanos` may be anything.
        Quantity { nanos: self.nanos.saturating_add(other.nanos).clamp(-max, max) }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input).map_err(|kind| QuantityError { input: input.to_owned(), kind })
    }
}

impl fmt::Display for Quantity {
    /// Canonical form: whole units when exact, nano-units (`n`) otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos % NANOS == 0 {
            write!(f, "{}", self.nanos / NANOS)
        } else {
            write!(f, "{}n", self.nanos)
        }
    }
}

/// How the suffix scales the number: `value = number * 10^pow10 * 2^pow2`.
struct Scale {
    pow10: i64,
    pow2: u32,
}

/// The scale of a named suffix (`n` to `E`, `Ki` to `Ei`), for both paths. Always inlined:
/// called, it costs the fast path a third of its instructions.
#[inline(always)]
fn named_scale(suffix: &[u8]) -> Option<Scale> {
    let dec = |pow10| Some(Scale { pow10, pow2: 0 });
    let bin = |pow2| Some(Scale { pow10: 0, pow2 });
    match suffix {
        b"n" => dec(-9),
        b"u" => dec(-6),
        b"m" => dec(-3),
        b"" => dec(0),
        b"k" => dec(3),
        b"M" => dec(6),
        b"G" => dec(9),
        b"T" => dec(12),
        b"P" => dec(15),
        b"E" => dec(18),
        b"Ki" => bin(10),
        b"Mi" => bin(20),
        b"Gi" => bin(30),
        b"Ti" => bin(40),
        b"Pi" => bin(50),
        b"Ei" => bin(60),
        _ => None,
    }
}

fn suffix_scale(suffix: &str) -> Result<Scale, QuantityErrorKind> {
    if let Some(scale) = named_scale(suffix.as_bytes()) {
        return Ok(scale);
    }
    let unknown = || QuantityErrorKind::UnknownSuffix(suffix.to_owned());
    let exp = suffix.strip_prefix(['e', 'E']).ok_or_else(unknown)?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let pow10: i32 = exp.parse().map_err(|_| QuantityErrorKind::Overflow)?;
    Ok(Scale { pow10: i64::from(pow10), pow2: 0 })
}

/// The quantities metrics-server writes, digits and a suffix (`"1000017n"`, `"100001Ki"`),
/// read without the general path's wide arithmetic per digit; `None` for anything else
/// (a sign, a fraction, an exponent or `E`, `T` or `P`, more than 19 digits), which
/// [`parse`] reads.
/// Never negative: it reads no sign.
pub(crate) fn parse_whole(input: &str) -> Option<Quantity> {
    let bytes = input.as_bytes();
    let (mut value, mut digits) = (0u64, 0);
    while let Some(d) = bytes.get(digits).map(|b| b.wrapping_sub(b'0')).filter(|&d| d < 10) {
        if digits == 19 {
            return None;
        }
        value = value * 10 + u64::from(d);
        digits += 1;
    }
    if digits == 0 {
        return None;
    }
    // A fraction or an exponent is no named suffix. The power of ten that makes nano-units
    // is 0 (`n`) to 18 (`G`), or 9 for a binary suffix; `T`, `P` and `E` (past 10^19) are
    // the general path's.
    let scale = named_scale(&bytes[digits..])?;
    let pow10 = usize::try_from(scale.pow10 + 9).ok()?;
    let pow2 = scale.pow2;
    // Below 2^64 times below 2^64: the product fits, with no check.
    let product = u128::from(value) * u128::from(*POW10.get(pow10)?);
    let nanos = if product > MAX_NANOS >> pow2 { MAX_NANOS } else { product << pow2 };
    Some(Quantity { nanos: nanos as i128 }) // <= MAX_NANOS < i128::MAX
}

/// 10^0 to 10^19, the powers of ten below 2^64.
const POW10: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

fn parse(input: &str) -> Result<Quantity, QuantityErrorKind> {
    if let Some(q) = parse_whole(input) {
        return Ok(q);
    }
    if input.is_empty() {
        return Err(QuantityErrorKind::Empty);
    }
    let bytes = input.as_bytes();
    let mut pos = 0;
    let negative = match bytes[0] {
        b'-' => {
            pos = 1;
            true
        }
        b'+' => {
            pos = 1;
            false
        }
        _ => false,
    };
    let int_start = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let int_digits = &input[int_start..pos];
    let mut frac_digits = "";
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let frac_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        frac_digits = &input[frac_start..pos];
    }
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(QuantityErrorKind::NoDigits);
    }
    let scale = suffix_scale(&input[pos..])?;

    // The number as significand * 10^pow10 (exact but for `sticky`, which records
    // whether non-zero digits beyond MAX_DIGITS were dropped).
    let mut significand: u128 = 0;
    let mut kept = 0usize;
    let mut pow10 = scale.pow10 - frac_digits.len() as i64;
    let mut sticky = false;
    let all_digits = int_digits.bytes().chain(frac_digits.bytes());
    for d in all_digits.skip_while(|&d| d == b'0') {
        if kept < MAX_DIGITS {
            significand = significand * 10 + u128::from(d - b'0');
            kept += 1;
        } else {
            pow10 += 1;
            sticky |= d != b'0';
        }
    }
    let nanos = to_nanos(significand, pow10 + 9, scale.pow2, sticky);
    let nanos = nanos as i128; // <= MAX_NANOS < i128::MAX
    Ok(Quantity { nanos: if negative { -nanos } else { nanos } })
}

/// `ceil(significand * 10^pow10 * 2^pow2)`, plus one if `sticky` and otherwise exact,
/// saturated at [`MAX_NANOS`].
fn to_nanos(mut significand: u128, mut pow10: i64, pow2: u32, mut sticky: bool) -> u128 {
    if significand == 0 {
        return 0;
    }
    let scaled = |s: u128| s.checked_mul(1u128 << pow2);
    if pow10 >= 0 {
        // A non-zero significand times a power of ten at or above 10^39 is past saturation.
        let product = u32::try_from(pow10)
            .ok()
            .and_then(|p| 10u128.checked_pow(p))
            .and_then(|p| significand.checked_mul(p))
            .and_then(scaled);
        return product.map_or(MAX_NANOS, |n| n.min(MAX_NANOS));
    }
    // Divide: shed low digits (into `sticky`) until the numerator and divisor fit.
    loop {
        let divisor = u32::try_from(-pow10).ok().and_then(|p| 10u128.checked_pow(p));
        match (scaled(significand), divisor) {
            (Some(numerator), Some(divisor)) => {
                let (q, r) = (numerator / divisor, numerator % divisor);
                let ceil = q + u128::from(r != 0 || sticky);
                return ceil.min(MAX_NANOS);
            }
            _ if significand == 0 => return u128::from(sticky),
            _ => {
                sticky |= significand % 10 != 0;
                significand /= 10;
                pow10 += 1;
                if pow10 == 0 {
                    return scaled(significand).map_or(MAX_NANOS, |n| (n + u128::from(sticky)).min(MAX_NANOS));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse or fail the test with the input in the message.
    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// The shortcut for metrics-server's quantities gives what the general path gives.
    #[test]
    fn the_usual_quantities_read_as_the_general_path_reads_them() {
        let general = |input: &str| {
            // `parse` without its shortcut.
            let mut with_sign = String::from("+");
            with_sign.push_str(input);
            parse(&with_sign)
        };
        let suffixes =
            ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "x", "e3", "E-2"];
        let numbers = [
            "0",
            "1",
            "7",
            "000",
            "0012",
            "999999999",
            "1000017",
            "9223372036854775807",
            "9999999999999999999",
            "18446744073709551615",
        ];
        for n in numbers {
            for suffix in suffixes {
                let input = format!("{n}{suffix}");
                if let Some(fast) = parse_whole(&input) {
                    assert_eq!(Ok(fast), general(&input), "{input}");
                }
                assert_eq!(parse(&input), general(&input), "{input}");
            }
        }
        assert_eq!(parse_whole("100001Ki"), Some(Quantity { nanos: 100_001 * 1024 * 1_000_000_000 }));
        assert_eq!(parse_whole("1.5"), None);
        assert_eq!(parse_whole("1e3"), None);
    }

    /// apimachinery `TestQuantityParse`, ported case by case. Expectations are
    /// `decQuantity(value, scale)` there, i.e. `value * 10^scale` units.
    #[test]
    fn apimachinery_parse_table() {
        let table: &[(&str, i128, i32)] = &[
            ("0", 0, 0),
            ("0n", 0, 0),
            ("0u", 0, 0),
            ("0m", 0, 0),
            ("0Ki", 0, 0),
            ("0k", 0, 0),
            ("0Mi", 0, 0),
            ("0M", 0, 0),
            ("0Gi", 0, 0),
            ("0G", 0, 0),
            ("0Ti", 0, 0),
            ("0T", 0, 0),
            // Quantity less numbers are allowed
            ("1", 1, 0),
            // Binary suffixes
            ("1Ki", 1024, 0),
            ("8Ki", 8 * 1024, 0),
            ("7Mi", 7 * 1024 * 1024, 0),
            ("6Gi", 6 * 1024 * 1024 * 1024, 0),
            ("5Ti", 5 * 1024 * 1024 * 1024 * 1024, 0),
            ("4Pi", 4 * 1024 * 1024 * 1024 * 1024 * 1024, 0),
            ("3Ei", 3 * 1024 * 1024 * 1024 * 1024 * 1024 * 1024, 0),
            ("10Ti", 10 * 1024 * 1024 * 1024 * 1024, 0),
            ("100Ti", 100 * 1024 * 1024 * 1024 * 1024, 0),
            // Decimal suffixes
            ("5n", 5, -9),
            ("4u", 4, -6),
            ("3m", 3, -3),
            ("9", 9, 0),
            ("8k", 8, 3),
            ("50k", 5, 4),
            ("7M", 7, 6),
            ("6G", 6, 9),
            ("5T", 5, 12),
            ("40T", 4, 13),
            ("300T", 3, 14),
            ("2P", 2, 15),
            ("1E", 1, 18),
            // Decimal exponents
            ("1E-3", 1, -3),
            ("1e3", 1, 3),
            ("1E6", 1, 6),
            ("1e9", 1, 9),
            ("1E12", 1, 12),
            ("1e15", 1, 15),
            ("1E18", 1, 18),
            // Nonstandard but still parsable
            ("1e14", 1, 14),
            ("1e13", 1, 13),
            ("100.035k", 100035, 0),
            // Things that look like floating point
            ("0.001", 1, -3),
            ("0.0005k", 5, -1),
            ("0.005", 5, -3),
            ("0.05", 5, -2),
            ("0.5", 5, -1),
            ("0.00050k", 5, -1),
            ("0.00500", 5, -3),
            ("0.05000", 5, -2),
            ("0.50000", 5, -1),
            ("0.5e0", 5, -1),
            ("0.5e-1", 5, -2),
            ("0.5e-2", 5, -3),
            ("10.035M", 10035, 3),
            ("1.2e3", 12, 2),
            ("1.3E+6", 13, 5),
            ("1.40e9", 14, 8),
            ("1.53E12", 153, 10),
            ("1.6e15", 16, 14),
            ("1.7E18", 17, 17),
            ("9.01", 901, -2),
            ("8.1k", 81, 2),
            ("7.123456M", 7123456, 0),
            ("6.987654321G", 6987654321, 0),
            ("5.444T", 5444, 9),
            ("40.1T", 401, 11),
            ("300.2T", 3002, 11),
            ("2.5P", 25, 14),
            ("1.01E", 101, 16),
            // Things that saturate/round
            ("3.001n", 4, -9),
            ("1.1E-9", 2, -9),
            ("0.0000000001", 1, -9),
            ("0.0000000005", 1, -9),
            ("0.00000000050", 1, -9),
            ("0.5e-9", 1, -9),
            ("0.9n", 1, -9),
            ("0.00000012345", 124, -9),
            ("0.00000012354", 124, -9),
            ("9Ei", i64::MAX as i128, 0),
            ("9223372036854775807Ki", i64::MAX as i128, 0),
            ("12E", 12, 18),
            // We'll accept fractional binary stuff, too.
            ("100.035Ki", 10243584, -2),
            ("0.5Mi", 512 * 1024, 0),
            ("0.05Gi", 536870912, -1),
            ("0.025Ti", 274877906944, -1),
            // Things written by trolls
            ("0.000000000001Ki", 2, -9),
            (".001", 1, -3),
            (".0001k", 100, -3),
            ("1.", 1, 0),
            ("1.G", 1, 9),
        ];
        for &(input, value, scale) in table {
            let want = if scale >= 0 {
                value * 10i128.pow(scale as u32) * NANOS
            } else {
                value * NANOS / 10i128.pow((-scale) as u32)
            };
            let want = want.min(MAX_NANOS as i128);
            assert_eq!(q(input).nanos(), want, "{input}");
            // apimachinery repeats every case with an explicit sign.
            assert_eq!(q(&format!("-{input}")).nanos(), -want, "-{input}");
            assert_eq!(q(&format!("+{input}")).nanos(), want, "+{input}");
        }
    }

    /// apimachinery's invalid cases, plus the degenerate signs and points.
    #[test]
    fn apimachinery_invalid_table() {
        use QuantityErrorKind::*;
        let table: &[(&str, QuantityErrorKind)] = &[
            ("", Empty),
            ("1.1.M", UnknownSuffix(".M".into())),
            ("1+1.0M", UnknownSuffix("+1.0M".into())),
            ("0.1mi", UnknownSuffix("mi".into())),
            ("0.1am", UnknownSuffix("am".into())),
            ("aoeu", NoDigits),
            (".5i", UnknownSuffix("i".into())),
            ("1i", UnknownSuffix("i".into())),
            ("-3.01i", UnknownSuffix("i".into())),
            ("-3.01e-", UnknownSuffix("e-".into())),
            (" 1", NoDigits),
            ("1 ", UnknownSuffix(" ".into())),
            (".", NoDigits),
            ("-.", NoDigits),
            ("+", NoDigits),
            ("-", NoDigits),
            ("Ki", NoDigits),
            ("1e", UnknownSuffix("e".into())),
            ("1e1.5", UnknownSuffix("e1.5".into())),
            ("1ki", UnknownSuffix("ki".into())),
            ("1KI", UnknownSuffix("KI".into())),
            ("--1", NoDigits),
            ("1e99999999999", Overflow),
        ];
        for (input, kind) in table {
            let err = input.parse::<Quantity>().expect_err(input);
            assert_eq!(&err.kind, kind, "{input:?}");
            assert_eq!(err.input, *input, "the error keeps the input");
        }
    }

    /// Every form metrics-server emits (see shared/fixtures/README.md), in the units we
    /// publish, compared as the exact `f64` Prometheus will read.
    #[test]
    fn metrics_server_forms_as_f64() {
        let table: &[(&str, f64)] = &[
            // CPU: nanocores (what metrics-server really sends), and the canonical forms.
            ("7338891n", 0.007338891),
            ("487558164n", 0.487558164),
            ("1500000n", 0.0015),
            ("250000000n", 0.25),
            ("12345u", 0.012345),
            ("7m", 0.007),
            ("0", 0.0),
            ("0.5", 0.5),
            ("2", 2.0),
            // Memory: binary SI, plain bytes, decimal SI below 1024, exponents.
            ("14520Ki", 14_868_480.0),
            ("732212Ki", 749_785_088.0),
            ("125448Ki", 128_458_752.0),
            ("52Mi", 54_525_952.0),
            ("1Gi", 1_073_741_824.0),
            ("2147483648", 2_147_483_648.0),
            ("1e6", 1_000_000.0),
            ("1000", 1000.0),
            ("999", 999.0),
            ("1k", 1000.0),
            ("1.5Gi", 1_610_612_736.0),
            ("-7m", -0.007),
        ];
        for &(input, want) in table {
            let got = q(input).as_f64();
            assert_eq!(got.to_bits(), want.to_bits(), "{input}: got {got}, want {want}");
        }
    }

    #[test]
    fn large_fractional_values_round_correctly() {
        // 2^53 + 0.5 units: not representable, must round to even.
        let nanos = ((1i128 << 53) * NANOS) + NANOS / 2;
        assert_eq!(Quantity::from_nanos(nanos).as_f64(), 9007199254740992.0);
        assert_eq!(q("123456789012345678.5").as_f64(), 123456789012345678.5f64);
    }

    #[test]
    fn every_value_rounds_as_the_decimal_parser_does_on_either_side_of_64_bits() {
        let mut values: Vec<i128> = vec![0, 1, 999_999_999, NANOS, NANOS + 1, MAX_NANOS as i128];
        for edge in [1i128 << 53, i64::MAX as i128, (1i128 << 53) * NANOS, (i64::MAX as i128 / NANOS) * NANOS] {
            values.extend((-3..=3).map(|d| edge + d));
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Spread over every magnitude, and a tenth of them whole.
            let v = i128::from(x >> (x % 64)) * if x % 10 == 0 { NANOS } else { 1 };
            values.push(v);
        }
        for v in values.iter().flat_map(|&v| [v, -v]) {
            let want: f64 = format!("{v}e-9").parse().expect("a number");
            assert_eq!(Quantity::from_nanos(v).as_f64(), want, "{v} nanos");
        }
    }

    #[test]
    fn many_digits_round_up_as_apimachinery_does() {
        // 40 significant digits, all below 1n except the first: rounds up to 1n.
        let tiny = format!("0.{}1{}", "0".repeat(9), "7".repeat(39));
        assert_eq!(q(&tiny).nanos(), 1);
        // Huge with a fraction saturates.
        let huge = format!("{}.5", "9".repeat(45));
        assert_eq!(q(&huge).nanos(), MAX_NANOS as i128);
        // Long exact values survive.
        assert_eq!(q("123456789012345678901234567n").nanos(), 123456789012345678901234567);
        // A tiny exponent still rounds up to the smallest unit; a huge one saturates.
        assert_eq!(q("1e-300").nanos(), 1);
        assert_eq!(q("1e300").nanos(), MAX_NANOS as i128);
        assert_eq!(q("0e300").nanos(), 0);
    }

    #[test]
    fn sums_are_exact() {
        let sum = q("7m").saturating_add(q("1500000n")).saturating_add(q("12345u"));
        assert_eq!(sum.nanos(), 7_000_000 + 1_500_000 + 12_345_000);
        assert_eq!(sum.as_f64(), 0.020845);
    }

    #[test]
    fn any_quantity_from_nanos_adds_and_converts_without_overflow() {
        let max = MAX_NANOS as i128;
        for (a, b, want) in [(i128::MAX, 1, max), (i128::MIN, -1, -max), (i128::MIN, i128::MAX, -1), (max, max, max)] {
            assert_eq!(Quantity::from_nanos(a).saturating_add(Quantity::from_nanos(b)).nanos(), want, "{a} + {b}");
        }
        for nanos in [i128::MIN, i128::MIN + 1, i128::MAX] {
            let f = Quantity::from_nanos(nanos).as_f64();
            assert_eq!(f, nanos as f64 / 1e9, "{nanos}");
        }
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(q("1Ki").to_string(), "1024");
        assert_eq!(q("7m").to_string(), "7000000n");
    }
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// Every input `cargo fuzz run quantity` kept in its corpus (10 minutes, 80 M runs, no
    /// crash), replayed with the fuzz target's checks.
    #[test]
    fn corpus_replays() {
        let corpus = include_str!("../fuzz-regressions/quantity.jsonl");
        let mut parsed = 0;
        for line in corpus.lines() {
            let text: String = serde_json::from_str(line).expect("a JSON string");
            let result = text.parse::<Quantity>();
            if text.starts_with(|c: char| c.is_ascii_digit()) {
                // The shortcut reads as the general path does.
                assert_eq!(result.as_ref().ok(), parse(&format!("+{text}")).as_ref().ok(), "{text:?}");
            }
            match result {
                Ok(q) => {
                    parsed += 1;
                    let nearest: f64 = format!("{}e-9", q.nanos()).parse().expect("a decimal number");
                    assert_eq!(q.as_f64(), nearest, "{text:?}");
                    assert_eq!(q.to_string().parse::<Quantity>(), Ok(q), "{text:?}");
                }
                Err(e) => assert_eq!(e.input, text),
            }
        }
        assert!(parsed > 10, "the corpus has valid quantities too");
    }
}
