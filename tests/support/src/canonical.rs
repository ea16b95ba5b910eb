//! The canonical row form: every SQLite and PostgreSQL value turned into one JSON value, so rows
//! of the two engines compare as strings. The column's kind ([`ColKind`]) comes from the reference
//! PostgreSQL type, and decides how a value of each storage class reads.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::timestamp::parse_timestamp_micros;

/// How a column's values are canonicalised so that SQLite and PostgreSQL values can be compared.
/// The kind is taken from the *PostgreSQL* type in schema-facts.json. SQL NULL is always JSON `null`.
///
/// | kind | PostgreSQL types | SQLite storage accepted | canonical JSON |
/// |---|---|---|---|
/// | `Bool` | boolean | integer 0/1, text "0"/"1"/"true"/"false" | `false`/`true` |
/// | `Int` | smallint, integer, bigint | integer, integral real, numeric text | integer |
/// | `Float` | double precision, real, numeric | real (read as `%!.17g`), integer, numeric text | f64 number (PG read as `::text`) |
/// | `Timestamp` | timestamptz, timestamp, date | text `YYYY-MM-DD[ T]HH:MM[:SS[.f]][ ][Z|±HH[:MM]]` (no offset = UTC); integer = epoch ms | **epoch microseconds** (integer); PG side is `extract(epoch …)*1e6`. This is stricter than ms, and SQLite has ms precision |
/// | `Json` | json, jsonb | text parsed as JSON, integer/real (JSON affinity is NUMERIC), UTF-8 blob | the parsed value with object keys sorted and every number as f64; PG read as `::text`, so jsonb `'null'` ≠ SQL NULL |
/// | `Uuid` | uuid | text | lower-case string |
/// | `Text` | varchar, text, enum (USER-DEFINED) | text (integer/real as their decimal text, UTF-8 blob as text) | string |
///
/// A value that cannot be converted becomes a string `<<unconvertible …>>`. It can't equal any real
/// value, so the mismatch report shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    Bool,
    Int,
    Float,
    Timestamp,
    Json,
    Uuid,
    Text,
}

impl ColKind {
    /// From information_schema `data_type` / `udt_name`.
    pub fn from_pg(data_type: &str, udt_name: &str) -> ColKind {
        match data_type {
            "boolean" => ColKind::Bool,
            "smallint" | "integer" | "bigint" => ColKind::Int,
            "double precision" | "real" | "numeric" => ColKind::Float,
            "timestamp with time zone" | "timestamp without time zone" | "date" => ColKind::Timestamp,
            "json" | "jsonb" => ColKind::Json,
            "uuid" => ColKind::Uuid,
            _ => match udt_name {
                "bool" => ColKind::Bool,
                "int2" | "int4" | "int8" => ColKind::Int,
                "float4" | "float8" | "numeric" => ColKind::Float,
                "timestamptz" | "timestamp" | "date" => ColKind::Timestamp,
                "json" | "jsonb" => ColKind::Json,
                "uuid" => ColKind::Uuid,
                _ => ColKind::Text,
            },
        }
    }

    /// From a SQLite declared type, following Sequelize's mapping (`TINYINT(1)` = BOOLEAN, `DATETIME` = DATE, …).
    /// Used only for tables that schema-facts.json does not know.
    pub fn from_sqlite_decl(decl: &str) -> ColKind {
        let d = decl.trim().to_ascii_uppercase();
        if d.starts_with("TINYINT(1)") || d == "BOOLEAN" || d == "BOOL" {
            ColKind::Bool
        } else if d.starts_with("DATETIME") || d.starts_with("TIMESTAMP") || d == "DATE" {
            ColKind::Timestamp
        } else if d.starts_with("JSON") {
            ColKind::Json
        } else if d.contains("INT") {
            ColKind::Int
        } else if d.starts_with("FLOAT")
            || d.starts_with("DOUBLE")
            || d.starts_with("REAL")
            || d.starts_with("DECIMAL")
            || d.starts_with("NUMERIC")
        {
            ColKind::Float
        } else if d == "UUID" {
            ColKind::Uuid
        } else {
            ColKind::Text
        }
    }
}

fn unconvertible(side: &str, storage: &str, kind: ColKind, raw: &str) -> Value {
    Value::String(format!("<<unconvertible {side} {storage} as {kind:?}: {raw}>>"))
}

fn num_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or_else(|| Value::String(format!("float:{x}")))
}

/// Canonical JSON: object keys sorted (whatever serde_json's `preserve_order` feature says), numbers as f64.
pub fn canonical_json(v: &Value) -> Value {
    match v {
        Value::Number(n) => num_f64(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => Value::Array(a.iter().map(canonical_json).collect()),
        Value::Object(o) => {
            let sorted: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let mut m = Map::new();
            for (k, v) in sorted {
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Canonical value of one SQLite cell. `storage` is its `typeof()`. `v` is what the snapshot query
/// returned: blobs come as hex text and reals as `%!.17g` text.
pub fn canonical_sqlite_value(kind: ColKind, storage: &str, v: &Value) -> Value {
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match storage {
        "null" => Value::Null,
        "integer" => {
            let Some(i) = v.as_i64().or_else(|| raw.parse().ok()) else {
                return unconvertible("sqlite", storage, kind, &raw);
            };
            match kind {
                ColKind::Bool => match i {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => unconvertible("sqlite", storage, kind, &raw),
                },
                ColKind::Int => Value::from(i),
                ColKind::Float | ColKind::Json => num_f64(i as f64),
                ColKind::Timestamp => Value::from(i.saturating_mul(1000)),
                ColKind::Uuid | ColKind::Text => Value::String(i.to_string()),
            }
        }
        "real" => {
            let Ok(x) = raw.trim().parse::<f64>() else {
                return unconvertible("sqlite", storage, kind, &raw);
            };
            match kind {
                ColKind::Bool if x == 0.0 => Value::Bool(false),
                ColKind::Bool if x == 1.0 => Value::Bool(true),
                ColKind::Int if x.fract() == 0.0 && x.abs() < 9.0e18 => Value::from(x as i64),
                ColKind::Float | ColKind::Json => num_f64(x),
                ColKind::Timestamp => Value::from((x * 1000.0).round() as i64),
                ColKind::Text | ColKind::Uuid => Value::String(raw),
                _ => unconvertible("sqlite", storage, kind, &raw),
            }
        }
        "text" => match kind {
            ColKind::Bool => match raw.as_str() {
                "0" | "false" => Value::Bool(false),
                "1" | "true" => Value::Bool(true),
                _ => unconvertible("sqlite", storage, kind, &raw),
            },
            ColKind::Int => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Float => {
                raw.trim().parse::<f64>().map(num_f64).unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw))
            }
            ColKind::Timestamp => parse_timestamp_micros(&raw)
                .map(Value::from)
                .unwrap_or_else(|| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Json => serde_json::from_str::<Value>(&raw)
                .map(|j| canonical_json(&j))
                .unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Uuid => Value::String(raw.to_ascii_lowercase()),
            ColKind::Text => Value::String(raw),
        },
        "blob" => match hex_decode(&raw).map(String::from_utf8) {
            Some(Ok(s)) => canonical_sqlite_value(kind, "text", &Value::String(s)),
            _ => unconvertible("sqlite", storage, kind, &format!("x'{raw}'")),
        },
        other => unconvertible("sqlite", other, kind, &raw),
    }
}

/// Canonical value of one PostgreSQL cell, as fetched by [`pg_rows`]. Bool/Int come as JSON
/// bool/number, Timestamp as integer epoch µs, everything else as `::text` strings.
pub fn canonical_pg_value(kind: ColKind, v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match kind {
        ColKind::Bool => match v {
            Value::Bool(b) => Value::Bool(*b),
            _ => unconvertible("pg", "value", kind, &raw),
        },
        ColKind::Int | ColKind::Timestamp => {
            v.as_i64().map(Value::from).unwrap_or_else(|| unconvertible("pg", "value", kind, &raw))
        }
        ColKind::Float => raw.parse::<f64>().map(num_f64).unwrap_or_else(|_| unconvertible("pg", "value", kind, &raw)),
        ColKind::Json => serde_json::from_str::<Value>(&raw)
            .map(|j| canonical_json(&j))
            .unwrap_or_else(|_| unconvertible("pg", "value", kind, &raw)),
        ColKind::Uuid => Value::String(raw.to_ascii_lowercase()),
        ColKind::Text => Value::String(raw),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}
