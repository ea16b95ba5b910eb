//! `migrate-to-postgres` (and `-to-sqlite`) creates `users` and copies nothing, then reports
//! success with made-up counts: every table of the source "copied" with as many rows as the source
//! has. The host must not believe it: its own count of each source table and of each target table
//! before commit shows the rows are not there, so nothing commits, no lock file is written and no
//! file is swapped.

include!("../../shell.rs");

fn hostile(source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    let mut tables = Vec::new();
    for table in source.list_tables().map_err(|e| failure(format!("lying-report: {}", e.message)))? {
        let rows = source.count_rows(&table).map_err(|e| failure(format!("lying-report: {}", e.message)))?;
        tables.push(api::TableReport {
            table,
            source_rows: rows,
            target_rows: rows,
            rejected_rows: 0,
            checksum: "0".repeat(16),
        });
    }
    events::log(Level::Info, &format!("lying-report: claiming {} tables copied", tables.len()));
    Ok(api::DatabaseReport { tables, rejected_rows: 0 })
}
