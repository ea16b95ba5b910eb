//! The databases a job reads and writes, behind two traits: a [`Source`] answers questions and
//! streams tables; a [`Target`] also runs statements inside its transaction and bulk-loads rows.
//!
//! | engine | module | as a source | as a target |
//! |---|---|---|---|
//! | SQLite | [`sqlite`] | a read-only snapshot of a file | a new file built in one transaction |
//! | PostgreSQL | [`postgres`] | a read-only repeatable-read snapshot | one transaction, binary COPY |
//! | none | [`discard`] | — | a dry run's stand-in that keeps nothing |
//!
//! [`Database`] and [`Writer`] are the closed sets the capability layer hands to a component
//! (enum dispatch: the futures stay concrete and `Send`, which wasmtime's async host calls
//! need). A new engine is a module implementing the traits plus one variant each. Backends run
//! what they are given: the rules on what a component may run are in [`crate::policy`], applied
//! by the capability layer before a call gets here (the SQLite authorizer, which must sit on
//! the connection, is installed by [`sqlite`]).

pub mod discard;
pub mod postgres;
pub mod sqlite;

use crate::wit::blocklet::migrate::database::Dialect;
use crate::wit::{Batch, DbError, ErrorKind, TableInfo};
use std::future::Future;
use tokio::sync::mpsc;

/// Batches of one `read`, in order, as the backend produces them (a bounded channel: the
/// backend reads ahead of the component by a batch or two).
pub type Batches = mpsc::Receiver<Result<Batch, DbError>>;

/// Rows a `query` may return: it is for checks, and its result is held in host memory.
pub const MAX_QUERY_ROWS: usize = 100_000;

/// The most rows one batch may hold, whatever a component or the command line asks for.
pub const MAX_BATCH_ROWS: u32 = 100_000;

/// `rows` brought into `1..=`[`MAX_BATCH_ROWS`].
pub fn clamp_batch_rows(rows: u32) -> u32 {
    rows.clamp(1, MAX_BATCH_ROWS)
}

/// `"name"`, with embedded quotes doubled: an identifier both engines read as exactly `name`.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Refuse a write to a database opened read-only, naming it.
pub fn deny_read_only(label: &dyn std::fmt::Display, writable: bool) -> Result<(), DbError> {
    if writable { Ok(()) } else { Err(DbError::new(ErrorKind::Denied, format!("{label} is a read-only source"))) }
}

/// What every open database answers.
pub trait Source {
    fn dialect(&self) -> Dialect;
    /// What to call it in messages: a file path for SQLite, a database name for PostgreSQL.
    fn label(&self) -> String;
    /// Whether it is a target, open for writing.
    fn writable(&self) -> bool;
    fn list_tables(&self) -> impl Future<Output = Result<Vec<String>, DbError>> + Send;
    fn describe_table(&self, table: &str) -> impl Future<Output = Result<Option<TableInfo>, DbError>> + Send;
    fn count_rows(&self, table: &str) -> impl Future<Output = Result<u64, DbError>> + Send;
    /// Stream `columns` of `table` ordered by `order_by` (empty: storage order).
    fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> impl Future<Output = Result<Batches, DbError>> + Send;
    /// One small read-only query, as one batch.
    fn query(&self, statement: &str) -> impl Future<Output = Result<Batch, DbError>> + Send;
}

/// What a database opened for writing also does. Everything runs inside the target's one
/// transaction (or build), which the job commits or discards.
pub trait Target: Source {
    type Writer: BulkWriter;
    fn execute(&self, statement: &str) -> impl Future<Output = Result<u64, DbError>> + Send;
    /// Run `statements` in order, stopping at the first failure.
    fn execute_script(&self, statements: &[String]) -> impl Future<Output = Result<(), DbError>> + Send;
    fn bulk_load(&self, table: &str, columns: &[String]) -> impl Future<Output = Result<Self::Writer, DbError>> + Send;
}

/// A bulk load into one table.
pub trait BulkWriter {
    fn write(&mut self, rows: Batch) -> impl Future<Output = Result<(), DbError>> + Send;
    /// Complete the load; the rows the database accepted.
    fn finish(&mut self) -> impl Future<Output = Result<u64, DbError>> + Send;
    /// Whether the load holds its database's connection until it finishes (a COPY), so that
    /// nothing else may use the handle meanwhile.
    fn holds_connection(&self) -> bool;
}

/// An open database of any engine.
pub enum Database {
    Sqlite(sqlite::SqliteFile),
    Postgres(postgres::PgDatabase),
    /// A dry run's stand-in for a PostgreSQL database that does not exist yet.
    Discard(discard::Discard),
}

/// A bulk load into a [`Database`].
pub enum Writer {
    Sqlite(sqlite::SqliteWriter),
    Postgres(postgres::PgWriter),
    Discard(discard::DiscardWriter),
}

/// Forward a call to whichever engine `$db` holds.
macro_rules! each_engine {
    ($db:expr, $engine:ident => $call:expr) => {
        match $db {
            Database::Sqlite($engine) => $call,
            Database::Postgres($engine) => $call,
            Database::Discard($engine) => $call,
        }
    };
}

impl Database {
    /// Refuse a write when this is a source.
    pub fn deny_read_only(&self) -> Result<(), DbError> {
        deny_read_only(&self.label(), self.writable())
    }
}

impl Source for Database {
    fn dialect(&self) -> Dialect {
        each_engine!(self, db => db.dialect())
    }

    fn label(&self) -> String {
        each_engine!(self, db => db.label())
    }

    fn writable(&self) -> bool {
        each_engine!(self, db => db.writable())
    }

    async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        each_engine!(self, db => db.list_tables().await)
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        each_engine!(self, db => db.describe_table(table).await)
    }

    async fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        each_engine!(self, db => db.count_rows(table).await)
    }

    async fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Batches, DbError> {
        each_engine!(self, db => db.read(table, columns, order_by, batch_rows).await)
    }

    async fn query(&self, statement: &str) -> Result<Batch, DbError> {
        each_engine!(self, db => db.query(statement).await)
    }
}

impl Target for Database {
    type Writer = Writer;

    async fn execute(&self, statement: &str) -> Result<u64, DbError> {
        each_engine!(self, db => db.execute(statement).await)
    }

    async fn execute_script(&self, statements: &[String]) -> Result<(), DbError> {
        each_engine!(self, db => db.execute_script(statements).await)
    }

    async fn bulk_load(&self, table: &str, columns: &[String]) -> Result<Writer, DbError> {
        Ok(match self {
            Database::Sqlite(db) => Writer::Sqlite(db.bulk_load(table, columns).await?),
            Database::Postgres(db) => Writer::Postgres(db.bulk_load(table, columns).await?),
            Database::Discard(db) => Writer::Discard(db.bulk_load(table, columns).await?),
        })
    }
}

impl BulkWriter for Writer {
    async fn write(&mut self, rows: Batch) -> Result<(), DbError> {
        match self {
            Writer::Sqlite(w) => w.write(rows).await,
            Writer::Postgres(w) => w.write(rows).await,
            Writer::Discard(w) => w.write(rows).await,
        }
    }

    async fn finish(&mut self) -> Result<u64, DbError> {
        match self {
            Writer::Sqlite(w) => w.finish().await,
            Writer::Postgres(w) => w.finish().await,
            Writer::Discard(w) => w.finish().await,
        }
    }

    fn holds_connection(&self) -> bool {
        match self {
            Writer::Sqlite(w) => w.holds_connection(),
            Writer::Postgres(w) => w.holds_connection(),
            Writer::Discard(w) => w.holds_connection(),
        }
    }
}
