//! blocklet-migrate: moves a Blocklet Server's databases from SQLite to PostgreSQL.
//!
//! The host (this crate) does I/O and sandboxing; the migration logic is a wasm component
//! (`guest/`) that talks to it only through `wit/blocklet-migrate.wit`.
//!
//! | module | concern |
//! |---|---|
//! | [`cli`] | the command line: flags, messages, exit codes |
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
//! | [`report`] | the `--report` JSON |

pub mod batch;
pub mod bindings;
pub mod cli;
pub mod component_cache;
pub mod datadir;
pub mod job;
pub mod output;
pub mod pgserver;
pub mod postgres;
pub mod report;
pub mod runtime;
pub mod sql_guard;
pub mod sqlite;
