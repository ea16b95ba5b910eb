//! A harmless component built against `blocklet:migrate@1.1.0`, the previous minor version of
//! the contract (`wit/` is a frozen copy of it). A host implementing a newer `1.y` must load it:
//! semver lets a component built for `1.x` run on any host with `y >= x`. It imports the
//! database interface of 1.1.0 (it lists the index's tables while planning), so loading it also
//! proves the host still provides what 1.1.0 components import.

wit_bindgen::generate!({ world: "migration", path: "wit" });

use blocklet::migrate::database::Handle;
use exports::blocklet::migrate::migrator as api;

struct Component;

export!(Component);

fn refused(what: &str) -> api::Failure {
    api::Failure { kind: api::FailureKind::Refused, message: format!("wit-v1-1: {what}"), rejected_rows: 0 }
}

impl api::Guest for Component {
    fn info() -> api::ComponentInfo {
        api::ComponentInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: "1.1.0".into(),
            server_versions: vec!["1.17.12".into()],
            migrations: Vec::new(),
        }
    }

    fn layout() -> api::SourceLayout {
        api::SourceLayout { index: "core/server.db".into(), patterns: vec!["core/server.db".into()] }
    }

    fn plan_to_postgres(index: Option<&Handle>, _files: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        let tables = index.map(|h| h.list_tables().map(|t| t.len()).unwrap_or(0)).unwrap_or(0);
        Err(refused(&format!("a 1.1.0 component ran on this host and saw {tables} tables in the index")))
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(refused("migrate-to-postgres is not implemented by this test component"))
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Err(refused("plan-to-sqlite is not implemented by this test component"))
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(refused("migrate-to-sqlite is not implemented by this test component"))
    }
}
