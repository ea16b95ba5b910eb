//! SQLite databases, served by a dedicated thread each: sources are a read-only, consistent
//! snapshot of one file (the thread reads ahead of the component by a batch or two); targets
//! are a new file built inside one transaction and closed in WAL mode, as the server keeps it.
//!
//! rusqlite is used instead of sqlx's SQLite driver because reading is the hot path: on this
//! kind of machine rusqlite reads 650–850k narrow rows/s against 190–340k for sqlx, which
//! steps every row through a worker thread.
//!
//! | file | concern |
//! |---|---|
//! | this one | opening and creating files, the [`Source`]/[`Target`] side of a handle |
//! | `thread.rs` | the connection's thread and its commands |
//! | `insert.rs` | the bulk writer a component holds |
//! | `rows.rs` | rows into batches and back (values bound without a copy) |

mod insert;
mod rows;
mod thread;

pub use insert::SqliteWriter;

use super::{Batches, Source, Target, clamp_batch_rows, deny_read_only, quote};
use crate::wit::blocklet::migrate::database::Dialect;
use crate::wit::{Batch, DbError, ErrorKind, TableInfo};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use thread::{Command, Reply};
use tokio::sync::{mpsc, oneshot};

/// The page size of the SQLite files built from PostgreSQL (the server's own are 4 KiB).
///
/// Blocklet's large tables hold ~650-byte rows of JSON text. With 8 KiB pages their b-trees
/// have half the pages, and building a file reads and writes half as many: a 200k-row
/// PostgreSQL → SQLite run took 9% less time than with 4 KiB pages (medians of 8 alternating
/// runs: 1.185 s against 1.305 s; 16 KiB pages 1.16 s). For the server afterwards, reads of those
/// tables touch half the pages, and each small write logs 8 KiB pages to the WAL instead of
/// 4 KiB; SQLite reads any page size, so the file works as the server's own does.
pub const TARGET_PAGE_SIZE: u32 = 8192;

/// A handle on one SQLite file: a read-only source or a target being built.
pub struct SqliteFile {
    path: PathBuf,
    writable: bool,
    commands: std_mpsc::Sender<Command>,
    /// Stops the statement the thread is running when the file is dropped: a job that gave up
    /// on it (a time limit, a cancellation) leaves nothing running behind.
    interrupt: rusqlite::InterruptHandle,
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        self.interrupt.interrupt();
    }
}

/// A rusqlite error as the WIT error, naming the file.
fn sqlite_error(path: &Path, e: rusqlite::Error) -> DbError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(format!("{:?}", f.code)),
        _ => None,
    };
    let kind = match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => ErrorKind::InvalidInput,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::TooBig => ErrorKind::Limit,
        _ => ErrorKind::Other,
    };
    DbError { kind, message: format!("{}: {e}", path.display()), code }
}

impl SqliteFile {
    /// Open `path` read-only and pin one snapshot for every later read. The WAL is included:
    /// the reader goes through SQLite, never `immutable=1`, and never writes the file.
    pub fn open(path: &Path) -> Result<SqliteFile, DbError> {
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
    pub fn create(path: &Path) -> Result<SqliteFile, DbError> {
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

    fn serve_on_thread(conn: Connection, path: &Path, writable: bool) -> Result<SqliteFile, DbError> {
        let (tx, rx) = std_mpsc::channel();
        let thread_path = path.to_path_buf();
        let interrupt = conn.get_interrupt_handle();
        std::thread::Builder::new()
            .name("sqlite".into())
            .spawn(move || thread::serve(conn, &thread_path, rx))
            .map_err(|e| DbError::new(ErrorKind::Other, format!("cannot start a SQLite thread: {e}")))?;
        Ok(SqliteFile { path: path.to_path_buf(), writable, commands: tx, interrupt })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn deny_read_only(&self) -> Result<(), DbError> {
        deny_read_only(&self.path.display(), self.writable)
    }

    /// Commit a target and leave it in WAL mode, synced to disk, like a server's own file.
    pub async fn commit(&self) -> Result<(), DbError> {
        self.deny_read_only()?;
        self.ask(Command::Commit).await
    }

    fn stopped(&self) -> DbError {
        DbError::new(ErrorKind::Connection, format!("{}: reader stopped", self.path.display()))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }
}

impl Source for SqliteFile {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn label(&self) -> String {
        self.path.display().to_string()
    }

    fn writable(&self) -> bool {
        self.writable
    }

    async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        self.ask(Command::ListTables).await
    }

    async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        self.ask(|r| Command::Describe(table.to_string(), r)).await
    }

    async fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Count(table.to_string(), r)).await
    }

    /// Start streaming `columns` of `table`; batches arrive on the returned channel.
    async fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<Batches, DbError> {
        if columns.is_empty() {
            return Err(DbError::new(ErrorKind::InvalidInput, "read needs at least one column"));
        }
        let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let mut sql = format!("SELECT {} FROM {}", cols.join(", "), quote(table));
        if !order_by.is_empty() {
            sql += &format!(" ORDER BY {}", order_by.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "));
        }
        let (tx, rx) = mpsc::channel(2);
        let batch_rows = clamp_batch_rows(batch_rows) as usize;
        self.commands
            .send(Command::Read { sql, columns: columns.len(), batch_rows, out: tx })
            .map_err(|_| self.stopped())?;
        Ok(rx)
    }

    /// Run one small read-only query on a target.
    async fn query(&self, sql: &str) -> Result<Batch, DbError> {
        self.deny_read_only()?;
        self.ask(|r| Command::Query(sql.to_string(), r)).await
    }
}

impl Target for SqliteFile {
    type Writer = SqliteWriter;

    /// Run one statement on a target.
    async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        self.deny_read_only()?;
        self.ask(|r| Command::Execute(sql.to_string(), r)).await
    }

    /// One statement after the other: SQLite has no round trips to save.
    async fn execute_script(&self, statements: &[String]) -> Result<(), DbError> {
        for statement in statements {
            self.execute(statement).await?;
        }
        Ok(())
    }

    /// A bulk writer into `columns` of `table`: batches are inserted by the file's thread
    /// while the component converts the next ones (see [`SqliteWriter`]).
    async fn bulk_load(&self, table: &str, columns: &[String]) -> Result<SqliteWriter, DbError> {
        self.deny_read_only()?;
        Ok(SqliteWriter::new(&self.path, table, columns, self.commands.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BulkWriter;
    use crate::wit::{MAX_ROW_BYTES, ValueTag};

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
        let src = SqliteFile::open(&path).unwrap();
        assert_eq!(src.list_tables().await.unwrap(), vec!["t"]);
        let info = src.describe_table("t").await.unwrap().unwrap();
        assert_eq!(info.columns[0].primary_key, 1);
        assert!(src.describe_table("nope").await.unwrap().is_none());
        assert_eq!(src.count_rows("t").await.unwrap(), 3);
        let cols: Vec<String> = ["id", "name", "data", "r"].iter().map(|s| s.to_string()).collect();
        let mut rx = src.read("t", &cols, &[], 2).await.unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.rows, 2);
        assert_eq!(first.columns[1].tags, vec![ValueTag::Text, ValueTag::Null]);
        assert_eq!(first.columns[2].bytes_of(0), &[0, 255]);
        assert_eq!(f64::from_bits(first.columns[3].numbers[0] as u64), 1.5);
        let second = rx.recv().await.unwrap().unwrap();
        assert_eq!(second.rows, 1);
        assert!(rx.recv().await.is_none());
        assert!(src.read("t", &[], &[], 10).await.is_err());
    }

    /// One row over the host's row cap fails the read (kind `limit`) instead of reaching the
    /// component; the rows before it were delivered.
    #[tokio::test]
    async fn a_row_over_the_row_cap_fails_the_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(&format!(
                "CREATE TABLE t (id INTEGER PRIMARY KEY, a BLOB, b BLOB);
                 INSERT INTO t VALUES (1, x'00', NULL), (2, zeroblob({half}), zeroblob({half}));",
                half = MAX_ROW_BYTES / 2 + 1
            ))
            .unwrap();
        }
        let src = SqliteFile::open(&path).unwrap();
        let cols: Vec<String> = ["id", "a", "b"].iter().map(|s| s.to_string()).collect();
        let mut rx = src.read("t", &cols, &["id".to_string()], 1).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().unwrap().rows, 1);
        let e = rx.recv().await.unwrap().unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Limit), "{:?}", e.kind);
        assert!(e.message.contains(&format!("a row of more than {MAX_ROW_BYTES} bytes")), "{}", e.message);
    }

    /// Queued bulk writes land exactly as sent (empty text and blobs are not NULL), and a
    /// failed insert fails the writer with SQLite's reason, at the latest at `finish`.
    #[tokio::test]
    async fn bulk_writes_bind_every_kind_and_report_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let target = SqliteFile::create(&path).unwrap();
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
        let mut w = target.bulk_load("t", &cols).await.unwrap();
        for ids in [&[1, 2][..], &[3], &[4, 5]] {
            w.write(batch(ids)).await.unwrap();
        }
        assert_eq!(w.finish().await.unwrap(), 5);
        let got = target
            .query("SELECT count(*), sum(name = ''), sum(length(CAST(name AS BLOB)) = 4), sum(data = x'00ff'), sum(data = x''), sum(r IS NULL) FROM t")
            .await
            .unwrap();
        let row: Vec<i64> = got.columns.iter().map(|c| c.numbers[0]).collect();
        assert_eq!(row, vec![5, 1, 4, 4, 1, 1]);

        let mut w = target.bulk_load("t", &cols).await.unwrap();
        let mut outcome = Ok(());
        for ids in [&[6][..], &[1], &[7], &[8]] {
            outcome = outcome.and(w.write(batch(ids)).await);
        }
        let finished = w.finish().await;
        let e = outcome.err().or(finished.err()).expect("the duplicate id fails the load");
        assert!(e.message.contains("UNIQUE constraint failed: t.id"), "{}", e.message);
        assert!(w.write(batch(&[9])).await.is_err(), "a finished writer takes nothing more");
    }

    /// `query` on a target passes the authorizer `execute` does: a statement one refuses, the
    /// other refuses with the same error, and the functions it allows work through both.
    #[tokio::test]
    async fn query_on_a_target_is_refused_what_execute_is() {
        let dir = tempfile::tempdir().unwrap();
        let target = SqliteFile::create(&dir.path().join("t.db")).unwrap();
        target.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)").await.unwrap();
        target.execute("INSERT INTO t (name) VALUES ('A'), ('b')").await.unwrap();
        for sql in [
            "SELECT sqlite_version()",
            "SELECT hex(randomblob(8))",
            "SELECT count(*) FROM t WHERE random() <> 0",
            "SELECT name FROM pragma_database_list",
        ] {
            let by_query = target.query(sql).await.expect_err(sql);
            let by_execute = target.execute(sql).await.expect_err(sql);
            assert_eq!(by_query.kind, ErrorKind::Denied, "{sql}: {by_query:?}");
            assert!(by_query.message.contains("not authorized"), "{sql}: {by_query:?}");
            assert_eq!((by_query.kind, &by_query.message), (by_execute.kind, &by_execute.message), "{sql}");
        }
        let got = target.query("SELECT count(*), max(id), lower(max(name)) FROM t").await.unwrap();
        assert_eq!((got.columns[0].numbers[0], got.columns[1].numbers[0]), (2, 2));
        assert_eq!(got.columns[2].bytes_of(0), b"b");
        // The host's own lookups run without the component's authorizer.
        assert_eq!(target.count_rows("t").await.unwrap(), 2);
        assert!(target.describe_table("t").await.unwrap().is_some());
    }

    /// A transaction SQLite already rolled back (as it does after a full disk or an I/O error)
    /// is never reported committed.
    #[test]
    fn a_commit_after_sqlite_rolled_back_fails_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("BEGIN; CREATE TABLE t (id INTEGER); ROLLBACK").unwrap();
        let e = thread::commit_file(conn, &path).unwrap_err();
        let expected = format!("{}: the transaction was not committed: SQLite rolled it back", path.display());
        assert!(e.message.starts_with(&expected), "{e:?}");
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        assert_eq!(conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    }

    /// The page size is set before the first write (later, SQLite ignores it without a word),
    /// and the committed file is in WAL mode, as the server's are.
    #[tokio::test]
    async fn a_built_file_has_the_target_page_size_and_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let target = SqliteFile::create(&path).unwrap();
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
