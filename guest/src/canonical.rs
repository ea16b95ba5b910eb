//! Order-independent checksums over canonical values, computed the same way on both sides of
//! a migration so that "same rows, same values" can be checked without sorting anything.
//!
//! A value hashes by its meaning, not its spelling: JSON by its parsed tree (keys sorted,
//! numbers as doubles, so `{"b":1, "a":1.0}` equals jsonb's `{"a": 1.0, "b": 1}`), timestamps
//! by their instant, everything else by its exact bytes or number. A row hash chains its
//! values in column order; a table checksum adds row hashes, so row order does not matter.

use crate::batch::Value;
use xxhash_rust::xxh64::xxh64;

/// Count and sum of row hashes of one table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableChecksum {
    pub rows: u64,
    pub sum: u64,
}

impl TableChecksum {
    pub fn add_row(&mut self, row_hash: u64) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(row_hash);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.sum)
    }
}

const ROW_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// The starting hash of a row.
pub fn row_start() -> u64 {
    ROW_SEED
}

/// Chain one value hash into a row hash (order-dependent within the row).
pub fn chain(row: u64, value: u64) -> u64 {
    (row ^ value).wrapping_mul(0x1000_0000_01B3).rotate_left(29) ^ (row >> 17)
}

mod seed {
    pub const NULL: u64 = 1;
    pub const INTEGER: u64 = 2;
    pub const REAL: u64 = 3;
    pub const TEXT: u64 = 4;
    pub const BLOB: u64 = 5;
    pub const BOOLEAN: u64 = 6;
    pub const TIMESTAMP: u64 = 7;
    pub const JSON_NULL: u64 = 10;
    pub const JSON_BOOL: u64 = 11;
    pub const JSON_NUMBER: u64 = 12;
    pub const JSON_STRING: u64 = 13;
    pub const JSON_ARRAY: u64 = 14;
    pub const JSON_OBJECT: u64 = 15;
    pub const JSON_KEY: u64 = 16;
    pub const JSON_TEXT: u64 = 17;
}

// The hashes use 64-bit multiplies only. xxh3 multiplies 64×64→128 bits, which wasm32 has no
// instruction for (each was a call to `__multi3`) unless the host enables the wide-arithmetic
// proposal, and a component that needs it would not run on hosts released before it.

/// Hash of a byte string (xxh64).
pub(crate) fn bytes_hash(bytes: &[u8], seed: u64) -> u64 {
    xxh64(bytes, seed)
}

/// Hash of one 64-bit number: the seed and the number mixed by MurmurHash3's 64-bit finalizer.
pub(crate) fn number(seed: u64, n: u64) -> u64 {
    let mut h = n ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// Hash a scalar or byte value. JSON values must go through [`json_hash`] instead.
pub fn value_hash(value: Value<'_>) -> Result<u64, String> {
    Ok(match value {
        Value::Null => number(seed::NULL, 0),
        Value::Integer(v) => number(seed::INTEGER, v as u64),
        Value::Real(v) => number(seed::REAL, canonical_f64(v).to_bits()),
        Value::Text(b) => bytes_hash(b, seed::TEXT),
        Value::Blob(b) => bytes_hash(b, seed::BLOB),
        Value::Boolean(v) => number(seed::BOOLEAN, v as u64),
        Value::Timestamp(v) => number(seed::TIMESTAMP, v as u64),
        Value::Json(b) => json_text_hash(b).map_err(|e| format!("invalid JSON read back: {e}"))?.hash,
    })
}

/// `-0.0` and `0.0` are the same number to both databases' text forms.
fn canonical_f64(v: f64) -> f64 {
    if v == 0.0 { 0.0 } else { v }
}

/// A JSON number's exact value as `[-]digits e exponent`, with no leading or trailing zeros:
/// `1.50`, `15e-1` and `0.15E1` are all `15e-1`; jsonb prints `1e2` as `100`, both `1e2`. Exact,
/// so numbers beyond a double's precision or range still compare correctly.
pub fn canonical_decimal(text: &str) -> String {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].trim_start_matches('+').parse::<i64>().unwrap_or(0)),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = int.chars().chain(frac.chars()).collect();
    let mut exp = exponent - frac.len() as i64;
    let trimmed = digits.trim_start_matches('0').len();
    digits.drain(..digits.len() - trimmed);
    while digits.ends_with('0') {
        digits.pop();
        exp += 1;
    }
    if digits.is_empty() {
        return "0".into();
    }
    format!("{}{digits}e{exp}", if negative { "-" } else { "" })
}

/// Hash of a JSON number by its exact value ([`canonical_decimal`]).
pub fn json_number_hash(decimal: &str) -> u64 {
    bytes_hash(canonical_decimal(decimal).as_bytes(), seed::JSON_NUMBER)
}

/// Hash a JSON document as SQLite holds it: by its exact text, except that a document that is
/// a bare number hashes by its value (a JSON column has NUMERIC affinity, so SQLite stores
/// `1.50` as the number 1.5). Nothing is parsed: SQLite keeps every other text byte for byte,
/// so comparing bytes is both cheaper and stricter than comparing meaning.
pub fn sqlite_json_text_hash(text: &[u8]) -> u64 {
    match text.first() {
        Some(b'-' | b'0'..=b'9') => json_number_hash(&String::from_utf8_lossy(text)),
        _ => bytes_hash(text, seed::JSON_TEXT),
    }
}

/// Hash a parsed JSON document by meaning.
pub fn json_hash(v: &serde_json::Value) -> u64 {
    use serde_json::Value as J;
    match v {
        J::Null => number(seed::JSON_NULL, 0),
        J::Bool(b) => number(seed::JSON_BOOL, *b as u64),
        J::Number(n) => json_number_hash(&n.to_string()),
        J::String(s) => bytes_hash(s.as_bytes(), seed::JSON_STRING),
        J::Array(items) => {
            items.iter().fold(number(seed::JSON_ARRAY, items.len() as u64), |h, i| chain(h, json_hash(i)))
        }
        // serde_json's map is sorted by key, so the fold is independent of the source's key order.
        J::Object(map) => map.iter().fold(number(seed::JSON_OBJECT, map.len() as u64), |h, (k, v)| {
            chain(chain(h, bytes_hash(k.as_bytes(), seed::JSON_KEY)), json_hash(v))
        }),
    }
}

mod json;

pub(crate) use json::plain_run_end;
pub use json::{JsonDigest, JsonError, MAX_DEPTH as MAX_JSON_DEPTH};

/// Hash a JSON text by meaning while validating it, without building a tree: equal to
/// [`json_hash`] of the parsed document (keys sorted, the last of duplicate keys wins, exact
/// numbers), at a fraction of the cost. Refuses anything that is not RFC 8259 JSON.
pub fn json_text_hash(text: &[u8]) -> Result<JsonDigest, JsonError> {
    json::digest(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: &str) -> u64 {
        value_hash(Value::Json(s.as_bytes())).unwrap()
    }

    /// The streaming hash is the tree hash, whatever the document.
    #[test]
    fn streaming_hash_equals_tree_hash() {
        let docs = [
            "null",
            "true",
            "0",
            "-0",
            "-0.0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1.5e300",
            "1E-7",
            "12.50",
            r#""caf\u00e9 \ud83d\ude00 \"q\"""#,
            "[]",
            "{}",
            r#"[1, [2, [3, {"a": []}]], "x"]"#,
            r#"{"b": 1, "a": {"z": null, "y": [true, false]}, "c": "s"}"#,
            r#"{"k": 1, "k": 2, "j": 0, "k": 3}"#,
            r#"{"\u006b": 1, "k": 2}"#,
            r#"{"é": 1, "e": 2, "f": 3, "": 4}"#,
            r#"{"a": 1, "$serde_json::private::Number": "12"}"#,
            r#"{"n": "\u0000", "m": 1}"#,
        ];
        for doc in docs {
            let tree: serde_json::Value = serde_json::from_str(doc).unwrap();
            let digest = json_text_hash(doc.as_bytes()).unwrap();
            assert_eq!(digest.hash, json_hash(&tree), "{doc}");
            assert_eq!(digest.has_nul, doc.contains("\\u0000"), "{doc}");
        }
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1 2", "nul", "\"\\x\""] {
            assert!(json_text_hash(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_hashes_by_meaning() {
        assert_eq!(j(r#"{"b":1,"a":[1,2]}"#), j(r#"{ "a": [1, 2], "b": 1.0 }"#));
        assert_eq!(j(r#"{"n":1e2}"#), j(r#"{"n": 100}"#));
        assert_eq!(j(r#""\u00e9""#), j("\"é\""));
        assert_ne!(j(r#"{"a":[1,2]}"#), j(r#"{"a":[2,1]}"#));
        assert_ne!(j(r#"{"a":"1"}"#), j(r#"{"a":1}"#));
        assert_ne!(j("{}"), j("[]"));
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(canonical_decimal("1.50"), canonical_decimal("15e-1"));
        assert_eq!(canonical_decimal("1e2"), canonical_decimal("100"));
        assert_eq!(canonical_decimal("-0.0"), "0");
        assert_eq!(
            canonical_decimal("1.5874478498895484e140"),
            canonical_decimal(&format!("15874478498895484{}", "0".repeat(124)))
        );
        assert_ne!(canonical_decimal("0.1"), canonical_decimal("0.10000000000000001"));
        assert_eq!(j("1.7976931348623157e308"), j("1.7976931348623157e308"));
    }

    #[test]
    fn tags_are_part_of_the_hash() {
        assert_ne!(value_hash(Value::Text(b"1")).unwrap(), value_hash(Value::Blob(b"1")).unwrap());
        assert_ne!(value_hash(Value::Integer(1)).unwrap(), value_hash(Value::Boolean(true)).unwrap());
        assert_ne!(value_hash(Value::Null).unwrap(), value_hash(Value::Text(b"")).unwrap());
    }

    #[test]
    fn table_checksum_ignores_row_order_but_not_column_order() {
        let row = |a: u64, b: u64| chain(chain(row_start(), a), b);
        let (mut x, mut y) = (TableChecksum::default(), TableChecksum::default());
        x.add_row(row(1, 2));
        x.add_row(row(3, 4));
        y.add_row(row(3, 4));
        y.add_row(row(1, 2));
        assert_eq!(x, y);
        assert_ne!(row(1, 2), row(2, 1));
    }
}
