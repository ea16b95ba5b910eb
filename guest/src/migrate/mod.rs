//! Migrating one Blocklet Server database, in either direction: [`to_postgres`] and
//! [`to_sqlite`], and what both share: source checks, the copy loop with its row-by-row
//! rejection reports, and verification by reading the target back.

pub mod to_postgres;
pub mod to_sqlite;

use crate::batch::{Batch, Value, excerpt};
use crate::canonical::{self, TableChecksum};
use crate::catalog::{Catalog, META_TABLE, SERVER_VERSION};
use crate::convert::Converted;
use crate::db::{Database, DbError, Events, Rejection};
use crate::ddl::PgTable;
use std::collections::BTreeSet;

pub use to_postgres::migrate_to_postgres;
pub use to_sqlite::migrate_to_sqlite;

/// The rows per batch the flow asks for, whatever the options say: at least one, and no more
/// than the host serves in one `read` batch.
pub const BATCH_ROWS: std::ops::RangeInclusive<u32> = 1..=100_000;

/// `requested` rows per batch, brought into [`BATCH_ROWS`].
pub fn clamp_batch_rows(requested: u32) -> u32 {
    requested.clamp(*BATCH_ROWS.start(), *BATCH_ROWS.end())
}

/// How to run (WIT `options`).
#[derive(Clone, Debug)]
pub struct Options {
    pub force: bool,
    /// Rows per batch read or written, within [`BATCH_ROWS`].
    pub batch_rows: u32,
    /// Migrate the rows that convert and report the rest, instead of failing.
    pub skip_rejects: bool,
    /// Check everything, verify nothing by reading back: the host commits nothing.
    pub dry_run: bool,
}

/// Result of one table (WIT `table-report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub source_rows: u64,
    pub target_rows: u64,
    pub rejected_rows: u64,
    pub checksum: String,
}

/// Result of one database (WIT `database-report`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseReport {
    pub tables: Vec<TableReport>,
    pub rejected_rows: u64,
}

/// What kind of failure (WIT `failure-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    RejectedRows,
    VerificationMismatch,
    Refused,
    Other,
}

/// Why a database could not be migrated (WIT `failure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    pub rejected_rows: u64,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure { kind: FailureKind::Other, message: message.into(), rejected_rows: 0 }
    }

    /// The job was refused as it should be (not empty, newer source, not a Blocklet database).
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Failure { kind: FailureKind::Refused, ..Failure::new(message) }
    }

    pub(crate) fn rejected(message: impl Into<String>, rejected_rows: u64) -> Self {
        Failure { kind: FailureKind::RejectedRows, message: message.into(), rejected_rows }
    }
}

pub(crate) fn db_failure(what: &str, e: DbError) -> Failure {
    Failure::new(format!("{what}: {e}"))
}

/// Refuse a source written by a newer server: its schema has things this component would drop.
pub(crate) fn check_known_migrations(source: &dyn Database, label: &str, catalog: &Catalog) -> Result<(), Failure> {
    let Some(_) = source.describe_table(META_TABLE).map_err(|e| db_failure(&format!("reading {META_TABLE}"), e))?
    else {
        return Ok(());
    };
    let mut cursor = source
        .read(META_TABLE, &["name".to_string()], &[], 1000)
        .map_err(|e| db_failure(&format!("reading {META_TABLE}"), e))?;
    let mut unknown = Vec::new();
    while let Some(batch) = cursor.next_batch().map_err(|e| db_failure(&format!("reading {META_TABLE}"), e))? {
        for i in 0..batch.rows as usize {
            let name = match batch.columns[0].get(i) {
                Value::Text(b) => String::from_utf8_lossy(b).into_owned(),
                other => excerpt(other),
            };
            if !catalog.migrations.contains(&name.as_str()) {
                unknown.push(name);
            }
        }
    }
    if !unknown.is_empty() {
        return Err(Failure::refused(format!(
            "{label} was written by a newer Blocklet Server: its {META_TABLE} lists {} migration(s) this component does not know ({}). \
             This component knows the Blocklet Server {SERVER_VERSION} schema; use a newer migration component (--component FILE).",
            unknown.len(),
            unknown.join(", "),
        )));
    }
    Ok(())
}

/// The source's tables and their columns; every one must have a place in the target.
pub(crate) fn source_tables(
    source: &dyn Database,
    label: &str,
    catalog: &Catalog,
) -> Result<Vec<(String, Vec<String>)>, Failure> {
    let names = source.list_tables().map_err(|e| db_failure(&format!("listing tables of {label}"), e))?;
    let mut out = Vec::new();
    for name in names {
        if name == META_TABLE || name.starts_with("sqlite_") {
            continue;
        }
        let pg = catalog.table(&name).ok_or_else(|| {
            Failure::refused(format!(
                "{label} has a table {name} that the Blocklet Server {SERVER_VERSION} schema does not have; refusing to leave its rows behind"
            ))
        })?;
        let info = source
            .describe_table(&name)
            .map_err(|e| db_failure(&format!("describing {label} table {name}"), e))?
            .ok_or_else(|| Failure::new(format!("{label}: table {name} disappeared while reading")))?;
        let extra: Vec<&str> =
            info.columns.iter().filter(|c| pg.column(&c.name).is_none()).map(|c| c.name.as_str()).collect();
        if !extra.is_empty() {
            return Err(Failure::refused(format!(
                "{label} table {name} has column(s) {} that the Blocklet Server {SERVER_VERSION} schema does not have; refusing to drop their values",
                extra.join(", ")
            )));
        }
        out.push((name, info.columns.into_iter().map(|c| c.name).collect()));
    }
    Ok(out)
}

/// What was copied into one table.
pub(crate) struct Copied {
    pub table: String,
    pub columns: Vec<String>,
    pub source_rows: u64,
    pub rejected_rows: u64,
    pub checksum: TableChecksum,
}

impl Copied {
    pub fn empty(table: &str) -> Copied {
        Copied {
            table: table.to_string(),
            columns: Vec::new(),
            source_rows: 0,
            rejected_rows: 0,
            checksum: TableChecksum::default(),
        }
    }

    /// The report of a dry run: what the target would hold.
    pub fn predicted(&self) -> TableReport {
        TableReport {
            table: self.table.clone(),
            source_rows: self.source_rows,
            target_rows: self.checksum.rows,
            rejected_rows: self.rejected_rows,
            checksum: self.checksum.hex(),
        }
    }
}

/// Where a copy reads from and writes to, for messages and reports.
pub(crate) struct Endpoints<'a> {
    pub source: &'a dyn Database,
    pub source_label: &'a str,
    pub target: &'a dyn Database,
    /// The name rejected rows are reported under.
    pub target_label: &'a str,
    pub events: &'a dyn Events,
    pub batch_rows: u32,
}

/// Stream `columns` of `table` from source to target through `convert`, reporting every
/// rejected value. Returns what was copied, rejected rows included in the count.
pub(crate) fn copy_table(
    ends: &Endpoints<'_>,
    table: &PgTable,
    columns: Vec<String>,
    convert: impl Fn(&Batch) -> Converted,
) -> Result<Copied, Failure> {
    let (source_label, target_label, name) = (ends.source_label, ends.target_label, &table.name);
    let total =
        ends.source.count_rows(name).map_err(|e| db_failure(&format!("counting {source_label} table {name}"), e))?;
    let identity: Vec<usize> =
        table.identity_columns().iter().filter_map(|k| columns.iter().position(|c| c == k)).collect();
    let mut cursor = ends
        .source
        .read(name, &columns, &[], ends.batch_rows)
        .map_err(|e| db_failure(&format!("reading {source_label} table {name}"), e))?;
    let mut writer =
        ends.target.bulk_load(name, &columns).map_err(|e| db_failure(&format!("loading {target_label}.{name}"), e))?;
    // The total first, so that progress can show how far along the table is from its first batch.
    ends.events.progress(target_label, name, 0, total);
    let mut checksum = TableChecksum::default();
    let (mut source_rows, mut rejected_rows, mut progress_at) = (0u64, 0u64, 0u64);
    while let Some(batch) =
        cursor.next_batch().map_err(|e| db_failure(&format!("reading {source_label} table {name}"), e))?
    {
        batch.validate(columns.len()).map_err(|e| {
            Failure::new(format!("the host returned a malformed batch of {source_label} table {name}: {e}"))
        })?;
        let converted = convert(&batch);
        if !converted.rejections.is_empty() {
            let mut rows: BTreeSet<usize> = BTreeSet::new();
            for r in &converted.rejections {
                rows.insert(r.row);
                let primary_key = if identity.is_empty() {
                    format!("row {}", source_rows + r.row as u64 + 1)
                } else {
                    identity
                        .iter()
                        .map(|&k| format!("{}={}", columns[k], batch.columns[k].excerpt(r.row)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                ends.events.reject(&Rejection {
                    database: target_label.to_string(),
                    table: name.clone(),
                    primary_key,
                    column: columns[r.column].clone(),
                    value_excerpt: batch.columns[r.column].excerpt(r.row),
                    reason: r.reason.clone(),
                });
            }
            rejected_rows += rows.len() as u64;
        }
        if converted.batch.rows > 0 {
            writer.write(&converted.batch).map_err(|e| db_failure(&format!("loading {target_label}.{name}"), e))?;
        }
        converted.row_hashes.iter().for_each(|h| checksum.add_row(*h));
        source_rows += batch.rows as u64;
        if source_rows - progress_at >= 10_000 || source_rows == total {
            progress_at = source_rows;
            ends.events.progress(target_label, name, source_rows, total.max(source_rows));
        }
    }
    drop(cursor);
    let written = writer.finish().map_err(|e| db_failure(&format!("loading {target_label}.{name}"), e))?;
    if written != checksum.rows {
        return Err(Failure::new(format!(
            "{target_label}.{name}: the target accepted {written} rows, {} were sent",
            checksum.rows
        )));
    }
    Ok(Copied { table: name.clone(), columns, source_rows, rejected_rows, checksum })
}

/// Read a table back from the target and compare count and checksum with what was sent,
/// hashing each read-back value `(column, value)` with `hash`.
pub(crate) fn verify_table(
    target: &dyn Database,
    target_label: &str,
    copied: &Copied,
    batch_rows: u32,
    hash: impl Fn(usize, Value<'_>) -> Result<u64, String>,
) -> Result<TableReport, Failure> {
    let table = &copied.table;
    let mut read_back = TableChecksum::default();
    // Reading every row back counts them too; a table nothing was copied into is only counted.
    let target_rows = if copied.columns.is_empty() {
        target.count_rows(table).map_err(|e| db_failure(&format!("verifying {target_label}.{table}"), e))?
    } else {
        let mut cursor = target
            .read(table, &copied.columns, &[], batch_rows)
            .map_err(|e| db_failure(&format!("verifying {target_label}.{table}"), e))?;
        while let Some(batch) =
            cursor.next_batch().map_err(|e| db_failure(&format!("verifying {target_label}.{table}"), e))?
        {
            batch.validate(copied.columns.len()).map_err(|e| {
                Failure::new(format!("the host returned a malformed batch of {target_label}.{table}: {e}"))
            })?;
            add_rows_with(&batch, &mut read_back, &hash)
                .map_err(|e| Failure::new(format!("verifying {target_label}.{table}: {e}")))?;
        }
        read_back.rows
    };
    if target_rows != copied.checksum.rows || read_back != copied.checksum {
        return Err(Failure {
            kind: FailureKind::VerificationMismatch,
            ..Failure::new(format!(
                "verification failed for {target_label}.{table}: source {} rows (checksum {}), target {} rows (checksum {})",
                copied.checksum.rows,
                copied.checksum.hex(),
                target_rows,
                read_back.hex()
            ))
        });
    }
    Ok(TableReport {
        table: table.clone(),
        source_rows: copied.source_rows,
        target_rows,
        rejected_rows: copied.rejected_rows,
        checksum: copied.checksum.hex(),
    })
}

/// Add every row of a batch to a checksum, hashing value `(column, value)` with `hash`.
pub fn add_rows_with(
    batch: &Batch,
    sum: &mut TableChecksum,
    hash: impl Fn(usize, Value<'_>) -> Result<u64, String>,
) -> Result<(), String> {
    for i in 0..batch.rows as usize {
        let mut h = canonical::row_start();
        for (c, col) in batch.columns.iter().enumerate() {
            h = canonical::chain(h, hash(c, col.get(i))?);
        }
        sum.add_row(h);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
