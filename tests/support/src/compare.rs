//! Independent row comparisons, read with plain SQL on both sides (the `sqlite3` CLI, `psql`) and
//! compared in the canonical form of [`ColKind`]: a SQLite file against a PostgreSQL database,
//! two SQLite files, and a SQLite file against the value forms a 1.17.12 server writes.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde_json::Value;

use crate::canonical::{ColKind, canonical_pg_value};
use crate::cluster::PgCluster;
use crate::facts::{facts_columns, facts_tables, kind_for_pg_db, migration_targets, schema_facts};
use crate::schema::multiset_diff;
use crate::sql::quote_ident;
use crate::sqlite::SqliteSnapshot;

/// Every row of `public.table` in PostgreSQL database `db`, in the same canonical form as
/// [`SqliteSnapshot::rows`], for the given columns. Rows are sorted. Errors (missing table or column)
/// come back as `Err(psql stderr)`.
pub fn try_pg_rows(pg: &PgCluster, db: &str, table: &str, cols: &[(String, ColKind)]) -> Result<Vec<String>, String> {
    let select: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let q = quote_ident(name);
            let expr = match kind {
                ColKind::Bool | ColKind::Int => q,
                ColKind::Timestamp => format!("(extract(epoch FROM {q}) * 1000000)::bigint"),
                ColKind::Float | ColKind::Json | ColKind::Uuid | ColKind::Text => {
                    format!("{q}::text")
                }
            };
            format!("{expr} AS v{i}")
        })
        .collect();
    if select.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT coalesce(json_agg(t), '[]'::json) FROM (SELECT {} FROM public.{}) t",
        select.join(", "),
        quote_ident(table)
    );
    let text = pg.try_psql(db, &sql).map_err(|e| format!("{e:#}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("psql output is not JSON ({e}): {text}"))?;
    let arr = v.as_array().ok_or_else(|| format!("expected a JSON array, got {text}"))?;
    let mut rows: Vec<String> = arr
        .iter()
        .map(|r| {
            let vals: Vec<Value> = cols
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| canonical_pg_value(*kind, &r[format!("v{i}").as_str()]))
                .collect();
            Value::Array(vals).to_string()
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Like [`try_pg_rows`], but panics on error.
#[track_caller]
pub fn pg_rows(pg: &PgCluster, db: &str, table: &str, cols: &[(String, ColKind)]) -> Vec<String> {
    match try_pg_rows(pg, db, table, cols) {
        Ok(rows) => rows,
        Err(e) => panic!("reading {db}.{table}: {e}"),
    }
}

/// Compares every row of `table` between a SQLite file and a PostgreSQL database, using independent
/// SQL on both sides and the canonical form of [`ColKind`]. The columns (and their kinds) are the
/// reference PostgreSQL columns of the table's kind, which comes from the database name.
/// Panics with the rows found on only one side.
#[track_caller]
pub fn compare_table(sqlite_file: &Path, pg: &PgCluster, pg_db: &str, table: &str) {
    let snap = SqliteSnapshot::new(sqlite_file);
    if let Err(msg) = compare_table_in(&snap, pg, pg_db, table) {
        panic!("{msg}");
    }
}

/// [`compare_table`] on an existing snapshot. Returns the number of rows compared, or a report.
/// A table that the SQLite file lacks must be empty in PostgreSQL.
pub fn compare_table_in(snap: &SqliteSnapshot, pg: &PgCluster, pg_db: &str, table: &str) -> Result<usize, String> {
    let kind = kind_for_pg_db(pg_db);
    let cols = facts_columns(kind, table);
    let sqlite = if snap.has_table(table) { snap.rows(table, &cols) } else { Vec::new() };
    let pgr = try_pg_rows(pg, pg_db, table, &cols).map_err(|e| format!("{pg_db}.{table}: {e}"))?;
    if sqlite == pgr {
        return Ok(sqlite.len());
    }
    let (only_sqlite, only_pg) = multiset_diff(&sqlite, &pgr);
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let mut msg = format!(
        "rows differ: {} {table} (SQLite {} rows) vs {pg_db}.{table} (PostgreSQL {} rows)\n  columns: {names:?}\n",
        snap.source().display(),
        sqlite.len(),
        pgr.len()
    );
    msg.push_str(&format!("  only in SQLite ({}):\n", only_sqlite.len()));
    for r in only_sqlite.iter().take(5) {
        msg.push_str(&format!("    {r}\n"));
    }
    msg.push_str(&format!("  only in PostgreSQL ({}):\n", only_pg.len()));
    for r in only_pg.iter().take(5) {
        msg.push_str(&format!("    {r}\n"));
    }
    if let (Some(a), Some(b)) = (only_sqlite.first(), only_pg.first()) {
        let a: Vec<Value> = serde_json::from_str(a).unwrap_or_default();
        let b: Vec<Value> = serde_json::from_str(b).unwrap_or_default();
        let diffs: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| a.get(*i) != b.get(*i))
            .map(|(i, n)| {
                format!("{n}: sqlite={} pg={}", a.get(i).unwrap_or(&Value::Null), b.get(i).unwrap_or(&Value::Null))
            })
            .collect();
        msg.push_str(&format!("  first pair differs in: {}\n", diffs.join("; ")));
    }
    Err(msg)
}

/// Runs [`compare_table_in`] for every table of every database kind (see [`migration_targets`]). The
/// tables are those that schema-facts.json lists for the kind, without `SequelizeMeta`.
/// Collects every mismatch and then panics with all of them.
/// Returns `(database, table, rows compared)`.
#[track_caller]
pub fn compare_all(data_dir: &Path, pg: &PgCluster) -> Vec<(String, String, usize)> {
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for (file, db) in migration_targets(data_dir) {
        let kind = kind_for_pg_db(&db);
        let snap = SqliteSnapshot::new(&file);
        for table in facts_tables(kind) {
            match compare_table_in(&snap, pg, &db, &table) {
                Ok(n) => summary.push((db.clone(), table, n)),
                Err(msg) => failures.push(msg),
            }
        }
    }
    assert!(failures.is_empty(), "{} table(s) differ:\n{}", failures.len(), failures.join("\n"));
    summary
}

/// The set of `(database, table)` names a [`compare_all`] summary covered; handy for asserts.
pub fn summary_tables(summary: &[(String, String, usize)]) -> BTreeSet<(String, String)> {
    summary.iter().map(|(d, t, _)| (d.clone(), t.clone())).collect()
}

/// The columns used to compare `table` of a SQLite file of `kind`: the reference PostgreSQL columns
/// from schema-facts.json when it knows the table, otherwise the file's own columns with kinds from
/// their declared types.
fn sqlite_compare_columns(snap: &SqliteSnapshot, kind: &str, table: &str) -> Vec<(String, ColKind)> {
    if schema_facts()[kind]["postgres"].get(table).is_some() {
        facts_columns(kind, table)
    } else {
        snap.columns(table).into_iter().map(|(n, t)| (n.clone(), ColKind::from_sqlite_decl(&t))).collect()
    }
}

/// Compares two SQLite files of the same `kind` table by table: the same user tables, the same column
/// names in the same order, and the same rows (a multiset, in the canonical form of [`ColKind`], with
/// column kinds from schema-facts.json: timestamps as instants, JSON canonically, booleans, numbers,
/// text). Returns `(table, rows)` for every table, or a report of every difference.
pub fn try_compare_sqlite_files(a: &Path, b: &Path, kind: &str) -> Result<Vec<(String, usize)>, String> {
    let sa = SqliteSnapshot::new(a);
    let sb = SqliteSnapshot::new(b);
    let (ta, tb) = (sa.tables(), sb.tables());
    let mut problems = Vec::new();
    if ta != tb {
        let (only_a, only_b) = multiset_diff(&ta, &tb);
        problems.push(format!(
            "tables differ: only in {}: {only_a:?}; only in {}: {only_b:?}",
            a.display(),
            b.display()
        ));
    }
    let mut summary = Vec::new();
    for table in ta.iter().filter(|t| tb.contains(t)) {
        let names_a: Vec<String> = sa.columns(table).into_iter().map(|(n, _)| n).collect();
        let names_b: Vec<String> = sb.columns(table).into_iter().map(|(n, _)| n).collect();
        if names_a != names_b {
            problems.push(format!("{table}: columns differ: {names_a:?} vs {names_b:?}"));
            continue;
        }
        let cols = sqlite_compare_columns(&sa, kind, table);
        let ra = sa.rows(table, &cols);
        let rb = sb.rows(table, &cols);
        if ra == rb {
            summary.push((table.clone(), ra.len()));
            continue;
        }
        let (only_a, only_b) = multiset_diff(&ra, &rb);
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let mut msg = format!("{table}: rows differ ({} vs {} rows)\n  columns: {names:?}\n", ra.len(), rb.len());
        msg.push_str(&format!("  only in {} ({}):\n", a.display(), only_a.len()));
        for r in only_a.iter().take(5) {
            msg.push_str(&format!("    {r}\n"));
        }
        msg.push_str(&format!("  only in {} ({}):\n", b.display(), only_b.len()));
        for r in only_b.iter().take(5) {
            msg.push_str(&format!("    {r}\n"));
        }
        if let (Some(x), Some(y)) = (only_a.first(), only_b.first()) {
            let x: Vec<Value> = serde_json::from_str(x).unwrap_or_default();
            let y: Vec<Value> = serde_json::from_str(y).unwrap_or_default();
            let diffs: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| x.get(*i) != y.get(*i))
                .map(|(i, n)| {
                    format!("{n}: {} vs {}", x.get(i).unwrap_or(&Value::Null), y.get(i).unwrap_or(&Value::Null))
                })
                .collect();
            msg.push_str(&format!("  first pair differs in: {}\n", diffs.join("; ")));
        }
        problems.push(msg);
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{} vs {} ({kind}):\n{}", a.display(), b.display(), problems.join("\n")))
    }
}

/// [`try_compare_sqlite_files`], panicking with the report.
#[track_caller]
pub fn compare_sqlite_files(a: &Path, b: &Path, kind: &str) -> Vec<(String, usize)> {
    match try_compare_sqlite_files(a, b, kind) {
        Ok(summary) => summary,
        Err(msg) => panic!("{msg}"),
    }
}

/// Values of a SQLite file of `kind` that are not in the representation a 1.17.12 server writes
/// (column kinds from schema-facts.json): booleans must be integer 0/1, timestamps text
/// `YYYY-MM-DD HH:MM:SS.SSS +00:00`, JSON valid minified text (SQLite's `json()` leaves it as is),
/// integers integer, floats real or integer, text and UUIDs text. NULL is always fine.
/// Returns one line per offending column: table, column, count and one example (`quote()`d).
pub fn value_form_problems(db_file: &Path, kind: &str) -> Vec<String> {
    let snap = SqliteSnapshot::new(db_file);
    let mut problems = Vec::new();
    for table in snap.tables() {
        if schema_facts()[kind]["postgres"].get(&table).is_none() {
            problems.push(format!("{table}: not a table of the 1.17.12 {kind} schema"));
            continue;
        }
        let present: HashSet<String> = snap.columns(&table).into_iter().map(|(n, _)| n).collect();
        let cols: Vec<(String, ColKind)> =
            facts_columns(kind, &table).into_iter().filter(|(n, _)| present.contains(n)).collect();
        if cols.is_empty() {
            continue;
        }
        let select: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (name, k))| {
                let q = quote_ident(name);
                let bad = match k {
                    ColKind::Bool => format!("typeof({q}) <> 'null' AND NOT (typeof({q}) = 'integer' AND {q} IN (0, 1))"),
                    ColKind::Timestamp => format!(
                        "typeof({q}) <> 'null' AND NOT (typeof({q}) = 'text' AND {q} GLOB \
                         '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9] +00:00')"
                    ),
                    ColKind::Json => format!(
                        "typeof({q}) <> 'null' AND NOT (typeof({q}) = 'text' AND json_valid({q}) AND json({q}) = {q})"
                    ),
                    ColKind::Int => format!("typeof({q}) NOT IN ('null', 'integer')"),
                    ColKind::Float => format!("typeof({q}) NOT IN ('null', 'real', 'integer')"),
                    ColKind::Uuid | ColKind::Text => format!("typeof({q}) NOT IN ('null', 'text')"),
                };
                format!("sum(CASE WHEN {bad} THEN 1 ELSE 0 END) AS n{i}, min(CASE WHEN {bad} THEN quote({q}) END) AS e{i}")
            })
            .collect();
        let rows = snap.query_json(&format!("SELECT {} FROM {}", select.join(", "), quote_ident(&table)));
        let Some(r) = rows.first() else { continue };
        for (i, (name, k)) in cols.iter().enumerate() {
            let n = r[&format!("n{i}")].as_i64().unwrap_or(0);
            if n > 0 {
                let example = r[&format!("e{i}")].as_str().unwrap_or("").chars().take(120).collect::<String>();
                problems.push(format!(
                    "{table}.{name} ({k:?}): {n} value(s) not as the server writes them, e.g. {example}"
                ));
            }
        }
    }
    problems
}
