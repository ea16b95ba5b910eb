//! The command line.
//!
//! `blocklet-migrate --dialect postgres|sqlite [--data-dir DIR] [--force] [--dry-run]
//! [--skip-rejects] [--report FILE] [--rejects FILE] [--component FILE]`, and
//! `blocklet-migrate component info [FILE]`.
//!
//! Exit codes (also in the README): 0 success; 1 failure (connection lost, component error…);
//! 2 usage or configuration error; 3 rows rejected, nothing committed (a dry run: rows would be
//! rejected); 4 verification mismatch, nothing committed; 5 success, but rejected rows were
//! skipped (`--skip-rejects`).

use crate::bindings::exports::blocklet::migrate::migrator::DatabaseKind;
use crate::datadir::{self, DataDir};
use crate::job::{self, JobError, ToPostgres, ToSqlite};
use crate::output;
use crate::pgserver::PgServer;
use crate::progress::{Display, Progress};
use crate::report::{self, ComponentIdentity, DatabaseEntry, RunReport, TableEntry};
use crate::runtime::{
    BUNDLED_COMPONENT, DEFAULT_CPU_SECONDS, DEFAULT_MEMORY_LIMIT, DEFAULT_TIMEOUT_SECONDS, Instance, Limits, Runtime,
};
use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_SUCCESS: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_VERIFICATION: u8 = 4;
pub const EXIT_SKIPPED_ROWS: u8 = 5;

#[derive(Parser, Debug)]
#[command(
    name = "blocklet-migrate",
    version,
    long_version = concat!(
        env!("CARGO_PKG_VERSION"),
        "\nbundled component: ",
        env!("BLOCKLET_MIGRATE_BUNDLED_COMPONENT"),
        "\nWIT package: ",
        env!("BLOCKLET_MIGRATE_WIT_PACKAGE")
    ),
    about = "Migrate a Blocklet Server's databases between SQLite and PostgreSQL",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub migrate: MigrateArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Inspect migration components.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// Run many jobs (tenants) in one process, each sandboxed with its own limits.
    Batch {
        /// A TOML file with one `[[job]]` table per job (see the README).
        file: PathBuf,
        /// How many jobs run at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Write a JSON summary of every job here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Print shell completions or the man page.
    Generate(crate::cli_generate::GenerateArgs),
}

#[derive(Subcommand, Debug)]
pub enum ComponentCommand {
    /// Print a component's name, version, WIT version, known schema and sha256.
    Info {
        /// A component file; default: the bundled one.
        file: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Which dialect to migrate to: postgres (SQLite → PostgreSQL) or sqlite (PostgreSQL → SQLite).
    #[arg(long)]
    pub dialect: Option<String>,
    /// The data dir (`.blocklet-server`, or the directory holding it). Default: found by
    /// walking up from the working directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replace Blocklet tables that already hold rows in the target databases.
    #[arg(long)]
    pub force: bool,
    /// Read and convert everything and check it against the target schema; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Commit without the rows that cannot be migrated faithfully (they are listed in the
    /// rejects file, and the exit code is 5).
    #[arg(long)]
    pub skip_rejects: bool,
    /// Go ahead even when a database file is open in another process (a running server).
    #[arg(long)]
    pub allow_running_server: bool,
    /// Write a JSON report of the run here, whatever its outcome.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write every rejected row here as JSON lines (default: a file in the temp dir).
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Run this migration component instead of the bundled one.
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Rows per batch read from the source.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch_rows: u32,
    /// Memory limit of the migration component, in MiB.
    #[arg(long, default_value_t = (DEFAULT_MEMORY_LIMIT >> 20) as u64, value_name = "MIB")]
    pub memory_limit: u64,
    /// CPU limit of the migration component: seconds it may compute without calling the host.
    #[arg(long, default_value_t = DEFAULT_CPU_SECONDS, value_name = "SECONDS")]
    pub cpu_limit: u64,
    /// Databases migrated at once: PostgreSQL loads each on its own core, and one database's
    /// disk waits (CREATE DATABASE, COMMIT) overlap another's work.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    /// Show only warnings, errors and the final result (no progress, no per-table lines).
    #[arg(long, short)]
    pub quiet: bool,
    /// Write progress events here as JSON lines (database/table started and loaded, rows sent,
    /// first row), each with milliseconds since the start.
    #[arg(long, value_name = "FILE")]
    pub progress_events: Option<PathBuf>,
    /// Wall-clock limit of the whole run, in seconds (0: none).
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_SECONDS, value_name = "SECONDS")]
    pub timeout: u64,
}

impl MigrateArgs {
    fn limits(&self) -> Limits {
        Limits {
            memory_bytes: (self.memory_limit as usize) << 20,
            cpu_seconds: self.cpu_limit,
            timeout_seconds: self.timeout,
        }
    }
}

pub fn main() -> ExitCode {
    crate::progress::process_start();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start: {e}"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match args.command {
        Some(Command::Component { command: ComponentCommand::Info { file } }) => runtime.block_on(component_info(file)),
        Some(Command::Batch { file, parallel, report }) => {
            runtime.block_on(crate::batch::run(&file, parallel, report.as_deref()))
        }
        Some(Command::Generate(generate)) => crate::cli_generate::run(&generate),
        None => runtime.block_on(migrate(args.migrate)),
    };
    ExitCode::from(code)
}

fn exit_code(e: &JobError) -> u8 {
    match e {
        JobError::Config(_) => EXIT_USAGE,
        JobError::Rejected { .. } => EXIT_REJECTED,
        JobError::Verification(_) => EXIT_VERIFICATION,
        JobError::Failed(_) => EXIT_FAILED,
    }
}

/// Run a migration and write its report whatever happens.
async fn migrate(args: MigrateArgs) -> u8 {
    let url = std::env::var("ABT_NODE_POSTGRES_URL").unwrap_or_default();
    migrate_with(args, url, None).await
}

/// A component already compiled for a shared engine (batch jobs).
pub struct Prepared<'a> {
    pub runtime: &'a Runtime,
    pub wasm: &'a [u8],
    pub source: String,
}

/// Run one migration against `url`, writing its report whatever happens; returns the exit code.
pub async fn migrate_with(args: MigrateArgs, url: String, prepared: Option<Prepared<'_>>) -> u8 {
    let mut report = RunReport::new();
    report.dry_run = args.dry_run;
    report.skip_rejects = args.skip_rejects;
    let rejects_path = args.rejects.clone().unwrap_or_else(output::default_rejects_path);
    // Batch jobs share the terminal: they get lines, never bars.
    let display = match Display::choose(args.quiet) {
        Display::Bars if prepared.is_some() => Display::Lines,
        d => d,
    };
    let progress = match Progress::new(display, args.progress_events.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            output::error(&e);
            return EXIT_USAGE;
        }
    };
    if prepared.is_none() {
        output::set_console(&progress);
    }
    let events = output::ConsoleEvents::with_progress(rejects_path, progress.clone());
    let started = std::time::Instant::now();
    let outcome = run(&args, &url, prepared, &events, &mut report).await;
    progress.finish();
    report.timeline = Some(progress.timeline());
    let code = match &outcome {
        Ok(code) => *code,
        Err(e) => {
            output::error(&e.to_string());
            exit_code(e)
        }
    };
    report.rejected_rows = events.rejects();
    report.rejects_file = events.rejects_file().map(|p| p.display().to_string());
    if let Some(path) = &report.rejects_file {
        output::info(&format!("{} rejected row(s) listed in {path}", report.rejected_rows));
    }
    if let Some(e) = events.write_error() {
        output::error(&e);
    }
    report.exit_code = code;
    report.error = outcome.as_ref().err().map(|e| e.to_string());
    report.outcome = match (&outcome, code) {
        (Ok(_), EXIT_SKIPPED_ROWS) => "success-with-skipped-rows",
        (Ok(_), EXIT_REJECTED) => "dry-run-with-rejected-rows",
        (Ok(_), _) if args.dry_run => "dry-run",
        (Ok(_), _) => "success",
        (Err(JobError::Config(_)), _) => "usage-error",
        (Err(JobError::Rejected { .. }), _) => "rejected",
        (Err(JobError::Verification(_)), _) => "verification-failed",
        (Err(JobError::Failed(_)), _) => "failed",
    }
    .into();
    report.finished_at = report::now();
    report.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(path) = &args.report
        && let Err(e) = report.write(path)
    {
        output::error(&format!("cannot write the report: {e}"));
        return if code == EXIT_SUCCESS { EXIT_FAILED } else { code };
    }
    code
}

fn locate(args: &MigrateArgs) -> Result<DataDir, JobError> {
    let found = match &args.data_dir {
        Some(dir) => datadir::from_flag(dir),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| JobError::Config(format!("cannot read the working directory: {e}")))?;
            datadir::discover(&cwd)
        }
    };
    found.map_err(|e| {
        if matches!(e, datadir::DataDirError::NotFound(_)) {
            output::info("Please initialize a configuration directory first: run blocklet server init");
        }
        JobError::Config(e.to_string())
    })
}

/// The component to run: a file, or the bundled one.
fn load_component(file: Option<&PathBuf>) -> Result<(Vec<u8>, String), JobError> {
    match file {
        Some(path) => std::fs::read(path)
            .map(|bytes| (bytes, path.display().to_string()))
            .map_err(|e| JobError::Config(format!("cannot read component {}: {e}", path.display()))),
        None => Ok((BUNDLED_COMPONENT.to_vec(), "bundled".into())),
    }
}

async fn identify(instance: &mut Instance, wasm: &[u8], source: String) -> Result<ComponentIdentity, JobError> {
    let info = instance.info().await.map_err(|e| JobError::Failed(format!("{e:#}")))?;
    Ok(ComponentIdentity {
        name: info.name,
        version: info.version,
        wit_version: info.wit_version,
        server_versions: info.server_versions,
        sha256: format!("{:x}", Sha256::digest(wasm)),
        source,
    })
}

async fn run(
    args: &MigrateArgs,
    url: &str,
    prepared: Option<Prepared<'_>>,
    events: &output::ConsoleEvents,
    report: &mut RunReport,
) -> Result<u8, JobError> {
    let to_sqlite = match args.dialect.as_deref() {
        Some("postgres") => false,
        Some("sqlite") => true,
        other => {
            return Err(JobError::Config(format!(
                "Invalid dialect: {}, allowed dialects: postgres, sqlite",
                other.unwrap_or("(none)")
            )));
        }
    };
    report.direction = Some(if to_sqlite { "postgres-to-sqlite" } else { "sqlite-to-postgres" }.into());
    let data_dir = locate(args)?;
    report.data_dir = Some(data_dir.root.display().to_string());
    if let Some(did) = &data_dir.server_did {
        output::info(&format!("Server DID {did}"));
    }
    output::info(&format!("Server config from {}", data_dir.config_file.display()));
    if url.trim().is_empty() {
        return Err(JobError::Config(
            "ABT_NODE_POSTGRES_URL is not set: export ABT_NODE_POSTGRES_URL=postgres://user:password@host:5432/postgres"
                .into(),
        ));
    }
    let server = PgServer::parse(url.trim()).map_err(JobError::Config)?;
    report.postgres = Some(server.display.clone());
    let owned;
    let (runtime, wasm, source) = match prepared {
        Some(p) => (p.runtime, p.wasm, p.source),
        None => {
            let (wasm, source) = load_component(args.component.as_ref())?;
            let runtime = Runtime::new(&wasm).map_err(|e| JobError::Config(format!("{e:#}")))?;
            owned = (runtime, wasm);
            (&owned.0, owned.1.as_slice(), source)
        }
    };
    let mut instance = job::instance(runtime, events.clone(), args.limits()).await?;
    report.component = Some(identify(&mut instance, wasm, source).await?);
    events.progress().component_ready();
    if args.dry_run {
        output::info("Dry run: everything is read, converted and checked; nothing is written");
    }
    let skipped = if to_sqlite {
        let done = job::postgres_to_sqlite(
            &mut instance,
            ToSqlite {
                data_dir: &data_dir,
                server: &server,
                batch_rows: args.batch_rows,
                skip_rejects: args.skip_rejects,
                dry_run: args.dry_run,
                allow_running_server: args.allow_running_server,
                runtime,
                events: events.clone(),
                limits: args.limits(),
                parallel: args.parallel,
            },
        )
        .await?;
        for f in &done.files {
            report.databases.push(entry(
                &f.planned,
                &f.report,
                f.backups.iter().map(|b| b.display().to_string()).collect(),
            ));
        }
        let rows: u64 = done.files.iter().flat_map(|f| f.report.tables.iter().map(|t| t.target_rows)).sum();
        if args.dry_run {
            output::info(&format!("Dry run: {} files, {rows} rows would be written", done.files.len()));
        } else {
            output::info(&format!(
                "{} files, {rows} rows written from {} and verified",
                done.files.len(),
                server.display
            ));
            for file in done.files.iter().filter(|f| !f.backups.is_empty()) {
                let names: Vec<String> = file.backups.iter().map(|b| b.display().to_string()).collect();
                output::info(&format!("Previous {} kept as {}", file.path.display(), names.join(", ")));
            }
            if let Some(lock) = &done.removed_lock {
                output::info(&format!("Removed {}", lock.display()));
                report.lock_file = Some(lock.display().to_string());
            }
        }
        done.files.iter().map(|f| f.report.rejected_rows).sum::<u64>()
    } else {
        let done = job::sqlite_to_postgres(
            &mut instance,
            ToPostgres {
                data_dir: &data_dir,
                server: &server,
                force: args.force,
                batch_rows: args.batch_rows,
                skip_rejects: args.skip_rejects,
                dry_run: args.dry_run,
                allow_running_server: args.allow_running_server,
                runtime,
                events: events.clone(),
                limits: args.limits(),
                parallel: args.parallel,
            },
        )
        .await?;
        for (planned, r) in &done.databases {
            report.databases.push(entry(planned, r, Vec::new()));
        }
        let tables: usize = done.databases.iter().map(|(_, r)| r.tables.len()).sum();
        let rows: u64 = done.databases.iter().flat_map(|(_, r)| r.tables.iter().map(|t| t.target_rows)).sum();
        if args.dry_run {
            output::info(&format!(
                "Dry run: {} databases, {tables} tables, {rows} rows would be migrated",
                done.databases.len()
            ));
        } else {
            output::info(&format!(
                "{} databases, {tables} tables, {rows} rows migrated to {} and verified",
                done.databases.len(),
                server.display
            ));
        }
        report.lock_file = done.lock_file.as_ref().map(|l| l.display().to_string());
        done.databases.iter().map(|(_, r)| r.rejected_rows).sum::<u64>()
    };
    let dialect = if to_sqlite { "sqlite" } else { "postgres" };
    if args.dry_run {
        return Ok(if skipped > 0 || events.rejects() > 0 { EXIT_REJECTED } else { EXIT_SUCCESS });
    }
    if skipped > 0 {
        output::warn(&format!(
            "{skipped} row(s) were NOT migrated (--skip-rejects): the target is missing them; see the rejects file"
        ));
    }
    output::result(&format!("Migration {dialect} completed"));
    if to_sqlite {
        output::info(
            "Please start server, will use SQLite database: unset ABT_NODE_POSTGRES_URL && blocklet server start",
        );
    } else {
        output::info("Please start server, will use Postgres database: blocklet server start");
    }
    Ok(if skipped > 0 { EXIT_SKIPPED_ROWS } else { EXIT_SUCCESS })
}

fn entry(
    planned: &crate::bindings::exports::blocklet::migrate::migrator::PlannedDatabase,
    r: &crate::bindings::exports::blocklet::migrate::migrator::DatabaseReport,
    backups: Vec<String>,
) -> DatabaseEntry {
    DatabaseEntry {
        kind: match planned.kind {
            DatabaseKind::Server => "server",
            DatabaseKind::Service => "service",
            DatabaseKind::Blocklet => "blocklet",
            DatabaseKind::CertificateManager => "certificate-manager",
        }
        .into(),
        sqlite_file: planned.sqlite_file.clone(),
        postgres_database: planned.postgres_database.clone(),
        app_pid: planned.app_pid.clone(),
        tables: r
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
        rejected_rows: r.rejected_rows,
        backups,
    }
}

/// `blocklet-migrate component info [FILE]`.
async fn component_info(file: Option<PathBuf>) -> u8 {
    let result = async {
        let (wasm, source) = load_component(file.as_ref())?;
        let runtime = Runtime::new(&wasm).map_err(|e| JobError::Config(format!("{e:#}")))?;
        let events = output::ConsoleEvents::new(output::default_rejects_path());
        let mut instance = job::instance(&runtime, events, Limits::default()).await?;
        let id = identify(&mut instance, &wasm, source).await?;
        let info = instance.info().await.map_err(|e| JobError::Failed(format!("{e:#}")))?;
        println!("component:       {} {}", id.name, id.version);
        println!("source:          {}", id.source);
        println!("sha256:          {}", id.sha256);
        println!(
            "WIT package:     blocklet:migrate@{} (host implements {})",
            id.wit_version,
            crate::runtime::HOST_WIT_VERSION
        );
        println!("server versions: {}", id.server_versions.join(", "));
        for (kind, n) in info.migrations {
            println!("  {kind}: {n} schema migrations");
        }
        Ok::<_, JobError>(())
    }
    .await;
    match result {
        Ok(()) => EXIT_SUCCESS,
        Err(e) => {
            output::error(&e.to_string());
            exit_code(&e)
        }
    }
}
