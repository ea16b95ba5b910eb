//! Columnar batches, the native mirror of the WIT `batch` record.
//!
//! Each column keeps one tag, one number and one byte-range end per row, so a batch crosses
//! the component boundary as a handful of flat lists.

/// What one value holds; mirrors WIT `value-tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Null,
    Integer,
    Real,
    Text,
    Blob,
    Boolean,
    Json,
    Timestamp,
}

/// One value of a column, borrowed from the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
    Boolean(bool),
    Json(&'a [u8]),
    Timestamp(i64),
}

/// One column of a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Column {
    pub tags: Vec<Tag>,
    pub numbers: Vec<i64>,
    pub bytes: Vec<u8>,
    pub ends: Vec<u32>,
}

impl Column {
    pub fn with_capacity(rows: usize) -> Self {
        Column {
            tags: Vec::with_capacity(rows),
            numbers: Vec::with_capacity(rows),
            bytes: Vec::new(),
            ends: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.tags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The value of row `i`.
    pub fn get(&self, i: usize) -> Value<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let bytes = || &self.bytes[start..self.ends[i] as usize];
        match self.tags[i] {
            Tag::Null => Value::Null,
            Tag::Integer => Value::Integer(self.numbers[i]),
            Tag::Real => Value::Real(f64::from_bits(self.numbers[i] as u64)),
            Tag::Text => Value::Text(bytes()),
            Tag::Blob => Value::Blob(bytes()),
            Tag::Boolean => Value::Boolean(self.numbers[i] != 0),
            Tag::Json => Value::Json(bytes()),
            Tag::Timestamp => Value::Timestamp(self.numbers[i]),
        }
    }

    /// Append a value.
    pub fn push(&mut self, value: Value<'_>) {
        let (tag, number, payload): (Tag, i64, &[u8]) = match value {
            Value::Null => (Tag::Null, 0, &[]),
            Value::Integer(v) => (Tag::Integer, v, &[]),
            Value::Real(v) => (Tag::Real, v.to_bits() as i64, &[]),
            Value::Text(b) => (Tag::Text, 0, b),
            Value::Blob(b) => (Tag::Blob, 0, b),
            Value::Boolean(v) => (Tag::Boolean, v as i64, &[]),
            Value::Json(b) => (Tag::Json, 0, b),
            Value::Timestamp(v) => (Tag::Timestamp, v, &[]),
        };
        self.push_parts(tag, number, payload);
    }

    /// Append a value from its parts; `payload` is only kept for byte tags.
    pub fn push_parts(&mut self, tag: Tag, number: i64, payload: &[u8]) {
        self.tags.push(tag);
        self.numbers.push(number);
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Append a text value that `write` appends straight to the column's bytes, with no buffer
    /// of its own. If `write` fails, the column is left as it was.
    pub fn push_text_with<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.bytes.len();
        if let Err(e) = write(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        self.tags.push(Tag::Text);
        self.numbers.push(0);
        self.ends.push(self.bytes.len() as u32);
        Ok(())
    }

    /// Drop every row from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len() {
            return;
        }
        self.tags.truncate(len);
        self.numbers.truncate(len);
        self.ends.truncate(len);
        self.bytes.truncate(if len == 0 { 0 } else { self.ends[len - 1] as usize });
    }

    /// Keep only the rows whose `keep` flag is set.
    pub fn retain_rows(&mut self, keep: &[bool]) {
        let old = std::mem::take(self);
        for (i, &k) in keep.iter().enumerate() {
            if k {
                self.push(old.get(i));
            }
        }
    }

    /// A short, printable excerpt of row `i`'s value, for reports.
    pub fn excerpt(&self, i: usize) -> String {
        excerpt(self.get(i))
    }
}

/// A batch: `rows` rows of `columns`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub rows: u32,
    pub columns: Vec<Column>,
}

impl Batch {
    /// Check the shape invariants the WIT documents, so a malformed batch is an error
    /// instead of a panic.
    pub fn validate(&self, expected_columns: usize) -> Result<(), String> {
        if self.columns.len() != expected_columns {
            return Err(format!("batch has {} columns, expected {expected_columns}", self.columns.len()));
        }
        let rows = self.rows as usize;
        for (c, col) in self.columns.iter().enumerate() {
            if col.tags.len() != rows || col.numbers.len() != rows || col.ends.len() != rows {
                return Err(format!("column {c} does not have {rows} rows"));
            }
            let mut prev = 0u32;
            for &end in &col.ends {
                if end < prev || end as usize > col.bytes.len() {
                    return Err(format!("column {c} has inconsistent byte offsets"));
                }
                prev = end;
            }
        }
        Ok(())
    }
}

const EXCERPT_CHARS: usize = 80;

/// A bounded, printable rendering of a value.
pub fn excerpt(value: Value<'_>) -> String {
    fn text(bytes: &[u8]) -> String {
        let s = String::from_utf8_lossy(bytes);
        let mut out: String = s.chars().take(EXCERPT_CHARS).collect();
        if s.chars().count() > EXCERPT_CHARS {
            out.push('…');
        }
        out.replace('\0', "\\0")
    }
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(v) => v.to_string(),
        Value::Real(v) => v.to_string(),
        Value::Text(b) | Value::Json(b) => text(b),
        Value::Blob(b) => {
            let hex: String = b.iter().take(EXCERPT_CHARS / 2).map(|x| format!("{x:02x}")).collect();
            format!("x'{hex}{}'", if b.len() > EXCERPT_CHARS / 2 { "…" } else { "" })
        }
        Value::Boolean(v) => v.to_string(),
        Value::Timestamp(v) => crate::timestamp::format_micros(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_round_trip_and_retain() {
        let mut c = Column::default();
        c.push(Value::Text(b"abc"));
        c.push(Value::Null);
        c.push(Value::Real(1.5));
        c.push(Value::Json(b"{}"));
        assert_eq!(c.get(0), Value::Text(b"abc"));
        assert_eq!(c.get(1), Value::Null);
        assert_eq!(c.get(2), Value::Real(1.5));
        assert_eq!(c.get(3), Value::Json(b"{}"));
        let mut cut = c.clone();
        cut.truncate(1);
        assert_eq!((cut.len(), cut.bytes.as_slice()), (1, &b"abc"[..]));
        c.retain_rows(&[false, true, true, true]);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(2), Value::Json(b"{}"));
        assert_eq!(c.bytes, b"{}");
        c.push_text_with(|b| {
            b.extend_from_slice(b"xyz");
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(
            c.push_text_with(|b| {
                b.push(b'!');
                Err(())
            })
            .is_err()
        );
        assert_eq!((c.len(), c.get(3)), (4, Value::Text(b"xyz")));
    }

    #[test]
    fn validate_catches_bad_shapes() {
        let mut c = Column::default();
        c.push(Value::Text(b"abc"));
        let mut b = Batch { rows: 1, columns: vec![c] };
        assert!(b.validate(1).is_ok());
        assert!(b.validate(2).is_err());
        b.columns[0].ends[0] = 99;
        assert!(b.validate(1).is_err());
    }

    #[test]
    fn excerpt_is_bounded() {
        let long = "x".repeat(500);
        assert!(excerpt(Value::Text(long.as_bytes())).chars().count() <= EXCERPT_CHARS + 1);
        assert_eq!(excerpt(Value::Blob(&[1, 255])), "x'01ff'");
    }
}
