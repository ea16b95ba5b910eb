//! The ceiling: the same rows, pre-encoded as PostgreSQL binary COPY in memory, sent by a bare
//! `COPY … FROM STDIN (FORMAT binary)` into fresh databases made from the same DDL, with keys,
//! indexes and foreign keys built after the data. Nothing is converted, checked or verified
//! while the clock runs.
//!
//! The encoder here is independent of the tool's: it reads SQLite with rusqlite and writes each
//! value for the column's PostgreSQL type.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use blocklet_migrate_test_support::quote_ident;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::schema::{Kind, PgColumn, PgType, Schemas, SourceDb};
use crate::wire::{PgWire, begin_frame, end_frame};

/// Encoded COPY data is kept in chunks of about this size.
const CHUNK: usize = 1 << 20;

/// Microseconds between 1970-01-01 and PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One table's rows, ready to send.
pub struct TableData {
    pub table: String,
    pub copy_sql: String,
    /// The COPY data, already framed as CopyData messages of about [`CHUNK`] bytes.
    pub chunks: Vec<Vec<u8>>,
    pub rows: u64,
    pub copy_bytes: u64,
}

/// One target database: its DDL and its tables' data.
pub struct DbData {
    pub source: SourceDb,
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub tables: Vec<TableData>,
}

impl DbData {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Everything the ceiling sends, and what it was made from.
pub struct Prepared {
    pub dbs: Vec<DbData>,
    /// Rows of every table of every database.
    pub rows: u64,
    /// Sum of the SQLite value sizes (text/blob bytes, 8 per integer or real, 0 per NULL).
    pub source_bytes: u64,
    pub tables: usize,
    /// Tables SQLite has that the PostgreSQL schema does not (not sent).
    pub skipped: Vec<String>,
    /// (database, table) → rows, to check a load against.
    pub expected: Vec<(String, String, u64)>,
}

impl Prepared {
    pub fn copy_bytes(&self) -> u64 {
        self.dbs.iter().flat_map(|d| d.tables.iter()).map(|t| t.copy_bytes).sum()
    }
}

/// Read every table of every database of `data_dir` and encode it.
pub fn prepare(data_dir: &Path, schemas: &Schemas) -> Result<Prepared> {
    let mut out =
        Prepared { dbs: Vec::new(), rows: 0, source_bytes: 0, tables: 0, skipped: Vec::new(), expected: Vec::new() };
    for src in crate::schema::source_dbs(data_dir)? {
        let schema = schemas.get(src.kind);
        let conn =
            Connection::open_with_flags(&src.file, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_context(|| format!("open {}", src.file.display()))?;
        // One snapshot for the whole file.
        conn.execute_batch("BEGIN")?;
        let names: Vec<String> = {
            let mut st = conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
            )?;
            st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
        };
        let mut tables = Vec::new();
        for name in names {
            let Some(pg_cols) = schema.tables.get(&name) else {
                out.skipped.push(format!("{}.{name}", src.pg_name));
                continue;
            };
            let t = encode_table(&conn, &src, &name, pg_cols, &mut out.source_bytes)?;
            out.rows += t.rows;
            out.tables += 1;
            out.expected.push((src.pg_name.clone(), name.clone(), t.rows));
            tables.push(t);
        }
        conn.execute_batch("COMMIT")?;
        out.dbs.push(DbData { pre: schema.ddl.pre.clone(), post: schema.ddl.post.clone(), source: src, tables });
    }
    Ok(out)
}

fn encode_table(
    conn: &Connection,
    src: &SourceDb,
    table: &str,
    pg_cols: &[PgColumn],
    source_bytes: &mut u64,
) -> Result<TableData> {
    let present: Vec<String> = {
        let mut st = conn.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?;
        st.query_map([table], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let cols: Vec<&PgColumn> = pg_cols.iter().filter(|c| present.iter().any(|p| p == &c.name)).collect();
    for p in &present {
        if !pg_cols.iter().any(|c| &c.name == p) {
            bail!("{}.{table}.{p}: SQLite column without a PostgreSQL column", src.pg_name);
        }
    }
    let list = cols.iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", ");
    let copy_sql = format!("COPY public.{} ({list}) FROM STDIN (FORMAT binary)", quote_ident(table));
    let mut chunks = Vec::new();
    let mut buf = Vec::with_capacity(CHUNK + 64 * 1024);
    begin_frame(&mut buf);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    let mut rows = 0u64;
    let mut copy_bytes = 0u64;
    let sql = format!("SELECT {list} FROM {}", quote_ident(table));
    let mut st = conn.prepare(&sql)?;
    let mut q = st.query([])?;
    while let Some(row) = q.next()? {
        buf.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (i, c) in cols.iter().enumerate() {
            let v = row.get_ref(i)?;
            *source_bytes += match v {
                ValueRef::Null => 0,
                ValueRef::Integer(_) | ValueRef::Real(_) => 8,
                ValueRef::Text(b) | ValueRef::Blob(b) => b.len() as u64,
            };
            encode_value(v, c.ty, &mut buf)
                .map_err(|why| anyhow!("{}.{table} row {} column {}: {why}", src.pg_name, rows + 1, c.name))?;
        }
        rows += 1;
        if buf.len() >= CHUNK {
            end_frame(&mut buf);
            copy_bytes += buf.len() as u64 - 5;
            let mut next = Vec::with_capacity(CHUNK + 64 * 1024);
            begin_frame(&mut next);
            chunks.push(std::mem::replace(&mut buf, next));
        }
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    end_frame(&mut buf);
    copy_bytes += buf.len() as u64 - 5;
    chunks.push(buf);
    Ok(TableData { table: table.to_string(), copy_sql, chunks, rows, copy_bytes })
}

fn put_len(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&(n as i32).to_be_bytes());
}

/// Write one value in PostgreSQL's binary format for `ty`.
pub fn encode_value(v: ValueRef<'_>, ty: PgType, buf: &mut Vec<u8>) -> Result<(), String> {
    let text = |b: &[u8]| -> Result<String, String> {
        std::str::from_utf8(b).map(str::to_string).map_err(|_| "invalid UTF-8".to_string())
    };
    match (v, ty) {
        (ValueRef::Null, _) => buf.extend_from_slice(&(-1i32).to_be_bytes()),
        (ValueRef::Text(b), PgType::Text) | (ValueRef::Blob(b), PgType::Text) => {
            put_len(buf, b.len());
            buf.extend_from_slice(b);
        }
        (ValueRef::Integer(n), PgType::Text) => {
            let s = n.to_string();
            put_len(buf, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        (ValueRef::Real(f), PgType::Text) => {
            let s = f.to_string();
            put_len(buf, s.len());
            buf.extend_from_slice(s.as_bytes());
        }
        (ValueRef::Text(b), PgType::Jsonb) => {
            put_len(buf, b.len() + 1);
            buf.push(1);
            buf.extend_from_slice(b);
        }
        (ValueRef::Text(b), PgType::Json) => {
            put_len(buf, b.len());
            buf.extend_from_slice(b);
        }
        (ValueRef::Integer(n), PgType::Jsonb | PgType::Json) => {
            let s = n.to_string();
            let jsonb = ty == PgType::Jsonb;
            put_len(buf, s.len() + jsonb as usize);
            if jsonb {
                buf.push(1);
            }
            buf.extend_from_slice(s.as_bytes());
        }
        (ValueRef::Integer(n), PgType::Bool) => {
            put_len(buf, 1);
            buf.push((n != 0) as u8);
        }
        (ValueRef::Text(b), PgType::Bool) => {
            let v = match b {
                b"1" | b"true" | b"t" | b"TRUE" => 1,
                b"0" | b"false" | b"f" | b"FALSE" => 0,
                _ => return Err(format!("{:?} is not a boolean", text(b)?)),
            };
            put_len(buf, 1);
            buf.push(v);
        }
        (ValueRef::Integer(n), PgType::Int2) => {
            let v = i16::try_from(n).map_err(|_| format!("{n} out of smallint range"))?;
            put_len(buf, 2);
            buf.extend_from_slice(&v.to_be_bytes());
        }
        (ValueRef::Integer(n), PgType::Int4) => {
            let v = i32::try_from(n).map_err(|_| format!("{n} out of integer range"))?;
            put_len(buf, 4);
            buf.extend_from_slice(&v.to_be_bytes());
        }
        (ValueRef::Integer(n), PgType::Int8) => {
            put_len(buf, 8);
            buf.extend_from_slice(&n.to_be_bytes());
        }
        (ValueRef::Text(b), PgType::Int2 | PgType::Int4 | PgType::Int8) => {
            let n: i64 =
                text(b)?.trim().parse().map_err(|_| format!("{:?} is not an integer", text(b).unwrap_or_default()))?;
            return encode_value(ValueRef::Integer(n), ty, buf);
        }
        (ValueRef::Real(f), PgType::Float8) => {
            put_len(buf, 8);
            buf.extend_from_slice(&f.to_be_bytes());
        }
        (ValueRef::Integer(n), PgType::Float8) => {
            put_len(buf, 8);
            buf.extend_from_slice(&(n as f64).to_be_bytes());
        }
        (ValueRef::Text(b), PgType::Timestamptz) => {
            let s = text(b)?;
            let micros = parse_timestamp(&s).ok_or_else(|| format!("{s:?} is not a timestamp"))?;
            put_len(buf, 8);
            buf.extend_from_slice(&(micros - PG_EPOCH_MICROS).to_be_bytes());
        }
        (ValueRef::Integer(n), PgType::Timestamptz) => {
            let micros = if (n as f64).abs() >= 1e11 { n * 1000 } else { n * 1_000_000 };
            put_len(buf, 8);
            buf.extend_from_slice(&(micros - PG_EPOCH_MICROS).to_be_bytes());
        }
        (ValueRef::Text(b), PgType::Uuid) => {
            let hex: Vec<u8> = b.iter().copied().filter(|c| *c != b'-').collect();
            if hex.len() != 32 {
                return Err(format!("{:?} is not a uuid", text(b)?));
            }
            put_len(buf, 16);
            for pair in hex.chunks(2) {
                let s = std::str::from_utf8(pair).map_err(|_| "bad uuid".to_string())?;
                buf.push(u8::from_str_radix(s, 16).map_err(|_| "bad uuid".to_string())?);
            }
        }
        (v, ty) => return Err(format!("a {:?} value for a {ty:?} column", v.data_type())),
    }
    Ok(())
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][ ][Z|±HH[:MM]]` → microseconds since 1970 (UTC).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: &[u8]| -> Option<i64> {
        if r.is_empty() || !r.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(r).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = blocklet_migrate_test_support::rng::days_from_civil(y, mo as u32, d as u32);
    let mut rest = &b[10..];
    let mut micros_of_day = 0i64;
    if rest.len() >= 6 && (rest[0] == b' ' || rest[0] == b'T') && rest[3] == b':' {
        let h = num(&rest[1..3])?;
        let mi = num(&rest[4..6])?;
        rest = &rest[6..];
        let mut sec = 0;
        let mut frac = 0i64;
        if rest.len() >= 3 && rest[0] == b':' {
            sec = num(&rest[1..3])?;
            rest = &rest[3..];
            if rest.first() == Some(&b'.') {
                let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                for i in 0..6 {
                    frac = frac * 10 + rest.get(1 + i).filter(|_| i < n).map_or(0, |c| (c - b'0') as i64);
                }
                rest = &rest[1 + n..];
            }
        }
        micros_of_day = ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac;
    }
    let z = if rest.first() == Some(&b' ') { &rest[1..] } else { rest };
    let offset_secs = match z {
        b"" | b"Z" | b"z" => 0,
        _ => {
            let sign = match z[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: Vec<u8> = z[1..].iter().copied().filter(|c| *c != b':').collect();
            let (hh, mm) = match digits.len() {
                2 => (num(&digits)?, 0),
                4 => (num(&digits[0..2])?, num(&digits[2..4])?),
                _ => return None,
            };
            sign * (hh * 3600 + mm * 60)
        }
    };
    Some(days * 86_400_000_000 + micros_of_day - offset_secs * 1_000_000)
}

/// Phase times of one ceiling load.
#[derive(Clone, Debug, Default)]
pub struct CeilingTimes {
    pub create_dbs: Duration,
    pub pre_ddl: Duration,
    pub copy: Duration,
    pub post_ddl: Duration,
    pub total: Duration,
}

/// How the ceiling loads: how many connections, and whether its index builds may use
/// PostgreSQL's parallel maintenance workers (the server's default) or not. Both are measured,
/// because which is faster depends on the cores and the data: on 2 cores shared with the
/// client, workers add CPU that the other connection's index builds needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CeilingPlan {
    pub jobs: usize,
    pub index_workers: bool,
}

impl std::fmt::Display for CeilingPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} connection{}", self.jobs, if self.jobs == 1 { "" } else { "s" })?;
        if !self.index_workers {
            write!(f, ", no parallel index workers")?;
        }
        Ok(())
    }
}

/// Run `work` items on `jobs` threads, each pulling the next item from a shared queue.
fn parallel<T: Send>(jobs: usize, items: Vec<T>, each: impl Fn(T) -> Result<()> + Sync) -> Result<()> {
    let queue = Mutex::new(VecDeque::from(items));
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let next = queue.lock().expect("queue").pop_front();
                        match next {
                            Some(item) => each(item)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow!("worker panicked"))?)
    })
}

/// Load everything with `jobs` connections: the databases are created, then get their pre-data
/// DDL, `jobs` at a time; then the tables (largest first) are COPYed by `jobs` workers, one
/// connection per (worker, database); then each database's keys, indexes and foreign keys are
/// built, `jobs` databases at a time (largest first), with or without parallel index workers.
/// `nodelay = false` leaves Nagle's algorithm on (as sqlx 0.9.0 does), to show its cost.
/// Database names are `prefix` + the tool's names.
pub fn load(port: u16, data: &Prepared, plan: CeilingPlan, prefix: &str, nodelay: bool) -> Result<CeilingTimes> {
    let jobs = plan.jobs.max(1);
    let start = Instant::now();
    let mut times = CeilingTimes::default();
    let names: Vec<String> = data.dbs.iter().map(|d| format!("{prefix}{}", d.source.pg_name)).collect();
    let all: Vec<usize> = (0..data.dbs.len()).collect();
    parallel(jobs, all.clone(), |d| {
        let mut admin = PgWire::connect(port, "postgres", nodelay)?;
        admin
            .execute(&format!("CREATE DATABASE {} WITH TEMPLATE template0 ENCODING 'UTF8'", quote_ident(&names[d])))?;
        admin.close();
        Ok(())
    })?;
    times.create_dbs = start.elapsed();

    let t = Instant::now();
    parallel(jobs, all, |d| {
        let mut c = PgWire::connect(port, &names[d], nodelay)?;
        c.execute(&data.dbs[d].pre.join("\n"))?;
        c.close();
        Ok(())
    })?;
    times.pre_ddl = t.elapsed();

    // COPY: (database index, table index), largest first.
    let t = Instant::now();
    let mut work: Vec<(usize, usize)> = data
        .dbs
        .iter()
        .enumerate()
        .flat_map(|(d, db)| (0..db.tables.len()).map(move |i| (d, i)))
        .filter(|(d, i)| data.dbs[*d].tables[*i].rows > 0)
        .collect();
    work.sort_by_key(|(d, i)| std::cmp::Reverse(data.dbs[*d].tables[*i].copy_bytes));
    // Group per worker thread: each thread keeps its connections to the databases it touched.
    let conns: Mutex<Vec<(std::thread::ThreadId, usize, PgWire)>> = Mutex::new(Vec::new());
    parallel(jobs, work, |(d, i)| {
        let me = std::thread::current().id();
        let taken = {
            let mut pool = conns.lock().expect("pool");
            pool.iter().position(|(id, db, _)| *id == me && *db == d).map(|p| pool.swap_remove(p).2)
        };
        let mut c = match taken {
            Some(c) => c,
            None => PgWire::connect(port, &names[d], nodelay)?,
        };
        let tbl = &data.dbs[d].tables[i];
        let n = c.copy_in(&tbl.copy_sql, &tbl.chunks).with_context(|| format!("{}.{}", names[d], tbl.table))?;
        if n != tbl.rows {
            bail!("{}.{}: COPY wrote {n} rows, expected {}", names[d], tbl.table, tbl.rows);
        }
        conns.lock().expect("pool").push((me, d, c));
        Ok(())
    })?;
    for (_, _, c) in conns.into_inner().expect("pool") {
        c.close();
    }
    times.copy = t.elapsed();

    // Post-data DDL per database, largest first.
    let t = Instant::now();
    let mut order: Vec<usize> = (0..data.dbs.len()).collect();
    order.sort_by_key(|d| std::cmp::Reverse(data.dbs[*d].rows()));
    parallel(jobs, order, |d| {
        let mut c = PgWire::connect(port, &names[d], nodelay)?;
        if !plan.index_workers {
            c.execute("SET max_parallel_maintenance_workers = 0")?;
        }
        c.execute(&data.dbs[d].post.join("\n"))?;
        c.close();
        Ok(())
    })?;
    times.post_ddl = t.elapsed();
    times.total = start.elapsed();
    Ok(times)
}

/// Which kinds hold rows worth reporting (for the summary).
pub fn rows_by_kind(p: &Prepared) -> Vec<(Kind, String, u64)> {
    p.dbs.iter().map(|d| (d.source.kind, d.source.pg_name.clone(), d.rows())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let base = parse_timestamp("2026-11-25 19:18:38.463 +00:00").unwrap();
        assert_eq!(parse_timestamp("2026-11-25T19:18:38.463Z"), Some(base));
        assert_eq!(parse_timestamp("2026-11-25T20:18:38.463+01:00"), Some(base));
        assert_eq!(parse_timestamp("2026-11-25 19:18:38.463"), Some(base));
        assert_eq!(parse_timestamp("2000-01-01 00:00:00.000 +00:00"), Some(PG_EPOCH_MICROS));
        assert_eq!(parse_timestamp("2026-11-25"), Some(base - (19 * 3600 + 18 * 60 + 38) * 1_000_000 - 463_000));
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn encodes() {
        let mut b = Vec::new();
        encode_value(ValueRef::Text(b"{}"), PgType::Jsonb, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 3, 1, b'{', b'}']);
        b.clear();
        encode_value(ValueRef::Integer(1), PgType::Bool, &mut b).unwrap();
        assert_eq!(b, [0, 0, 0, 1, 1]);
        b.clear();
        encode_value(ValueRef::Null, PgType::Int4, &mut b).unwrap();
        assert_eq!(b, [255, 255, 255, 255]);
        b.clear();
        encode_value(ValueRef::Text(b"bd5b7549-57fc-4ed4-893f-cbf74c264500"), PgType::Uuid, &mut b).unwrap();
        assert_eq!(&b[..6], &[0, 0, 0, 16, 0xbd, 0x5b]);
        assert!(encode_value(ValueRef::Real(1.5), PgType::Uuid, &mut b).is_err());
    }
}
