//! `migrate-to-postgres` loads one row of a 24 MiB text value into a table of its own, then
//! opens a `read` of that table naming the column 12 times, which would make PostgreSQL send
//! a 288 MiB row. The host must refuse the read before running it (a column named twice is
//! invalid input), and then still deliver the same row read once (24 MiB is within its
//! single-row limit). Fails with `wide-read: duplicate refused: <host message>; single read: 1
//! row of N bytes` when both happened, else `wide-read: problems: …`.

include!("../../shell.rs");

const VALUE_BYTES: usize = 24 << 20;
const TIMES: usize = 12;

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "wide_read", "v text")?;
    let column = || vec!["v".to_string()];
    let writer = target
        .bulk_load("wide_read", &column())
        .map_err(|e| failure(format!("wide-read: bulk-load failed: {:?}: {}", e.kind, e.message)))?;
    {
        let mut values =
            ColumnValues { tags: vec![ValueTag::Text], numbers: vec![0], bytes: Vec::new(), ends: Vec::new() };
        values.bytes.resize(VALUE_BYTES, b'w');
        values.ends.push(VALUE_BYTES as u32);
        BulkWriter::write(&writer, &Batch { rows: 1, columns: vec![values] })
            .map_err(|e| failure(format!("wide-read: write failed: {:?}: {}", e.kind, e.message)))?;
    }
    BulkWriter::finish(&writer)
        .map_err(|e| failure(format!("wide-read: finish failed: {:?}: {}", e.kind, e.message)))?;

    let duplicate = match target.read("wide_read", &vec!["v".to_string(); TIMES], &[], 1) {
        Err(e) if e.kind == ErrorKind::InvalidInput => Ok(e.message),
        Err(e) => Err(format!("the {TIMES}-fold read failed otherwise: {:?}: {}", e.kind, e.message)),
        Ok(cursor) => Err(match cursor.next_batch() {
            Ok(Some(b)) => format!("the {TIMES}-fold read was NOT refused: {} rows", b.rows),
            Ok(None) => format!("the {TIMES}-fold read was NOT refused (no rows)"),
            Err(e) => format!("the {TIMES}-fold read was opened, then failed: {:?}: {}", e.kind, e.message),
        }),
    };
    let single = match target.read("wide_read", &column(), &[], 1) {
        Err(e) => Err(format!("the single read failed: {:?}: {}", e.kind, e.message)),
        Ok(cursor) => match cursor.next_batch() {
            Ok(Some(b)) => Ok(format!("{} row of {} bytes", b.rows, b.columns[0].bytes.len())),
            Ok(None) => Err("the single read returned no row".to_string()),
            Err(e) => Err(format!("the single read failed: {:?}: {}", e.kind, e.message)),
        },
    };
    match (duplicate, single) {
        (Ok(refused), Ok(read)) => {
            Err(failure(format!("wide-read: duplicate refused: {refused}; single read: {read}")))
        }
        (a, b) => Err(failure(format!(
            "wide-read: problems: {}",
            [a.err(), b.err()].into_iter().flatten().collect::<Vec<_>>().join(" | ")
        ))),
    }
}
