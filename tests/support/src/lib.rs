//! Support for blocklet-migrate's end-to-end tests (`tests/*.rs`) and benchmark (`bench/`).
//!
//! Each module has one job; everything a test uses is re-exported here, so a test file starts with
//! `use blocklet_migrate_test_support::*;`:
//!
//! * [`paths`]: where the fixture and the reference data of the real 1.17.12 server live;
//! * [`fixture`]: a test's own copy of the demo fixture, and proof a run left a source unchanged;
//! * [`cluster`]: a throwaway PostgreSQL cluster per test or bench run, and what tests ask it;
//! * [`cli`]: running the `blocklet-migrate` binary with a time limit; [`outcome`]: what a
//!   finished run must look like (completion lines, lock file, backups);
//! * [`sqlite`], [`holder`]: SQLite files read through private snapshots, or held open like a
//!   live server holds them;
//! * [`schema`], [`facts`], [`canonical`], [`compare`]: schema and row comparisons, independent of
//!   the tool's own checks;
//! * [`sql`]: quoting and the one statement splitter; [`timestamp`]: the tests' time formats;
//! * [`components`]: building the wasm test components of `tests/components`; [`hostile`]:
//!   running one as a job's component and checking that it was contained;
//! * [`generate`] (with [`rng`]): a fixture copy grown by N realistic rows (the bench's data, and
//!   the service tests' jobs that must still be running when something happens to them);
//! * [`service`]: a throwaway NATS server, `blocklet-migrate serve` processes and an HTTP client.
//!
//! External programs used: the PostgreSQL server binaries (`initdb`, `pg_ctl`, `psql`, `pg_dump`)
//! from `/usr/lib/postgresql/15/bin` or else the newest `/usr/lib/postgresql/*/bin`; the `sqlite3`
//! shell; `runuser` and `chown` when running as root; `nats-server` for the service tests.
//!
//! Helpers panic with a message naming the file, database, table and column involved: a test that
//! cannot read what it checks has failed. The cluster's start and queries also come as `try_`
//! forms returning errors, for the bench.

pub mod canonical;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod components;
pub mod facts;
pub mod fixture;
pub mod generate;
pub mod holder;
pub mod hostile;
pub mod outcome;
pub mod paths;
pub mod rng;
pub mod schema;
pub mod service;
pub mod sql;
pub mod sqlite;
pub mod timestamp;

pub use canonical::*;
pub use cli::*;
pub use cluster::*;
pub use compare::*;
pub use components::*;
pub use facts::*;
pub use fixture::*;
pub use holder::*;
pub use hostile::*;
pub use outcome::*;
pub use paths::*;
pub use schema::*;
pub use service::*;
pub use sql::*;
pub use sqlite::*;
pub use timestamp::*;
