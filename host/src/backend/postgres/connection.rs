//! The task that owns one PostgreSQL connection and answers its commands in order, inside the
//! transaction it began. Dropping the command channel without a commit closes the connection,
//! which rolls the transaction back.

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
        let e = error.clone();
        match command {
            Command::Execute(_, reply) | Command::Count(_, reply) => drop(reply.send(Err(e))),
            Command::Query(_, reply) => drop(reply.send(Err(e))),
            Command::Columns(_, reply) => drop(reply.send(Err(e))),
            Command::ListTables(reply) => drop(reply.send(Err(e))),
            Command::Read { out, .. } => drop(out.send(Err(e)).await),
            Command::Copy { reply, .. } => drop(reply.send(Err(e))),
            Command::Commit(reply) => drop(reply.send(Err(e))),
        }
    }
}

/// Serve `commands` on `conn`. A read-only snapshot (`writable` false) describes all its tables
/// once and answers column lookups from that.
pub(super) async fn serve(
    mut conn: PgConnection,
    database: String,
    writable: bool,
    mut commands: mpsc::Receiver<Command>,
) {
    let err = |e| pg_error(&database, e);
    // Empty until the first lookup fills it (a schema with no tables is looked up each time).
    let mut snapshot_columns: Option<HashMap<String, Vec<PgColumn>>> = (!writable).then(HashMap::new);
    while let Some(command) = commands.recv().await {
        match command {
            Command::Execute(sql, reply) => {
                // The simple protocol: one round trip, and no prepared statement left behind for
                // each of the hundreds of one-off DDL statements (the SQL guard admits exactly one
                // statement per call).
                let r =
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.map(|d| d.rows_affected()).map_err(err);
                let _ = reply.send(r);
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
                let _ = reply.send(r);
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
                let _ = reply.send(r);
            }
            Command::ListTables(reply) => {
                let r = sqlx::query_scalar::<_, String>(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                )
                .fetch_all(&mut conn)
                .await
                .map_err(err);
                let _ = reply.send(r);
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
                let _ = reply.send(r);
            }
            Command::Read { sql, decoders, batch_rows, out } => {
                let columns = decoders.len();
                let mut stream = match conn.copy_out_raw(&sql).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = out.send(Err(err(e))).await;
                        continue;
                    }
                };
                let mut decoder = CopyOutDecoder::new(decoders);
                let mut batch = Batch::empty(columns, batch_rows);
                let mut receiver_gone = false;
                while let Some(chunk) = stream.next().await {
                    if receiver_gone {
                        // Drain what is left, so that the connection stays usable.
                        continue;
                    }
                    let step = chunk.map_err(err).and_then(|c| {
                        decoder.feed(&c, &mut batch).map_err(|e| DbError {
                            message: format!("{database}: reading COPY data: {}", e.message),
                            ..e
                        })
                    });
                    if let Err(e) = step {
                        receiver_gone = out.send(Err(e)).await.is_err();
                        break;
                    }
                    if batch.rows as usize >= batch_rows || batch.payload_bytes() >= MAX_BATCH_BYTES {
                        let full = std::mem::replace(&mut batch, Batch::empty(columns, batch_rows));
                        receiver_gone = out.send(Ok(full)).await.is_err();
                    }
                }
                drop(stream);
                if !receiver_gone && batch.rows > 0 {
                    let _ = out.send(Ok(batch)).await;
                }
            }
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
                let _ = reply.send(r);
            }
            Command::Commit(reply) => {
                let r = sqlx::raw_sql("COMMIT").execute(&mut conn).await.map(|_| ()).map_err(err);
                let _ = reply.send(r);
            }
        }
    }
    // Dropped without commit: closing the connection rolls the transaction back.
    let _ = conn.close().await;
}
