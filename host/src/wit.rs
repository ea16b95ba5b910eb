//! The bottom layer: the types generated from `wit/blocklet-migrate.wit`, and helpers for the
//! columnar `batch` record that every backend fills.
//!
//! The WIT resources (`handle`, `cursor`, `bulk-writer`) are generated as wasmtime's marker
//! types, not mapped to host types: what a resource stands for is the business of the layer
//! that implements the imports, and this module imports nothing from the crate.

wasmtime::component::bindgen!({
    world: "migration",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use blocklet::migrate::types::{Batch, ColumnInfo, ColumnValues, DbError, ErrorKind, TableInfo, ValueTag};
pub use exports::blocklet::migrate::migrator::{
    ComponentInfo, DatabaseKind, DatabaseReport, Failure, FailureKind, Options, PlannedDatabase, SourceLayout,
    TableReport,
};

impl DatabaseKind {
    /// The kind's name in the WIT (`certificate-manager`): what the JSON report records.
    pub fn wit_name(self) -> &'static str {
        match self {
            DatabaseKind::Server => "server",
            DatabaseKind::Service => "service",
            DatabaseKind::Blocklet => "blocklet",
            DatabaseKind::CertificateManager => "certificate-manager",
        }
    }
}

impl DbError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DbError { kind, message: message.into(), code: None }
    }
}

impl ColumnValues {
    pub fn with_capacity(rows: usize) -> Self {
        ColumnValues {
            tags: Vec::with_capacity(rows),
            numbers: Vec::with_capacity(rows),
            bytes: Vec::new(),
            ends: Vec::with_capacity(rows),
        }
    }

    pub fn push_number(&mut self, tag: ValueTag, n: i64) {
        self.tags.push(tag);
        self.numbers.push(n);
        self.ends.push(self.bytes.len() as u32);
    }

    pub fn push_bytes(&mut self, tag: ValueTag, b: &[u8]) {
        self.tags.push(tag);
        self.numbers.push(0);
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len() as u32);
    }

    pub fn push_null(&mut self) {
        self.push_number(ValueTag::Null, 0);
    }

    /// Row `i`'s byte payload.
    pub fn bytes_of(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }
}

impl Batch {
    pub fn empty(columns: usize, rows: usize) -> Self {
        Batch { rows: 0, columns: (0..columns).map(|_| ColumnValues::with_capacity(rows)).collect() }
    }

    /// Total payload bytes, for the host's batch byte cap.
    pub fn payload_bytes(&self) -> usize {
        self.columns.iter().map(|c| c.bytes.len() + c.numbers.len() * 9 + c.ends.len() * 4).sum()
    }

    /// Refuse a batch to write that is over the host's byte caps: several rows together stay
    /// within two batches' worth ([`MAX_BATCH_BYTES`]); one row alone may be up to
    /// [`MAX_ROW_BYTES`] (a 10 MB JSON document is real data). `target` names it in the error.
    pub fn check_write_size(&self, target: &str) -> Result<(), DbError> {
        let bytes = self.payload_bytes();
        if (self.rows > 1 && bytes > 2 * MAX_BATCH_BYTES) || bytes > MAX_ROW_BYTES {
            return Err(DbError::new(
                ErrorKind::Limit,
                format!("{target}: a batch of {} rows and {bytes} bytes is over the host's limit", self.rows),
            ));
        }
        Ok(())
    }

    /// Check the invariants the WIT documents; a component may send anything.
    pub fn validate(&self, expected_columns: usize) -> Result<(), DbError> {
        let bad = |m: String| Err(DbError::new(ErrorKind::InvalidInput, m));
        if self.columns.len() != expected_columns {
            return bad(format!("batch has {} columns, expected {expected_columns}", self.columns.len()));
        }
        let rows = self.rows as usize;
        for (c, col) in self.columns.iter().enumerate() {
            if col.tags.len() != rows || col.numbers.len() != rows || col.ends.len() != rows {
                return bad(format!("column {c} of the batch does not have {rows} rows"));
            }
            let mut prev = 0u32;
            for &end in &col.ends {
                if end < prev || end as usize > col.bytes.len() {
                    return bad(format!("column {c} of the batch has inconsistent byte offsets"));
                }
                prev = end;
            }
        }
        Ok(())
    }
}

/// Host-side cap on one batch's payload: the guest's memory limit does not see host buffers.
/// It is also the cap on a `query` result, which is one batch.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The largest single row the host reads or writes for a component (a batch of one row may
/// pass [`MAX_BATCH_BYTES`] up to this). Blocklet's rows are JSON documents of kilobytes; a
/// single value of several MiB is real data (a 24 MiB document migrates), while a row the
/// size of PostgreSQL's 1 GB value limit would be held several times over on its way between
/// the database and the component (driver buffer, decoded batch, the channel to the
/// component): 32 MiB keeps those copies of a cursor within the host's fixed budget.
pub const MAX_ROW_BYTES: usize = 32 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_huge_row_may_pass_the_batch_cap_up_to_the_row_cap() {
        let batch = |rows: usize, bytes_each: usize| {
            let mut col = ColumnValues::with_capacity(rows);
            for _ in 0..rows {
                col.push_bytes(ValueTag::Text, &vec![b'x'; bytes_each]);
            }
            Batch { rows: rows as u32, columns: vec![col] }
        };
        assert!(batch(1, 24 << 20).check_write_size("t").is_ok());
        assert!(batch(2, MAX_BATCH_BYTES - 64).check_write_size("t").is_ok());
        for (rows, bytes) in [(1, MAX_ROW_BYTES), (2, MAX_BATCH_BYTES + 64)] {
            let e = batch(rows, bytes).check_write_size("server_db.users").unwrap_err();
            assert!(matches!(e.kind, ErrorKind::Limit), "{:?}", e.kind);
            assert!(e.message.starts_with("server_db.users: a batch of"), "{}", e.message);
        }
    }
}
