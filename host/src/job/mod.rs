//! One migration job: plan with the component, open every source and target, let the
//! component migrate each database, then commit all targets together.
//!
//! SQLite → PostgreSQL: any failure rolls every target back and removes the databases this
//! run created; success writes the lock file the server reads.
//! PostgreSQL → SQLite: each file is built beside its destination under a temporary name,
//! committed and synced there as soon as it verified, and moved into place only after every
//! file verified; the files it replaces (with their
//! `-wal`/`-shm`) are kept as timestamped backups; any failure deletes the temporary files
//! and leaves the old ones untouched.

use crate::bindings::exports::blocklet::migrate::migrator::{self as api, DatabaseKind};
use crate::datadir::{DataDir, expand};
use crate::output;
use crate::pgserver::PgServer;
use crate::postgres::{IndexWorkers, PgTarget};
use crate::runtime::printable;
use crate::runtime::{HandleResource, Instance, Runtime};
use crate::sqlite::SqliteSource;
use std::path::PathBuf;

/// Refuse database names a migration must never touch: the server's own and templates.
fn check_target_name(name: &str, server: &PgServer) -> Result<(), JobError> {
    let reserved = ["postgres", "template0", "template1"];
    if reserved.contains(&name) || server.admin_database() == Some(name) {
        return Err(JobError::Failed(format!(
            "the migration component planned to use database {}, which is not a Blocklet database",
            printable(name)
        )));
    }
    Ok(())
}

/// Where the lock file the server reads lives, relative to the data dir.
pub const LOCK_FILE: &str = "core/sqlite-to-postgres.lock";

/// How a job ended badly; each maps to a documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Config(String),
    #[error("{message}")]
    Rejected { message: String, rejected_rows: u64 },
    #[error("{0}")]
    Verification(String),
    #[error("{0}")]
    Failed(String),
}

impl JobError {
    fn from_failure(mut f: api::Failure) -> JobError {
        f.message = crate::runtime::printable_message(&f.message);
        match f.kind {
            api::FailureKind::RejectedRows => JobError::Rejected { message: f.message, rejected_rows: f.rejected_rows },
            api::FailureKind::VerificationMismatch => JobError::Verification(f.message),
            api::FailureKind::Refused => JobError::Config(f.message),
            api::FailureKind::Other => JobError::Failed(f.message),
        }
    }
}

pub struct ToPostgres<'a> {
    pub data_dir: &'a DataDir,
    pub server: &'a PgServer,
    pub force: bool,
    pub batch_rows: u32,
    pub skip_rejects: bool,
    /// Check everything, commit nothing, create nothing.
    pub dry_run: bool,
    /// Migrate even though a process (a running server) has a source file open.
    pub allow_running_server: bool,
    /// The compiled component, for one instance per database.
    pub runtime: &'a Runtime,
    pub events: output::ConsoleEvents,
    pub limits: crate::runtime::Limits,
    /// Databases migrated at once.
    pub parallel: usize,
}

/// What a successful job did.
pub struct JobReport {
    pub databases: Vec<(api::PlannedDatabase, api::DatabaseReport)>,
    /// The lock written (none for a dry run).
    pub lock_file: Option<PathBuf>,
}

fn kind_label(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Server => "Server",
        DatabaseKind::Service => "Service",
        DatabaseKind::Blocklet => "Blocklet",
        DatabaseKind::CertificateManager => "certificate-manager",
    }
}

/// The original's success lines for one database: `<Kind> <what>: [<app>: ]<file>`, then a
/// line per table with its source and target row counts under the `sides` names.
fn announce(
    db: &api::PlannedDatabase,
    what: &str,
    file: &std::path::Path,
    report: &api::DatabaseReport,
    sides: (&str, &str),
) {
    let label = kind_label(db.kind);
    match &db.app_pid {
        Some(pid) => output::success(&format!("{label} {what}: {pid}: {}", file.display())),
        None => output::success(&format!("{label} {what}: {}", file.display())),
    }
    let (source, target) = sides;
    for t in &report.tables {
        output::detail(&format!("✅ Table \"{}\": {source}={}, {target}={}", t.table, t.source_rows, t.target_rows));
    }
}

/// Run a whole SQLite → PostgreSQL job.
pub async fn sqlite_to_postgres(instance: &mut Instance, job: ToPostgres<'_>) -> Result<JobReport, JobError> {
    let root = &job.data_dir.root;
    let mut admin = job.server.connect_admin().await.map_err(JobError::Config)?;
    job.server.check_version(&mut admin).await.map_err(JobError::Config)?;

    instance.allow_drop(job.force);
    let layout = instance.layout().await.map_err(|e| JobError::Failed(e.to_string()))?;
    let mut files: Vec<String> = Vec::new();
    for pattern in &layout.patterns {
        files.extend(expand(root, pattern).map_err(|e| JobError::Config(e.to_string()))?);
    }
    files.dedup();
    for file in &files {
        // A snapshot of a live server is consistent, but the server keeps writing after it.
        check_not_in_use(&root.join(file), job.allow_running_server)?;
    }
    output::info("Getting blocklets...");
    let index = if files.contains(&layout.index) {
        let source = SqliteSource::open(&root.join(&layout.index))
            .map_err(|e| JobError::Failed(format!("Failed to get blocklets: {e}")))?;
        Some(instance.add_handle(HandleResource::Sqlite(source)).map_err(|e| JobError::Failed(e.to_string()))?)
    } else {
        None
    };
    let plan = instance.plan_to_postgres(index.as_ref(), &files).await.map_err(|e| JobError::Failed(e.to_string()))?;
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
        check_target_name(&db.postgres_database, job.server)?;
    }

    let mut created: Vec<String> = Vec::new();
    let mut opened: Vec<PgTarget> = Vec::new();
    let result = migrate_all(&job, &plan, &mut admin, &mut created, &mut opened).await;
    let result = match result {
        Ok(reports) if job.dry_run => {
            drop(opened); // rolled back: a dry run commits nothing
            return Ok(JobReport { databases: reports, lock_file: None });
        }
        Ok(reports) => commit_all(&opened).await.map(|_| reports),
        Err(e) => Err(e),
    };
    match result {
        Ok(databases) => {
            let lock_file = root.join(LOCK_FILE);
            let stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            std::fs::write(&lock_file, stamp)
                .map_err(|e| JobError::Failed(format!("migrated, but cannot write {}: {e}", lock_file.display())))?;
            Ok(JobReport { databases, lock_file: Some(lock_file) })
        }
        Err(e) => {
            // Roll back: closing a target connection aborts its transaction. What the
            // component still holds (an open COPY after a trap) goes first.
            instance.release_all();
            drop(opened);
            for name in created.iter().rev() {
                if let Err(drop_err) = drop_created(job.server, &mut admin, name).await {
                    output::error(&format!("could not remove database {name} created by this run: {drop_err}"));
                }
            }
            Err(e)
        }
    }
}

async fn drop_created(server: &PgServer, admin: &mut sqlx::PgConnection, name: &str) -> Result<(), String> {
    // The rolled-back connections close asynchronously; give them a moment.
    let mut last = String::new();
    for _ in 0..20 {
        match server.drop_database(admin, name).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(last)
}

/// What migrating one database left behind: the target to commit or roll back, and whether
/// this run created its database.
struct OneDatabase {
    created: bool,
    target: Option<PgTarget>,
    outcome: Result<api::DatabaseReport, JobError>,
}

/// Migrate one database in its own sandboxed instance, so that databases load in parallel
/// (PostgreSQL works on one core per connection; the component is rarely the bottleneck).
async fn migrate_one(
    job: &ToPostgres<'_>,
    db: &api::PlannedDatabase,
    exists: bool,
    setting_up: &tokio::sync::Mutex<()>,
    index_workers: IndexWorkers,
) -> OneDatabase {
    let progress = job.events.progress();
    progress.database_started(&db.postgres_database);
    let mut one = OneDatabase { created: false, target: None, outcome: Err(JobError::Failed("not started".into())) };
    one.outcome =
        migrate_one_inner(job, db, exists, setting_up, index_workers, &mut one.created, &mut one.target).await;
    progress.database_finished(&db.postgres_database, one.outcome.is_ok());
    one
}

async fn migrate_one_inner(
    job: &ToPostgres<'_>,
    db: &api::PlannedDatabase,
    exists: bool,
    setting_up: &tokio::sync::Mutex<()>,
    index_workers: IndexWorkers,
    created: &mut bool,
    opened: &mut Option<PgTarget>,
) -> Result<api::DatabaseReport, JobError> {
    // One database sets up at a time (CREATE DATABASE, connections, checks, schema), until its
    // first rows are sent: concurrent CREATE DATABASEs only slow each other down (each copies
    // the template), and the largest database, scheduled first, reaches its data soonest. (When
    // its first table started loading was too early: the next database's source checks then
    // delayed the first one's first rows by 10–20 ms, when every component ran on one thread.)
    let mut setup_turn = Some(setting_up.lock().await);
    let target = if job.dry_run && !exists {
        HandleResource::Discard(db.postgres_database.clone())
    } else {
        if !job.dry_run && !exists {
            let mut admin = job.server.connect_admin().await.map_err(JobError::Config)?;
            *created = job.server.ensure_database(&mut admin, &db.postgres_database).await.map_err(JobError::Config)?;
        }
        HandleResource::Postgres(PgTarget::open(job.server.options(), &db.postgres_database, index_workers))
    };
    let path = job.data_dir.root.join(&db.sqlite_file);
    let source = SqliteSource::open(&path).map_err(|e| JobError::Failed(e.message))?;
    let mut instance = instance(job.runtime, job.events.clone(), job.limits).await?;
    instance.allow_drop(job.force);
    instance.set_progress_scope(&db.postgres_database);
    let source = instance.add_handle(HandleResource::Sqlite(source)).map_err(|e| JobError::Failed(e.to_string()))?;
    let target = instance.add_handle(target).map_err(|e| JobError::Failed(e.to_string()))?;
    let options = api::Options {
        force: job.force,
        batch_rows: job.batch_rows,
        skip_rejects: job.skip_rejects,
        dry_run: job.dry_run,
        extra: Vec::new(),
    };
    let (loading_tx, loading) = tokio::sync::oneshot::channel();
    instance.on_first_rows(loading_tx);
    let outcome = {
        let migration = instance.migrate_to_postgres(db, &source, &target, options);
        tokio::pin!(migration);
        tokio::select! {
            biased;
            outcome = &mut migration => outcome,
            _ = loading => {
                setup_turn = None; // the next database may set up now
                migration.await
            }
        }
    };
    drop(setup_turn);
    let _ = instance.take_handle(source);
    if let Ok(HandleResource::Postgres(t)) = instance.take_handle(target) {
        *opened = Some(t);
    }
    // Whatever the component still holds (an open COPY after a trap) goes before any cleanup.
    instance.release_all();
    let report = outcome.map_err(|e| JobError::Failed(e.to_string()))?.map_err(JobError::from_failure)?;
    let done = if job.dry_run { "checked (dry run)" } else { "successfully migrated" };
    announce(db, &format!("schema {done}"), &path, &report, ("SQLite", "Postgres"));
    Ok(report)
}

async fn migrate_all(
    job: &ToPostgres<'_>,
    plan: &[api::PlannedDatabase],
    admin: &mut sqlx::PgConnection,
    created: &mut Vec<String>,
    opened: &mut Vec<PgTarget>,
) -> Result<Vec<(api::PlannedDatabase, api::DatabaseReport)>, JobError> {
    let existing = job.server.list_databases(admin).await.map_err(JobError::Config)?;
    let setting_up = tokio::sync::Mutex::new(());
    let order = largest_first(plan.len(), |i| source_bytes(&job.data_dir.root.join(&plan[i].sqlite_file)));
    let exists = |db: &api::PlannedDatabase| existing.contains(&db.postgres_database);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let index_workers = IndexWorkers::for_run(job.server.is_local(), cores, job.parallel.clamp(1, plan.len().max(1)));
    let mut outcomes = each_database(job.parallel, &order, |i| {
        migrate_one(job, &plan[i], exists(&plan[i]), &setting_up, index_workers)
    })
    .await;
    outcomes.sort_by_key(|(i, _)| *i);
    let outcomes = outcomes.into_iter().map(|(_, o)| o);
    let mut reports = Vec::new();
    let mut rejected: Option<JobError> = None;
    let mut failed: Option<JobError> = None;
    for (db, one) in plan.iter().zip(outcomes) {
        if one.created {
            created.push(db.postgres_database.clone());
        }
        opened.extend(one.target);
        match one.outcome {
            Ok(report) => reports.push((db.clone(), report)),
            // Every rejected row of every database is reported in one run.
            Err(e @ JobError::Rejected { rejected_rows, .. }) => {
                output::error(&format!(
                    "{}: {rejected_rows} row(s) rejected",
                    job.data_dir.root.join(&db.sqlite_file).display()
                ));
                rejected = Some(merge(rejected, e));
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match (failed, rejected) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(reports),
    }
}

/// Run `work(i)` for each index of `order`, `parallel` at a time ([`on_threads`]), and return
/// `(index, outcome)` pairs in the order they finished. On a current-thread runtime (a library
/// caller's choice) nothing but the thread that runs it can drive the connections, so there the
/// returned future interleaves the work on this thread instead; on any other runtime the work
/// is done, on threads, before this returns. Call it from within the job's runtime.
fn each_database<R, F>(
    parallel: usize,
    order: &[usize],
    work: impl Fn(usize) -> F + Sync,
) -> impl std::future::Future<Output = Vec<(usize, R)>>
where
    R: Send,
    F: std::future::Future<Output = R>,
{
    use futures_util::future::Either;
    use futures_util::{FutureExt, StreamExt};
    if tokio::runtime::Handle::current().runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return Either::Left(std::future::ready(on_threads(parallel, order, work)));
    }
    // Made here, not inside an `async` block, so that `work` is not held across an await
    // (the job's future must stay `Send` for a multi-thread caller's `spawn`).
    let pending: Vec<_> = order.iter().map(|&i| work(i).map(move |outcome| (i, outcome))).collect();
    Either::Right(futures_util::stream::iter(pending).buffer_unordered(parallel.max(1)).collect())
}

/// Run `work(i)` for each index of `order`, `parallel` at a time, each on a thread of its own that
/// drives it on the job's runtime (the tasks it spawns, such as connections, stay on the
/// runtime's workers). Driven by the one thread that runs the job, the databases' instances
/// never ran on two cores at once, and a migration is CPU-bound on small machines. Indexes are
/// taken in `order`; a thread that finishes one takes the next at once. Returns `(index,
/// outcome)` pairs in the order they finished. Needs a multi-thread runtime ([`each_database`]).
///
/// Every database after the first (the largest, so the likely critical path) runs at a lower
/// CPU priority ([`yield_cores_to_the_first_database`]).
fn on_threads<R, F>(parallel: usize, order: &[usize], work: impl Fn(usize) -> F + Sync) -> Vec<(usize, R)>
where
    R: Send,
    F: std::future::Future<Output = R>,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runtime = tokio::runtime::Handle::current();
    let next = AtomicUsize::new(0);
    let finished = std::sync::Mutex::new(Vec::with_capacity(order.len()));
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            for _ in 0..parallel.max(1).min(order.len()) {
                scope.spawn(|| {
                    while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if i != order[0] {
                            yield_cores_to_the_first_database();
                        }
                        let outcome = runtime.block_on(work(i));
                        finished.lock().unwrap_or_else(|e| e.into_inner()).push((i, outcome));
                    }
                });
            }
        })
    });
    finished.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// How much lower than the job's own priority the other databases' threads run. The largest
/// database decides when the job ends; with two cores shared by all databases (and, for
/// PostgreSQL → SQLite, by the server reading them), the small ones used to slow it down for
/// as long as they ran, and its single-threaded end (indexes, verification, sync) then ran
/// with the other core idle. At +10 they mostly take what it leaves: on the bench's 200k rows,
/// PostgreSQL → SQLite took 1.06 s (median of 7) instead of 1.17 s; +5 gave 1.09 s and +19
/// 1.07 s; SQLite → PostgreSQL did not change (README, performance). Not +19: a thread cannot
/// take its priority back without privileges, so once the largest database is done the others
/// stay lowered, and next to an unrelated busy process a +19 thread gets ~1.5% of a core
/// where a +10 one still gets ~10%.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const OTHER_DATABASES_NICENESS: libc::c_int = 10;

/// Lower the calling thread's CPU priority by [`OTHER_DATABASES_NICENESS`] (to at most +19),
/// once per thread however many databases it takes on. Threads it starts afterwards, such as a
/// SQLite file's own thread, inherit it. Linux only: there `setpriority(PRIO_PROCESS, 0, …)`
/// applies to the calling thread, while elsewhere it would renice the whole process. Best
/// effort: a failure leaves the priority as it was.
fn yield_cores_to_the_first_database() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static YIELDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if YIELDED.replace(true) {
            return;
        }
        // SAFETY: getpriority and setpriority only read and set the calling thread's nice value.
        unsafe {
            let current = libc::getpriority(libc::PRIO_PROCESS, 0);
            let target = current.saturating_add(OTHER_DATABASES_NICENESS).min(19);
            if target > current {
                libc::setpriority(libc::PRIO_PROCESS, 0, target);
            }
        }
    }
}

/// The indexes `0..count` largest first by `size` (ties in index order): the biggest database
/// is the critical path, so it starts first, and the others yield the cores to it
/// ([`on_threads`]).
fn largest_first(count: usize, size: impl Fn(usize) -> u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..count).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(size(i)));
    order
}

/// A SQLite database's size on disk, with its WAL: how much work migrating it is.
fn source_bytes(file: &std::path::Path) -> u64 {
    let wal = PathBuf::from(format!("{}-wal", file.display()));
    [file, wal.as_path()].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

fn merge(previous: Option<JobError>, next: JobError) -> JobError {
    match (previous, next) {
        (Some(JobError::Rejected { rejected_rows: a, .. }), JobError::Rejected { rejected_rows: b, .. }) => {
            JobError::Rejected {
                message: format!("{} row(s) cannot be migrated faithfully; nothing was committed", a + b),
                rejected_rows: a + b,
            }
        }
        (_, next) => next,
    }
}

/// Commit every target at once: PostgreSQL has no atomic commit across databases (without
/// prepared transactions, which servers disable by default), so the window in which some are
/// committed and others not is kept to one round trip.
async fn commit_all(targets: &[PgTarget]) -> Result<(), JobError> {
    let results = futures_util::future::join_all(targets.iter().map(|t| t.commit())).await;
    let failed: Vec<String> = targets
        .iter()
        .zip(&results)
        .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{}: {e}", t.database())))
        .collect();
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

/// Build the runtime for `component` (or the bundled one) and a fresh instance.
pub async fn instance(
    runtime: &Runtime,
    events: output::ConsoleEvents,
    limits: crate::runtime::Limits,
) -> Result<Instance, JobError> {
    runtime.instantiate(Box::new(events), limits).await.map_err(|e| JobError::Failed(format!("{e:#}")))
}

/// What a PostgreSQL → SQLite job needs.
pub struct ToSqlite<'a> {
    pub data_dir: &'a DataDir,
    pub server: &'a PgServer,
    pub batch_rows: u32,
    pub skip_rejects: bool,
    /// Build every file in memory only; replace nothing.
    pub dry_run: bool,
    /// Replace files even though a process (a running server) has them open.
    pub allow_running_server: bool,
    /// The compiled component, for one instance per database.
    pub runtime: &'a Runtime,
    pub events: output::ConsoleEvents,
    pub limits: crate::runtime::Limits,
    /// Databases written at once.
    pub parallel: usize,
}

/// A SQLite file written by a PostgreSQL → SQLite job.
pub struct WrittenFile {
    pub planned: api::PlannedDatabase,
    pub report: api::DatabaseReport,
    pub path: PathBuf,
    /// Where the file it replaced (and its `-wal`/`-shm`) went.
    pub backups: Vec<PathBuf>,
}

/// What a successful PostgreSQL → SQLite job did.
pub struct SqliteJobReport {
    pub files: Vec<WrittenFile>,
    pub removed_lock: Option<PathBuf>,
}

/// The name a file is built under, beside its destination.
fn temporary_path(dest: &std::path::Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.blocklet-migrate.tmp"))
}

/// Refuse a database file another process has open (a running Blocklet Server), unless the
/// user said to go ahead.
fn check_not_in_use(path: &std::path::Path, allow: bool) -> Result<(), JobError> {
    let Some(pid) = crate::datadir::process_using(path) else { return Ok(()) };
    let message = format!(
        "{} is in use by process {pid} (is Blocklet Server running? stop it with `blocklet server stop` first)",
        path.display()
    );
    if allow {
        output::warn(&format!("{message}; going ahead because of --allow-running-server"));
        Ok(())
    } else {
        Err(JobError::Config(format!("{message}, or pass --allow-running-server")))
    }
}

/// Run a whole PostgreSQL → SQLite job.
pub async fn postgres_to_sqlite(instance: &mut Instance, job: ToSqlite<'_>) -> Result<SqliteJobReport, JobError> {
    let root = &job.data_dir.root;
    let mut admin = job.server.connect_admin().await.map_err(JobError::Config)?;
    job.server.check_version(&mut admin).await.map_err(JobError::Config)?;
    let databases = job.server.list_databases(&mut admin).await.map_err(JobError::Config)?;
    if !databases.iter().any(|d| d == "server_db") {
        return Err(JobError::Config(format!(
            "PostgreSQL at {} has no server_db: nothing to migrate back (was this server migrated to PostgreSQL?)",
            job.server.address
        )));
    }
    output::info("Getting blocklets...");
    let index =
        PgTarget::open_source(job.server.options(), "server_db").await.map_err(|e| JobError::Failed(e.message))?;
    let index = instance.add_handle(HandleResource::Postgres(index)).map_err(|e| JobError::Failed(e.to_string()))?;
    let plan = instance.plan_to_sqlite(&index, &databases).await.map_err(|e| JobError::Failed(e.to_string()));
    let _ = instance.take_handle(index);
    let plan = plan?.map_err(JobError::from_failure)?;
    let layout = instance.layout().await.map_err(|e| JobError::Failed(e.to_string()))?;
    for db in &plan {
        if !layout.patterns.iter().any(|p| crate::datadir::matches_pattern(p, &db.sqlite_file)) {
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
        check_target_name(&db.postgres_database, job.server)?;
    }

    for db in &plan {
        check_not_in_use(&root.join(&db.sqlite_file), job.allow_running_server)?;
    }
    let mut built: Vec<Built> = Vec::new();
    let names: Vec<String> = plan.iter().map(|db| db.postgres_database.clone()).collect();
    let sizes = job.server.database_sizes(&mut admin, &names).await.map_err(JobError::Config)?;
    drop(admin);
    let order = largest_first(plan.len(), |i| sizes[i]);
    let result = build_all(&job, &plan, &order, &mut built).await;
    if job.dry_run {
        result?;
        let files = built
            .into_iter()
            .map(|(planned, report, _, _)| WrittenFile {
                path: root.join(&planned.sqlite_file),
                planned,
                report,
                backups: Vec::new(),
            })
            .collect();
        return Ok(SqliteJobReport { files, removed_lock: None });
    }
    if let Err(e) = result {
        instance.release_all();
        for (_, _, tmp, target) in built {
            drop(target);
            remove_with_sidecars(&tmp);
        }
        for db in &plan {
            remove_with_sidecars(&temporary_path(&root.join(&db.sqlite_file)));
        }
        return Err(e);
    }
    // Every file verified and synced: now swap them in, keeping what they replace.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut files = Vec::new();
    for (planned, report, tmp, target) in built {
        drop(target);
        let dest = root.join(&planned.sqlite_file);
        let mut backups = Vec::new();
        if dest.exists() {
            // `X.bak-STAMP` with its `-wal`/`-shm` beside it under SQLite's own names, so the
            // backup opens as it is; a name that is taken gets a counter, never overwritten.
            let base = unique_backup_name(&dest, &stamp);
            for suffix in ["", "-wal", "-shm"] {
                let old = PathBuf::from(format!("{}{suffix}", dest.display()));
                if old.exists() {
                    let backup = PathBuf::from(format!("{}{suffix}", base.display()));
                    std::fs::rename(&old, &backup).map_err(|e| {
                        JobError::Failed(format!("cannot move {} to {}: {e}", old.display(), backup.display()))
                    })?;
                    backups.push(backup);
                }
            }
        }
        adopt_ownership(&tmp, backups.first().map(PathBuf::as_path).or(dest.parent()));
        std::fs::rename(&tmp, &dest)
            .map_err(|e| JobError::Failed(format!("cannot move {} to {}: {e}", tmp.display(), dest.display())))?;
        if let Some(dir) = dest.parent() {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        files.push(WrittenFile { planned, report, path: dest, backups });
    }
    let lock = root.join(LOCK_FILE);
    let removed_lock = if lock.exists() {
        std::fs::remove_file(&lock).map_err(|e| JobError::Failed(format!("cannot remove {}: {e}", lock.display())))?;
        Some(lock)
    } else {
        None
    };
    Ok(SqliteJobReport { files, removed_lock })
}

/// `<dest>.bak-<stamp>`, or `<dest>.bak-<stamp>-<n>` when that (or its `-wal`/`-shm`) exists.
fn unique_backup_name(dest: &std::path::Path, stamp: &str) -> PathBuf {
    let taken =
        |p: &PathBuf| ["", "-wal", "-shm"].iter().any(|s| PathBuf::from(format!("{}{s}", p.display())).exists());
    let first = PathBuf::from(format!("{}.bak-{stamp}", dest.display()));
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|n| PathBuf::from(format!("{}.bak-{stamp}-{n}", dest.display())))
        .find(|p| !taken(p))
        .expect("a free name")
}

/// Give a new file the owner and mode of the file it replaces (or of its directory), so a
/// server running as another user can still open it.
fn adopt_ownership(new: &std::path::Path, like: Option<&std::path::Path>) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(meta) = like.and_then(|p| std::fs::metadata(p).ok()) else { return };
    let _ = std::os::unix::fs::chown(new, Some(meta.uid()), Some(meta.gid()));
    if meta.is_file() {
        let _ = std::fs::set_permissions(new, std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    }
}

fn remove_with_sidecars(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// A file built and verified under its temporary name (committed and synced unless a dry run).
type Built = (api::PlannedDatabase, api::DatabaseReport, PathBuf, SqliteSource);

/// Build every file, `job.parallel` at a time in `order` (indexes of `plan`), each database in
/// its own sandboxed instance on a thread of its own ([`on_threads`]). Every rejected row of
/// every database is reported before failing.
async fn build_all(
    job: &ToSqlite<'_>,
    plan: &[api::PlannedDatabase],
    order: &[usize],
    built: &mut Vec<Built>,
) -> Result<(), JobError> {
    let mut outcomes = each_database(job.parallel, order, |i| build_one(job, &plan[i])).await;
    outcomes.sort_by_key(|(i, _)| *i);
    let mut rejected: Option<JobError> = None;
    let mut failed: Option<JobError> = None;
    for (i, outcome) in outcomes {
        match outcome {
            Ok(b) => built.push(b),
            Err(e @ JobError::Rejected { rejected_rows, .. }) => {
                output::error(&format!("{}: {rejected_rows} row(s) rejected", plan[i].postgres_database));
                rejected = Some(merge(rejected, e));
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match (failed, rejected) {
        (Some(e), _) | (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}

/// Build one file under its temporary name; on failure nothing of it is left.
async fn build_one(job: &ToSqlite<'_>, db: &api::PlannedDatabase) -> Result<Built, JobError> {
    let progress = job.events.progress();
    progress.database_started(&db.postgres_database);
    let result = build_one_inner(job, db).await;
    progress.database_finished(&db.postgres_database, result.is_ok());
    result
}

async fn build_one_inner(job: &ToSqlite<'_>, db: &api::PlannedDatabase) -> Result<Built, JobError> {
    let root = &job.data_dir.root;
    let dest = root.join(&db.sqlite_file);
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| JobError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let tmp = if job.dry_run { PathBuf::from(":memory:") } else { temporary_path(&dest) };
    if !job.dry_run {
        remove_with_sidecars(&tmp);
    }
    let target = SqliteSource::create(&tmp).map_err(|e| JobError::Failed(e.message))?;
    let source = PgTarget::open_source(job.server.options(), &db.postgres_database)
        .await
        .map_err(|e| JobError::Failed(e.message))?;
    let mut instance = instance(job.runtime, job.events.clone(), job.limits).await?;
    instance.set_progress_scope(&db.postgres_database);
    let source = instance.add_handle(HandleResource::Postgres(source)).map_err(|e| JobError::Failed(e.to_string()))?;
    let target = instance.add_handle(HandleResource::Sqlite(target)).map_err(|e| JobError::Failed(e.to_string()))?;
    let options = api::Options {
        force: false,
        batch_rows: job.batch_rows,
        skip_rejects: job.skip_rejects,
        dry_run: job.dry_run,
        extra: Vec::new(),
    };
    let outcome = instance.migrate_to_sqlite(db, &source, &target, options).await;
    let _ = instance.take_handle(source);
    let target = instance.take_handle(target);
    // Whatever the component still holds goes before any cleanup.
    instance.release_all();
    let discard = |target| {
        drop(target);
        if !job.dry_run {
            remove_with_sidecars(&tmp);
        }
    };
    let target = match target {
        Ok(HandleResource::Sqlite(t)) => t,
        other => {
            discard(other.ok());
            return Err(JobError::Failed("lost the SQLite target handle".into()));
        }
    };
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(failure)) => {
            discard(Some(HandleResource::Sqlite(target)));
            return Err(JobError::from_failure(failure));
        }
        Err(e) => {
            discard(Some(HandleResource::Sqlite(target)));
            return Err(JobError::Failed(e.to_string()));
        }
    };
    // Committed and synced under its temporary name as soon as it verified, while the other
    // files are still being built; nothing is swapped in until every file got this far.
    if !job.dry_run
        && let Err(e) = target.commit().await
    {
        discard(Some(HandleResource::Sqlite(target)));
        return Err(JobError::Failed(format!("{}: {e}", tmp.display())));
    }
    let done = if job.dry_run { "checked (dry run)" } else { "successfully written" };
    announce(db, &format!("database {done}"), &dest, &report, ("Postgres", "SQLite"));
    Ok((db.clone(), report, tmp, target))
}

#[cfg(test)]
mod tests {
    use super::each_database;
    use std::thread::ThreadId;

    #[test]
    fn largest_first_keeps_the_plan_order_between_equals() {
        let sizes = [5, 9, 0, 9, 7];
        assert_eq!(super::largest_first(sizes.len(), |i| sizes[i]), [1, 3, 4, 0, 2]);
        assert!(super::largest_first(0, |_| 0).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn only_the_calling_thread_yields_and_only_once() {
        // SAFETY: getpriority only reads the calling thread's nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let (after_one, after_two) = std::thread::spawn(move || {
            super::yield_cores_to_the_first_database();
            let one = nice();
            super::yield_cores_to_the_first_database();
            (one, nice())
        })
        .join()
        .unwrap();
        assert_eq!(after_one, (before + super::OTHER_DATABASES_NICENESS).min(19));
        assert_eq!(after_two, after_one, "a thread that already yielded keeps its priority");
        assert_eq!(nice(), before, "the other threads keep theirs");
    }

    /// Work that needs the runtime, as a database's does: it spawns a task (a connection) and
    /// waits for it. Says which thread drove it.
    async fn spawned_echo(i: usize) -> (usize, ThreadId) {
        let echoed = tokio::spawn(async move { i }).await.unwrap();
        (echoed, std::thread::current().id())
    }

    #[test]
    fn on_a_multi_thread_runtime_work_runs_off_the_calling_thread_and_all_of_it_runs() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let caller = std::thread::current().id();
        let mut done = runtime.block_on(async { each_database(2, &[2, 0, 1], spawned_echo).await });
        done.sort_by_key(|(i, _)| *i);
        assert_eq!(done.iter().map(|(i, (echoed, _))| (*i, *echoed)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
        assert!(done.iter().all(|(_, (_, thread))| *thread != caller));
    }

    #[test]
    fn on_a_current_thread_runtime_work_is_interleaved_on_the_calling_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let caller = std::thread::current().id();
        let mut done = runtime.block_on(async { each_database(2, &[2, 0, 1], spawned_echo).await });
        done.sort_by_key(|(i, _)| *i);
        assert_eq!(done.iter().map(|(i, (echoed, _))| (*i, *echoed)).collect::<Vec<_>>(), [(0, 0), (1, 1), (2, 2)]);
        assert!(done.iter().all(|(_, (_, thread))| *thread == caller));
    }
}
