//! Reads the `.schema` a real 1.17.12 server leaves in its SQLite files into statements and
//! column facts, for writing those files back from PostgreSQL.

use crate::sql::{split_statements, split_top_level, unquote};

/// A table of a SQLite schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteTable {
    pub name: String,
    /// Column names and declared types, in order.
    pub columns: Vec<(String, String)>,
    /// `INTEGER PRIMARY KEY AUTOINCREMENT` column, which `sqlite_sequence` tracks.
    pub autoincrement: Option<String>,
    pub create_sql: String,
}

/// A parsed SQLite schema: tables first, then indexes (built after the data).
#[derive(Clone, Debug, Default)]
pub struct SqliteSchema {
    pub tables: Vec<SqliteTable>,
    pub indexes: Vec<String>,
    /// Whether the server's file carries `sqlite_stat1` (it runs `PRAGMA optimize`), so the
    /// written file should too.
    pub has_stat1: bool,
}

impl SqliteSchema {
    pub fn parse(schema: &str) -> Result<SqliteSchema, String> {
        let mut out = SqliteSchema::default();
        for sql in split_statements(schema) {
            let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Some(rest) = flat.strip_prefix("CREATE TABLE ") {
                let name = unquote(rest.split(['(', ' ']).next().unwrap_or(""));
                if name.starts_with("sqlite_") {
                    // Created by SQLite itself: sqlite_sequence by AUTOINCREMENT, sqlite_stat1 by ANALYZE.
                    out.has_stat1 |= name == "sqlite_stat1";
                    continue;
                }
                out.tables.push(parse_table(&name, &flat, sql)?);
            } else if flat.starts_with("CREATE INDEX ") || flat.starts_with("CREATE UNIQUE INDEX ") {
                out.indexes.push(sql);
            } else {
                return Err(format!("unexpected statement in SQLite schema: {flat}"));
            }
        }
        Ok(out)
    }

    pub fn table(&self, name: &str) -> Option<&SqliteTable> {
        self.tables.iter().find(|t| t.name == name)
    }
}

fn parse_table(name: &str, flat: &str, sql: String) -> Result<SqliteTable, String> {
    let open = flat.find('(').ok_or_else(|| format!("table {name}: no column list"))?;
    let body = &flat[open + 1..flat.rfind(')').ok_or_else(|| format!("table {name}: unclosed column list"))?];
    let mut columns = Vec::new();
    let mut autoincrement = None;
    for def in split_top_level(body) {
        let upper = def.to_ascii_uppercase();
        if ["PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "CONSTRAINT", "CHECK"].iter().any(|k| upper.starts_with(k)) {
            continue;
        }
        let (col, rest) = split_name(&def);
        let declared = declared_type(rest);
        if upper.contains("AUTOINCREMENT") {
            autoincrement = Some(col.clone());
        }
        columns.push((col, declared));
    }
    Ok(SqliteTable { name: name.to_string(), columns, autoincrement, create_sql: sql })
}

fn split_name(def: &str) -> (String, &str) {
    let def = def.trim();
    for (open, close) in [('`', '`'), ('"', '"'), ('[', ']')] {
        if let Some(r) = def.strip_prefix(open)
            && let Some(end) = r.find(close)
        {
            return (r[..end].to_string(), &r[end + 1..]);
        }
    }
    let end = def.find(' ').unwrap_or(def.len());
    (def[..end].to_string(), &def[end..])
}

/// The declared type: the words before the first constraint keyword.
fn declared_type(rest: &str) -> String {
    const STOP: [&str; 9] =
        ["PRIMARY", "NOT", "NULL", "UNIQUE", "DEFAULT", "REFERENCES", "CHECK", "COLLATE", "CONSTRAINT"];
    let mut words = Vec::new();
    let mut depth = 0;
    for w in rest.split_whitespace() {
        if depth == 0 && STOP.contains(&w.to_ascii_uppercase().as_str()) {
            break;
        }
        depth += w.matches('(').count() as i32 - w.matches(')').count() as i32;
        words.push(w);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tables_indexes_and_autoincrement() {
        let s = SqliteSchema::parse(
            "CREATE TABLE `tags` (`id` INTEGER PRIMARY KEY AUTOINCREMENT, `title` VARCHAR(64) NOT NULL UNIQUE, `n` DECIMAL(10, 2) DEFAULT 0);\n\
             CREATE TABLE sqlite_sequence(name,seq);\n\
             CREATE TABLE `t2` (`a` TEXT, `b` JSON DEFAULT '{}', PRIMARY KEY (`a`));\n\
             CREATE INDEX \"x_index\"\n      ON \"tags\" (json_extract(title, '$.did'));\n\
             CREATE TABLE sqlite_stat1(tbl,idx,stat);\n",
        )
        .unwrap();
        assert_eq!(s.tables.len(), 2);
        let tags = s.table("tags").unwrap();
        assert_eq!(tags.autoincrement.as_deref(), Some("id"));
        assert_eq!(
            tags.columns,
            vec![
                ("id".into(), "INTEGER".into()),
                ("title".into(), "VARCHAR(64)".into()),
                ("n".into(), "DECIMAL(10, 2)".into())
            ]
        );
        assert_eq!(s.table("t2").unwrap().columns.len(), 2);
        assert_eq!(s.indexes.len(), 1);
        assert!(s.has_stat1);
    }
}
