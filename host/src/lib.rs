//! blocklet-migrate: moves a Blocklet Server's databases from SQLite to PostgreSQL.
//!
//! The host (this crate) does I/O and sandboxing; the migration logic is a wasm component
//! (`guest/`) that talks to it only through `wit/blocklet-migrate.wit`.
//!
//! | module | concern |
//! |---|---|
//! | [`cli`] | the command line: flags, messages, exit codes |
//! | [`cli_generate`] | shell completions and the man page, from the clap definitions |
//! | [`job`] | one migration job: plan, open, migrate, commit together or roll back |
//! | [`datadir`] | finding the data dir and its database files |
//! | [`pgserver`] | `ABT_NODE_POSTGRES_URL`: parsing, redaction, creating databases |
//! | [`sqlite`] | read-only SQLite snapshots streamed as columnar batches |
//! | [`postgres`] | PostgreSQL targets: one transaction each, binary COPY |
//! | [`runtime`] | the wasm sandbox and the host side of the WIT imports |
//! | [`component_cache`] | compiled components cached on disk, verified before use |
//! | [`sql_guard`] | the allowlist every statement a component sends to PostgreSQL must pass |
//! | [`bindings`] | types generated from the WIT |
//! | [`output`] | what the user sees, and the rejected-rows file |
//! | [`progress`] | progress bars or lines, `--progress-events`, the report's timeline |
//! | [`report`] | the `--report` JSON |

//!
//! # Hosting many migrations in one process
//!
//! A hosting provider shares one [`wasmtime::Engine`] (pooling allocator, one epoch ticker),
//! compiles each distinct component once, and gives every job its own store with its own
//! limits and only its own connections; [`batch`] is the reference user of this API:
//!
//! ```no_run
//! # async fn demo(data_dir: &blocklet_migrate::datadir::DataDir, server: &blocklet_migrate::pgserver::PgServer)
//! # -> anyhow::Result<()> {
//! use blocklet_migrate::runtime::{Limits, Runtime, BUNDLED_COMPONENT};
//! use blocklet_migrate::{job, output};
//!
//! let engine = Runtime::pooled_engine(16, 512 << 20)?; // room for 16 concurrent jobs
//! let runtime = Runtime::with_engine(&engine, BUNDLED_COMPONENT)?; // compiled once, cached on disk
//! let events = output::ConsoleEvents::new(output::default_rejects_path());
//! let limits = Limits { memory_bytes: 256 << 20, cpu_seconds: 30, timeout_seconds: 3600 };
//! let mut instance = job::instance(&runtime, events.clone(), limits).await?; // one store per job
//! let report = job::sqlite_to_postgres(
//!     &mut instance,
//!     job::ToPostgres {
//!         data_dir, server, force: false, batch_rows: 1000, skip_rejects: false, dry_run: false,
//!         allow_running_server: false, runtime: &runtime, events, limits, parallel: 2,
//!     },
//! )
//! .await?;
//! println!("{} databases migrated", report.databases.len());
//! # Ok(()) }
//! ```
//!
//! Each job's failure (a trap, a limit, a refused statement) is its own: the store is dropped,
//! its transactions roll back, and other jobs carry on.

pub mod batch;
pub mod bindings;
pub mod cli;
pub mod cli_generate;
pub mod component_cache;
pub mod datadir;
pub mod job;
pub mod output;
pub mod pgserver;
pub mod postgres;
pub mod progress;
pub mod report;
pub mod runtime;
pub mod sql_guard;
pub mod sqlite;
