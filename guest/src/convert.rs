//! Converting SQLite values into the values a 1.17.12 PostgreSQL schema holds.
//!
//! SQLite stores whatever it is given; PostgreSQL checks types. Every rule here either keeps
//! the value's meaning exactly (0/1 → boolean, a timestamp's text → the same instant, JSON
//! text → the same document) or refuses it with a reason. Nothing is truncated, replaced by
//! "now", nulled or stripped: the original `blocklet server migrate` did all of those silently.

use crate::batch::{Batch, Column, Tag, Value};
use crate::canonical::{self, json_hash, value_hash};
use crate::ddl::{PgColumn, PgType};
use crate::timestamp;
use std::collections::BTreeMap;

/// Why one value of a row cannot be migrated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueRejection {
    pub row: usize,
    pub column: usize,
    pub reason: String,
}

/// A source batch converted for one target table.
pub struct Converted {
    /// Accepted rows only, ready for the target.
    pub batch: Batch,
    /// Canonical hash of every accepted row, in order.
    pub row_hashes: Vec<u64>,
    /// Every rejected value (a row may have several).
    pub rejections: Vec<ValueRejection>,
}

/// Convert a source batch whose columns are `targets` (same order).
pub fn to_postgres(src: &Batch, targets: &[&PgColumn], enums: &BTreeMap<String, Vec<String>>) -> Converted {
    convert_batch(src, |c, v, out| convert_value(v, targets[c], enums, out))
}

/// Convert every value of `src` with `convert(column, value, out)`, which appends the converted
/// value to `out` and returns its canonical hash, or says why the value cannot be converted.
/// Rows with any refused value are dropped from the result and each refusal is listed.
fn convert_batch(src: &Batch, convert: impl Fn(usize, Value<'_>, &mut Column) -> Result<u64, String>) -> Converted {
    let rows = src.rows as usize;
    let mut hashes = vec![canonical::row_start(); rows];
    let mut keep = vec![true; rows];
    let mut rejections = Vec::new();
    let mut columns = Vec::with_capacity(src.columns.len());
    for (c, col) in src.columns.iter().enumerate() {
        let mut out = Column::with_capacity(rows);
        out.bytes.reserve(col.bytes.len());
        for (i, hash) in hashes.iter_mut().enumerate() {
            let before = out.len();
            match convert(c, col.get(i), &mut out) {
                Ok(h) => *hash = canonical::chain(*hash, h),
                Err(reason) => {
                    // A refused value may have pushed part of itself; keep one NULL in its place.
                    out.truncate(before);
                    out.push(Value::Null);
                    keep[i] = false;
                    rejections.push(ValueRejection { row: i, column: c, reason });
                }
            }
        }
        columns.push(out);
    }
    let mut row_hashes = hashes;
    let mut accepted = rows;
    if !rejections.is_empty() {
        for col in &mut columns {
            col.retain_rows(&keep);
        }
        row_hashes = row_hashes.into_iter().zip(&keep).filter(|(_, k)| **k).map(|(h, _)| h).collect();
        accepted = row_hashes.len();
    }
    Converted { batch: Batch { rows: accepted as u32, columns }, row_hashes, rejections }
}

/// Convert one value into `out`, returning its canonical hash.
pub fn convert_value(
    v: Value<'_>,
    target: &PgColumn,
    enums: &BTreeMap<String, Vec<String>>,
    out: &mut Column,
) -> Result<u64, String> {
    let converted = match (&target.ty, v) {
        (_, Value::Null) => {
            if target.not_null {
                return Err("NULL in a NOT NULL column".into());
            }
            Value::Null
        }
        (PgType::Varchar(_) | PgType::Text, Value::Text(b)) => Value::Text(checked_text(b, &target.ty)?),
        (PgType::Varchar(_) | PgType::Text, Value::Integer(n)) => {
            // TEXT affinity stores numbers as their decimal text; an integer here means the
            // same text, so write exactly that.
            let s = n.to_string();
            checked_text(s.as_bytes(), &target.ty)?;
            out.push(Value::Text(s.as_bytes()));
            return value_hash(Value::Text(s.as_bytes()));
        }
        (PgType::Enum(name), Value::Text(b)) => {
            let s = utf8(b)?;
            let labels = enums.get(name).ok_or_else(|| format!("unknown enum type {name}"))?;
            if !labels.iter().any(|l| l == s) {
                return Err(format!("{s:?} is not a value of {name} ({})", quoted_list(labels)));
            }
            Value::Text(b)
        }
        (PgType::SmallInt | PgType::Integer | PgType::BigInt, Value::Integer(n)) => {
            Value::Integer(int_in_range(n, &target.ty)?)
        }
        (PgType::SmallInt | PgType::Integer | PgType::BigInt, Value::Real(f)) => {
            if f.fract() != 0.0 || !f.is_finite() || f.abs() > 9.0e15 {
                return Err(format!("{f} is not a whole number for a {} column", type_name(&target.ty)));
            }
            Value::Integer(int_in_range(f as i64, &target.ty)?)
        }
        (PgType::Double, Value::Real(f)) => Value::Real(f),
        (PgType::Real, Value::Real(f)) => {
            if (f as f32) as f64 != f && !f.is_nan() {
                return Err(format!("{f} cannot be stored exactly as real (float4)"));
            }
            Value::Real(f)
        }
        (PgType::Double | PgType::Real, Value::Integer(n)) => {
            let exact = if target.ty == PgType::Real { (n as f32) as i64 == n } else { n.unsigned_abs() <= 1 << 53 };
            if !exact {
                return Err(format!("{n} cannot be stored exactly as {}", type_name(&target.ty)));
            }
            Value::Real(n as f64)
        }
        (PgType::Boolean, Value::Integer(n @ (0 | 1))) => Value::Boolean(n == 1),
        (PgType::Boolean, Value::Text(b)) => match b {
            b"true" | b"1" => Value::Boolean(true),
            b"false" | b"0" => Value::Boolean(false),
            _ => {
                return Err(format!("{:?} is not a boolean (0/1)", String::from_utf8_lossy(b)));
            }
        },
        (PgType::Boolean, Value::Integer(n)) => return Err(format!("{n} is not a boolean (0/1)")),
        (PgType::Json | PgType::Jsonb, Value::Text(b) | Value::Blob(b) | Value::Json(b)) => {
            let hash = checked_json_hash(b, target.ty == PgType::Jsonb)?;
            out.push(Value::Json(b));
            return Ok(hash);
        }
        (PgType::Json | PgType::Jsonb, Value::Integer(n)) => {
            // JSON columns have NUMERIC affinity in SQLite, so a top-level JSON number is
            // stored as one; its decimal text is the same document.
            let s = n.to_string();
            out.push(Value::Json(s.as_bytes()));
            return Ok(json_hash(&serde_json::Value::from(n)));
        }
        (PgType::Json | PgType::Jsonb, Value::Real(f)) => {
            let n = serde_json::Number::from_f64(f).ok_or_else(|| format!("{f} is not a JSON number"))?;
            let s = n.to_string();
            out.push(Value::Json(s.as_bytes()));
            return Ok(json_hash(&serde_json::Value::Number(n)));
        }
        (PgType::TimestampTz, Value::Text(b)) => Value::Timestamp(in_pg_range(timestamp::parse_text(utf8(b)?)?)?),
        (PgType::TimestampTz, Value::Integer(n)) => Value::Timestamp(in_pg_range(timestamp::from_epoch(n as f64)?)?),
        (PgType::TimestampTz, Value::Real(f)) => Value::Timestamp(in_pg_range(timestamp::from_epoch(f)?)?),
        (PgType::TimestampTz, Value::Timestamp(t)) => Value::Timestamp(in_pg_range(t)?),
        (PgType::Uuid, Value::Text(b)) => {
            let s = canonical_uuid(utf8(b)?)?;
            out.push(Value::Text(s.as_bytes()));
            return value_hash(Value::Text(s.as_bytes()));
        }
        (PgType::Bytea, Value::Blob(b)) => Value::Blob(b),
        (PgType::Other(name), _) => return Err(format!("the target type {name} is not supported")),
        (ty, v) => {
            return Err(format!("{} value in a column of type {}", source_kind(v), type_name(ty)));
        }
    };
    out.push(converted);
    value_hash(converted)
}

/// PostgreSQL's timestamptz range (`MIN_TIMESTAMP`, `END_TIMESTAMP` moved to the Unix epoch):
/// 4714-11-24 BC to the end of 294276 AD.
const PG_MIN_MICROS: i64 = -210_866_803_200_000_000;
const PG_MAX_MICROS: i64 = i64::MAX; // END_TIMESTAMP is beyond what i64 microseconds reach

fn in_pg_range(micros: i64) -> Result<i64, String> {
    if !(PG_MIN_MICROS..=PG_MAX_MICROS).contains(&micros) {
        return Err(format!(
            "{} is out of the range of timestamps PostgreSQL can store",
            timestamp::format_micros(micros)
        ));
    }
    Ok(micros)
}

fn utf8(b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("text is not valid UTF-8 (at byte {})", e.valid_up_to()))
}

fn checked_text<'a>(b: &'a [u8], ty: &PgType) -> Result<&'a [u8], String> {
    // Most text is ASCII without NUL: then one pass checks UTF-8, NUL and the length in
    // characters at once (it was three passes, 5% of a SQLite → PostgreSQL run's component time).
    if plain_ascii(b) {
        if let PgType::Varchar(Some(max)) = ty
            && b.len() > *max as usize
        {
            return Err(format!("text of {} characters is longer than varchar({max})", b.len()));
        }
        return Ok(b);
    }
    checked_text_in_three_passes(b, ty)
}

/// [`checked_text`] for any text: UTF-8, then NUL, then the length in characters.
fn checked_text_in_three_passes<'a>(b: &'a [u8], ty: &PgType) -> Result<&'a [u8], String> {
    let s = utf8(b)?;
    if b.contains(&0) {
        return Err("text contains a NUL byte, which PostgreSQL text cannot store".into());
    }
    if let PgType::Varchar(Some(max)) = ty {
        let n = s.chars().count();
        if n > *max as usize {
            return Err(format!("text of {n} characters is longer than varchar({max})"));
        }
    }
    Ok(b)
}

/// Whether every byte of `b` is ASCII and not NUL, eight bytes at a time.
fn plain_ascii(b: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut chunks = b.chunks_exact(8);
    let mut flagged = 0u64;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A high bit marks a non-ASCII byte; a borrow out of a byte marks a zero byte.
        flagged |= w | (w.wrapping_sub(ONES) & !w);
    }
    flagged & HIGH == 0 && chunks.remainder().iter().all(|&c| c != 0 && c < 0x80)
}

fn int_in_range(n: i64, ty: &PgType) -> Result<i64, String> {
    let (lo, hi) = match ty {
        PgType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
        PgType::Integer => (i32::MIN as i64, i32::MAX as i64),
        _ => (i64::MIN, i64::MAX),
    };
    if n < lo || n > hi {
        return Err(format!("{n} is out of range for {}", type_name(ty)));
    }
    Ok(n)
}

/// Check a JSON text the way the target column will, and hash it by meaning.
fn checked_json_hash(b: &[u8], jsonb: bool) -> Result<u64, String> {
    // A document that parses is valid UTF-8 (serde_json checks every string, and JSON outside
    // strings is ASCII), so the text is checked separately only to explain a failure.
    let digest = canonical::json_text_hash(b).map_err(|e| match utf8(b) {
        Err(not_utf8) => not_utf8,
        Ok(_) => format!("invalid JSON: {e}"),
    })?;
    // jsonb refuses the escape anywhere in the text, even under a key a duplicate replaces.
    if jsonb && (digest.has_nul || has_nul_escape(b)) {
        return Err("JSON contains \\u0000, which jsonb cannot store".into());
    }
    Ok(digest.hash)
}

/// A `\u0000` escape (any hex case) outside of an escaped backslash.
fn has_nul_escape(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'u') && b.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// `A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11` → `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11`.
pub fn canonical_uuid(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    let dashes_ok = s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-');
    if !dashes_ok || hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not a UUID"));
    }
    Ok(s.to_ascii_lowercase())
}

fn quoted_list(labels: &[String]) -> String {
    labels.iter().map(|l| format!("'{l}'")).collect::<Vec<_>>().join(", ")
}

fn source_kind(v: Value<'_>) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Integer(_) => "an integer",
        Value::Real(_) => "a real",
        Value::Text(_) => "a text",
        Value::Blob(_) => "a BLOB",
        Value::Boolean(_) => "a boolean",
        Value::Json(_) => "a JSON",
        Value::Timestamp(_) => "a timestamp",
    }
}

/// The PostgreSQL spelling of a type, for messages.
pub fn type_name(ty: &PgType) -> String {
    match ty {
        PgType::Varchar(Some(n)) => format!("varchar({n})"),
        PgType::Varchar(None) => "varchar".into(),
        PgType::Text => "text".into(),
        PgType::SmallInt => "smallint".into(),
        PgType::Integer => "integer".into(),
        PgType::BigInt => "bigint".into(),
        PgType::Double => "double precision".into(),
        PgType::Real => "real".into(),
        PgType::Boolean => "boolean".into(),
        PgType::Json => "json".into(),
        PgType::Jsonb => "jsonb".into(),
        PgType::TimestampTz => "timestamptz".into(),
        PgType::Uuid => "uuid".into(),
        PgType::Bytea => "bytea".into(),
        PgType::Enum(n) | PgType::Other(n) => n.clone(),
    }
}

/// The tag a target column's values carry when read back from PostgreSQL.
pub fn read_back_tag(ty: &PgType) -> Tag {
    match ty {
        PgType::SmallInt | PgType::Integer | PgType::BigInt => Tag::Integer,
        PgType::Double | PgType::Real => Tag::Real,
        PgType::Boolean => Tag::Boolean,
        PgType::Json | PgType::Jsonb => Tag::Json,
        PgType::TimestampTz => Tag::Timestamp,
        PgType::Bytea => Tag::Blob,
        _ => Tag::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(ty: PgType, not_null: bool) -> PgColumn {
        PgColumn { name: "c".into(), ty, not_null, default: None }
    }

    fn enums() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([("enum_feed".to_string(), vec!["graphic".to_string(), "".to_string()])])
    }

    fn conv(v: Value<'_>, ty: PgType) -> Result<Value<'static>, String> {
        let mut out = Column::default();
        convert_value(v, &col(ty, false), &enums(), &mut out)?;
        let leaked: &'static Column = Box::leak(Box::new(out));
        Ok(leaked.get(0))
    }

    #[test]
    fn faithful_conversions() {
        assert_eq!(conv(Value::Integer(1), PgType::Boolean), Ok(Value::Boolean(true)));
        assert_eq!(conv(Value::Integer(0), PgType::Boolean), Ok(Value::Boolean(false)));
        assert_eq!(
            conv(Value::Text(b"2026-11-25 18:55:01.750 +00:00"), PgType::TimestampTz),
            Ok(Value::Timestamp(1_795_632_901_750_000))
        );
        assert_eq!(conv(Value::Text(b"{\"a\":1}"), PgType::Jsonb), Ok(Value::Json(b"{\"a\":1}")));
        assert_eq!(conv(Value::Blob(b"[1]"), PgType::Jsonb), Ok(Value::Json(b"[1]")));
        assert_eq!(conv(Value::Integer(5), PgType::Jsonb), Ok(Value::Json(b"5")));
        assert_eq!(conv(Value::Integer(42), PgType::Varchar(Some(80))), Ok(Value::Text(b"42")));
        assert_eq!(conv(Value::Real(3.0), PgType::Integer), Ok(Value::Integer(3)));
        assert_eq!(conv(Value::Integer(3), PgType::Double), Ok(Value::Real(3.0)));
        assert_eq!(conv(Value::Text(b"graphic"), PgType::Enum("enum_feed".into())), Ok(Value::Text(b"graphic")));
        assert_eq!(conv(Value::Text(b""), PgType::Enum("enum_feed".into())), Ok(Value::Text(b"")));
        assert_eq!(
            conv(Value::Text(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), PgType::Uuid),
            Ok(Value::Text(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))
        );
        assert_eq!(
            conv(Value::Text("héllo".as_bytes()), PgType::Varchar(Some(5))),
            Ok(Value::Text("héllo".as_bytes()))
        );
    }

    #[test]
    fn refusals_carry_reasons() {
        let cases: Vec<(Value<'static>, PgType, &str)> = vec![
            (Value::Text(b"{not json"), PgType::Jsonb, "invalid JSON"),
            (Value::Text(b"{\"a\":\"\\u0000\"}"), PgType::Jsonb, "\\u0000"),
            (Value::Text(b"Invalid date"), PgType::TimestampTz, "timestamp"),
            (Value::Text(b""), PgType::TimestampTz, "empty"),
            (Value::Text(b"gallery"), PgType::Enum("enum_feed".into()), "not a value of enum_feed"),
            (Value::Text(b"abcdef"), PgType::Varchar(Some(5)), "longer than varchar(5)"),
            (Value::Text(b"a\0b"), PgType::Text, "NUL"),
            (Value::Text(b"\xff\xfe"), PgType::Text, "UTF-8"),
            (Value::Blob(b"abc"), PgType::Text, "BLOB value in a column of type text"),
            (Value::Integer(3_000_000_000), PgType::Integer, "out of range for integer"),
            (Value::Integer(40_000), PgType::SmallInt, "out of range for smallint"),
            (Value::Text(b"12abc"), PgType::Integer, "text value in a column of type integer"),
            (Value::Integer(2), PgType::Boolean, "not a boolean"),
            (Value::Real(1.5), PgType::Integer, "not a whole number"),
            (Value::Real(f64::NAN), PgType::Jsonb, "not a JSON number"),
            (Value::Integer((1 << 53) + 1), PgType::Double, "exactly"),
            (Value::Text(b"not-a-uuid"), PgType::Uuid, "not a UUID"),
        ];
        for (v, ty, want) in cases {
            let err = conv(v, ty.clone()).expect_err(&format!("{v:?} into {ty:?} must be refused"));
            assert!(err.contains(want), "{v:?} into {ty:?}: {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn null_respects_not_null() {
        let mut out = Column::default();
        assert!(convert_value(Value::Null, &col(PgType::Text, true), &enums(), &mut out).is_err());
        assert!(convert_value(Value::Null, &col(PgType::Text, false), &enums(), &mut out).is_ok());
    }

    #[test]
    fn batch_conversion_drops_rejected_rows_and_reports_each() {
        let mut a = Column::default();
        let mut b = Column::default();
        for (x, y) in [(1, &b"{}"[..]), (2, b"{bad"), (3, b"[]")] {
            a.push(Value::Integer(x));
            b.push(Value::Text(y));
        }
        let src = Batch { rows: 3, columns: vec![a, b] };
        let (ca, cb) = (col(PgType::Integer, true), col(PgType::Jsonb, false));
        let out = to_postgres(&src, &[&ca, &cb], &enums());
        assert_eq!(out.batch.rows, 2);
        assert_eq!(out.batch.columns[0].get(1), Value::Integer(3));
        assert_eq!(out.batch.columns[1].get(1), Value::Json(b"[]"));
        assert_eq!(out.row_hashes.len(), 2);
        assert_eq!(out.rejections.len(), 1);
        assert_eq!((out.rejections[0].row, out.rejections[0].column), (1, 1));
        assert!(out.batch.validate(2).is_ok());
    }

    #[test]
    fn converted_hash_equals_read_back_hash() {
        // What the target returns (jsonb normalised, uuid lower-case) hashes like what was sent.
        let mut out = Column::default();
        let sent = convert_value(Value::Text(b"{\"b\": 1, \"a\": 2}"), &col(PgType::Jsonb, false), &enums(), &mut out)
            .unwrap();
        assert_eq!(sent, value_hash(Value::Json(b"{\"a\": 2, \"b\": 1}")).unwrap());
        let sent = convert_value(Value::Integer(1), &col(PgType::Boolean, false), &enums(), &mut out).unwrap();
        assert_eq!(sent, value_hash(Value::Boolean(true)).unwrap());
    }
}

/// Convert a PostgreSQL batch whose columns have the PostgreSQL types `sources` into what a
/// Blocklet Server keeps in SQLite: booleans 0/1, timestamps as
/// `YYYY-MM-DD HH:MM:SS.SSS +00:00`, JSON as compact text. Row hashes use [`sqlite_hash`].
pub fn to_sqlite(src: &Batch, sources: &[&PgColumn]) -> Converted {
    convert_batch(src, |c, v, out| {
        let before = out.len();
        value_to_sqlite(v, sources[c], out)?;
        sqlite_hash(&sources[c].ty, out.get(before))
    })
}

/// Convert one PostgreSQL value of a `source` column into its SQLite form, into `out`.
pub fn value_to_sqlite(v: Value<'_>, source: &PgColumn, out: &mut Column) -> Result<(), String> {
    match v {
        Value::Null | Value::Integer(_) | Value::Text(_) | Value::Blob(_) => out.push(v),
        Value::Boolean(b) => out.push(Value::Integer(b as i64)),
        Value::Real(f) if f.is_nan() => return Err("NaN cannot be stored in SQLite (it would become NULL)".into()),
        Value::Real(f) => out.push(Value::Real(f)),
        Value::Timestamp(us) => {
            if us.rem_euclid(1000) != 0 {
                return Err(format!(
                    "{} has microseconds; Blocklet Server keeps milliseconds in SQLite",
                    timestamp::format_micros(us)
                ));
            }
            let mut text = [0u8; timestamp::SEQUELIZE_TEXT_MAX];
            let Some(len) = timestamp::write_sequelize_text(us, &mut text) else {
                return Err(format!(
                    "{} is outside the years 0000–9999 the server can read back",
                    timestamp::format_micros(us)
                ));
            };
            out.push(Value::Text(&text[..len]));
        }
        Value::Json(b) => {
            if source.ty == PgType::Json {
                // `json` keeps its text exactly; so does the SQLite copy.
                out.push(Value::Text(b));
            } else {
                out.push_text_with(|bytes| {
                    let start = bytes.len();
                    compact_json(b, bytes);
                    check_sqlite_keeps_number(&bytes[start..])
                })?;
            }
        }
    }
    Ok(())
}

/// Append to `out` jsonb's text (`{"a": 1}`) without the insignificant whitespace (`{"a":1}`),
/// as `JSON.stringify` writes it; strings and numbers are kept byte for byte.
pub fn compact_json(b: &[u8], out: &mut Vec<u8>) {
    out.reserve(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'"' {
            if !b[i].is_ascii_whitespace() {
                out.push(b[i]);
            }
            i += 1;
            continue;
        }
        // A string, copied whole through its closing quote.
        let mut end = i + 1;
        loop {
            end = canonical::plain_run_end(b, end);
            match b.get(end) {
                Some(b'\\') => end += 2,
                Some(b'"') => {
                    end += 1;
                    break;
                }
                Some(_) => end += 1,
                None => break,
            }
        }
        let end = end.min(b.len());
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
}

/// A JSON column has NUMERIC affinity in SQLite: a document that is a bare number is stored
/// as a number. Refuse the ones SQLite would round.
fn check_sqlite_keeps_number(json: &[u8]) -> Result<(), String> {
    let Ok(s) = std::str::from_utf8(json) else { return Ok(()) };
    if !s.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(());
    }
    let integral = !s.contains(['.', 'e', 'E']);
    if integral && s.parse::<i64>().is_err() {
        return Err(format!("the JSON number {s} does not fit SQLite's 64-bit integers and would be rounded"));
    }
    if !integral && !s.parse::<f64>().is_ok_and(f64::is_finite) {
        return Err(format!("the JSON number {s} cannot be held by SQLite"));
    }
    Ok(())
}

/// Hash a value held in SQLite: JSON columns by [`canonical::sqlite_json_text_hash`] (SQLite
/// stores a bare JSON number as a number, so those compare by value), everything else exactly.
pub fn sqlite_hash(ty: &PgType, v: Value<'_>) -> Result<u64, String> {
    match (ty, v) {
        (PgType::Json | PgType::Jsonb, Value::Text(b) | Value::Json(b) | Value::Blob(b)) => {
            Ok(canonical::sqlite_json_text_hash(b))
        }
        (PgType::Json | PgType::Jsonb, Value::Integer(n)) => Ok(canonical::json_number_hash(&n.to_string())),
        (PgType::Json | PgType::Jsonb, Value::Real(f)) => serde_json::Number::from_f64(f)
            .map(|n| canonical::json_number_hash(&n.to_string()))
            .ok_or_else(|| format!("{f} is not a JSON number")),
        _ => value_hash(v),
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn the_ascii_fast_path_decides_as_the_three_passes_do() {
        let mut texts: Vec<Vec<u8>> =
            vec![Vec::new(), b"a".to_vec(), "é".into(), vec![0], vec![0x80], vec![0xff, 0xfe]];
        // Every position of a NUL, a non-ASCII byte, an invalid byte and a multibyte
        // character in texts around the eight-byte chunk edges.
        for len in 1..=20 {
            for at in 0..len {
                for odd in [&[0u8][..], &[0x7f], &[0x80], &[0xc3, 0xa9], &[0xe2, 0x82, 0xac], &[0xc3]] {
                    let mut t = vec![b'x'; len];
                    t.splice(at..at + 1, odd.iter().copied());
                    texts.push(t);
                }
            }
        }
        for t in &texts {
            assert_eq!(plain_ascii(t), t.iter().all(|&c| c != 0 && c < 0x80), "{t:?}");
            for ty in [PgType::Text, PgType::Varchar(None), PgType::Varchar(Some(3)), PgType::Varchar(Some(12))] {
                assert_eq!(checked_text(t, &ty), checked_text_in_three_passes(t, &ty), "{t:?} as {ty:?}");
            }
        }
    }
}

#[cfg(test)]
mod to_sqlite_tests {
    use super::*;

    fn col(ty: PgType) -> PgColumn {
        PgColumn { name: "c".into(), ty, not_null: false, default: None }
    }

    fn conv(v: Value<'_>, ty: PgType) -> Result<Value<'static>, String> {
        let mut out = Column::default();
        value_to_sqlite(v, &col(ty), &mut out)?;
        let leaked: &'static Column = Box::leak(Box::new(out));
        Ok(leaked.get(0))
    }

    fn compacted(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compact_json(b, &mut out);
        out
    }

    #[test]
    fn server_representation() {
        assert_eq!(conv(Value::Boolean(true), PgType::Boolean), Ok(Value::Integer(1)));
        assert_eq!(
            conv(Value::Timestamp(1_795_632_901_750_000), PgType::TimestampTz),
            Ok(Value::Text(b"2026-11-25 18:55:01.750 +00:00"))
        );
        assert_eq!(
            conv(Value::Json(br#"{"a": [1, 2], "b": "x y"}"#), PgType::Jsonb),
            Ok(Value::Text(br#"{"a":[1,2],"b":"x y"}"#))
        );
        assert_eq!(conv(Value::Json(br#"{"a": 1}"#), PgType::Json), Ok(Value::Text(br#"{"a": 1}"#)));
        assert_eq!(compacted(br#"{"q": "a \" b", "e": "\\"}"#), br#"{"q":"a \" b","e":"\\"}"#);
        assert_eq!(
            compacted(br#"[ "a long string, with spaces: and \"quotes\"" , 1 ]"#),
            br#"["a long string, with spaces: and \"quotes\"",1]"#
        );
        assert_eq!(compacted(br#""unterminated \"#), br#""unterminated \"#);
    }

    #[test]
    fn sqlite_json_compares_text_exactly_and_bare_numbers_by_value() {
        let json = |b: &'static [u8]| sqlite_hash(&PgType::Jsonb, Value::Text(b)).unwrap();
        assert_ne!(json(br#"{"a":1}"#), json(br#"{"a": 1}"#));
        assert_ne!(json(br#"{"a":1}"#), json(br#"{"a":1.0}"#));
        assert_ne!(json(br#""1""#), json(b"1"));
        // What SQLite's NUMERIC affinity makes of a bare number compares equal to its text.
        assert_eq!(json(b"1.50"), sqlite_hash(&PgType::Jsonb, Value::Real(1.5)).unwrap());
        assert_eq!(json(b"1e2"), sqlite_hash(&PgType::Json, Value::Integer(100)).unwrap());
        assert_eq!(json(b"-7"), sqlite_hash(&PgType::Json, Value::Integer(-7)).unwrap());
        assert_ne!(json(b"0.10000000000000001"), sqlite_hash(&PgType::Jsonb, Value::Real(0.1)).unwrap());
    }

    #[test]
    fn refuses_what_sqlite_would_change() {
        assert!(
            conv(Value::Timestamp(1_795_632_901_750_001), PgType::TimestampTz).unwrap_err().contains("microseconds")
        );
        assert!(conv(Value::Real(f64::NAN), PgType::Double).unwrap_err().contains("NaN"));
        assert!(conv(Value::Json(b"12345678901234567890"), PgType::Jsonb).unwrap_err().contains("rounded"));
        assert!(conv(Value::Json(b"123"), PgType::Jsonb).is_ok());
        let year_10000 = 253_402_300_800_000_000;
        assert!(conv(Value::Timestamp(year_10000), PgType::TimestampTz).is_err());
    }

    #[test]
    fn json_read_back_as_number_hashes_like_the_text_sent() {
        let ty = PgType::Jsonb;
        assert_eq!(sqlite_hash(&ty, Value::Text(b"5")).unwrap(), sqlite_hash(&ty, Value::Integer(5)).unwrap());
        assert_eq!(sqlite_hash(&ty, Value::Text(b"1.5")).unwrap(), sqlite_hash(&ty, Value::Real(1.5)).unwrap());
    }
}
