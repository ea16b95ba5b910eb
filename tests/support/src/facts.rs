//! The reference schema facts (`tests/reference/blocklet-1.17.12/schema-facts.json`) and the
//! product's naming: which kind a database or file is, and which SQLite file becomes which
//! PostgreSQL database.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::canonical::ColKind;
use crate::paths::reference_dir;

/// `tests/reference/blocklet-1.17.12/schema-facts.json`, parsed once.
/// Shape: `kind → {sqlite_file, pg_database, sqlite: {table → {columns: [{name, type, pk, …}], …}},
/// postgres: {table → {columns: [{column_name, data_type, udt_name, ordinal_position, …}], …}}, pg_enums}`.
pub fn schema_facts() -> &'static Value {
    static FACTS: OnceLock<Value> = OnceLock::new();
    FACTS.get_or_init(|| {
        let path = reference_dir().join("schema-facts.json");
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
    })
}

/// The kind for a PostgreSQL database name: `server_db` → server, `service_db` → service,
/// `module_db` → certificate-manager, `blocklet_db_*` → blocklet.
pub fn kind_for_pg_db(pg_db: &str) -> &'static str {
    match pg_db {
        "server_db" => "server",
        "service_db" => "service",
        "module_db" => "certificate-manager",
        d if d.starts_with("blocklet_db_") => "blocklet",
        other => panic!("unknown database name {other:?}"),
    }
}

/// The kind for a SQLite file, judged by its file name: `server.db`, `service.db`, `module.db`, `blocklet.db`.
pub fn kind_for_sqlite_file(path: &Path) -> Option<&'static str> {
    match path.file_name()?.to_str()? {
        "server.db" => Some("server"),
        "service.db" => Some("service"),
        "module.db" => Some("certificate-manager"),
        "blocklet.db" => Some("blocklet"),
        _ => None,
    }
}

/// The tables the reference PostgreSQL database of `kind` has, without `SequelizeMeta` (which the
/// tool regenerates rather than copies). Sorted.
pub fn facts_tables(kind: &str) -> Vec<String> {
    let tables = schema_facts()[kind]["postgres"]
        .as_object()
        .unwrap_or_else(|| panic!("schema-facts has no postgres tables for kind {kind:?}"));
    let mut v: Vec<String> = tables.keys().filter(|t| *t != "SequelizeMeta").cloned().collect();
    v.sort();
    v
}

/// The reference PostgreSQL columns of `kind`.`table`, in ordinal order, with their canonical kind.
pub fn facts_columns(kind: &str, table: &str) -> Vec<(String, ColKind)> {
    let cols = schema_facts()[kind]["postgres"][table]["columns"]
        .as_array()
        .unwrap_or_else(|| panic!("schema-facts has no postgres columns for {kind}.{table}"));
    let mut v: Vec<(i64, String, ColKind)> = cols
        .iter()
        .map(|c| {
            let name = c["column_name"].as_str().expect("column_name").to_string();
            let ord = c["ordinal_position"].as_i64().unwrap_or(0);
            let kind = ColKind::from_pg(c["data_type"].as_str().unwrap_or(""), c["udt_name"].as_str().unwrap_or(""));
            (ord, name, kind)
        })
        .collect();
    v.sort_by_key(|(ord, _, _)| *ord);
    v.into_iter().map(|(_, n, k)| (n, k)).collect()
}

/// The `(SQLite file, PostgreSQL database)` pairs of a data dir: server, service, certificate-manager,
/// then `data/<appDid>/blocklet.db` → `blocklet_db_<appDid>` for each app directory that has a `blocklet.db`.
pub fn migration_targets(data_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut v = vec![
        (data_dir.join("core").join("server.db"), "server_db".to_string()),
        (data_dir.join("services").join("service.db"), "service_db".to_string()),
        (data_dir.join("modules").join("certificate-manager").join("module.db"), "module_db".to_string()),
    ];
    let mut apps: Vec<PathBuf> =
        fs::read_dir(data_dir.join("data")).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    apps.sort();
    for app in apps {
        let db = app.join("blocklet.db");
        if db.is_file() {
            let did = app.file_name().expect("dir name").to_string_lossy().into_owned();
            v.push((db, format!("blocklet_db_{did}")));
        }
    }
    v
}

/// `(SQLite file, kind, PostgreSQL database)` of every database file of a data dir (see [`migration_targets`]).
pub fn sqlite_targets(data_dir: &Path) -> Vec<(PathBuf, &'static str, String)> {
    migration_targets(data_dir)
        .into_iter()
        .map(|(file, db)| {
            let kind = kind_for_pg_db(&db);
            (file, kind, db)
        })
        .collect()
}
