//! The database handles the host gives the component, as plain Rust traits.
//!
//! The wasm shell (`shell.rs`) implements them over the WIT resources; the unit tests of the
//! flow implement them in memory (`db/memory.rs`).

#[cfg(test)]
pub mod memory;

use crate::batch::Batch;

/// Classes of database failure (WIT `error-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidInput,
    Constraint,
    Connection,
    Limit,
    Denied,
    Other,
}

/// A failure the host reported (WIT `db-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbError {
    pub kind: ErrorKind,
    pub message: String,
    pub code: Option<String>,
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        Ok(())
    }
}

/// A column as the database declares it (WIT `column-info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    pub name: String,
    pub declared_type: String,
    pub not_null: bool,
    pub default_value: Option<String>,
    pub primary_key: u32,
}

/// A table as the database declares it (WIT `table-info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

pub trait Cursor {
    fn next_batch(&mut self) -> Result<Option<Batch>, DbError>;
}

pub trait BulkWriter {
    fn write(&mut self, rows: &Batch) -> Result<(), DbError>;
    fn finish(self: Box<Self>) -> Result<u64, DbError>;
}

/// One open database (WIT `handle`).
pub trait Database {
    fn label(&self) -> String;
    fn list_tables(&self) -> Result<Vec<String>, DbError>;
    fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError>;
    fn count_rows(&self, table: &str) -> Result<u64, DbError>;
    fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Box<dyn Cursor + '_>, DbError>;
    fn execute(&self, statement: &str) -> Result<u64, DbError>;
    /// Run `statements` in order, stopping at the first failure (one round trip on hosts that can).
    fn execute_script(&self, statements: &[&str]) -> Result<(), DbError> {
        statements.iter().try_for_each(|s| self.execute(s).map(|_| ()))
    }
    fn query(&self, statement: &str) -> Result<Batch, DbError>;
    fn bulk_load(&self, table: &str, columns: &[String]) -> Result<Box<dyn BulkWriter + '_>, DbError>;
}

/// A row that cannot be migrated faithfully (WIT `rejected-row`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub database: String,
    pub table: String,
    pub primary_key: String,
    pub column: String,
    pub value_excerpt: String,
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// What the component tells the host while it works (WIT `events`).
pub trait Events {
    fn log(&self, level: Level, message: &str);
    fn progress(&self, database: &str, table: &str, rows_done: u64, rows_total: u64);
    fn reject(&self, row: &Rejection);
}
