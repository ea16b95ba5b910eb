// Shared by every component built against the repo's `wit/` (all but `wit-v2` and `wit-v1-1`),
// through `include!`: the WIT bindings, the exported `Component` with its WIT 1.3 `conventions`
// and `accounting` exports, and the helpers every `info` and plan needs. `shell.rs` adds plausible, harmless exports on top; `path-escape` and
// `foreign-target`, whose hostile act is the plan itself, write their own.

wit_bindgen::generate!({ world: "migration", path: "../../../wit" });

use exports::blocklet::migrate::migrator as api;

struct Component;

export!(Component);

include!("conventions.rs");
include!("accounting.rs");

/// The WIT package version these bindings were generated from (`package blocklet:migrate@X;`).
fn wit_version() -> String {
    let wit = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../wit/blocklet-migrate.wit"));
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package blocklet:migrate@"))
        .map(|v| v.trim_end_matches(';').trim().to_string())
        .unwrap_or_else(|| "1.0.0".into())
}

/// A failure, as the component reports it.
#[allow(dead_code)]
fn failure(message: impl Into<String>) -> api::Failure {
    api::Failure { kind: api::FailureKind::Other, message: message.into(), rejected_rows: 0 }
}

/// A planned database of kind `server`: `sqlite_file` ↔ `postgres_database`.
fn planned_server(sqlite_file: &str, postgres_database: &str) -> api::PlannedDatabase {
    api::PlannedDatabase {
        kind: api::DatabaseKind::Server,
        sqlite_file: sqlite_file.into(),
        postgres_database: postgres_database.into(),
        app_pid: None,
    }
}

/// `info` of a component that knows only the server database (those whose hostile act is the
/// plan itself write their own exports): `name` and `version` are the crate's.
#[allow(dead_code)]
fn server_only_info(name: &str, version: &str) -> api::ComponentInfo {
    api::ComponentInfo {
        name: name.into(),
        version: version.into(),
        wit_version: wit_version(),
        server_versions: vec!["1.17.12".into()],
        migrations: vec![("server".into(), 74)],
    }
}

/// `layout` of a component that knows only the server database.
#[allow(dead_code)]
fn server_only_layout() -> api::SourceLayout {
    api::SourceLayout { index: "core/server.db".into(), patterns: vec!["core/server.db".into()] }
}
