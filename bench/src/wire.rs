//! A minimal PostgreSQL frontend (protocol 3.0, trust authentication, simple queries, COPY
//! FROM STDIN) over a plain `std` TCP socket with `TCP_NODELAY`, so the ceiling pays for
//! nothing but the server's work and the bytes on the wire.
//!
//! (sqlx 0.9.0 does not set `TCP_NODELAY`: every COPY's `CopyDone` then waits for the server's
//! delayed ACK, ~40 ms. `nodelay = false` reproduces that here.)

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use anyhow::{Context, Result, bail};

pub struct PgWire {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 5);
    m.push(tag);
    m.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// The `M` (message) and `C` (SQLSTATE) fields of an ErrorResponse.
fn error_text(body: &[u8]) -> String {
    let mut msg = String::new();
    let mut code = String::new();
    for field in body.split(|b| *b == 0) {
        if let Some((&t, rest)) = field.split_first() {
            let s = String::from_utf8_lossy(rest).into_owned();
            match t {
                b'M' => msg = s,
                b'C' => code = s,
                _ => {}
            }
        }
    }
    format!("{msg} (SQLSTATE {code})")
}

impl PgWire {
    /// Connect to 127.0.0.1:`port` as `postgres` (trust authentication) to `database`.
    pub fn connect(port: u16, database: &str, nodelay: bool) -> Result<PgWire> {
        let stream = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(nodelay)?;
        let mut c = PgWire { reader: BufReader::with_capacity(64 * 1024, stream.try_clone()?), writer: stream };
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in [("user", "postgres"), ("database", database)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = Vec::with_capacity(body.len() + 4);
        startup.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        startup.extend_from_slice(&body);
        c.writer.write_all(&startup)?;
        loop {
            let (tag, body) = c.read_message()?;
            match tag {
                b'R' => {
                    let code = i32::from_be_bytes(body[..4].try_into()?);
                    if code != 0 {
                        bail!("server asks for authentication method {code}; only trust is supported");
                    }
                }
                b'E' => bail!("connect to {database}: {}", error_text(&body)),
                b'Z' => return Ok(c),
                _ => {}
            }
        }
    }

    fn read_message(&mut self) -> Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.reader.read_exact(&mut head)?;
        let len = i32::from_be_bytes(head[1..5].try_into()?) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        self.reader.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Read until ReadyForQuery; the first error, if any, is returned after it.
    fn finish_query(&mut self, what: &str) -> Result<Vec<String>> {
        let mut err = None;
        let mut tags = Vec::new();
        loop {
            let (tag, body) = self.read_message()?;
            match tag {
                b'E' => err = err.or(Some(error_text(&body))),
                b'C' => tags.push(String::from_utf8_lossy(body.strip_suffix(&[0]).unwrap_or(&body)).into_owned()),
                b'Z' => break,
                _ => {}
            }
        }
        match err {
            Some(e) => bail!("{what}: {e}"),
            None => Ok(tags),
        }
    }

    fn query_message(sql: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(sql.len() + 1);
        body.extend_from_slice(sql.as_bytes());
        body.push(0);
        message(b'Q', &body)
    }

    /// Run one or more statements (simple query protocol).
    pub fn execute(&mut self, sql: &str) -> Result<()> {
        self.writer.write_all(&Self::query_message(sql))?;
        let first = sql.lines().next().unwrap_or_default();
        self.finish_query(&first.chars().take(100).collect::<String>())?;
        Ok(())
    }

    /// `COPY … FROM STDIN` sending `frames`, which must already be CopyData messages.
    /// Returns the row count the server reports.
    pub fn copy_in(&mut self, copy_sql: &str, frames: &[Vec<u8>]) -> Result<u64> {
        self.writer.write_all(&Self::query_message(copy_sql))?;
        loop {
            let (tag, body) = self.read_message()?;
            match tag {
                b'G' => break,
                b'E' => {
                    let e = error_text(&body);
                    self.finish_query(copy_sql)?;
                    bail!("{copy_sql}: {e}");
                }
                _ => {}
            }
        }
        for f in frames {
            self.writer.write_all(f)?;
        }
        self.writer.write_all(&message(b'c', &[]))?;
        let tags = self.finish_query(copy_sql)?;
        let rows = tags
            .iter()
            .find_map(|t| t.strip_prefix("COPY "))
            .and_then(|n| n.trim().parse().ok())
            .context("no COPY row count")?;
        Ok(rows)
    }

    pub fn close(mut self) {
        let _ = self.writer.write_all(&message(b'X', &[]));
    }
}

/// Start a CopyData frame in `buf`: tag and a length placeholder.
pub fn begin_frame(buf: &mut Vec<u8>) {
    buf.push(b'd');
    buf.extend_from_slice(&[0; 4]);
}

/// Fill in the length of the CopyData frame that starts at `buf[0]`.
pub fn end_frame(buf: &mut [u8]) {
    let len = (buf.len() - 1) as i32;
    buf[1..5].copy_from_slice(&len.to_be_bytes());
}
