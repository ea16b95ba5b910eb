//! `migrate-to-postgres` asks the host for a query result far larger than any check needs: it
//! loads two rows of a 1 MiB text value into a table of its own, then queries them with the
//! value concatenated 24 times, so that PostgreSQL answers 2 rows of 24 MiB each (the server
//! builds them; the component sent 2 MiB). The host must refuse the result by its byte size
//! (error kind `limit`) instead of holding it. Fails with `huge-query: refused: <host message>`
//! when it was refused, else `huge-query: NOT refused: …`.

include!("../../shell.rs");

const VALUE_BYTES: usize = 1 << 20;
const COPIES: usize = 24;

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "huge_query", "v text")?;
    let writer = target
        .bulk_load("huge_query", &["v".to_string()])
        .map_err(|e| failure(format!("huge-query: bulk-load failed: {:?}: {}", e.kind, e.message)))?;
    let value = "q".repeat(VALUE_BYTES);
    for _ in 0..2 {
        BulkWriter::write(&writer, &Batch { rows: 1, columns: vec![text_column(&[&value])] })
            .map_err(|e| failure(format!("huge-query: write failed: {:?}: {}", e.kind, e.message)))?;
    }
    BulkWriter::finish(&writer)
        .map_err(|e| failure(format!("huge-query: finish failed: {:?}: {}", e.kind, e.message)))?;
    drop(value);
    let concatenated = vec!["v"; COPIES].join(" || ");
    match target.query(&format!("SELECT {concatenated} FROM huge_query")) {
        Err(e) if e.kind == ErrorKind::Limit => Err(failure(format!("huge-query: refused: {}", e.message))),
        Err(e) => Err(failure(format!("huge-query: failed otherwise: {:?}: {}", e.kind, e.message))),
        Ok(batch) => Err(failure(format!(
            "huge-query: NOT refused: {} rows, {} bytes",
            batch.rows,
            batch.columns.iter().map(|c| c.bytes.len()).sum::<usize>()
        ))),
    }
}
