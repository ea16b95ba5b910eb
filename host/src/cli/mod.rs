//! The command line: the clap types (all in this file), and `main`, which hands each command
//! to a thin caller of the job API.
//!
//! `blocklet-migrate --dialect postgres|sqlite [--data-dir DIR] [--force] [--dry-run]
//! [--skip-rejects] [--report FILE] [--rejects FILE] [--component FILE [--trusted-key FILE]…
//! [--allow-unsigned]]` ([`migrate`]), `blocklet-migrate component info [FILE]`
//! ([`component_info`]), `component sign|keygen` ([`component_sign`]) and
//! `blocklet-migrate batch JOBS.toml` ([`batch`]). The exit codes are the job's
//! ([`crate::job::outcome`]).

pub mod batch;
pub mod component_info;
pub mod component_sign;
pub mod generate;
pub mod migrate;
pub mod serve;

pub use crate::job::outcome::{
    EXIT_FAILED, EXIT_REJECTED, EXIT_SKIPPED_ROWS, EXIT_SUCCESS, EXIT_USAGE, EXIT_VERIFICATION,
};

use crate::job::{DEFAULT_BATCH_ROWS, DEFAULT_PARALLEL, JobError, console};
use crate::sandbox::signature::Policy;
use crate::sandbox::{DEFAULT_CPU_SECONDS, DEFAULT_MEMORY_LIMIT, DEFAULT_STALL_SECONDS, DEFAULT_TIMEOUT_SECONDS};
use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

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
        #[arg(long, default_value_t = batch::DEFAULT_JOBS_AT_ONCE)]
        parallel: usize,
        /// Write a JSON summary of every job here.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Which job components may run: applies to every job of the file.
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Run the hosting service: an HTTP API and workers on a shared queue (docs/hosting.md).
    Serve(serve::ServeArgs),
    /// Make a new API token for a tenant of the service, and the digest its entry stores.
    ServiceToken,
    /// Print shell completions or the man page.
    Generate(generate::GenerateArgs),
}

#[derive(Subcommand, Debug)]
pub enum ComponentCommand {
    /// Print a component's name, version, WIT version, known schema and sha256.
    Info {
        /// A component file; default: the bundled one.
        file: Option<PathBuf>,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Sign a component file with an Ed25519 secret key (PEM), replacing any signature it has.
    Sign {
        /// The component file.
        file: PathBuf,
        /// The secret key (PEM, as `component keygen` or `openssl genpkey -algorithm ed25519` writes).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Write the signed component here; default: replace FILE.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Make an Ed25519 key pair for signing components: PREFIX.key (secret) and PREFIX.pub.
    Keygen {
        /// Path and name of the key files, without extension.
        prefix: PathBuf,
    },
}

/// Which component files may run: see [`crate::sandbox::signature`] for the format and the key
/// directory.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Trust components signed by this Ed25519 public key (PEM); repeatable. The `*.pub` keys in
    /// $BLOCKLET_MIGRATE_TRUSTED_KEYS, or else ~/.config/blocklet-migrate/trusted-keys/, are trusted too.
    #[arg(long = "trusted-key", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
    /// Run a component file that no trusted key signed (a warning every run).
    #[arg(long)]
    pub allow_unsigned: bool,
}

impl TrustArgs {
    pub fn policy(&self) -> Result<Policy, JobError> {
        Policy::load(&self.trusted_keys, self.allow_unsigned).map_err(JobError::Config)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Which dialect to migrate to: postgres (SQLite → PostgreSQL) or sqlite (PostgreSQL → SQLite).
    #[arg(long, value_parser = DialectParser)]
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
    /// Run this migration component instead of the bundled one; it must be signed by a
    /// trusted key (or --allow-unsigned).
    #[arg(long, value_name = "FILE")]
    pub component: Option<PathBuf>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Rows per batch read from the source (at most 100000).
    #[arg(long, default_value_t = DEFAULT_BATCH_ROWS, value_name = "N", value_parser = batch_rows)]
    pub batch_rows: u32,
    /// Memory limit of the migration component, in MiB.
    #[arg(long, default_value_t = (DEFAULT_MEMORY_LIMIT >> 20) as u64, value_name = "MIB")]
    pub memory_limit: u64,
    /// CPU limit of the migration component: seconds it may compute without calling the host.
    #[arg(long, default_value_t = DEFAULT_CPU_SECONDS, value_name = "SECONDS")]
    pub cpu_limit: u64,
    /// Databases migrated at once: PostgreSQL loads each on its own core, and one database's
    /// disk waits (CREATE DATABASE, COMMIT) overlap another's work.
    #[arg(long, default_value_t = DEFAULT_PARALLEL, value_name = "N")]
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
    /// End the run when the migration component goes this many seconds without progress (no
    /// rows moved, no long-running statement), however many calls it makes (0: never).
    #[arg(long, default_value_t = DEFAULT_STALL_SECONDS, value_name = "SECONDS")]
    pub stall_limit: u64,
}

/// The dialects `--dialect` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// SQLite → PostgreSQL.
    Postgres,
    /// PostgreSQL → SQLite.
    Sqlite,
}

impl Dialect {
    /// `--dialect`'s value as a job direction, or the usage error the job reports.
    pub fn direction(value: Option<&str>) -> Result<crate::job::Direction, String> {
        match value.and_then(|v| Dialect::from_str(v, false).ok()) {
            Some(Dialect::Postgres) => Ok(crate::job::Direction::ToPostgres),
            Some(Dialect::Sqlite) => Ok(crate::job::Direction::ToSqlite),
            None => Err(format!("Invalid dialect: {}, allowed dialects: postgres, sqlite", value.unwrap_or("(none)"))),
        }
    }
}

/// Takes any `--dialect` value, so that an unknown one is reported by the job with its report
/// written, as the server's own command reports it; lists the dialects for help and completions.
#[derive(Clone)]
struct DialectParser;

impl TypedValueParser for DialectParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(Dialect::value_variants().iter().filter_map(ValueEnum::to_possible_value)))
    }
}

/// `--batch-rows N`: any count, brought into the range the backends read in (1..=100000).
fn batch_rows(value: &str) -> Result<u32, String> {
    let rows: u32 = value.parse().map_err(|e| format!("{e}"))?;
    Ok(crate::backend::clamp_batch_rows(rows))
}

pub fn main() -> ExitCode {
    crate::job::progress::process_start();
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            console::error(&format!("cannot start: {e}"));
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = match args.command {
        Some(Command::Component { command: ComponentCommand::Info { file, trust } }) => {
            runtime.block_on(component_info::run(file, trust))
        }
        Some(Command::Component { command: ComponentCommand::Sign { file, key, output } }) => {
            component_sign::sign(&file, &key, output.as_deref())
        }
        Some(Command::Component { command: ComponentCommand::Keygen { prefix } }) => component_sign::keygen(&prefix),
        Some(Command::Batch { file, parallel, report, trust }) => {
            runtime.block_on(batch::run(&file, parallel, report.as_deref(), &trust))
        }
        Some(Command::Serve(serve)) => runtime.block_on(serve::run(serve)),
        Some(Command::ServiceToken) => serve::new_token(),
        Some(Command::Generate(generate)) => generate::run(&generate),
        None => runtime.block_on(migrate::run(args.migrate)),
    };
    ExitCode::from(code)
}
