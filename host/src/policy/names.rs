//! The names a component may hand the host to quote into SQL (tables, columns, order-by
//! columns): bounded by PostgreSQL's own limits, so that a name no server could hold is refused
//! before it is quoted, copied into a statement or sent anywhere.

use crate::wit::{DbError, ErrorKind};

/// The longest identifier the host accepts in a name (table, column, order-by): PostgreSQL's
/// `NAMEDATALEN - 1`. A longer name could never name a PostgreSQL table (the server would cut
/// it).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The most columns one `read` or `bulk-load` may name: PostgreSQL's `MaxHeapAttributeNumber`.
pub const MAX_COLUMNS: usize = 1600;

/// Refuse a name the host would otherwise quote into SQL: empty, longer than
/// [`MAX_IDENTIFIER_BYTES`], or holding a NUL. The message never repeats a long name.
pub fn check_identifier(what: &str, name: &str) -> Result<(), DbError> {
    let bad = |why: String| Err(DbError::new(ErrorKind::InvalidInput, why));
    if name.is_empty() {
        return bad(format!("an empty {what}"));
    }
    if name.len() > MAX_IDENTIFIER_BYTES {
        return bad(format!("a {what} of {} bytes: the limit is {MAX_IDENTIFIER_BYTES} bytes", name.len()));
    }
    if name.contains('\0') {
        return bad(format!("a {what} holding a NUL character"));
    }
    Ok(())
}

/// Check the names of a `read` or `bulk-load`: the table, each column once (a column named
/// twice would make the server send or expect it twice), the order-by columns.
pub fn check_table_columns(table: &str, columns: &[String], order_by: &[String]) -> Result<(), DbError> {
    check_identifier("table name", table)?;
    for (what, names) in [("columns", columns), ("order-by columns", order_by)] {
        if names.len() > MAX_COLUMNS {
            return Err(DbError::new(
                ErrorKind::InvalidInput,
                format!("{table}: {} {what}: the limit is {MAX_COLUMNS}", names.len()),
            ));
        }
    }
    for name in columns.iter().chain(order_by) {
        check_identifier("column name", name)?;
    }
    let mut seen = std::collections::HashSet::with_capacity(columns.len());
    for name in columns {
        if !seen.insert(name.as_str()) {
            return Err(DbError::new(ErrorKind::InvalidInput, format!("{table}: column {name} is named twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_over_postgres_identifier_length_or_named_twice() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_table_columns("users", &names(&["did", "pk"]), &names(&["did"])).is_ok());
        let longest = "t".repeat(MAX_IDENTIFIER_BYTES);
        assert!(check_table_columns(&longest, std::slice::from_ref(&longest), std::slice::from_ref(&longest)).is_ok());
        let long = "t".repeat(MAX_IDENTIFIER_BYTES + 1);
        let huge = "t".repeat(50 << 20);
        for (table, columns, order_by, expected) in [
            (huge.as_str(), names(&["did"]), vec![], "a table name of 52428800 bytes: the limit is 63 bytes"),
            (long.as_str(), names(&["did"]), vec![], "a table name of 64 bytes"),
            ("users", vec![long.clone()], vec![], "a column name of 64 bytes"),
            ("users", names(&["did"]), vec![long.clone()], "a column name of 64 bytes"),
            ("users", names(&["did", "pk", "did"]), vec![], "users: column did is named twice"),
            ("users", vec![String::new()], vec![], "an empty column name"),
            ("users", names(&["a\0b"]), vec![], "a column name holding a NUL character"),
            ("users", vec!["c".to_string(); MAX_COLUMNS + 1], vec![], "users: 1601 columns: the limit is 1600"),
        ] {
            let e = check_table_columns(table, &columns, &order_by).unwrap_err();
            assert!(matches!(e.kind, ErrorKind::InvalidInput), "{:?}", e.kind);
            assert!(e.message.contains(expected), "{expected:?} in {:?}", e.message);
            assert!(e.message.len() < 100, "the message repeats the name: {} bytes", e.message.len());
        }
    }
}
