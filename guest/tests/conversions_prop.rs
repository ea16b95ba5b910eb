//! Property tests of the value conversions: never a silent change.
//!
//! * SQLite → PostgreSQL ([`convert_value`]): every generated SQLite value (text with arbitrary
//!   bytes, NUL and unicode; integers with their extremes; reals with NaN and ±∞; blobs; JSON
//!   texts; timestamp texts in several spellings) converted into each PostgreSQL type is either
//!   refused with a non-empty reason, or the converted value hashes like what PostgreSQL gives
//!   back for it. "What PostgreSQL gives back" is modelled here, independently of the crate:
//!   text as is, integers in the type's range, float4 rounded to single precision, json as the
//!   text, jsonb as the document with the last of duplicate keys and numbers printed the way
//!   `numeric` prints them (`1e2` → `100`), no `\u0000` in jsonb, uuid in lower case,
//!   timestamps as the instant (inside PostgreSQL's range).
//! * Timestamps: formatting then parsing is exact at millisecond (and microsecond) precision,
//!   and every spelling parses to the instant computed here from its fields.
//! * PostgreSQL → SQLite → PostgreSQL ([`value_to_sqlite`], then SQLite's column affinity, then
//!   [`convert_value`]) is the identity in canonical form for every value not refused with a
//!   reason, and what SQLite holds hashes ([`sqlite_hash`]) like what was written; a batch
//!   ([`to_sqlite`]) keeps or reports every row.

use std::collections::BTreeMap;

use blocklet_migrate_guest::batch::{Batch, Column, Value};
use blocklet_migrate_guest::canonical::{chain, json_hash, json_text_hash, row_start, value_hash};
use blocklet_migrate_guest::convert::{convert_value, sqlite_hash, to_sqlite, value_to_sqlite};
use blocklet_migrate_guest::ddl::{PgColumn, PgType};
use blocklet_migrate_guest::timestamp::{format_micros, parse_text};
use proptest::prelude::*;
use serde_json::Value as J;

const ENUM: &str = "enum_test_kind";

fn enums() -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(ENUM.to_string(), vec!["graphic".into(), "data-tracker".into(), "".into(), "ü-label".into()])])
}

fn col(ty: PgType, not_null: bool) -> PgColumn {
    PgColumn { name: "c".into(), ty, not_null, default: None }
}

/// An owned SQLite / PostgreSQL value, for strategies.
#[derive(Clone)]
enum V {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
    Bool(bool),
    Json(Vec<u8>),
    Ts(i64),
}

/// Text and JSON shown as (lossy) text, blobs as hex: readable failure reports.
impl std::fmt::Debug for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Null => write!(f, "Null"),
            V::Int(n) => write!(f, "Int({n})"),
            V::Real(x) => write!(f, "Real({x:?})"),
            V::Text(b) => write!(f, "Text({:?})", String::from_utf8_lossy(b)),
            V::Blob(b) => write!(f, "Blob(x'{}')", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            V::Bool(b) => write!(f, "Bool({b})"),
            V::Json(b) => write!(f, "Json({:?})", String::from_utf8_lossy(b)),
            V::Ts(t) => write!(f, "Ts({t} = {})", format_micros(*t)),
        }
    }
}

impl V {
    fn as_value(&self) -> Value<'_> {
        match self {
            V::Null => Value::Null,
            V::Int(n) => Value::Integer(*n),
            V::Real(f) => Value::Real(*f),
            V::Text(b) => Value::Text(b),
            V::Blob(b) => Value::Blob(b),
            V::Bool(b) => Value::Boolean(*b),
            V::Json(b) => Value::Json(b),
            V::Ts(t) => Value::Timestamp(*t),
        }
    }
}

fn owned(v: Value<'_>) -> V {
    match v {
        Value::Null => V::Null,
        Value::Integer(n) => V::Int(n),
        Value::Real(f) => V::Real(f),
        Value::Text(b) => V::Text(b.to_vec()),
        Value::Blob(b) => V::Blob(b.to_vec()),
        Value::Boolean(b) => V::Bool(b),
        Value::Json(b) => V::Json(b.to_vec()),
        Value::Timestamp(t) => V::Ts(t),
    }
}

// ------------------------------------------------------------------------------------------------
// Generated JSON: objects keep duplicate keys, so the text can have them
// ------------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum GJ {
    Null,
    Bool(bool),
    Int(i64),
    /// A finite double.
    Float(f64),
    Str(String),
    Arr(Vec<GJ>),
    Obj(Vec<(String, GJ)>),
}

/// The document a JSON parser that keeps the last of duplicate keys (JavaScript, jsonb) sees.
fn meaning(g: &GJ) -> J {
    match g {
        GJ::Null => J::Null,
        GJ::Bool(b) => J::Bool(*b),
        GJ::Int(n) => J::from(*n),
        GJ::Float(f) => J::from(*f),
        GJ::Str(s) => J::String(s.clone()),
        GJ::Arr(items) => J::Array(items.iter().map(meaning).collect()),
        GJ::Obj(pairs) => {
            let mut m = serde_json::Map::new();
            for (k, v) in pairs {
                m.insert(k.clone(), meaning(v));
            }
            J::Object(m)
        }
    }
}

/// How a JSON text is spelled: the same document in different bytes.
#[derive(Clone, Copy, Debug)]
struct Style {
    spaces: bool,
    escape_non_ascii: bool,
    exponent_ints: bool,
}

fn render_str(s: &str, style: Style, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if style.escape_non_ascii && !c.is_ascii() => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn render(g: &GJ, style: Style, out: &mut String) {
    let (comma, colon) = if style.spaces { (", ", ": ") } else { (",", ":") };
    match g {
        GJ::Null => out.push_str("null"),
        GJ::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        GJ::Int(n) if style.exponent_ints && *n != 0 && n % 100 == 0 && n.unsigned_abs() < 1 << 50 => {
            out.push_str(&format!("{}e2", n / 100))
        }
        GJ::Int(n) => out.push_str(&n.to_string()),
        GJ::Float(f) => out.push_str(&serde_json::Number::from_f64(*f).expect("finite").to_string()),
        GJ::Str(s) => render_str(s, style, out),
        GJ::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(comma);
                }
                render(v, style, out);
            }
            out.push(']');
        }
        GJ::Obj(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(comma);
                }
                render_str(k, style, out);
                out.push_str(colon);
                render(v, style, out);
            }
            out.push('}');
        }
    }
}

fn json_text(g: &GJ, style: Style) -> String {
    let mut s = String::new();
    render(g, style, &mut s);
    s
}

/// jsonb's output: keys deduplicated (last wins) and ordered by length, then bytes; `", "` and `": "`.
fn jsonb_text(g: &GJ) -> String {
    fn go(v: &J, out: &mut String) {
        match v {
            J::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())));
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&J::String(k.clone()).to_string());
                    out.push_str(": ");
                    go(&m[k], out);
                }
                out.push('}');
            }
            J::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    go(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    go(&meaning(g), &mut s);
    pg_jsonb_numbers(&s)
}

/// PostgreSQL `numeric`'s output for a JSON number token: no exponent, the scale the input
/// implies (`1.50` → `1.50`, `1e2` → `100`, `2.5e-3` → `0.0025`, `-0` → `0`).
fn pg_numeric_text(token: &str) -> String {
    let (neg, rest) = match token.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, token),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().expect("exponent")),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int}{frac}");
    // value = digits × 10^(exp − frac.len())
    let point = int.len() as i64 + exp;
    let scale = (frac.len() as i64 - exp).max(0);
    let (mut ip, fp) = if point <= 0 {
        (String::from("0"), format!("{}{digits}", "0".repeat((-point) as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_string(), digits[point as usize..].to_string())
    };
    let mut fp: String = fp.chars().chain(std::iter::repeat('0')).take(scale as usize).collect();
    ip = ip.trim_start_matches('0').to_string();
    if ip.is_empty() {
        ip.push('0');
    }
    let zero = ip == "0" && fp.chars().all(|c| c == '0');
    let mut out = if neg && !zero { String::from("-") } else { String::new() };
    out.push_str(&ip);
    if !fp.is_empty() {
        out.push('.');
        out.push_str(&std::mem::take(&mut fp));
    }
    out
}

/// A JSON text with every number spelled as PostgreSQL's jsonb prints it ([`pg_numeric_text`]).
fn pg_jsonb_numbers(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut in_str) = (0, false);
    while i < b.len() {
        let c = b[i];
        if in_str {
            let ch = text[i..].chars().next().expect("char");
            out.push(ch);
            if c == b'\\' {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += ch.len_utf8();
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b"+-.eE".contains(&b[i])) {
                i += 1;
            }
            out.push_str(&pg_numeric_text(&text[start..i]));
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    out
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![Just("a".to_string()), Just("b".to_string()), "[a-z]{0,3}", "\\PC{0,4}"]
}

fn gj_strategy() -> impl Strategy<Value = GJ> {
    let leaf = prop_oneof![
        Just(GJ::Null),
        any::<bool>().prop_map(GJ::Bool),
        any::<i64>().prop_map(GJ::Int),
        prop_oneof![Just(0i64), Just(100), Just(-2500)].prop_map(GJ::Int),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(GJ::Float),
        "\\PC{0,12}".prop_map(GJ::Str),
        Just(GJ::Str("nul\0inside".into())),
        Just(GJ::Str("😀 astral".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(GJ::Arr),
            // Few key names, so duplicate keys are common.
            proptest::collection::vec((key_strategy(), inner), 0..6).prop_map(GJ::Obj),
        ]
    })
}

fn style_strategy() -> impl Strategy<Value = Style> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(spaces, escape_non_ascii, exponent_ints)| Style {
        spaces,
        escape_non_ascii,
        exponent_ints,
    })
}

// ------------------------------------------------------------------------------------------------
// Timestamps, computed independently of the crate
// ------------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The fields of a timestamp text and how it is spelled.
#[derive(Clone, Debug)]
struct TsText {
    y: i64,
    mo: i64,
    d: i64,
    h: i64,
    mi: i64,
    s: i64,
    micros: i64,
    /// Offset east of UTC in minutes.
    offset: i64,
    form: u8,
}

impl TsText {
    /// The instant, in microseconds since the epoch, of what [`TsText::text`] spells.
    fn expected(&self) -> i64 {
        let (h, mi, s, micros, offset) = match self.form {
            4 => (0, 0, 0, 0, 0),
            5 => (self.h, self.mi, 0, 0, 0),
            6 => (self.h, self.mi, self.s, 0, 0),
            _ => (self.h, self.mi, self.s, self.micros, self.offset),
        };
        let secs = days_from_civil(self.y, self.mo, self.d) * 86_400 + h * 3600 + mi * 60 + s - offset * 60;
        secs * 1_000_000 + micros
    }

    fn text(&self) -> String {
        let date = format!("{:04}-{:02}-{:02}", self.y, self.mo, self.d);
        let hms = format!("{:02}:{:02}:{:02}", self.h, self.mi, self.s);
        let (sign, off) = (if self.offset < 0 { '-' } else { '+' }, self.offset.abs());
        let (oh, om) = (off / 60, off % 60);
        let ms = self.micros / 1000;
        match self.form {
            // Sequelize on SQLite: milliseconds are kept, so `micros` is whole milliseconds here.
            0 => format!("{date} {hms}.{ms:03} {sign}{oh:02}:{om:02}"),
            1 => format!("{date}T{hms}.{:06}{sign}{oh:02}:{om:02}", self.micros),
            2 => format!("{date} {hms}.{ms:03} {sign}{oh:02}{om:02}"),
            3 if self.offset == 0 => format!("{date}T{hms}.{ms:03}Z"),
            3 => format!("{date}T{hms}.{ms:03}{sign}{oh:02}{om:02}"),
            4 => date,
            5 => format!("{date} {:02}:{:02}", self.h, self.mi),
            _ => format!("{date} {hms}"),
        }
    }
}

fn ts_text_strategy() -> impl Strategy<Value = TsText> {
    (1i64..=9999, 1i64..=12, 1i64..=31, 0i64..24, 0i64..60, 0i64..60, 0i64..1_000_000, -14 * 60..=14i64 * 60, 0u8..7)
        .prop_map(|(y, mo, d, h, mi, s, micros, offset, form)| {
            let d = d.min(days_in_month(y, mo));
            // Forms 0, 2 and 3 spell milliseconds; 0 and 1 need whole-hour-and-minute offsets (all are).
            let micros = if form == 1 { micros } else { micros / 1000 * 1000 };
            TsText { y, mo, d, h, mi, s, micros, offset, form }
        })
}

/// PostgreSQL's timestamptz range in microseconds since the Unix epoch: 4714-11-24 00:00 BC up
/// to (not including) 294277-01-01.
const PG_TS_MIN: i64 = -210_866_803_200_000_000;
const PG_TS_END: i128 = 9_224_318_016_000_000_000;

fn pg_ts_in_range(us: i64) -> bool {
    us >= PG_TS_MIN && i128::from(us) < PG_TS_END
}

// ------------------------------------------------------------------------------------------------
// SQLite values, and what PostgreSQL gives back
// ------------------------------------------------------------------------------------------------

fn text_bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "\\PC{0,40}".prop_map(String::into_bytes),
        "[ -~]{0,12}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..24),
        Just(b"a\0b".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just("中".repeat(32).into_bytes()),
        Just("中".repeat(33).into_bytes()),
        Just(b"true".to_vec()),
        Just(b"0".to_vec()),
        Just(b"12abc".to_vec()),
        Just(b"graphic".to_vec()),
        Just(b"gallery".to_vec()),
        Just(b"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11".to_vec()),
        Just(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".to_vec()),
        Just(b"a0eebc999c0b4ef8bb6d6bb9bd380a11".to_vec()),
        Just(b"Invalid date".to_vec()),
        Just(Vec::new()),
    ]
}

fn sqlite_value_strategy() -> impl Strategy<Value = V> {
    prop_oneof![
        Just(V::Null),
        any::<i64>().prop_map(V::Int),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::from(i32::MIN) - 1),
            Just(i64::from(i32::MAX) + 1),
            Just(i64::from(i16::MAX) + 1),
            Just(0),
            Just(1),
            Just(2),
            Just(-1),
            Just((1 << 53) + 1),
            Just(1_764_095_902),
            Just(1_764_095_902_123),
            Just(-9_000_000_000_000_000),
        ]
        .prop_map(V::Int),
        any::<f64>().prop_map(V::Real),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.1),
            Just(3.0),
            Just(1.5),
            Just(1e300),
            Just(1_764_095_902.5),
        ]
        .prop_map(V::Real),
        text_bytes_strategy().prop_map(V::Text),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(V::Blob),
        (gj_strategy(), style_strategy()).prop_map(|(g, st)| V::Text(json_text(&g, st).into_bytes())),
        (gj_strategy(), style_strategy()).prop_map(|(g, st)| V::Blob(json_text(&g, st).into_bytes())),
        ts_text_strategy().prop_map(|t| V::Text(t.text().into_bytes())),
    ]
}

fn text_types() -> impl Strategy<Value = PgType> {
    prop_oneof![
        (1u32..40).prop_map(|n| PgType::Varchar(Some(n))),
        Just(PgType::Varchar(Some(32))),
        Just(PgType::Varchar(None)),
        Just(PgType::Text),
        Just(PgType::Enum(ENUM.into())),
    ]
}

fn integer_types() -> impl Strategy<Value = PgType> {
    prop_oneof![Just(PgType::SmallInt), Just(PgType::Integer), Just(PgType::BigInt)]
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// Whether a JSON text has a `\u0000` escape anywhere (in a string or a key, kept or not).
fn has_nul_escape(text: &str) -> bool {
    let b = text.as_bytes();
    let (mut in_str, mut i) = (false, 0);
    while i < b.len() {
        match (in_str, b[i]) {
            (false, b'"') => in_str = true,
            (true, b'"') => in_str = false,
            (true, b'\\') => {
                if b[i + 1..].starts_with(b"u0000") {
                    return true;
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// Parses a JSON text as PostgreSQL does, into the document it means (`None`: PostgreSQL refuses
/// it, or it is outside what the canonical form covers). jsonb refuses every `\u0000` escape,
/// even in a value a later duplicate key replaces.
fn pg_json(bytes: &[u8], jsonb: bool) -> Option<J> {
    let s = std::str::from_utf8(bytes).ok()?;
    let v: J = serde_json::from_str(s).ok()?;
    if jsonb && has_nul_escape(s) {
        return None;
    }
    Some(v)
}

/// What PostgreSQL holds, and returns on reading back, after storing SQLite value `v` into a
/// column of type `ty` — modelled independently of the crate. `None`: there is no faithful value.
fn pg_read_back(v: &V, ty: &PgType) -> Option<V> {
    let text_ok = |b: &[u8], max: Option<u32>| -> Option<V> {
        let s = std::str::from_utf8(b).ok()?;
        if s.contains('\0') || max.is_some_and(|m| s.chars().count() > m as usize) {
            return None;
        }
        Some(V::Text(b.to_vec()))
    };
    let int_range = |n: i64| -> Option<V> {
        let (lo, hi) = match ty {
            PgType::SmallInt => (i64::from(i16::MIN), i64::from(i16::MAX)),
            PgType::Integer => (i64::from(i32::MIN), i64::from(i32::MAX)),
            _ => (i64::MIN, i64::MAX),
        };
        (lo..=hi).contains(&n).then_some(V::Int(n))
    };
    match (ty, v) {
        (_, V::Null) => Some(V::Null),
        (PgType::Varchar(max), V::Text(b)) => text_ok(b, *max),
        (PgType::Text, V::Text(b)) => text_ok(b, None),
        (PgType::Varchar(max), V::Int(n)) => text_ok(n.to_string().as_bytes(), *max),
        (PgType::Text, V::Int(n)) => text_ok(n.to_string().as_bytes(), None),
        (PgType::Enum(_), V::Text(b)) => {
            let s = std::str::from_utf8(b).ok()?;
            enums()[ENUM].iter().any(|l| l == s).then(|| V::Text(b.clone()))
        }
        (PgType::SmallInt | PgType::Integer | PgType::BigInt, V::Int(n)) => int_range(*n),
        (PgType::SmallInt | PgType::Integer | PgType::BigInt, V::Real(f)) => {
            (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then(|| int_range(*f as i64)).flatten()
        }
        (PgType::Double, V::Real(f)) => Some(V::Real(*f)),
        (PgType::Double, V::Int(n)) => ((n.unsigned_abs()) <= 1 << 53).then_some(V::Real(*n as f64)),
        // float4 keeps single precision: what comes back is the value rounded to f32.
        (PgType::Real, V::Real(f)) => Some(V::Real(f64::from(*f as f32))),
        (PgType::Real, V::Int(n)) => Some(V::Real(f64::from(*n as f32))),
        (PgType::Boolean, V::Int(0)) => Some(V::Bool(false)),
        (PgType::Boolean, V::Int(1)) => Some(V::Bool(true)),
        (PgType::Boolean, V::Text(b)) => match b.as_slice() {
            b"true" | b"1" => Some(V::Bool(true)),
            b"false" | b"0" => Some(V::Bool(false)),
            _ => None,
        },
        (PgType::Json | PgType::Jsonb, V::Text(b) | V::Blob(b)) => {
            let doc = pg_json(b, *ty == PgType::Jsonb)?;
            Some(V::Json(if *ty == PgType::Json { b.clone() } else { pg_jsonb_numbers(&doc.to_string()).into_bytes() }))
        }
        (PgType::Json | PgType::Jsonb, V::Int(n)) => Some(V::Json(n.to_string().into_bytes())),
        (PgType::Json | PgType::Jsonb, V::Real(f)) => {
            let text = serde_json::Number::from_f64(*f)?.to_string();
            Some(V::Json(if *ty == PgType::Json { text } else { pg_numeric_text(&text) }.into_bytes()))
        }
        (PgType::TimestampTz, V::Text(b)) => {
            let us = parse_text(std::str::from_utf8(b).ok()?).ok()?;
            pg_ts_in_range(us).then_some(V::Ts(us))
        }
        (PgType::TimestampTz, V::Int(n)) => {
            let n = *n as f64;
            let us = if n.abs() >= 1e11 { n * 1e3 } else { n * 1e6 };
            (us.abs() < 9.2e18 && pg_ts_in_range(us as i64)).then_some(V::Ts(us.round() as i64))
        }
        (PgType::TimestampTz, V::Real(f)) => {
            if !f.is_finite() {
                return None;
            }
            let us = if f.abs() >= 1e11 { f * 1e3 } else { f * 1e6 };
            (us.abs() < 9.2e18 && pg_ts_in_range(us as i64)).then_some(V::Ts(us.round() as i64))
        }
        (PgType::Uuid, V::Text(b)) => {
            let s = std::str::from_utf8(b).ok()?;
            is_uuid(s).then(|| V::Text(s.to_ascii_lowercase().into_bytes()))
        }
        (PgType::Bytea, V::Blob(b)) => Some(V::Blob(b.clone())),
        _ => None,
    }
}

/// 2000 cases a property; failures are reported, not written into the source tree.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() }
}

fn hash(v: &V) -> u64 {
    value_hash(v.as_value()).expect("hashable")
}

/// SQLite → PostgreSQL: refused with a reason, or hashes like PostgreSQL's read-back.
fn check_sqlite_to_pg(v: &V, ty: &PgType, not_null: bool) -> Result<(), TestCaseError> {
    let target = col(ty.clone(), not_null);
    let mut out = Column::default();
    match convert_value(v.as_value(), &target, &enums(), &mut out) {
        Err(reason) => {
            prop_assert!(!reason.trim().is_empty(), "empty reason for {v:?} into {ty:?}");
            prop_assert_eq!(out.len(), 0, "a refused value was still written: {:?}", out);
        }
        Ok(h) => {
            prop_assert_eq!(out.len(), 1);
            prop_assert!(!(not_null && matches!(v, V::Null)), "NULL accepted into a NOT NULL column");
            let sent = owned(out.get(0));
            let Some(back) = pg_read_back(v, ty) else {
                return Err(TestCaseError::fail(format!(
                    "{v:?} into {ty:?} was accepted as {sent:?}, but PostgreSQL holds no faithful value for it"
                )));
            };
            prop_assert_eq!(h, hash(&back), "{:?} into {:?}: sent {:?}, PostgreSQL gives back {:?}", v, ty, sent, back);
            prop_assert_eq!(
                hash(&sent),
                hash(&back),
                "{:?} into {:?}: sent {:?}, PostgreSQL gives back {:?}",
                v,
                ty,
                sent,
                back
            );
            // Text, bytes and JSON text go over unchanged (nothing stripped, trimmed or re-spelled).
            match (v, &sent, ty) {
                (V::Text(a), V::Text(b), PgType::Varchar(_) | PgType::Text | PgType::Enum(_)) => prop_assert_eq!(a, b),
                (V::Text(a) | V::Blob(a), V::Json(b), _) => prop_assert_eq!(a, b),
                (V::Blob(a), V::Blob(b), _) => prop_assert_eq!(a, b),
                _ => {}
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sqlite_to_text_types(v in sqlite_value_strategy(), ty in text_types(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &ty, nn)?;
    }

    #[test]
    fn sqlite_to_integer_types(v in sqlite_value_strategy(), ty in integer_types(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &ty, nn)?;
    }

    #[test]
    fn sqlite_to_double_precision(v in sqlite_value_strategy(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &PgType::Double, nn)?;
    }

    /// No 1.17.12 column is `real` (float4), but the conversion offers it.
    #[test]
    fn sqlite_to_real(v in sqlite_value_strategy(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &PgType::Real, nn)?;
    }

    #[test]
    fn sqlite_to_boolean(v in sqlite_value_strategy(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &PgType::Boolean, nn)?;
    }

    #[test]
    fn sqlite_to_json_and_jsonb(v in sqlite_value_strategy(), jsonb in any::<bool>(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &if jsonb { PgType::Jsonb } else { PgType::Json }, nn)?;
    }

    #[test]
    fn sqlite_to_timestamptz(v in sqlite_value_strategy(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &PgType::TimestampTz, nn)?;
    }

    #[test]
    fn sqlite_to_uuid_and_bytea(v in sqlite_value_strategy(), bytea in any::<bool>(), nn in any::<bool>()) {
        check_sqlite_to_pg(&v, &if bytea { PgType::Bytea } else { PgType::Uuid }, nn)?;
    }

    /// Hashing while parsing gives the hash of the parsed tree, for every document and spelling.
    #[test]
    fn streaming_json_hash_is_the_tree_hash(g in gj_strategy(), st in style_strategy()) {
        let text = json_text(&g, st);
        let tree: J = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        let digest = json_text_hash(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(digest.hash, json_hash(&tree), "{}", text);
    }

    /// The hand-written scanner accepts exactly the texts `serde_json` accepts: every generated
    /// document with up to three bytes replaced, inserted or removed.
    #[test]
    fn json_scanner_accepts_what_serde_json_accepts(
        g in gj_strategy(),
        st in style_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop_oneof![
            Just(b'"'), Just(b'\\'), Just(b','), Just(b':'), Just(b'['), Just(b']'), Just(b'{'), Just(b'}'),
            Just(b'0'), Just(b'-'), Just(b'.'), Just(b'e'), Just(b'u'), Just(b' '), Just(b'\n'), Just(0x01u8),
            Just(0xffu8), any::<u8>(),
        ]), 0..4),
    ) {
        let mut text = json_text(&g, st).into_bytes();
        for (at, op, byte) in edits {
            let i = at.index(text.len() + 1);
            match op {
                0 if i < text.len() => text[i] = byte,
                1 => text.insert(i, byte),
                _ if i < text.len() => { text.remove(i); }
                _ => {}
            }
        }
        let serde = serde_json::from_slice::<J>(&text);
        let ours = json_text_hash(&text);
        prop_assert_eq!(ours.is_ok(), serde.is_ok(), "{:?}: ours {:?}, serde_json {:?}", String::from_utf8_lossy(&text), ours, serde);
        if let (Ok(d), Ok(tree)) = (ours, serde) {
            prop_assert_eq!(d.hash, json_hash(&tree), "{:?}", String::from_utf8_lossy(&text));
        }
    }

    /// Every generated JSON document, in every spelling, into json and jsonb: the hash is the
    /// document's (duplicate keys: the last one), and jsonb refuses `\u0000` with a reason.
    #[test]
    fn json_text_keeps_its_document(g in gj_strategy(), st in style_strategy(), jsonb in any::<bool>(), blob in any::<bool>()) {
        let text = json_text(&g, st);
        let ty = if jsonb { PgType::Jsonb } else { PgType::Json };
        let v = if blob { V::Blob(text.clone().into_bytes()) } else { V::Text(text.clone().into_bytes()) };
        let mut out = Column::default();
        let got = convert_value(v.as_value(), &col(ty, false), &enums(), &mut out);
        if jsonb && has_nul_escape(&text) {
            prop_assert!(got.as_ref().is_err_and(|e| e.contains("\\u0000")), "jsonb cannot hold \\u0000, but {} gave {:?}", text, got);
        } else {
            let h = got.map_err(|e| TestCaseError::fail(format!("{text} refused: {e}")))?;
            prop_assert_eq!(out.get(0), Value::Json(text.as_bytes()));
            // What PostgreSQL gives back for the same document hashes the same.
            let back = if jsonb { jsonb_text(&g) } else { text.clone() };
            prop_assert_eq!(h, hash(&V::Json(back.clone().into_bytes())), "{} read back as {}", text, back);
        }
    }

    /// Formatting then parsing is exact, at millisecond and at microsecond precision.
    #[test]
    fn timestamp_format_then_parse_is_exact(ms in -62_135_596_800_000i64..253_402_300_800_000, sub in 0i64..1000, micro in any::<bool>()) {
        let us = ms * 1000 + if micro { sub } else { 0 };
        let text = format_micros(us);
        prop_assert_eq!(parse_text(&text), Ok(us), "{}", text);
        if !micro {
            prop_assert!(text.ends_with(" +00:00") && text.len() == 30, "not the Sequelize form: {}", text);
        }
    }

    /// Every spelling of a timestamp parses to the instant its fields give.
    #[test]
    fn timestamp_spellings_parse_to_their_instant(t in ts_text_strategy()) {
        prop_assert_eq!(parse_text(&t.text()), Ok(t.expected()), "{}", t.text());
    }

    /// Text that is not a timestamp is refused with a reason, never read as some other instant.
    #[test]
    fn timestamp_garbage_is_refused(s in "\\PC{0,24}") {
        if let Ok(us) = parse_text(&s) {
            // Whatever parses must spell exactly that instant in one of the known forms.
            let t = s.trim();
            let reparsed = parse_text(&format_micros(us));
            prop_assert_eq!(reparsed, Ok(us));
            prop_assert!(t.len() >= 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-', "{:?} parsed as {}", s, us);
        } else {
            prop_assert!(!parse_text(&s).unwrap_err().is_empty());
        }
    }
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL → SQLite → PostgreSQL
// ------------------------------------------------------------------------------------------------

/// A value as PostgreSQL returns it for a column of type `ty`.
fn pg_value_strategy() -> impl Strategy<Value = (PgType, V)> {
    let ts = prop_oneof![
        (PG_TS_MIN..9_000_000_000_000_000_000i64).prop_map(V::Ts),
        (-62_135_596_800_000i64..253_402_300_800_000).prop_map(|ms| V::Ts(ms * 1000)),
    ];
    let utf8_no_nul = "\\PC{0,30}".prop_filter("no NUL", |s: &String| !s.contains('\0'));
    prop_oneof![
        (prop_oneof![Just(PgType::Text), Just(PgType::Varchar(None))], utf8_no_nul.clone())
            .prop_map(|(t, s)| (t, V::Text(s.into_bytes()))),
        prop_oneof![Just("graphic"), Just("data-tracker"), Just(""), Just("ü-label")]
            .prop_map(|s| (PgType::Enum(ENUM.into()), V::Text(s.as_bytes().to_vec()))),
        any::<i16>().prop_map(|n| (PgType::SmallInt, V::Int(n.into()))),
        any::<i32>().prop_map(|n| (PgType::Integer, V::Int(n.into()))),
        any::<i64>().prop_map(|n| (PgType::BigInt, V::Int(n))),
        any::<f64>().prop_map(|f| (PgType::Double, V::Real(f))),
        any::<bool>().prop_map(|b| (PgType::Boolean, V::Bool(b))),
        // jsonb cannot hold \u0000.
        gj_strategy()
            .prop_map(|g| jsonb_text(&g))
            .prop_filter("no \\u0000", |t| !has_nul_escape(t))
            .prop_map(|t| (PgType::Jsonb, V::Json(t.into_bytes()))),
        (gj_strategy(), style_strategy()).prop_map(|(g, st)| (PgType::Json, V::Json(json_text(&g, st).into_bytes()))),
        ts.prop_map(|t| (PgType::TimestampTz, t)),
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
            .prop_map(|s| (PgType::Uuid, V::Text(s.into_bytes()))),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| (PgType::Bytea, V::Blob(b))),
        Just((PgType::Text, V::Null)),
    ]
}

/// What SQLite stores for value `v` written to a column Blocklet Server declares for `ty`: JSON
/// columns have NUMERIC affinity (a text that is a number is stored as that number), the
/// rest keep what they are given.
fn sqlite_affinity(ty: &PgType, v: V) -> V {
    match (ty, v) {
        (PgType::Json | PgType::Jsonb, V::Text(b)) => {
            let s = String::from_utf8_lossy(&b).into_owned();
            let t = s.trim();
            let numeric = !t.is_empty()
                && t.bytes().all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c))
                && t.bytes().any(|c| c.is_ascii_digit());
            if numeric && let Ok(n) = t.parse::<i64>() {
                V::Int(n)
            } else if numeric && let Ok(f) = t.parse::<f64>() {
                if f.fract() == 0.0 && f.abs() < 9.2e18 { V::Int(f as i64) } else { V::Real(f) }
            } else {
                V::Text(b)
            }
        }
        (_, v) => v,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn postgres_to_sqlite_to_postgres_is_identity(tv in pg_value_strategy()) {
        let (ty, v) = tv;
        let column = col(ty.clone(), false);
        let mut lite = Column::default();
        match value_to_sqlite(v.as_value(), &column, &mut lite) {
            Err(reason) => prop_assert!(!reason.trim().is_empty(), "empty reason for {v:?} of {ty:?}"),
            Ok(()) => {
                prop_assert_eq!(lite.len(), 1);
                let written = owned(lite.get(0));
                // The PostgreSQL → SQLite verification: what SQLite holds hashes like what was written.
                let stored = sqlite_affinity(&ty, written.clone());
                let sent = sqlite_hash(&ty, written.as_value());
                prop_assert!(sent.is_ok(), "{:?} of {:?} written as {:?}: {:?}", v, ty, written, sent);
                prop_assert_eq!(sqlite_hash(&ty, stored.as_value()), sent, "{:?} of {:?}: written {:?}, SQLite holds {:?}", v, ty, written, stored);
                let mut back = Column::default();
                let h = convert_value(stored.as_value(), &column, &enums(), &mut back);
                prop_assert_eq!(h.clone(), Ok(hash(&v)), "{:?} of {:?} → SQLite {:?} → {:?}", v, ty, stored, h);
                prop_assert_eq!(hash(&owned(back.get(0))), hash(&v));
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// A batch PostgreSQL → SQLite: every row is either kept, in order, with the row hash of its
    /// SQLite value, or reported with a reason; a kept value is what [`value_to_sqlite`] gives.
    #[test]
    fn to_sqlite_keeps_or_reports_every_row(first in pg_value_strategy(), more in proptest::collection::vec(pg_value_strategy(), 0..24)) {
        let ty = first.0.clone();
        let values: Vec<V> = std::iter::once(first).chain(more).filter(|(t, _)| *t == ty).map(|(_, v)| v).collect();
        let mut column = Column::default();
        for v in &values {
            column.push(v.as_value());
        }
        let source = col(ty.clone(), false);
        let src = Batch { rows: values.len() as u32, columns: vec![column] };
        let converted = to_sqlite(&src, &[&source]);
        prop_assert!(converted.rejections.iter().all(|r| !r.reason.trim().is_empty() && r.column == 0));
        let rejected: std::collections::BTreeSet<usize> = converted.rejections.iter().map(|r| r.row).collect();
        prop_assert_eq!(converted.batch.rows as usize + rejected.len(), values.len());
        prop_assert_eq!(converted.row_hashes.len(), converted.batch.rows as usize);
        prop_assert!(converted.batch.validate(1).is_ok());
        let kept: Vec<&V> = values.iter().enumerate().filter(|(i, _)| !rejected.contains(i)).map(|(_, v)| v).collect();
        for (j, v) in kept.into_iter().enumerate() {
            let mut one = Column::default();
            prop_assert!(value_to_sqlite(v.as_value(), &source, &mut one).is_ok(), "{:?} kept, but refused alone", v);
            let got = converted.batch.columns[0].get(j);
            prop_assert_eq!(got, one.get(0), "row {} of {:?}", j, ty);
            prop_assert_eq!(Ok(converted.row_hashes[j]), sqlite_hash(&ty, got).map(|h| chain(row_start(), h)));
        }
    }
}

#[test]
fn nan_and_infinity_have_no_timestamp_or_json_form() {
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for ty in [PgType::TimestampTz, PgType::Json, PgType::Jsonb, PgType::Integer] {
            let mut out = Column::default();
            let r = convert_value(Value::Real(f), &col(ty.clone(), false), &enums(), &mut out);
            assert!(r.as_ref().is_err_and(|e| !e.is_empty()), "{f} into {ty:?}: {r:?}");
        }
    }
    let mut out = Column::default();
    assert!(value_to_sqlite(Value::Real(f64::NAN), &col(PgType::Double, false), &mut out).is_err());
}

#[test]
fn the_numeric_model_prints_like_postgresql() {
    for (input, pg) in [
        ("1.50", "1.50"),
        ("1e2", "100"),
        ("1E+2", "100"),
        ("2.5e-3", "0.0025"),
        ("-0", "0"),
        ("-0.0", "0.0"),
        ("-12.5e1", "-125"),
        ("0.000", "0.000"),
        ("123", "123"),
        ("1.7976931348623157e308", &format!("17976931348623157{}", "0".repeat(292))),
    ] {
        assert_eq!(pg_numeric_text(input), pg, "{input}");
    }
    assert_eq!(
        pg_jsonb_numbers(r#"{"a": [1e2, "1e2", -0.50], "b\"1e1": 2E-1}"#),
        r#"{"a": [100, "1e2", -0.50], "b\"1e1": 0.2}"#
    );
}

/// PostgreSQL refuses every `\u0000` escape in jsonb input, also one a later duplicate key replaces.
#[test]
fn jsonb_refuses_a_nul_escape_that_a_duplicate_key_replaces() {
    let text = br#"{"a":"x\u0000y","a":1}"#;
    let mut out = Column::default();
    let got = convert_value(Value::Text(text), &col(PgType::Jsonb, false), &enums(), &mut out);
    assert!(got.is_err(), "accepted into jsonb, which PostgreSQL refuses: {got:?}");
}
