//! Go duration strings (`1m0s`, `15.009s`, `300ms`), as metrics-server writes `window`.
//!
//! The grammar is Go's `time.ParseDuration`: an optional sign, then one or more
//! `number unit` pairs, where the number may have a fraction and the unit is one of
//! `ns us µs μs ms s m h`. `"0"` alone is allowed. Negative durations are rejected here:
//! neither a metrics window nor a timeout can be negative.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A parsed, non-negative Go duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

/// Why a string is not a Go duration. Carries the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub reason: &'static str,
}

impl From<GoDuration> for Duration {
    fn from(d: GoDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl FromStr for GoDuration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError { input: input.to_owned(), reason };
        let rest = input.strip_prefix('+').unwrap_or(input);
        if let Some(negative) = rest.strip_prefix('-') {
            return if !negative.is_empty() && negative.chars().all(|c| c == '0') {
                Ok(GoDuration(Duration::ZERO))
            } else {
                Err(fail("negative duration"))
            };
        }
        if rest == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        if rest.is_empty() {
            return Err(fail("empty"));
        }
        let mut total_nanos: u128 = 0;
        let mut s = rest;
        while !s.is_empty() {
            let int_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (int, after) = s.split_at(int_end);
            let (frac, after) = match after.strip_prefix('.') {
                Some(a) => {
                    let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                    a.split_at(end)
                }
                None => ("", after),
            };
            if int.is_empty() && frac.is_empty() {
                return Err(fail("expected a number"));
            }
            let unit_end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, next) = after.split_at(unit_end);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(fail("missing unit")),
                _ => return Err(fail("unknown unit")),
            };
            let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| fail("overflow"))? };
            let mut part = whole.checked_mul(unit_nanos).ok_or_else(|| fail("overflow"))?;
            // The fraction, truncated to nanoseconds as Go does.
            let mut scale = unit_nanos;
            for d in frac.bytes() {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                part += u128::from(d - b'0') * scale;
            }
            total_nanos = total_nanos.checked_add(part).ok_or_else(|| fail("overflow"))?;
            s = next;
        }
        let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| fail("overflow"))?;
        Ok(GoDuration(Duration::new(secs, (total_nanos % 1_000_000_000) as u32)))
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from Go's `time.TestParseDuration` (the non-negative ones) and from metrics-server.
    #[test]
    fn go_parse_duration_table() {
        let ms = Duration::from_millis;
        let table: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("5s", Duration::from_secs(5)),
            ("30s", Duration::from_secs(30)),
            ("1478s", Duration::from_secs(1478)),
            ("-0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("5.0s", Duration::from_secs(5)),
            ("5.6s", ms(5600)),
            ("5.s", Duration::from_secs(5)),
            (".5s", ms(500)),
            ("1.0s", Duration::from_secs(1)),
            ("1.00s", Duration::from_secs(1)),
            ("1.004s", ms(1004)),
            ("1.0040s", ms(1004)),
            ("100.00100s", ms(100_001)),
            ("10ns", Duration::from_nanos(10)),
            ("11us", Duration::from_micros(11)),
            ("12µs", Duration::from_micros(12)),
            ("12μs", Duration::from_micros(12)),
            ("13ms", ms(13)),
            ("14s", Duration::from_secs(14)),
            ("15m", Duration::from_secs(15 * 60)),
            ("16h", Duration::from_secs(16 * 3600)),
            ("3h30m", Duration::from_secs(3 * 3600 + 30 * 60)),
            ("10.5s4m", Duration::from_secs(4 * 60 + 10) + ms(500)),
            ("1h2m3s4ms5us6ns", Duration::new(3723, 4_005_006)),
            ("39h9m14.425s", Duration::new(39 * 3600 + 9 * 60 + 14, 425_000_000)),
            ("52763797000ns", Duration::new(52, 763_797_000)),
            ("1m0s", Duration::from_secs(60)),
            ("15.009s", ms(15_009)),
        ];
        for &(input, want) in table {
            let got: GoDuration = input.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.0, want, "{input}");
        }
    }

    #[test]
    fn invalid_durations_keep_their_input() {
        for input in ["", "3", "-", "s", ".s", "+.s", "1d", "-1s", "1.5", "99999999999999999999999h"] {
            let err = input.parse::<GoDuration>().expect_err(input);
            assert_eq!(err.input, input);
        }
    }
}
