//! The command line: `blocklet-migrate --dialect postgres [--data-dir DIR] [--force]`.
//!
//! Exit codes: 0 success; 1 failure (connection lost, component error…); 2 usage or
//! configuration error; 3 rows rejected (nothing committed); 4 verification mismatch
//! (nothing committed).

use crate::datadir::{self, DataDir};
use crate::job::{self, JobError, ToPostgres};
use crate::output;
use crate::pgserver::PgServer;
use crate::runtime::{BUNDLED_COMPONENT, DEFAULT_MEMORY_LIMIT, Runtime};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_REJECTED: u8 = 3;
pub const EXIT_VERIFICATION: u8 = 4;

#[derive(Parser, Debug)]
#[command(
    name = "blocklet-migrate",
    version,
    about = "Migrate a Blocklet Server's databases from SQLite to PostgreSQL"
)]
pub struct Args {
    /// Which dialect to migrate to: postgres (SQLite → PostgreSQL) or sqlite.
    #[arg(long)]
    pub dialect: Option<String>,
    /// The data dir (`.blocklet-server`, or the directory holding it). Default: found by
    /// walking up from the working directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Replace Blocklet tables that already hold rows in the target databases.
    #[arg(long)]
    pub force: bool,
    /// Run this migration component instead of the bundled one.
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    /// Rows per batch read from the source.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub batch_rows: u32,
    /// Memory limit of the migration component, in MiB.
    #[arg(long, default_value_t = (DEFAULT_MEMORY_LIMIT >> 20) as u64, value_name = "MIB")]
    pub memory_limit: u64,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            output::error(&format!("cannot start: {e}"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e.to_string());
            ExitCode::from(match e {
                JobError::Config(_) => EXIT_USAGE,
                JobError::Rejected { .. } => EXIT_REJECTED,
                JobError::Verification(_) => EXIT_VERIFICATION,
                JobError::Failed(_) => EXIT_FAILED,
            })
        }
    }
}

fn locate(args: &Args) -> Result<DataDir, JobError> {
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
            output::info(
                "Please initialize a configuration directory first: run blocklet server init",
            );
        }
        JobError::Config(e.to_string())
    })
}

async fn run(args: Args) -> Result<(), JobError> {
    match args.dialect.as_deref() {
        Some("postgres") => {}
        Some("sqlite") => {
            return Err(JobError::Config(
                "--dialect sqlite (PostgreSQL → SQLite) is not available in this version yet; nothing was changed".into(),
            ));
        }
        other => {
            return Err(JobError::Config(format!(
                "Invalid dialect: {}, allowed dialects: postgres, sqlite",
                other.unwrap_or("(none)")
            )));
        }
    }
    let data_dir = locate(&args)?;
    if let Some(did) = &data_dir.server_did {
        output::info(&format!("Server DID {did}"));
    }
    output::info(&format!(
        "Server config from {}",
        data_dir.config_file.display()
    ));
    let url = std::env::var("ABT_NODE_POSTGRES_URL").unwrap_or_default();
    if url.trim().is_empty() {
        return Err(JobError::Config(
            "ABT_NODE_POSTGRES_URL is not set: export ABT_NODE_POSTGRES_URL=postgres://user:password@host:5432/postgres".into(),
        ));
    }
    let server = PgServer::parse(url.trim()).map_err(JobError::Config)?;
    let component = match &args.component {
        Some(path) => std::fs::read(path).map_err(|e| {
            JobError::Config(format!("cannot read component {}: {e}", path.display()))
        })?,
        None => BUNDLED_COMPONENT.to_vec(),
    };
    let wasm = Runtime::new(&component).map_err(|e| JobError::Config(format!("{e:#}")))?;
    let events = output::ConsoleEvents::default();
    let mut instance =
        job::instance(&wasm, events.clone(), (args.memory_limit as usize) << 20).await?;
    let report = job::sqlite_to_postgres(
        &mut instance,
        ToPostgres {
            data_dir: &data_dir,
            server: &server,
            force: args.force,
            batch_rows: args.batch_rows,
        },
    )
    .await?;
    let tables: usize = report.databases.iter().map(|(_, r)| r.tables.len()).sum();
    let rows: u64 = report
        .databases
        .iter()
        .flat_map(|(_, r)| r.tables.iter().map(|t| t.target_rows))
        .sum();
    output::info(&format!(
        "{} databases, {tables} tables, {rows} rows migrated to {} and verified; lock written to {}",
        report.databases.len(),
        server.display,
        report.lock_file.display()
    ));
    output::success("Migration postgres completed");
    output::info("Please start server, will use Postgres database: blocklet server start");
    Ok(())
}
