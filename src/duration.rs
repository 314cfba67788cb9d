//! Go's duration syntax, both ways: `parse` reads `300ms`, `1.5s`, `1m30s`
//! exactly as Go's `time.ParseDuration` does (so existing pod specs keep
//! working), and `format` prints a duration as Go's `Duration.String` does
//! (so our messages read like the original's).
//!
//! It knows nothing about which durations make sense for a flag: range checks
//! belong to `config`.

use std::time::Duration;

const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// A duration that may be negative, in nanoseconds, as Go's is.
pub type Nanos = i128;

/// Parses a Go duration string. Errors are phrased for a user who typed it.
pub fn parse(text: &str) -> Result<Nanos, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // Go accepts a bare zero, and only zero, without a unit.
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err("expected a number".into());
        }
        let unit_len = after_number
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_number.len(), |(i, _)| i);
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err("missing unit (use ns, us, ms, s, m or h, e.g. 10s)".into());
        }
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(|| format!("unknown unit \"{unit}\" (use ns, us, ms, s, m or h)"))?;
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| "number too large")?
        };
        // Fractions beyond nanosecond precision do not change the result.
        let frac_digits = &frac_digits[..frac_digits.len().min(18)];
        let frac: u128 = if frac_digits.is_empty() {
            0
        } else {
            frac_digits.parse().expect("digits only")
        };
        let frac_scale = 10u128.pow(frac_digits.len() as u32);
        total = whole
            .checked_mul(scale)
            .and_then(|n| n.checked_add(frac * scale / frac_scale))
            .and_then(|n| total.checked_add(n))
            .filter(|n| *n <= i64::MAX as u128)
            .ok_or("duration too large")?;
        rest = after_unit;
    }
    let total = total as i128;
    Ok(if negative { -total } else { total })
}

/// Formats as Go's `Duration.String`: `1m30s`, `1.5s`, `300ms`, `10µs`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// Seconds with nine decimals (`0.001178948`), for metrics and JSON: exact,
/// and without pulling float formatting into the binary.
pub fn seconds(d: Duration) -> String {
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// `value / unit` with the remainder as decimals, trailing zeros dropped.
fn decimal(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let fraction = format!("{rest:0width$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_examples() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("300ms", 300_000_000),
            ("1.5s", 1_500_000_000),
            ("1m30s", 90_000_000_000),
            ("2h", 7_200_000_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("-1s", -1_000_000_000),
            ("+2ms", 2_000_000),
            ("1h2m3s4ms", 3_723_004_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), Ok(*want), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "",
            "10",
            "s",
            "1.5",
            "1x",
            "-",
            ".s",
            "1s2",
            "9999999999h",
            "1 s",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be rejected");
        }
        assert!(parse("10").unwrap_err().contains("missing unit"));
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(Duration::from_nanos(1_178_948)), "0.001178948");
        assert_eq!(seconds(Duration::from_secs(90)), "90.000000000");
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (7, "7ns"),
            (10_000, "10µs"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (30_000_000_000, "30s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format(Duration::from_nanos(*nanos)), *want);
        }
    }
}
