//! Human-readable sizes and durations, behaving like Docker's `go-units`.
//!
//! The CLI prints and parses these exactly as the `docker` CLI does: `SIZE` columns
//! (`human_size`), `--memory 512m` (`ram_in_bytes`), `CREATED` columns
//! (`human_duration`, `ago`). The odd corners of Go's `%g` formatting are kept on
//! purpose (for example 999.9 bytes prints as `1e+03B`, as `docker images` would).

use std::fmt;
use std::time::Duration;

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Why a size string could not be parsed. Messages follow go-units.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(
    clippy::enum_variant_names,
    reason = "the names follow go-units' messages"
)]
pub enum UnitsError {
    /// No digit at all, or a negative size: `invalid size: 'x'`.
    InvalidSize(String),
    /// The unit after the number is not one of b, k, m, g, t, p (with optional b or ib).
    InvalidSuffix(String),
    /// The number part is not a valid float (Go's strconv.ParseFloat message).
    InvalidNumber(String),
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitsError::InvalidSize(s) => write!(f, "invalid size: '{s}'"),
            UnitsError::InvalidSuffix(s) => write!(f, "invalid suffix: '{s}'"),
            UnitsError::InvalidNumber(s) => {
                write!(f, "strconv.ParseFloat: parsing \"{s}\": invalid syntax")
            }
        }
    }
}

impl std::error::Error for UnitsError {}

/// Docker's `stringutils.Ellipsis`: at most `max` characters, the last one `…` when cut.
pub fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// A size in decimal units with 3 significant digits, as `docker images` prints its
/// `SIZE` column (go-units `HumanSizeWithPrecision(size, 3)`): 1234567 -> `1.23MB`.
pub fn human_size(bytes: f64) -> String {
    human_size_with_precision(bytes, 3)
}

/// go-units `HumanSizeWithPrecision`: decimal units (`kB`, `MB`, ...) and Go's `%.*g`.
/// go-units' own `HumanSize` is this with precision 4.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (size, unit) = scale(size, 1000.0, &DECIMAL_ABBRS);
    format!("{}{unit}", format_g(size, precision))
}

/// A size in binary units with 4 significant digits (go-units `BytesSize`): `1.5MiB`.
pub fn bytes_size(bytes: f64) -> String {
    let (size, unit) = scale(bytes, 1024.0, &BINARY_ABBRS);
    format!("{}{unit}", format_g(size, 4))
}

/// Parses a memory size with binary multipliers (go-units `RAMInBytes`):
/// `512m` = 536870912, `1.5G`, `100k`, `42b`, `1024`, `32KiB`.
pub fn ram_in_bytes(s: &str) -> Result<i64, UnitsError> {
    parse_size(s, 1024)
}

/// Parses a size with decimal multipliers (go-units `FromHumanSize`): `32kB` = 32000.
pub fn from_human_size(s: &str) -> Result<i64, UnitsError> {
    parse_size(s, 1000)
}

pub use crate::summary::human_duration;

/// Docker's "`CREATED`" wording: `human_duration(now - then) + " ago"`. A `then` in
/// the future reads "Less than a second ago", as in Docker.
pub fn ago(then: jiff::Timestamp, now: jiff::Timestamp) -> String {
    let nanos = now.as_nanosecond() - then.as_nanosecond();
    let elapsed = u64::try_from(nanos.max(0))
        .map(Duration::from_nanos)
        .unwrap_or(Duration::MAX);
    format!("{} ago", human_duration(elapsed))
}

/// Divides `size` by `base` until it is below `base` or the units run out.
fn scale(mut size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// Go's `fmt.Sprintf("%.*g", precision, x)`: `precision` significant digits, no
/// trailing zeros, exponent form when the exponent is < -4 or >= precision.
fn format_g(x: f64, precision: usize) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let prec = precision.max(1);
    let sign = if x.is_sign_negative() && x != 0.0 {
        "-"
    } else {
        ""
    };
    // Correctly rounded to `prec` significant digits: "d.ddde<exp>".
    let sci = format!("{:.*e}", prec - 1, x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    let nd = digits.len() as i64;
    // Decimal point position: value = 0.d1d2d3... * 10^dp.
    let dp = if digits.is_empty() { 0 } else { exp + 1 };

    let mut eprec = prec as i64;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let e = dp - 1;
    let body = if e < -4 || e >= eprec {
        // %e with min(prec, nd) significant digits.
        let shown = (prec as i64).min(nd).max(1) as usize;
        let mut s = String::new();
        s.push(char::from(digits.first().copied().unwrap_or(b'0')));
        if shown > 1 {
            s.push('.');
            for i in 1..shown {
                s.push(char::from(digits.get(i).copied().unwrap_or(b'0')));
            }
        }
        let e = if digits.is_empty() { 0 } else { e };
        let (esign, eabs) = if e < 0 { ('-', -e) } else { ('+', e) };
        s.push('e');
        s.push(esign);
        if eabs < 10 {
            s.push('0');
        }
        s.push_str(&eabs.to_string());
        s
    } else {
        // %f with the remaining significant digits after the point.
        let p = if prec as i64 > dp { nd } else { prec as i64 };
        let decimals = (p - dp).max(0);
        let digit_at = |i: i64| -> char {
            if i >= 0 && i < nd {
                char::from(digits[i as usize])
            } else {
                '0'
            }
        };
        let mut s = String::new();
        if dp > 0 {
            for i in 0..dp {
                s.push(digit_at(i));
            }
        } else {
            s.push('0');
        }
        if decimals > 0 {
            s.push('.');
            for i in 0..decimals {
                s.push(digit_at(dp + i));
            }
        }
        s
    };
    format!("{sign}{body}")
}

/// go-units `parseSize`: a number, an optional single space, then an optional
/// suffix `b`, or one of `k m g t p` followed by nothing, `b` or `ib`
/// (case-insensitive). No other spaces are allowed. Negative sizes are refused.
fn parse_size(s: &str, base: i64) -> Result<i64, UnitsError> {
    let Some(sep) = s.rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ') else {
        return Err(UnitsError::InvalidSize(s.to_string()));
    };
    let (num, suffix) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..=sep], &s[sep + 1..])
    };
    let mut size = parse_go_float(num)?;
    if size < 0.0 {
        return Err(UnitsError::InvalidSize(s.to_string()));
    }
    if suffix.is_empty() {
        return Ok(size as i64);
    }
    if suffix.len() > 3 {
        return Err(UnitsError::InvalidSuffix(suffix.to_string()));
    }
    let lower = suffix.to_lowercase();
    let bad_suffix = || UnitsError::InvalidSuffix(lower.clone());
    let bytes = lower.as_bytes();
    if bytes[0] == b'b' {
        return if bytes.len() == 1 {
            Ok(size as i64)
        } else {
            Err(bad_suffix())
        };
    }
    let power = match bytes[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad_suffix()),
    };
    size *= base.pow(power) as f64;
    let ok = match bytes.len() {
        1 => true,
        2 => bytes[1] == b'b',
        _ => &bytes[1..] == b"ib",
    };
    if ok {
        Ok(size as i64)
    } else {
        Err(bad_suffix())
    }
}

/// Parses a float the way Go's `strconv.ParseFloat` accepts the forms that can
/// reach it here (digits, `.`, exponents, a sign): `"0."`, `".3"`, `"1e3"`.
fn parse_go_float(num: &str) -> Result<f64, UnitsError> {
    let invalid = || UnitsError::InvalidNumber(num.to_string());
    let ok_chars = !num.is_empty()
        && num
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if !ok_chars || !num.chars().any(|c| c.is_ascii_digit()) {
        return Err(invalid());
    }
    let value: f64 = num.parse().map_err(|_| invalid())?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KB: i64 = 1000;
    const MB: i64 = 1000 * KB;
    const GB: i64 = 1000 * MB;
    const TB: i64 = 1000 * GB;
    const PB: i64 = 1000 * TB;
    const KIB: i64 = 1024;
    const MIB: i64 = 1024 * KIB;
    const GIB: i64 = 1024 * MIB;
    const TIB: i64 = 1024 * GIB;
    const PIB: i64 = 1024 * TIB;

    #[test]
    fn human_size_docker_images_precision() {
        assert_eq!(human_size(1234567.0), "1.23MB");
        assert_eq!(human_size(4096.0), "4.1kB");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(12345678901.0), "12.3GB");
        assert_eq!(human_size(7_800_000.0), "7.8MB");
        assert_eq!(human_size(5_590_000.0), "5.59MB");
        assert_eq!(human_size(1000.0), "1kB");
        // Go's %g rounds up into exponent form at the unit boundary.
        assert_eq!(human_size(999_999.0), "1e+03kB");
        assert_eq!(human_size(100_000.0), "100kB");
    }

    #[test]
    fn human_size_go_units_table() {
        // go-units TestHumanSize (HumanSize = precision 4).
        let h = |x: f64| human_size_with_precision(x, 4);
        assert_eq!(h(1000.0), "1kB");
        assert_eq!(h(1024.0), "1.024kB");
        assert_eq!(h(1000000.0), "1MB");
        assert_eq!(h(1048576.0), "1.049MB");
        assert_eq!(h(2.0 * MB as f64), "2MB");
        assert_eq!(h(3.42 * GB as f64), "3.42GB");
        assert_eq!(h(5.372 * TB as f64), "5.372TB");
        assert_eq!(h(2.22 * PB as f64), "2.22PB");
        assert_eq!(h(10000000000000.0 * PB as f64), "1e+04YB");
    }

    #[test]
    fn bytes_size_go_units_table() {
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(1024.0 * 1024.0), "1MiB");
        assert_eq!(bytes_size(1048576.0), "1MiB");
        assert_eq!(bytes_size(2.0 * MIB as f64), "2MiB");
        assert_eq!(bytes_size(3.42 * GIB as f64), "3.42GiB");
        assert_eq!(bytes_size(5.372 * TIB as f64), "5.372TiB");
        assert_eq!(bytes_size(2.22 * PIB as f64), "2.22PiB");
        let kib = KIB as f64;
        assert_eq!(
            bytes_size(kib * kib * kib * kib * kib * PIB as f64),
            "1.049e+06YiB"
        );
        assert_eq!(bytes_size(1.5 * MIB as f64), "1.5MiB");
        assert_eq!(bytes_size(0.0), "0B");
    }

    #[test]
    fn format_g_matches_go() {
        assert_eq!(format_g(0.000012345, 3), "1.23e-05");
        assert_eq!(format_g(0.00012345, 3), "0.000123");
        assert_eq!(format_g(123.0, 3), "123");
        assert_eq!(format_g(1234.0, 3), "1.23e+03");
        assert_eq!(format_g(1.0, 3), "1");
        assert_eq!(format_g(-2.5, 3), "-2.5");
        assert_eq!(format_g(1e100, 4), "1e+100");
    }

    #[test]
    fn from_human_size_go_units_table() {
        let ok = [
            ("0", 0),
            ("0b", 0),
            ("0B", 0),
            ("0 B", 0),
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KB),
            ("32K", 32 * KB),
            ("32kb", 32 * KB),
            ("32Kb", 32 * KB),
            ("32Mb", 32 * MB),
            ("32Gb", 32 * GB),
            ("32Tb", 32 * TB),
            ("32Pb", 32 * PB),
            ("32.5kB", 32500),
            ("32.5 kB", 32500),
            ("32.5 B", 32),
            ("0.3 K", 300),
            (".3kB", 300),
            ("0.", 0),
            ("0. ", 0),
            ("0.b", 0),
            ("0.B", 0),
            ("-0", 0),
            ("-0b", 0),
            ("-0B", 0),
            ("-0 b", 0),
            ("-0 B", 0),
            ("32.", 32),
            ("32.b", 32),
            ("32.B", 32),
            ("32. b", 32),
            ("32. B", 32),
            ("0 ", 0),
        ];
        for (input, want) in ok {
            assert_eq!(from_human_size(input), Ok(want), "input {input:?}");
        }
        let bad = [
            " 0", " 0b", " 0B", " 0 B", "0b ", "0B ", "0 B ", "", "hello", ".", ". ", " ", "  ",
            " .", " . ", "-32", "-32b", "-32B", "-32 b", "-32 B", "32b.", "32B.", "32 b.", "32 B.",
            "32 bb", "32 BB", "32 b b", "32 B B", "32  b", "32  B", " 32 ", "32m b", "32bm",
        ];
        for input in bad {
            assert!(from_human_size(input).is_err(), "input {input:?}");
        }
    }

    #[test]
    fn ram_in_bytes_go_units_table() {
        let ok = [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KIB),
            ("32K", 32 * KIB),
            ("32kb", 32 * KIB),
            ("32Kb", 32 * KIB),
            ("32Kib", 32 * KIB),
            ("32KIB", 32 * KIB),
            ("32Mb", 32 * MIB),
            ("32Gb", 32 * GIB),
            ("32Tb", 32 * TIB),
            ("32Pb", 32 * PIB),
            ("32PB", 32 * PIB),
            ("32P", 32 * PIB),
            ("32.3", 32),
            ("32.3 mb", (32.3 * MIB as f64) as i64),
            ("0.3MB", (0.3 * MIB as f64) as i64),
            ("512m", 536870912),
            ("1g", GIB),
            ("1.5G", 1610612736),
            ("100k", 102400),
            ("42b", 42),
            ("1024", 1024),
        ];
        for (input, want) in ok {
            assert_eq!(ram_in_bytes(input), Ok(want), "input {input:?}");
        }
        for input in [
            "",
            "hello",
            "-32",
            " 32 ",
            "32m b",
            "32bm",
            "32.3 mbb",
            "32.3 Kib ",
        ] {
            assert!(ram_in_bytes(input).is_err(), "input {input:?}");
        }
    }

    #[test]
    fn size_error_messages() {
        assert_eq!(
            ram_in_bytes("hello").map_err(|e| e.to_string()),
            Err("invalid size: 'hello'".to_string())
        );
        assert_eq!(
            ram_in_bytes("-32").map_err(|e| e.to_string()),
            Err("invalid size: '-32'".to_string())
        );
        assert_eq!(
            ram_in_bytes("32bm").map_err(|e| e.to_string()),
            Err("invalid suffix: 'bm'".to_string())
        );
        assert_eq!(
            ram_in_bytes("32x").map_err(|e| e.to_string()),
            Err("invalid suffix: 'x'".to_string())
        );
        assert_eq!(
            ram_in_bytes(" 32").map_err(|e| e.to_string()),
            Err("strconv.ParseFloat: parsing \" 32\": invalid syntax".to_string())
        );
    }

    #[test]
    fn ago_reads_like_docker() {
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("valid timestamp");
        let then = jiff::Timestamp::from_second(1_700_000_000 - 2 * 7 * 24 * 3600)
            .expect("valid timestamp");
        assert_eq!(ago(then, now), "2 weeks ago");
        assert_eq!(ago(now, then), "Less than a second ago");
    }
}
