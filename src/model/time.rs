//! Timestamps as ARK writes them, all normalised to unix milliseconds (UTC).
//!
//! Accepted on input: unix seconds, unix milliseconds (numbers or digit strings),
//! RFC 3339 (`2024-01-31T12:00:00Z`, `+02:00` offsets, fractional seconds) and SQLite's
//! `YYYY-MM-DD HH:MM:SS` (taken as UTC, as SQLite's `CURRENT_TIMESTAMP` is).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Numbers at or above this are taken as milliseconds, below it as seconds. 10^11
/// seconds is the year 5138 and 10^11 milliseconds is March 1973, so no real ARK
/// timestamp is ambiguous.
const MILLIS_THRESHOLD: u64 = 100_000_000_000;

/// Milliseconds added to every wall-clock reading of this process.
static CLOCK_OFFSET_MILLIS: AtomicI64 = AtomicI64::new(0);

/// Shifts this process's wall clock (`ARK_CLOCK_OFFSET_MS`), so a test can run one node
/// with its clock ahead of the others. Set once at startup, before any reading.
pub fn set_clock_offset(millis: i64) {
    CLOCK_OFFSET_MILLIS.store(millis, Ordering::Relaxed);
}

/// The wall clock in unix milliseconds, shifted by [`set_clock_offset`]; 0 if the
/// clock is before 1970.
pub fn unix_millis_now() -> u64 {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0);
    millis.saturating_add_signed(CLOCK_OFFSET_MILLIS.load(Ordering::Relaxed))
}

/// Reads a number of seconds or milliseconds since the epoch.
fn from_unix_number(number: u64) -> u64 {
    if number >= MILLIS_THRESHOLD {
        number
    } else {
        number * 1000
    }
}

/// Parses a timestamp string in any accepted format into unix milliseconds.
pub fn parse_timestamp(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(from_unix_number)
            .map_err(|_| format!("timestamp {text:?} is out of range"));
    }
    parse_datetime(text).ok_or_else(|| {
        format!(
            "timestamp {text:?} is not unix seconds/milliseconds, RFC 3339 or YYYY-MM-DD HH:MM:SS"
        )
    })
}

/// Reads a numeric timestamp (seconds or milliseconds).
pub(crate) fn timestamp_from_number(number: f64) -> Result<u64, String> {
    if !(0.0..1e15).contains(&number) || number.is_nan() {
        return Err(format!("timestamp {number} is out of range"));
    }
    let whole = number as u64;
    if whole >= MILLIS_THRESHOLD {
        Ok(whole)
    } else {
        Ok((number * 1000.0).round() as u64)
    }
}

fn parse_datetime(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 19 {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if part.bytes().all(|byte| byte.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = digits(0..4)? as i64;
    let month = digits(5..7)? as u32;
    let day = digits(8..10)? as u32;
    let hour = digits(11..13)?;
    let minute = digits(14..16)?;
    let second = digits(17..19)?;
    if bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0u64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction
            .bytes()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if length == 0 {
            return None;
        }
        let first_three: String = fraction[..length.min(3)].chars().collect();
        millis = first_three.parse::<u64>().ok()? * 10u64.pow(3 - first_three.len() as u32);
        rest = &fraction[length..];
    }
    let offset_seconds: i64 = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let offset = &rest[1..];
            let (hours, minutes) = match offset.len() {
                5 if offset.as_bytes()[2] == b':' => (&offset[0..2], &offset[3..5]),
                4 => (&offset[0..2], &offset[2..4]),
                2 => (&offset[0..2], "00"),
                _ => return None,
            };
            let hours: i64 = hours.parse().ok()?;
            let minutes: i64 = minutes.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + (hour * 3600 + minute * 60 + second) as i64 - offset_seconds;
    if seconds < 0 {
        return None;
    }
    Some(seconds as u64 * 1000 + millis)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i64;
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

fn parts(unix_millis: u64) -> Parts {
    let seconds = unix_millis / 1000;
    let (year, month, day) = civil_from_days((seconds / 86_400) as i64);
    let of_day = seconds % 86_400;
    Parts {
        year,
        month,
        day,
        hour: of_day / 3600,
        minute: of_day % 3600 / 60,
        second: of_day % 60,
        millis: unix_millis % 1000,
    }
}

/// `2024-01-31T12:00:00.123Z`; the fraction is left out when it is zero.
pub fn format_rfc3339(unix_millis: u64) -> String {
    let p = parts(unix_millis);
    let fraction = if p.millis == 0 {
        String::new()
    } else {
        format!(".{:03}", p.millis)
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{fraction}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    )
}

/// SQLite's `YYYY-MM-DD HH:MM:SS`, as ARK's `nodes` table stores it. Milliseconds are
/// dropped, as SQLite's `CURRENT_TIMESTAMP` has none.
pub fn format_sqlite(unix_millis: u64) -> String {
    let p = parts(unix_millis);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<u64>) {
        assert_eq!(parse_timestamp(input).ok(), expected, "input {input:?}");
    }

    #[test]
    fn accepted_formats() {
        check("2024-01-31 12:00:00", Some(1_706_702_400_000));
        check("2024-01-31T12:00:00Z", Some(1_706_702_400_000));
        check("2024-01-31T12:00:00.5Z", Some(1_706_702_400_500));
        check("2024-01-31T14:00:00+02:00", Some(1_706_702_400_000));
        check("2024-01-31T11:00:00-0100", Some(1_706_702_400_000));
        check("1706702400", Some(1_706_702_400_000));
        check("1706702400123", Some(1_706_702_400_123));
        check("1970-01-01 00:00:00", Some(0));
    }

    #[test]
    fn rejected_formats() {
        check("", None);
        check("yesterday", None);
        check("2024-02-30 00:00:00", None);
        check("2024-13-01 00:00:00", None);
        check("2024-01-31X12:00:00", None);
        check("2024-01-31T12:00:00+25:00", None);
        check("1969-12-31 23:59:59", None);
    }

    #[test]
    fn numbers_pick_seconds_or_millis() {
        assert_eq!(
            timestamp_from_number(1_706_702_400.0),
            Ok(1_706_702_400_000)
        );
        assert_eq!(
            timestamp_from_number(1_706_702_400_123.0),
            Ok(1_706_702_400_123)
        );
        assert!(timestamp_from_number(-1.0).is_err());
    }

    #[test]
    fn formats_round_trip() {
        for millis in [0, 951_782_400_000, 1_706_702_400_123, 4_102_444_799_000] {
            assert_eq!(parse_timestamp(&format_rfc3339(millis)), Ok(millis));
            assert_eq!(
                parse_timestamp(&format_sqlite(millis)),
                Ok(millis / 1000 * 1000)
            );
        }
        assert_eq!(format_sqlite(1_706_702_400_000), "2024-01-31 12:00:00");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }
}
