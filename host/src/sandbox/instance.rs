//! One sandboxed component instance: its store, the handles the job gives it, and the calls
//! into its exports, each raced against the job's clock (deadline, stall limit, cancellation),
//! with a trap explained by the limit that caused it.

use super::conventions::Conventions;
use super::limits::Limits;
use super::state::HostState;
use super::watch::JobClock;
use crate::backend::Database;
use crate::capability::Tally;
use crate::capability::events::TooManyRejects;
use crate::capability::guard::Activity;
use crate::capability::typed;
use crate::text::printable;
use crate::wit::blocklet::migrate::database::Handle;
use crate::wit::exports::blocklet::migrate::{accounting, conventions, migrator};
use crate::wit::{ComponentInfo, DatabaseReport, Failure, Options, PlannedDatabase, SourceLayout};
use anyhow::anyhow;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::Resource;

/// Which way a migration moves data, and so which export migrates a database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// SQLite files into PostgreSQL databases (`--dialect postgres`).
    ToPostgres,
    /// PostgreSQL databases back into SQLite files (`--dialect sqlite`).
    ToSqlite,
}

/// A component instance and the handles it may use.
pub struct Instance {
    store: Store<HostState>,
    migrator: migrator::Guest,
    limits: Limits,
    clock: JobClock,
    /// When the component last made progress (the store's database capability records it).
    activity: Arc<Activity>,
    conventions: Arc<Conventions>,
    /// The component's `accounting` export (WIT 1.3); components built before lack it.
    accounting: Option<accounting::Guest>,
}

/// Await a component call, or the job's clock ending it first; traps explained. The call
/// starts the stall clock afresh: the host asked for something new.
macro_rules! guarded {
    ($self:ident, $call:expr) => {{
        $self.activity.progressed();
        let (clock, activity) = ($self.clock.clone(), $self.activity.clone());
        let raced = tokio::select! {
            biased;
            result = $call => Ok(result),
            ended = clock.ended(&activity) => Err(ended),
        };
        match raced {
            Ok(result) => result.map_err(|e| $self.trap(e)),
            Err(ended) => Err(anyhow::Error::new(ended)),
        }
    }};
}

impl Instance {
    pub(super) fn new(store: Store<HostState>, migrator: migrator::Guest, limits: Limits, clock: JobClock) -> Instance {
        let activity = store.data().database.activity();
        Instance {
            store,
            migrator,
            limits,
            clock,
            activity,
            conventions: Arc::new(Conventions::blocklet_server_1_17()),
            accounting: None,
        }
    }

    pub(super) fn set_accounting(&mut self, accounting: Option<accounting::Guest>) {
        self.accounting = accounting;
    }

    /// Where the component says each of `source_tables` of `db` goes; `None` from a component
    /// built before WIT 1.3, which does not say.
    pub async fn feeds(
        &mut self,
        db: &PlannedDatabase,
        source_tables: &[String],
    ) -> anyhow::Result<Option<Vec<accounting::TableFeed>>> {
        let Some(export) = self.accounting.clone() else { return Ok(None) };
        guarded!(self, export.call_feeds(&mut self.store, db, source_tables)).map(Some)
    }

    /// The rows the host itself moved through `handle`: what its cursors delivered and what
    /// the database accepted from its bulk loads.
    pub fn tally(&self, handle: &Resource<Handle>) -> Tally {
        self.store.data().database.tally(handle.rep())
    }

    /// Rejected rows the component reported, per table name it gave.
    pub fn rejects_by_table(&self) -> std::collections::HashMap<String, u64> {
        self.store.data().events.rejects_by_table().clone()
    }

    /// Ask a 1.3 component for its conventions.
    pub(super) async fn conventions_of(
        &mut self,
        export: &conventions::Guest,
    ) -> anyhow::Result<conventions::ServerConventions> {
        guarded!(self, export.call_get(&mut self.store))
    }

    pub(super) fn set_conventions(&mut self, conventions: Arc<Conventions>) {
        self.store.data_mut().database.set_meta_table(&conventions.meta_table);
        self.conventions = conventions;
    }

    /// The server conventions this instance's component follows.
    pub fn conventions(&self) -> &Conventions {
        &self.conventions
    }

    /// Explain a trap, naming the limit when one was hit.
    fn trap(&self, e: wasmtime::Error) -> anyhow::Error {
        let state = self.store.data();
        if state.cpu.hit {
            anyhow!(
                "the migration component exceeded its CPU limit: {} s of computation without calling the host (--cpu-limit)",
                self.limits.cpu_seconds
            )
        } else if state.events.reject_limit_hit() {
            anyhow::Error::new(TooManyRejects)
        } else if state.memory.hit {
            anyhow!(
                "the migration component exceeded its memory limit of {} MiB (--memory-limit)",
                self.limits.memory_bytes >> 20
            )
        } else {
            // The root cause names the trap; the wasm backtrace is noise to an operator.
            anyhow!("the migration component failed: {}", printable(&e.root_cause().to_string()))
        }
    }

    /// Drop everything the component still holds (cursors, bulk loads, handles): after a
    /// failure, open COPYs abort and connections close, so cleanup is not blocked by them.
    pub fn release_all(&mut self) {
        let state = self.store.data_mut();
        drop(std::mem::take(&mut state.table));
        state.database.release_all();
    }

    /// Send on `tx` when the component has sent its first rows to a bulk load: its setup is
    /// over and its data is flowing.
    pub fn on_first_rows(&mut self, tx: tokio::sync::oneshot::Sender<()>) {
        self.store.data_mut().database.on_first_rows(tx);
    }

    /// Report progress events of what follows under `database` (the job's name for it).
    pub fn set_progress_scope(&mut self, database: &str) {
        self.store.data_mut().events.set_scope(database);
    }

    /// Allow the component to drop tables (the job was started with `--force`).
    pub fn allow_drop(&mut self, allow: bool) {
        self.store.data_mut().database.allow_drop(allow);
    }

    /// Give the component access to a database.
    pub fn add_handle(&mut self, database: Database) -> anyhow::Result<Resource<Handle>> {
        let entry = self.store.data_mut().table.push(database)?;
        Ok(typed(&entry))
    }

    /// Take a database back from the component's reach.
    pub fn take_handle(&mut self, handle: Resource<Handle>) -> anyhow::Result<Database> {
        Ok(self.store.data_mut().table.delete(typed::<Database, _>(&handle))?)
    }

    fn borrow(handle: &Resource<Handle>) -> Resource<Handle> {
        Resource::new_borrow(handle.rep())
    }

    pub async fn info(&mut self) -> anyhow::Result<ComponentInfo> {
        guarded!(self, self.migrator.call_info(&mut self.store))
    }

    pub async fn layout(&mut self) -> anyhow::Result<SourceLayout> {
        guarded!(self, self.migrator.call_layout(&mut self.store))
    }

    pub async fn plan_to_postgres(
        &mut self,
        index: Option<&Resource<Handle>>,
        files: &[String],
    ) -> anyhow::Result<Result<Vec<PlannedDatabase>, Failure>> {
        let index = index.map(Self::borrow);
        guarded!(self, self.migrator.call_plan_to_postgres(&mut self.store, index, files))
    }

    pub async fn plan_to_sqlite(
        &mut self,
        index: &Resource<Handle>,
        databases: &[String],
    ) -> anyhow::Result<Result<Vec<PlannedDatabase>, Failure>> {
        guarded!(self, self.migrator.call_plan_to_sqlite(&mut self.store, Self::borrow(index), databases))
    }

    /// Migrate one planned database from `source` to `target` in `direction`.
    pub async fn migrate(
        &mut self,
        direction: Direction,
        db: &PlannedDatabase,
        source: &Resource<Handle>,
        target: &Resource<Handle>,
        options: Options,
    ) -> anyhow::Result<Result<DatabaseReport, Failure>> {
        let (source, target) = (Self::borrow(source), Self::borrow(target));
        match direction {
            Direction::ToPostgres => {
                guarded!(self, self.migrator.call_migrate_to_postgres(&mut self.store, db, source, target, &options))
            }
            Direction::ToSqlite => {
                guarded!(self, self.migrator.call_migrate_to_sqlite(&mut self.store, db, source, target, &options))
            }
        }
    }
}
