//! One migration job, from a [`JobSpec`] to a [`JobOutcome`]: the one API that the command line,
//! the multi-tenant batch runner and library callers all use.
//!
//! A job loads the component, asks it for its conventions, finds the data dir, plans with the
//! component, lets one sandboxed instance per database migrate it (largest first, in
//! parallel), and commits every target together or none; its report is written whatever the
//! outcome. The key decision: everything that depends on Blocklet Server (which databases
//! exist, their schema, the lock file, the data dir markers) comes from the component; the
//! job only orders the steps and owns commit and rollback.
//!
//! | file | concern |
//! |---|---|
//! | this one | the spec, the steps every job takes, the report |
//! | `to_postgres.rs`, `to_sqlite.rs` | what differs between the two directions |
//! | `flow.rs` | what they share per database |
//! | `ledger.rs` | the host's own account of every row, which decides whether a database commits |
//! | `schedule.rs` | which database runs when, on which thread, at what priority |
//! | `swap.rs` | moving built SQLite files into place, with backups |
//! | `databases.rs` | the admin connection, names a plan may use, removing created databases |
//! | `datadir.rs`, `in_use.rs` | finding the data dir; files a running server holds |
//! | `outcome.rs` | errors, exit codes, the report's outcome |
//! | `console.rs`, `events.rs`, `progress.rs`, `report.rs` | what the user sees and keeps |
//! | `signals.rs` | Ctrl-C and SIGTERM: cancel, then quit |

pub mod console;
mod databases;
pub mod datadir;
pub mod events;
mod flow;
pub mod in_use;
mod ledger;
pub mod outcome;
pub mod progress;
pub mod report;
mod schedule;
pub mod signals;
mod swap;
mod to_postgres;
mod to_sqlite;

pub use crate::sandbox::Direction;
pub use outcome::JobError;

use crate::backend::postgres::PgServer;
use crate::sandbox::signature::BUNDLED_SIGNATURE;
use crate::sandbox::{BUNDLED_COMPONENT, Cancel, Conventions, Instance, JobClock, Limits, Runtime};
use crate::wit::{DatabaseReport, PlannedDatabase};
use datadir::DataDir;
use events::ConsoleEvents;
use outcome::{EXIT_FAILED, EXIT_REJECTED, EXIT_SKIPPED_ROWS, EXIT_SUCCESS, EXIT_USAGE, completed_outcome};
use progress::{Display, Progress};
use report::{ComponentIdentity, DatabaseEntry, RunReport, TableEntry};
use std::path::PathBuf;

/// Rows per batch read from a source, unless asked otherwise.
pub const DEFAULT_BATCH_ROWS: u32 = 1000;

/// Databases migrated at once, unless asked otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// How to run a job.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Replace tables that already hold rows in the PostgreSQL targets.
    pub force: bool,
    /// Read, convert and check everything; commit nothing, create nothing, replace nothing.
    pub dry_run: bool,
    /// Commit without the rows that cannot be migrated faithfully (exit code 5).
    pub skip_rejects: bool,
    /// Go ahead even though a process (a running server) has a database file open.
    pub allow_running_server: bool,
    /// Rows per batch read from a source (brought into range by the backends).
    pub batch_rows: u32,
    /// Databases migrated at once.
    pub parallel: usize,
    /// The only PostgreSQL databases the job may use, as names or `*` patterns (a hosting
    /// provider's bound per tenant); `None`: any the plan names that pass the host's checks.
    pub databases: Option<Vec<String>>,
    /// The directory the data dir and every database file the job opens or writes must resolve
    /// into, symlinks followed (a hosting provider's per-tenant root); `None`: anywhere.
    pub confine_to: Option<PathBuf>,
    /// The `application_name` of the job's PostgreSQL sessions; `None`: one of its own. A caller
    /// that runs a job again names each attempt, so that the next can end what an earlier one
    /// left running ([`JobOptions::end_sessions_of`]).
    pub session_tag: Option<String>,
    /// Sessions to end on the server before the job starts: those of earlier attempts of this
    /// job, which may hold locks on the very tables it is about to create.
    pub end_sessions_of: Vec<String>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            force: false,
            dry_run: false,
            skip_rejects: false,
            allow_running_server: false,
            batch_rows: DEFAULT_BATCH_ROWS,
            parallel: DEFAULT_PARALLEL,
            databases: None,
            confine_to: None,
            session_tag: None,
            end_sessions_of: Vec::new(),
        }
    }
}

/// Which component runs the job.
pub enum ComponentChoice<'a> {
    /// The one built into this binary.
    Bundled,
    /// A component file (`--component`), run only if `trust` admits it.
    File { path: PathBuf, trust: crate::sandbox::signature::Policy },
    /// One already compiled for a shared engine (a batch compiles each file once), with where
    /// it came from and who vouches for it ([`admit`]), for the report.
    Compiled { runtime: &'a Runtime, source: String, signature: String },
}

/// Where a job's output goes.
#[derive(Clone, Debug, Default)]
pub struct OutputOptions {
    /// Write the JSON report here, whatever the outcome.
    pub report: Option<PathBuf>,
    /// Write rejected rows here (default: a file in the temp dir).
    pub rejects: Option<PathBuf>,
    /// Only warnings, errors and the final result.
    pub quiet: bool,
    /// Write progress events here as JSON lines.
    pub progress_events: Option<PathBuf>,
    /// Other jobs print to the same terminal (a batch): lines, never bars, and the console's
    /// settings are left alone.
    pub shares_terminal: bool,
    /// Also give every progress event to this receiver.
    pub progress_sink: Option<progress::ProgressSink>,
}

/// A step a job cannot take back, which a caller may veto ([`StepGate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Irreversible {
    /// After every target verified, before the first commits (to PostgreSQL) or is moved into
    /// place (to SQLite). Refused: the job rolls back instead.
    Commit,
    /// After a failure, before the databases the job created are dropped. Refused: they stay.
    RemoveCreated,
}

/// Awaited before each [`Irreversible`] step; an error refuses it. The hosting service records
/// there that an attempt may have committed, and refuses both steps to an attempt whose lease
/// another worker has taken over (its databases are that worker's now).
pub type StepGate = Box<
    dyn Fn(Irreversible) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Everything a job needs.
pub struct JobSpec<'a> {
    /// Which way to migrate, or the usage error that kept the caller from saying (reported as
    /// the job's error, so that it gets a report like any other).
    pub direction: Result<Direction, String>,
    /// The data dir, or the directory holding it; `None`: found by walking up from the working
    /// directory.
    pub data_dir: Option<PathBuf>,
    /// `ABT_NODE_POSTGRES_URL`.
    pub postgres_url: String,
    pub options: JobOptions,
    pub component: ComponentChoice<'a>,
    pub limits: Limits,
    pub output: OutputOptions,
    /// Cancels the job from outside (Ctrl-C, a service's cancel request): it stops at its next
    /// step, ends its server-side work and removes what it created.
    pub cancel: Cancel,
    /// Awaited before each step the job cannot take back; see [`StepGate`].
    pub gate: Option<StepGate>,
}

/// How a job ended: its exit code and its report (also written to `output.report` if given).
pub struct JobOutcome {
    pub exit_code: u8,
    pub report: RunReport,
    /// The job stopped before changing anything because another process had a database file
    /// open; it may be tried again once that process lets go.
    pub source_in_use: bool,
}

/// What a successful job did.
struct Done {
    databases: Vec<DoneDatabase>,
    /// The lock file written (to PostgreSQL) or removed (back to SQLite).
    lock_file: Option<PathBuf>,
}

/// One database a job migrated.
struct DoneDatabase {
    planned: PlannedDatabase,
    report: DatabaseReport,
    /// The SQLite file (the source, or the file written).
    path: PathBuf,
    /// Where the file it replaced (and its `-wal`/`-shm`) went.
    backups: Vec<PathBuf>,
}

/// Run one job and write its report whatever happens.
pub async fn run(spec: JobSpec<'_>) -> JobOutcome {
    let mut report = RunReport::new();
    report.dry_run = spec.options.dry_run;
    report.skip_rejects = spec.options.skip_rejects;
    let display = match Display::choose(spec.output.quiet) {
        Display::Bars if spec.output.shares_terminal => Display::Lines,
        d => d,
    };
    let progress =
        match Progress::new(display, spec.output.progress_events.as_deref(), spec.output.progress_sink.clone()) {
            Ok(p) => p,
            Err(e) => {
                console::error(&e);
                return JobOutcome { exit_code: EXIT_USAGE, report, source_in_use: false };
            }
        };
    if !spec.output.shares_terminal {
        progress.attach_console();
    }
    let rejects_path = spec.output.rejects.clone().unwrap_or_else(events::default_rejects_path);
    let events = ConsoleEvents::with_progress(rejects_path, progress.clone());
    let started = std::time::Instant::now();
    let clock = JobClock::start(spec.limits.timeout_seconds, spec.limits.stall_seconds, spec.cancel.clone());
    let mut job = Job { spec: &spec, events: &events, report, clock };
    let outcome = job.run().await;
    let mut report = job.report;
    progress.finish();
    report.timeline = Some(progress.timeline());
    let mut code = match &outcome {
        Ok(code) => *code,
        Err(e) => {
            console::error(&e.to_string());
            e.exit_code()
        }
    };
    report.rejected_rows = events.rejects();
    report.rejects_file = events.rejects_file().map(|p| p.display().to_string());
    if let Some(path) = &report.rejects_file {
        console::info(&format!("{} rejected row(s) listed in {path}", report.rejected_rows));
    }
    if let Some(e) = events.write_error() {
        console::error(&e);
    }
    report.exit_code = code;
    report.error = outcome.as_ref().err().map(|e| e.to_string());
    report.outcome = match &outcome {
        Ok(code) => completed_outcome(*code, spec.options.dry_run),
        Err(e) => e.outcome(),
    }
    .into();
    report.finished_at = report::now();
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(path) = &spec.output.report
        && let Err(e) = report.write(path)
    {
        console::error(&format!("cannot write the report: {e}"));
        if code == EXIT_SUCCESS {
            code = EXIT_FAILED;
        }
    }
    let source_in_use = matches!(outcome, Err(JobError::InUse(_)));
    JobOutcome { exit_code: code, report, source_in_use }
}

/// A job being run: its spec, its events, and the report it fills as it learns things.
struct Job<'a> {
    spec: &'a JobSpec<'a>,
    events: &'a ConsoleEvents,
    report: RunReport,
    /// The deadline, stall limit and cancellation every instance of the job works to.
    clock: JobClock,
}

impl Job<'_> {
    /// The steps; the exit code of a job that ran to its end.
    async fn run(&mut self) -> Result<u8, JobError> {
        let direction = self.spec.direction.clone().map_err(JobError::Config)?;
        self.report.direction = Some(
            match direction {
                Direction::ToPostgres => "sqlite-to-postgres",
                Direction::ToSqlite => "postgres-to-sqlite",
            }
            .into(),
        );
        let compiled;
        let (runtime, source, signature) = match &self.spec.component {
            ComponentChoice::Compiled { runtime, source, signature } => (*runtime, source.clone(), signature.clone()),
            ComponentChoice::Bundled => {
                compiled = compile(BUNDLED_COMPONENT)?;
                (&compiled, "bundled".to_string(), BUNDLED_SIGNATURE.to_string())
            }
            ComponentChoice::File { path, trust } => {
                let wasm = std::fs::read(path)
                    .map_err(|e| JobError::Config(format!("cannot read component {}: {e}", path.display())))?;
                let signature = admit(trust, path, &wasm).map_err(JobError::Config)?;
                compiled = compile(&wasm)?;
                (&compiled, path.display().to_string(), signature)
            }
        };
        let mut instance = flow::instance(runtime, self.events.clone(), self.spec.limits, &self.clock).await?;
        self.report.component = Some(identify(&mut instance, runtime, source, signature).await?);
        self.events.progress().component_ready();
        let conventions = instance.conventions().clone();
        let data_dir = locate(self.spec.data_dir.as_ref(), &conventions)?;
        if let Some(bound) = &self.spec.options.confine_to {
            datadir::confined(bound, &data_dir.root).map_err(JobError::Config)?;
        }
        self.report.data_dir = Some(data_dir.root.display().to_string());
        if let Some(did) = &data_dir.server_did {
            console::info(&format!("Server DID {did}"));
        }
        console::info(&format!("Server config from {}", data_dir.config_file.display()));
        let url = self.spec.postgres_url.trim();
        if url.is_empty() {
            return Err(JobError::Config(
                "ABT_NODE_POSTGRES_URL is not set: export ABT_NODE_POSTGRES_URL=postgres://user:password@host:5432/postgres"
                    .into(),
            ));
        }
        let limits = &self.spec.limits;
        let mut server = PgServer::parse(url).map_err(JobError::Config)?.with_session_bounds(
            std::time::Duration::from_secs(limits.timeout_seconds),
            std::time::Duration::from_secs(limits.stall_seconds),
        );
        let options = &self.spec.options;
        if let Some(tag) = &options.session_tag {
            server = server.with_session_tag(tag);
        }
        if !options.end_sessions_of.is_empty() {
            let mut admin = server.connect_admin().await.map_err(JobError::Config)?;
            let ended =
                server.end_sessions_tagged(&mut admin, &options.end_sessions_of).await.map_err(JobError::Config)?;
            if ended > 0 {
                console::info(&format!("Ended {ended} session(s) an earlier attempt of this job left on PostgreSQL"));
            }
        }
        self.report.postgres = Some(server.display.clone());
        if options.dry_run {
            console::info("Dry run: everything is read, converted and checked; nothing is written");
        }
        let shared = flow::Shared {
            direction,
            options,
            runtime,
            events: self.events,
            limits: self.spec.limits,
            clock: &self.clock,
            conventions: &conventions,
            gate: self.spec.gate.as_ref(),
        };
        let done = match direction {
            Direction::ToPostgres => to_postgres::run(&shared, &mut instance, &data_dir, &server).await?,
            Direction::ToSqlite => to_sqlite::run(&shared, &mut instance, &data_dir, &server).await?,
        };
        for d in &done.databases {
            self.report.databases.push(entry(d));
        }
        summarize(direction, &done, &server, options.dry_run);
        if !options.dry_run {
            self.report.lock_file = done.lock_file.as_ref().map(|l| l.display().to_string());
        }
        let skipped: u64 = done.databases.iter().map(|d| d.report.rejected_rows).sum();
        if options.dry_run {
            return Ok(if skipped > 0 || self.events.rejects() > 0 { EXIT_REJECTED } else { EXIT_SUCCESS });
        }
        if skipped > 0 {
            console::warn(&format!(
                "{skipped} row(s) were NOT migrated (--skip-rejects): the target is missing them; see the rejects file"
            ));
        }
        match direction {
            Direction::ToPostgres => {
                console::result("Migration postgres completed");
                console::info("Please start server, will use Postgres database: blocklet server start");
            }
            Direction::ToSqlite => {
                console::result("Migration sqlite completed");
                console::info(
                    "Please start server, will use SQLite database: unset ABT_NODE_POSTGRES_URL && blocklet server start",
                );
            }
        }
        Ok(if skipped > 0 { EXIT_SKIPPED_ROWS } else { EXIT_SUCCESS })
    }
}

/// Compile a component for a job of its own.
/// Refuse a component file `trust` does not admit, before it is compiled; warn (every run) when
/// it is admitted only by `--allow-unsigned`.
pub fn admit(trust: &crate::sandbox::signature::Policy, path: &std::path::Path, wasm: &[u8]) -> Result<String, String> {
    let admitted = trust.admit(path, wasm)?;
    if let Some(warning) = admitted.warning(path) {
        console::warn(&warning);
    }
    Ok(admitted.describe())
}

fn compile(wasm: &[u8]) -> Result<Runtime, JobError> {
    Runtime::new(wasm).map_err(|e| JobError::Config(format!("{e:#}")))
}

/// Who the component says it is, with the digest of what actually runs.
async fn identify(
    instance: &mut Instance,
    runtime: &Runtime,
    source: String,
    signature: String,
) -> Result<ComponentIdentity, JobError> {
    let info = instance.info().await.map_err(JobError::from_trap)?;
    Ok(ComponentIdentity {
        name: info.name,
        version: info.version,
        wit_version: info.wit_version,
        server_versions: info.server_versions,
        sha256: runtime.sha256().to_string(),
        source,
        signature,
    })
}

/// The data dir: the one given, or found by walking up from the working directory.
fn locate(flag: Option<&PathBuf>, conventions: &Conventions) -> Result<DataDir, JobError> {
    let markers = &conventions.data_dir_markers;
    let found = match flag {
        Some(dir) => datadir::from_flag(dir, markers),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| JobError::Config(format!("cannot read the working directory: {e}")))?;
            datadir::discover(&cwd, markers)
        }
    };
    found.map_err(|e| {
        if matches!(e, datadir::DataDirError::NotFound { .. }) {
            console::info("Please initialize a configuration directory first: run blocklet server init");
        }
        JobError::Config(e.to_string())
    })
}

/// The closing lines of a job that ran to its end.
fn summarize(direction: Direction, done: &Done, server: &PgServer, dry_run: bool) {
    let n = done.databases.len();
    let rows: u64 = done.databases.iter().flat_map(|d| d.report.tables.iter().map(|t| t.target_rows)).sum();
    match direction {
        Direction::ToPostgres => {
            let tables: usize = done.databases.iter().map(|d| d.report.tables.len()).sum();
            if dry_run {
                console::info(&format!("Dry run: {n} databases, {tables} tables, {rows} rows would be migrated"));
            } else {
                console::info(&format!(
                    "{n} databases, {tables} tables, {rows} rows migrated to {} and verified",
                    server.display
                ));
            }
        }
        Direction::ToSqlite if dry_run => console::info(&format!("Dry run: {n} files, {rows} rows would be written")),
        Direction::ToSqlite => {
            console::info(&format!("{n} files, {rows} rows written from {} and verified", server.display));
            for d in done.databases.iter().filter(|d| !d.backups.is_empty()) {
                let names: Vec<String> = d.backups.iter().map(|b| b.display().to_string()).collect();
                console::info(&format!("Previous {} kept as {}", d.path.display(), names.join(", ")));
            }
            if let Some(lock) = &done.lock_file {
                console::info(&format!("Removed {}", lock.display()));
            }
        }
    }
}

/// One database's entry in the report.
fn entry(d: &DoneDatabase) -> DatabaseEntry {
    DatabaseEntry {
        kind: d.planned.kind.wit_name().into(),
        sqlite_file: d.planned.sqlite_file.clone(),
        postgres_database: d.planned.postgres_database.clone(),
        app_pid: d.planned.app_pid.clone(),
        tables: d
            .report
            .tables
            .iter()
            .map(|t| TableEntry {
                table: t.table.clone(),
                source_rows: t.source_rows,
                target_rows: t.target_rows,
                rejected_rows: t.rejected_rows,
                checksum: t.checksum.clone(),
            })
            .collect(),
        rejected_rows: d.report.rejected_rows,
        backups: d.backups.iter().map(|b| b.display().to_string()).collect(),
    }
}
