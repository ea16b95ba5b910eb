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
//! | how many statements one script may hold | [`check_script_length`] |
//!
//! The backends and the capability layer apply them; nothing here runs SQL.

pub mod postgres;
pub mod sqlite;

use crate::wit::{DbError, ErrorKind};

/// Statements one `execute-script` may hold (each is also capped in size by the PostgreSQL guard).
pub const MAX_SCRIPT_STATEMENTS: usize = 10_000;

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
}
