// Shared by most hostile components through `include!("../../shell.rs")`: the bindings of
// `bindings.rs` and plausible, harmless `info`/`layout`/`plan-*` exports. Each crate defines
//
//     fn hostile(source: &Handle, target: &Handle) -> Result<api::DatabaseReport, api::Failure>
//
// which both `migrate-to-postgres` and `migrate-to-sqlite` call.

include!("bindings.rs");

#[allow(unused_imports)]
use blocklet::migrate::database::{BulkWriter, Handle};
#[allow(unused_imports)]
use blocklet::migrate::events::{self, Level};
#[allow(unused_imports)]
use blocklet::migrate::types::{Batch, ColumnValues, DbError, ErrorKind, ValueTag};

fn server_db() -> api::PlannedDatabase {
    planned_server("core/server.db", "server_db")
}

impl api::Guest for Component {
    fn info() -> api::ComponentInfo {
        api::ComponentInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: wit_version(),
            server_versions: vec!["1.17.12".into()],
            migrations: vec![
                ("server".into(), 74),
                ("service".into(), 4),
                ("blocklet".into(), 79),
                ("certificate-manager".into(), 5),
            ],
        }
    }

    fn layout() -> api::SourceLayout {
        api::SourceLayout {
            index: "core/server.db".into(),
            patterns: vec![
                "core/server.db".into(),
                "services/service.db".into(),
                "data/*/blocklet.db".into(),
                "modules/certificate-manager/module.db".into(),
            ],
        }
    }

    fn plan_to_postgres(
        _index: Option<&Handle>,
        _files: Vec<String>,
    ) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Ok(vec![server_db()])
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        source: &Handle,
        target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        hostile(source, target)
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Ok(vec![server_db()])
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        source: &Handle,
        target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        hostile(source, target)
    }
}

/// One column of `rows` text values.
#[allow(dead_code)]
fn text_column(values: &[&str]) -> ColumnValues {
    let mut c = ColumnValues { tags: Vec::new(), numbers: Vec::new(), bytes: Vec::new(), ends: Vec::new() };
    for v in values {
        c.tags.push(ValueTag::Text);
        c.numbers.push(0);
        c.bytes.extend_from_slice(v.as_bytes());
        c.ends.push(c.bytes.len() as u32);
    }
    c
}

/// Create `table` on the target with `columns` (SQL column definitions), as the real migration
/// creates its tables: `public.<table>` on PostgreSQL (a statement the host's SQL allowlist
/// accepts), `<table>` on SQLite.
#[allow(dead_code)]
fn create_table(target: &Handle, table: &str, columns: &str) -> Result<(), api::Failure> {
    use blocklet::migrate::database::Dialect;
    let name = match target.dialect() {
        Dialect::Postgres => format!("public.{table}"),
        Dialect::Sqlite => table.to_string(),
    };
    target.execute(&format!("CREATE TABLE {name} ({columns})")).map(|_| ()).map_err(|e| {
        failure(format!("{}: creating {table} failed: {:?}: {}", env!("CARGO_PKG_NAME"), e.kind, e.message))
    })
}

/// The first two columns of the real `users` table: enough for a bulk load.
#[allow(dead_code)]
const USERS_COLUMNS: &str = "did character varying(80) NOT NULL, pk character varying(512) NOT NULL";
