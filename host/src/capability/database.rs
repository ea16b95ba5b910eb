//! The WIT `database` import: the handles, cursors and bulk writers a component uses, each a
//! host resource in the store's table, and the checks each call passes on its way to a
//! backend.
//!
//! Every call that uses a handle goes through one gate, [`enter`]: it counts the call as the
//! component's activity, refuses a handle a stream still holds ([`CallGuard`]), and finds the
//! handle's [`Database`]. Statements then pass the rules of [`crate::policy`]: DROP only with
//! `--force`, a bounded script length, and the PostgreSQL allowlist for PostgreSQL handles (a
//! SQLite handle applies its engine's rules on its own connection). A PostgreSQL target reads
//! (`read`, `query`) only the tables and sequences this job created in it: whatever else is
//! there is not the job's to read. The generated WIT types
//! name resources by marker types; this module keeps its own typed entries in the same table
//! slots ([`typed`]).

use super::events::EventsState;
use super::guard::{Activity, Call, CallGuard};
use super::tally::{Tallies, Tally};
use crate::backend::{Batches, BulkWriter, Database, Source, Target, Writer};
use crate::policy;
use crate::wit::blocklet::migrate::database::{self as wit_db, Dialect};
use crate::wit::blocklet::migrate::types;
use crate::wit::{Batch, DbError, ErrorKind, TableInfo};
use std::collections::{HashMap, HashSet};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// A stream of batches (the WIT `cursor`) and the handle it holds until it ends.
pub struct Cursor {
    batches: Batches,
    handle: u32,
    table: String,
}

/// What the database capability keeps per instance.
#[derive(Default)]
pub struct DatabaseState {
    guard: CallGuard,
    /// Each open bulk writer's handle, released when the load ends.
    writer_handles: HashMap<u32, u32>,
    /// The (database, table) each open bulk writer loads, for progress events.
    writer_tables: HashMap<u32, (String, String)>,
    /// Whether the job may drop tables (`--force`).
    allow_drop: bool,
    /// The one table a PostgreSQL target lets the component insert literal values into.
    meta_table: String,
    /// Told when the first rows are sent (see [`DatabaseState::on_first_rows`]).
    first_rows: Option<tokio::sync::oneshot::Sender<()>>,
    /// Rows the host itself delivered and loaded, per handle and table.
    tallies: Tallies,
    /// What each target handle's statements created.
    created: HashMap<u32, Created>,
}

/// What one target handle's statements created.
#[derive(Default)]
struct Created {
    /// Objects counted against the cap, failed CREATEs included (see
    /// [`policy::check_created_objects`]).
    objects: usize,
    /// The tables and sequences created on PostgreSQL: the only relations the handle may read.
    relations: HashSet<String>,
}

impl DatabaseState {
    /// Let PostgreSQL targets accept literal inserts into `meta_table` (the component's
    /// conventions name it; until then no table accepts them).
    pub fn set_meta_table(&mut self, meta_table: &str) {
        self.meta_table = meta_table.to_string();
    }

    /// Host calls so far: the sandbox's measure of the component's activity.
    pub fn calls(&self) -> u64 {
        self.guard.calls()
    }

    /// When the component last made progress, for the sandbox's stall limit.
    pub fn activity(&self) -> std::sync::Arc<Activity> {
        self.guard.activity()
    }

    /// Allow the component to drop tables (the job was started with `--force`).
    pub fn allow_drop(&mut self, allow: bool) {
        self.allow_drop = allow;
    }

    /// Send on `tx` when the component has sent its first rows to a bulk load: its setup is
    /// over and its data is flowing.
    pub fn on_first_rows(&mut self, tx: tokio::sync::oneshot::Sender<()>) {
        self.first_rows = Some(tx);
    }

    /// The rows the host itself moved through `handle`.
    pub fn tally(&self, handle: u32) -> Tally {
        self.tallies.of(handle)
    }

    /// Forget every stream: the host took the table back.
    pub fn release_all(&mut self) {
        self.guard.release_all();
        self.writer_handles.clear();
        self.writer_tables.clear();
    }
}

/// The host's typed view of a resource the component holds: the same table slot, under the
/// type the host stored there.
pub fn typed<T: 'static, M: 'static>(resource: &Resource<M>) -> Resource<T> {
    if resource.owned() { Resource::new_own(resource.rep()) } else { Resource::new_borrow(resource.rep()) }
}

/// What the database import works on: its own state, the event sink for load progress, and
/// the store's resource table.
pub struct DatabaseCtx<'a> {
    pub state: &'a mut DatabaseState,
    pub events: &'a mut EventsState,
    pub table: &'a mut ResourceTable,
}

/// How a store gives the `database` import its context.
pub trait DatabaseView: Send {
    fn database(&mut self) -> DatabaseCtx<'_>;
}

struct DatabaseCapability;

impl HasData for DatabaseCapability {
    type Data<'a> = DatabaseCtx<'a>;
}

/// Link the `types` and `database` imports for a store whose data is `T`.
pub fn add_to_linker<T: DatabaseView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    types::add_to_linker::<T, DatabaseCapability>(linker, T::database)?;
    wit_db::add_to_linker::<T, DatabaseCapability>(linker, T::database)
}

/// The gate every call on a handle passes: count it, refuse a busy handle, find its database.
/// A refusal is the component's error to handle; an unknown handle traps. The call is in
/// flight while the returned [`Call`] lives.
fn enter<'t>(
    guard: &mut CallGuard,
    table: &'t ResourceTable,
    h: &Resource<wit_db::Handle>,
) -> wasmtime::Result<Result<(Call, &'t Database), DbError>> {
    let call = match guard.enter(h.rep()) {
        Ok(call) => call,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok((call, table.get(&typed::<Database, _>(h))?)))
}

/// The call and the database behind handle `$h` after [`enter`]; a refused call returns its
/// error.
macro_rules! entered {
    ($ctx:ident, $h:expr) => {
        match enter(&mut $ctx.state.guard, $ctx.table, &$h)? {
            Ok(entered) => entered,
            Err(e) => return Ok(Err(e)),
        }
    };
}

/// A statement for `execute` on `db`, checked: the handle is a target, and on PostgreSQL the
/// statement is on the allowlist. On PostgreSQL, the table or sequence it creates.
fn check_statement(db: &Database, statement: &str, meta_table: &str) -> Result<Option<String>, DbError> {
    db.deny_read_only()?;
    if db.dialect() == Dialect::Postgres {
        return policy::postgres::target_statement_creates(statement, meta_table)
            .map_err(|m| DbError::new(ErrorKind::Denied, m));
    }
    Ok(None)
}

/// Whether handle `h` on `db` may read `relations`: anything on a source; on a PostgreSQL
/// target, only what this job created there (`created`).
fn check_reads<'r>(
    db: &Database,
    created: Option<&HashSet<String>>,
    mut relations: impl Iterator<Item = &'r str>,
) -> Result<(), DbError> {
    if db.dialect() != Dialect::Postgres || db.deny_read_only().is_err() {
        return Ok(());
    }
    match relations.find(|r| !created.is_some_and(|c| c.contains(*r))) {
        None => Ok(()),
        Some(other) => Err(DbError::new(
            ErrorKind::Denied,
            format!(
                "{}: refused to read {}: a PostgreSQL target reads only the tables and sequences this job created in it",
                db.label(),
                crate::text::printable(other)
            ),
        )),
    }
}

impl types::Host for DatabaseCtx<'_> {}
impl wit_db::Host for DatabaseCtx<'_> {}

impl wit_db::HostHandle for DatabaseCtx<'_> {
    async fn dialect(&mut self, h: Resource<wit_db::Handle>) -> wasmtime::Result<Dialect> {
        Ok(self.table.get(&typed::<Database, _>(&h))?.dialect())
    }

    async fn label(&mut self, h: Resource<wit_db::Handle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&typed::<Database, _>(&h))?.label())
    }

    async fn list_tables(&mut self, h: Resource<wit_db::Handle>) -> wasmtime::Result<Result<Vec<String>, DbError>> {
        let (_call, db) = entered!(self, h);
        Ok(db.list_tables().await)
    }

    async fn describe_table(
        &mut self,
        h: Resource<wit_db::Handle>,
        table: String,
    ) -> wasmtime::Result<Result<Option<TableInfo>, DbError>> {
        let (_call, db) = entered!(self, h);
        if let Err(e) = policy::names::check_identifier("table name", &table) {
            return Ok(Err(e));
        }
        Ok(db.describe_table(&table).await)
    }

    async fn count_rows(
        &mut self,
        h: Resource<wit_db::Handle>,
        table: String,
    ) -> wasmtime::Result<Result<u64, DbError>> {
        let (_call, db) = entered!(self, h);
        if let Err(e) = policy::names::check_identifier("table name", &table) {
            return Ok(Err(e));
        }
        Ok(db.count_rows(&table).await)
    }

    async fn read(
        &mut self,
        h: Resource<wit_db::Handle>,
        table: String,
        columns: Vec<String>,
        order_by: Vec<String>,
        batch_rows: u32,
    ) -> wasmtime::Result<Result<Resource<wit_db::Cursor>, DbError>> {
        let (_call, db) = entered!(self, h);
        let created = self.state.created.get(&h.rep()).map(|c| &c.relations);
        if let Err(e) = policy::names::check_table_columns(&table, &columns, &order_by)
            .and_then(|_| check_reads(db, created, std::iter::once(table.as_str())))
        {
            return Ok(Err(e));
        }
        let batches = match db.read(&table, &columns, &order_by, batch_rows).await {
            Ok(batches) => batches,
            Err(e) => return Ok(Err(e)),
        };
        self.state.guard.hold(h.rep());
        let cursor = self.table.push(Cursor { batches, handle: h.rep(), table })?;
        Ok(Ok(typed(&cursor)))
    }

    async fn execute(
        &mut self,
        h: Resource<wit_db::Handle>,
        statement: String,
    ) -> wasmtime::Result<Result<u64, DbError>> {
        let (_call, db) = entered!(self, h);
        if let Err(e) = policy::check_statement_size(&statement) {
            return Ok(Err(e));
        }
        if let Err(e) = policy::check_drop(std::iter::once(statement.as_str()), self.state.allow_drop) {
            return Ok(Err(e));
        }
        let creates = match check_statement(db, &statement, &self.state.meta_table) {
            Ok(creates) => creates,
            Err(e) => return Ok(Err(e)),
        };
        let created = self.state.created.entry(h.rep()).or_default();
        if let Err(e) = policy::check_created_objects(&mut created.objects, std::iter::once(statement.as_str())) {
            return Ok(Err(e));
        }
        let done = db.execute(&statement).await;
        if done.is_ok() {
            created.relations.extend(creates);
        }
        Ok(done)
    }

    async fn execute_script(
        &mut self,
        h: Resource<wit_db::Handle>,
        statements: Vec<String>,
    ) -> wasmtime::Result<Result<(), DbError>> {
        let (_call, db) = entered!(self, h);
        let checked = policy::check_script_length(statements.len())
            .and_then(|_| policy::check_script_size(&statements))
            .and_then(|_| policy::check_drop(statements.iter().map(String::as_str), self.state.allow_drop))
            .and_then(|_| db.deny_read_only())
            .and_then(|_| {
                statements.iter().map(|s| check_statement(db, s, &self.state.meta_table)).collect::<Result<Vec<_>, _>>()
            })
            .and_then(|creates| {
                let created = self.state.created.entry(h.rep()).or_default();
                policy::check_created_objects(&mut created.objects, statements.iter().map(String::as_str))
                    .map(|_| creates)
            });
        let creates = match checked {
            Ok(creates) => creates,
            Err(e) => return Ok(Err(e)),
        };
        let done = db.execute_script(&statements).await;
        if done.is_ok() {
            self.state.created.entry(h.rep()).or_default().relations.extend(creates.into_iter().flatten());
        }
        Ok(done)
    }

    async fn query(
        &mut self,
        h: Resource<wit_db::Handle>,
        statement: String,
    ) -> wasmtime::Result<Result<Batch, DbError>> {
        let (_call, db) = entered!(self, h);
        if let Err(e) = policy::check_statement_size(&statement) {
            return Ok(Err(e));
        }
        // Checked, and PostgreSQL sources also run inside a read-only transaction.
        if db.dialect() == Dialect::Postgres {
            let relations = match policy::postgres::read_only_query_relations(&statement) {
                Ok(relations) => relations,
                Err(m) => return Ok(Err(DbError::new(ErrorKind::Denied, m))),
            };
            let created = self.state.created.get(&h.rep()).map(|c| &c.relations);
            if let Err(e) = check_reads(db, created, relations.iter().map(String::as_str)) {
                return Ok(Err(e));
            }
        }
        Ok(db.query(&statement).await)
    }

    async fn bulk_load(
        &mut self,
        h: Resource<wit_db::Handle>,
        table: String,
        columns: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<wit_db::BulkWriter>, DbError>> {
        let (_call, db) = entered!(self, h);
        let opened = match policy::names::check_table_columns(&table, &columns, &[]).and_then(|_| db.deny_read_only()) {
            Ok(()) => db.bulk_load(&table, &columns).await,
            Err(e) => Err(e),
        };
        let writer = match opened {
            Ok(writer) => writer,
            Err(e) => return Ok(Err(e)),
        };
        let scope = self.events.scope_or(|| db.label());
        if writer.holds_connection() {
            self.state.guard.hold(h.rep());
        }
        let w = self.table.push(writer)?;
        self.state.writer_handles.insert(w.rep(), h.rep());
        self.events.sink().load_started(&scope, &table);
        self.state.writer_tables.insert(w.rep(), (scope, table));
        Ok(Ok(typed(&w)))
    }

    async fn drop(&mut self, h: Resource<wit_db::Handle>) -> wasmtime::Result<()> {
        // The component only ever borrows handles; the host owns and closes them.
        if h.owned() {
            self.table.delete(typed::<Database, _>(&h))?;
        }
        Ok(())
    }
}

impl wit_db::HostCursor for DatabaseCtx<'_> {
    async fn next_batch(&mut self, c: Resource<wit_db::Cursor>) -> wasmtime::Result<Result<Option<Batch>, DbError>> {
        let _call = self.state.guard.count();
        let cursor = self.table.get_mut(&typed::<Cursor, _>(&c))?;
        let next = cursor.batches.recv().await.transpose();
        match &next {
            Ok(Some(batch)) => {
                self.state.guard.moved_rows(batch.rows as u64);
                self.state.tallies.delivered(cursor.handle, &cursor.table, batch.rows as u64)
            }
            _ => self.state.guard.release(cursor.handle),
        }
        Ok(next)
    }

    async fn drop(&mut self, c: Resource<wit_db::Cursor>) -> wasmtime::Result<()> {
        let cursor = self.table.delete(typed::<Cursor, _>(&c))?;
        self.state.guard.release(cursor.handle);
        Ok(())
    }
}

impl wit_db::HostBulkWriter for DatabaseCtx<'_> {
    async fn write(&mut self, w: Resource<wit_db::BulkWriter>, rows: Batch) -> wasmtime::Result<Result<(), DbError>> {
        let _call = self.state.guard.count();
        let sent = rows.rows as u64;
        let written = self.table.get_mut(&typed::<Writer, _>(&w))?.write(rows).await;
        if written.is_ok() {
            self.state.guard.moved_rows(sent);
            if let Some((database, table)) = self.state.writer_tables.get(&w.rep()) {
                self.events.sink().rows_sent(database, table, sent);
            }
            if sent > 0
                && let Some(tx) = self.state.first_rows.take()
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

    async fn finish(&mut self, w: Resource<wit_db::BulkWriter>) -> wasmtime::Result<Result<u64, DbError>> {
        let _call = self.state.guard.count();
        if let Some(handle) = self.state.writer_handles.get(&w.rep()).copied() {
            self.state.guard.release(handle);
        }
        let finished = self.table.get_mut(&typed::<Writer, _>(&w))?.finish().await;
        if let (Ok(rows), Some((database, table))) = (&finished, self.state.writer_tables.remove(&w.rep())) {
            if let Some(handle) = self.state.writer_handles.get(&w.rep()) {
                self.state.tallies.accepted(*handle, &table, *rows);
            }
            self.events.sink().load_finished(&database, &table, *rows);
        }
        Ok(finished)
    }

    async fn drop(&mut self, w: Resource<wit_db::BulkWriter>) -> wasmtime::Result<()> {
        self.state.writer_tables.remove(&w.rep());
        if let Some(handle) = self.state.writer_handles.remove(&w.rep()) {
            self.state.guard.release(handle);
        }
        self.table.delete(typed::<Writer, _>(&w))?;
        Ok(())
    }
}
