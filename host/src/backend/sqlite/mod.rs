//! SQLite databases, served by a dedicated thread each: sources are a read-only, consistent
//! snapshot of one file (the thread reads ahead of the component by a batch or two); targets
//! are a new file built inside one transaction and closed in WAL mode, as the server keeps it.
//!
//! rusqlite is used instead of sqlx's SQLite driver because reading is the hot path: on this
//! kind of machine rusqlite reads 650–850k narrow rows/s against 190–340k for sqlx, which
//! steps every row through a worker thread (`../shared/notes/peers.md`).

use crate::bindings::blocklet::migrate::types::{ColumnInfo, TableInfo};
use crate::bindings::{Batch, DbError, ErrorKind, MAX_BATCH_BYTES, ValueTag};
use crate::postgres::MAX_QUERY_ROWS;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, DbError>>;

enum Command {
    Execute(String, Reply<u64>),
    Query(String, Reply<Batch>),
    Insert { sql: std::sync::Arc<str>, rows: Batch, reply: Reply<u64> },
    Commit(Reply<()>),
    ListTables(Reply<Vec<String>>),
    Describe(String, Reply<Option<TableInfo>>),
    Count(String, Reply<u64>),
    Read { sql: String, columns: usize, batch_rows: usize, out: mpsc::Sender<Result<Batch, DbError>> },
}

/// A handle on one SQLite file.
pub struct SqliteSource {
    path: PathBuf,
    writable: bool,
    commands: std_mpsc::Sender<Command>,
}

fn sqlite_error(path: &Path, e: rusqlite::Error) -> DbError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(format!("{:?}", f.code)),
        _ => None,
    };
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    DbError { kind, message: format!("{}: {e}", path.display()), code }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl SqliteSource {
    /// Open `path` read-only and pin one snapshot for every later read. The WAL is included:
    /// the reader goes through SQLite, never `immutable=1`, and never writes the file.
    pub fn open(path: &Path) -> Result<SqliteSource, DbError> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| sqlite_error(path, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| sqlite_error(path, e))?;
        // BEGIN is deferred: the first read takes the snapshot, so read something now.
        conn.execute_batch("BEGIN")
            .and_then(|_| conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)))
            .map_err(|e| sqlite_error(path, e))?;
        Self::serve_on_thread(conn, path, false)
    }

    /// Create a new database file at `path` (which must not exist) to build a target in.
    /// Everything runs in one transaction without a journal: a failed build is discarded
    /// whole, never repaired.
    pub fn create(path: &Path) -> Result<SqliteSource, DbError> {
        if path.exists() {
            return Err(DbError::new(ErrorKind::InvalidInput, format!("{} already exists", path.display())));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| sqlite_error(path, e))?;
        // Foreign keys stay off while building, as in the server's own SQLite files: the load
        // order already puts parents first, and rejected rows are reported, not cascaded.
        // ANALYZE samples at most 400 rows of each index, as the server's own `PRAGMA optimize`
        // does: the same planner statistics at a small fraction of a full scan's cost.
        conn.execute_batch(&format!(
            "PRAGMA page_size = {TARGET_PAGE_SIZE}; PRAGMA foreign_keys = OFF; PRAGMA journal_mode = OFF; \
             PRAGMA synchronous = OFF; PRAGMA analysis_limit = 400; BEGIN"
        ))
        .map_err(|e| sqlite_error(path, e))?;
        Self::serve_on_thread(conn, path, true)
    }

    fn serve_on_thread(conn: Connection, path: &Path, writable: bool) -> Result<SqliteSource, DbError> {
        let (tx, rx) = std_mpsc::channel();
        let thread_path = path.to_path_buf();
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || serve(conn, &thread_path, rx))
            .map_err(|e| DbError::new(ErrorKind::Other, format!("cannot start a SQLite thread: {e}")))?;
        Ok(SqliteSource { path: path.to_path_buf(), writable, commands: tx })
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    fn deny_read_only(&self) -> Result<(), DbError> {
        if self.writable {
            Ok(())
        } else {
            Err(DbError::new(ErrorKind::Denied, format!("{} is a read-only source", self.path.display())))
        }
    }

    /// Run one statement on a target.
    pub async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        self.deny_read_only()?;
        self.ask(|r| Command::Execute(sql.to_string(), r)).await
    }

    /// Run one small read-only query on a target.
    pub async fn query(&self, sql: &str) -> Result<Batch, DbError> {
        self.deny_read_only()?;
        self.ask(|r| Command::Query(sql.to_string(), r)).await
    }

    /// A bulk writer into `columns` of `table`: batches are inserted by the file's thread
    /// while the component converts the next ones (see [`SqliteWriter`]).
    pub fn bulk_load(&self, table: &str, columns: &[String]) -> Result<SqliteWriter, DbError> {
        self.deny_read_only()?;
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quote(table),
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "),
            (1..=columns.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
        );
        Ok(SqliteWriter {
            target: format!("{}: {table}", self.path.display()),
            path: self.path.clone(),
            sql: sql.into(),
            columns: columns.len(),
            commands: self.commands.clone(),
            queued: std::collections::VecDeque::new(),
            rows: 0,
            failed: None,
            finished: false,
        })
    }

    /// Commit a target and leave it in WAL mode, synced to disk, like a server's own file.
    pub async fn commit(&self) -> Result<(), DbError> {
        self.deny_read_only()?;
        self.ask(Command::Commit).await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| DbError::new(ErrorKind::Connection, format!("{}: reader stopped", self.path.display())))?;
        rx.await.map_err(|_| DbError::new(ErrorKind::Connection, format!("{}: reader stopped", self.path.display())))?
    }

    pub async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        self.ask(Command::ListTables).await
    }

    pub async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        self.ask(|r| Command::Describe(table.to_string(), r)).await
    }

    pub async fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Count(table.to_string(), r)).await
    }

    /// Start streaming `columns` of `table`; batches arrive on the returned channel.
    pub fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<mpsc::Receiver<Result<Batch, DbError>>, DbError> {
        if columns.is_empty() {
            return Err(DbError::new(ErrorKind::InvalidInput, "read needs at least one column"));
        }
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), quote(table));
        if !order_by.is_empty() {
            sql += &format!(" ORDER BY {}", order_by.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "));
        }
        let (tx, rx) = mpsc::channel(2);
        self.commands
            .send(Command::Read {
                sql,
                columns: columns.len(),
                batch_rows: batch_rows.clamp(1, 100_000) as usize,
                out: tx,
            })
            .map_err(|_| DbError::new(ErrorKind::Connection, format!("{}: reader stopped", self.path.display())))?;
        Ok(rx)
    }
}

/// The page size of the SQLite files built from PostgreSQL (the server's own are 4 KiB).
///
/// Blocklet's large tables hold ~650-byte rows of JSON text. With 8 KiB pages their b-trees
/// have half the pages, and building a file reads and writes half as many: a 200k-row
/// PostgreSQL → SQLite run took 9% less time than with 4 KiB pages (medians of 8 alternating
/// runs: 1.185 s against 1.305 s; 16 KiB pages 1.16 s). For the server afterwards, reads of those
/// tables touch half the pages, and each small write logs 8 KiB pages to the WAL instead of
/// 4 KiB; SQLite reads any page size, so the file works as the server's own does.
pub const TARGET_PAGE_SIZE: u32 = 8192;

/// Batches a bulk load may have queued on the file's thread and not yet seen inserted. Two
/// keep the thread busy while the component converts the next batch, and bound the memory
/// held to two batches.
const MAX_QUEUED_INSERTS: usize = 2;

/// A bulk load into one table of a SQLite target. `write` queues a batch on the file's
/// thread and returns; the outcome of a batch is collected when the queue is full, and at
/// `finish`. A failed insert fails the next call, and every call after it.
pub struct SqliteWriter {
    /// `file: table`, for messages.
    target: String,
    path: PathBuf,
    sql: std::sync::Arc<str>,
    columns: usize,
    commands: std_mpsc::Sender<Command>,
    queued: std::collections::VecDeque<oneshot::Receiver<Result<u64, DbError>>>,
    rows: u64,
    failed: Option<DbError>,
    finished: bool,
}

impl SqliteWriter {
    pub async fn write(&mut self, rows: Batch) -> Result<(), DbError> {
        self.still_open()?;
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        rows.validate(self.columns)?;
        let (reply, outcome) = oneshot::channel();
        self.commands.send(Command::Insert { sql: self.sql.clone(), rows, reply }).map_err(|_| self.stopped())?;
        self.queued.push_back(outcome);
        while self.queued.len() > MAX_QUEUED_INSERTS {
            self.collect_oldest().await?;
        }
        Ok(())
    }

    /// Wait for every queued batch; the rows inserted.
    pub async fn finish(&mut self) -> Result<u64, DbError> {
        self.still_open()?;
        self.finished = true;
        while !self.queued.is_empty() {
            self.collect_oldest().await?;
        }
        match &self.failed {
            Some(e) => Err(e.clone()),
            None => Ok(self.rows),
        }
    }

    async fn collect_oldest(&mut self) -> Result<(), DbError> {
        let Some(outcome) = self.queued.pop_front() else { return Ok(()) };
        match outcome.await.map_err(|_| self.stopped()).and_then(|r| r) {
            Ok(n) => {
                self.rows += n;
                Ok(())
            }
            Err(e) => {
                self.failed.get_or_insert(e.clone());
                Err(e)
            }
        }
    }

    fn still_open(&self) -> Result<(), DbError> {
        if self.finished {
            return Err(DbError::new(ErrorKind::InvalidInput, format!("{}: bulk load already finished", self.target)));
        }
        Ok(())
    }

    fn stopped(&self) -> DbError {
        DbError::new(ErrorKind::Connection, format!("{}: writer stopped", self.path.display()))
    }
}

/// The first keyword of a statement, upper-cased, after whitespace and comments.
pub(crate) fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase()
}

/// What a component may do to a SQLite target: create tables and indexes, insert rows,
/// maintain `sqlite_sequence`, analyze and read. No ATTACH, PRAGMA, VACUUM, triggers,
/// views, deletes or drops: nothing that reaches another file or outlives the build.
fn guest_statement_allowed(sql: &str) -> Result<(), DbError> {
    const ALLOWED: [&str; 6] = ["CREATE", "INSERT", "UPDATE", "ANALYZE", "SELECT", "WITH"];
    let keyword = first_keyword(sql);
    if ALLOWED.contains(&keyword.as_str()) {
        Ok(())
    } else {
        Err(DbError::new(ErrorKind::Denied, format!("refused a {keyword} statement on a SQLite target")))
    }
}

/// SQLite's own check of every statement a component prepares.
fn guest_authorizer(ctx: rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization {
    use rusqlite::hooks::{AuthAction as A, Authorization};
    const FUNCTIONS: [&str; 14] = [
        "max",
        "min",
        "count",
        "coalesce",
        "ifnull",
        "json_extract",
        "lower",
        "upper",
        "length",
        "abs",
        "typeof",
        "sum",
        "total",
        "avg",
    ];
    let ok = match ctx.action {
        // AUTOINCREMENT creates sqlite_sequence; schema changes write sqlite_master.
        // ANALYZE keeps its statistics in sqlite_stat1, replacing old rows.
        A::CreateTable { table_name } => {
            !table_name.starts_with("sqlite_") || matches!(table_name, "sqlite_sequence" | "sqlite_stat1")
        }
        A::Delete { table_name } => table_name == "sqlite_stat1",
        A::CreateIndex { table_name, .. } => !table_name.starts_with("sqlite_"),
        // CREATE INDEX fills the new index (a "reindex" to the authorizer).
        A::Insert { .. } | A::Read { .. } | A::Select | A::Analyze { .. } | A::Reindex { .. } => true,
        A::Update { table_name, .. } => matches!(table_name, "sqlite_sequence" | "sqlite_master" | "sqlite_stat1"),
        A::Function { function_name } => {
            FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str())
                || function_name.starts_with("sqlite_stat_")
        }
        _ => false,
    };
    if ok { Authorization::Allow } else { Authorization::Deny }
}

fn serve(mut conn: Connection, path: &Path, commands: std_mpsc::Receiver<Command>) {
    let err = |e| sqlite_error(path, e);
    for command in commands {
        match command {
            Command::Execute(sql, reply) => {
                let r = guest_statement_allowed(&sql).and_then(|_| {
                    let _ = conn.authorizer(Some(guest_authorizer));
                    let r = conn.prepare(&sql).and_then(|mut st| st.raw_execute()).map(|n| n as u64).map_err(err);
                    let _ =
                        conn.authorizer(None::<fn(rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization>);
                    r
                });
                let _ = reply.send(r);
            }
            Command::Query(sql, reply) if !matches!(first_keyword(&sql).as_str(), "SELECT" | "WITH") => {
                let _ = reply.send(Err(DbError::new(ErrorKind::Denied, "only SELECT queries are allowed")));
            }
            Command::Query(sql, reply) => {
                let r = conn.prepare(&sql).map(|st| st.column_count()).and_then(|columns| {
                    let mut all = None;
                    // Small results only; one batch past the cap means the query is too big.
                    read_batches(&conn, &sql, columns, MAX_QUERY_ROWS + 1, MAX_BATCH_BYTES, &mut |b| {
                        all = Some(b);
                        false
                    })?;
                    Ok(all.unwrap_or_else(|| Batch::empty(columns, 0)))
                });
                let r = r.map_err(err).and_then(|b| {
                    if b.rows as usize > MAX_QUERY_ROWS || b.payload_bytes() >= MAX_BATCH_BYTES {
                        Err(DbError::new(
                            ErrorKind::Limit,
                            format!("{}: a query result over the host's limit", path.display()),
                        ))
                    } else {
                        Ok(b)
                    }
                });
                let _ = reply.send(r);
            }
            Command::Insert { sql, rows, reply } => {
                let _ = reply.send(insert_rows(&conn, &sql, &rows).map_err(|e| match e {
                    InsertError::Sqlite(e) => err(e),
                    InsertError::Value(m) => DbError::new(ErrorKind::InvalidInput, format!("{}: {m}", path.display())),
                }));
            }
            Command::Commit(reply) => {
                // Close the file here, before anyone renames it: closing the last connection
                // checkpoints and removes the -wal/-shm that are named after this path.
                let r = conn
                    .execute_batch("COMMIT; PRAGMA synchronous = FULL; PRAGMA journal_mode = WAL")
                    .map_err(err)
                    .and_then(|_| conn.close().map_err(|(_, e)| err(e)))
                    .and_then(|_| {
                        std::fs::File::open(path)
                            .and_then(|f| f.sync_all())
                            .map_err(|e| DbError::new(ErrorKind::Other, format!("{}: syncing: {e}", path.display())))
                    });
                let _ = reply.send(r);
                return;
            }
            Command::ListTables(reply) => {
                let r = (|| {
                    let mut st = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")?;
                    let names = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
                    Ok(names)
                })()
                .map_err(err);
                let _ = reply.send(r);
            }
            Command::Describe(table, reply) => {
                let r = (|| {
                    let mut st =
                        conn.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
                    let columns = st
                        .query_map([&table], |r| {
                            Ok(ColumnInfo {
                                name: r.get(0)?,
                                declared_type: r.get(1)?,
                                not_null: r.get::<_, i64>(2)? != 0,
                                default_value: r.get(3)?,
                                primary_key: r.get::<_, i64>(4)? as u32,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((!columns.is_empty()).then_some(TableInfo { name: table.clone(), columns }))
                })()
                .map_err(err);
                let _ = reply.send(r);
            }
            Command::Count(table, reply) => {
                let r = conn
                    .query_row(&format!("SELECT count(*) FROM {}", quote(&table)), [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(err);
                let _ = reply.send(r);
            }
            Command::Read { sql, columns, batch_rows, out } => {
                let sent = read_batches(&conn, &sql, columns, batch_rows, MAX_BATCH_BYTES, &mut |b| {
                    out.blocking_send(Ok(b)).is_ok()
                });
                if let Err(e) = sent {
                    let _ = out.blocking_send(Err(err(e)));
                }
            }
        }
    }
}

enum InsertError {
    Sqlite(rusqlite::Error),
    Value(String),
}

/// Insert every row of `rows` with one prepared statement. Text and blobs are bound without a
/// copy (`SQLITE_STATIC`: the batch outlives every step), through the raw handle: rusqlite
/// binds them `SQLITE_TRANSIENT`, and that copy of every value was 2.8% of a PostgreSQL →
/// SQLite run's CPU under perf.
fn insert_rows(conn: &Connection, sql: &str, rows: &Batch) -> Result<u64, InsertError> {
    use rusqlite::ffi;
    use std::os::raw::{c_char, c_int, c_void};

    /// Finalized on every path out.
    struct Prepared(*mut ffi::sqlite3_stmt);
    impl Drop for Prepared {
        fn drop(&mut self) {
            // SAFETY: the statement came from sqlite3_prepare_v2 and is finalized once.
            unsafe { ffi::sqlite3_finalize(self.0) };
        }
    }

    // SAFETY: the handle is used on this thread only, while `conn` is borrowed.
    let db = unsafe { conn.handle() };
    let failure = |code: c_int| {
        // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the connection.
        let message = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db)) }.to_string_lossy().into_owned();
        InsertError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message)))
    };
    let mut raw = std::ptr::null_mut();
    // SAFETY: `sql` is valid for its length; `raw` receives the statement.
    let rc = unsafe {
        ffi::sqlite3_prepare_v2(db, sql.as_ptr() as *const c_char, sql.len() as c_int, &mut raw, std::ptr::null_mut())
    };
    if rc != ffi::SQLITE_OK {
        return Err(failure(rc));
    }
    let statement = Prepared(raw);
    for row in 0..rows.rows as usize {
        for (i, col) in rows.columns.iter().enumerate() {
            let (at, n) = ((i + 1) as c_int, col.numbers[row]);
            // SAFETY: the statement is live; bound bytes live in `rows`, which outlives it.
            let rc = unsafe {
                match col.tags[row] {
                    ValueTag::Null => ffi::sqlite3_bind_null(statement.0, at),
                    ValueTag::Integer | ValueTag::Boolean => ffi::sqlite3_bind_int64(statement.0, at, n),
                    ValueTag::Real => ffi::sqlite3_bind_double(statement.0, at, f64::from_bits(n as u64)),
                    ValueTag::Text | ValueTag::Json => {
                        let b = col.bytes_of(row);
                        let text = b.as_ptr() as *const c_char;
                        ffi::sqlite3_bind_text64(
                            statement.0,
                            at,
                            text,
                            b.len() as u64,
                            ffi::SQLITE_STATIC(),
                            ffi::SQLITE_UTF8 as u8,
                        )
                    }
                    ValueTag::Blob => {
                        let b = col.bytes_of(row);
                        let blob = b.as_ptr() as *const c_void;
                        ffi::sqlite3_bind_blob64(statement.0, at, blob, b.len() as u64, ffi::SQLITE_STATIC())
                    }
                    ValueTag::Timestamp => {
                        return Err(InsertError::Value(format!(
                            "row {} column {}: timestamps must be converted to the server's text form before writing to SQLite",
                            row + 1,
                            i + 1
                        )));
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(failure(rc));
            }
        }
        // SAFETY: the statement is live and every parameter is bound.
        let rc = unsafe { ffi::sqlite3_step(statement.0) };
        if rc != ffi::SQLITE_DONE {
            return Err(failure(rc));
        }
        // SAFETY: as above; resetting after a successful step cannot fail.
        unsafe { ffi::sqlite3_reset(statement.0) };
    }
    Ok(rows.rows as u64)
}

/// Read rows into batches of at most `batch_rows` rows and `max_bytes` bytes, handing each
/// to `sink`; stops quietly when `sink` says the reader went away.
fn read_batches(
    conn: &Connection,
    sql: &str,
    columns: usize,
    batch_rows: usize,
    max_bytes: usize,
    sink: &mut dyn FnMut(Batch) -> bool,
) -> rusqlite::Result<()> {
    let mut st = conn.prepare(sql)?;
    let mut rows = st.query([])?;
    let capacity = batch_rows.min(1024);
    let mut batch = Batch::empty(columns, capacity);
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        for (i, col) in batch.columns.iter_mut().enumerate() {
            match row.get_ref(i)? {
                ValueRef::Null => col.push_null(),
                ValueRef::Integer(v) => col.push_number(ValueTag::Integer, v),
                ValueRef::Real(v) => col.push_number(ValueTag::Real, v.to_bits() as i64),
                ValueRef::Text(b) => {
                    bytes += b.len();
                    col.push_bytes(ValueTag::Text, b)
                }
                ValueRef::Blob(b) => {
                    bytes += b.len();
                    col.push_bytes(ValueTag::Blob, b)
                }
            }
        }
        batch.rows += 1;
        bytes += columns * 13;
        if batch.rows as usize >= batch_rows || bytes >= max_bytes {
            let full = std::mem::replace(&mut batch, Batch::empty(columns, capacity));
            bytes = 0;
            if !sink(full) {
                return Ok(());
            }
        }
    }
    if batch.rows > 0 {
        sink(batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_snapshot_in_batches_and_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, data BLOB, r REAL);
                 INSERT INTO t VALUES (1, 'a', x'00ff', 1.5), (2, NULL, NULL, NULL), (3, 'c', NULL, 2);",
            )
            .unwrap();
        }
        let src = SqliteSource::open(&path).unwrap();
        assert_eq!(src.list_tables().await.unwrap(), vec!["t"]);
        let info = src.describe_table("t").await.unwrap().unwrap();
        assert_eq!(info.columns[0].primary_key, 1);
        assert!(src.describe_table("nope").await.unwrap().is_none());
        assert_eq!(src.count_rows("t").await.unwrap(), 3);
        let cols: Vec<String> = ["id", "name", "data", "r"].iter().map(|s| s.to_string()).collect();
        let mut rx = src.read("t", &cols, &[], 2).unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.rows, 2);
        assert_eq!(first.columns[1].tags, vec![ValueTag::Text, ValueTag::Null]);
        assert_eq!(first.columns[2].bytes_of(0), &[0, 255]);
        assert_eq!(f64::from_bits(first.columns[3].numbers[0] as u64), 1.5);
        let second = rx.recv().await.unwrap().unwrap();
        assert_eq!(second.rows, 1);
        assert!(rx.recv().await.is_none());
        assert!(src.read("t", &[], &[], 10).is_err());
    }

    /// Queued bulk writes land exactly as sent (empty text and blobs are not NULL), and a
    /// failed insert fails the writer with SQLite's reason, at the latest at `finish`.
    #[tokio::test]
    async fn bulk_writes_bind_every_kind_and_report_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let target = SqliteSource::create(&path).unwrap();
        target.execute("CREATE TABLE t (id INTEGER NOT NULL UNIQUE, name TEXT, data BLOB, r REAL)").await.unwrap();
        let cols: Vec<String> = ["id", "name", "data", "r"].iter().map(|s| s.to_string()).collect();
        let batch = |ids: &[i64]| {
            let mut b = Batch::empty(4, ids.len());
            for &id in ids {
                b.columns[0].push_number(ValueTag::Integer, id);
                b.columns[1].push_bytes(ValueTag::Text, if id == 2 { b"" } else { "é\0x".as_bytes() });
                b.columns[2].push_bytes(ValueTag::Blob, if id == 2 { b"" } else { b"\x00\xff" });
                if id == 3 {
                    b.columns[3].push_null()
                } else {
                    b.columns[3].push_number(ValueTag::Real, 2.5f64.to_bits() as i64)
                }
                b.rows += 1;
            }
            b
        };
        let mut w = target.bulk_load("t", &cols).unwrap();
        for ids in [&[1, 2][..], &[3], &[4, 5]] {
            w.write(batch(ids)).await.unwrap();
        }
        assert_eq!(w.finish().await.unwrap(), 5);
        let got = target
            .query("SELECT count(*), sum(name = ''), sum(length(CAST(name AS BLOB)) = 4), sum(hex(data) = '00FF'), sum(data = x''), sum(r IS NULL) FROM t")
            .await
            .unwrap();
        let row: Vec<i64> = got.columns.iter().map(|c| c.numbers[0]).collect();
        assert_eq!(row, vec![5, 1, 4, 4, 1, 1]);

        let mut w = target.bulk_load("t", &cols).unwrap();
        let mut outcome = Ok(());
        for ids in [&[6][..], &[1], &[7], &[8]] {
            outcome = outcome.and(w.write(batch(ids)).await);
        }
        let finished = w.finish().await;
        let e = outcome.err().or(finished.err()).expect("the duplicate id fails the load");
        assert!(e.message.contains("UNIQUE constraint failed: t.id"), "{}", e.message);
        assert!(w.write(batch(&[9])).await.is_err(), "a finished writer takes nothing more");
    }

    /// The page size is set before the first write (later, SQLite ignores it without a word),
    /// and the committed file is in WAL mode, as the server's are.
    #[tokio::test]
    async fn a_built_file_has_the_target_page_size_and_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let target = SqliteSource::create(&path).unwrap();
        target.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)").await.unwrap();
        target.execute("INSERT INTO t (name) VALUES ('a')").await.unwrap();
        target.commit().await.unwrap();
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let pragma = |p: &str| conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, rusqlite::types::Value>(0));
        assert_eq!(pragma("page_size").unwrap(), rusqlite::types::Value::Integer(TARGET_PAGE_SIZE.into()));
        assert_eq!(pragma("journal_mode").unwrap(), rusqlite::types::Value::Text("wal".into()));
        assert_eq!(pragma("integrity_check").unwrap(), rusqlite::types::Value::Text("ok".into()));
    }
}
