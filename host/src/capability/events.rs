//! The WIT `events` import: what the component tells the host while it works (log lines,
//! progress, rejected rows), and the host's own bulk-load progress, all going to one
//! [`EventSink`] that the job chooses.
//!
//! Everything a component says is bounded and escaped here before any sink sees it: log and
//! progress events are rate-limited ([`LogBudget`]), fields are cut and control characters
//! escaped ([`crate::text`]), and a job's rejected rows are bounded: the one past
//! [`MAX_REJECTS_PER_JOB`] stops the component ([`TooManyRejects`]).

use crate::text::{printable, truncate};
use crate::wit::blocklet::migrate::events::{self as wit_events, Level, RejectedRow};
use wasmtime::component::{HasSelf, Linker};

/// Where the component's events go.
pub trait EventSink: Send {
    fn log(&mut self, level: Level, message: &str);
    fn progress(&mut self, database: &str, table: &str, rows_done: u64, rows_total: u64);
    /// Record a rejected row; false once the job has passed [`MAX_REJECTS_PER_JOB`] (the row
    /// is then only counted, and the host fails the job).
    fn reject(&mut self, row: RejectedRow) -> bool;
    /// The host began a bulk load into `table` (for progress; `database` is the job's name for it).
    fn load_started(&mut self, _database: &str, _table: &str) {}
    /// The host sent `rows` more rows of `table` to the target.
    fn rows_sent(&mut self, _database: &str, _table: &str, _rows: u64) {}
    /// The bulk load into `table` finished with `rows` rows.
    fn load_finished(&mut self, _database: &str, _table: &str, _rows: u64) {}
}

/// Log lines (and progress events) a component may emit: a burst, then a steady rate.
pub struct LogBudget {
    tokens: f64,
    last: std::time::Instant,
}

const LOG_BURST: f64 = 200.0;
const LOG_PER_SECOND: f64 = 50.0;
/// Longest log line kept.
const LOG_MAX_BYTES: usize = 2048;
/// Longest value excerpt and reason of a rejected row kept, measured after escaping (for the
/// terminal here, as JSON in the rejects file): enough to recognise the value.
pub const REJECT_FIELD_MAX_BYTES: usize = 1024;
/// Longest database, table, column and primary key of a rejected row or progress event kept,
/// measured the same way: names are at most 63 bytes, keys short. A line of the rejects file
/// stays under 3.2 KiB.
pub const NAME_MAX_BYTES: usize = 256;

/// Rejected rows a job may have; the next one fails it (exit code 3, as rejected rows do).
/// More than an operator reviews one by one (past this, a whole table or conversion is wrong,
/// and skipping its rows would lose data wholesale), and it bounds the rejects file at ~32 MB
/// of maximal lines (a few MB of typical ones).
pub const MAX_REJECTS_PER_JOB: u64 = 10_000;

/// How a job fails once its component passed [`MAX_REJECTS_PER_JOB`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the migration component reported more than {MAX_REJECTS_PER_JOB} rejected rows, the most a job may have: \
     the job fails (the first {MAX_REJECTS_PER_JOB} are in the rejects file)"
)]
pub struct TooManyRejects;

impl Default for LogBudget {
    fn default() -> Self {
        LogBudget { tokens: LOG_BURST, last: std::time::Instant::now() }
    }
}

impl LogBudget {
    /// Whether one more event may go out now.
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * LOG_PER_SECOND).min(LOG_BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One instance's event state.
pub struct EventsState {
    sink: Box<dyn EventSink>,
    logs: LogBudget,
    progress_budget: LogBudget,
    /// The job passed [`MAX_REJECTS_PER_JOB`]: the component was stopped for it.
    reject_limit_hit: bool,
    /// Rejected rows per table name the component gave (cut as in the rejects file), for the
    /// host's ledger. Bounded by [`MAX_REJECTS_PER_JOB`] names of [`NAME_MAX_BYTES`] each.
    rejects_by_table: std::collections::HashMap<String, u64>,
    /// The database progress events are reported under: the job's name for it.
    scope: Option<String>,
}

impl EventsState {
    pub fn new(sink: Box<dyn EventSink>) -> EventsState {
        EventsState {
            sink,
            logs: LogBudget::default(),
            progress_budget: LogBudget::default(),
            reject_limit_hit: false,
            rejects_by_table: Default::default(),
            scope: None,
        }
    }

    /// Rejected rows the component reported, per table name it gave.
    pub fn rejects_by_table(&self) -> &std::collections::HashMap<String, u64> {
        &self.rejects_by_table
    }

    /// Whether the component was stopped for passing [`MAX_REJECTS_PER_JOB`].
    pub fn reject_limit_hit(&self) -> bool {
        self.reject_limit_hit
    }

    /// Report the progress events that follow under `database`.
    pub fn set_scope(&mut self, database: &str) {
        self.scope = Some(database.to_string());
    }

    /// The database events are reported under, else `fallback` (a handle's label).
    pub fn scope_or(&self, fallback: impl FnOnce() -> String) -> String {
        self.scope.clone().unwrap_or_else(fallback)
    }

    /// Where the host's own events go (bulk-load progress).
    pub fn sink(&mut self) -> &mut dyn EventSink {
        self.sink.as_mut()
    }
}

/// How a store gives the `events` import its state.
pub trait EventsView: Send {
    fn events(&mut self) -> &mut EventsState;
}

/// Link the `events` import for a store whose data is `T`.
pub fn add_to_linker<T: EventsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit_events::add_to_linker::<T, HasSelf<EventsState>>(linker, T::events)
}

impl wit_events::Host for EventsState {
    // Events do not count as host activity for the CPU limit: a loop that only logs is a hang.
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.logs.allow() {
            self.sink.log(level, &printable(&truncate(message, LOG_MAX_BYTES)));
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
            let database = self.scope.clone().unwrap_or(database);
            self.sink.progress(
                &printable(&truncate(database, NAME_MAX_BYTES)),
                &printable(&truncate(table, NAME_MAX_BYTES)),
                rows_done,
                rows_total,
            );
        }
        Ok(())
    }

    async fn reject(&mut self, row: RejectedRow) -> wasmtime::Result<()> {
        // Escaping can lengthen a field: it is cut again after.
        let cap = |s: String, max: usize| truncate(printable(&truncate(s, max)), max);
        let table = cap(row.table, NAME_MAX_BYTES);
        *self.rejects_by_table.entry(table.clone()).or_default() += 1;
        let kept = self.sink.reject(RejectedRow {
            database: cap(row.database, NAME_MAX_BYTES),
            table,
            primary_key: cap(row.primary_key, NAME_MAX_BYTES),
            column: cap(row.column, NAME_MAX_BYTES),
            value_excerpt: cap(row.value_excerpt, REJECT_FIELD_MAX_BYTES),
            reason: cap(row.reason, REJECT_FIELD_MAX_BYTES),
        });
        if !kept {
            self.reject_limit_hit = true;
            wasmtime::bail!("{TooManyRejects}");
        }
        Ok(())
    }
}
