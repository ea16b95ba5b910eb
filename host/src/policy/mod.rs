//! Every rule about the SQL a component may run, in one place.
//!
//! A component never gets a connection: it asks the host to run statements on the handles of
//! its job, and each statement passes the rules here first. The rules are pure functions of
//! the statement text (and of the job's settings), so they can be read and tested without a
//! database:
//!
//! | rule | where |
//! |---|---|
//! | the PostgreSQL allowlist (statement kinds, functions, names, one statement per call) | [`postgres`] |
//! | the SQLite target's statement allowlist and authorizer | [`sqlite`] |
//! | DROP only with `--force` | [`check_drop`] |
//! | how many statements one script may hold, and how many bytes | [`check_script_length`], [`check_script_size`] |
//! | the size of one statement, whatever the engine | [`check_statement_size`] |
//! | the table and column names of a read or bulk load | [`names`] |
//! | how many objects a job may create in one database | [`check_created_objects`] |
//!
//! The backends and the capability layer apply them; nothing here runs SQL.

pub mod names;
pub mod postgres;
pub mod sqlite;

use crate::wit::{DbError, ErrorKind};

/// Statements one `execute-script` may hold (each is also capped in size by the PostgreSQL guard).
pub const MAX_SCRIPT_STATEMENTS: usize = 10_000;

/// Bytes one `execute-script` may hold in all: the host joins its statements into one string.
/// Blocklet's largest schema script is ~100 KB.
pub const MAX_SCRIPT_BYTES: usize = 16 << 20;

/// Tables, indexes, sequences and types a job may create in one database: over three times the
/// largest Blocklet schema (146 in an app database), and far below what fills PostgreSQL's lock
/// table (`max_locks_per_transaction` × `max_connections`, 6 400 by default), which every other
/// database of the server shares: a table created in the job's transaction holds about three
/// locks (itself, its TOAST table and index) until the job ends.
pub const MAX_CREATED_OBJECTS: usize = 500;

/// Count the objects `statements` create in a database where `created` were created already,
/// refusing all of them if that would pass [`MAX_CREATED_OBJECTS`]. Every `CREATE` counts (the
/// allowlists accept only tables, indexes, sequences and types), failed ones included.
pub fn check_created_objects<'a>(
    created: &mut usize,
    statements: impl Iterator<Item = &'a str>,
) -> Result<(), DbError> {
    let new = statements.filter(|s| first_keyword(s) == "CREATE").count();
    if *created + new > MAX_CREATED_OBJECTS {
        return Err(DbError::new(
            ErrorKind::Limit,
            format!(
                "refused: {} objects (tables, indexes, sequences, types) in one database, after {created}: the limit is {MAX_CREATED_OBJECTS}, to keep the database server's lock table free for its other databases",
                *created + new
            ),
        ));
    }
    *created += new;
    Ok(())
}

/// The first keyword of a statement, upper-cased, after whitespace and comments.
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            break;
        }
    }
    rest.chars().take_while(|c| c.is_ascii_alphabetic()).collect::<String>().to_ascii_uppercase()
}

/// Refuse a DROP unless the job was started with `--force`: the host enforces it, not the
/// component, whatever the engine.
pub fn check_drop<'a>(mut statements: impl Iterator<Item = &'a str>, allow_drop: bool) -> Result<(), DbError> {
    if !allow_drop && statements.any(|s| first_keyword(s) == "DROP") {
        return Err(DbError::new(ErrorKind::Denied, "DROP is only allowed when the job was started with --force"));
    }
    Ok(())
}

/// Refuse a script of more than [`MAX_SCRIPT_STATEMENTS`] statements.
pub fn check_script_length(statements: usize) -> Result<(), DbError> {
    if statements > MAX_SCRIPT_STATEMENTS {
        return Err(DbError::new(
            ErrorKind::Limit,
            format!("a script of {statements} statements: the limit is {MAX_SCRIPT_STATEMENTS}"),
        ));
    }
    Ok(())
}

/// Refuse a script over [`MAX_SCRIPT_BYTES`] in all, or holding a statement over
/// [`check_statement_size`]'s cap.
pub fn check_script_size(statements: &[String]) -> Result<(), DbError> {
    let bytes: usize = statements.iter().map(String::len).sum();
    if bytes > MAX_SCRIPT_BYTES {
        return Err(DbError::new(
            ErrorKind::Limit,
            format!("a script of {bytes} bytes: the limit is {MAX_SCRIPT_BYTES}"),
        ));
    }
    statements.iter().try_for_each(|s| check_statement_size(s))
}

/// Refuse a statement over the PostgreSQL guard's size cap before anything copies or parses
/// it: SQLite targets get the same bound.
pub fn check_statement_size(statement: &str) -> Result<(), DbError> {
    let max = postgres::MAX_STATEMENT_BYTES;
    if statement.len() > max {
        return Err(DbError::new(
            ErrorKind::Limit,
            format!("refused a statement of {} bytes: the limit is {max}", statement.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_needs_force_whatever_comes_before_the_keyword() {
        assert_eq!(first_keyword("  -- c\n/* x */ drop table t"), "DROP");
        assert!(check_drop(["CREATE TABLE t (a int)"].into_iter(), false).is_ok());
        let refused = check_drop(["CREATE TABLE t (a int)", "/* */ DROP TABLE t"].into_iter(), false);
        assert_eq!(refused.unwrap_err().kind, ErrorKind::Denied);
        assert!(check_drop(["DROP TABLE t"].into_iter(), true).is_ok());
        assert!(check_script_length(MAX_SCRIPT_STATEMENTS).is_ok());
        assert_eq!(check_script_length(MAX_SCRIPT_STATEMENTS + 1).unwrap_err().kind, ErrorKind::Limit);
    }

    #[test]
    fn statements_and_scripts_are_capped_in_bytes() {
        let max = postgres::MAX_STATEMENT_BYTES;
        assert!(check_statement_size(&"x".repeat(max)).is_ok());
        let e = check_statement_size(&"x".repeat(max + 1)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Limit);
        assert!(e.message.contains(&format!("refused a statement of {} bytes", max + 1)), "{}", e.message);
        let many = vec!["x".repeat(max); MAX_SCRIPT_BYTES / max];
        assert!(check_script_size(&many).is_ok());
        let too_many = vec!["x".repeat(max); MAX_SCRIPT_BYTES / max + 1];
        assert!(check_script_size(&too_many).unwrap_err().message.starts_with("a script of"));
        let one_too_big = vec!["x".to_string(), "x".repeat(max + 1)];
        assert!(check_script_size(&one_too_big).unwrap_err().message.starts_with("refused a statement"));
    }

    #[test]
    fn created_objects_are_counted_per_database_up_to_the_limit() {
        let mut created = 0;
        let script = ["CREATE TABLE t (a int)", "ALTER TABLE t ADD b int", "create index i on t (a)"];
        check_created_objects(&mut created, script.into_iter()).unwrap();
        assert_eq!(created, 2);
        let many: Vec<String> = (0..MAX_CREATED_OBJECTS - 2).map(|i| format!("CREATE TABLE t{i} (a int)")).collect();
        check_created_objects(&mut created, many.iter().map(String::as_str)).unwrap();
        let refused = check_created_objects(&mut created, ["CREATE TYPE e AS ENUM ('a')"].into_iter()).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Limit);
        assert!(refused.message.contains("the limit is 500"), "{}", refused.message);
        assert_eq!(created, MAX_CREATED_OBJECTS, "a refused statement counts nothing");
    }
}
