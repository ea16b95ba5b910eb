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
pub const MAX_BATCH_BYTES: usize = 4 << 20;
