//! Schema comparison: `pg_dump --schema-only` and `sqlite3 .schema` text against the reference
//! dumps of the real 1.17.12 server, as sorted lists of normalised statements.
//!
//! Both texts are split by [`crate::sql::statements`]; each statement's whitespace runs collapse
//! to one space and its trailing `;` goes. A difference is reported as a multiset difference, so a
//! duplicated statement counts.

use std::collections::BTreeMap;

use crate::sql::statements;

/// Turns `pg_dump --schema-only` text into a sorted list of normalised statements. Two dumps of the same
/// schema then compare equal, whatever their statement order, comments or pg_dump version header.
///
/// * drops `--` comment lines (the `-- Name: …; Type: …` headers, the version banner)
/// * drops psql meta-commands (`\restrict KEY` / `\unrestrict KEY`, which pg_dump ≥ 15.14 emits with a random key)
/// * drops the session preamble: `SET …;` and `SELECT pg_catalog.set_config(…);`
pub fn normalize_pg_schema(sql: &str) -> Vec<String> {
    let mut out: Vec<String> = normalized_statements(sql)
        .into_iter()
        .filter(|s| !s.starts_with("SET ") && !s.starts_with("SELECT pg_catalog.set_config("))
        .collect();
    out.sort();
    out
}

/// Turns `sqlite3 FILE .schema` text into a sorted list of normalised statements. Nothing else is
/// changed: quoting, declared types, defaults and SQLite's own `sqlite_sequence` / `sqlite_stat1`
/// tables all count.
pub fn normalize_sqlite_schema(sql: &str) -> Vec<String> {
    let mut out = normalized_statements(sql);
    out.sort();
    out
}

/// Every statement with its whitespace runs collapsed to one space and without its trailing `;`.
fn normalized_statements(sql: &str) -> Vec<String> {
    statements(sql)
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ").trim_end_matches(';').trim_end().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Compares two `pg_dump --schema-only` texts after [`normalize_pg_schema`]. On failure it panics and
/// lists the statements found on only one side.
#[track_caller]
pub fn assert_same_schema(actual: &str, expected: &str, what: &str) {
    if let Some(msg) =
        diff_report(&normalize_pg_schema(actual), &normalize_pg_schema(expected), &format!("schema of {what}"))
    {
        panic!("{msg}");
    }
}

/// Compares two `.schema` texts after [`normalize_sqlite_schema`]: `None` when equal, otherwise a
/// report of the statements found on only one side.
pub fn sqlite_schema_diff(actual: &str, expected: &str, what: &str) -> Option<String> {
    diff_report(
        &normalize_sqlite_schema(actual),
        &normalize_sqlite_schema(expected),
        &format!("SQLite schema of {what}"),
    )
}

/// [`sqlite_schema_diff`], panicking with the report.
#[track_caller]
pub fn assert_same_sqlite_schema(actual: &str, expected: &str, what: &str) {
    if let Some(msg) = sqlite_schema_diff(actual, expected, what) {
        panic!("{msg}");
    }
}

/// `None` when the statement lists are equal, else the statements only in one of them.
fn diff_report(actual: &[String], reference: &[String], what: &str) -> Option<String> {
    if actual == reference {
        return None;
    }
    let (only_a, only_e) = multiset_diff(actual, reference);
    let mut msg = format!("{what} differs from the reference ({} vs {} statements)\n", actual.len(), reference.len());
    msg.push_str(&format!("--- only in actual ({}):\n", only_a.len()));
    for s in &only_a {
        msg.push_str(&format!("  + {s}\n"));
    }
    msg.push_str(&format!("--- only in reference ({}):\n", only_e.len()));
    for s in &only_e {
        msg.push_str(&format!("  - {s}\n"));
    }
    Some(msg)
}

/// Elements of `a` not matched in `b`, and the reverse, counting duplicates.
pub(crate) fn multiset_diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for s in a {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    for s in b {
        *counts.entry(s.as_str()).or_default() -= 1;
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (s, n) in counts {
        for _ in 0..n.max(0) {
            only_a.push(s.to_string());
        }
        for _ in 0..(-n).max(0) {
            only_b.push(s.to_string());
        }
    }
    (only_a, only_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dumps_compare_without_preamble_comments_or_order() {
        let a = "--\n-- PostgreSQL database dump\n\\restrict abc\nSET x = 1;\nCREATE TABLE public.t (\n    id integer\n);\nCREATE INDEX i ON public.t (id);\n";
        let b = "CREATE INDEX i ON public.t (id);\nSELECT pg_catalog.set_config('search_path', '', false);\nCREATE TABLE public.t ( id integer );\n";
        assert_eq!(normalize_pg_schema(a), normalize_pg_schema(b));
        assert_same_schema(a, b, "t");
    }

    #[test]
    fn a_missing_or_truncated_statement_is_a_difference() {
        let full = "CREATE TABLE t (a);\nCREATE INDEX i ON t (a);\n";
        let report = sqlite_schema_diff("CREATE TABLE t (a);\nCREATE INDEX i\n", full, "x").expect("differs");
        assert!(report.contains("+ CREATE INDEX i\n") && report.contains("- CREATE INDEX i ON t (a)"), "{report}");
        assert!(
            sqlite_schema_diff("CREATE TABLE t (a);\nCREATE TABLE t (a);\n", "CREATE TABLE t (a);\n", "x").is_some()
        );
    }
}
