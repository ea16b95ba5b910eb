//! `migrate-to-postgres` reports rejected rows in a loop, each field 1 KiB of characters that
//! grow when escaped (control characters, quotes, backslashes). The host must keep the
//! rejects file bounded (a bounded excerpt per row, measured after escaping) and fail the job
//! once a job's maximum number of rejected rows is passed. If the loop ever completes the
//! component fails with `reject-flood: reported N rejected rows without being stopped`.

include!("../../shell.rs");

const ROWS: u64 = 10_000_000;
const FIELD_BYTES: usize = 1024;

fn hostile(_source: &Handle, _target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let field: String = "\u{1b}\"\\\u{7}".chars().cycle().take(FIELD_BYTES).collect();
    for _ in 0..ROWS {
        events::reject(&events::RejectedRow {
            database: field.clone(),
            table: field.clone(),
            primary_key: field.clone(),
            column: field.clone(),
            value_excerpt: field.clone(),
            reason: field.clone(),
        });
    }
    Err(api::Failure {
        kind: api::FailureKind::RejectedRows,
        message: format!("reject-flood: reported {ROWS} rejected rows without being stopped"),
        rejected_rows: ROWS,
    })
}
