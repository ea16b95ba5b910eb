//! In-memory stand-ins for the host's databases and events, so that unit tests run the real
//! migration flow natively, without SQLite files or a PostgreSQL server.
//!
//! Test-only (`#[cfg(test)]`): only this crate's unit tests drive the flow through them, and
//! the component never carries them. The key decision: statements are interpreted, never
//! answered from canned text. DDL goes through the crate's own schema parsers (a table exists
//! with exactly the columns its `CREATE TABLE` names), and the few statement shapes the flow
//! sends besides DDL (meta rows, `setval`, `sqlite_sequence` upkeep, a sequence's value) are
//! recognised by their shape with the names and numbers as parameters, and evaluated against
//! the stored rows. Anything else fails as invalid input naming the statement, so a flow that
//! starts sending something new fails here loudly. Keys, indexes and foreign keys are recorded,
//! not enforced. Failures of the target are injected on purpose: the Nth batch written to a
//! table fails, or a table loses or alters a row once its load finished.

use super::{BulkWriter, ColumnInfo, Cursor, Database, DbError, ErrorKind, Events, Level, Rejection, TableInfo};
use crate::batch::{Batch, Column, Value};
use crate::convert::type_name;
use crate::ddl::{PgSchema, unqualify};
use crate::sql::first_line;
use crate::sqlite_ddl::SqliteSchema;
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

    fn run(&self, statement: &str) -> Result<u64, DbError> {
        self.state.borrow_mut().statements.push(statement.to_string());
        let words: Vec<&str> = statement.split_whitespace().take(3).collect();
        match (self.engine, words.as_slice()) {
            (_, ["CREATE", "TABLE", ..]) => self.create_table(statement),
            (Engine::Postgres, ["CREATE", "TYPE", ..]) => {
                let schema = PgSchema::parse(statement).map_err(|e| error(ErrorKind::InvalidInput, e))?;
                self.state.borrow_mut().types.extend(schema.enums.into_keys());
                Ok(0)
            }
            (Engine::Postgres, ["CREATE", "SEQUENCE", name]) => {
                self.state.borrow_mut().sequences.insert(unqualify(name), Sequence { last_value: 1, is_called: false });
                Ok(0)
            }
            (Engine::Postgres, ["ALTER", "SEQUENCE" | "TABLE", ..] | ["COMMENT", "ON", ..])
            | (_, ["CREATE", "INDEX" | "UNIQUE", ..])
            | (_, ["SAVEPOINT" | "RELEASE" | "ROLLBACK", ..]) => Ok(0),
            (Engine::Sqlite, ["ANALYZE"]) => {
                self.state
                    .borrow_mut()
                    .tables
                    .entry("sqlite_stat1".into())
                    .or_insert_with(|| untyped_table(&["tbl", "idx", "stat"]));
                Ok(0)
            }
            _ => self.run_shape(statement),
        }
    }

    fn create_table(&self, statement: &str) -> Result<u64, DbError> {
        let invalid = |e: String| error(ErrorKind::InvalidInput, e);
        let (name, columns, autoincrement) = match self.engine {
            Engine::Postgres => {
                let schema = PgSchema::parse(statement).map_err(invalid)?;
                let [table] = schema.tables.as_slice() else { return Err(not_understood(statement)) };
                let columns = table
                    .columns
                    .iter()
                    .map(|c| ColumnInfo {
                        name: c.name.clone(),
                        declared_type: type_name(&c.ty),
                        not_null: c.not_null,
                        default_value: c.default.clone(),
                        primary_key: 0,
                    })
                    .collect();
                (table.name.clone(), columns, false)
            }
            Engine::Sqlite => {
                let schema = SqliteSchema::parse(statement).map_err(invalid)?;
                let [table] = schema.tables.as_slice() else { return Err(not_understood(statement)) };
                let columns = table
                    .columns
                    .iter()
                    .map(|(name, declared)| ColumnInfo {
                        name: name.clone(),
                        declared_type: declared.clone(),
                        not_null: false,
                        default_value: None,
                        primary_key: 0,
                    })
                    .collect();
                (table.name.clone(), columns, table.autoincrement.is_some())
            }
        };
        let mut state = self.state.borrow_mut();
        if state.tables.contains_key(&name) {
            return Err(error(ErrorKind::Other, format!("table {name} already exists")));
        }
        state.tables.insert(name, Table { columns, rows: Vec::new() });
        if autoincrement {
            // As SQLite does for the first AUTOINCREMENT table.
            state.tables.entry("sqlite_sequence".into()).or_insert_with(|| untyped_table(&["name", "seq"]));
        }
        Ok(0)
    }

    /// The non-DDL statements the flow sends, recognised by shape (see [`shape`]).
    fn run_shape(&self, statement: &str) -> Result<u64, DbError> {
        let (shape, params) = shape(statement).ok_or_else(|| not_understood(statement))?;
        let mut state = self.state.borrow_mut();
        match (self.engine, shape.as_str(), params.as_slice()) {
            (Engine::Postgres, "DROP TABLE IF EXISTS public . ? CASCADE", [Token::Ident(t)]) => {
                Ok(state.tables.remove(t).map_or(0, |_| 1))
            }
            (Engine::Postgres, "DROP TYPE IF EXISTS public . ? CASCADE", [Token::Ident(t)]) => {
                state.types.retain(|x| x != t);
                Ok(0)
            }
            (Engine::Postgres, "DROP SEQUENCE IF EXISTS public . ? CASCADE", [Token::Ident(s)]) => {
                state.sequences.remove(s);
                Ok(0)
            }
            (
                Engine::Postgres,
                "SELECT setval ( ? , GREATEST ( COALESCE ( ( SELECT max ( ? ) FROM public . ? ) , ? ) , ? ) + ? , false )",
                [
                    Token::Text(seq),
                    Token::Ident(column),
                    Token::Ident(table),
                    Token::Number(empty),
                    Token::Number(floor),
                    Token::Number(step),
                ],
            ) => {
                let t = state.table(table)?;
                let i = t.position(table, column)?;
                let max =
                    t.rows.iter().filter_map(|r| if let Stored::Integer(n) = r[i] { Some(n) } else { None }).max();
                let value = max.unwrap_or(*empty).max(*floor) + step;
                let seq = unqualify(seq);
                let sequence = state
                    .sequences
                    .get_mut(&seq)
                    .ok_or_else(|| error(ErrorKind::NotFound, format!("no such sequence: {seq}")))?;
                *sequence = Sequence { last_value: value, is_called: false };
                Ok(1)
            }
            (
                Engine::Sqlite,
                "UPDATE sqlite_sequence SET seq = max ( seq , ? ) WHERE name = ?",
                [Token::Number(used), Token::Text(name)],
            ) => {
                let t = state.table_mut("sqlite_sequence")?;
                let mut updated = 0;
                for row in t.rows.iter_mut().filter(|r| r[0] == Stored::text(name)) {
                    let seq = if let Stored::Integer(n) = row[1] { n.max(*used) } else { *used };
                    row[1] = Stored::Integer(seq);
                    updated += 1;
                }
                Ok(updated)
            }
            (
                Engine::Sqlite,
                "INSERT INTO sqlite_sequence ( name , seq ) SELECT ? , ? WHERE NOT EXISTS ( SELECT ? FROM sqlite_sequence WHERE name = ? )",
                [Token::Text(name), Token::Number(used), Token::Number(_), Token::Text(other)],
            ) if name == other => {
                let t = state.table_mut("sqlite_sequence")?;
                if t.rows.iter().any(|r| r[0] == Stored::text(name)) {
                    return Ok(0);
                }
                t.rows.push(vec![Stored::text(name), Stored::Integer(*used)]);
                Ok(1)
            }
            _ if shape.starts_with("INSERT INTO ") => {
                insert_values(&mut state, self.engine, &shape, &params).ok_or_else(|| not_understood(statement))?
            }
            _ => Err(not_understood(statement)),
        }
    }
}

fn untyped_table(columns: &[&str]) -> Table {
    let columns = columns
        .iter()
        .map(|c| ColumnInfo {
            name: c.to_string(),
            declared_type: String::new(),
            not_null: false,
            default_value: None,
            primary_key: 0,
        })
        .collect();
    Table { columns, rows: Vec::new() }
}

/// `INSERT INTO [public .] ? ( name, … ) VALUES ( ?, … ), …` with literal values; `None` for
/// any other shape.
fn insert_values(state: &mut State, engine: Engine, shape: &str, params: &[Token]) -> Option<Result<u64, DbError>> {
    let rest = shape.strip_prefix("INSERT INTO ")?;
    let rest = match (engine, rest.strip_prefix("public . ")) {
        (Engine::Postgres, Some(rest)) => rest,
        (Engine::Sqlite, None) => rest,
        _ => return None,
    };
    let (names, values) = rest.strip_prefix("? ( ")?.split_once(" ) VALUES ( ")?;
    let mut params = params.iter();
    let Some(Token::Ident(table)) = params.next() else { return None };
    let columns: Vec<String> = names
        .split(" , ")
        .map(|name| match name {
            "?" => match params.next()? {
                Token::Ident(c) => Some(c.clone()),
                _ => None,
            },
            bare => (!bare.contains(' ')).then(|| bare.to_string()),
        })
        .collect::<Option<_>>()?;
    let value_shape = vec!["?"; columns.len()].join(" , ");
    let tuples = values.strip_suffix(" )")?.split(" ) , ( ").collect::<Vec<_>>();
    let literals: Vec<&Token> = params.collect();
    if tuples.iter().any(|t| *t != value_shape) || literals.len() != columns.len() * tuples.len() {
        return None;
    }
    Some((|| {
        let t = state.table_mut(table)?;
        let at: Vec<usize> = columns.iter().map(|c| t.position(table, c)).collect::<Result<_, _>>()?;
        for row in literals.chunks(columns.len()) {
            let mut full = vec![Stored::Null; t.columns.len()];
            for (literal, &i) in row.iter().zip(&at) {
                full[i] = match literal {
                    Token::Text(s) => Stored::text(s),
                    Token::Number(n) => Stored::Integer(*n),
                    Token::Ident(_) => return Err(error(ErrorKind::InvalidInput, "an identifier as a value")),
                };
            }
            t.rows.push(full);
        }
        Ok(tuples.len() as u64)
    })())
}

/// A parameter of a statement's shape.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A quoted identifier (`"x"` or `` `x` ``), or a bare one where a name is expected.
    Ident(String),
    Text(String),
    Number(i64),
}

/// A statement with its quoted identifiers, string literals and numbers replaced by `?`, its
/// tokens separated by single spaces, and the replaced values in order. Bare words (keywords,
/// and the names the flow writes unquoted) stay in the shape. `None` for an unterminated quote.
fn shape(statement: &str) -> Option<(String, Vec<Token>)> {
    let mut words: Vec<String> = Vec::new();
    let mut params = Vec::new();
    let mut chars = statement.trim().trim_end_matches(';').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '\'' | '"' | '`' => {
                let mut text = String::new();
                loop {
                    match chars.next()? {
                        q if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            text.push(c);
                        }
                        q if q == c => break,
                        other => text.push(other),
                    }
                }
                params.push(if c == '\'' { Token::Text(text) } else { Token::Ident(text) });
                words.push("?".into());
            }
            c if c.is_ascii_digit() => {
                let mut digits = c.to_string();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    digits.push(d);
                }
                params.push(Token::Number(digits.parse().ok()?));
                words.push("?".into());
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut word = c.to_string();
                while let Some(d) = chars.next_if(|d| d.is_alphanumeric() || *d == '_') {
                    word.push(d);
                }
                words.push(word);
            }
            other => words.push(other.to_string()),
        }
    }
    Some((words.join(" "), params))
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
        let (shape, params) = shape(statement).ok_or_else(|| not_understood(statement))?;
        match (self.engine, shape.as_str(), params.as_slice()) {
            (
                Engine::Postgres,
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - ? END FROM public . ?",
                [Token::Number(1), Token::Ident(name)],
            ) => {
                let seq = self
                    .sequence(name)
                    .ok_or_else(|| error(ErrorKind::NotFound, format!("no such sequence: {name}")))?;
                let mut column = Column::default();
                column.push(Value::Integer(if seq.is_called { seq.last_value } else { seq.last_value - 1 }));
                Ok(Batch { rows: 1, columns: vec![column] })
            }
            _ => Err(not_understood(statement)),
        }
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
    fn shapes_keep_keywords_and_lift_names_and_values() {
        let (shape, params) = shape("INSERT INTO public.\"SequelizeMeta\" (name) VALUES ('a''b'), ('c')").unwrap();
        assert_eq!(shape, "INSERT INTO public . ? ( name ) VALUES ( ? ) , ( ? )");
        assert_eq!(
            params,
            vec![Token::Ident("SequelizeMeta".into()), Token::Text("a'b".into()), Token::Text("c".into())]
        );
        assert!(super::shape("SELECT 'open").is_none());
    }

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
