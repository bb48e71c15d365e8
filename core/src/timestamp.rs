//! RFC 3339 timestamps (`2021-12-17T17:57:42Z`), as metrics-server writes `timestamp`: read,
//! and written (for our log lines, and the simulator's samples).

use std::time::Duration;

/// Milliseconds since the Unix epoch, or `None` if `s` is not an RFC 3339 date-time.
///
/// Accepts `Z` or a numeric offset, and an optional fraction (truncated to milliseconds).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut millis = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac.find(|c: char| !c.is_ascii_digit()).unwrap_or(frac.len());
        if end == 0 {
            return None;
        }
        let digits = &frac[..end.min(3)];
        millis = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
        rest = &frac[end..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h: i64 = rest[1..3].parse().ok()?;
            let m: i64 = rest[4..6].parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time since the Unix epoch as RFC 3339 in UTC, to the millisecond:
/// `2026-11-25T02:40:00.123Z`.
pub fn format_rfc3339_ms(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    // u64 seconds / 86400 fits i64 days with room to spare.
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

/// `since_epoch` as HTTP writes a date (RFC 9110 5.6.7, IMF-fixdate), to the second:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format_http_date(since_epoch: Duration) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (secs, days) = (since_epoch.as_secs(), since_epoch.as_secs() / 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    format!(
        "{}, {day:02} {} {year:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize % 12],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: years counted in 400-year eras of
/// 146,097 days, each year starting on 1 March so that the leap day falls at its end.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146096
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // 0..=399
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // 0..=365
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11, 0 is March
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // 1..=31
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 }; // 1..=12
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_as_rfc_9110_writes_them() {
        for (secs, want) in [
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"), // RFC 9110's own example
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_827_696, "Tue, 29 Feb 2000 12:34:56 GMT"),
            (1_796_581_058, "Sun, 06 Dec 2026 18:17:38 GMT"), // as `date -u -d @1796581058` says
        ] {
            assert_eq!(format_http_date(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn rfc3339_known_instants() {
        let cases: &[(u64, u32, &str)] = &[
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (94_694_399, 0, "1972-12-31T23:59:59.000Z"), // the first leap year's last second
            (946_684_799, 999, "1999-12-31T23:59:59.999Z"),
            (951_827_696, 5, "2000-02-29T12:34:56.005Z"), // 2000 is a leap year (divisible by 400)
            (1_709_251_199, 120, "2024-02-29T23:59:59.120Z"),
            (1_795_574_400, 123, "2026-11-25T02:40:00.123Z"),
            (2_147_483_648, 0, "2038-01-19T03:14:08.000Z"), // past i32 seconds
            (4_107_542_399, 0, "2100-02-28T23:59:59.000Z"), // 2100 is not (divisible by 100)
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000Z"),
        ];
        for &(secs, millis, want) in cases {
            let d = Duration::from_secs(secs) + Duration::from_millis(millis.into());
            assert_eq!(format_rfc3339_ms(d), want, "{secs}");
        }
        // Sub-millisecond time is truncated, never rounded up into the next second.
        assert_eq!(format_rfc3339_ms(Duration::new(59, 999_999_999)), "1970-01-01T00:00:59.999Z");
    }

    #[test]
    fn civil_from_days_walks_every_day_of_four_centuries() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970_i64, 1_u32, 1_u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "{days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn what_is_written_reads_back() {
        for ms in [0_u64, 1, 951_827_696_005, 1_795_574_400_123, 253_402_300_799_999] {
            let written = format_rfc3339_ms(Duration::from_millis(ms));
            assert_eq!(parse_rfc3339_ms(&written), Some(ms as i64), "{written}");
        }
    }

    #[test]
    fn rfc3339_table() {
        let table: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2018-08-20T03:19:00Z", Some(1_534_735_140_000)),
            ("2021-12-17T17:57:42Z", Some(1_639_763_862_000)),
            ("2021-12-17T17:57:42.123456Z", Some(1_639_763_862_123)),
            ("2021-12-17T18:57:42+01:00", Some(1_639_763_862_000)),
            ("2000-02-29T00:00:00Z", Some(951_782_400_000)),
            ("2021-12-17", None),
            ("2021-13-17T17:57:42Z", None),
            ("2021-12-17T17:57:42", None),
            ("2021-12-17T17:57:42.Z", None),
            ("x021-12-17T17:57:42Z", None),
        ];
        for &(s, want) in table {
            assert_eq!(parse_rfc3339_ms(s), want, "{s}");
        }
    }
}
