//! SQLite → PostgreSQL: every database file of the data dir into a PostgreSQL database, each in
//! one transaction. The targets commit together only after every database verified; any
//! failure rolls every target back, ends the job's sessions and removes the databases this job
//! created; success writes the lock file that tells the server to use PostgreSQL.

use super::databases::{admin, check_target_name, clean_up};
use super::datadir::{DataDir, expand};
use super::flow::{Shared, announce, migrate_database, tracked};
use super::in_use::check_not_in_use;
use super::outcome::{JobError, gather};
use super::schedule::{each_database, largest_first};
use super::{Done, DoneDatabase, console};
use crate::backend::Database;
use crate::backend::discard::Discard;
use crate::backend::postgres::{IndexWorkers, PgDatabase, PgServer};
use crate::backend::sqlite::SqliteFile;
use crate::sandbox::Instance;
use crate::text::printable;
use crate::wit::{DatabaseReport, PlannedDatabase};
use std::path::{Path, PathBuf};

/// Run a whole SQLite → PostgreSQL job; `instance` plans it.
pub(super) async fn run(
    shared: &Shared<'_>,
    instance: &mut Instance,
    data_dir: &DataDir,
    server: &PgServer,
) -> Result<Done, JobError> {
    let root = &data_dir.root;
    let mut admin = admin(server).await?;
    instance.allow_drop(shared.force());
    let layout = instance.layout().await.map_err(JobError::from_trap)?;
    let mut files: Vec<String> = Vec::new();
    for pattern in &layout.patterns {
        files.extend(expand(root, pattern).map_err(|e| JobError::Config(e.to_string()))?);
    }
    files.dedup();
    for file in &files {
        // A snapshot of a live server is consistent, but the server keeps writing after it.
        check_not_in_use(&root.join(file), shared.options.allow_running_server)?;
    }
    console::info("Getting blocklets...");
    let index = if files.contains(&layout.index) {
        let source = SqliteFile::open(&root.join(&layout.index))
            .map_err(|e| JobError::Failed(format!("Failed to get blocklets: {e}")))?;
        Some(instance.add_handle(Database::Sqlite(source)).map_err(JobError::from_trap)?)
    } else {
        None
    };
    let plan = instance.plan_to_postgres(index.as_ref(), &files).await.map_err(JobError::from_trap)?;
    if let Some(index) = index {
        let _ = instance.take_handle(index);
    }
    let plan = plan.map_err(JobError::from_failure)?;
    for db in &plan {
        // The component chooses; the host only opens what belongs to this job.
        if !files.contains(&db.sqlite_file) {
            return Err(JobError::Failed(format!(
                "the migration component planned {}, which is not one of this data dir's database files",
                printable(&db.sqlite_file)
            )));
        }
        check_target_name(&db.postgres_database, server, shared.options.databases.as_deref())?;
        shared.check_confined(&root.join(&db.sqlite_file))?;
    }
    let existing = server.list_databases(&mut admin).await.map_err(JobError::Config)?;
    let all = migrate_all(shared, data_dir, server, &plan, &existing).await;
    let result = match all.outcome {
        Ok(reports) if shared.options.dry_run => {
            drop(all.targets); // rolled back: a dry run commits nothing
            return Ok(done(root, reports, None));
        }
        Ok(reports) => match shared.may_commit().await {
            Ok(()) => commit_all(&all.targets).await.map(|_| reports),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(reports) => {
            let lock_file = root.join(&shared.conventions.lock_file);
            let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            std::fs::write(&lock_file, stamp)
                .map_err(|e| JobError::Failed(format!("migrated, but cannot write {}: {e}", lock_file.display())))?;
            Ok(done(root, reports, Some(lock_file)))
        }
        Err(e) => {
            // Roll back: closing a target connection aborts its transaction. What the
            // component still holds (an open COPY after a trap) goes first.
            instance.release_all();
            drop(all.targets);
            let created = if shared.may_remove_created(&all.created).await { &all.created[..] } else { &[] };
            clean_up(server, &mut admin, created).await;
            Err(e)
        }
    }
}

fn done(root: &Path, reports: Vec<(PlannedDatabase, DatabaseReport)>, lock_file: Option<PathBuf>) -> Done {
    let databases = reports
        .into_iter()
        .map(|(planned, report)| DoneDatabase {
            path: root.join(&planned.sqlite_file),
            planned,
            report,
            backups: Vec::new(),
        })
        .collect();
    Done { databases, lock_file }
}

/// Every database migrated (or not), with what a rollback must undo.
struct AllDatabases {
    /// Databases this job created, to remove if it fails.
    created: Vec<String>,
    /// Open targets, to commit or roll back together.
    targets: Vec<PgDatabase>,
    outcome: Result<Vec<(PlannedDatabase, DatabaseReport)>, JobError>,
}

/// One database's migration, with what it left behind.
struct OneDatabase {
    created: bool,
    migrated: super::flow::Migrated,
}

async fn migrate_all(
    shared: &Shared<'_>,
    data_dir: &DataDir,
    server: &PgServer,
    plan: &[PlannedDatabase],
    existing: &[String],
) -> AllDatabases {
    let setting_up = tokio::sync::Mutex::new(());
    let order = largest_first(plan.len(), |i| source_bytes(&data_dir.root.join(&plan[i].sqlite_file)));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let at_once = shared.options.parallel.clamp(1, plan.len().max(1));
    let index_workers = IndexWorkers::for_run(server.is_local(), cores, at_once);
    let mut outcomes = each_database(shared.options.parallel, &order, |i| {
        let db = &plan[i];
        let exists = existing.contains(&db.postgres_database);
        tracked(
            shared.events,
            &db.postgres_database,
            migrate_one(shared, data_dir, server, db, exists, &setting_up, index_workers),
            |one: &OneDatabase| one.migrated.outcome.is_ok(),
        )
    })
    .await;
    outcomes.sort_by_key(|(i, _)| *i);
    let mut created = Vec::new();
    let mut targets = Vec::new();
    let mut labelled = Vec::new();
    for (i, one) in outcomes {
        let db = &plan[i];
        if one.created {
            created.push(db.postgres_database.clone());
        }
        if let Some(Database::Postgres(target)) = one.migrated.target {
            targets.push(target);
        }
        let label = data_dir.root.join(&db.sqlite_file).display().to_string();
        labelled.push((label, one.migrated.outcome.map(|report| (db.clone(), report))));
    }
    AllDatabases { created, targets, outcome: gather(labelled) }
}

/// Set up and migrate one database. One database sets up at a time (CREATE DATABASE,
/// connections, checks, schema), until its first rows are sent: concurrent CREATE DATABASEs
/// only slow each other down (each copies the template), and the largest database, scheduled
/// first, reaches its data soonest. (Giving the turn up when its first table starts loading is
/// too early: the next database's source checks then delay the first one's first rows by
/// 10–20 ms when every component runs on one thread.)
async fn migrate_one(
    shared: &Shared<'_>,
    data_dir: &DataDir,
    server: &PgServer,
    db: &PlannedDatabase,
    exists: bool,
    setting_up: &tokio::sync::Mutex<()>,
    index_workers: IndexWorkers,
) -> OneDatabase {
    let failed =
        |created, e| OneDatabase { created, migrated: super::flow::Migrated { target: None, outcome: Err(e) } };
    let setup_turn = setting_up.lock().await;
    let dry_run = shared.options.dry_run;
    let mut created = false;
    let target = if dry_run && !exists {
        Database::Discard(Discard::new(&db.postgres_database))
    } else {
        if !dry_run && !exists {
            let made = match admin_connection(server).await {
                Ok(mut admin) => {
                    server.ensure_database(&mut admin, &db.postgres_database).await.map_err(JobError::Config)
                }
                Err(e) => Err(e),
            };
            match made {
                Ok(made) => created = made,
                Err(e) => return failed(false, e),
            }
        }
        Database::Postgres(PgDatabase::open(server.options(), &db.postgres_database, index_workers))
    };
    let path = data_dir.root.join(&db.sqlite_file);
    let source = match SqliteFile::open(&path) {
        Ok(source) => source,
        Err(e) => return failed(created, JobError::Failed(e.message)),
    };
    let migrated = migrate_database(shared, db, Database::Sqlite(source), target, Some(setup_turn), exists).await;
    if let Ok(report) = &migrated.outcome {
        let done = if dry_run { "checked (dry run)" } else { "successfully migrated" };
        announce(shared.conventions, db, &format!("schema {done}"), &path, report, ("SQLite", "Postgres"));
    }
    OneDatabase { created, migrated }
}

/// A connection for CREATE DATABASE (no version check: the job's admin connection did it).
async fn admin_connection(server: &PgServer) -> Result<sqlx::PgConnection, JobError> {
    server.connect_admin().await.map_err(JobError::Config)
}

/// A SQLite database's size on disk, with its WAL: how much work migrating it is.
fn source_bytes(file: &Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", file.display()));
    [file, wal.as_path()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

/// Commit every target at once: PostgreSQL has no atomic commit across databases (without
/// prepared transactions, which servers disable by default), so the window in which some are
/// committed and others not is kept to one round trip.
async fn commit_all(targets: &[PgDatabase]) -> Result<(), JobError> {
    let results = futures_util::future::join_all(targets.iter().map(|t| t.commit())).await;
    // Each error names its database already.
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(|e| e.message.clone())).collect();
    if failed.is_empty() {
        return Ok(());
    }
    let done: Vec<&str> = targets.iter().zip(&results).filter(|(_, r)| r.is_ok()).map(|(t, _)| t.database()).collect();
    Err(JobError::Failed(format!(
        "committing failed ({}); committed: {}",
        failed.join("; "),
        if done.is_empty() { "none".to_string() } else { done.join(", ") }
    )))
}
