//! Migrating one Blocklet Server database from SQLite to PostgreSQL.
//!
//! The flow, all inside the target's one transaction (the host commits it only when every
//! database of the job succeeded):
//! 1. check the source: its meta table (`SequelizeMeta`) may only name migrations this component knows,
//!    and every table and column must have a place in the target schema;
//! 2. refuse a target that already holds Blocklet rows (unless forced; then replace them);
//! 3. create the enum types; then, table by table, parents first, create the table (with its
//!    sequences and defaults) and copy its rows, converting each value and reporting every
//!    value that cannot be converted faithfully;
//! 4. set every sequence past its max id and fill the meta table;
//! 5. add keys, indexes and foreign keys after the data; a violation is explained row by row;
//! 6. verify each table: the target's row count and checksum, read back, equal the source's.

use super::{
    Copied, DatabaseReport, Endpoints, Failure, Options, TableReport, check_known_migrations, copy_table, db_failure,
    source_tables, verify_table,
};
use crate::batch::{Value, excerpt};
use crate::canonical::value_hash;
use crate::catalog::{Catalog, META_TABLE};
use crate::convert;
use crate::db::{Database, ErrorKind, Events, Level, Rejection};
use crate::ddl::{Enforces, ForeignKey, PgColumn, PgTable, Phase, UniqueKey};
use crate::plan::Planned;
use crate::sql::{first_line, quote_ident, quote_literal};

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

/// Migrate `plan`'s SQLite `source` into the PostgreSQL `target`.
pub fn migrate_to_postgres(
    plan: &Planned,
    source: &dyn Database,
    target: &dyn Database,
    options: &Options,
    events: &dyn Events,
) -> Result<DatabaseReport, Failure> {
    let mut job = Job { plan, catalog: plan.kind.catalog(), source, target, options, events, rejected_rows: 0 };
    job.run()
}

impl Job<'_> {
    fn run(&mut self) -> Result<DatabaseReport, Failure> {
        check_known_migrations(self.source, &self.plan.sqlite_file, self.catalog)?;
        let source_tables = source_tables(self.source, &self.plan.sqlite_file, self.catalog)?;
        self.prepare_target()?;
        // Each table's schema is created just before its rows: the first rows go out after one
        // table's DDL instead of the whole schema's (the same statements, in a different order).
        self.create_tables(None)?;
        let mut copied = Vec::new();
        for table in &self.catalog.load_order {
            self.create_tables(Some(table))?;
            let pg = self.catalog.table(table).expect("load order lists catalog tables");
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
                    copied.push(Copied::empty(table));
                }
            }
        }
        self.create_remaining_tables()?;
        self.set_sequences()?;
        self.fill_meta()?;
        let skipped = self.rejected_rows;
        if skipped == 0 || self.options.skip_rejects || self.options.dry_run {
            self.run_phase(Phase::PostData)?;
            self.run_phase(Phase::ForeignKeys)?;
        }
        let key_violations = self.rejected_rows - skipped;
        if self.options.dry_run {
            // A dry run reports what it found instead of failing on it.
            let tables = copied.iter().map(Copied::predicted).collect();
            return Ok(DatabaseReport { tables, rejected_rows: self.rejected_rows });
        }
        if key_violations > 0 {
            return Err(Failure::rejected(
                format!(
                    "{key_violations} row(s) of {} violate keys PostgreSQL enforces (fix them in the source: \
                     --skip-rejects only skips values that cannot be converted); nothing was committed",
                    self.plan.sqlite_file
                ),
                self.rejected_rows,
            ));
        }
        if skipped > 0 && !self.options.skip_rejects {
            return Err(Failure::rejected(
                format!(
                    "{skipped} row(s) of {} cannot be migrated faithfully; nothing was committed",
                    self.plan.sqlite_file
                ),
                skipped,
            ));
        }
        let tables = copied.iter().map(|c| self.verify(c)).collect::<Result<Vec<_>, _>>()?;
        Ok(DatabaseReport { tables, rejected_rows: skipped })
    }

    /// Refuse a target holding Blocklet rows unless forced; clear whatever Blocklet objects it has.
    fn prepare_target(&self) -> Result<(), Failure> {
        let db = &self.plan.postgres_database;
        let existing = self.target.list_tables().map_err(|e| db_failure(&format!("listing tables of {db}"), e))?;
        let mut ours = Vec::new();
        for table in &existing {
            if table == META_TABLE {
                ours.push(table.clone());
                continue;
            }
            if self.catalog.table(table).is_none() {
                self.events.log(
                    Level::Warn,
                    &format!("{db}: leaving table {table}, which is not part of Blocklet Server's schema, untouched"),
                );
                continue;
            }
            let rows = self.target.count_rows(table).map_err(|e| db_failure(&format!("counting {db}.{table}"), e))?;
            if rows > 0 && !self.options.force {
                return Err(Failure::refused(format!(
                    "PostgreSQL database {db} already holds Blocklet Server data ({table}: {rows} rows); \
                     re-run with --force to replace it"
                )));
            }
            ours.push(table.clone());
        }
        if ours.is_empty() {
            return Ok(());
        }
        if !self.options.force {
            // Empty, but perhaps another version's schema: replacing it is the user's call.
            return Err(Failure::refused(format!(
                "PostgreSQL database {db} already has {} Blocklet Server table(s) (no rows); re-run with --force to replace them",
                ours.len()
            )));
        }
        self.events.log(Level::Info, &format!("{db}: replacing {} existing Blocklet table(s)", ours.len()));
        for table in &ours {
            self.execute(&format!("DROP TABLE IF EXISTS public.{} CASCADE", quote_ident(table)))?;
        }
        for name in self.catalog.schema.enums.keys() {
            self.execute(&format!("DROP TYPE IF EXISTS public.{} CASCADE", quote_ident(name)))?;
        }
        for seq in &self.catalog.schema.sequences {
            self.execute(&format!("DROP SEQUENCE IF EXISTS public.{} CASCADE", quote_ident(&seq.name)))?;
        }
        Ok(())
    }

    fn execute(&self, sql: &str) -> Result<u64, Failure> {
        self.target.execute(sql).map_err(|e| {
            Failure::new(format!("{}: {e}\n  while running: {}", self.plan.postgres_database, first_line(sql)))
        })
    }

    /// Run a run of statements that are not expected to fail one by one as one script.
    fn run_script(&self, script: &mut Vec<&str>) -> Result<(), Failure> {
        if script.is_empty() {
            return Ok(());
        }
        let result = match script.as_slice() {
            [one] => self.target.execute(one).map(|_| ()),
            all => self.target.execute_script(all),
        };
        result.map_err(|e| {
            Failure::new(format!(
                "{}: {e}\n  while running {} schema statement(s) from: {}",
                self.plan.postgres_database,
                script.len(),
                first_line(script[0])
            ))
        })?;
        script.clear();
        Ok(())
    }

    /// Run the pre-data statements that belong to `table`, or with `None`, those that belong to
    /// no table (enum types), as one script.
    fn create_tables(&self, table: Option<&String>) -> Result<(), Failure> {
        self.run_pre_data(|t| t == table)
    }

    /// The pre-data of tables outside the load order (the meta table), in dump order.
    fn create_remaining_tables(&self) -> Result<(), Failure> {
        self.run_pre_data(|t| t.is_some_and(|t| !self.catalog.load_order.contains(t)))
    }

    /// The pre-data statements whose table `belongs` picks, in dump order, as one script.
    fn run_pre_data(&self, belongs: impl Fn(Option<&String>) -> bool) -> Result<(), Failure> {
        let mut script: Vec<&str> = self
            .catalog
            .schema
            .statements
            .iter()
            .filter(|s| s.phase == Phase::PreData && belongs(s.table.as_ref()))
            .map(|s| s.sql.as_str())
            .collect();
        self.run_script(&mut script)
    }

    fn run_phase(&mut self, phase: Phase) -> Result<(), Failure> {
        // Statements that enforce nothing go together (one round trip); a key, which the data
        // may violate, runs alone so that a violation can be explained.
        let mut script: Vec<&str> = Vec::new();
        for stmt in self.catalog.schema.statements.iter().filter(|s| s.phase == phase) {
            let Some(enforces) = &stmt.enforces else {
                script.push(&stmt.sql);
                continue;
            };
            self.run_script(&mut script)?;
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
                        return Err(Failure::new(format!("{}: {e}", self.plan.postgres_database)));
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
        self.run_script(&mut script)?;
        Ok(())
    }

    fn copy_table(&mut self, pg: &PgTable, source_columns: &[String]) -> Result<Copied, Failure> {
        let (file, table) = (&self.plan.sqlite_file, &pg.name);
        let columns: Vec<String> =
            pg.columns.iter().filter(|c| source_columns.contains(&c.name)).map(|c| c.name.clone()).collect();
        let targets: Vec<&PgColumn> = columns.iter().map(|c| pg.column(c).expect("filtered")).collect();
        if let Some(missing) =
            pg.columns.iter().find(|c| !columns.contains(&c.name) && c.not_null && c.default.is_none())
        {
            let rows =
                self.source.count_rows(table).map_err(|e| db_failure(&format!("counting {file} table {table}"), e))?;
            if rows > 0 {
                return Err(Failure::new(format!(
                    "{file} table {table} has no column {}, which PostgreSQL requires (NOT NULL, no default)",
                    missing.name
                )));
            }
        }
        let ends = Endpoints {
            source: self.source,
            source_label: file,
            target: self.target,
            target_label: &self.plan.postgres_database,
            events: self.events,
            batch_rows: self.options.batch_rows,
        };
        let enums = &self.catalog.schema.enums;
        let copied = copy_table(&ends, pg, columns, |batch| convert::to_postgres(batch, &targets, enums))?;
        self.rejected_rows += copied.rejected_rows;
        Ok(copied)
    }

    /// Every serial id continues after the largest copied id (the original left them at 1).
    fn set_sequences(&self) -> Result<(), Failure> {
        let used = self.sqlite_sequence()?;
        for seq in &self.catalog.schema.sequences {
            // SQLite hands out AUTOINCREMENT ids above sqlite_sequence.seq even after the rows
            // with the highest ids were deleted; PostgreSQL must not reuse them either.
            let floor = used.iter().find(|(t, _)| *t == seq.table).map_or(0, |(_, n)| *n).max(0);
            self.execute(&format!(
                "SELECT setval({}, GREATEST(COALESCE((SELECT max({}) FROM public.{}), 0), {floor}) + 1, false)",
                quote_literal(&format!("public.{}", quote_ident(&seq.name))),
                quote_ident(&seq.column),
                quote_ident(&seq.table)
            ))?;
        }
        Ok(())
    }

    /// The source's `sqlite_sequence`: the largest id each AUTOINCREMENT table ever handed out.
    fn sqlite_sequence(&self) -> Result<Vec<(String, i64)>, Failure> {
        let file = &self.plan.sqlite_file;
        let what = || format!("reading sqlite_sequence of {file}");
        if self.source.describe_table("sqlite_sequence").map_err(|e| db_failure(&what(), e))?.is_none() {
            return Ok(Vec::new());
        }
        let columns = ["name".to_string(), "seq".to_string()];
        let mut cursor =
            self.source.read("sqlite_sequence", &columns, &[], 1000).map_err(|e| db_failure(&what(), e))?;
        let mut out = Vec::new();
        while let Some(batch) = cursor.next_batch().map_err(|e| db_failure(&what(), e))? {
            for i in 0..batch.rows as usize {
                if let (Value::Text(name), Value::Integer(seq)) = (batch.columns[0].get(i), batch.columns[1].get(i)) {
                    out.push((String::from_utf8_lossy(name).into_owned(), seq));
                }
            }
        }
        Ok(out)
    }

    /// Record every migration of the schema just created, so the server sees it as current.
    fn fill_meta(&self) -> Result<(), Failure> {
        let values: Vec<String> = self.catalog.migrations.iter().map(|m| format!("({})", quote_literal(m))).collect();
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
                format!("{} || coalesce({alias}.{}::text, 'NULL')", quote_literal(&format!("{c}=")), quote_ident(c))
            })
            .collect();
        format!("concat_ws(', ', {})", parts.join(", "))
    }

    fn query_text_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, Failure> {
        let batch = self
            .target
            .query(sql)
            .map_err(|e| db_failure(&format!("{}: checking keys", self.plan.postgres_database), e))?;
        Ok((0..batch.rows as usize).map(|i| batch.columns.iter().map(|c| excerpt(c.get(i))).collect()).collect())
    }

    fn explain_duplicates(&mut self, table: &str, key: &UniqueKey) -> Result<usize, Failure> {
        let pg = self.catalog.table(table).expect("keys belong to catalog tables");
        let cols: Vec<String> = key.columns.iter().map(|c| quote_ident(c)).collect();
        let t = format!("public.{}", quote_ident(table));
        let sql = format!(
            "SELECT {}, concat_ws(', ', {}) FROM {t} r WHERE ({}) IN (SELECT {} FROM {t} GROUP BY {} HAVING count(*) > 1) LIMIT {}",
            self.identity_sql(pg, "r"),
            cols.iter().map(|c| format!("r.{c}::text")).collect::<Vec<_>>().join(", "),
            cols.iter().map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", "),
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
        let pg = self.catalog.table(&fk.table).expect("keys belong to catalog tables");
        let not_null: Vec<String> = fk.columns.iter().map(|c| format!("c.{} IS NOT NULL", quote_ident(c))).collect();
        let join: Vec<String> = fk
            .columns
            .iter()
            .zip(&fk.ref_columns)
            .map(|(c, r)| format!("p.{} = c.{}", quote_ident(r), quote_ident(c)))
            .collect();
        let sql = format!(
            "SELECT {}, concat_ws(', ', {}) FROM public.{} c WHERE {} AND NOT EXISTS (SELECT 1 FROM public.{} p WHERE {}) LIMIT {}",
            self.identity_sql(pg, "c"),
            fk.columns.iter().map(|c| format!("c.{}::text", quote_ident(c))).collect::<Vec<_>>().join(", "),
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

    fn verify(&self, copied: &Copied) -> Result<TableReport, Failure> {
        verify_table(self.target, &self.plan.postgres_database, copied, self.options.batch_rows, |_, v| value_hash(v))
    }
}
