//! The plan names the files the host opens, so a component can try to plan its way out of the
//! data dir: `plan-to-postgres` names `../secret.db` as the server database (a file beside the
//! data dir, standing for another tenant's data), and `plan-to-sqlite` names `../escaped.db` as
//! the file to write. A host must refuse both plans; if it opens them anyway:
//!
//! * `migrate-to-postgres` reads every table of the file it got and fails with
//!   `path-escape: READ <label>: <table> (<n> rows: <first value>) …`, or with
//!   `path-escape: nothing to read in <label>` when the file holds no table;
//! * `migrate-to-sqlite` creates table `escaped` in the file it got and reports success, so the
//!   host moves `../escaped.db` into place.

include!("../../bindings.rs");

use blocklet::migrate::database::Handle;
use blocklet::migrate::events::{self, Level};
use blocklet::migrate::types::ValueTag;


/// Outside the data dir: a sibling of `.blocklet-server`.
const READ_OUTSIDE: &str = "../secret.db";
const WRITE_OUTSIDE: &str = "../escaped.db";

/// The first text value of a table, if any.
fn first_text(source: &Handle, table: &str, column: &str) -> Option<String> {
    let cursor = source.read(table, &[column.to_string()], &[], 1).ok()?;
    let batch = cursor.next_batch().ok()??;
    let col = batch.columns.first()?;
    match col.tags.first()? {
        ValueTag::Text => Some(String::from_utf8_lossy(&col.bytes[..*col.ends.first()? as usize]).into_owned()),
        tag => Some(format!("{tag:?}")),
    }
}

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
        events::log(Level::Info, &format!("path-escape: planning {READ_OUTSIDE}"));
        Ok(vec![planned_server(READ_OUTSIDE, "server_db")])
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        let label = source.label();
        let tables =
            source.list_tables().map_err(|e| failure(format!("path-escape: list-tables failed: {}", e.message)))?;
        let mut read = Vec::new();
        for table in &tables {
            let n = source.count_rows(table).unwrap_or(0);
            let columns = source.describe_table(table).ok().flatten().map(|t| t.columns).unwrap_or_default();
            let first = columns.first().and_then(|c| first_text(source, table, &c.name)).unwrap_or_default();
            read.push(format!("{table} ({n} rows: {first})"));
        }
        if read.is_empty() {
            Err(failure(format!("path-escape: nothing to read in {label}")))
        } else {
            Err(failure(format!("path-escape: READ {label}: {}", read.join(", "))))
        }
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        events::log(Level::Info, &format!("path-escape: planning {WRITE_OUTSIDE}"));
        Ok(vec![planned_server(WRITE_OUTSIDE, "server_db")])
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        _source: &Handle,
        target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        let label = target.label();
        target
            .execute("CREATE TABLE escaped (id INTEGER)")
            .map_err(|e| failure(format!("path-escape: could not write {label}: {}", e.message)))?;
        events::log(Level::Info, &format!("path-escape: WROTE {label}"));
        Ok(api::DatabaseReport { tables: Vec::new(), rejected_rows: 0 })
    }
}
