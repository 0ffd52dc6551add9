//! `google.protobuf.Timestamp` with its proto3 JSON form (RFC 3339, UTC, `Z` suffix).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Seconds of 0001-01-01T00:00:00Z, the smallest timestamp protobuf allows.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Seconds of 9999-12-31T23:59:59Z, the largest timestamp protobuf allows.
const MAX_SECONDS: i64 = 253_402_300_799;

/// A point in time (`google.protobuf.Timestamp`): seconds and nanoseconds since the Unix epoch.
///
/// On the wire it is an RFC 3339 string in UTC with 0, 3, 6 or 9 fractional digits
/// (`"2026-05-01T12:00:00.250Z"`), exactly as `protojson` and `pbjson` write it; any UTC offset is
/// accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Non-negative fraction of a second, 0..=999_999_999.
    pub nanos: i32,
}

/// A timestamp outside the range protobuf allows, or text that is not RFC 3339.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid timestamp {input:?}: {reason}")]
pub struct TimestampError {
    input: String,
    reason: String,
}

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Builds a timestamp, checking the range protobuf allows (years 1 to 9999).
    pub fn new(seconds: i64, nanos: i32) -> Result<Self, TimestampError> {
        let ts = Self { seconds, nanos };
        if !ts.in_range() {
            return Err(TimestampError {
                input: format!("{seconds}s {nanos}ns"),
                reason: "outside 0001-01-01T00:00:00Z..=9999-12-31T23:59:59.999999999Z".into(),
            });
        }
        Ok(ts)
    }

    fn in_range(&self) -> bool {
        (MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) && (0..1_000_000_000).contains(&self.nanos)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            },
            Err(e) => {
                let d = e.duration();
                let mut seconds = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos() as i32;
                if nanos > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Self { seconds, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        let base = if t.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(t.seconds as u64)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs())
        };
        base + Duration::from_nanos(t.nanos.max(0) as u64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.in_range() {
            return write!(f, "<invalid timestamp {}s {}ns>", self.seconds, self.nanos);
        }
        let days = self.seconds.div_euclid(86_400);
        let secs_of_day = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let (hh, mm, ss) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")?;
        let n = self.nanos;
        if n == 0 {
        } else if n % 1_000_000 == 0 {
            write!(f, ".{:03}", n / 1_000_000)?;
        } else if n % 1_000 == 0 {
            write!(f, ".{:06}", n / 1_000)?;
        } else {
            write!(f, ".{n:09}")?;
        }
        f.write_str("Z")
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
fn parse_rfc3339(s: &str) -> Result<(i64, i32), String> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = b.get(range.clone()).ok_or("too short")?;
        if !part.iter().all(u8::is_ascii_digit) {
            return Err(format!("expected digits at offset {}", range.start));
        }
        Ok(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let sep = |i: usize, want: &[u8]| match b.get(i) {
        Some(c) if want.contains(c) => Ok(()),
        _ => Err(format!(
            "expected {:?} at offset {i}",
            want.iter().map(|c| *c as char).collect::<String>()
        )),
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt")?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    sep(13, b":")?;
    sep(16, b":")?;
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let end = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if end == start || end - start > 9 {
            return Err("the fraction of a second must have 1 to 9 digits".into());
        }
        nanos = digits(start..end)? * 10_i64.pow(9 - (end - start) as u32);
        i = end;
    }
    let offset = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            sep(i + 3, b":")?;
            let (oh, om) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return Err("offset out of range".into());
            }
            let minutes = oh * 60 + om;
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return Err("expected a UTC offset (Z or ±HH:MM) at the end".into()),
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(format!("month {month} out of range")),
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return Err("date or time field out of range".into());
    }
    // A leap second is read as the last second of its minute, as protojson does.
    let second = second.min(59);
    let seconds =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset * 60;
    Ok((seconds, nanos as i32))
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, TimestampError> {
        let (seconds, nanos) = parse_rfc3339(s).map_err(|reason| TimestampError {
            input: s.to_string(),
            reason,
        })?;
        Self::new(seconds, nanos).map_err(|e| TimestampError {
            input: s.to_string(),
            reason: e.reason,
        })
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !self.in_range() {
            return Err(serde::ser::Error::custom(format!(
                "timestamp {}s {}ns is outside the range protobuf allows",
                self.seconds, self.nanos
            )));
        }
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_protojson() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00Z"),
            (1_777_636_800, 0, "2026-05-01T12:00:00Z"),
            (1_777_636_800, 250_000_000, "2026-05-01T12:00:00.250Z"),
            (1_777_636_800, 1_000, "2026-05-01T12:00:00.000001Z"),
            (1_777_636_800, 1, "2026-05-01T12:00:00.000000001Z"),
            (MIN_SECONDS, 0, "0001-01-01T00:00:00Z"),
            (MAX_SECONDS, 999_999_999, "9999-12-31T23:59:59.999999999Z"),
        ];
        for (seconds, nanos, text) in cases {
            let ts = Timestamp::new(seconds, nanos).unwrap();
            assert_eq!(ts.to_string(), text);
            assert_eq!(text.parse::<Timestamp>().unwrap(), ts, "{text}");
        }
    }

    #[test]
    fn parses_offsets_and_rejects_non_rfc3339() {
        let ts: Timestamp = "2026-05-01T14:00:00+02:00".parse().unwrap();
        assert_eq!(ts.to_string(), "2026-05-01T12:00:00Z");
        let ts: Timestamp = "2026-05-01T11:30:00.5-00:30".parse().unwrap();
        assert_eq!(ts.to_string(), "2026-05-01T12:00:00.500Z");
        let ts: Timestamp = "2024-02-29T23:59:60Z".parse().unwrap();
        assert_eq!(ts.to_string(), "2024-02-29T23:59:59Z");
        assert!(
            "0000-12-31T23:59:59Z".parse::<Timestamp>().is_err(),
            "before year 1"
        );
        for bad in [
            "2026-05-01",
            "2026-05-01T12:00:00",
            "yesterday",
            "2026-05-01 12:00:00Z",
            "",
            "2026-02-30T00:00:00Z",
            "2026-05-01T12:00:00.Z",
            "2026-05-01T12:00:00.1234567891Z",
            "2026-05-01T12:00:00+2:00",
            "2026-05-01T12:00:00Z[Europe/Paris]",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "accepted {bad:?}");
        }
        assert!(Timestamp::new(MAX_SECONDS + 1, 0).is_err());
        assert!(Timestamp::new(0, 1_000_000_000).is_err());
    }

    #[test]
    fn converts_to_and_from_system_time() {
        let t = UNIX_EPOCH + Duration::new(1_777_636_800, 5);
        let ts = Timestamp::from(t);
        assert_eq!((ts.seconds, ts.nanos), (1_777_636_800, 5));
        assert_eq!(SystemTime::from(ts), t);
        let before = UNIX_EPOCH - Duration::new(1, 250_000_000);
        let ts = Timestamp::from(before);
        assert_eq!((ts.seconds, ts.nanos), (-2, 750_000_000));
        assert_eq!(SystemTime::from(ts), before);
    }
}
