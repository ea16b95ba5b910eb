//! `migrate-to-postgres` creates `users`, then runs a statement the SQL allowlist accepts and
//! PostgreSQL rejects (`SELECT 1/0`), ignores the error and reports success. The target's
//! transaction is aborted: PostgreSQL would answer the host's COMMIT with a ROLLBACK. The host
//! must notice, report the failure and commit nothing (no lock file).

include!("../../shell.rs");

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "users", USERS_COLUMNS)?;
    match target.query("SELECT 1/0") {
        Ok(_) => events::log(Level::Warn, "aborted-transaction: SELECT 1/0 succeeded?"),
        Err(e) => events::log(Level::Info, &format!("aborted-transaction: ignoring {:?}: {}", e.kind, e.message)),
    }
    Ok(api::DatabaseReport { tables: Vec::new(), rejected_rows: 0 })
}
