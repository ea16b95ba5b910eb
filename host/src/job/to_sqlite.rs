//! PostgreSQL → SQLite: the databases on the server written back into the data dir's files.
//! Each file is built beside its destination under a temporary name, committed and synced
//! there as soon as it verified, and moved into place only after every file verified; the
//! files it replaces are kept as backups ([`super::swap`]); any failure ends the job's sessions
//! on the server, deletes the temporary files and leaves the old ones untouched. Success
//! removes the lock file.

use super::databases::{admin, check_target_name, clean_up};
use super::datadir::{DataDir, matches_pattern};
use super::flow::{Shared, announce, migrate_database, tracked};
use super::in_use::check_not_in_use;
use super::outcome::{JobError, gather};
use super::schedule::{each_database, largest_first};
use super::swap::{backup_stamp, remove_with_sidecars, swap_in, temporary_path};
use super::{Done, DoneDatabase, console};
use crate::backend::Database;
use crate::backend::postgres::{PgDatabase, PgServer};
use crate::backend::sqlite::SqliteFile;
use crate::sandbox::Instance;
use crate::text::printable;
use crate::wit::{DatabaseReport, PlannedDatabase};
use std::path::PathBuf;

/// A file built and verified under its temporary name (committed and synced unless a dry run).
struct Built {
    planned: PlannedDatabase,
    report: DatabaseReport,
    tmp: PathBuf,
    file: SqliteFile,
}

/// Run a whole PostgreSQL → SQLite job; `instance` plans it.
pub(super) async fn run(
    shared: &Shared<'_>,
    instance: &mut Instance,
    data_dir: &DataDir,
    server: &PgServer,
) -> Result<Done, JobError> {
    let root = &data_dir.root;
    let index_database = &shared.conventions.index_database;
    let mut admin = admin(server).await?;
    let databases = server.list_databases(&mut admin).await.map_err(JobError::Config)?;
    if !databases.contains(index_database) {
        return Err(JobError::Config(format!(
            "PostgreSQL at {} has no {index_database}: nothing to migrate back (was this server migrated to PostgreSQL?)",
            server.address
        )));
    }
    let bound = shared.options.databases.as_deref();
    check_target_name(index_database, server, bound)?;
    console::info("Getting blocklets...");
    let index =
        PgDatabase::open_source(server.options(), index_database).await.map_err(|e| JobError::Failed(e.message))?;
    let index = instance.add_handle(Database::Postgres(index)).map_err(JobError::from_trap)?;
    let plan = instance.plan_to_sqlite(&index, &databases).await.map_err(JobError::from_trap);
    let _ = instance.take_handle(index);
    let plan = plan?.map_err(JobError::from_failure)?;
    let layout = instance.layout().await.map_err(JobError::from_trap)?;
    for db in &plan {
        if !layout.patterns.iter().any(|p| matches_pattern(p, &db.sqlite_file)) {
            return Err(JobError::Failed(format!(
                "the migration component planned to write {}, which is not a database file of the layout",
                printable(&db.sqlite_file)
            )));
        }
        if !databases.contains(&db.postgres_database) {
            return Err(JobError::Failed(format!(
                "the migration component planned to read {}, which is not on the server",
                printable(&db.postgres_database)
            )));
        }
        check_target_name(&db.postgres_database, server, bound)?;
        shared.check_confined(&root.join(&db.sqlite_file))?;
    }
    for db in &plan {
        check_not_in_use(&root.join(&db.sqlite_file), shared.options.allow_running_server)?;
    }
    let names: Vec<String> = plan.iter().map(|db| db.postgres_database.clone()).collect();
    let sizes = server.database_sizes(&mut admin, &names).await.map_err(JobError::Config)?;
    drop(admin);
    let order = largest_first(plan.len(), |i| sizes[i]);
    let mut outcomes = each_database(shared.options.parallel, &order, |i| {
        let db = &plan[i];
        tracked(shared.events, &db.postgres_database, build_one(shared, data_dir, server, db), Result::is_ok)
    })
    .await;
    outcomes.sort_by_key(|(i, _)| *i);
    let built = gather(outcomes.into_iter().map(|(i, outcome)| (plan[i].postgres_database.clone(), outcome)));
    let built = match built {
        Ok(built) => built,
        Err(e) => {
            // Every file that did build goes too; so does any temporary file a build left, and
            // any statement the component left running on a source.
            instance.release_all();
            remove_temporary_files(shared, root, &plan).await;
            if let Ok(mut admin) = super::databases::admin(server).await {
                clean_up(server, &mut admin, &[]).await;
            }
            return Err(e);
        }
    };
    if shared.options.dry_run {
        let databases = built
            .into_iter()
            .map(|b| DoneDatabase {
                path: root.join(&b.planned.sqlite_file),
                planned: b.planned,
                report: b.report,
                backups: Vec::new(),
            })
            .collect();
        return Ok(Done { databases, lock_file: None });
    }
    // Every file verified and synced: now swap them in, keeping what they replace.
    if let Err(e) = shared.may_commit().await {
        remove_temporary_files(shared, root, &plan).await;
        return Err(e);
    }
    let stamp = backup_stamp();
    let mut databases = Vec::new();
    for Built { planned, report, tmp, file } in built {
        drop(file);
        let dest = root.join(&planned.sqlite_file);
        let backups = swap_in(&tmp, &dest, &stamp)?;
        databases.push(DoneDatabase { planned, report, path: dest, backups });
    }
    let lock = root.join(&shared.conventions.lock_file);
    let lock_file = if lock.exists() {
        std::fs::remove_file(&lock).map_err(|e| JobError::Failed(format!("cannot remove {}: {e}", lock.display())))?;
        Some(lock)
    } else {
        None
    };
    Ok(Done { databases, lock_file })
}

/// Remove every planned file's temporary file. The temporary names are the same for every run
/// of this data dir: a run that another attempt of the job has taken over leaves them to it.
async fn remove_temporary_files(shared: &Shared<'_>, root: &std::path::Path, plan: &[PlannedDatabase]) {
    if shared.may_remove_created(&[]).await {
        for db in plan {
            remove_with_sidecars(&temporary_path(&root.join(&db.sqlite_file)));
        }
    }
}

/// Build one file under its temporary name (in memory for a dry run); on failure nothing of it
/// is left.
async fn build_one(
    shared: &Shared<'_>,
    data_dir: &DataDir,
    server: &PgServer,
    db: &PlannedDatabase,
) -> Result<Built, JobError> {
    let dry_run = shared.options.dry_run;
    let dest = data_dir.root.join(&db.sqlite_file);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| JobError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let tmp = if dry_run { PathBuf::from(":memory:") } else { temporary_path(&dest) };
    if !dry_run {
        remove_with_sidecars(&tmp);
    }
    let target = SqliteFile::create(&tmp).map_err(|e| JobError::Failed(e.message))?;
    let source = PgDatabase::open_source(server.options(), &db.postgres_database)
        .await
        .map_err(|e| JobError::Failed(e.message))?;
    let migrated =
        migrate_database(shared, db, Database::Postgres(source), Database::Sqlite(target), None, false).await;
    let discard = |file: Option<SqliteFile>| {
        drop(file);
        if !dry_run {
            remove_with_sidecars(&tmp);
        }
    };
    let file = match migrated.target {
        Some(Database::Sqlite(file)) => file,
        _ => {
            discard(None);
            return Err(migrated
                .outcome
                .err()
                .unwrap_or_else(|| JobError::Failed("lost the SQLite target handle".into())));
        }
    };
    let report = match migrated.outcome {
        Ok(report) => report,
        Err(e) => {
            discard(Some(file));
            return Err(e);
        }
    };
    // Committed and synced under its temporary name as soon as it verified, while the other
    // files are still being built; nothing is swapped in until every file got this far.
    if !dry_run && let Err(e) = file.commit().await {
        discard(Some(file));
        // The error names the file already.
        return Err(JobError::Failed(e.message));
    }
    let done = if dry_run { "checked (dry run)" } else { "successfully written" };
    announce(shared.conventions, db, &format!("database {done}"), &dest, &report, ("Postgres", "SQLite"));
    Ok(Built { planned: db.clone(), report, tmp, file })
}
