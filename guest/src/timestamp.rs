//! Timestamps as SQLite data carries them, to and from microseconds since the Unix epoch (UTC).
//!
//! Blocklet Server (Sequelize on SQLite) writes `2026-11-25 18:55:01.750 +00:00`. Older data
//! and hand edits also carry ISO forms with `T`/`Z`, other offsets, no zone (read as UTC, as
//! Sequelize does) and epoch numbers. Anything else is refused, never guessed.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

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
    let Some(dt) = DateTime::from_timestamp_micros(micros) else { return format!("@{micros}us") };
    let sub_second = micros.rem_euclid(1_000_000);
    let (fraction, digits) = if sub_second % 1000 == 0 { (sub_second / 1000, 3) } else { (sub_second, 6) };
    if !(0..=9999).contains(&dt.year()) {
        // Signed, wider years: rare, and chrono spells them.
        return dt
            .format(if digits == 3 { "%Y-%m-%d %H:%M:%S%.3f +00:00" } else { "%Y-%m-%d %H:%M:%S%.6f +00:00" })
            .to_string();
    }
    // By hand: this runs for every timestamp going back to SQLite, and strftime parses its
    // format string each time.
    let mut out = String::with_capacity(33);
    let fields = [
        (dt.year() as i64, 4, "-"),
        (dt.month() as i64, 2, "-"),
        (dt.day() as i64, 2, " "),
        (dt.hour() as i64, 2, ":"),
        (dt.minute() as i64, 2, ":"),
        (dt.second() as i64, 2, "."),
        (fraction, digits, ""),
    ];
    for (n, width, separator) in fields {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10i64.pow(i) % 10) as u8));
        }
        out.push_str(separator);
    }
    out.push_str(" +00:00");
    out
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
    fn sub_millisecond_formatting_keeps_micros() {
        assert_eq!(format_micros(T + 1), "2026-11-25 18:55:01.750001 +00:00");
    }
}
