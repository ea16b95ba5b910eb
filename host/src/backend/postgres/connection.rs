//! The task that owns one PostgreSQL connection and answers its commands in order, inside the
//! transaction it began. Dropping the command channel without a commit closes the connection,
//! which rolls the transaction back. After a failed command the task puts the connection back
//! in step with the server before it runs the next one, and a commit counts only when the server
//! reports the transaction committed.

use super::catalog::{PgColumn, all_columns, table_columns};
use super::copy::{CopyChunk, CopyOutDecoder, Encoding, decode_rows, query_row_bytes};
use super::error::pg_error;
use crate::backend::{MAX_QUERY_ROWS, quote};
use crate::wit::{Batch, DbError, ErrorKind, MAX_BATCH_BYTES};
use futures_util::StreamExt;
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection, Row};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

pub(super) type Reply<T> = oneshot::Sender<Result<T, DbError>>;

pub(super) enum Command {
    Execute(String, Reply<u64>),
    Query(String, Reply<Batch>),
    Columns(String, Reply<Vec<PgColumn>>),
    ListTables(Reply<Vec<String>>),
    /// Every relation of every schema but PostgreSQL's own, as (schema, name).
    Relations(Reply<Vec<(String, String)>>),
    Count(String, Reply<u64>),
    /// A `COPY (SELECT …) TO STDOUT (FORMAT binary)` decoded column by column into batches.
    Read {
        sql: String,
        decoders: Vec<Encoding>,
        batch_rows: usize,
        out: mpsc::Sender<Result<Batch, DbError>>,
    },
    Copy {
        statement: String,
        data: mpsc::Receiver<CopyChunk>,
        reply: Reply<u64>,
    },
    Commit(Reply<()>),
}

/// Answer every command with `error`: the connection they were sent to never opened.
pub(super) async fn refuse_all(mut commands: mpsc::Receiver<Command>, error: DbError) {
    while let Some(command) = commands.recv().await {
        refuse(command, error.clone()).await;
    }
}

/// Answer `command` with `e` without running it.
async fn refuse(command: Command, e: DbError) {
    match command {
        Command::Execute(_, reply) | Command::Count(_, reply) => drop(reply.send(Err(e))),
        Command::Query(_, reply) => drop(reply.send(Err(e))),
        Command::Columns(_, reply) => drop(reply.send(Err(e))),
        Command::ListTables(reply) => drop(reply.send(Err(e))),
        Command::Relations(reply) => drop(reply.send(Err(e))),
        Command::Read { out, .. } => drop(out.send(Err(e)).await),
        Command::Copy { reply, .. } => drop(reply.send(Err(e))),
        Command::Commit(reply) => drop(reply.send(Err(e))),
    }
}

/// Send `r` as the reply to a command; whether the command failed.
fn answer<T>(reply: Reply<T>, r: Result<T, DbError>) -> bool {
    let failed = r.is_err();
    let _ = reply.send(r);
    failed
}

/// Serve `commands` on `conn`. A read-only snapshot (`writable` false) describes all its tables
/// once and answers column lookups from that. After a failed command the connection is put
/// back in step with the server ([`resync`]) before the next one runs; when it cannot be,
/// every later command fails with why.
pub(super) async fn serve(
    mut conn: PgConnection,
    database: String,
    writable: bool,
    mut commands: mpsc::Receiver<Command>,
) {
    let err = |e| pg_error(&database, e);
    // Empty until the first lookup fills it (a schema with no tables is looked up each time).
    let mut snapshot_columns: Option<HashMap<String, Vec<PgColumn>>> = (!writable).then(HashMap::new);
    // Set when the connection could not be put back in step: no later answer could be trusted.
    let mut out_of_step: Option<DbError> = None;
    while let Some(command) = commands.recv().await {
        if let Some(e) = &out_of_step {
            refuse(command, e.clone()).await;
            continue;
        }
        let failed = match command {
            Command::Execute(sql, reply) => {
                // The simple protocol: one round trip, and no prepared statement left behind for
                // each of the hundreds of one-off DDL statements (the SQL guard admits exactly one
                // statement per call).
                let r =
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.map(|d| d.rows_affected()).map_err(err);
                answer(reply, r)
            }
            Command::Query(sql, reply) => {
                let r = async {
                    // Small results only: a query is for checks, not for moving data.
                    let mut stream = sqlx::query(AssertSqlSafe(sql)).fetch(&mut conn);
                    let mut rows = Vec::new();
                    let mut bytes = 0;
                    while let Some(row) = stream.next().await {
                        let row = row.map_err(err)?;
                        bytes += query_row_bytes(&row);
                        if bytes > MAX_BATCH_BYTES {
                            return Err(DbError::new(
                                ErrorKind::Limit,
                                format!(
                                    "{database}: a query result of more than {MAX_BATCH_BYTES} bytes; use read for data"
                                ),
                            ));
                        }
                        rows.push(row);
                        if rows.len() > MAX_QUERY_ROWS {
                            return Err(DbError::new(
                                ErrorKind::Limit,
                                format!(
                                    "{database}: a query returned more than {MAX_QUERY_ROWS} rows; use read for data"
                                ),
                            ));
                        }
                    }
                    drop(stream);
                    let columns = rows.first().map_or(0, |r| r.len());
                    let mut batch = Batch::empty(columns, rows.len());
                    decode_rows(&rows, columns, &mut batch)?;
                    Ok(batch)
                }
                .await;
                answer(reply, r)
            }
            Command::Columns(table, reply) => {
                let r = match &mut snapshot_columns {
                    // A read-only snapshot's catalog does not change: one query describes every
                    // table, instead of a round trip (~1 ms) per table.
                    Some(cache) => async {
                        if cache.is_empty() {
                            *cache = all_columns(&mut conn).await?;
                        }
                        Ok(cache.get(&table).cloned().unwrap_or_default())
                    }
                    .await
                    .map_err(err),
                    None => table_columns(&mut conn, &table).await.map_err(err),
                };
                answer(reply, r)
            }
            Command::Relations(reply) => {
                let r = sqlx::query_as(super::catalog::RELATIONS_SQL).fetch_all(&mut conn).await.map_err(err);
                answer(reply, r)
            }
            Command::ListTables(reply) => {
                let r = sqlx::query_scalar::<_, String>(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(err);
                answer(reply, r)
            }
            Command::Count(table, reply) => {
                let r = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
                    "SELECT count(*) FROM public.{}",
                    quote(&table)
                )))
                .fetch_one(&mut conn)
                .await
                .map(|n| n as u64)
                .map_err(err);
                answer(reply, r)
            }
            Command::Read { sql, decoders, batch_rows, out } => match conn.copy_out_raw(&sql).await {
                Err(e) => {
                    let _ = out.send(Err(err(e))).await;
                    true
                }
                Ok(mut stream) => {
                    let columns = decoders.len();
                    let mut decoder = CopyOutDecoder::new(decoders);
                    let mut batch = Batch::empty(columns, batch_rows);
                    let mut failed = false;
                    // Set once the reader has its error or is gone. The stream is read to its
                    // end all the same: what is left unread would answer the next command.
                    let mut done = false;
                    while let Some(chunk) = stream.next().await {
                        if done {
                            continue;
                        }
                        let step = chunk.map_err(err).and_then(|c| {
                            decoder.feed(&c, &mut batch).map_err(|e| DbError {
                                message: format!("{database}: reading COPY data: {}", e.message),
                                ..e
                            })
                        });
                        if let Err(e) = step {
                            (failed, done) = (true, true);
                            let _ = out.send(Err(e)).await;
                        } else if batch.rows as usize >= batch_rows || batch.payload_bytes() >= MAX_BATCH_BYTES {
                            let full = std::mem::replace(&mut batch, Batch::empty(columns, batch_rows));
                            done = out.send(Ok(full)).await.is_err();
                        }
                    }
                    drop(stream);
                    if !done && batch.rows > 0 {
                        let _ = out.send(Ok(batch)).await;
                    }
                    failed
                }
            },
            Command::Copy { statement, mut data, reply } => {
                let r = async {
                    let mut copy = conn.copy_in_raw(&statement).await.map_err(err)?;
                    loop {
                        match data.recv().await {
                            Some(CopyChunk::Data(b)) => {
                                copy.send(b).await.map_err(err)?;
                            }
                            Some(CopyChunk::Finish) => return copy.finish().await.map_err(err),
                            None => {
                                copy.abort("bulk load abandoned by the migration component").await.map_err(err)?;
                                return Err(DbError::new(ErrorKind::Other, format!("{database}: bulk load abandoned")));
                            }
                        }
                    }
                }
                .await;
                drop(data);
                answer(reply, r)
            }
            Command::Commit(reply) => answer(reply, commit_checked(&mut conn, &database).await),
        };
        if failed && let Err(e) = resync(&mut conn, &database).await {
            out_of_step = Some(e);
        }
    }
    // Dropped without commit: closing the connection rolls the transaction back.
    let _ = conn.close().await;
}

/// Probes [`resync`] sends before it gives up on a connection.
const RESYNC_PROBES: usize = 4;

/// Put `conn` back in step with the server after a failed command, or say why it cannot be.
///
/// sqlx 0.9 counts the `ReadyForQuery` messages it still awaits for ordinary queries only:
/// its COPY calls read their own, and some of their failures leave one unread (a COPY the
/// server rejects before it starts, e.g. a read whose `order-by` names no column or any COPY
/// in an aborted transaction; an abort of a COPY the server had already failed). That message
/// then ends the next query's answer early, whose real answer ends the one after it, and so
/// on: every later call on the handle gets the answer meant for the call before it.
///
/// A probe selects a number never sent before and must get exactly that back: its answer was
/// then the last message due, and the connection is in step. A probe that meets a stale
/// message instead fails, with its own answer still counted as due, and a ping reads through
/// to it, so the next probe starts on the next unread message. In a transaction a failed
/// statement aborted, every statement fails with 25P02, the probe too: it is in step when
/// that error is followed by no other message but `ReadyForQuery`s.
async fn resync(conn: &mut PgConnection, database: &str) -> Result<(), DbError> {
    static NEXT_PROBE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let broken = |why: String| {
        DbError::new(
            ErrorKind::Connection,
            format!(
                "{database}: the connection is out of step with the server after a failed call ({why}); it answers nothing more"
            ),
        )
    };
    let mut last = String::new();
    for _ in 0..RESYNC_PROBES {
        let nonce = NEXT_PROBE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let probe = sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT {nonce}::int8")))
            .persistent(false)
            .fetch_all(&mut *conn)
            .await;
        let aborted = match probe {
            Ok(got) if got == [nonce] => return Ok(()),
            Ok(got) => {
                last = format!("a probe for {nonce} got {got:?}");
                false
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25P02") => true,
            Err(e @ (sqlx::Error::Io(_) | sqlx::Error::Tls(_))) => return Err(broken(e.to_string())),
            Err(e) => {
                last = e.to_string();
                false
            }
        };
        let mut drained = false;
        for ping in 0..RESYNC_PROBES {
            match conn.ping().await {
                Ok(()) if aborted && ping == 0 => return Ok(()),
                Ok(()) => {
                    drained = true;
                    break;
                }
                Err(e @ sqlx::Error::Database(_)) => last = e.to_string(),
                Err(e) => return Err(broken(e.to_string())),
            }
        }
        if !drained {
            break;
        }
    }
    Err(broken(last))
}

/// Commit the transaction on `conn`, and make sure that it committed.
///
/// PostgreSQL answers COMMIT of a transaction that a failed statement aborted (one not rolled
/// back to a savepoint) with the tag ROLLBACK and no error, and sqlx does not show the tag.
/// So the transaction's id is taken first, which fails in an aborted transaction, and after
/// COMMIT the server is asked what became of that id: only `committed` is success.
async fn commit_checked(conn: &mut PgConnection, database: &str) -> Result<(), DbError> {
    let not_committed =
        |why: &str| DbError::new(ErrorKind::Other, format!("{database}: the transaction was not committed: {why}"));
    let xid = match sqlx::query_scalar::<_, i64>("SELECT txid_current()").fetch_one(&mut *conn).await {
        Ok(xid) => xid,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("25P02") => {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(not_committed(
                "a statement in it failed and was not rolled back to a savepoint, which aborts the whole \
                 transaction; it was rolled back",
            ));
        }
        Err(e) => return Err(pg_error(&format!("{database}: before COMMIT"), e)),
    };
    sqlx::raw_sql("COMMIT").execute(&mut *conn).await.map_err(|e| pg_error(&format!("{database}: COMMIT"), e))?;
    let status: Option<String> = sqlx::query_scalar("SELECT txid_status($1)")
        .bind(xid)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| pg_error(&format!("{database}: checking COMMIT"), e))?;
    match status.as_deref() {
        Some("committed") => Ok(()),
        other => Err(not_committed(&format!("after COMMIT the server reports it {}", other.unwrap_or("unknown")))),
    }
}
