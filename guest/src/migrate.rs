//! Migrating one Blocklet Server database from SQLite to PostgreSQL.
//!
//! The flow, all inside the target's one transaction (the host commits it only when every
//! database of the job succeeded):
//! 1. check the source: its `SequelizeMeta` may only name migrations this component knows,
//!    and every table and column must have a place in the target schema;
//! 2. refuse a target that already holds Blocklet rows (unless forced; then replace them);
//! 3. create types, tables and sequences; copy every table, parents first, converting each
//!    value and reporting every value that cannot be converted faithfully;
//! 4. set every sequence past its max id and fill `SequelizeMeta`;
//! 5. add keys, indexes and foreign keys after the data; a violation is explained row by row;
//! 6. verify each table: the target's row count and checksum, read back, equal the source's.

use crate::batch::{Batch, Value, excerpt};
use crate::canonical::{self, TableChecksum, value_hash};
use crate::catalog::{Catalog, META_TABLE};
use crate::convert;
use crate::db::{
    Database, DbError, ErrorKind, Events, Level, Rejection, quote_ident, quote_literal,
};
use crate::ddl::{Enforces, ForeignKey, PgColumn, PgTable, Phase, UniqueKey};
use crate::plan::Planned;
use std::collections::BTreeSet;

/// How to run (WIT `options`).
#[derive(Clone, Debug)]
pub struct Options {
    pub force: bool,
    pub batch_rows: u32,
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

/// Why a database could not be migrated (WIT `failure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub rejected_rows: u64,
}

impl Failure {
    fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            rejected_rows: 0,
        }
    }
}

/// Most offending rows listed per violated key: enough to act on, bounded in size.
const MAX_KEY_VIOLATIONS_LISTED: usize = 1000;

struct Job<'a> {
    plan: &'a Planned,
    catalog: &'static Catalog,
    source: &'a dyn Database,
    target: &'a dyn Database,
    options: &'a Options,
    events: &'a dyn Events,
    rejected_rows: u64,
}

/// What was copied into one table.
struct Copied {
    table: String,
    columns: Vec<String>,
    source_rows: u64,
    checksum: TableChecksum,
}

/// Migrate `plan`'s SQLite `source` into the PostgreSQL `target`.
pub fn migrate_to_postgres(
    plan: &Planned,
    source: &dyn Database,
    target: &dyn Database,
    options: &Options,
    events: &dyn Events,
) -> Result<DatabaseReport, Failure> {
    let mut job = Job {
        plan,
        catalog: plan.kind.catalog(),
        source,
        target,
        options,
        events,
        rejected_rows: 0,
    };
    job.run()
}

fn db_failure(what: &str, e: DbError) -> Failure {
    Failure::new(format!("{what}: {e}"))
}

impl Job<'_> {
    fn run(&mut self) -> Result<DatabaseReport, Failure> {
        self.check_source_migrations()?;
        let source_tables = self.source_tables()?;
        self.prepare_target()?;
        self.run_phase(Phase::PreData)?;
        let mut copied = Vec::new();
        for table in &self.catalog.load_order {
            let pg = self
                .catalog
                .table(table)
                .expect("load order lists catalog tables");
            match source_tables.iter().find(|(name, _)| name == table) {
                Some((_, columns)) => copied.push(self.copy_table(pg, columns)?),
                None => {
                    self.events.log(
                        Level::Info,
                        &format!(
                            "{}: table {table} is not in the source (older server); created empty",
                            self.plan.sqlite_file
                        ),
                    );
                    copied.push(Copied {
                        table: table.clone(),
                        columns: Vec::new(),
                        source_rows: 0,
                        checksum: TableChecksum::default(),
                    });
                }
            }
        }
        self.set_sequences()?;
        self.fill_meta()?;
        if self.rejected_rows == 0 {
            self.run_phase(Phase::PostData)?;
            self.run_phase(Phase::ForeignKeys)?;
        }
        if self.rejected_rows > 0 {
            return Err(Failure {
                message: format!(
                    "{} row(s) of {} cannot be migrated faithfully; nothing was committed",
                    self.rejected_rows, self.plan.sqlite_file
                ),
                rejected_rows: self.rejected_rows,
            });
        }
        let tables = copied
            .iter()
            .map(|c| self.verify(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DatabaseReport {
            tables,
            rejected_rows: 0,
        })
    }

    /// Refuse a source written by a newer server: its schema has things we would drop.
    fn check_source_migrations(&self) -> Result<(), Failure> {
        let Some(_) = self
            .source
            .describe_table(META_TABLE)
            .map_err(|e| db_failure("reading SequelizeMeta", e))?
        else {
            return Ok(());
        };
        let mut cursor = self
            .source
            .read(META_TABLE, &["name".to_string()], &[], 1000)
            .map_err(|e| db_failure("reading SequelizeMeta", e))?;
        let mut unknown = Vec::new();
        while let Some(batch) = cursor
            .next_batch()
            .map_err(|e| db_failure("reading SequelizeMeta", e))?
        {
            for i in 0..batch.rows as usize {
                let name = match batch.columns[0].get(i) {
                    Value::Text(b) => String::from_utf8_lossy(b).into_owned(),
                    other => excerpt(other),
                };
                if !self.catalog.migrations.contains(&name.as_str()) {
                    unknown.push(name);
                }
            }
        }
        if !unknown.is_empty() {
            return Err(Failure::new(format!(
                "{} was written by a newer Blocklet Server: its SequelizeMeta lists {} migration(s) this component does not know ({}). \
                 This component knows the Blocklet Server {} schema; use a newer migration component (--component FILE).",
                self.plan.sqlite_file,
                unknown.len(),
                unknown.join(", "),
                crate::catalog::SERVER_VERSION
            )));
        }
        Ok(())
    }

    /// The source's tables and their columns; every one must have a place in the target.
    fn source_tables(&self) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let file = &self.plan.sqlite_file;
        let names = self
            .source
            .list_tables()
            .map_err(|e| db_failure(&format!("listing tables of {file}"), e))?;
        let mut out = Vec::new();
        for name in names {
            if name == META_TABLE || name.starts_with("sqlite_") {
                continue;
            }
            let pg = self.catalog.table(&name).ok_or_else(|| {
                Failure::new(format!(
                    "{file} has a table {name} that the Blocklet Server {} schema does not have; refusing to leave its rows behind",
                    crate::catalog::SERVER_VERSION
                ))
            })?;
            let info = self
                .source
                .describe_table(&name)
                .map_err(|e| db_failure(&format!("describing {file} table {name}"), e))?
                .ok_or_else(|| {
                    Failure::new(format!("{file}: table {name} disappeared while reading"))
                })?;
            let extra: Vec<&str> = info
                .columns
                .iter()
                .filter(|c| pg.column(&c.name).is_none())
                .map(|c| c.name.as_str())
                .collect();
            if !extra.is_empty() {
                return Err(Failure::new(format!(
                    "{file} table {name} has column(s) {} that the Blocklet Server {} schema does not have; refusing to drop their values",
                    extra.join(", "),
                    crate::catalog::SERVER_VERSION
                )));
            }
            out.push((name, info.columns.into_iter().map(|c| c.name).collect()));
        }
        Ok(out)
    }

    /// Refuse a target holding Blocklet rows unless forced; clear whatever Blocklet objects it has.
    fn prepare_target(&self) -> Result<(), Failure> {
        let db = &self.plan.postgres_database;
        let existing = self
            .target
            .list_tables()
            .map_err(|e| db_failure(&format!("listing tables of {db}"), e))?;
        let mut ours = Vec::new();
        for table in &existing {
            if table == META_TABLE {
                ours.push(table.clone());
                continue;
            }
            if self.catalog.table(table).is_none() {
                self.events.log(Level::Warn, &format!("{db}: leaving table {table}, which is not part of Blocklet Server's schema, untouched"));
                continue;
            }
            let rows = self
                .target
                .count_rows(table)
                .map_err(|e| db_failure(&format!("counting {db}.{table}"), e))?;
            if rows > 0 && !self.options.force {
                return Err(Failure::new(format!(
                    "PostgreSQL database {db} already holds Blocklet Server data ({table}: {rows} rows); \
                     re-run with --force to replace it"
                )));
            }
            ours.push(table.clone());
        }
        if ours.is_empty() {
            return Ok(());
        }
        self.events.log(
            Level::Info,
            &format!("{db}: replacing {} existing Blocklet table(s)", ours.len()),
        );
        for table in &ours {
            self.execute(&format!(
                "DROP TABLE IF EXISTS public.{} CASCADE",
                quote_ident(table)
            ))?;
        }
        for name in self.catalog.schema.enums.keys() {
            self.execute(&format!(
                "DROP TYPE IF EXISTS public.{} CASCADE",
                quote_ident(name)
            ))?;
        }
        for seq in &self.catalog.schema.sequences {
            self.execute(&format!(
                "DROP SEQUENCE IF EXISTS public.{} CASCADE",
                quote_ident(&seq.name)
            ))?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str) -> Result<u64, Failure> {
        self.target.execute(sql).map_err(|e| {
            Failure::new(format!(
                "{}: {e}\n  while running: {}",
                self.plan.postgres_database,
                first_line(sql)
            ))
        })
    }

    fn run_phase(&mut self, phase: Phase) -> Result<(), Failure> {
        for stmt in self
            .catalog
            .schema
            .statements
            .iter()
            .filter(|s| s.phase == phase)
        {
            let Some(enforces) = &stmt.enforces else {
                self.execute(&stmt.sql)?;
                continue;
            };
            // A key that the data violates is explained row by row, and the job goes on to
            // find every other problem before failing.
            self.execute("SAVEPOINT enforce_key")?;
            match self.target.execute(&stmt.sql) {
                Ok(_) => {
                    self.execute("RELEASE SAVEPOINT enforce_key")?;
                }
                Err(e) if e.kind == ErrorKind::Constraint => {
                    self.execute("ROLLBACK TO SAVEPOINT enforce_key")?;
                    let found = match enforces {
                        Enforces::Unique { table, key } => self.explain_duplicates(table, key)?,
                        Enforces::Foreign(fk) => self.explain_orphans(fk)?,
                    };
                    if found == 0 {
                        return Err(Failure::new(format!(
                            "{}: {e}",
                            self.plan.postgres_database
                        )));
                    }
                }
                Err(e) => {
                    return Err(Failure::new(format!(
                        "{}: {e}\n  while running: {}",
                        self.plan.postgres_database,
                        first_line(&stmt.sql)
                    )));
                }
            }
        }
        Ok(())
    }

    fn copy_table(&mut self, pg: &PgTable, source_columns: &[String]) -> Result<Copied, Failure> {
        let (db, file, table) = (
            &self.plan.postgres_database,
            &self.plan.sqlite_file,
            &pg.name,
        );
        let columns: Vec<String> = pg
            .columns
            .iter()
            .filter(|c| source_columns.contains(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let targets: Vec<&PgColumn> = columns
            .iter()
            .map(|c| pg.column(c).expect("filtered"))
            .collect();
        let total = self
            .source
            .count_rows(table)
            .map_err(|e| db_failure(&format!("counting {file} table {table}"), e))?;
        if total > 0
            && let Some(missing) = pg
                .columns
                .iter()
                .find(|c| !columns.contains(&c.name) && c.not_null && c.default.is_none())
        {
            return Err(Failure::new(format!(
                "{file} table {table} has no column {}, which PostgreSQL requires (NOT NULL, no default)",
                missing.name
            )));
        }
        let identity: Vec<usize> = pg
            .identity_columns()
            .iter()
            .filter_map(|k| columns.iter().position(|c| c == k))
            .collect();
        let mut cursor = self
            .source
            .read(table, &columns, &[], self.options.batch_rows)
            .map_err(|e| db_failure(&format!("reading {file} table {table}"), e))?;
        let mut writer = self
            .target
            .bulk_load(table, &columns)
            .map_err(|e| db_failure(&format!("loading {db}.{table}"), e))?;
        let mut checksum = TableChecksum::default();
        let mut source_rows = 0u64;
        let mut progress_at = 0u64;
        while let Some(batch) = cursor
            .next_batch()
            .map_err(|e| db_failure(&format!("reading {file} table {table}"), e))?
        {
            batch.validate(columns.len()).map_err(|e| {
                Failure::new(format!(
                    "the host returned a malformed batch of {file} table {table}: {e}"
                ))
            })?;
            let converted = convert::to_postgres(&batch, &targets, &self.catalog.schema.enums);
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
                    self.events.reject(&Rejection {
                        database: db.clone(),
                        table: table.clone(),
                        primary_key,
                        column: columns[r.column].clone(),
                        value_excerpt: batch.columns[r.column].excerpt(r.row),
                        reason: r.reason.clone(),
                    });
                }
                self.rejected_rows += rows.len() as u64;
            }
            if converted.batch.rows > 0 {
                writer
                    .write(&converted.batch)
                    .map_err(|e| db_failure(&format!("loading {db}.{table}"), e))?;
            }
            converted
                .row_hashes
                .iter()
                .for_each(|h| checksum.add_row(*h));
            source_rows += batch.rows as u64;
            if source_rows - progress_at >= 10_000 || source_rows == total {
                progress_at = source_rows;
                self.events
                    .progress(db, table, source_rows, total.max(source_rows));
            }
        }
        drop(cursor);
        let written = writer
            .finish()
            .map_err(|e| db_failure(&format!("loading {db}.{table}"), e))?;
        if written != checksum.rows {
            return Err(Failure::new(format!(
                "{db}.{table}: PostgreSQL accepted {written} rows, {} were sent",
                checksum.rows
            )));
        }
        Ok(Copied {
            table: table.clone(),
            columns,
            source_rows,
            checksum,
        })
    }

    /// Every serial id continues after the largest copied id (the original left them at 1).
    fn set_sequences(&self) -> Result<(), Failure> {
        for seq in &self.catalog.schema.sequences {
            self.execute(&format!(
                "SELECT setval({}, COALESCE((SELECT max({}) FROM public.{}), 0) + 1, false)",
                quote_literal(&format!("public.{}", quote_ident(&seq.name))),
                quote_ident(&seq.column),
                quote_ident(&seq.table)
            ))?;
        }
        Ok(())
    }

    /// Record every migration of the schema just created, so the server sees it as current.
    fn fill_meta(&self) -> Result<(), Failure> {
        let values: Vec<String> = self
            .catalog
            .migrations
            .iter()
            .map(|m| format!("({})", quote_literal(m)))
            .collect();
        if !values.is_empty() {
            self.execute(&format!(
                "INSERT INTO public.{} (name) VALUES {}",
                quote_ident(META_TABLE),
                values.join(", ")
            ))?;
        }
        Ok(())
    }

    /// `concat_ws` expression naming a row by its identity columns.
    fn identity_sql(&self, table: &PgTable, alias: &str) -> String {
        let cols = table.identity_columns();
        if cols.is_empty() {
            return format!("'ctid ' || {alias}.ctid::text");
        }
        let parts: Vec<String> = cols
            .iter()
            .map(|c| {
                format!(
                    "{} || coalesce({alias}.{}::text, 'NULL')",
                    quote_literal(&format!("{c}=")),
                    quote_ident(c)
                )
            })
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    }

    fn query_text_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, Failure> {
        let batch = self.target.query(sql).map_err(|e| {
            db_failure(
                &format!("{}: checking keys", self.plan.postgres_database),
                e,
            )
        })?;
        Ok((0..batch.rows as usize)
            .map(|i| batch.columns.iter().map(|c| excerpt(c.get(i))).collect())
            .collect())
    }

    fn explain_duplicates(&mut self, table: &str, key: &UniqueKey) -> Result<usize, Failure> {
        let pg = self
            .catalog
            .table(table)
            .expect("keys belong to catalog tables");
        let cols: Vec<String> = key.columns.iter().map(|c| quote_ident(c)).collect();
        let t = format!("public.{}", quote_ident(table));
        let sql = format!(
            "SELECT {}, concat_ws(', ', {}) FROM {t} r WHERE ({}) IN (SELECT {} FROM {t} GROUP BY {} HAVING count(*) > 1) LIMIT {}",
            self.identity_sql(pg, "r"),
            cols.iter()
                .map(|c| format!("r.{c}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            cols.iter()
                .map(|c| format!("r.{c}"))
                .collect::<Vec<_>>()
                .join(", "),
            cols.join(", "),
            cols.join(", "),
            MAX_KEY_VIOLATIONS_LISTED
        );
        let rows = self.query_text_rows(&sql)?;
        for row in &rows {
            self.events.reject(&Rejection {
                database: self.plan.postgres_database.clone(),
                table: table.to_string(),
                primary_key: row[0].clone(),
                column: key.columns.join(", "),
                value_excerpt: row[1].clone(),
                reason: format!(
                    "duplicate value of unique key {} (SQLite did not enforce it; PostgreSQL does)",
                    key.name
                ),
            });
        }
        self.rejected_rows += rows.len() as u64;
        Ok(rows.len())
    }

    fn explain_orphans(&mut self, fk: &ForeignKey) -> Result<usize, Failure> {
        let pg = self
            .catalog
            .table(&fk.table)
            .expect("keys belong to catalog tables");
        let not_null: Vec<String> = fk
            .columns
            .iter()
            .map(|c| format!("c.{} IS NOT NULL", quote_ident(c)))
            .collect();
        let join: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .map(|(c, r)| format!("p.{} = c.{}", quote_ident(r), quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT {}, concat_ws(', ', {}) FROM public.{} c WHERE {} AND NOT EXISTS (SELECT 1 FROM public.{} p WHERE {}) LIMIT {}",
            self.identity_sql(pg, "c"),
            fk.columns
                .iter()
                .map(|c| format!("c.{}::text", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
            quote_ident(&fk.table),
            not_null.join(" AND "),
            quote_ident(&fk.ref_table),
            join.join(" AND "),
            MAX_KEY_VIOLATIONS_LISTED
        );
        let rows = self.query_text_rows(&sql)?;
        for row in &rows {
            self.events.reject(&Rejection {
                database: self.plan.postgres_database.clone(),
                table: fk.table.clone(),
                primary_key: row[0].clone(),
                column: fk.columns.join(", "),
                value_excerpt: row[1].clone(),
                reason: format!(
                    "refers to {}.{} = {}, which does not exist (foreign key {})",
                    fk.ref_table,
                    fk.ref_columns.join(", "),
                    row[1],
                    fk.name
                ),
            });
        }
        self.rejected_rows += rows.len() as u64;
        Ok(rows.len())
    }

    /// Read the table back from the target and compare count and checksum with the source.
    fn verify(&self, copied: &Copied) -> Result<TableReport, Failure> {
        let (db, table) = (&self.plan.postgres_database, &copied.table);
        let target_rows = self
            .target
            .count_rows(table)
            .map_err(|e| db_failure(&format!("verifying {db}.{table}"), e))?;
        let mut read_back = TableChecksum::default();
        if !copied.columns.is_empty() {
            let mut cursor = self
                .target
                .read(table, &copied.columns, &[], self.options.batch_rows)
                .map_err(|e| db_failure(&format!("verifying {db}.{table}"), e))?;
            while let Some(batch) = cursor
                .next_batch()
                .map_err(|e| db_failure(&format!("verifying {db}.{table}"), e))?
            {
                batch.validate(copied.columns.len()).map_err(|e| {
                    Failure::new(format!(
                        "the host returned a malformed batch of {db}.{table}: {e}"
                    ))
                })?;
                add_rows(&batch, &mut read_back)
                    .map_err(|e| Failure::new(format!("verifying {db}.{table}: {e}")))?;
            }
        }
        if target_rows != copied.checksum.rows || read_back != copied.checksum {
            return Err(Failure::new(format!(
                "verification failed for {db}.{table}: source {} rows (checksum {}), target {} rows (checksum {})",
                copied.checksum.rows,
                copied.checksum.hex(),
                target_rows,
                read_back.hex()
            )));
        }
        Ok(TableReport {
            table: table.clone(),
            source_rows: copied.source_rows,
            target_rows,
            rejected_rows: 0,
            checksum: copied.checksum.hex(),
        })
    }
}

/// Add every row of a batch read back from a target to a checksum.
pub fn add_rows(batch: &Batch, sum: &mut TableChecksum) -> Result<(), String> {
    for i in 0..batch.rows as usize {
        let mut h = canonical::row_start();
        for col in &batch.columns {
            h = canonical::chain(h, value_hash(col.get(i))?);
        }
        sum.add_row(h);
    }
    Ok(())
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("")
}
