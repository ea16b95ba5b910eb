//! What arrived in PostgreSQL, counted independently of the tool with `psql`, and checked against
//! the tool's own `--report`: every table it reports must hold exactly the rows it says it wrote.

use std::path::Path;
use std::process::{Command, Stdio};

/// One migrated database: its tables and their row counts, as PostgreSQL reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub tables: Vec<(String, u64)>,
}

impl Database {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Exact row counts of every table in schema `public`, in one query.
const COUNT_TABLES: &str = "SELECT table_name, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
     table_schema, table_name), false, true, '')))[1]::text FROM information_schema.tables \
     WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name";

/// `url` with its database replaced by `database` (user, host, port and parameters kept).
pub fn url_for_database(url: &str, database: &str) -> Result<String, String> {
    let scheme_end = url.find("://").ok_or_else(|| format!("{url}: not a postgres:// URL"))? + 3;
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    Ok(format!("{}/{database}{query}", &base[..authority_end]))
}

/// The databases and tables the report names, each counted in PostgreSQL through `psql`.
pub fn count(psql: &Path, url: &str, report_file: &Path) -> Result<Vec<Database>, String> {
    let text =
        std::fs::read_to_string(report_file).map_err(|e| format!("cannot read {}: {e}", report_file.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", report_file.display()))?;
    let reported =
        report["databases"].as_array().ok_or_else(|| format!("{}: no `databases`", report_file.display()))?;
    let mut arrived = Vec::new();
    for entry in reported {
        let name = entry["postgres_database"]
            .as_str()
            .ok_or_else(|| format!("{}: a database without `postgres_database`", report_file.display()))?;
        let tables = count_tables(psql, &url_for_database(url, name)?)?;
        for table in entry["tables"].as_array().into_iter().flatten() {
            let table_name = table["table"].as_str().unwrap_or_default();
            let written = table["target_rows"].as_u64();
            let found = tables.iter().find(|(t, _)| t == table_name).map(|(_, n)| *n);
            if written != found {
                return Err(format!(
                    "{name}.{table_name}: the report says {written:?} rows were written, PostgreSQL holds {found:?}"
                ));
            }
        }
        arrived.push(Database { name: name.to_string(), tables });
    }
    Ok(arrived)
}

fn count_tables(psql: &Path, url: &str) -> Result<Vec<(String, u64)>, String> {
    let out = Command::new(psql)
        .args(["-X", "-A", "-t", "-q", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", COUNT_TABLES])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
    if !out.status.success() {
        return Err(format!("psql {url} failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (table, rows) = line.split_once('\t').ok_or_else(|| format!("psql printed {line:?}"))?;
            let rows = rows.parse().map_err(|_| format!("psql printed {line:?}: not a row count"))?;
            Ok((table.to_string(), rows))
        })
        .collect()
}

/// The summary the demo prints: one line per database, then its non-empty tables.
pub fn render(databases: &[Database]) -> String {
    let mut out = String::new();
    for db in databases {
        let empty = db.tables.iter().filter(|(_, n)| *n == 0).count();
        out += &format!("  {:<50} {:>3} tables {:>7} rows\n", db.name, db.tables.len(), db.rows());
        for (table, rows) in db.tables.iter().filter(|(_, n)| *n > 0) {
            out += &format!("      {table:<46} {rows:>7}\n");
        }
        if empty > 0 {
            out += &format!("      ({empty} empty tables)\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_replaced_in_urls() {
        assert_eq!(
            url_for_database("postgres://postgres@127.0.0.1:5432/postgres", "server_db").unwrap(),
            "postgres://postgres@127.0.0.1:5432/server_db"
        );
        assert_eq!(
            url_for_database("postgresql://u:p@db.example/postgres?sslmode=require", "module_db").unwrap(),
            "postgresql://u:p@db.example/module_db?sslmode=require"
        );
        assert_eq!(url_for_database("postgres://h:5433", "x").unwrap(), "postgres://h:5433/x");
        assert!(url_for_database("server_db", "x").is_err());
    }

    #[test]
    fn render_lists_non_empty_tables_and_counts_the_rest() {
        let db = Database { name: "server_db".into(), tables: vec![("users".into(), 3), ("tags".into(), 0)] };
        let text = render(&[db]);
        assert!(text.contains("server_db") && text.contains("2 tables") && text.contains("3 rows"), "{text}");
        assert!(text.contains("users") && !text.contains("tags") && text.contains("(1 empty tables)"), "{text}");
    }
}
