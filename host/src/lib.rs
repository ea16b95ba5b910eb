//! blocklet-migrate: moves a Blocklet Server's databases between SQLite and PostgreSQL, in
//! either direction.
//!
//! The host (this crate) does I/O and sandboxing; the migration logic is a wasm component
//! (`guest/`) that talks to it only through `wit/blocklet-migrate.wit`. The crate is in layers
//! that import only downward:
//!
//! [`cli`] → [`service`] → [`job`] → [`sandbox`] → [`capability`] → [`backend`] → [`policy`] → [`wit`], [`text`]
//!
//! `docs/architecture.md` has the map, one job's path from the command line to the commit, and
//! where each concern lives. Library callers (a hosting provider running many tenants) use the
//! job API, [`job::run`], as the CLI and [`cli::batch`] do.

pub mod backend;
pub mod capability;
pub mod cli;
pub mod job;
pub mod policy;
pub mod sandbox;
pub mod service;
pub mod text;
pub mod wit;

#[cfg(test)]
mod layering;
