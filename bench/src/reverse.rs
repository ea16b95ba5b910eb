//! PostgreSQL → SQLite: the baseline and the data dir our CLI writes into.
//!
//! The baseline (issue 6) is a bare rusqlite prepared-insert loop writing the same rows: the
//! source files' rows, already read into memory (not timed), written into new files with the
//! same tables, one transaction per file, no journal, no sync, indexes created after the rows.
//! Our CLI does all that plus reading the rows from PostgreSQL, converting them back to the
//! server's representation, verifying each table, `ANALYZE`, WAL mode and fsync.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use blocklet_migrate_test_support::quote_ident;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};

/// One source file's schema and rows, in memory.
pub struct SqliteFile {
    /// The file's path relative to the data dir (`core/server.db`, …).
    pub relative: PathBuf,
    /// `CREATE TABLE` statements, then the rest (`CREATE INDEX`, …), as `sqlite_master` has them.
    tables_sql: Vec<String>,
    indexes_sql: Vec<String>,
    tables: Vec<(String, usize, Vec<Value>)>,
    pub rows: u64,
}

/// Read every source file of `data_dir` into memory (not timed).
pub fn load_sources(data_dir: &Path) -> Result<Vec<SqliteFile>> {
    let mut out = Vec::new();
    for src in crate::schema::source_dbs(data_dir)? {
        let conn =
            Connection::open_with_flags(&src.file, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_context(|| format!("open {}", src.file.display()))?;
        conn.execute_batch("BEGIN")?;
        let objects: Vec<(String, String, String)> = {
            let mut st = conn.prepare(
                "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
            )?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?
        };
        let mut file = SqliteFile {
            relative: src.file.strip_prefix(data_dir).unwrap_or(&src.file).to_path_buf(),
            tables_sql: Vec::new(),
            indexes_sql: Vec::new(),
            tables: Vec::new(),
            rows: 0,
        };
        for (kind, name, sql) in objects {
            if kind != "table" {
                file.indexes_sql.push(sql);
                continue;
            }
            file.tables_sql.push(sql);
            let mut st = conn.prepare(&format!("SELECT * FROM {}", quote_ident(&name)))?;
            let columns = st.column_count();
            let mut values = Vec::new();
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                for i in 0..columns {
                    values.push(row.get::<_, Value>(i)?);
                }
                file.rows += 1;
            }
            drop(rows);
            file.tables.push((name, columns, values));
        }
        conn.execute_batch("COMMIT")?;
        out.push(file);
    }
    Ok(out)
}

/// The baseline: write every file into `dir` with prepared inserts. Returns the wall time.
pub fn insert_loop(files: &[SqliteFile], dir: &Path) -> Result<Duration> {
    let started = Instant::now();
    for file in files {
        let path = dir.join(&file.relative);
        fs::create_dir_all(path.parent().expect("a file in a directory"))?;
        let _ = fs::remove_file(&path);
        let conn = Connection::open(&path)?;
        conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN")?;
        for sql in &file.tables_sql {
            conn.execute_batch(sql)?;
        }
        for (table, columns, values) in &file.tables {
            if values.is_empty() {
                continue;
            }
            let marks = vec!["?"; *columns].join(", ");
            let mut st = conn.prepare(&format!("INSERT INTO {} VALUES ({marks})", quote_ident(table)))?;
            for row in values.chunks(*columns) {
                st.execute(rusqlite::params_from_iter(row.iter()))?;
            }
        }
        for sql in &file.indexes_sql {
            conn.execute_batch(sql)?;
        }
        conn.execute_batch("COMMIT")?;
        conn.close().map_err(|(_, e)| e)?;
    }
    Ok(started.elapsed())
}

/// A copy of `data_dir` without its database files, for our CLI to write into.
pub fn empty_data_dir(data_dir: &Path, to: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(to);
    copy_without_databases(data_dir, to)
}

fn copy_without_databases(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            copy_without_databases(&src, &dst)?;
        } else if !(name.ends_with(".db")
            || name.ends_with(".db-wal")
            || name.ends_with(".db-shm")
            || name.ends_with(".lock"))
        {
            fs::copy(&src, &dst).with_context(|| format!("copy {}", src.display()))?;
        }
    }
    Ok(())
}

/// Rows in every table of the SQLite files our CLI wrote, for checking the run.
pub fn count_rows(dir: &Path, files: &[SqliteFile]) -> Result<u64> {
    let mut total = 0;
    for file in files {
        let conn = Connection::open_with_flags(dir.join(&file.relative), OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        for (table, _, _) in &file.tables {
            let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {}", quote_ident(table)), [], |r| r.get(0))?;
            total += n as u64;
        }
    }
    Ok(total)
}
