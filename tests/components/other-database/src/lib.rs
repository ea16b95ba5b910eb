//! The plan names `tenant_secrets`, an existing database this data dir does not map to (another
//! application's, holding its `users` table and more), as the server database's target. If the
//! host lets the component in, `migrate-to-postgres` tries to read the other application's
//! `users` (by `read` and by `query`), to drop it, and plants a table of its own, logging
//! `other-database: READ …`, `… DROPPED users` or `… PLANTED` for each that succeeds, then
//! reports success. A host must refuse a database holding anything this plan does not write,
//! before the component runs, and let a target handle read only the tables its job created.

include!("../../bindings.rs");

use blocklet::migrate::database::Handle;
use blocklet::migrate::events::{self, Level};

const TARGET: &str = "tenant_secrets";

impl api::Guest for Component {
    fn info() -> api::ComponentInfo {
        server_only_info(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    }

    fn layout() -> api::SourceLayout {
        server_only_layout()
    }

    fn plan_to_postgres(
        _index: Option<&Handle>,
        _files: Vec<String>,
    ) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Ok(vec![planned_server("core/server.db", TARGET)])
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        _source: &Handle,
        target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        events::log(Level::Info, "other-database: the host let me in");
        let note = |what: &str, outcome: Result<String, String>| match outcome {
            Ok(done) => events::log(Level::Warn, &format!("other-database: {done}")),
            Err(e) => events::log(Level::Info, &format!("other-database: {what}: refused: {e}")),
        };
        let read = target.read("users", &["did".to_string()], &[], 10).map_err(|e| e.message).and_then(|cursor| {
            match cursor.next_batch() {
                Ok(Some(batch)) => Ok(format!("READ {} rows of users", batch.rows)),
                Ok(None) => Ok("READ users (no rows)".into()),
                Err(e) => Err(e.message),
            }
        });
        note("read users", read);
        let query = target.query("SELECT did FROM public.users").map(|b| format!("READ {} rows of users by query", b.rows));
        note("query users", query.map_err(|e| e.message));
        let dropped = target.execute("DROP TABLE public.users").map(|_| "DROPPED users".to_string());
        note("drop users", dropped.map_err(|e| e.message));
        let planted = target.execute("CREATE TABLE public.planted (id integer)").map(|_| "PLANTED a table".to_string());
        note("plant a table", planted.map_err(|e| e.message));
        Ok(api::DatabaseReport { tables: Vec::new(), rejected_rows: 0 })
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Err(failure("other-database: only SQLite → PostgreSQL"))
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(failure("other-database: only SQLite → PostgreSQL"))
    }
}
