//! The wasm sandbox: one engine, one store per job, and the host side of the WIT imports.
//!
//! The component gets no filesystem, network, environment or stdio (an empty WASI context);
//! it reaches only the database handles the host puts into its store; every SQL statement it
//! asks for is checked against an allowlist ([`crate::sql_guard`] for PostgreSQL, a statement
//! allowlist for SQLite targets); its linear memory is capped, and so is the time it may
//! compute without coming back to the host (an epoch deadline). Logs are rate- and
//! size-limited. Hitting a limit traps the component and names the limit.

use crate::bindings::blocklet::migrate::database::{self as wit_db, Dialect};
use crate::bindings::blocklet::migrate::events::{self as wit_events, Level, RejectedRow};
use crate::bindings::blocklet::migrate::types;
use crate::bindings::exports::blocklet::migrate::migrator as api;
use crate::bindings::{Batch, DbError, ErrorKind, Migration};
use crate::postgres::{PgTarget, PgWriter};
use crate::sqlite::{SqliteSource, SqliteWriter};
use anyhow::{Context, anyhow, bail};
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The component built from `guest/` and embedded at build time.
pub static BUNDLED_COMPONENT: &[u8] = include_bytes!(env!("BLOCKLET_MIGRATE_GUEST_WASM"));

/// The WIT package version this host implements (`wit/blocklet-migrate.wit`).
pub const HOST_WIT_VERSION: &str = "1.2.0";

/// The oldest minor version of the WIT package whose components this host runs: 1.1 exports
/// what 1.2 does (1.2 only added an import), while 1.0's records had another shape.
const OLDEST_WIT_MINOR: u64 = 1;

/// Default cap on the component's linear memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 512 << 20;

/// Default cap on how long the component may compute without calling the host. It calls
/// the host at least once per batch, so anything near this is a hang.
pub const DEFAULT_CPU_SECONDS: u64 = 30;

/// Default wall-clock limit of a job: generous for the largest installs, finite for a hang.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 12 * 3600;

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
            HandleResource::Postgres(p) => {
                crate::sql_guard::check_target_statement(statement).map_err(|m| DbError::new(ErrorKind::Denied, m))?;
                p.execute(statement).await
            }
            // A dry run refuses what the real run would refuse.
            HandleResource::Discard(_) => {
                crate::sql_guard::check_target_statement(statement).map_err(|m| DbError::new(ErrorKind::Denied, m))?;
                Ok(0)
            }
        }
    }

    /// Every statement checked first, then run in order; on PostgreSQL in one round trip.
    async fn execute_script(&self, statements: &[String]) -> Result<(), DbError> {
        self.deny_read_only()?;
        match self {
            HandleResource::Sqlite(s) => {
                for statement in statements {
                    s.execute(statement).await?;
                }
                Ok(())
            }
            HandleResource::Postgres(_) | HandleResource::Discard(_) => {
                for statement in statements {
                    crate::sql_guard::check_target_statement(statement)
                        .map_err(|m| DbError::new(ErrorKind::Denied, m))?;
                }
                match self {
                    HandleResource::Postgres(p) => p.execute_script(statements).await,
                    _ => Ok(()),
                }
            }
        }
    }

    async fn query(&self, statement: &str) -> Result<Batch, DbError> {
        match self {
            HandleResource::Sqlite(s) => s.query(statement).await,
            // Checked, and sources also run inside a read-only transaction.
            HandleResource::Postgres(p) => {
                crate::sql_guard::check_read_only_query(statement).map_err(|m| DbError::new(ErrorKind::Denied, m))?;
                p.query(statement).await
            }
            HandleResource::Discard(_) => Ok(Batch::empty(0, 0)),
        }
    }
}

/// A stream of batches (the WIT `cursor`).
pub struct CursorResource {
    batches: mpsc::Receiver<Result<Batch, DbError>>,
    /// The handle it reads from, busy until the cursor is exhausted or dropped.
    handle: u32,
}

/// A bulk load (the WIT `bulk-writer`): binary COPY into PostgreSQL, prepared inserts into
/// SQLite (which go to the target's thread with the handle's command channel).
pub enum WriterResource {
    Postgres(PgWriter),
    Sqlite(SqliteWriter),
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
    /// The host began a bulk load into `table` (for progress; `database` is the job's name for it).
    fn load_started(&mut self, _database: &str, _table: &str) {}
    /// The host sent `rows` more rows of `table` to the target.
    fn rows_sent(&mut self, _database: &str, _table: &str, _rows: u64) {}
    /// The bulk load into `table` finished with `rows` rows.
    fn load_finished(&mut self, _database: &str, _table: &str, _rows: u64) {}
}

/// Per-job store state.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    events: Box<dyn EventSink>,
    /// Host calls so far; the epoch callback treats ticks without a new one as guest compute.
    host_calls: u64,
    calls_at_last_tick: u64,
    busy_ticks: u64,
    cpu_limit_ticks: u64,
    cpu_limit_hit: bool,
    logs: LogBudget,
    progress_budget: LogBudget,
    rejects_seen: u64,
    /// Handles with an open cursor or COPY: anything else on them would wait forever.
    busy_handles: std::collections::HashSet<u32>,
    copy_handles: std::collections::HashSet<u32>,
    writer_handles: std::collections::HashMap<u32, u32>,
    /// Whether the job may drop tables (`--force`): the host enforces it, not the component.
    allow_drop: bool,
    /// The database progress events are reported under (see [`Instance::set_progress_scope`]).
    progress_scope: Option<String>,
    /// The (database, table) each open bulk writer loads, for progress events.
    writer_tables: std::collections::HashMap<u32, (String, String)>,
    /// Told when the first rows are sent (see [`Instance::on_first_rows`]).
    first_rows: Option<tokio::sync::oneshot::Sender<()>>,
}

impl HostState {
    /// Refuse to use a handle while a cursor or COPY on it is open.
    fn check_idle(&self, h: &Resource<HandleResource>) -> Result<(), DbError> {
        if self.busy_handles.contains(&h.rep()) {
            Err(DbError::new(
                ErrorKind::InvalidInput,
                "a cursor or bulk load is still open on this handle: exhaust, finish or drop it first",
            ))
        } else {
            Ok(())
        }
    }
}

/// The component's resource limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Linear memory, in bytes.
    pub memory_bytes: usize,
    /// How long the component may compute without calling the host for database work.
    pub cpu_seconds: u64,
    /// Wall-clock limit of the whole job (0: none); covers a component stuck in a host call.
    pub timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_LIMIT,
            cpu_seconds: DEFAULT_CPU_SECONDS,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        }
    }
}

/// Set (to anything) to write a perf map of the component's compiled functions, so that
/// `perf report` names them instead of showing `[JIT]` addresses.
pub const PERF_MAP_ENV: &str = "BLOCKLET_MIGRATE_PERF_MAP";

/// How often the engine's epoch advances.
const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// Caps the store's linear memory (all memories together) and the number of instances,
/// memories and tables, and remembers that it refused, so the error can name the limit.
struct MemoryCap {
    limit: usize,
    used: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }

    fn tables(&self) -> usize {
        64
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Log lines a component may emit: a burst, then a steady rate; longer lines are cut.
struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
    dropped: u64,
}

const LOG_BURST: f64 = 200.0;
const LOG_PER_SECOND: f64 = 50.0;
const LOG_MAX_BYTES: usize = 2048;
/// Longest field of a rejected row the host keeps.
const REJECT_FIELD_MAX_BYTES: usize = 1024;

impl LogBudget {
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_PER_SECOND).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// Rejected rows recorded per job; beyond this they are counted only.
const MAX_REJECTS_KEPT: u64 = 1_000_000;
/// Statements one `execute-script` may hold (each is also capped in size by the SQL guard).
const MAX_SCRIPT_STATEMENTS: usize = 10_000;

/// Text from a component, safe to print: control characters (terminal escapes) are shown
/// as `\u{..}` instead of being sent to the operator's terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// A component's multi-line message, safe to print: bounded, control characters escaped, and
/// every continuation line indented so it cannot pass for one of the host's own lines.
pub fn printable_message(s: &str) -> String {
    let s = truncate(s.to_string(), 8192);
    s.split('\n').map(|line| printable(line.trim_start())).collect::<Vec<_>>().join("\n    ")
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
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
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
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
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
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
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
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
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
        let batches = match self.table.get(&h)? {
            HandleResource::Sqlite(s) => s.read(&table, &columns, &order_by, batch_rows),
            HandleResource::Postgres(p) => p.read(&table, &columns, &order_by, batch_rows).await,
            HandleResource::Discard(_) => Ok(mpsc::channel(1).1),
        };
        Ok(match batches {
            Ok(batches) => {
                self.busy_handles.insert(h.rep());
                Ok(self.table.push(CursorResource { batches, handle: h.rep() })?)
            }
            Err(e) => Err(e),
        })
    }

    async fn execute(
        &mut self,
        h: Resource<HandleResource>,
        statement: String,
    ) -> wasmtime::Result<Result<u64, DbError>> {
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
        if !self.allow_drop && crate::sqlite::first_keyword(&statement) == "DROP" {
            return Ok(Err(DbError::new(
                ErrorKind::Denied,
                "DROP is only allowed when the job was started with --force",
            )));
        }
        Ok(self.table.get(&h)?.execute(&statement).await)
    }

    async fn execute_script(
        &mut self,
        h: Resource<HandleResource>,
        statements: Vec<String>,
    ) -> wasmtime::Result<Result<(), DbError>> {
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
        if statements.len() > MAX_SCRIPT_STATEMENTS {
            return Ok(Err(DbError::new(
                ErrorKind::Limit,
                format!("a script of {} statements: the limit is {MAX_SCRIPT_STATEMENTS}", statements.len()),
            )));
        }
        if !self.allow_drop && statements.iter().any(|s| crate::sqlite::first_keyword(s) == "DROP") {
            return Ok(Err(DbError::new(
                ErrorKind::Denied,
                "DROP is only allowed when the job was started with --force",
            )));
        }
        Ok(self.table.get(&h)?.execute_script(&statements).await)
    }

    async fn query(
        &mut self,
        h: Resource<HandleResource>,
        statement: String,
    ) -> wasmtime::Result<Result<Batch, DbError>> {
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
        Ok(self.table.get(&h)?.query(&statement).await)
    }

    async fn bulk_load(
        &mut self,
        h: Resource<HandleResource>,
        table: String,
        columns: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<WriterResource>, DbError>> {
        self.host_calls += 1;
        if let Err(e) = self.check_idle(&h) {
            return Ok(Err(e));
        }
        let handle = self.table.get(&h)?;
        if let Err(e) = handle.deny_read_only() {
            return Ok(Err(e));
        }
        let writer = match handle {
            HandleResource::Postgres(p) => p.bulk_load(&table, &columns).await.map(WriterResource::Postgres),
            HandleResource::Discard(_) => Ok(WriterResource::Discard { columns: columns.len(), rows: 0 }),
            HandleResource::Sqlite(s) => s.bulk_load(&table, &columns).map(WriterResource::Sqlite),
        };
        Ok(match writer {
            Ok(w) => {
                if matches!(w, WriterResource::Postgres(_)) {
                    // A COPY holds the connection until it finishes.
                    self.busy_handles.insert(h.rep());
                    self.copy_handles.insert(h.rep());
                }
                let w = self.table.push(w)?;
                self.writer_handles.insert(w.rep(), h.rep());
                let scope = self.scope_or(&h);
                self.events.load_started(&scope, &table);
                self.writer_tables.insert(w.rep(), (scope, table));
                Ok(w)
            }
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
        self.host_calls += 1;
        let cursor = self.table.get_mut(&c)?;
        let next = cursor.batches.recv().await.transpose();
        if !matches!(next, Ok(Some(_))) {
            let handle = cursor.handle;
            self.busy_handles.remove(&handle);
        }
        Ok(next)
    }

    async fn drop(&mut self, c: Resource<CursorResource>) -> wasmtime::Result<()> {
        let cursor = self.table.delete(c)?;
        self.busy_handles.remove(&cursor.handle);
        Ok(())
    }
}

impl wit_db::HostBulkWriter for HostState {
    async fn write(&mut self, w: Resource<WriterResource>, rows: Batch) -> wasmtime::Result<Result<(), DbError>> {
        self.host_calls += 1;
        let sent = rows.rows as u64;
        let written = self.write_rows(&w, rows).await?;
        if written.is_ok() {
            if let Some((database, table)) = self.writer_tables.get(&w.rep()) {
                self.events.rows_sent(database, table, sent);
            }
            if sent > 0
                && let Some(tx) = self.first_rows.take()
            {
                let _ = tx.send(());
                // This component may go on converting without ever waiting, and on a
                // current-thread runtime it shares its thread with the job: give the job a
                // chance to let the next database set up now.
                tokio::task::yield_now().await;
            }
        }
        Ok(written)
    }

    async fn finish(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<Result<u64, DbError>> {
        self.host_calls += 1;
        let finished = self.finish_rows(&w).await?;
        if let (Ok(rows), Some((database, table))) = (&finished, self.writer_tables.remove(&w.rep())) {
            self.events.load_finished(&database, &table, *rows);
        }
        Ok(finished)
    }

    async fn drop(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<()> {
        self.writer_tables.remove(&w.rep());
        self.drop_writer(w)
    }
}

impl HostState {
    /// The database events are reported under: the job's name for it, else the handle's label.
    fn scope_or(&self, h: &Resource<HandleResource>) -> String {
        match &self.progress_scope {
            Some(s) => s.clone(),
            None => self.table.get(h).map(|h| h.label()).unwrap_or_default(),
        }
    }

    async fn write_rows(&mut self, w: &Resource<WriterResource>, rows: Batch) -> wasmtime::Result<Result<(), DbError>> {
        Ok(match self.table.get_mut(w)? {
            WriterResource::Postgres(p) => p.write(rows).await,
            WriterResource::Sqlite(s) => s.write(rows).await,
            WriterResource::Discard { columns, rows: count } => {
                rows.validate(*columns).map(|_| *count += rows.rows as u64)
            }
        })
    }

    async fn finish_rows(&mut self, w: &Resource<WriterResource>) -> wasmtime::Result<Result<u64, DbError>> {
        if let Some(handle) = self.writer_handles.get(&w.rep()).copied() {
            self.busy_handles.remove(&handle);
            self.copy_handles.remove(&handle);
        }
        Ok(match self.table.get_mut(w)? {
            WriterResource::Postgres(p) => p.finish().await,
            WriterResource::Sqlite(s) => s.finish().await,
            WriterResource::Discard { rows, .. } => Ok(*rows),
        })
    }

    fn drop_writer(&mut self, w: Resource<WriterResource>) -> wasmtime::Result<()> {
        if let Some(handle) = self.writer_handles.remove(&w.rep()) {
            self.busy_handles.remove(&handle);
            self.copy_handles.remove(&handle);
        }
        self.table.delete(w)?;
        Ok(())
    }
}

impl wit_events::Host for HostState {
    // Events do not count as host activity for the CPU limit: a loop that only logs is a hang.
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.logs.allow() {
            self.events.log(level, &printable(&truncate(message, LOG_MAX_BYTES)));
        }
        Ok(())
    }

    async fn progress(
        &mut self,
        database: String,
        table: String,
        rows_done: u64,
        rows_total: u64,
    ) -> wasmtime::Result<()> {
        if self.progress_budget.allow() {
            // Reported under the job's name for the database, when it has one.
            let database = self.progress_scope.clone().unwrap_or(database);
            self.events.progress(
                &printable(&truncate(database, 256)),
                &printable(&truncate(table, 256)),
                rows_done,
                rows_total,
            );
        }
        Ok(())
    }

    async fn reject(&mut self, row: RejectedRow) -> wasmtime::Result<()> {
        self.rejects_seen += 1;
        if self.rejects_seen > MAX_REJECTS_KEPT {
            if self.rejects_seen == MAX_REJECTS_KEPT + 1 {
                self.events.log(
                    Level::Error,
                    &format!("more than {MAX_REJECTS_KEPT} rejected rows: only counting from here on"),
                );
            }
            return Ok(());
        }
        let cap = |s: String| printable(&truncate(s, REJECT_FIELD_MAX_BYTES));
        self.events.reject(RejectedRow {
            database: cap(row.database),
            table: cap(row.table),
            primary_key: cap(row.primary_key),
            column: cap(row.column),
            value_excerpt: cap(row.value_excerpt),
            reason: cap(row.reason),
        });
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
    /// An engine for hosting many jobs at once: the pooling allocator with room for `slots`
    /// instances of at most `max_memory` bytes each, and the epoch ticker.
    pub fn pooled_engine(slots: u32, max_memory: usize) -> anyhow::Result<Engine> {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(slots)
            .total_core_instances(slots * 4)
            .total_memories(slots * 4)
            .total_tables(slots * 4)
            .total_stacks(slots)
            .max_memory_size(max_memory);
        Self::engine_with(Some(pool))
    }

    /// An engine set up for sandboxed migration components: epoch interruption on, with a
    /// ticker thread that lives as long as the engine.
    pub fn engine() -> anyhow::Result<Engine> {
        Self::engine_with(None)
    }

    fn engine_with(pool: Option<wasmtime::PoolingAllocationConfig>) -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // For profiling the component's compiled code: `perf` reads /tmp/perf-PID.map for names.
        if std::env::var_os(PERF_MAP_ENV).is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        if let Some(pool) = pool {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| anyhow!("{e}"))?;
        let weak = engine.weak();
        std::thread::Builder::new().name("epoch-ticker".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        Ok(engine)
    }

    /// Compile `component` (a wasm component binary) with a fresh engine and link the
    /// host's imports. Compiled code is cached on disk (see [`crate::component_cache`]).
    pub fn new(component: &[u8]) -> anyhow::Result<Runtime> {
        Self::with_engine(&Self::engine()?, component)
    }

    /// Like [`Runtime::new`], sharing an existing engine (one per process when hosting many jobs).
    pub fn with_engine(engine: &Engine, component: &[u8]) -> anyhow::Result<Runtime> {
        let cache = crate::component_cache::default_cache_dir();
        let (component, _outcome) = crate::component_cache::load_component(engine, component, cache.as_deref())
            .context("the migration component is not a valid wasm component")?;
        let exports: Vec<String> =
            component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
        check_wit_version(&exports)?;
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow!("{e}"))?;
        Migration::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(|e| anyhow!("{e}"))?;
        Ok(Runtime { engine: engine.clone(), linker, component })
    }

    /// A fresh sandboxed instance for one job.
    pub async fn instantiate(&self, events: Box<dyn EventSink>, limits: Limits) -> anyhow::Result<Instance> {
        let state = HostState {
            wasi: WasiCtxBuilder::new().allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false).build(),
            table: ResourceTable::new(),
            memory: MemoryCap { limit: limits.memory_bytes, used: 0, hit: false },
            events,
            host_calls: 0,
            calls_at_last_tick: 0,
            busy_ticks: 0,
            cpu_limit_ticks: (limits.cpu_seconds * 1000 / EPOCH_TICK.as_millis() as u64).max(1),
            cpu_limit_hit: false,
            logs: LogBudget { tokens: LOG_BURST, last: std::time::Instant::now(), dropped: 0 },
            progress_budget: LogBudget { tokens: LOG_BURST, last: std::time::Instant::now(), dropped: 0 },
            rejects_seen: 0,
            busy_handles: Default::default(),
            copy_handles: Default::default(),
            writer_handles: Default::default(),
            allow_drop: false,
            progress_scope: None,
            writer_tables: Default::default(),
            first_rows: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            if s.host_calls != s.calls_at_last_tick {
                s.calls_at_last_tick = s.host_calls;
                s.busy_ticks = 0;
            } else {
                s.busy_ticks += 1;
            }
            if s.busy_ticks >= s.cpu_limit_ticks {
                s.cpu_limit_hit = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            // Yield so that other jobs on the same threads make progress too.
            Ok(UpdateDeadline::Yield(1))
        });
        let bindings = Migration::instantiate_async(&mut store, &self.component, &self.linker)
            .await
            .map_err(|e| anyhow!("{e}"))
            .context("cannot instantiate the migration component (was it built for this WIT version?)")?;
        let deadline = (limits.timeout_seconds > 0)
            .then(|| std::time::Instant::now() + std::time::Duration::from_secs(limits.timeout_seconds));
        Ok(Instance { store, bindings, limits, deadline })
    }
}

/// Refuse a component built for another major version of the WIT package, or for a newer
/// minor one than this host implements, naming both versions.
fn check_wit_version(exports: &[String]) -> anyhow::Result<()> {
    let host: Vec<u64> = HOST_WIT_VERSION.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    for name in exports {
        let Some(version) = name.strip_prefix("blocklet:migrate/migrator@") else { continue };
        let v: Vec<u64> = version.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap_or(0)).collect();
        if v.len() < 2 || v[0] != host[0] || v[1] > host[1] {
            bail!(
                "the component was built for blocklet:migrate@{version}, but this host implements blocklet:migrate@{HOST_WIT_VERSION}: \
                 it needs the same major version and a minor version no newer than the host's"
            );
        }
        if v[1] < OLDEST_WIT_MINOR {
            bail!(
                "the component was built for blocklet:migrate@{version}; this host implements blocklet:migrate@{HOST_WIT_VERSION} \
                 and runs components of 1.{OLDEST_WIT_MINOR} or newer (1.0 records had another shape; rebuild the component \
                 against the current WIT)"
            );
        }
        return Ok(());
    }
    bail!("the file is not a blocklet-migrate component: it exports no blocklet:migrate/migrator interface")
}

/// One sandboxed component instance and the handles it may use.
pub struct Instance {
    store: Store<HostState>,
    bindings: Migration,
    limits: Limits,
    deadline: Option<std::time::Instant>,
}

/// Await a component call within the job's wall-clock limit, explaining traps.
macro_rules! guarded {
    ($self:ident, $call:expr) => {{
        match $self.deadline.map(|d| d.saturating_duration_since(std::time::Instant::now())) {
            Some(left) => match tokio::time::timeout(left, $call).await {
                Ok(result) => result.map_err(|e| $self.trap(e)),
                Err(_) => Err(anyhow!(
                    "the migration job exceeded its time limit of {} s (--timeout)",
                    $self.limits.timeout_seconds
                )),
            },
            None => $call.await.map_err(|e| $self.trap(e)),
        }
    }};
}

impl Instance {
    /// Explain a trap, naming the limit when one was hit.
    fn trap(&self, e: wasmtime::Error) -> anyhow::Error {
        let state = self.store.data();
        if state.cpu_limit_hit {
            anyhow!(
                "the migration component exceeded its CPU limit: {} s of computation without calling the host (--cpu-limit)",
                self.limits.cpu_seconds
            )
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
        state.busy_handles.clear();
        state.copy_handles.clear();
        state.writer_handles.clear();
    }

    /// Send on `tx` when the component has sent its first rows to a bulk load: its setup is
    /// over and its data is flowing.
    pub fn on_first_rows(&mut self, tx: tokio::sync::oneshot::Sender<()>) {
        self.store.data_mut().first_rows = Some(tx);
    }

    /// Report progress events of what follows under `database` (the job's name for it).
    pub fn set_progress_scope(&mut self, database: &str) {
        self.store.data_mut().progress_scope = Some(database.to_string());
    }

    /// Allow the component to drop tables (the job was started with `--force`).
    pub fn allow_drop(&mut self, allow: bool) {
        self.store.data_mut().allow_drop = allow;
    }

    /// Log lines the component emitted beyond its rate limit.
    pub fn dropped_log_lines(&self) -> u64 {
        self.store.data().logs.dropped
    }

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
        guarded!(self, self.bindings.blocklet_migrate_migrator().call_info(&mut self.store))
    }

    pub async fn layout(&mut self) -> anyhow::Result<api::SourceLayout> {
        guarded!(self, self.bindings.blocklet_migrate_migrator().call_layout(&mut self.store))
    }

    pub async fn plan_to_postgres(
        &mut self,
        index: Option<&Resource<HandleResource>>,
        files: &[String],
    ) -> anyhow::Result<Result<Vec<api::PlannedDatabase>, api::Failure>> {
        let index = index.map(Self::borrow);
        guarded!(self, self.bindings.blocklet_migrate_migrator().call_plan_to_postgres(&mut self.store, index, files))
    }

    pub async fn plan_to_sqlite(
        &mut self,
        index: &Resource<HandleResource>,
        databases: &[String],
    ) -> anyhow::Result<Result<Vec<api::PlannedDatabase>, api::Failure>> {
        guarded!(
            self,
            self.bindings.blocklet_migrate_migrator().call_plan_to_sqlite(
                &mut self.store,
                Self::borrow(index),
                databases
            )
        )
    }

    pub async fn migrate_to_sqlite(
        &mut self,
        db: &api::PlannedDatabase,
        source: &Resource<HandleResource>,
        target: &Resource<HandleResource>,
        options: api::Options,
    ) -> anyhow::Result<Result<api::DatabaseReport, api::Failure>> {
        guarded!(
            self,
            self.bindings.blocklet_migrate_migrator().call_migrate_to_sqlite(
                &mut self.store,
                db,
                Self::borrow(source),
                Self::borrow(target),
                &options
            )
        )
    }

    pub async fn migrate_to_postgres(
        &mut self,
        db: &api::PlannedDatabase,
        source: &Resource<HandleResource>,
        target: &Resource<HandleResource>,
        options: api::Options,
    ) -> anyhow::Result<Result<api::DatabaseReport, api::Failure>> {
        guarded!(
            self,
            self.bindings.blocklet_migrate_migrator().call_migrate_to_postgres(
                &mut self.store,
                db,
                Self::borrow(source),
                Self::borrow(target),
                &options
            )
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_this_host_runs() {
        let check = |v: &str| check_wit_version(&[format!("blocklet:migrate/migrator@{v}")]);
        for ok in ["1.1.0", "1.2.0", "1.2.1"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for refused in ["1.0.0", "1.3.0", "2.0.0", "0.9.0"] {
            let e = check(refused).unwrap_err().to_string();
            assert!(e.contains(refused) && e.contains(HOST_WIT_VERSION), "{refused}: {e}");
        }
        assert!(check_wit_version(&["wasi:cli/run@0.2.0".into()]).is_err());
    }

    /// A component update must run on hosts already installed: the bundled component may use
    /// no wasm feature beyond what wasmtime enables by default (wide arithmetic, for one, would
    /// make it fail to load on every host released without it).
    #[test]
    fn the_bundled_component_needs_only_default_wasm_features() {
        let mut config = Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        wasmtime::component::Component::new(&engine, BUNDLED_COMPONENT)
            .expect("the bundled component validates with wasmtime's default features");
    }
}
