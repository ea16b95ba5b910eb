//! Timestamps as SQLite data carries them, to and from microseconds since the Unix epoch (UTC).
//!
//! Blocklet Server (Sequelize on SQLite) writes `2026-11-25 18:55:01.750 +00:00`. Older data
//! and hand edits also carry ISO forms with `T`/`Z`, other offsets, no zone (read as UTC, as
//! Sequelize does) and epoch numbers. Anything else is refused, never guessed.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// Epoch numbers at or above this magnitude are milliseconds; below it, seconds.
/// 1e11 seconds is the year 5138; 1e11 milliseconds is March 1973.
pub const EPOCH_MILLIS_THRESHOLD: f64 = 1e11;

/// Parse a text timestamp into microseconds since the epoch.
pub fn parse_text(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty timestamp".into());
    }
    let b = t.as_bytes();
    let fail = || format!("unrecognised timestamp {t:?}");
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(fail());
    }
    let year = digits(&b[0..4]).ok_or_else(fail)? as i32;
    let month = digits(&b[5..7]).ok_or_else(fail)?;
    let day = digits(&b[8..10]).ok_or_else(fail)?;
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| format!("no such date {t:?}"))?;
    let mut rest = &b[10..];
    let mut time = NaiveTime::MIN;
    if !rest.is_empty() && (rest[0] == b' ' || rest[0] == b'T') && rest.len() >= 6 && rest[3] == b':' {
        let h = digits(&rest[1..3]).ok_or_else(fail)?;
        let m = digits(&rest[4..6]).ok_or_else(fail)?;
        rest = &rest[6..];
        let mut sec = 0;
        let mut micros = 0u32;
        if rest.len() >= 3 && rest[0] == b':' {
            sec = digits(&rest[1..3]).ok_or_else(fail)?;
            rest = &rest[3..];
            if !rest.is_empty() && rest[0] == b'.' {
                let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return Err(fail());
                }
                let frac = &rest[1..1 + n];
                if frac.len() > 6 && frac[6..].iter().any(|&c| c != b'0') {
                    return Err(format!("timestamp {t:?} is more precise than microseconds"));
                }
                let mut v = 0u32;
                for i in 0..6 {
                    v = v * 10 + frac.get(i).map_or(0, |c| (c - b'0') as u32);
                }
                micros = v;
                rest = &rest[1 + n..];
            }
        }
        time = NaiveTime::from_hms_micro_opt(h, m, sec, micros).ok_or_else(|| format!("no such time {t:?}"))?;
    }
    let offset_secs = parse_zone(rest).ok_or_else(fail)?;
    let naive = NaiveDateTime::new(date, time);
    Ok(naive.and_utc().timestamp_micros() - offset_secs as i64 * 1_000_000)
}

/// `""` (UTC), `Z`, `+HH:MM`, `+HHMM`, `+HH`, optionally after one space; `UTC`/`GMT`.
fn parse_zone(rest: &[u8]) -> Option<i32> {
    let z = match rest.first() {
        Some(b' ') => &rest[1..],
        _ => rest,
    };
    match z {
        b"" | b"Z" | b"z" | b"UTC" | b"GMT" => return Some(0),
        _ => {}
    }
    let sign = match z[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let d = &z[1..];
    let (h, m) = match d.len() {
        2 => (digits(d)?, 0),
        4 => (digits(&d[0..2])?, digits(&d[2..4])?),
        5 if d[2] == b':' => (digits(&d[0..2])?, digits(&d[3..5])?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h as i32 * 3600 + m as i32 * 60))
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, c| acc * 10 + (c - b'0') as u32))
}

/// An epoch number (seconds, or milliseconds from [`EPOCH_MILLIS_THRESHOLD`] up) into microseconds.
pub fn from_epoch(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err(format!("{v} is not a timestamp"));
    }
    let micros = if v.abs() >= EPOCH_MILLIS_THRESHOLD { v * 1_000.0 } else { v * 1_000_000.0 };
    if micros.abs() > 9.2e18 {
        return Err(format!("epoch value {v} is out of range"));
    }
    let rounded = micros.round();
    if (rounded - micros).abs() > 1e-3 * micros.abs().max(1.0) {
        return Err(format!("epoch value {v} is more precise than microseconds"));
    }
    Ok(rounded as i64)
}

/// Microseconds since the epoch as the text Sequelize writes to SQLite, with milliseconds:
/// `2026-11-25 18:55:01.750 +00:00` (more digits when the value has sub-millisecond precision).
pub fn format_micros(micros: i64) -> String {
    let mut buf = [0u8; SEQUELIZE_TEXT_MAX];
    match write_sequelize_text(micros, &mut buf) {
        Some(len) => String::from_utf8(buf[..len].to_vec()).expect("ASCII"),
        None => match DateTime::from_timestamp_micros(micros) {
            // Signed, wider years: rare, and chrono spells them.
            Some(dt) => dt
                .format(if micros.rem_euclid(1000) == 0 {
                    "%Y-%m-%d %H:%M:%S%.3f +00:00"
                } else {
                    "%Y-%m-%d %H:%M:%S%.6f +00:00"
                })
                .to_string(),
            None => format!("@{micros}us"),
        },
    }
}

/// The longest text [`write_sequelize_text`] writes: `YYYY-MM-DD HH:MM:SS.ffffff +00:00`.
pub const SEQUELIZE_TEXT_MAX: usize = 33;

/// Write [`format_micros`]'s text into `out` without allocating and return its length, or
/// `None` outside the years 0000–9999 (which need a sign or a fifth digit). This runs for every
/// timestamp going back to SQLite.
pub fn write_sequelize_text(micros: i64, out: &mut [u8; SEQUELIZE_TEXT_MAX]) -> Option<usize> {
    let (days, of_day) = (micros.div_euclid(86_400_000_000), micros.rem_euclid(86_400_000_000));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (seconds, sub_second) = (of_day / 1_000_000, of_day % 1_000_000);
    let (fraction, width) = if sub_second % 1000 == 0 { (sub_second / 1000, 3) } else { (sub_second, 6) };
    let fields = [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b' '),
        (seconds / 3600, 2, b':'),
        (seconds / 60 % 60, 2, b':'),
        (seconds % 60, 2, b'.'),
    ];
    fn put(out: &mut [u8], at: &mut usize, n: i64, width: u32) {
        for i in (0..width).rev() {
            out[*at] = b'0' + (n / 10i64.pow(i) % 10) as u8;
            *at += 1;
        }
    }
    let mut at = 0;
    for (n, width, separator) in fields {
        put(out, &mut at, n, width);
        out[at] = separator;
        at += 1;
    }
    put(out, &mut at, fraction, width);
    out[at..at + 7].copy_from_slice(b" +00:00");
    Some(at + 7)
}

/// (year, month, day) of the proleptic Gregorian calendar for `days` since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_632_901_750_000; // 2026-11-25 18:55:01.750 UTC

    #[test]
    fn sequelize_form() {
        assert_eq!(parse_text("2026-11-25 18:55:01.750 +00:00").unwrap(), T);
        assert_eq!(format_micros(T), "2026-11-25 18:55:01.750 +00:00");
    }

    #[test]
    fn iso_and_zone_forms_are_the_same_instant() {
        for s in [
            "2026-11-25T18:55:01.750Z",
            "2026-11-25T18:55:01.75Z",
            "2026-11-25 18:55:01.750",
            "2026-11-25T20:55:01.750+02:00",
            "2026-11-25 20:55:01.750 +0200",
            "2026-11-25T13:55:01.750-05",
            "2026-11-25 18:55:01.750000000 +00:00",
        ] {
            assert_eq!(parse_text(s).unwrap(), T, "{s}");
        }
        assert_eq!(parse_text("2026-11-25").unwrap(), T - (18 * 3600 + 55 * 60 + 1) * 1_000_000 - 750_000);
        assert_eq!(parse_text("2026-11-25 18:55").unwrap(), T - 1_750_000);
    }

    #[test]
    fn refuses_what_it_cannot_read_faithfully() {
        for s in [
            "",
            "Invalid date",
            "null",
            "2026-13-01",
            "2026-02-30 00:00:00",
            "25/11/2026",
            "2026-11-25 25:00:00",
            "2026-11-25 18:55:01.1234567",
            "2026-11-25 18:55:01 +25:00",
            "2026-11-25 18:55:01 junk",
        ] {
            assert!(parse_text(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn epoch_seconds_and_millis() {
        assert_eq!(from_epoch(1_795_632_901.75).unwrap(), T);
        assert_eq!(from_epoch(1_795_632_901_750.0).unwrap(), T);
        assert!(from_epoch(f64::NAN).is_err());
        assert!(from_epoch(f64::INFINITY).is_err());
    }

    #[test]
    fn formats_like_strftime_across_years() {
        for us in [0, -1, 1_000, -86_400_000_000, T, T + 1, -62_135_596_800_000_000, 253_402_300_799_999_999] {
            let dt = DateTime::from_timestamp_micros(us).unwrap();
            let spec =
                if us.rem_euclid(1000) == 0 { "%Y-%m-%d %H:%M:%S%.3f +00:00" } else { "%Y-%m-%d %H:%M:%S%.6f +00:00" };
            assert_eq!(format_micros(us), dt.format(spec).to_string(), "{us}");
        }
        assert_eq!(format_micros(253_402_300_800_000_000), "+10000-01-01 00:00:00.000 +00:00");
    }

    #[test]
    fn the_hand_formatter_agrees_with_chrono_across_the_range() {
        // Every 17th day from 0000-01-01 to 9999-12-31 (17 is prime to every month and year
        // length), and every day of the years around century and leap-year edges, each at
        // times of day that walk through the fields, with and without sub-millisecond digits.
        const DAY: i64 = 86_400_000_000;
        let first = -62_167_219_200_000_000i64;
        let last = 253_402_300_799_999_999i64;
        let year_start =
            |y: i64| DateTime::parse_from_rfc3339(&format!("{y:04}-01-01T00:00:00Z")).unwrap().timestamp_micros();
        let mut days: Vec<i64> = (0..).map(|k| first + 17 * k * DAY).take_while(|&d| d <= last).collect();
        for y in [0, 1, 99, 100, 399, 400, 1899, 1900, 1968, 1969, 1970, 1971, 1999, 2000, 2023, 2024, 2100, 9998, 9999]
        {
            days.extend((0..366).map(|d| year_start(y) + d * DAY).filter(|&d| d <= last));
        }
        for (step, &day) in days.iter().enumerate() {
            let step = step as i64;
            for v in [day, day + 1_000 * step % DAY, day + DAY - 1, day + 7 * step % 1_000_000] {
                let dt = DateTime::from_timestamp_micros(v).unwrap();
                let spec = if v.rem_euclid(1000) == 0 {
                    "%Y-%m-%d %H:%M:%S%.3f +00:00"
                } else {
                    "%Y-%m-%d %H:%M:%S%.6f +00:00"
                };
                assert_eq!(format_micros(v), dt.format(spec).to_string(), "{v}");
            }
        }
        let mut buf = [0u8; SEQUELIZE_TEXT_MAX];
        assert_eq!(write_sequelize_text(first - 1, &mut buf), None);
        assert_eq!(write_sequelize_text(last + 1, &mut buf), None);
    }

    #[test]
    fn sub_millisecond_formatting_keeps_micros() {
        assert_eq!(format_micros(T + 1), "2026-11-25 18:55:01.750001 +00:00");
    }
}
