//! In-memory stand-ins for the host's databases and events, so that unit tests run the real
//! migration flow natively, without SQLite files or a PostgreSQL server.
//!
//! Test-only (`#[cfg(test)]`): only this crate's unit tests drive the flow through them, and
//! the component never carries them. The key decision: statements are interpreted, never
//! answered from canned text (see [`statements`]): a table exists with exactly the columns its
//! `CREATE TABLE` names, and the few other statements the flow sends (meta rows, `setval`,
//! `sqlite_sequence` upkeep, a sequence's value) are evaluated against the stored rows.
//! Keys, indexes and foreign keys are recorded, not enforced. Failures of the target are
//! injected on purpose: the Nth batch written to a table fails, or a table loses or alters a
//! row once its load finished.

use super::{BulkWriter, ColumnInfo, Cursor, Database, DbError, ErrorKind, Events, Level, Rejection, TableInfo};
use crate::batch::{Batch, Column, Value};
use crate::sql::first_line;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Which engine's DDL and conventions a [`MemoryDatabase`] follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// One stored value: an owned [`Value`].
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    Null,
    Integer(i64),
    Real(f64),
    Text(Vec<u8>),
    Blob(Vec<u8>),
    Boolean(bool),
    Json(Vec<u8>),
    Timestamp(i64),
}

impl Stored {
    pub fn text(s: &str) -> Stored {
        Stored::Text(s.as_bytes().to_vec())
    }

    pub fn json(s: &str) -> Stored {
        Stored::Json(s.as_bytes().to_vec())
    }

    fn from_value(v: Value<'_>) -> Stored {
        match v {
            Value::Null => Stored::Null,
            Value::Integer(n) => Stored::Integer(n),
            Value::Real(f) => Stored::Real(f),
            Value::Text(b) => Stored::Text(b.to_vec()),
            Value::Blob(b) => Stored::Blob(b.to_vec()),
            Value::Boolean(b) => Stored::Boolean(b),
            Value::Json(b) => Stored::Json(b.to_vec()),
            Value::Timestamp(t) => Stored::Timestamp(t),
        }
    }

    fn as_value(&self) -> Value<'_> {
        match self {
            Stored::Null => Value::Null,
            Stored::Integer(n) => Value::Integer(*n),
            Stored::Real(f) => Value::Real(*f),
            Stored::Text(b) => Value::Text(b),
            Stored::Blob(b) => Value::Blob(b),
            Stored::Boolean(b) => Value::Boolean(*b),
            Stored::Json(b) => Value::Json(b),
            Stored::Timestamp(t) => Value::Timestamp(*t),
        }
    }

    /// NULLs first, then numbers, then text and bytes, as SQLite orders mixed values.
    fn order(&self, other: &Stored) -> Ordering {
        fn rank(s: &Stored) -> (u8, f64, &[u8]) {
            match s {
                Stored::Null => (0, 0.0, &[]),
                Stored::Boolean(b) => (1, *b as i64 as f64, &[]),
                Stored::Integer(n) | Stored::Timestamp(n) => (1, *n as f64, &[]),
                Stored::Real(f) => (1, *f, &[]),
                Stored::Text(b) | Stored::Json(b) => (2, 0.0, b),
                Stored::Blob(b) => (3, 0.0, b),
            }
        }
        let (a, b) = (rank(self), rank(other));
        a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(b.2))
    }
}

/// What happens to a table once its bulk load finished, after the writer reported its count.
#[derive(Clone, Debug)]
pub enum Tamper {
    LoseLastRow,
    Replace { row: usize, column: String, value: Stored },
}

struct Table {
    columns: Vec<ColumnInfo>,
    rows: Vec<Vec<Stored>>,
}

impl Table {
    fn position(&self, table: &str, column: &str) -> Result<usize, DbError> {
        self.columns
            .iter()
            .position(|c| c.name == column)
            .ok_or_else(|| error(ErrorKind::NotFound, format!("table {table} has no column {column}")))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sequence {
    pub last_value: i64,
    pub is_called: bool,
}

#[derive(Default)]
struct State {
    tables: BTreeMap<String, Table>,
    types: Vec<String>,
    sequences: BTreeMap<String, Sequence>,
    statements: Vec<String>,
    batches_written: BTreeMap<String, usize>,
    failing_write: Option<(String, usize)>,
    tamper: Option<(String, Tamper)>,
}

impl State {
    fn table(&self, name: &str) -> Result<&Table, DbError> {
        self.tables.get(name).ok_or_else(|| error(ErrorKind::NotFound, format!("no such table: {name}")))
    }

    fn table_mut(&mut self, name: &str) -> Result<&mut Table, DbError> {
        self.tables.get_mut(name).ok_or_else(|| error(ErrorKind::NotFound, format!("no such table: {name}")))
    }
}

/// One database held in memory, following `engine`'s DDL.
pub struct MemoryDatabase {
    label: String,
    engine: Engine,
    state: RefCell<State>,
}

mod statements;

fn error(kind: ErrorKind, message: impl Into<String>) -> DbError {
    DbError { kind, message: message.into(), code: None }
}

fn not_understood(statement: &str) -> DbError {
    error(ErrorKind::InvalidInput, format!("the memory database does not understand: {}", first_line(statement)))
}

impl MemoryDatabase {
    pub fn new(engine: Engine, label: &str) -> MemoryDatabase {
        MemoryDatabase { label: label.to_string(), engine, state: RefCell::default() }
    }

    /// Append rows of values for `columns` (the others NULL), as the server would have stored them.
    pub fn insert(&self, table: &str, columns: &[&str], rows: Vec<Vec<Stored>>) {
        let mut state = self.state.borrow_mut();
        let t = state.table_mut(table).unwrap_or_else(|e| panic!("{e}"));
        let at: Vec<usize> = columns.iter().map(|c| t.position(table, c).unwrap_or_else(|e| panic!("{e}"))).collect();
        for row in rows {
            assert_eq!(row.len(), at.len(), "{table}: a row of {} values for {} columns", row.len(), at.len());
            let mut full = vec![Stored::Null; t.columns.len()];
            for (value, &i) in row.into_iter().zip(&at) {
                full[i] = value;
            }
            t.rows.push(full);
        }
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.state.borrow().tables.contains_key(table)
    }

    /// Every row of `table` as `columns`.
    pub fn rows(&self, table: &str, columns: &[&str]) -> Vec<Vec<Stored>> {
        let state = self.state.borrow();
        let t = state.table(table).unwrap_or_else(|e| panic!("{e}"));
        let at: Vec<usize> = columns.iter().map(|c| t.position(table, c).unwrap_or_else(|e| panic!("{e}"))).collect();
        t.rows.iter().map(|r| at.iter().map(|&i| r[i].clone()).collect()).collect()
    }

    /// Every statement run through `execute` or `execute_script`, in order.
    pub fn statements(&self) -> Vec<String> {
        self.state.borrow().statements.clone()
    }

    pub fn sequence(&self, name: &str) -> Option<Sequence> {
        self.state.borrow().sequences.get(name).copied()
    }

    pub fn set_sequence(&self, name: &str, last_value: i64, is_called: bool) {
        self.state.borrow_mut().sequences.insert(name.to_string(), Sequence { last_value, is_called });
    }

    /// Make the `nth` (from 1) batch written to `table` fail.
    pub fn fail_write(&self, table: &str, nth: usize) {
        self.state.borrow_mut().failing_write = Some((table.to_string(), nth));
    }

    /// Alter `table` right after its bulk load reported how many rows it took.
    pub fn tamper_after_load(&self, table: &str, tamper: Tamper) {
        self.state.borrow_mut().tamper = Some((table.to_string(), tamper));
    }
}

impl Database for MemoryDatabase {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn list_tables(&self) -> Result<Vec<String>, DbError> {
        Ok(self.state.borrow().tables.keys().cloned().collect())
    }

    fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let state = self.state.borrow();
        Ok(state.tables.get(table).map(|t| TableInfo { name: table.to_string(), columns: t.columns.clone() }))
    }

    fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        Ok(self.state.borrow().table(table)?.rows.len() as u64)
    }

    fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Box<dyn Cursor + '_>, DbError> {
        if batch_rows == 0 {
            return Err(error(ErrorKind::InvalidInput, "batch-rows must be at least 1"));
        }
        let state = self.state.borrow();
        let t = state.table(table)?;
        let at: Vec<usize> = columns.iter().map(|c| t.position(table, c)).collect::<Result<_, _>>()?;
        let keys: Vec<usize> = order_by.iter().map(|c| t.position(table, c)).collect::<Result<_, _>>()?;
        let mut rows: Vec<&Vec<Stored>> = t.rows.iter().collect();
        rows.sort_by(|a, b| keys.iter().fold(Ordering::Equal, |o, &k| o.then_with(|| a[k].order(&b[k]))));
        let rows = rows.into_iter().map(|r| at.iter().map(|&i| r[i].clone()).collect()).collect();
        Ok(Box::new(MemoryCursor { rows, width: columns.len(), next: 0, batch_rows: batch_rows as usize }))
    }

    fn execute(&self, statement: &str) -> Result<u64, DbError> {
        self.run(statement)
    }

    fn query(&self, statement: &str) -> Result<Batch, DbError> {
        self.answer(statement)
    }

    fn bulk_load(&self, table: &str, columns: &[String]) -> Result<Box<dyn BulkWriter + '_>, DbError> {
        let state = self.state.borrow();
        let t = state.table(table)?;
        let at = columns.iter().map(|c| t.position(table, c)).collect::<Result<_, _>>()?;
        Ok(Box::new(MemoryWriter { db: self, table: table.to_string(), at, written: 0 }))
    }
}

struct MemoryCursor {
    rows: Vec<Vec<Stored>>,
    width: usize,
    next: usize,
    batch_rows: usize,
}

impl Cursor for MemoryCursor {
    fn next_batch(&mut self) -> Result<Option<Batch>, DbError> {
        let rows = &self.rows[self.next.min(self.rows.len())..];
        if rows.is_empty() {
            return Ok(None);
        }
        let rows = &rows[..rows.len().min(self.batch_rows)];
        self.next += rows.len();
        let mut columns = vec![Column::default(); self.width];
        for row in rows {
            for (column, value) in columns.iter_mut().zip(row) {
                column.push(value.as_value());
            }
        }
        Ok(Some(Batch { rows: rows.len() as u32, columns }))
    }
}

struct MemoryWriter<'a> {
    db: &'a MemoryDatabase,
    table: String,
    /// Where each written column goes in the table's rows.
    at: Vec<usize>,
    written: u64,
}

impl BulkWriter for MemoryWriter<'_> {
    fn write(&mut self, rows: &Batch) -> Result<(), DbError> {
        rows.validate(self.at.len()).map_err(|e| error(ErrorKind::InvalidInput, e))?;
        let mut state = self.db.state.borrow_mut();
        let nth = {
            let written = state.batches_written.entry(self.table.clone()).or_default();
            *written += 1;
            *written
        };
        if state.failing_write.as_ref().is_some_and(|(t, n)| *t == self.table && *n == nth) {
            return Err(error(ErrorKind::Connection, format!("batch {nth} of {}: connection lost", self.table)));
        }
        let t = state.table_mut(&self.table)?;
        for i in 0..rows.rows as usize {
            let mut full = vec![Stored::Null; t.columns.len()];
            for (column, &at) in rows.columns.iter().zip(&self.at) {
                full[at] = Stored::from_value(column.get(i));
            }
            t.rows.push(full);
        }
        self.written += rows.rows as u64;
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<u64, DbError> {
        let mut state = self.db.state.borrow_mut();
        if let Some((table, tamper)) = state.tamper.take_if(|(t, _)| *t == self.table) {
            let t = state.table_mut(&table)?;
            match tamper {
                Tamper::LoseLastRow => {
                    t.rows.pop();
                }
                Tamper::Replace { row, column, value } => {
                    let i = t.position(&table, &column)?;
                    t.rows[row][i] = value;
                }
            }
        }
        Ok(self.written)
    }
}

/// Everything the flow told the host, in order.
#[derive(Default)]
pub struct RecordedEvents {
    pub logs: RefCell<Vec<(Level, String)>>,
    pub progress: RefCell<Vec<(String, String, u64, u64)>>,
    pub rejections: RefCell<Vec<Rejection>>,
}

impl Events for RecordedEvents {
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn progress(&self, database: &str, table: &str, rows_done: u64, rows_total: u64) {
        self.progress.borrow_mut().push((database.to_string(), table.to_string(), rows_done, rows_total));
    }

    fn reject(&self, row: &Rejection) {
        self.rejections.borrow_mut().push(row.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_and_in_batches() {
        let db = MemoryDatabase::new(Engine::Sqlite, "t.db");
        db.execute("CREATE TABLE `t` (`id` INTEGER PRIMARY KEY AUTOINCREMENT, `v` TEXT);").unwrap();
        assert!(db.has_table("sqlite_sequence"));
        db.insert("t", &["id", "v"], (0..5).rev().map(|i| vec![Stored::Integer(i), Stored::text("x")]).collect());
        let mut cursor = db.read("t", &["id".into()], &["id".into()], 2).unwrap();
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = cursor.next_batch().unwrap() {
            sizes.push(b.rows);
            ids.extend((0..b.rows as usize).map(|i| b.columns[0].get(i)).map(|v| format!("{v:?}")));
        }
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(ids, (0..5).map(|i| format!("{:?}", Value::Integer(i))).collect::<Vec<_>>());
        assert_eq!(db.read("t", &["nope".into()], &[], 2).err().unwrap().kind, ErrorKind::NotFound);
        assert_eq!(db.execute("DELETE FROM t").unwrap_err().kind, ErrorKind::InvalidInput);
    }
}
