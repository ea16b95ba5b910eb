//! What both directions do alike for each database: its own sandboxed instance, the source
//! and target handed to the component, the one call that migrates it, the handles taken back
//! whatever happened, and the success lines. The directions differ only in what they open,
//! how they schedule, and what they do with a target afterwards (commit it, or swap a file in).

use super::JobOptions;
use super::console;
use super::databases::admit_existing_target;
use super::events::ConsoleEvents;
use super::ledger::{self, Account};
use super::outcome::JobError;
use crate::backend::Database;
use crate::sandbox::{Conventions, Direction, Instance, JobClock, Limits, Runtime};
use crate::text::printable_message;
use crate::wit::{DatabaseReport, DbError, Options, PlannedDatabase};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use tokio::sync::MutexGuard;

/// What every database of a job shares.
pub(super) struct Shared<'a> {
    pub direction: Direction,
    pub options: &'a JobOptions,
    pub runtime: &'a Runtime,
    pub events: &'a ConsoleEvents,
    pub limits: Limits,
    pub clock: &'a JobClock,
    pub conventions: &'a Conventions,
    pub gate: Option<&'a super::StepGate>,
}

impl Shared<'_> {
    /// The caller's last word before anything commits ([`super::StepGate`]).
    pub async fn may_commit(&self) -> Result<(), JobError> {
        match self.gate {
            Some(gate) => {
                gate(super::Irreversible::Commit).await.map_err(|e| JobError::Failed(format!("not committed: {e}")))
            }
            None => Ok(()),
        }
    }

    /// Whether the databases this job created may be dropped after a failure; printed when not.
    pub async fn may_remove_created(&self, created: &[String]) -> bool {
        let Some(gate) = self.gate else { return true };
        match gate(super::Irreversible::RemoveCreated).await {
            Ok(()) => true,
            Err(e) => {
                if !created.is_empty() {
                    console::warn(&format!("not removing {}: {e}", created.join(", ")));
                }
                false
            }
        }
    }

    /// Refuse a database file that resolves outside the job's bound ([`super::JobOptions::confine_to`]).
    pub fn check_confined(&self, file: &std::path::Path) -> Result<(), JobError> {
        match &self.options.confine_to {
            Some(bound) => super::datadir::confined(bound, file).map_err(JobError::Config),
            None => Ok(()),
        }
    }
}

impl Shared<'_> {
    /// `--force` applies to PostgreSQL targets only: a SQLite target is always a new file.
    pub fn force(&self) -> bool {
        self.options.force && self.direction == Direction::ToPostgres
    }

    fn component_options(&self) -> Options {
        Options {
            force: self.force(),
            batch_rows: self.options.batch_rows,
            skip_rejects: self.options.skip_rejects,
            dry_run: self.options.dry_run,
            extra: Vec::new(),
        }
    }
}

/// A fresh sandboxed instance whose events go to `events`, working to the job's `clock`.
pub(super) async fn instance(
    runtime: &Runtime,
    events: ConsoleEvents,
    limits: Limits,
    clock: &JobClock,
) -> Result<Instance, JobError> {
    runtime.instantiate(Box::new(events), limits, clock.clone()).await.map_err(JobError::from_trap)
}

/// One database migrated: the target handed back (to commit or discard), and its report: the
/// host's own counts (a dry run: the component's predictions), with the component's checksums.
pub(super) struct Migrated {
    pub target: Option<Database>,
    pub outcome: Result<DatabaseReport, JobError>,
}

/// Migrate `db` from `source` to `target` in an instance of its own, so that databases run in
/// parallel. With a `setup_turn`, the turn is given up as soon as the component sends its
/// first rows: its setup is over, and the next database may set up while this one loads. A
/// target the job did not create (`existing_target`) is admitted first
/// ([`admit_existing_target`]), before the component sees either handle.
pub(super) async fn migrate_database(
    shared: &Shared<'_>,
    db: &PlannedDatabase,
    source: Database,
    target: Database,
    mut setup_turn: Option<MutexGuard<'_, ()>>,
    existing_target: bool,
) -> Migrated {
    let mut instance = match instance(shared.runtime, shared.events.clone(), shared.limits, shared.clock).await {
        Ok(instance) => instance,
        Err(e) => return Migrated { target: None, outcome: Err(e) },
    };
    if existing_target && let Database::Postgres(pg) = &target {
        let admitted = match planned_writes(shared, &mut instance, db, &source).await {
            Ok(writes) => admit_existing_target(pg, &writes).await,
            Err(e) => Err(e),
        };
        if let Err(e) = admitted {
            return Migrated { target: Some(target), outcome: Err(e) };
        }
    }
    instance.allow_drop(shared.force());
    instance.set_progress_scope(&db.postgres_database);
    let handles = instance.add_handle(source).and_then(|s| Ok((s, instance.add_handle(target)?)));
    let (source, target) = match handles {
        Ok(handles) => handles,
        Err(e) => return Migrated { target: None, outcome: Err(JobError::from_trap(e)) },
    };
    let options = shared.component_options();
    let outcome = if setup_turn.is_some() {
        let (loading_tx, loading) = tokio::sync::oneshot::channel();
        instance.on_first_rows(loading_tx);
        let migration = instance.migrate(shared.direction, db, &source, &target, options);
        tokio::pin!(migration);
        tokio::select! {
            biased;
            outcome = &mut migration => outcome,
            _ = loading => {
                setup_turn = None; // the next database may set up now
                migration.await
            }
        }
    } else {
        instance.migrate(shared.direction, db, &source, &target, options).await
    };
    drop(setup_turn);
    let (delivered, accepted) = (instance.tally(&source), instance.tally(&target));
    let rejects = instance.rejects_by_table();
    let source = instance.take_handle(source).ok();
    let target = instance.take_handle(target).ok();
    // Whatever the component still holds (an open COPY after a trap) goes before any cleanup.
    instance.release_all();
    let outcome = outcome.map_err(JobError::from_trap).and_then(|r| r.map_err(JobError::from_failure));
    let outcome = match (outcome, &source, &target) {
        (Ok(claimed), Some(source), Some(target)) if !shared.options.dry_run => {
            // The source is a pinned snapshot: counted now, it holds the rows the component
            // read, and the count stays off the path to the first row.
            let counts = ledger::count_source(source).await;
            match open_account(shared, &mut instance, db, counts).await {
                Ok(mut account) => {
                    for (table, rows) in &delivered.delivered {
                        account.delivered(table, *rows);
                    }
                    for (table, rows) in &accepted.accepted {
                        account.accepted(table, *rows);
                    }
                    for (table, rows) in &rejects {
                        account.rejected(table, *rows);
                    }
                    settle(&mut account, target, &claimed, shared.options.skip_rejects).await
                }
                Err(e) => Err(e),
            }
        }
        (outcome, _, _) => outcome,
    };
    Migrated { target, outcome }
}

/// Where the rows of each of `tables` (of `db`'s source) go, as the component says (WIT 1.3's
/// accounting; a component built before: into the same names, the meta table rebuilt).
async fn feeds(
    shared: &Shared<'_>,
    instance: &mut Instance,
    db: &PlannedDatabase,
    tables: &[String],
) -> Result<Vec<ledger::Feed>, JobError> {
    Ok(match instance.feeds(db, tables).await.map_err(JobError::from_trap)? {
        Some(feeds) => ledger::feeds_from_component(feeds),
        None => ledger::default_feeds(tables, &shared.conventions.meta_table),
    })
}

/// The tables the plan writes into `db`'s target: where the feeds send the source's tables,
/// and the meta table the component rebuilds.
async fn planned_writes(
    shared: &Shared<'_>,
    instance: &mut Instance,
    db: &PlannedDatabase,
    source: &Database,
) -> Result<BTreeSet<String>, JobError> {
    let name = &db.postgres_database;
    let tables = ledger::source_tables(source)
        .await
        .map_err(|e| JobError::Failed(format!("{name}: listing the source's tables: {}", e.message)))?;
    let mut writes: BTreeSet<String> = feeds(shared, instance, db, &tables)
        .await?
        .into_iter()
        .filter_map(|f| f.destination.copied_to().map(str::to_string))
        .collect();
    writes.insert(shared.conventions.meta_table.clone());
    Ok(writes)
}

/// Start the host's account of `db`: its own count of every source table (in the job's pinned
/// snapshot, so the same rows the component read) and where the component says each one goes.
async fn open_account(
    shared: &Shared<'_>,
    instance: &mut Instance,
    db: &PlannedDatabase,
    source_counts: Result<BTreeMap<String, u64>, DbError>,
) -> Result<Account, JobError> {
    let name = &db.postgres_database;
    let counts =
        source_counts.map_err(|e| JobError::Failed(format!("{name}: counting the source's tables: {}", e.message)))?;
    let tables: Vec<String> = counts.keys().cloned().collect();
    let feeds = feeds(shared, instance, db, &tables).await?;
    Account::new(name, counts, feeds).map_err(|e| JobError::Failed(printable_message(&e)))
}

/// Count every target table inside the transaction and decide, on the host's counts alone,
/// whether every source row is accounted for; the report then carries those counts.
async fn settle(
    account: &mut Account,
    target: &Database,
    claimed: &DatabaseReport,
    skip_rejects: bool,
) -> Result<DatabaseReport, JobError> {
    let name = account.database().to_string();
    account.count_targets(target).await;
    match account.settle(skip_rejects) {
        Ok(lines) => Ok(account.accounted_report(&lines, claimed)),
        Err(problems) => Err(JobError::Verification(format!(
            "{name}: the host's own count does not account for every source row; nothing committed:\n  {}",
            problems.iter().map(|p| printable_message(p)).collect::<Vec<_>>().join("\n  ")
        ))),
    }
}

/// The success lines for one database: `<Kind> <what>: [<app>: ]<file>`, then a line per table
/// with its source and target row counts under the `sides` names.
pub(super) fn announce(
    conventions: &Conventions,
    db: &PlannedDatabase,
    what: &str,
    file: &Path,
    report: &DatabaseReport,
    sides: (&str, &str),
) {
    let label = conventions.kind_label(db.kind);
    match &db.app_pid {
        Some(pid) => console::success(&format!("{label} {what}: {pid}: {}", file.display())),
        None => console::success(&format!("{label} {what}: {}", file.display())),
    }
    let (source, target) = sides;
    for t in &report.tables {
        console::detail(&format!("✅ Table \"{}\": {source}={}, {target}={}", t.table, t.source_rows, t.target_rows));
    }
}

/// Run `work` between the progress events of `database` starting and finishing.
pub(super) async fn tracked<T>(
    events: &ConsoleEvents,
    database: &str,
    work: impl Future<Output = T>,
    ok: impl FnOnce(&T) -> bool,
) -> T {
    let progress = events.progress();
    progress.database_started(database);
    let done = work.await;
    progress.database_finished(database, ok(&done));
    done
}
