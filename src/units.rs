//! Human units in pipeline files: durations (`30s`, `500ms`, `2m`) and sizes
//! (`256MiB`, `1GB`). Both are bounded, so no value written in a file can
//! overflow a `Duration` or a byte count further on.
//!
//! A value is parsed once, where it is read: [`Duration`] and [`Size`]
//! deserialize from their text, so the code after the check holds numbers,
//! never text to parse again. Errors are [`UnitError`]s, whose words are the
//! ones users see.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// The longest duration a pipeline may give (7 days): longer than any item
/// should take, and far below what `Duration` can hold.
pub const MAX_DURATION_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// The largest size a pipeline may give (1 PiB).
pub const MAX_SIZE: u64 = 1 << 50;

/// Why a duration or a size was refused. Each variant holds the text as the
/// user wrote it, so the message can quote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitError {
    /// The text does not start with a plain decimal number.
    NotADuration(String),
    /// A number with a unit that is not a time unit.
    UnknownTimeUnit { unit: String, text: String },
    /// Zero, or so small it rounds to nothing.
    DurationNotPositive(String),
    /// Over [`MAX_DURATION_SECS`].
    DurationTooLong(String),
    /// The text does not start with a plain decimal number.
    NotASize(String),
    /// A number with a unit that is not a size unit (lower-cased).
    UnknownSizeUnit { unit: String, text: String },
    /// Less than one byte.
    SizeTooSmall(String),
    /// Over [`MAX_SIZE`].
    SizeTooLarge(String),
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitError::NotADuration(s) => {
                write!(f, "`{s}` is not a duration (e.g. `30s`, `500ms`, `2m`)")
            }
            UnitError::UnknownTimeUnit { unit, text } => write!(
                f,
                "unknown time unit `{unit}` in `{text}` (use ms, s, m, h or d, e.g. `30s`)"
            ),
            UnitError::DurationNotPositive(s) => {
                write!(f, "duration `{s}` must be more than zero (e.g. `30s`)")
            }
            UnitError::DurationTooLong(s) => write!(
                f,
                "duration `{s}` is over the limit of 7 days (e.g. `30s`, `2h`, `7d`)"
            ),
            UnitError::NotASize(s) => write!(f, "`{s}` is not a size (e.g. `512MiB`, `1GiB`)"),
            UnitError::UnknownSizeUnit { unit, text } => write!(
                f,
                "unknown size unit `{unit}` in `{text}` (use B, KiB, MiB, GiB, KB, MB, GB, e.g. `512MiB`)"
            ),
            UnitError::SizeTooSmall(s) => {
                write!(f, "size `{s}` must be at least one byte (e.g. `512MiB`)")
            }
            UnitError::SizeTooLarge(s) => write!(
                f,
                "size `{s}` is over the limit of 1 PiB (e.g. `512MiB`, `1GiB`)"
            ),
        }
    }
}

impl std::error::Error for UnitError {}

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
pub fn parse_duration(s: &str) -> Result<std::time::Duration, UnitError> {
    let s = s.trim();
    let Some((n, unit)) = split_number(s) else {
        return Err(UnitError::NotADuration(s.to_string()));
    };
    let secs = match unit {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        other => {
            return Err(UnitError::UnknownTimeUnit {
                unit: other.to_string(),
                text: s.to_string(),
            });
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(UnitError::DurationNotPositive(s.to_string()));
    }
    if secs > MAX_DURATION_SECS {
        return Err(UnitError::DurationTooLong(s.to_string()));
    }
    // At least a millisecond: shorter is a typo, and rounds to nothing.
    Ok(std::time::Duration::from_secs_f64(secs).max(std::time::Duration::from_millis(1)))
}

/// Bytes per unit of a size, by lower-cased unit name.
fn size_unit(unit: &str) -> Option<f64> {
    Some(match unit {
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
        _ => return None,
    })
}

/// Parse a size such as `256MiB`, `1GiB`, `500MB`, `4096`; a bare number is
/// bytes. From 1 byte to 1 PiB.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let Some((n, unit)) = split_number(s.trim()) else {
        return Err(UnitError::NotASize(s.to_string()));
    };
    let unit = unit.to_ascii_lowercase();
    let Some(mult) = size_unit(&unit) else {
        return Err(UnitError::UnknownSizeUnit {
            unit,
            text: s.to_string(),
        });
    };
    let bytes = n * mult;
    if !(bytes.is_finite() && bytes >= 1.0) {
        return Err(UnitError::SizeTooSmall(s.to_string()));
    }
    if bytes > MAX_SIZE as f64 {
        return Err(UnitError::SizeTooLarge(s.to_string()));
    }
    Ok(bytes as u64)
}

/// A duration read from a pipeline file (`"30s"`, `"500ms"`), already
/// parsed and within bounds: from 1 ms to 7 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Duration, UnitError> {
        parse_duration(s).map(Duration)
    }
}

/// Written back the way a file would say it: whole seconds as `30s`, the
/// rest in milliseconds, so that parsing the text gives the same value.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos.is_multiple_of(1_000_000_000) {
            write!(f, "{}s", nanos / 1_000_000_000)
        } else if nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ms", nanos / 1_000_000)
        } else {
            // At most 7 days of nanoseconds: exact in an f64.
            write!(f, "{}ms", nanos as f64 / 1e6)
        }
    }
}

/// A size read from a pipeline file (`"256MiB"`), already parsed and within
/// bounds: from 1 byte to 1 PiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Size, UnitError> {
        parse_size(s).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.0))
    }
}

/// Reads a value written as text, parsed by its own `FromStr`. Anything but
/// a string (a bare number ...) is refused with an example of what to write.
struct TextVisitor<T>(std::marker::PhantomData<T>, &'static str);

impl<T: FromStr<Err = UnitError>> serde::de::Visitor<'_> for TextVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

/// Serde and JSON Schema for a value written as text in pipeline files: it
/// deserializes from its text, serializes as its text, and is a string in
/// the schema.
macro_rules! text_value {
    ($ty:ident, $name:literal, $expecting:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                d.deserialize_str(TextVisitor(std::marker::PhantomData, $expecting))
            }
        }

        impl schemars::JsonSchema for $ty {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string" })
            }
        }
    };
}

text_value!(
    Duration,
    "Duration",
    "a duration written as text, e.g. \"30s\" or \"500ms\""
);
text_value!(
    Size,
    "Size",
    "a size written as text, e.g. \"256MiB\" or \"2GiB\""
);

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
    use std::time::Duration;

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
                .to_string()
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
            let e = parse_duration(bad).expect_err(bad).to_string();
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
            let e = parse_size(bad).expect_err(bad).to_string();
            assert!(e.contains("e.g."), "{bad}: {e}");
        }
        assert_eq!(parse_size("1PiB").unwrap(), MAX_SIZE);
        assert_eq!(parse_size("2KB").unwrap(), 2000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
    }

    #[test]
    fn messages_keep_their_words() {
        assert_eq!(
            parse_duration(" 10 parsecs ").unwrap_err(),
            UnitError::UnknownTimeUnit {
                unit: "parsecs".into(),
                text: "10 parsecs".into()
            }
        );
        assert_eq!(
            parse_size("3 Zb").unwrap_err().to_string(),
            "unknown size unit `zb` in `3 Zb` (use B, KiB, MiB, GiB, KB, MB, GB, e.g. `512MiB`)"
        );
        assert_eq!(
            parse_size(" x").unwrap_err().to_string(),
            "` x` is not a size (e.g. `512MiB`, `1GiB`)"
        );
        assert_eq!(
            parse_duration("0s").unwrap_err().to_string(),
            "duration `0s` must be more than zero (e.g. `30s`)"
        );
    }

    #[test]
    fn typed_values_read_and_write_their_text() {
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct T {
            d: super::Duration,
            s: Size,
        }
        let t: T = toml::from_str("d = \"1.5s\"\ns = \"256MiB\"").unwrap();
        assert_eq!(t.d.get(), Duration::from_millis(1500));
        assert_eq!(t.s.bytes(), 256 << 20);
        let back = toml::to_string(&t).unwrap();
        assert_eq!(back, "d = \"1500ms\"\ns = \"256MiB\"\n");
        for text in ["30s", "1ms", "2.5ms", "7d"] {
            let d: super::Duration = text.parse().unwrap();
            assert_eq!(
                d.to_string().parse::<super::Duration>().unwrap(),
                d,
                "{text}"
            );
        }
        let e = toml::from_str::<T>("d = 5\ns = \"1B\"").unwrap_err();
        assert!(
            e.message()
                .contains("expected a duration written as text, e.g. \"30s\""),
            "{e}"
        );
        let e = toml::from_str::<T>("d = \"1s\"\ns = \"lots\"").unwrap_err();
        assert_eq!(e.message(), "`lots` is not a size (e.g. `512MiB`, `1GiB`)");
    }
}
