//! Human units in pipeline files: durations (`30s`, `500ms`, `2m`) and sizes
//! (`256MiB`, `1GB`). Both are bounded, so no value written in a file can
//! overflow a `Duration` or a byte count further on.

use std::time::Duration;

/// The longest duration a pipeline may give (7 days): longer than any item
/// should take, and far below what `Duration` can hold.
pub const MAX_DURATION_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The largest size a pipeline may give (1 PiB).
pub const MAX_SIZE: u64 = 1 << 50;

/// Split `123.5unit` into its number and its unit. `None` when the text
/// does not start with a plain decimal number (`-1s`, `inf`, `nan`, `1e30`
/// are refused here, before `f64::from_str` would accept some of them).
fn split_number(s: &str) -> Option<(f64, &str)> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    n.is_finite().then_some((n, unit.trim()))
}

/// Parse a duration such as `30s`, `1.5s`, `500ms`, `2m`, `1h`, `2d`; a bare
/// number is seconds. From 1 ms to 7 days.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let Some((n, unit)) = split_number(s) else {
        return Err(format!(
            "`{s}` is not a duration (e.g. `30s`, `500ms`, `2m`)"
        ));
    };
    let secs = match unit {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(format!(
                "unknown time unit `{other}` in `{s}` (use ms, s, m, h or d, e.g. `30s`)"
            ));
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!(
            "duration `{s}` must be more than zero (e.g. `30s`)"
        ));
    }
    if secs > MAX_DURATION_SECS {
        return Err(format!(
            "duration `{s}` is over the limit of 7 days (e.g. `30s`, `2h`, `7d`)"
        ));
    }
    // At least a millisecond: shorter is a typo, and rounds to nothing.
    Ok(Duration::from_secs_f64(secs).max(Duration::from_millis(1)))
}

/// Parse a size such as `256MiB`, `1GiB`, `500MB`, `4096`; a bare number is
/// bytes. From 1 byte to 1 PiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let Some((n, unit)) = split_number(t) else {
        return Err(format!("`{s}` is not a size (e.g. `512MiB`, `1GiB`)"));
    };
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pib" => 1024f64.powi(5),
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB, GB, e.g. `512MiB`)"
            ));
        }
    };
    let bytes = n * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(format!(
            "size `{s}` must be at least one byte (e.g. `512MiB`)"
        ));
    }
    if bytes > MAX_SIZE as f64 {
        return Err(format!(
            "size `{s}` is over the limit of 1 PiB (e.g. `512MiB`, `1GiB`)"
        ));
    }
    Ok(bytes as u64)
}

/// Format a byte count the way sizes are written in pipeline files.
pub fn format_size(bytes: u64) -> String {
    size_with(bytes, "")
}

/// Format a byte count for a sentence: `2.5 GiB`.
pub fn human_size(bytes: u64) -> String {
    size_with(bytes, " ")
}

fn size_with(bytes: u64, sep: &str) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{bytes}{sep}B")
    } else if (v - v.round()).abs() < 0.05 {
        format!("{}{sep}{unit}", v.round())
    } else {
        format!("{v:.1}{sep}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(
            parse_duration("10 parsecs")
                .unwrap_err()
                .contains("unknown time unit")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("1.5kb").unwrap(), 1500);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert_eq!(format_size(256 << 20), "256MiB");
        assert_eq!(format_size(1 << 30), "1GiB");
        assert_eq!(human_size(5 << 29), "2.5 GiB");
    }

    #[test]
    fn extremes_are_errors_not_panics() {
        for bad in [
            "100000000000000000000",
            "1e30",
            "inf",
            "nan",
            "-1s",
            "-0.5",
            "",
            " ",
            "8d",
            "99999999999999999999999999999999999999h",
            ".",
            "1.2.3s",
        ] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.contains("e.g."), "{bad}: {e}");
        }
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        for bad in [
            "100000000000000000000",
            "18446744073709551616",
            "1e30",
            "inf",
            "NaN",
            "-1",
            "",
            "0",
            "2PiB",
            "1.5.5GiB",
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains("e.g."), "{bad}: {e}");
        }
        assert_eq!(parse_size("1PiB").unwrap(), MAX_SIZE);
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
    }
}
