//! PostgreSQL's binary format, by hand: binary COPY tuples encoded from batches for bulk loads
//! (the generic writers are 30–50 % slower) and decoded into batches for reads, and single
//! values of query results decoded the same way.

use super::catalog::PgColumn;
use crate::backend::{BulkWriter, quote};
use crate::wit::{Batch, ColumnValues, DbError, ErrorKind, MAX_ROW_BYTES, ValueTag};
use bytes::{BufMut, Bytes, BytesMut};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Row, TypeInfo, ValueRef};
use tokio::sync::{mpsc, oneshot};

/// Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// How a target column's values are written in binary COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Encoding {
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

/// `COPY (SELECT …) TO STDOUT (FORMAT binary)` of `columns` of `table`, and how to decode each
/// column. Enums and types without a binary decoder come as their text form.
pub(super) fn copy_out_statement(table: &str, columns: &[PgColumn], order_by: &[String]) -> (String, Vec<Encoding>) {
    let (select, decoders): (Vec<String>, Vec<Encoding>) = columns
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
    (sql, decoders)
}

/// Batches queued between the component and the COPY: a host-side byte cap.
pub(super) const COPY_QUEUE_CHUNKS: usize = 4;

/// What a bulk writer sends to the COPY running on its connection.
pub(super) enum CopyChunk {
    Data(Bytes),
    Finish,
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
    /// A load of `columns` of `target` (`database.table`, for messages) whose data goes to a
    /// COPY on `data` and whose outcome comes on `reply`.
    pub(super) fn new(
        target: String,
        columns: Vec<PgColumn>,
        data: mpsc::Sender<CopyChunk>,
        reply: oneshot::Receiver<Result<u64, DbError>>,
    ) -> Result<PgWriter, DbError> {
        let encoders = columns
            .iter()
            .map(|c| {
                encoder_for(&c.type_name, c.is_enum).ok_or_else(|| {
                    DbError::new(
                        ErrorKind::InvalidInput,
                        format!("{target}.{}: cannot bulk-load type {}", c.name, c.declared),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut header = BytesMut::with_capacity(19);
        header.put_slice(COPY_SIGNATURE);
        header.put_i32(0);
        header.put_i32(0);
        Ok(PgWriter {
            target,
            columns,
            encoders,
            pending_header: Some(header.freeze()),
            data: Some(data),
            reply: Some(reply),
        })
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
}

impl BulkWriter for PgWriter {
    async fn write(&mut self, batch: Batch) -> Result<(), DbError> {
        batch.validate(self.encoders.len())?;
        batch.check_write_size(&self.target)?;
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

    async fn finish(&mut self) -> Result<u64, DbError> {
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

    /// A COPY holds the connection until it finishes.
    fn holds_connection(&self) -> bool {
        true
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

/// The bytes `row` of a query result takes once decoded into a batch (see
/// [`Batch::payload_bytes`]): what the host's cap on a query result counts.
pub(super) fn query_row_bytes(row: &PgRow) -> usize {
    (0..row.len()).map(|i| row.try_get_raw(i).ok().and_then(|v| v.as_bytes().ok()).map_or(0, <[u8]>::len) + 13).sum()
}

pub(super) fn decode_rows(rows: &[PgRow], columns: usize, batch: &mut Batch) -> Result<(), DbError> {
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
pub(super) struct CopyOutDecoder {
    decoders: Vec<Encoding>,
    pending: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
}

/// `PGCOPY\n\377\r\n\0`, then flags (u32) and the header extension length (u32).
const COPY_SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

impl CopyOutDecoder {
    pub(super) fn new(decoders: Vec<Encoding>) -> Self {
        CopyOutDecoder { decoders, pending: Vec::new(), header_done: false, trailer_seen: false }
    }

    /// Append every complete tuple of `chunk` (with what is pending) to `batch`.
    pub(super) fn feed(&mut self, chunk: &[u8], batch: &mut Batch) -> Result<(), DbError> {
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

    /// Parse what is complete in `data`; returns the bytes used. A row over [`MAX_ROW_BYTES`]
    /// is refused as soon as its field lengths say so, before the rest of it is buffered.
    fn parse(&mut self, data: &[u8], batch: &mut Batch) -> Result<usize, DbError> {
        let bad = |m: String| DbError::new(ErrorKind::Other, m);
        let mut at = 0;
        if !self.header_done {
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != COPY_SIGNATURE {
                return Err(bad("not binary COPY data (bad signature)".into()));
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
                return Err(bad("data after the COPY trailer".into()));
            }
            let fields = i16::from_be_bytes([data[at], data[at + 1]]);
            if fields == -1 {
                self.trailer_seen = true;
                at += 2;
                continue;
            }
            if fields as usize != self.decoders.len() {
                return Err(bad(format!("a row has {fields} fields, expected {}", self.decoders.len())));
            }
            // Find the tuple's end first, so that a split tuple is not half-appended.
            let mut end = at + 2;
            for _ in 0..fields {
                let Some(len) = data.get(end..end + 4) else { return Ok(at) };
                let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
                end += 4 + len.max(0) as usize;
                if end - at > MAX_ROW_BYTES {
                    return Err(DbError::new(
                        ErrorKind::Limit,
                        format!("a row of more than {MAX_ROW_BYTES} bytes, the host's limit for one row"),
                    ));
                }
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
                decode_binary(value, *enc, col).map_err(|e| bad(format!("column {}: {e}", c + 1)))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = decoder.feed(&stream, &mut Batch::empty(2, 3)).unwrap_err().message;
        assert!(err.contains("5 fields, expected 2"), "{err}");
    }

    /// A row over the host's limit is refused from its field lengths, before its data is
    /// buffered: the first field's length alone can say so.
    #[test]
    fn copy_out_decoder_refuses_a_row_over_the_row_cap_from_its_lengths() {
        let mut stream = BytesMut::new();
        stream.put_slice(COPY_SIGNATURE);
        stream.put_u32(0);
        stream.put_u32(0);
        stream.put_i16(2);
        stream.put_i32((MAX_ROW_BYTES / 2) as i32);
        stream.put_slice(&[b'x'; 1024]);
        let mut decoder = CopyOutDecoder::new(vec![Encoding::Text, Encoding::Text]);
        let mut batch = Batch::empty(2, 1);
        decoder.feed(&stream, &mut batch).expect("half the cap in one field is fine so far");
        let mut rest = BytesMut::new();
        rest.put_slice(&vec![b'x'; MAX_ROW_BYTES / 2 - 1024]);
        rest.put_i32((MAX_ROW_BYTES / 2) as i32);
        let e = decoder.feed(&rest, &mut batch).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Limit), "{:?}", e.kind);
        assert!(e.message.contains(&format!("a row of more than {MAX_ROW_BYTES} bytes")), "{}", e.message);
        assert_eq!(batch.rows, 0);
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
