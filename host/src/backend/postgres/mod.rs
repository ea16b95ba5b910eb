//! PostgreSQL databases: one connection each, inside one transaction, served by a task that
//! owns the connection. A target's transaction commits only when the whole job succeeded; a
//! source reads one read-only, repeatable-read snapshot. Bulk loads are binary COPY, encoded here by hand (the generic
//! writers are 30–50 % slower, `../shared/notes/peers.md`) and streamed to the server while
//! the component converts the next batch.

use crate::bindings::blocklet::migrate::types::{ColumnInfo, TableInfo};
use crate::bindings::{Batch, ColumnValues, DbError, ErrorKind, MAX_BATCH_BYTES, ValueTag};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow, PgValueFormat};
use sqlx::{AssertSqlSafe, Connection, Row, TypeInfo, ValueRef};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, DbError>>;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The largest single row a bulk load accepts (PostgreSQL's own limit for a value is 1 GB).
const MAX_SINGLE_ROW_BYTES: usize = 256 << 20;

/// Rows a `query` may return: it is for checks, and its result is held in host memory.
pub const MAX_QUERY_ROWS: usize = 100_000;

/// Batches queued between the component and the COPY: a host-side byte cap.
const COPY_QUEUE_CHUNKS: usize = 4;

enum Command {
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

enum CopyChunk {
    Data(Bytes),
    Finish,
}

/// A column of a target table with what encoding and decoding need.
#[derive(Clone, Debug)]
pub struct PgColumn {
    pub name: String,
    pub type_name: String,
    pub is_enum: bool,
    pub declared: String,
    pub not_null: bool,
    pub default: Option<String>,
    pub primary_key: u32,
}

/// Turn a sqlx error into the WIT error, keeping the SQLSTATE.
pub fn pg_error(context: &str, e: sqlx::Error) -> DbError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string());
            let kind = match code.as_deref() {
                Some(c) if c.starts_with("23") => ErrorKind::Constraint,
                Some("42P01" | "3D000" | "42704") => ErrorKind::NotFound,
                Some("42501") => ErrorKind::Denied,
                Some(c) if c.starts_with("22") => ErrorKind::InvalidInput,
                _ => ErrorKind::Other,
            };
            let mut message = format!("{context}: {}", db.message());
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                && let Some(detail) = pg.detail()
            {
                message += &format!(" ({detail})");
            }
            DbError { kind, message, code }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::PoolTimedOut => {
            DbError::new(ErrorKind::Connection, format!("{context}: {e}"))
        }
        _ => DbError::new(ErrorKind::Other, format!("{context}: {e}")),
    }
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `CREATE INDEX` on a target may use PostgreSQL's parallel maintenance workers.
///
/// Parallel workers split a build's scan and sort and merge the parts: more CPU in all, less
/// wall time only when cores are idle. When the server shares this machine's cores and the
/// databases loading at once already keep them busy, they are overhead: on 2 cores, with the
/// server on the same machine, a 200k-row SQLite → PostgreSQL run took 5% less wall time
/// without them (medians of 8 alternating runs; no difference at 1M rows), and the bench's
/// ceiling spent 0.3–0.5 core-s less.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexWorkers {
    /// Whatever the server's `max_parallel_maintenance_workers` says.
    ServerDefault,
    /// Each index is built by the session's own backend.
    None,
}

impl IndexWorkers {
    /// Workers pay only when some core is left once every database loading at once has one.
    /// A remote server's cores are its own: its configuration decides.
    pub fn for_run(server_is_local: bool, cores: usize, databases_at_once: usize) -> IndexWorkers {
        if server_is_local && cores <= databases_at_once { IndexWorkers::None } else { IndexWorkers::ServerDefault }
    }
}

/// One target database, open inside a transaction until [`PgTarget::commit`].
pub struct PgTarget {
    database: String,
    writable: bool,
    commands: mpsc::Sender<Command>,
}

impl PgTarget {
    /// Connect to `database` and begin the transaction everything will run in, in the
    /// background: commands queue until the connection is up, and if it cannot open, each of
    /// them fails with the reason. Connecting (TCP, the server starting a backend for the
    /// database, BEGIN) takes 8–14 ms here, and the component's first steps, its checks of the
    /// SQLite source, need no target: the first row no longer waits for both one after the other.
    ///
    /// With [`IndexWorkers::None`], the session builds each index in its own backend only
    /// (`max_parallel_maintenance_workers = 0`).
    pub fn open(options: &PgConnectOptions, database: &str, index_workers: IndexWorkers) -> PgTarget {
        let begin = match index_workers {
            IndexWorkers::ServerDefault => "SET client_min_messages = warning; BEGIN",
            IndexWorkers::None => "SET client_min_messages = warning; SET max_parallel_maintenance_workers = 0; BEGIN",
        };
        Self::start(options, database, begin, true)
    }

    /// Connect to `database` as a source: one read-only snapshot for every read.
    pub async fn open_source(options: &PgConnectOptions, database: &str) -> Result<PgTarget, DbError> {
        let begin = "SET client_min_messages = warning; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        let source = Self::start(options, database, begin, false);
        // The snapshot is taken by the first query, not by BEGIN: take it now (this also waits
        // for the connection, and fails with the reason if it could not open).
        source.list_tables().await?;
        Ok(source)
    }

    /// Connect and run `begin` on a task of its own, which then serves the commands.
    fn start(options: &PgConnectOptions, database: &str, begin: &'static str, writable: bool) -> PgTarget {
        let (tx, rx) = mpsc::channel(8);
        let (options, name) = (options.clone().database(database), database.to_string());
        tokio::spawn(async move {
            let connected = async {
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| pg_error(&format!("connecting to database {name}"), e))?;
                disable_nagle(options.get_port());
                sqlx::raw_sql(begin).execute(&mut conn).await.map_err(|e| pg_error(&name, e))?;
                Ok(conn)
            };
            match connected.await {
                Ok(conn) => serve(conn, name, writable, rx).await,
                Err(e) => refuse_all(rx, e).await,
            }
        });
        PgTarget { database: database.to_string(), writable, commands: tx }
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, DbError> {
        let stopped = || DbError::new(ErrorKind::Connection, format!("{}: connection task stopped", self.database));
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn execute(&self, sql: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Execute(sql.to_string(), r)).await
    }

    /// Run checked single statements in order as one simple-protocol query: one round trip.
    pub async fn execute_script(&self, statements: &[String]) -> Result<(), DbError> {
        if statements.is_empty() {
            return Ok(());
        }
        // Each statement passed the SQL guard as exactly one statement, so a newline (ending
        // any trailing line comment) and a semicolon separate them safely.
        let script = statements.join("\n;\n");
        self.ask(|r| Command::Execute(script, r)).await.map(|_| ())
    }

    pub async fn query(&self, sql: &str) -> Result<Batch, DbError> {
        self.ask(|r| Command::Query(sql.to_string(), r)).await
    }

    pub async fn list_tables(&self) -> Result<Vec<String>, DbError> {
        self.ask(Command::ListTables).await
    }

    pub async fn count_rows(&self, table: &str) -> Result<u64, DbError> {
        self.ask(|r| Command::Count(table.to_string(), r)).await
    }

    pub async fn columns(&self, table: &str) -> Result<Vec<PgColumn>, DbError> {
        self.ask(|r| Command::Columns(table.to_string(), r)).await
    }

    pub async fn describe_table(&self, table: &str) -> Result<Option<TableInfo>, DbError> {
        let columns = self.columns(table).await?;
        Ok((!columns.is_empty()).then(|| TableInfo {
            name: table.to_string(),
            columns: columns
                .into_iter()
                .map(|c| ColumnInfo {
                    name: c.name,
                    declared_type: c.declared,
                    not_null: c.not_null,
                    default_value: c.default,
                    primary_key: c.primary_key,
                })
                .collect(),
        }))
    }

    /// Look up `columns` of `table`, failing with a message naming a missing one.
    async fn pick_columns(&self, table: &str, columns: &[String]) -> Result<Vec<PgColumn>, DbError> {
        let all = self.columns(table).await?;
        if all.is_empty() {
            return Err(DbError::new(ErrorKind::NotFound, format!("{}: no table {table}", self.database)));
        }
        columns
            .iter()
            .map(|name| {
                all.iter().find(|c| &c.name == name).cloned().ok_or_else(|| {
                    DbError::new(ErrorKind::NotFound, format!("{}: table {table} has no column {name}", self.database))
                })
            })
            .collect()
    }

    /// Stream `columns` of `table` back, decoded into tagged values.
    pub async fn read(
        &self,
        table: &str,
        columns: &[String],
        order_by: &[String],
        batch_rows: u32,
    ) -> Result<mpsc::Receiver<Result<Batch, DbError>>, DbError> {
        let picked = self.pick_columns(table, columns).await?;
        // Enums and types without a binary decoder come as their text form.
        let (select, decoders): (Vec<String>, Vec<Encoding>) = picked
            .iter()
            .map(|c| match decoder_for(&c.type_name, c.is_enum) {
                Some(d) if !c.is_enum => (quote(&c.name), d),
                _ => (format!("{}::text", quote(&c.name)), Encoding::Text),
            })
            .unzip();
        let mut sql = format!("COPY (SELECT {} FROM public.{}", select.join(", "), quote(table));
        if !order_by.is_empty() {
            sql += &format!(" ORDER BY {}", order_by.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "));
        }
        sql += ") TO STDOUT (FORMAT binary)";
        let (tx, rx) = mpsc::channel(2);
        let command = Command::Read { sql, decoders, batch_rows: batch_rows.clamp(1, 100_000) as usize, out: tx };
        self.commands
            .send(command)
            .await
            .map_err(|_| DbError::new(ErrorKind::Connection, format!("{}: connection task stopped", self.database)))?;
        Ok(rx)
    }

    /// Start a binary COPY of `columns` into `table`.
    pub async fn bulk_load(&self, table: &str, columns: &[String]) -> Result<PgWriter, DbError> {
        let picked = self.pick_columns(table, columns).await?;
        let encoders = picked
            .iter()
            .map(|c| {
                encoder_for(&c.type_name, c.is_enum).ok_or_else(|| {
                    DbError::new(
                        ErrorKind::InvalidInput,
                        format!("{}.{table}.{}: cannot bulk-load type {}", self.database, c.name, c.declared),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let statement = format!(
            "COPY public.{} ({}) FROM STDIN (FORMAT binary)",
            quote(table),
            columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ")
        );
        let (data_tx, data_rx) = mpsc::channel(COPY_QUEUE_CHUNKS);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands
            .send(Command::Copy { statement, data: data_rx, reply: reply_tx })
            .await
            .map_err(|_| DbError::new(ErrorKind::Connection, format!("{}: connection task stopped", self.database)))?;
        let mut header = BytesMut::with_capacity(19);
        header.put_slice(b"PGCOPY\n\xff\r\n\0");
        header.put_i32(0);
        header.put_i32(0);
        Ok(PgWriter {
            target: format!("{}.{table}", self.database),
            columns: picked,
            encoders,
            pending_header: Some(header.freeze()),
            data: Some(data_tx),
            reply: Some(reply_rx),
        })
    }

    /// Commit the transaction. Dropping a target without committing rolls it back.
    pub async fn commit(&self) -> Result<(), DbError> {
        self.ask(Command::Commit).await
    }
}

/// Turn on `TCP_NODELAY` for this process's connections to the server at `server_port`.
///
/// sqlx 0.9 never sets it, and its COPY writes every `CopyData` and the closing `CopyDone` as
/// separate flushes: with Nagle's algorithm each flush after the first waits for the server's
/// delayed ACK (~40 ms), so every table cost at least 40 ms more than its data (measured: the
/// demo fixture's 89 tables took 7.7 s over TCP, 0.7 s with this). sqlx exposes no socket, so
/// every TCP socket of this process whose peer port is the server's gets the option: that also
/// covers a proxy in between (its port is the one we connected to), and it is harmless on any
/// other connection to such a port. Unix sockets have no peer port and are left alone.
pub fn disable_nagle(server_port: u16) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<libc::c_int>().ok()) else { continue };
        if peer_port(fd) != Some(server_port) {
            continue;
        }
        let on: libc::c_int = 1;
        // SAFETY: setsockopt only reads the int we pass; on a descriptor that closed or is no
        // TCP socket it fails, which changes nothing.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &on as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// The remote port of `fd` when it is a connected IPv4/IPv6 socket.
fn peer_port(fd: libc::c_int) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid; getpeername writes at most `len` bytes into
    // it and fails on descriptors that are not connected sockets.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    if unsafe { libc::getpeername(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len) } != 0 {
        return None;
    }
    match addr.ss_family as libc::c_int {
        // SAFETY: the family says which sockaddr the storage holds.
        libc::AF_INET => Some(u16::from_be(unsafe { (*(&addr as *const _ as *const libc::sockaddr_in)).sin_port })),
        libc::AF_INET6 => Some(u16::from_be(unsafe { (*(&addr as *const _ as *const libc::sockaddr_in6)).sin6_port })),
        _ => None,
    }
}

/// How a target column's values are written in binary COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Text,
    Json,
    Jsonb,
    Timestamp,
    Uuid,
    Bytea,
}

fn encoder_for(type_name: &str, is_enum: bool) -> Option<Encoding> {
    if is_enum {
        return Some(Encoding::Text);
    }
    Some(match type_name {
        "bool" => Encoding::Bool,
        "int2" => Encoding::Int2,
        "int4" => Encoding::Int4,
        "int8" => Encoding::Int8,
        "float4" => Encoding::Float4,
        "float8" => Encoding::Float8,
        "text" | "varchar" | "bpchar" | "name" => Encoding::Text,
        "json" => Encoding::Json,
        "jsonb" => Encoding::Jsonb,
        "timestamptz" | "timestamp" => Encoding::Timestamp,
        "uuid" => Encoding::Uuid,
        "bytea" => Encoding::Bytea,
        _ => return None,
    })
}

fn decoder_for(type_name: &str, is_enum: bool) -> Option<Encoding> {
    encoder_for(type_name, is_enum)
}

/// A binary COPY in progress (the WIT `bulk-writer`).
pub struct PgWriter {
    target: String,
    columns: Vec<PgColumn>,
    encoders: Vec<Encoding>,
    pending_header: Option<Bytes>,
    data: Option<mpsc::Sender<CopyChunk>>,
    reply: Option<oneshot::Receiver<Result<u64, DbError>>>,
}

impl PgWriter {
    pub async fn write(&mut self, batch: Batch) -> Result<(), DbError> {
        batch.validate(self.encoders.len())?;
        // Several rows together stay under the batch cap; one row alone may be as large as a
        // single PostgreSQL value can be (a 10 MB JSON document is real data).
        let bytes = batch.payload_bytes();
        if (batch.rows > 1 && bytes > 2 * MAX_BATCH_BYTES) || bytes > MAX_SINGLE_ROW_BYTES {
            return Err(DbError::new(
                ErrorKind::Limit,
                format!("{}: a batch of {} rows and {bytes} bytes is over the host's limit", self.target, batch.rows),
            ));
        }
        let mut buf = BytesMut::with_capacity(batch.payload_bytes() + 19);
        // The COPY header goes out with the first batch that encodes: a refused batch sends
        // nothing, and the load can go on.
        if let Some(h) = &self.pending_header {
            buf.put_slice(h);
        }
        encode_rows(&batch, &self.encoders, &mut buf).map_err(|(row, col, why)| {
            DbError::new(
                ErrorKind::InvalidInput,
                format!("{}: row {} of the batch, column {}: {why}", self.target, row + 1, self.columns[col].name),
            )
        })?;
        self.pending_header = None;
        self.send(CopyChunk::Data(buf.freeze())).await
    }

    async fn send(&mut self, chunk: CopyChunk) -> Result<(), DbError> {
        let Some(data) = &self.data else {
            return Err(DbError::new(ErrorKind::InvalidInput, format!("{}: bulk load already finished", self.target)));
        };
        if data.send(chunk).await.is_err() {
            // The COPY stopped early; its reply says why.
            self.data = None;
            return Err(self.outcome().await.err().unwrap_or_else(|| {
                DbError::new(ErrorKind::Connection, format!("{}: bulk load ended early", self.target))
            }));
        }
        Ok(())
    }

    async fn outcome(&mut self) -> Result<u64, DbError> {
        match self.reply.take() {
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(DbError::new(ErrorKind::Connection, format!("{}: connection task stopped", self.target)))
            }),
            None => Err(DbError::new(ErrorKind::InvalidInput, format!("{}: bulk load already finished", self.target))),
        }
    }

    pub async fn finish(&mut self) -> Result<u64, DbError> {
        let mut trailer = BytesMut::with_capacity(21);
        if let Some(h) = self.pending_header.take() {
            trailer.put_slice(&h);
        }
        trailer.put_i16(-1);
        self.send(CopyChunk::Data(trailer.freeze())).await?;
        self.send(CopyChunk::Finish).await?;
        self.data = None;
        self.outcome().await
    }
}

/// Encode every row of `batch` as binary COPY tuples. Errors name (row, column, reason).
fn encode_rows(batch: &Batch, encoders: &[Encoding], buf: &mut BytesMut) -> Result<(), (usize, usize, String)> {
    for row in 0..batch.rows as usize {
        buf.put_i16(encoders.len() as i16);
        for (c, (col, enc)) in batch.columns.iter().zip(encoders).enumerate() {
            encode_value(col, row, *enc, buf).map_err(|why| (row, c, why))?;
        }
    }
    Ok(())
}

fn encode_value(col: &ColumnValues, row: usize, enc: Encoding, buf: &mut BytesMut) -> Result<(), String> {
    let tag = col.tags[row];
    let n = col.numbers[row];
    let bytes = || col.bytes_of(row);
    match (tag, enc) {
        (ValueTag::Null, _) => buf.put_i32(-1),
        (ValueTag::Boolean, Encoding::Bool) => {
            buf.put_i32(1);
            buf.put_u8((n != 0) as u8);
        }
        (ValueTag::Integer, Encoding::Int2) => {
            let v = i16::try_from(n).map_err(|_| format!("{n} is out of range for smallint"))?;
            buf.put_i32(2);
            buf.put_i16(v);
        }
        (ValueTag::Integer, Encoding::Int4) => {
            let v = i32::try_from(n).map_err(|_| format!("{n} is out of range for integer"))?;
            buf.put_i32(4);
            buf.put_i32(v);
        }
        (ValueTag::Integer, Encoding::Int8) => {
            buf.put_i32(8);
            buf.put_i64(n);
        }
        (ValueTag::Real, Encoding::Float8) => {
            buf.put_i32(8);
            buf.put_u64(n as u64);
        }
        (ValueTag::Real, Encoding::Float4) => {
            buf.put_i32(4);
            buf.put_f32(f64::from_bits(n as u64) as f32);
        }
        (ValueTag::Text, Encoding::Text) | (ValueTag::Json, Encoding::Json) | (ValueTag::Blob, Encoding::Bytea) => {
            let b = bytes();
            if tag == ValueTag::Text {
                std::str::from_utf8(b).map_err(|_| "text is not valid UTF-8".to_string())?;
            }
            buf.put_i32(b.len() as i32);
            buf.put_slice(b);
        }
        (ValueTag::Json, Encoding::Jsonb) => {
            let b = bytes();
            buf.put_i32(b.len() as i32 + 1);
            buf.put_u8(1); // jsonb binary format version
            buf.put_slice(b);
        }
        (ValueTag::Timestamp, Encoding::Timestamp) => {
            buf.put_i32(8);
            buf.put_i64(n - PG_EPOCH_OFFSET_MICROS);
        }
        (ValueTag::Text, Encoding::Uuid) => {
            let u =
                parse_uuid(bytes()).ok_or_else(|| format!("{:?} is not a UUID", String::from_utf8_lossy(bytes())))?;
            buf.put_i32(16);
            buf.put_slice(&u);
        }
        (tag, enc) => {
            return Err(format!("a {tag:?} value cannot be written to a {enc:?} column"));
        }
    }
    Ok(())
}

fn parse_uuid(s: &[u8]) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.iter().copied().filter(|c| *c != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// Append row `row`'s column `i` to `col`, decoded from PostgreSQL's binary format.
fn decode_value(row: &PgRow, i: usize, col: &mut ColumnValues) -> Result<(), String> {
    let raw = row.try_get_raw(i).map_err(|e| e.to_string())?;
    if raw.is_null() {
        col.push_null();
        return Ok(());
    }
    // The same decoding as `read`; text-format values and types without a decoder stay text.
    let decoder = match raw.format() {
        PgValueFormat::Binary => decoder_for(&raw.type_info().name().to_ascii_lowercase(), false),
        PgValueFormat::Text => None,
    };
    let b = raw.as_bytes().map_err(|e| e.to_string())?;
    match decoder {
        Some(enc) => decode_binary(b, enc, col),
        None => {
            col.push_bytes(ValueTag::Text, b);
            Ok(())
        }
    }
}

fn decode_rows(rows: &[PgRow], columns: usize, batch: &mut Batch) -> Result<(), DbError> {
    for row in rows {
        if row.len() != columns {
            return Err(DbError::new(ErrorKind::InvalidInput, "query returned an unexpected number of columns"));
        }
        for (i, col) in batch.columns.iter_mut().enumerate() {
            decode_value(row, i, col)
                .map_err(|e| DbError::new(ErrorKind::Other, format!("decoding column {}: {e}", i + 1)))?;
        }
        batch.rows += 1;
    }
    Ok(())
}

/// Decodes the binary COPY format (header, then tuples of length-prefixed fields) into
/// batches. PostgreSQL sends one `CopyData` per row, but the format does not promise it, so
/// a tuple split over chunks is buffered until complete.
struct CopyOutDecoder {
    decoders: Vec<Encoding>,
    pending: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
}

/// `PGCOPY\n\377\r\n\0`, then flags (u32) and the header extension length (u32).
const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyOutDecoder {
    fn new(decoders: Vec<Encoding>) -> Self {
        CopyOutDecoder { decoders, pending: Vec::new(), header_done: false, trailer_seen: false }
    }

    /// Append every complete tuple of `chunk` (with what is pending) to `batch`.
    fn feed(&mut self, chunk: &[u8], batch: &mut Batch) -> Result<(), String> {
        if self.pending.is_empty() {
            let used = self.parse(chunk, batch)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let pending = std::mem::take(&mut self.pending);
            let used = self.parse(&pending, batch)?;
            self.pending = pending[used..].to_vec();
        }
        Ok(())
    }

    /// Parse what is complete in `data`; returns the bytes used.
    fn parse(&mut self, data: &[u8], batch: &mut Batch) -> Result<usize, String> {
        let mut at = 0;
        if !self.header_done {
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != COPY_SIGNATURE {
                return Err("not binary COPY data (bad signature)".into());
            }
            let ext = u32::from_be_bytes(data[15..19].try_into().expect("4 bytes")) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            at = 19 + ext;
            self.header_done = true;
        }
        while at + 2 <= data.len() {
            if self.trailer_seen {
                return Err("data after the COPY trailer".into());
            }
            let fields = i16::from_be_bytes([data[at], data[at + 1]]);
            if fields == -1 {
                self.trailer_seen = true;
                at += 2;
                continue;
            }
            if fields as usize != self.decoders.len() {
                return Err(format!("a row has {fields} fields, expected {}", self.decoders.len()));
            }
            // Find the tuple's end first, so that a split tuple is not half-appended.
            let mut end = at + 2;
            for _ in 0..fields {
                let Some(len) = data.get(end..end + 4) else { return Ok(at) };
                let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
                end += 4 + len.max(0) as usize;
                if end > data.len() {
                    return Ok(at);
                }
            }
            let mut field = at + 2;
            for (c, enc) in self.decoders.iter().enumerate() {
                let len = i32::from_be_bytes(data[field..field + 4].try_into().expect("4 bytes"));
                field += 4;
                let col = &mut batch.columns[c];
                if len < 0 {
                    col.push_null();
                    continue;
                }
                let value = &data[field..field + len as usize];
                field += len as usize;
                decode_binary(value, *enc, col).map_err(|e| format!("column {}: {e}", c + 1))?;
            }
            batch.rows += 1;
            at = end;
        }
        Ok(at)
    }
}

/// Append one non-null value in PostgreSQL's binary format to `col`.
fn decode_binary(b: &[u8], enc: Encoding, col: &mut ColumnValues) -> Result<(), String> {
    let wrong = || format!("unexpected {} bytes for {enc:?}", b.len());
    let int = |b: &[u8]| -> Result<i64, String> {
        Ok(match b.len() {
            2 => i16::from_be_bytes([b[0], b[1]]) as i64,
            4 => i32::from_be_bytes(b.try_into().expect("4")) as i64,
            8 => i64::from_be_bytes(b.try_into().expect("8")),
            _ => return Err(wrong()),
        })
    };
    match enc {
        Encoding::Bool if b.len() == 1 => col.push_number(ValueTag::Boolean, (b[0] != 0) as i64),
        Encoding::Int2 | Encoding::Int4 | Encoding::Int8 => col.push_number(ValueTag::Integer, int(b)?),
        Encoding::Float8 if b.len() == 8 => col.push_number(ValueTag::Real, int(b)?),
        Encoding::Float4 if b.len() == 4 => {
            let f = f32::from_be_bytes(b.try_into().expect("4"));
            col.push_number(ValueTag::Real, (f as f64).to_bits() as i64)
        }
        Encoding::Text => col.push_bytes(ValueTag::Text, b),
        Encoding::Json => col.push_bytes(ValueTag::Json, b),
        Encoding::Jsonb if b.first() == Some(&1) => col.push_bytes(ValueTag::Json, &b[1..]),
        Encoding::Jsonb => return Err(format!("unknown jsonb format version {:?}", b.first())),
        Encoding::Timestamp if b.len() == 8 => col.push_number(ValueTag::Timestamp, int(b)? + PG_EPOCH_OFFSET_MICROS),
        Encoding::Uuid if b.len() == 16 => col.push_bytes(ValueTag::Text, &uuid_text(b.try_into().expect("16"))),
        Encoding::Bytea => col.push_bytes(ValueTag::Blob, b),
        _ => return Err(wrong()),
    }
    Ok(())
}

/// A UUID's canonical text form, without allocating.
fn uuid_text(b: &[u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'-'; 36];
    let mut at = 0;
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        out[at] = HEX[(x >> 4) as usize];
        out[at + 1] = HEX[(x & 15) as usize];
        at += 2;
    }
    out
}

/// What a column lookup selects (read by [`pg_column`]), and from which catalogs; the two
/// lookups below differ only in which relations they cover.
macro_rules! column_lookup {
    () => {
        "a.attname::text, t.typname::text, t.typtype = 'e', format_type(a.atttypid, a.atttypmod), \
         a.attnotnull, pg_get_expr(d.adbin, d.adrelid), \
         COALESCE((SELECT array_position(i.indkey::int2[], a.attnum) FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary), 0) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    };
}

/// The columns of relation `$1` (`public."name"`).
const COLUMNS_SQL: &str = concat!(
    "SELECT ",
    column_lookup!(),
    " WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
);

/// Every column of every table of schema `public`, each row led by its table's name.
const ALL_COLUMNS_SQL: &str = concat!(
    "SELECT c.relname::text, ",
    column_lookup!(),
    " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY c.relname, a.attnum"
);

/// One row of [`COLUMNS_SQL`], or of [`ALL_COLUMNS_SQL`] from column `at` on.
fn pg_column(r: &PgRow, at: usize) -> Result<PgColumn, sqlx::Error> {
    Ok(PgColumn {
        name: r.try_get(at)?,
        type_name: r.try_get(at + 1)?,
        is_enum: r.try_get(at + 2)?,
        declared: r.try_get(at + 3)?,
        not_null: r.try_get(at + 4)?,
        default: r.try_get(at + 5)?,
        primary_key: r.try_get::<i32, _>(at + 6)? as u32,
    })
}

async fn all_columns(conn: &mut PgConnection) -> Result<HashMap<String, Vec<PgColumn>>, sqlx::Error> {
    let mut tables: HashMap<String, Vec<PgColumn>> = HashMap::new();
    for r in sqlx::query(ALL_COLUMNS_SQL).fetch_all(conn).await? {
        tables.entry(r.try_get(0)?).or_default().push(pg_column(&r, 1)?);
    }
    Ok(tables)
}

/// Answer every command with `error`: the connection they were sent to never opened.
async fn refuse_all(mut commands: mpsc::Receiver<Command>, error: DbError) {
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
async fn serve(mut conn: PgConnection, database: String, writable: bool, mut commands: mpsc::Receiver<Command>) {
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
                    while let Some(row) = stream.next().await {
                        rows.push(row.map_err(err)?);
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
                    // table (a PostgreSQL source used to ask twice per table, ~1 ms a round trip).
                    Some(cache) => async {
                        if cache.is_empty() {
                            *cache = all_columns(&mut conn).await?;
                        }
                        Ok(cache.get(&table).cloned().unwrap_or_default())
                    }
                    .await
                    .map_err(err),
                    None => sqlx::query(COLUMNS_SQL)
                        .bind(format!("public.{}", quote(&table)))
                        .fetch_all(&mut conn)
                        .await
                        .and_then(|rows| rows.iter().map(|r| pg_column(r, 0)).collect())
                        .map_err(err),
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
                        decoder
                            .feed(&c, &mut batch)
                            .map_err(|e| DbError::new(ErrorKind::Other, format!("{database}: decoding COPY data: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_workers_stay_the_servers_unless_a_local_server_has_no_core_to_spare() {
        let (none, server) = (IndexWorkers::None, IndexWorkers::ServerDefault);
        assert_eq!(IndexWorkers::for_run(true, 2, 4), none, "2 cores, 4 databases at once");
        assert_eq!(IndexWorkers::for_run(true, 2, 2), none, "a core per database, none left");
        assert_eq!(IndexWorkers::for_run(true, 8, 4), server, "spare cores on this machine");
        assert_eq!(IndexWorkers::for_run(true, 2, 1), server, "one database: a core is idle");
        assert_eq!(IndexWorkers::for_run(false, 2, 4), server, "a remote server has its own cores");
    }

    #[test]
    fn nagle_goes_off_on_connections_to_the_server_port_only() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to_server = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let to_other = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!to_server.nodelay().unwrap() && !to_other.nodelay().unwrap());
        disable_nagle(server.local_addr().unwrap().port());
        assert!(to_server.nodelay().unwrap(), "the connection to the server port");
        assert!(!to_other.nodelay().unwrap(), "a connection to another port is left alone");
    }

    /// A target connects in the background; when it cannot, every command the component sends
    /// fails with the reason (not with "connection task stopped"), and nothing hangs.
    #[tokio::test]
    async fn a_target_that_cannot_connect_answers_every_command_with_why() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let options = PgConnectOptions::new().host("127.0.0.1").port(port).username("postgres");
        let target = PgTarget::open(&options, "server_db", IndexWorkers::ServerDefault);
        let errors = [
            target.list_tables().await.unwrap_err(),
            target.execute("CREATE TABLE t (id int)").await.unwrap_err(),
            target.count_rows("t").await.unwrap_err(),
            target.commit().await.unwrap_err(),
        ];
        for e in errors {
            assert_eq!(e.kind, ErrorKind::Connection, "{e:?}");
            assert!(e.message.starts_with("connecting to database server_db: "), "{e:?}");
        }
        // A read looks its columns up first, and fails the same way.
        let e = target.read("t", &["id".to_string()], &[], 100).await.unwrap_err();
        assert!(e.message.starts_with("connecting to database server_db: "), "{e:?}");
    }

    #[test]
    fn uuid_round_trip() {
        let u = parse_uuid(b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        assert_eq!(&uuid_text(&u), b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!(parse_uuid(b"nope").is_none());
    }

    /// What the writer encodes, the reader decodes, however the stream is split into chunks.
    #[test]
    fn copy_out_decoder_reads_what_the_writer_encodes_split_anywhere() {
        let encoders = [Encoding::Int8, Encoding::Jsonb, Encoding::Timestamp, Encoding::Uuid, Encoding::Bool];
        let mut cols: Vec<ColumnValues> = (0..5).map(|_| ColumnValues::with_capacity(3)).collect();
        for i in 0..3i64 {
            cols[0].push_number(ValueTag::Integer, i - 1);
            cols[1].push_bytes(ValueTag::Json, format!("{{\"n\": {i}}}").as_bytes());
            cols[2].push_number(ValueTag::Timestamp, 1_700_000_000_000_000 + i);
            if i == 1 {
                cols[3].push_null();
            } else {
                cols[3].push_bytes(ValueTag::Text, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
            }
            cols[4].push_number(ValueTag::Boolean, i % 2);
        }
        let sent = Batch { rows: 3, columns: cols };
        let mut stream = BytesMut::new();
        stream.put_slice(COPY_SIGNATURE);
        stream.put_u32(0);
        stream.put_u32(0);
        encode_rows(&sent, &encoders, &mut stream).unwrap();
        stream.put_i16(-1);
        for split in 0..stream.len() {
            let mut decoder = CopyOutDecoder::new(encoders.to_vec());
            let mut got = Batch::empty(5, 3);
            decoder.feed(&stream[..split], &mut got).unwrap();
            decoder.feed(&stream[split..], &mut got).unwrap();
            assert!(decoder.trailer_seen && decoder.pending.is_empty(), "split at {split}");
            assert_eq!(got.rows, sent.rows, "split at {split}");
            for (g, s) in got.columns.iter().zip(&sent.columns) {
                assert_eq!((&g.tags, &g.numbers, &g.bytes, &g.ends), (&s.tags, &s.numbers, &s.bytes, &s.ends));
            }
        }
        let mut decoder = CopyOutDecoder::new(encoders[..2].to_vec());
        let err = decoder.feed(&stream, &mut Batch::empty(2, 3)).unwrap_err();
        assert!(err.contains("5 fields, expected 2"), "{err}");
    }

    #[test]
    fn encodes_binary_copy_tuples_and_refuses_mismatched_tags() {
        let mut a = ColumnValues::with_capacity(2);
        a.push_number(ValueTag::Integer, 7);
        a.push_null();
        let mut b = ColumnValues::with_capacity(2);
        b.push_bytes(ValueTag::Json, b"{}");
        b.push_bytes(ValueTag::Json, b"[]");
        let batch = Batch { rows: 2, columns: vec![a, b] };
        let mut buf = BytesMut::new();
        encode_rows(&batch, &[Encoding::Int4, Encoding::Jsonb], &mut buf).unwrap();
        let expected: &[u8] = &[
            0, 2, 0, 0, 0, 4, 0, 0, 0, 7, 0, 0, 0, 3, 1, b'{', b'}', 0, 2, 255, 255, 255, 255, 0, 0, 0, 3, 1, b'[',
            b']',
        ];
        assert_eq!(&buf[..], expected);
        let err = encode_rows(&batch, &[Encoding::Text, Encoding::Jsonb], &mut BytesMut::new()).unwrap_err();
        assert_eq!((err.0, err.1), (0, 0));
        let mut big = ColumnValues::with_capacity(1);
        big.push_number(ValueTag::Integer, 1 << 40);
        let err =
            encode_rows(&Batch { rows: 1, columns: vec![big] }, &[Encoding::Int4], &mut BytesMut::new()).unwrap_err();
        assert!(err.2.contains("out of range"));
    }
}
