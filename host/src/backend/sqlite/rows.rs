//! Rows between SQLite and columnar batches, both ways: reading rows into batches bounded in
//! rows and bytes, and inserting a batch's rows with one prepared statement.

use crate::wit::{Batch, MAX_ROW_BYTES, ValueTag};
use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// Read rows into batches of at most `batch_rows` rows and `max_bytes` bytes, handing each
/// to `sink`; stops quietly when `sink` says the reader went away. A row over
/// [`MAX_ROW_BYTES`] fails the read (`SQLITE_TOOBIG`).
pub(super) fn read_batches(
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
        let row_starts_at = bytes;
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
        if bytes - row_starts_at > MAX_ROW_BYTES {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_TOOBIG),
                Some(format!("a row of more than {MAX_ROW_BYTES} bytes, the host's limit for one row")),
            ));
        }
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

pub(super) enum InsertError {
    Sqlite(rusqlite::Error),
    Value(String),
}

/// Insert every row of `rows` with one prepared statement. Text and blobs are bound without a
/// copy (`SQLITE_STATIC`: the batch outlives every step), through the raw handle: rusqlite
/// binds them `SQLITE_TRANSIENT`, and that copy of every value was 2.8% of a PostgreSQL →
/// SQLite run's CPU under perf.
pub(super) fn insert_rows(conn: &Connection, sql: &str, rows: &Batch) -> Result<u64, InsertError> {
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
