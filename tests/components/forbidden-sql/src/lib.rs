//! `migrate-to-postgres` asks the target to run statements no schema migration needs. Each must
//! be refused by the host itself (error kind `denied`) before it reaches PostgreSQL. Fails with
//! `forbidden-sql: all N refused` when every one was, else
//! `forbidden-sql: NOT refused: <statement> (<what happened>) | …`.

include!("../../shell.rs");

/// (how it is sent, statement)
const FORBIDDEN: &[(&str, &str)] = &[
    ("execute", "COPY (SELECT 1) TO PROGRAM 'id'"),
    ("execute", "COPY (SELECT '') TO '/tmp/blocklet-migrate-forbidden-sql'"),
    ("execute", "ALTER SYSTEM SET archive_command = 'id'"),
    ("execute", "CREATE EXTENSION dblink"),
    ("execute", "DROP DATABASE postgres"),
    ("execute", "SET ROLE postgres"),
    ("execute", "SELECT pg_read_file('/etc/passwd')"),
    ("query", "SELECT pg_read_file('/etc/passwd')"),
    ("query", "SELECT setval('public.x', 1)"),
    ("execute", "CREATE TABLE x(a int); DROP TABLE y"),
    ("execute", "GRANT pg_read_server_files TO CURRENT_USER"),
    ("execute", "DO $$ BEGIN PERFORM pg_sleep(0); END $$"),
    // A script is checked whole before any of it runs (statements separated by U+0001 here).
    ("script", "CREATE TABLE forbidden_sql_probe (a int)\u{1}ALTER SYSTEM SET archive_command = 'id'"),
    ("script", "CREATE TABLE forbidden_sql_probe (a int)\u{1}DROP DATABASE postgres"),
];

fn hostile(_source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure> {
    let mut not_refused: Vec<String> = Vec::new();
    for (how, sql) in FORBIDDEN {
        let result = match *how {
            "execute" => target.execute(sql).map(|n| format!("accepted, {n} rows")),
            "script" => {
                let statements: Vec<String> = sql.split('\u{1}').map(str::to_string).collect();
                target.execute_script(&statements).map(|()| "accepted".to_string())
            }
            _ => target.query(sql).map(|b| format!("accepted, {} rows", b.rows)),
        };
        // A refused script must not have run in part.
        if *how == "script" && target.list_tables().is_ok_and(|t| t.iter().any(|t| t == "forbidden_sql_probe")) {
            not_refused.push(format!("{how} {sql} (its first statement ran)"));
            continue;
        }
        match result {
            Err(e) if e.kind == ErrorKind::Denied => {
                events::log(Level::Info, &format!("forbidden-sql: {how} {sql}: refused: {}", e.message))
            }
            Err(e) => not_refused.push(format!(
                "{how} {sql} (reached the database: {:?}: {})",
                e.kind,
                e.message.lines().next().unwrap_or("")
            )),
            Ok(what) => not_refused.push(format!("{how} {sql} ({what})")),
        }
    }
    if not_refused.is_empty() {
        Err(failure(format!("forbidden-sql: all {} refused", FORBIDDEN.len())))
    } else {
        Err(failure(format!("forbidden-sql: NOT refused: {}", not_refused.join(" | "))))
    }
}
