//! Timestamps as the tests read and write them: parsing the server's and PostgreSQL's text forms
//! into epoch microseconds, and the compact UTC stamp of the `--dialect sqlite` backups.

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]]][ ][Z|±HH[:MM|MM]]` into microseconds since the
/// Unix epoch. This covers Sequelize's SQLite text (`2026-11-25 18:55:01.750 +00:00`), ISO-8601 and
/// PostgreSQL's text output. Without an offset the value counts as UTC. Fractions are cut to µs.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    fn num(b: &[u8], from: usize, len: usize) -> Option<i64> {
        let digits = b.get(from..from + len)?;
        let mut n = 0i64;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    }
    let s = s.trim();
    let b = s.as_bytes();
    let year = num(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(b, 5, 2)?;
    let day = num(b, 8, 2)?;
    let mut i = 10;
    let (mut hh, mut mm, mut ss, mut micros) = (0i64, 0i64, 0i64, 0i64);
    if matches!(b.get(i), Some(b' ') | Some(b'T') | Some(b't')) && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
        hh = num(b, i, 2)?;
        if b.get(i + 2) != Some(&b':') {
            return None;
        }
        mm = num(b, i + 3, 2)?;
        i += 5;
        if b.get(i) == Some(&b':') {
            ss = num(b, i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                let mut frac: String = s[start..i].chars().take(6).collect();
                while frac.len() < 6 {
                    frac.push('0');
                }
                micros = frac.parse().ok()?;
            }
        }
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let mut offset_secs = 0i64;
    match b.get(i) {
        None => {}
        Some(b'Z') | Some(b'z') => i += 1,
        Some(&c) if c == b'+' || c == b'-' => {
            let sign = if c == b'-' { -1 } else { 1 };
            i += 1;
            let oh = num(b, i, 2)?;
            i += 2;
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            let mut om = 0;
            if i < b.len() {
                om = num(b, i, 2)?;
                i += 2;
            }
            offset_secs = sign * (oh * 3600 + om * 60);
        }
        _ => return None,
    }
    if i != b.len() {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 24 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// (year, month, day) → days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 → (year, month, day), the inverse of [`days_from_civil`].
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for a time in seconds since the Unix epoch: the stamp format of the
/// `.bak-<UTCSTAMP>` backups.
pub fn utc_compact_stamp(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for days in [-1000, 0, 59, 60, 365, 20_417, 20_782, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
    }

    #[test]
    fn reads_the_server_and_postgres_forms() {
        let expected = (days_from_civil(2026, 11, 25) * 86_400 + 18 * 3600 + 55 * 60 + 1) * 1_000_000 + 750_000;
        assert_eq!(parse_timestamp_micros("2026-11-25 18:55:01.750 +00:00"), Some(expected));
        assert_eq!(parse_timestamp_micros("2026-11-25T19:55:01.75+01"), Some(expected));
        assert_eq!(parse_timestamp_micros("2026-11-25 18:55:01.750Z"), Some(expected));
        assert_eq!(parse_timestamp_micros("2026-13-25 18:55:01"), None);
        assert_eq!(utc_compact_stamp(expected / 1_000_000), "20261125T185501Z");
    }
}
