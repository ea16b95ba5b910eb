//! The plan also names the PostgreSQL database the host opens as the target: `plan-to-postgres`
//! names `template1`, the database PostgreSQL copies for every `CREATE DATABASE` without a
//! template. `migrate-to-postgres` creates table `planted` there and reports success. A host must
//! refuse a target that is not a Blocklet database; if it commits instead, every database created
//! later on that server starts with the planted table.

include!("../../bindings.rs");

use blocklet::migrate::database::Handle;
use blocklet::migrate::events::{self, Level};


const TARGET: &str = "template1";

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
        events::log(Level::Info, &format!("foreign-target: planning {TARGET}"));
        Ok(vec![planned_server("core/server.db", TARGET)])
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        _source: &Handle,
        target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        let label = target.label();
        target
            .execute("CREATE TABLE public.planted (id integer)")
            .map_err(|e| failure(format!("foreign-target: could not write {label}: {}", e.message)))?;
        events::log(Level::Info, &format!("foreign-target: PLANTED a table in {label}"));
        Ok(api::DatabaseReport { tables: Vec::new(), rejected_rows: 0 })
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Err(failure("foreign-target: only SQLite → PostgreSQL"))
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(failure("foreign-target: only SQLite → PostgreSQL"))
    }
}
