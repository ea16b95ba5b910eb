//! SQL text helpers shared by the tests and the bench: identifier quoting and splitting a script
//! into statements.
//!
//! The splitter is the guest's own ([`blocklet_migrate_guest::ddl::split_statements`]): the tests
//! read `pg_dump` and `.schema` text the way the product reads its schema. It drops what a
//! statement never ends with, so [`statements`] also returns any unterminated rest as a last
//! statement, and a comparison built on it sees a truncated script.

use blocklet_migrate_guest::ddl::split_statements;

/// Double-quotes an SQL identifier (same rule for PostgreSQL and SQLite).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements of an SQL script: a statement ends at a line ending in `;`. Comment lines
/// (`--`) and psql meta-commands (`\…`) between statements are left out; the lines of a statement
/// are joined with `\n`, as written. Text after the last `;` that is not a comment or a
/// meta-command comes last, as it is.
pub fn statements(script: &str) -> Vec<String> {
    let mut out = split_statements(script);
    let after_last: Vec<&str> = script.lines().rev().take_while(|l| !l.trim().ends_with(';')).collect();
    let rest: Vec<&str> = after_last
        .into_iter()
        .rev()
        .skip_while(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with("--") || t.starts_with('\\')
        })
        .collect();
    if !rest.is_empty() {
        out.push(rest.join("\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("SequelizeMeta"), "\"SequelizeMeta\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn splits_at_line_ends_and_keeps_an_unterminated_rest() {
        let script = "-- header\n\\restrict k\nSET a = 1;\nCREATE TABLE t (\n  id int\n);\n\n-- tail\nCREATE INDEX i\n  ON t (id)\n";
        assert_eq!(statements(script), ["SET a = 1;", "CREATE TABLE t (\n  id int\n);", "CREATE INDEX i\n  ON t (id)"]);
        assert_eq!(statements("SELECT 1;\n-- done\n\\unrestrict k\n"), ["SELECT 1;"]);
    }
}
