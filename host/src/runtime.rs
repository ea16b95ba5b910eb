//! The wasm sandbox: one engine, one store per job, and the host side of the WIT imports.
//!
//! The component gets no filesystem, network, environment or stdio (an empty WASI context);
//! it reaches only the database handles the host puts into its store, and its linear memory
//! is capped.

use crate::bindings::blocklet::migrate::database::{self as wit_db, Dialect};
use crate::bindings::blocklet::migrate::events::{self as wit_events, Level, RejectedRow};
use crate::bindings::blocklet::migrate::types;
use crate::bindings::exports::blocklet::migrate::migrator as api;
use crate::bindings::{Batch, DbError, ErrorKind, Migration};
use crate::postgres::{PgTarget, PgWriter};
use crate::sqlite::SqliteSource;
use anyhow::{Context, anyhow};
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The component built from `guest/` and embedded at build time.
pub static BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("BLOCKLET_MIGRATE_GUEST_WASM"));

/// The WIT package version this host implements (`wit/blocklet-migrate.wit`).
pub const HOST_WIT_VERSION: &str = "1.1.0";

/// Default cap on the component's linear memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 << 20;

/// A database the host opened for the job (the WIT `handle`): a read-only source or a
/// writable target, of either engine.
pub enum HandleResource {
    Sqlite(SqliteSource),
    Postgres(PgTarget),
    /// A dry run's stand-in for a PostgreSQL database that does not exist yet: it accepts
    /// statements and rows and keeps nothing.
    Discard(String),
}

impl HandleResource {
    fn label(&self) -> String {
        match self {
            HandleResource::Sqlite(s) => s.path().display().to_string(),
            HandleResource::Postgres(p) => p.database().to_string(),
            HandleResource::Discard(name) => name.clone(),
        }
    }

    fn writable(&self) -> bool {
        match self {
            HandleResource::Sqlite(s) => s.writable(),
            HandleResource::Postgres(p) => p.writable(),
            HandleResource::Discard(_) => true,
        }
    }

    fn deny_read_only(&self) -> Result<(), DbError> {
        if self.writable() {
            Ok(())
        } else {
            Err(DbError::new(ErrorKind::Denied, format!("{} is a read-only source", self.label())))
        }
    }

    async fn execute(&self, statement: &str) -> Result<u64, DbError> {
        self.deny_read_only()?;
        match self {
            HandleResource::Sqlite(s) => s.execute(statement).await,
            HandleResource::Postgres(p) => p.execute(statement).await,
            HandleResource::Discard(_) => Ok(0),
        }
    }

    async fn query(&self, statement: &str) -> Result<Batch, DbError> {
        match self {
            HandleResource::Sqlite(s) => s.query(statement).await,
            // Sources run inside a read-only transaction, so a query cannot write.
            HandleResource::Postgres(p) => p.query(statement).await,
            HandleResource::Discard(_) => Ok(Batch::empty(0, 0)),
        }
    }
}

/// A stream of batches (the WIT `cursor`).
pub struct CursorResource {
    batches: mpsc::Receiver<Result<Batch, DbError>>,
}

/// A bulk load (the WIT `bulk-writer`): binary COPY into PostgreSQL, prepared inserts into
/// SQLite (which go to the target's thread with the handle's command channel).
pub enum WriterResource {
    Postgres(PgWriter),
    Sqlite {
        target: Resource<HandleResource>,
        table: String,
        columns: Vec<String>,
        rows: u64,
        finished: bool,
    },
    /// Counts what a dry run would load.
    Discard {
        columns: usize,
        rows: u64,
    },
}

/// Where the component's events go.
pub trait EventSink: Send {
    fn log(&mut self, level: Level, message: &str);
    fn progress(&mut self, database: &str, table: &str, rows_done: u64, rows_total: u64);
    fn reject(&mut self, row: RejectedRow);
}

/// Per-job store state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    events: Box<dyn EventSink>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for HostState {}
impl wit_db::Host for HostState {}

impl wit_db::HostHandle for HostState {
    async fn dialect(&mut self, h: Resource<HandleResource>) -> wasmtime::Result<Dialect> {
        Ok(match self.table.get(&h)? {
            HandleResource::Sqlite(_) => Dialect::Sqlite,
            HandleResource::Postgres(_) | HandleResource::Discard(_) => Dialect::Postgres,
        })
    }

    async fn label(&mut self, h: Resource<HandleResource>) -> wasmtime::Result<String> {
        Ok(self.table.get(&h)?.label())
    }

    async fn list_tables(&mut self, h: Resource<HandleResource>) -> wasmtime::Result<Result<Vec<String>, DbError>> {
        Ok(match self.table.get(&h)? {
            HandleResource::Sqlite(s) => s.list_tables().await,
            HandleResource::Postgres(p) => p.list_tables().await,
            HandleResource::Discard(_) => Ok(Vec::new()),
        })
    }

    async fn describe_table(
        &mut self,
        h: Resource<HandleResource>,
        table: String,
    ) -> wasmtime::Result<Result<Option<types::TableInfo>, DbError>> {
        Ok(match self.table.get(&h)? {
            HandleResource::Sqlite(s) => s.describe_table(&table).await,
            HandleResource::Postgres(p) => p.describe_table(&table).await,
            HandleResource::Discard(_) => Ok(None),
        })
    }

    async fn count_rows(
        &mut self,
        h: Resource<HandleResource>,
        table: String,
    ) -> wasmtime::Result<Result<u64, DbError>> {
        Ok(match self.table.get(&h)? {
            HandleResource::Sqlite(s) => s.count_rows(&table).await,
            HandleResource::Postgres(p) => p.count_rows(&table).await,
            HandleResource::Discard(_) => Ok(0),
        })
    }

    async fn read(
        &mut self,
        h: Resource<HandleResource>,
        table: String,
        columns: Vec<String>,
        order_by: Vec<String>,
        batch_rows: u32,
    ) -> wasmtime::Result<Result<Resource<CursorResource>, DbError>> {
        let batches = match self.table.get(&h)? {
            HandleResource::Sqlite(s) => s.read(&table, &columns, &order_by, batch_rows),
            HandleResource::Postgres(p) => p.read(&table, &columns, &order_by, batch_rows).await,
            HandleResource::Discard(_) => Ok(mpsc::channel(1).1),
        };
        Ok(match batches {
            Ok(batches) => Ok(self.table.push(CursorResource { batches })?),
            Err(e) => Err(e),
        })
    }

    async fn execute(
        &mut self,
        h: Resource<HandleResource>,
        statement: String,
    ) -> wasmtime::Result<Result<u64, DbError>> {
        Ok(self.table.get(&h)?.execute(&statement).await)
    }

    async fn query(
        &mut self,
        h: Resource<HandleResource>,
        statement: String,
    ) -> wasmtime::Result<Result<Batch, DbError>> {
        Ok(self.table.get(&h)?.query(&statement).await)
    }

    async fn bulk_load(
        &mut self,
        h: Resource<HandleResource>,
        table: String,
        columns: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<WriterResource>, DbError>> {
        let handle = self.table.get(&h)?;
        if let Err(e) = handle.deny_read_only() {
            return Ok(Err(e));
        }
        let writer = match handle {
            HandleResource::Postgres(p) => p.bulk_load(&table, &columns).await.map(WriterResource::Postgres),
            HandleResource::Discard(_) => Ok(WriterResource::Discard { columns: columns.len(), rows: 0 }),
            HandleResource::Sqlite(_) => {
                let target = Resource::new_borrow(h.rep());
                Ok(WriterResource::Sqlite { target, table, columns, rows: 0, finished: false })
            }
        };
        Ok(match writer {
            Ok(w) => Ok(self.table.push(w)?),
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, h: Resource<HandleResource>) -> wasmtime::Result<()> {
        // The component only ever borrows handles; the host owns and closes them.
        if h.owned() {
            self.table.delete(h)?;
        }
        Ok(())
    }
}

impl wit_db::HostCursor for HostState {
    async fn next_batch(&mut self, c: Resource<CursorResource>) -> wasmtime::Result<Result<Option<Batch>, DbError>> {
        let cursor = self.table.get_mut(&c)?;
        Ok(cursor.batches.recv().await.transpose())
    }

    async fn drop(&mut self, c: Resource<CursorResource>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl wit_db::HostBulkWriter for HostState {
    async fn write(&mut self, w: Resource<WriterResource>, rows: Batch) -> wasmtime::Result<Result<(), DbError>> {
        let (target, table, columns) = match self.table.get_mut(&w)? {
            WriterResource::Postgres(p) => return Ok(p.write(rows).await),
            WriterResource::Discard { columns, rows: count } => {
                return Ok(rows.validate(*columns).map(|_| *count += rows.rows as u64));
            }
            WriterResource::Sqlite { finished: true, table, .. } => {
                let message = format!("bulk load of {table} already finished");
                return Ok(Err(DbError::new(ErrorKind::InvalidInput, message)));
            }
            WriterResource::Sqlite { target, table, columns, .. } => {
                (Resource::<HandleResource>::new_borrow(target.rep()), table.clone(), columns.clone())
            }
        };
        let HandleResource::Sqlite(db) = self.table.get(&target)? else {
            return Ok(Err(DbError::new(ErrorKind::InvalidInput, "bulk writer lost its SQLite target")));
        };
        let inserted = db.insert(&table, &columns, rows).await;
        if let (Ok(n), WriterResource::Sqlite { rows, .. }) = (&inserted, self.table.get_mut(&w)?) {
            *rows += n;
        }
        Ok(inserted.map(|_| ()))
    }

    async fn finish(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<Result<u64, DbError>> {
        Ok(match self.table.get_mut(&w)? {
            WriterResource::Postgres(p) => p.finish().await,
            WriterResource::Discard { rows, .. } => Ok(*rows),
            WriterResource::Sqlite { rows, finished, .. } => {
                *finished = true;
                Ok(*rows)
            }
        })
    }

    async fn drop(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<()> {
        self.table.delete(w)?;
        Ok(())
    }
}

impl wit_events::Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.events.log(level, &message);
        Ok(())
    }

    async fn progress(
        &mut self,
        database: String,
        table: String,
        rows_done: u64,
        rows_total: u64,
    ) -> wasmtime::Result<()> {
        self.events.progress(&database, &table, rows_done, rows_total);
        Ok(())
    }

    async fn reject(&mut self, row: RejectedRow) -> wasmtime::Result<()> {
        self.events.reject(row);
        Ok(())
    }
}

/// A compiled component ready to instantiate, shareable across jobs.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    component: Component,
}

impl Runtime {
    /// Compile `component` (a wasm component binary) and link the host's imports.
    pub fn new(component: &[u8]) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
        let component = Component::new(&engine, component)
            .map_err(|e| anyhow!("{e}"))
            .context("the migration component is not a valid wasm component")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;
        Migration::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(|e| anyhow!("{e}"))?;
        Ok(Runtime { engine, linker, component })
    }

    /// A fresh sandboxed instance for one job.
    pub async fn instantiate(&self, events: Box<dyn EventSink>, memory_limit: usize) -> anyhow::Result<Instance> {
        let state = HostState {
            wasi: WasiCtxBuilder::new().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(memory_limit).instances(4).build(),
            events,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let bindings = Migration::instantiate_async(&mut store, &self.component, &self.linker)
            .await
            .map_err(|e| anyhow!("{e}"))
            .context("cannot instantiate the migration component (was it built for this WIT version?)")?;
        Ok(Instance { store, bindings })
    }
}

/// One sandboxed component instance and the handles it may use.
pub struct Instance {
    store: Store<HostState>,
    bindings: Migration,
}

fn trap(e: wasmtime::Error) -> anyhow::Error {
    anyhow!("the migration component failed: {e:?}")
}

impl Instance {
    /// Give the component access to a database.
    pub fn add_handle(&mut self, handle: HandleResource) -> anyhow::Result<Resource<HandleResource>> {
        Ok(self.store.data_mut().table.push(handle)?)
    }

    /// Take a database back from the component's reach.
    pub fn take_handle(&mut self, handle: Resource<HandleResource>) -> anyhow::Result<HandleResource> {
        Ok(self.store.data_mut().table.delete(handle)?)
    }

    fn borrow(handle: &Resource<HandleResource>) -> Resource<HandleResource> {
        Resource::new_borrow(handle.rep())
    }

    pub async fn info(&mut self) -> anyhow::Result<api::ComponentInfo> {
        self.bindings.blocklet_migrate_migrator().call_info(&mut self.store).await.map_err(trap)
    }

    pub async fn layout(&mut self) -> anyhow::Result<api::SourceLayout> {
        self.bindings.blocklet_migrate_migrator().call_layout(&mut self.store).await.map_err(trap)
    }

    pub async fn plan_to_postgres(
        &mut self,
        index: Option<&Resource<HandleResource>>,
        files: &[String],
    ) -> anyhow::Result<Result<Vec<api::PlannedDatabase>, api::Failure>> {
        let index = index.map(Self::borrow);
        self.bindings
            .blocklet_migrate_migrator()
            .call_plan_to_postgres(&mut self.store, index, files)
            .await
            .map_err(trap)
    }

    pub async fn plan_to_sqlite(
        &mut self,
        index: &Resource<HandleResource>,
        databases: &[String],
    ) -> anyhow::Result<Result<Vec<api::PlannedDatabase>, api::Failure>> {
        self.bindings
            .blocklet_migrate_migrator()
            .call_plan_to_sqlite(&mut self.store, Self::borrow(index), databases)
            .await
            .map_err(trap)
    }

    pub async fn migrate_to_sqlite(
        &mut self,
        db: &api::PlannedDatabase,
        source: &Resource<HandleResource>,
        target: &Resource<HandleResource>,
        options: api::Options,
    ) -> anyhow::Result<Result<api::DatabaseReport, api::Failure>> {
        self.bindings
            .blocklet_migrate_migrator()
            .call_migrate_to_sqlite(&mut self.store, db, Self::borrow(source), Self::borrow(target), &options)
            .await
            .map_err(trap)
    }

    pub async fn migrate_to_postgres(
        &mut self,
        db: &api::PlannedDatabase,
        source: &Resource<HandleResource>,
        target: &Resource<HandleResource>,
        options: api::Options,
    ) -> anyhow::Result<Result<api::DatabaseReport, api::Failure>> {
        self.bindings
            .blocklet_migrate_migrator()
            .call_migrate_to_postgres(&mut self.store, db, Self::borrow(source), Self::borrow(target), &options)
            .await
            .map_err(trap)
    }
}
