//! What a component may do to a SQLite target: create tables and indexes, insert rows,
//! maintain `sqlite_sequence`, analyze and read. No ATTACH, PRAGMA, VACUUM, triggers, views,
//! deletes or drops: nothing that reaches another file or outlives the build.
//!
//! Two checks, because the first is cheap and the second is exact: the statement's leading
//! keyword, then SQLite's own authorizer on every action the prepared statement takes.

use super::first_keyword;
use crate::wit::{DbError, ErrorKind};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Functions a statement on a SQLite target may call.
const FUNCTIONS: [&str; 14] = [
    "max",
    "min",
    "count",
    "coalesce",
    "ifnull",
    "json_extract",
    "lower",
    "upper",
    "length",
    "abs",
    "typeof",
    "sum",
    "total",
    "avg",
];

/// The statement kinds a SQLite target accepts from `execute`.
pub fn check_statement(sql: &str) -> Result<(), DbError> {
    const ALLOWED: [&str; 6] = ["CREATE", "INSERT", "UPDATE", "ANALYZE", "SELECT", "WITH"];
    let keyword = first_keyword(sql);
    if ALLOWED.contains(&keyword.as_str()) {
        Ok(())
    } else {
        Err(DbError::new(ErrorKind::Denied, format!("refused a {keyword} statement on a SQLite target")))
    }
}

/// A `query` on a SQLite database: a SELECT (or WITH … SELECT) only.
pub fn check_query(sql: &str) -> Result<(), DbError> {
    if matches!(first_keyword(sql).as_str(), "SELECT" | "WITH") {
        Ok(())
    } else {
        Err(DbError::new(ErrorKind::Denied, "only SELECT queries are allowed"))
    }
}

/// SQLite's own check of every statement a component prepares.
pub fn authorize(ctx: AuthContext<'_>) -> Authorization {
    use AuthAction as A;
    let ok = match ctx.action {
        // AUTOINCREMENT creates sqlite_sequence; schema changes write sqlite_master.
        // ANALYZE keeps its statistics in sqlite_stat1, replacing old rows.
        A::CreateTable { table_name } => {
            !table_name.starts_with("sqlite_") || matches!(table_name, "sqlite_sequence" | "sqlite_stat1")
        }
        A::Delete { table_name } => table_name == "sqlite_stat1",
        A::CreateIndex { table_name, .. } => !table_name.starts_with("sqlite_"),
        // CREATE INDEX fills the new index (a "reindex" to the authorizer).
        A::Insert { .. } | A::Read { .. } | A::Select | A::Analyze { .. } | A::Reindex { .. } => true,
        A::Update { table_name, .. } => matches!(table_name, "sqlite_sequence" | "sqlite_master" | "sqlite_stat1"),
        A::Function { function_name } => {
            FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str())
                || function_name.starts_with("sqlite_stat_")
        }
        _ => false,
    };
    if ok { Authorization::Allow } else { Authorization::Deny }
}
