//! SQL text helpers shared by the tests and the bench: identifier quoting and splitting a script
//! into statements, both the guest's own ([`blocklet_migrate_guest::sql`]): the tests read
//! `pg_dump` and `.schema` text the way the product reads its schema. An unterminated rest comes
//! back as a last statement, so a comparison built on it sees a truncated script.

pub use blocklet_migrate_guest::sql::quote_ident;

/// The statements of an SQL script, each as written with its `;`. Comments and psql
/// meta-commands (`\…`) between statements are left out; text after the last `;` comes last.
pub fn statements(script: &str) -> Vec<String> {
    blocklet_migrate_guest::sql::split_statements(script)
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
