//! A harmless component built against `blocklet:migrate@2.0.0` (a generated copy of the real
//! WIT with the package moved to the next major version, see `build.rs`). It exports
//! `blocklet:migrate/migrator@2.0.0`, which a host implementing `1.x` must refuse at load time
//! with a message naming both versions. If a host ever ran it anyway, every export says so.

wit_bindgen::generate!({ world: "migration", path: "wit" });

use blocklet::migrate::database::Handle;
use exports::blocklet::migrate::migrator as api;

struct Component;

export!(Component);

include!("../../conventions.rs");
include!("../../accounting.rs");

const LOADED: &str = "wit-v2: a component built for blocklet:migrate@2.0.0 was run by a 1.x host";

fn loaded() -> api::Failure {
    api::Failure { kind: api::FailureKind::Other, message: LOADED.into(), rejected_rows: 0 }
}

impl api::Guest for Component {
    fn info() -> api::ComponentInfo {
        api::ComponentInfo {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            wit_version: "2.0.0".into(),
            server_versions: vec!["1.17.12".into()],
            migrations: Vec::new(),
        }
    }

    fn layout() -> api::SourceLayout {
        api::SourceLayout { index: "core/server.db".into(), patterns: vec!["core/server.db".into()] }
    }

    fn plan_to_postgres(
        _index: Option<&Handle>,
        _files: Vec<String>,
    ) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Err(loaded())
    }

    fn migrate_to_postgres(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(loaded())
    }

    fn plan_to_sqlite(_index: &Handle, _databases: Vec<String>) -> Result<Vec<api::PlannedDatabase>, api::Failure> {
        Err(loaded())
    }

    fn migrate_to_sqlite(
        _db: api::PlannedDatabase,
        _source: &Handle,
        _target: &Handle,
        _options: api::Options,
    ) -> Result<api::DatabaseReport, api::Failure> {
        Err(loaded())
    }
}
