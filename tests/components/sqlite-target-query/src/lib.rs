//! `migrate-to-sqlite` sends through `query` on its SQLite target what SQLite's authorizer refuses
//! through `execute`: functions off the allowlist (`sqlite_version`, `randomblob`,
//! `load_extension`), the `pragma_database_list` table (it names every attached file), and an
//! `ATTACH`. A statement counts as refused only when the error kind is `denied`. Fails with
//! `sqlite-target-query: all 5 refused`, else `sqlite-target-query: NOT refused: <sql> (…) | …`.

include!("../../shell.rs");

const STATEMENTS: [&str; 5] = [
    "SELECT sqlite_version()",
    "SELECT hex(randomblob(8))",
    "SELECT name, file FROM pragma_database_list",
    "SELECT load_extension('/tmp/blocklet-migrate-no-such-extension')",
    "ATTACH DATABASE '/tmp/blocklet-migrate-attached.db' AS elsewhere",
];

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    create_table(target, "t", "id INTEGER PRIMARY KEY")?;
    let mut not_refused = Vec::new();
    for sql in STATEMENTS {
        match target.query(sql) {
            Err(e) if e.kind == ErrorKind::Denied => {
                events::log(Level::Info, &format!("sqlite-target-query: {sql}: refused: {}", e.message))
            }
            Err(e) => not_refused.push(format!("{sql} ({:?}: {})", e.kind, e.message)),
            Ok(batch) => not_refused.push(format!("{sql} (answered {} rows)", batch.rows)),
        }
    }
    if not_refused.is_empty() {
        Err(failure(format!("sqlite-target-query: all {} refused", STATEMENTS.len())))
    } else {
        Err(failure(format!("sqlite-target-query: NOT refused: {}", not_refused.join(" | "))))
    }
}
