//! The thread that owns one SQLite connection and answers its commands in order. rusqlite's
//! connection is not `Sync`, and reading is CPU-bound: a thread per file keeps it off the async
//! runtime and lets it read ahead of the component. The rules a component's statements must
//! pass ([`crate::policy::sqlite`]) are applied here, on the connection itself, to `execute` and
//! `query` alike; a commit counts only if the transaction was still open.

use super::rows::{InsertError, insert_rows, read_batches};
use super::sqlite_error;
use crate::backend::{MAX_QUERY_ROWS, quote};
use crate::policy;
use crate::wit::{Batch, ColumnInfo, DbError, ErrorKind, MAX_BATCH_BYTES, TableInfo};
use rusqlite::Connection;
use rusqlite::hooks::{AuthContext, Authorization};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use tokio::sync::{mpsc, oneshot};

pub(super) type Reply<T> = oneshot::Sender<Result<T, DbError>>;

/// What the file's thread is asked to do.
pub(super) enum Command {
    Execute(String, Reply<u64>),
    Query(String, Reply<Batch>),
    Insert { sql: std::sync::Arc<str>, rows: Batch, reply: Reply<u64> },
    Commit(Reply<()>),
    ListTables(Reply<Vec<String>>),
    Describe(String, Reply<Option<TableInfo>>),
    Count(String, Reply<u64>),
    Read { sql: String, columns: usize, batch_rows: usize, out: mpsc::Sender<Result<Batch, DbError>> },
}

/// Run `f` with [`policy::sqlite::authorize`] checking every statement it prepares: whatever a
/// component sends, through `execute` or `query`, passes the same check, and fails as `denied`
/// when the check refused it (SQLite reports some refusals as a plain error).
fn as_guest<T>(
    conn: &mut Connection,
    path: &Path,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T, DbError> {
    let refused = Arc::new(AtomicBool::new(false));
    let noted = refused.clone();
    let check = move |ctx: AuthContext<'_>| {
        let verdict = policy::sqlite::authorize(ctx);
        if verdict != Authorization::Allow {
            noted.store(true, Ordering::Relaxed);
        }
        verdict
    };
    conn.authorizer(Some(check)).map_err(|e| sqlite_error(path, e))?;
    let r = f(conn);
    let removed = conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>);
    r.and_then(|v| removed.map(|_| v)).map_err(|e| {
        let mut e = sqlite_error(path, e);
        if refused.load(Ordering::Relaxed) {
            e.kind = ErrorKind::Denied;
        }
        e
    })
}

pub(super) fn serve(mut conn: Connection, path: &Path, commands: std_mpsc::Receiver<Command>) {
    let err = |e| sqlite_error(path, e);
    for command in commands {
        match command {
            Command::Execute(sql, reply) => {
                let r = policy::sqlite::check_statement(&sql).and_then(|_| {
                    as_guest(&mut conn, path, |c| c.prepare(&sql).and_then(|mut st| st.raw_execute())).map(|n| n as u64)
                });
                let _ = reply.send(r);
            }
            Command::Query(sql, reply) => {
                if let Err(refused) = policy::sqlite::check_query(&sql) {
                    let _ = reply.send(Err(refused));
                    continue;
                }
                let r = as_guest(&mut conn, path, |c| {
                    let columns = c.prepare(&sql)?.column_count();
                    let mut all = None;
                    // Small results only; one batch past the cap means the query is too big.
                    read_batches(c, &sql, columns, MAX_QUERY_ROWS + 1, MAX_BATCH_BYTES, &mut |b| {
                        all = Some(b);
                        false
                    })?;
                    Ok(all.unwrap_or_else(|| Batch::empty(columns, 0)))
                });
                let r = r.and_then(|b| {
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
                let _ = reply.send(commit_file(conn, path));
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

/// Commit a target's transaction and close the file, in WAL mode and synced to disk.
///
/// After some errors (a full disk, an I/O error, out of memory) SQLite rolls the whole
/// transaction back by itself; a COMMIT then has nothing to commit, so the transaction must
/// still be open for the commit to count. The file is closed here, before anyone renames it:
/// closing the last connection checkpoints and removes the -wal/-shm named after this path.
pub(super) fn commit_file(conn: Connection, path: &Path) -> Result<(), DbError> {
    let err = |e| sqlite_error(path, e);
    if conn.is_autocommit() {
        return Err(DbError::new(
            ErrorKind::Other,
            format!(
                "{}: the transaction was not committed: SQLite rolled it back after an earlier error",
                path.display()
            ),
        ));
    }
    conn.execute_batch("COMMIT; PRAGMA synchronous = FULL; PRAGMA journal_mode = WAL").map_err(err)?;
    conn.close().map_err(|(_, e)| err(e))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| DbError::new(ErrorKind::Other, format!("{}: syncing: {e}", path.display())))
}
