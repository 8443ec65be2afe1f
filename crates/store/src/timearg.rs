//! Docker's time arguments (`logs --since/--until`, `until=` filters): RFC 3339 in its
//! shortened forms, Unix timestamps with fractions, and Go durations back from now. Here, below
//! the engine and the listings, so that every `until=` and `--since` reads alike.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

/// Docker's `--since`/`--until` value: RFC 3339 (with or without fraction, seconds,
/// minutes, time or zone; without a zone it is local time, at the offset in force at `now`,
/// like Docker), a Unix timestamp with optional fraction (`1700000000.5`), or a Go
/// duration (`10m`, `1h30m`, `45s`) meaning `now` minus it, in whole seconds as Docker sends
/// it.
pub fn parse_time_arg(value: &str, now: Timestamp) -> Result<Timestamp, String> {
    // Docker reads a bare "0" as the Unix epoch, not as a zero duration.
    if value != "0"
        && let Some(nanos) = parse_go_duration(value)
    {
        let secs = (now.as_nanosecond() - nanos).div_euclid(1_000_000_000);
        return i64::try_from(secs)
            .ok()
            .and_then(|secs| Timestamp::from_second(secs).ok())
            .ok_or_else(|| format!("time out of range: {value:?}"));
    }
    match parse_datetime(value, now) {
        Ok(time) => return Ok(time),
        // With a dash it was meant as a date; Docker reports the date's error.
        Err(e) if value.contains('-') => return Err(e),
        Err(_) => {}
    }
    parse_unix(value).ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))
}

/// Go's `time.ParseDuration`, in nanoseconds (`1m30s`, `500ms`, `-2h`).
pub fn parse_go_duration(value: &str) -> Option<i128> {
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = digits(rest);
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = digits(after);
            frac = &after[..frac_len];
            rest = &after[frac_len..];
        }
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = whole.checked_mul(unit)?;
        let (mut numerator, mut scale) = (0i128, 1i128);
        for d in frac.bytes().take(18) {
            numerator = numerator * 10 + i128::from(d - b'0');
            scale *= 10;
        }
        value += numerator * unit / scale;
        total = total.checked_add(value)?;
        // Go's durations are int64 nanoseconds.
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    Some(if negative { -total } else { total })
}

/// The date-time forms Docker accepts: `YYYY-MM-DD`, optionally `THH`, `THH:MM`,
/// `THH:MM:SS` or `THH:MM:SS.fraction`, then optionally `Z` or `±HH:MM`.
fn parse_datetime(value: &str, now: Timestamp) -> Result<Timestamp, String> {
    let invalid = || format!("parsing time {value:?}: not an RFC 3339 date-time");
    if !value.is_ascii() {
        return Err(invalid());
    }
    let number = |s: &str| -> Result<i32, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| invalid())
        } else {
            Err(invalid())
        }
    };
    // Takes a two-digit field off the front of `rest`.
    let two = |rest: &mut &str| -> Result<i32, String> {
        let field = rest.get(..2).ok_or_else(invalid)?;
        *rest = &rest[2..];
        number(field)
    };
    let b = value.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(invalid());
    }
    let year = number(&value[..4])?;
    let month = number(&value[5..7])?;
    let day = number(&value[8..10])?;
    let mut rest = &value[10..];
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0);
    if let Some(time) = rest.strip_prefix('T') {
        rest = time;
        hour = two(&mut rest)?;
        if let Some(r) = rest.strip_prefix(':') {
            rest = r;
            minute = two(&mut rest)?;
            if let Some(r) = rest.strip_prefix(':') {
                rest = r;
                second = two(&mut rest)?;
                if let Some(r) = rest.strip_prefix('.') {
                    let len = r.bytes().take_while(u8::is_ascii_digit).count();
                    if !(1..=9).contains(&len) {
                        return Err(invalid());
                    }
                    nanos = number(&r[..len])? * 10i32.pow(9 - len as u32);
                    rest = &r[len..];
                }
            }
        }
    }
    let offset = match rest {
        "" => TimeZone::system().to_offset(now),
        "Z" | "z" => Offset::UTC,
        zone => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(invalid()),
            };
            let mut hm = &zone[1..];
            let hours = two(&mut hm)?;
            hm = hm.strip_prefix(':').ok_or_else(invalid)?;
            let minutes = two(&mut hm)?;
            if !hm.is_empty() || hours > 23 || minutes > 59 {
                return Err(invalid());
            }
            Offset::from_seconds(sign * (hours * 3600 + minutes * 60))
                .map_err(|e| format!("parsing time {value:?}: {e}"))?
        }
    };
    let field = |n: i32| i8::try_from(n).map_err(|_| invalid());
    let civil = DateTime::new(
        i16::try_from(year).map_err(|_| invalid())?,
        field(month)?,
        field(day)?,
        field(hour)?,
        field(minute)?,
        field(second)?,
        nanos,
    )
    .map_err(|e| format!("parsing time {value:?}: {e}"))?;
    offset
        .to_timestamp(civil)
        .map_err(|e| format!("parsing time {value:?}: {e}"))
}

/// `seconds[.fraction]` since the Unix epoch.
fn parse_unix(value: &str) -> Option<Timestamp> {
    let (secs, frac) = match value.split_once('.') {
        Some((secs, frac)) => (secs, Some(frac)),
        None => (value, None),
    };
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i32;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Digits past nanoseconds are dropped, as Docker's scaling does.
        let kept = &frac[..frac.len().min(9)];
        nanos = kept.parse::<i32>().ok()? * 10i32.pow(9 - kept.len() as u32);
    }
    Timestamp::new(secs, nanos).ok()
}

/// A duration in nanoseconds as Go's `time.Duration` prints it (`30s`, `1m30s`, `500ms`).
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs();
    if ns < 1_000_000_000 {
        let (unit, div) = match ns {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{sign}{}{unit}", trim_fraction(ns, div));
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let secs = trim_fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// `n / div` with its fraction, trailing zeros dropped (`1500, 1000` is `1.5`).
fn trim_fraction(n: u64, div: u64) -> String {
    let whole = n / div;
    let frac = n % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, nanos: i32) -> Timestamp {
        Timestamp::new(secs, nanos).unwrap()
    }

    /// 2024-05-01T10:00:00Z
    const T0: i64 = 1_714_557_600;

    #[test]
    fn time_args() {
        let now = ts(T0, 750_000_000);
        let ok = |v: &str| parse_time_arg(v, now).unwrap();
        assert_eq!(ok("2024-05-01T10:00:00Z"), ts(T0, 0));
        assert_eq!(ok("2024-05-01T10:00:00.25Z"), ts(T0, 250_000_000));
        assert_eq!(ok("2024-05-01T12:00:00+02:00"), ts(T0, 0));
        assert_eq!(ok("2024-05-01T05:30:00.000000001-04:30"), ts(T0, 1));
        assert_eq!(ok("2024-05-01T10:00Z"), ts(T0, 0));
        assert_eq!(ok("2024-05-01T10Z"), ts(T0, 0));
        assert_eq!(ok("2024-05-01Z"), ts(T0 - 10 * 3600, 0));
        // Without a zone: local time at the offset in force at `now`.
        let local = i64::from(TimeZone::system().to_offset(now).seconds());
        assert_eq!(ok("2024-05-01T10:00:00"), ts(T0 - local, 0));
        assert_eq!(ok("2024-05-01T10:00:00.5"), ts(T0 - local, 500_000_000));
        assert_eq!(ok("2024-05-01"), ts(T0 - 10 * 3600 - local, 0));
        // Unix timestamps.
        assert_eq!(ok("1700000000"), ts(1_700_000_000, 0));
        assert_eq!(ok("1700000000.5"), ts(1_700_000_000, 500_000_000));
        assert_eq!(ok("1700000000.000000001"), ts(1_700_000_000, 1));
        assert_eq!(ok("0"), ts(0, 0));
        // Durations back from now, in whole seconds.
        assert_eq!(ok("10m"), ts(T0 - 600, 0));
        assert_eq!(ok("1h30m"), ts(T0 - 5400, 0));
        assert_eq!(ok("45s"), ts(T0 - 45, 0));
        assert_eq!(ok("1.5s"), ts(T0 - 1, 0));
        assert_eq!(ok("500ms"), ts(T0, 0));
        // Errors.
        assert_eq!(
            parse_time_arg("yesterday", now).unwrap_err(),
            "failed to parse value as time or duration: \"yesterday\""
        );
        assert!(parse_time_arg("10x", now).is_err());
        assert!(parse_time_arg("2024-13-01", now).is_err());
        assert!(parse_time_arg("2024-05-01T10:00:00.Z", now).is_err());
        assert!(parse_time_arg("2024-05-01T10:00:00+2", now).is_err());
        assert!(parse_time_arg("", now).is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("-1.5m"), Some(-90_000_000_000));
        assert_eq!(parse_go_duration(".5us"), Some(500));
        assert_eq!(parse_go_duration("2\u{b5}s"), Some(2000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("h"), None);
        assert_eq!(parse_go_duration("3000000h"), None);
    }
}
