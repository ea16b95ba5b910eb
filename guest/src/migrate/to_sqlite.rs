//! Migrating one Blocklet Server database from PostgreSQL back to SQLite.
//!
//! The target is a fresh file (the host builds it beside its destination and moves it into
//! place only when the whole job verified). The flow:
//! 1. check the source as in the other direction (known migrations, tables and columns);
//! 2. create the tables exactly as the server's `.schema` has them;
//! 3. copy every table, parents first, in the server's own representation, reporting every
//!    value SQLite would hold differently from how the server reads it back;
//! 4. keep `sqlite_sequence` at least at PostgreSQL's sequence (ids are never reused), fill
//!    the meta table, build the indexes, `ANALYZE` where the server's file has statistics;
//! 5. verify each table by reading it back.

use super::{
    Copied, DatabaseReport, Endpoints, Failure, Options, check_known_migrations, copy_table, db_failure, source_tables,
    verify_table,
};
use crate::batch::Value;
use crate::catalog::{Catalog, META_TABLE};
use crate::convert;
use crate::db::{Database, Events, Level};
use crate::ddl::PgColumn;
use crate::plan::Planned;
use crate::sql::{first_line, quote_ident, quote_literal};

/// Migrate `plan`'s PostgreSQL `source` into the fresh SQLite `target`.
pub fn migrate_to_sqlite(
    plan: &Planned,
    source: &dyn Database,
    target: &dyn Database,
    options: &Options,
    events: &dyn Events,
) -> Result<DatabaseReport, Failure> {
    let catalog = plan.kind.catalog();
    let (source_label, target_label) = (plan.postgres_database.as_str(), plan.sqlite_file.as_str());
    let execute = |sql: &str| -> Result<u64, Failure> {
        target
            .execute(sql)
            .map_err(|e| Failure::new(format!("{target_label}: {e}\n  while running: {}", first_line(sql))))
    };

    check_known_migrations(source, source_label, catalog)?;
    let present = source_tables(source, source_label, catalog)?;
    let existing = target.list_tables().map_err(|e| db_failure(&format!("listing tables of {target_label}"), e))?;
    if existing.iter().any(|t| !t.starts_with("sqlite_")) {
        return Err(Failure::new(format!("{target_label}: the new file is not empty ({})", existing.join(", "))));
    }
    for table in &catalog.sqlite.tables {
        execute(&table.create_sql)?;
    }

    let ends = Endpoints { source, source_label, target, target_label, events, batch_rows: options.batch_rows };
    let mut copied = Vec::new();
    let mut rejected = 0u64;
    for name in &catalog.load_order {
        let pg = catalog.table(name).expect("load order lists catalog tables");
        let sqlite = catalog.sqlite.table(name).expect("the catalog checks every table has a SQLite definition");
        let Some((_, source_columns)) = present.iter().find(|(t, _)| t == name) else {
            events.log(
                Level::Info,
                &format!("{source_label}: table {name} is not in the source (older server); created empty"),
            );
            copied.push(Copied::empty(name));
            continue;
        };
        let columns: Vec<String> =
            sqlite.columns.iter().map(|(c, _)| c.clone()).filter(|c| source_columns.contains(c)).collect();
        let types: Vec<&PgColumn> = columns.iter().map(|c| pg.column(c).expect("catalog columns match")).collect();
        let c = copy_table(&ends, pg, columns, |batch| convert::to_sqlite(batch, &types))?;
        rejected += c.rejected_rows;
        copied.push(c);
    }
    if rejected > 0 && !options.skip_rejects && !options.dry_run {
        return Err(Failure::rejected(
            format!("{rejected} row(s) of {source_label} cannot be written to SQLite faithfully; nothing was written"),
            rejected,
        ));
    }

    keep_sequences(catalog, source, source_label, &execute)?;
    let values: Vec<String> = catalog.migrations.iter().map(|m| format!("({})", quote_literal(m))).collect();
    execute(&format!("INSERT INTO {} (name) VALUES {}", quote_ident(META_TABLE), values.join(", ")))?;
    for index in &catalog.sqlite.indexes {
        execute(index)?;
    }
    if catalog.sqlite.has_stat1 {
        // The server's file carries planner statistics (it runs `PRAGMA optimize`).
        execute("ANALYZE")?;
    }

    if options.dry_run {
        return Ok(DatabaseReport { tables: copied.iter().map(Copied::predicted).collect(), rejected_rows: rejected });
    }
    let mut tables = Vec::new();
    for c in &copied {
        let pg = catalog.table(&c.table).expect("copied tables are catalog tables");
        let types: Vec<&PgColumn> = c.columns.iter().map(|n| pg.column(n).expect("catalog columns")).collect();
        tables.push(verify_table(target, target_label, c, options.batch_rows, |i, v| {
            convert::sqlite_hash(&types[i].ty, v)
        })?);
    }
    Ok(DatabaseReport { tables, rejected_rows: rejected })
}

/// SQLite hands out AUTOINCREMENT ids above `sqlite_sequence.seq`; keep it at least where
/// PostgreSQL's sequence is, so ids deleted in PostgreSQL are not handed out again.
fn keep_sequences(
    catalog: &Catalog,
    source: &dyn Database,
    source_label: &str,
    execute: &dyn Fn(&str) -> Result<u64, Failure>,
) -> Result<(), Failure> {
    for seq in &catalog.schema.sequences {
        let Some(table) = catalog.sqlite.table(&seq.table) else { continue };
        if table.autoincrement.as_deref() != Some(seq.column.as_str()) {
            continue;
        }
        let batch = source
            .query(&format!(
                "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM public.{}",
                quote_ident(&seq.name)
            ))
            .map_err(|e| db_failure(&format!("reading sequence {} of {source_label}", seq.name), e))?;
        let used = match batch.columns.first().filter(|_| batch.rows == 1).map(|c| c.get(0)) {
            Some(Value::Integer(n)) => n,
            _ => return Err(Failure::new(format!("{source_label}: sequence {} has no value", seq.name))),
        };
        if used <= 0 {
            continue;
        }
        let name = quote_literal(&seq.table);
        execute(&format!("UPDATE sqlite_sequence SET seq = max(seq, {used}) WHERE name = {name}"))?;
        execute(&format!(
            "INSERT INTO sqlite_sequence (name, seq) SELECT {name}, {used} WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = {name})"
        ))?;
    }
    Ok(())
}
