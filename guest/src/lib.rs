//! The migration component: everything blocklet-migrate knows about Blocklet Server's databases.
//!
//! The logic is plain Rust, unit-tested natively; [`shell`] is the thin wasm export that binds
//! it to the WIT contract in `wit/blocklet-migrate.wit`. Start at [`migrate`] for the flow of
//! one database, [`catalog`] for the schema knowledge (which is data: the DDL and migration
//! lists a real 1.17.12 server produces, embedded from `guest/schema/`), [`convert`] for how
//! each value crosses from SQLite to PostgreSQL, and [`sql`] for SQL text (public, so
//! that other crates split and quote SQL exactly as the component does).

pub mod accounting;
pub mod batch;
pub mod canonical;
pub mod catalog;
pub mod conventions;
pub mod convert;
pub mod db;
pub mod ddl;
pub mod migrate;
pub mod naming;
pub mod plan;
pub mod sql;
pub mod sqlite_ddl;
pub mod timestamp;

#[cfg(target_arch = "wasm32")]
mod shell;

/// The WIT package version this component is built against (see `wit/blocklet-migrate.wit`).
pub const WIT_VERSION: &str = "1.3.0";
