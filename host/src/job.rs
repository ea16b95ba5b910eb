//! One migration job, SQLite → PostgreSQL: plan with the component, open every source and
//! target, let the component migrate each database, then commit all targets together and
//! write the lock file. Any failure rolls every target back and removes the databases this
//! run created, so nothing is half-written.

use crate::bindings::exports::blocklet::migrate::migrator::{self as api, DatabaseKind};
use crate::datadir::{DataDir, expand};
use crate::output;
use crate::pgserver::PgServer;
use crate::postgres::PgTarget;
use crate::runtime::{HandleResource, Instance, Runtime};
use crate::sqlite::SqliteSource;
use std::path::PathBuf;

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
    fn from_failure(f: api::Failure) -> JobError {
        if f.rejected_rows > 0 {
            JobError::Rejected {
                message: f.message,
                rejected_rows: f.rejected_rows,
            }
        } else if f.message.starts_with("verification failed") {
            JobError::Verification(f.message)
        } else {
            JobError::Failed(f.message)
        }
    }
}

pub struct ToPostgres<'a> {
    pub data_dir: &'a DataDir,
    pub server: &'a PgServer,
    pub force: bool,
    pub batch_rows: u32,
}

/// What a successful job did.
pub struct JobReport {
    pub databases: Vec<(api::PlannedDatabase, api::DatabaseReport)>,
    pub lock_file: PathBuf,
}

fn kind_label(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Server => "Server",
        DatabaseKind::Service => "Service",
        DatabaseKind::Blocklet => "Blocklet",
        DatabaseKind::CertificateManager => "certificate-manager",
    }
}

/// Run a whole SQLite → PostgreSQL job.
pub async fn sqlite_to_postgres(
    instance: &mut Instance,
    job: ToPostgres<'_>,
) -> Result<JobReport, JobError> {
    let root = &job.data_dir.root;
    let mut admin = job.server.connect_admin().await.map_err(JobError::Config)?;
    job.server
        .check_version(&mut admin)
        .await
        .map_err(JobError::Config)?;

    let layout = instance
        .layout()
        .await
        .map_err(|e| JobError::Failed(e.to_string()))?;
    let mut files: Vec<String> = layout
        .patterns
        .iter()
        .flat_map(|p| expand(root, p))
        .collect();
    files.dedup();
    output::info("Getting blocklets...");
    let index = if files.contains(&layout.index) {
        let source = SqliteSource::open(&root.join(&layout.index))
            .map_err(|e| JobError::Failed(format!("Failed to get blocklets: {e}")))?;
        Some(
            instance
                .add_handle(HandleResource::Sqlite(source))
                .map_err(|e| JobError::Failed(e.to_string()))?,
        )
    } else {
        None
    };
    let plan = instance
        .plan_to_postgres(index.as_ref(), &files)
        .await
        .map_err(|e| JobError::Failed(e.to_string()))?;
    if let Some(index) = index {
        let _ = instance.take_handle(index);
    }
    let plan = plan.map_err(JobError::from_failure)?;

    let mut created: Vec<String> = Vec::new();
    let mut opened: Vec<PgTarget> = Vec::new();
    let result = migrate_all(instance, &job, &plan, &mut admin, &mut created, &mut opened).await;
    let result = match result {
        Ok(reports) => commit_all(&opened).await.map(|_| reports),
        Err(e) => Err(e),
    };
    match result {
        Ok(databases) => {
            let lock_file = root.join(LOCK_FILE);
            let stamp = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string();
            std::fs::write(&lock_file, stamp).map_err(|e| {
                JobError::Failed(format!(
                    "migrated, but cannot write {}: {e}",
                    lock_file.display()
                ))
            })?;
            Ok(JobReport {
                databases,
                lock_file,
            })
        }
        Err(e) => {
            // Roll back: closing a target connection aborts its transaction.
            drop(opened);
            for name in created.iter().rev() {
                if let Err(drop_err) = drop_created(job.server, &mut admin, name).await {
                    output::error(&format!(
                        "could not remove database {name} created by this run: {drop_err}"
                    ));
                }
            }
            Err(e)
        }
    }
}

async fn drop_created(
    server: &PgServer,
    admin: &mut sqlx::PgConnection,
    name: &str,
) -> Result<(), String> {
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

async fn migrate_all(
    instance: &mut Instance,
    job: &ToPostgres<'_>,
    plan: &[api::PlannedDatabase],
    admin: &mut sqlx::PgConnection,
    created: &mut Vec<String>,
    opened: &mut Vec<PgTarget>,
) -> Result<Vec<(api::PlannedDatabase, api::DatabaseReport)>, JobError> {
    let root = &job.data_dir.root;
    let mut reports = Vec::new();
    let mut rejected: Option<JobError> = None;
    for db in plan {
        if job
            .server
            .ensure_database(admin, &db.postgres_database)
            .await
            .map_err(JobError::Config)?
        {
            created.push(db.postgres_database.clone());
        }
        let path = root.join(&db.sqlite_file);
        let source = SqliteSource::open(&path).map_err(|e| JobError::Failed(e.message))?;
        let target = PgTarget::open(job.server.options(), &db.postgres_database)
            .await
            .map_err(|e| JobError::Failed(e.message))?;
        let source = instance
            .add_handle(HandleResource::Sqlite(source))
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let target = instance
            .add_handle(HandleResource::Postgres(target))
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let options = api::Options {
            force: job.force,
            batch_rows: job.batch_rows,
        };
        let outcome = instance
            .migrate_to_postgres(db, &source, &target, options)
            .await;
        let _ = instance.take_handle(source);
        if let Ok(HandleResource::Postgres(t)) = instance.take_handle(target) {
            opened.push(t);
        }
        match outcome.map_err(|e| JobError::Failed(e.to_string()))? {
            Ok(report) => {
                let label = kind_label(db.kind);
                match &db.app_pid {
                    Some(pid) => output::success(&format!(
                        "{label} schema successfully migrated: {pid}: {}",
                        path.display()
                    )),
                    None => output::success(&format!(
                        "{label} schema successfully migrated: {}",
                        path.display()
                    )),
                }
                for t in &report.tables {
                    println!(
                        "   ✅ Table \"{}\": SQLite={}, Postgres={}",
                        t.table, t.source_rows, t.target_rows
                    );
                }
                reports.push((db.clone(), report));
            }
            Err(failure) => match JobError::from_failure(failure) {
                // Keep going: every rejected row of every database is reported in one run.
                e @ JobError::Rejected { rejected_rows, .. } => {
                    output::error(&format!(
                        "{}: {rejected_rows} row(s) rejected",
                        path.display()
                    ));
                    rejected = Some(merge(rejected, e));
                }
                e => return Err(e),
            },
        }
    }
    match rejected {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

fn merge(previous: Option<JobError>, next: JobError) -> JobError {
    match (previous, next) {
        (
            Some(JobError::Rejected {
                rejected_rows: a, ..
            }),
            JobError::Rejected {
                rejected_rows: b, ..
            },
        ) => JobError::Rejected {
            message: format!(
                "{} row(s) cannot be migrated faithfully; nothing was committed",
                a + b
            ),
            rejected_rows: a + b,
        },
        (_, next) => next,
    }
}

async fn commit_all(targets: &[PgTarget]) -> Result<(), JobError> {
    for (i, t) in targets.iter().enumerate() {
        if let Err(e) = t.commit().await {
            let done: Vec<&str> = targets[..i].iter().map(|t| t.database()).collect();
            return Err(JobError::Failed(format!(
                "committing {} failed: {e}; already committed: {}",
                t.database(),
                if done.is_empty() {
                    "none".to_string()
                } else {
                    done.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Build the runtime for `component` (or the bundled one) and a fresh instance.
pub async fn instance(
    runtime: &Runtime,
    events: output::ConsoleEvents,
    memory_limit: usize,
) -> Result<Instance, JobError> {
    runtime
        .instantiate(Box::new(events), memory_limit)
        .await
        .map_err(|e| JobError::Failed(format!("{e:#}")))
}
