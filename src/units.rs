//! Sizes and durations as people write them in flags and config files
//! (`64KiB`, `500ms`, `2m`), and durations written back that way. Used by
//! the config, and by every module that names a limit in a message.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// A byte count, written as a number or with a unit: `65536`, `"64KiB"`, `"4MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub usize);

impl FromStr for Size {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: usize = number.parse().with_context(|| {
            format!("bad size {s:?}: expected a number of bytes, e.g. 65536 or 64KiB")
        })?;
        let scale = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => anyhow::bail!("bad size {s:?}: unknown unit {unit:?} (use B, KiB, MiB or GiB)"),
        };
        number
            .checked_mul(scale)
            .map(Size)
            .with_context(|| format!("size {s:?} is too large"))
    }
}

/// A duration, written as seconds or with a unit: `5`, `"500ms"`, `"2m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl FromStr for Seconds {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: f64 = number
            .parse()
            .with_context(|| format!("bad duration {s:?}: expected e.g. 5, 5s, 500ms or 2m"))?;
        let scale = match unit.trim() {
            "" | "s" => 1.0,
            "ms" => 0.001,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => anyhow::bail!("bad duration {s:?}: unknown unit {unit:?} (use ms, s, m or h)"),
        };
        Duration::try_from_secs_f64(number * scale)
            .map(Seconds)
            .with_context(|| format!("bad duration {s:?}"))
    }
}

macro_rules! deserialize_number_or_string {
    ($ty:ty, $int:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Int(u64),
                    Str(String),
                }
                match Raw::deserialize(d)? {
                    Raw::Int(n) => Ok($int(n)),
                    Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
                }
            }
        }
    };
}

deserialize_number_or_string!(Size, |n: u64| Size(n as usize));
deserialize_number_or_string!(Seconds, |n: u64| Seconds(Duration::from_secs(n)));

/// A moment (Unix milliseconds) as a clock in UTC: `12:03:04`, with the
/// date before it (`2026-12-04 12:03:04`) unless it is the day of `now`.
pub fn format_clock(at_ms: u64, now_ms: u64) -> String {
    let (days, secs) = ((at_ms / 1000) / 86_400, (at_ms / 1000) % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if days == (now_ms / 1000) / 86_400 {
        return clock;
    }
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {clock}")
}

/// Formats a duration the way it is written in flags: `5s`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs, d.subsec_nanos()) {
        (0, _) => format!("{}ms", d.as_millis()),
        (secs, 0) if secs % 3600 == 0 => format!("{}h", secs / 3600),
        (secs, 0) if secs % 60 == 0 => format!("{}m", secs / 60),
        (secs, 0) => format!("{secs}s"),
        _ => format!("{}ms", d.as_millis()),
    }
}

/// Formats a byte count the way sizes are written in flags (`64KiB`,
/// `4MiB`, `1536`), or rounded to a tenth of its unit when not a whole
/// number of it (`11.8GiB`, as half a machine's memory usually is).
pub fn format_size(n: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS.iter().find(|(unit, _)| n >= *unit) {
        Some((unit, name)) if n % unit == 0 => format!("{}{name}", n / unit),
        Some((unit, name)) => format!("{:.1}{name}", n as f64 / *unit as f64),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_shows_the_date_only_for_another_day() {
        // 2026-12-04T12:03:04.500Z
        let at = 1_796_385_784_500;
        assert_eq!(format_clock(at, at + 60_000), "12:03:04");
        assert_eq!(format_clock(at, at + 86_400_000), "2026-12-04 12:03:04");
        assert_eq!(format_clock(0, 86_400_000), "1970-01-01 00:00:00");
        // A leap day: 2024-02-29T23:59:59Z.
        assert_eq!(format_clock(1_709_251_199_000, 0), "2024-02-29 23:59:59");
    }

    #[test]
    fn sizes_and_durations_take_units() {
        assert_eq!("64KiB".parse::<Size>().unwrap(), Size(65536));
        assert_eq!("4 MiB".parse::<Size>().unwrap(), Size(4 << 20));
        assert_eq!("100".parse::<Size>().unwrap(), Size(100));
        assert!("1XB".parse::<Size>().is_err());
        assert_eq!(
            "500ms".parse::<Seconds>().unwrap(),
            Seconds(Duration::from_millis(500))
        );
        assert_eq!(
            "2m".parse::<Seconds>().unwrap(),
            Seconds(Duration::from_secs(120))
        );
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        // What it writes, it reads back.
        for secs in [1, 59, 60, 90, 600, 1800, 3600, 5400, 86400] {
            let d = Duration::from_secs(secs);
            assert_eq!(format_duration(d).parse::<Seconds>().unwrap().0, d);
        }
    }
}
