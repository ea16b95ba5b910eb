//! Which databases a data dir holds and where each one goes.
//!
//! The server database lists the apps (`blocklets`, whose `environments` carry
//! `BLOCKLET_DATA_DIR`). Stored paths are absolute and go stale when an install is moved, so
//! an app's database is always looked up at the same place inside the *actual* data dir
//! (`data/<dir name>/blocklet.db`). App databases on disk that no blocklet lists are migrated
//! too, and said so.

use crate::batch::Value;
use crate::catalog::Kind;
use crate::db::{Database, Events, Level};
use crate::naming::database_name;
use crate::timestamp;
use std::collections::BTreeMap;

/// One database to migrate (WIT `planned-database`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub kind: Kind,
    pub sqlite_file: String,
    pub postgres_database: String,
    pub app_pid: Option<String>,
}

/// The hint the original prints for a data dir whose server never started.
pub const NEVER_STARTED: &str =
    "Failed to get blocklets: SQLITE_ERROR: no such table: blocklets, you need ensure blocklet server start once.";

/// An app as the server database lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedApp {
    pub app_pid: String,
    pub data_dir: Option<String>,
    pub created_at: i64,
}

/// Read the apps from the server database, newest first (the original's order).
pub fn listed_apps(index: &dyn Database) -> Result<Vec<ListedApp>, String> {
    let Some(info) = index.describe_table("blocklets").map_err(|e| format!("Failed to get blocklets: {e}"))? else {
        let tables = index.list_tables().map_err(|e| format!("Failed to get blocklets: {e}"))?;
        return Err(if tables.is_empty() {
            format!("{NEVER_STARTED} ({})", index.label())
        } else {
            format!(
                "{} is not a Blocklet Server database: it has no blocklets table (it has {})",
                index.label(),
                tables.join(", ")
            )
        });
    };
    let wanted = ["id", "appPid", "environments", "createdAt"];
    let cols: Vec<String> =
        wanted.iter().filter(|w| info.columns.iter().any(|c| c.name == **w)).map(|w| w.to_string()).collect();
    let idx = |name: &str| cols.iter().position(|c| c == name);
    let mut cursor = index.read("blocklets", &cols, &[], 500).map_err(|e| format!("Failed to get blocklets: {e}"))?;
    let mut apps = Vec::new();
    while let Some(batch) = cursor.next_batch().map_err(|e| format!("Failed to get blocklets: {e}"))? {
        for row in 0..batch.rows as usize {
            let text = |name: &str| -> Option<String> {
                match batch.columns[idx(name)?].get(row) {
                    Value::Text(b) | Value::Json(b) | Value::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    Value::Integer(n) => Some(n.to_string()),
                    _ => None,
                }
            };
            let app_pid = text("appPid").or_else(|| text("id")).unwrap_or_default();
            let data_dir = text("environments").and_then(|env| data_dir_of(&env));
            let created_at = text("createdAt").and_then(|t| timestamp::parse_text(&t).ok()).unwrap_or(i64::MIN);
            apps.push(ListedApp { app_pid, data_dir, created_at });
        }
    }
    apps.sort_by_key(|a| std::cmp::Reverse(a.created_at));
    Ok(apps)
}

/// `BLOCKLET_DATA_DIR` from a blocklet's `environments` JSON array.
pub fn data_dir_of(environments: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(environments).ok()?;
    v.as_array()?.iter().find_map(|e| {
        (e.get("key")?.as_str()? == "BLOCKLET_DATA_DIR").then(|| e.get("value")?.as_str().map(str::to_string))?
    })
}

/// Where a stored `BLOCKLET_DATA_DIR` lives inside the actual data dir.
pub fn relative_app_db(stored_data_dir: &str) -> Option<String> {
    let name = stored_data_dir.trim_end_matches('/').rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| format!("data/{name}/blocklet.db"))
}

fn matches_pattern(pattern: &str, path: &str) -> bool {
    let (p, f): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == f.len() && p.iter().zip(&f).all(|(p, f)| *p == "*" || p == f)
}

/// Plan a SQLite → PostgreSQL migration of a data dir whose existing database files are `files`.
pub fn plan_to_postgres(
    index: Option<&dyn Database>,
    files: &[String],
    events: &dyn Events,
) -> Result<Vec<Planned>, String> {
    let index = index.ok_or(NEVER_STARTED)?;
    let apps = listed_apps(index)?;
    let present = |path: &str| files.iter().any(|f| f == path);
    let fixed = |kind: Kind| -> Option<Planned> {
        let path = kind.facts().sqlite_pattern;
        present(path).then(|| Planned {
            kind,
            sqlite_file: path.to_string(),
            postgres_database: database_name(path),
            app_pid: None,
        })
    };
    let mut plan: Vec<Planned> = Vec::new();
    plan.extend(fixed(Kind::Server));
    plan.extend(fixed(Kind::Service));
    let app_pattern = Kind::Blocklet.facts().sqlite_pattern;
    for app in &apps {
        let Some(stored) = &app.data_dir else {
            events.log(Level::Info, &format!("Skip migrate schema for blocklet: {}", app.app_pid));
            continue;
        };
        let path = relative_app_db(stored).filter(|p| matches_pattern(app_pattern, p)).ok_or_else(|| {
            format!("blocklet {} has a BLOCKLET_DATA_DIR that is not an app directory: {stored}", app.app_pid)
        })?;
        if !present(&path) {
            return Err(format!(
                "blocklet {} keeps its data in {stored}, but {path} does not exist in this data dir",
                app.app_pid
            ));
        }
        if plan.iter().any(|p| p.sqlite_file == path) {
            continue;
        }
        plan.push(Planned {
            kind: Kind::Blocklet,
            postgres_database: database_name(&path),
            sqlite_file: path,
            app_pid: Some(app.app_pid.clone()),
        });
    }
    for file in files.iter().filter(|f| matches_pattern(app_pattern, f)) {
        if !plan.iter().any(|p| &p.sqlite_file == file) {
            events.log(Level::Warn, &format!("{file} is not listed by any blocklet; migrating it too"));
            plan.push(Planned {
                kind: Kind::Blocklet,
                postgres_database: database_name(file),
                sqlite_file: file.clone(),
                app_pid: None,
            });
        }
    }
    plan.extend(fixed(Kind::CertificateManager));
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &plan {
        if let Some(other) = seen.insert(&p.postgres_database, &p.sqlite_file) {
            return Err(format!(
                "{other} and {} would both become PostgreSQL database {}: Blocklet Server names app databases after \
                 their directory only when it is a valid DID",
                p.sqlite_file, p.postgres_database
            ));
        }
    }
    Ok(plan)
}

/// Plan a PostgreSQL → SQLite migration: `index` is `server_db`, `databases` every database
/// on the server. App databases go where the server expects them (`data/<dir>/blocklet.db`).
pub fn plan_to_sqlite(index: &dyn Database, databases: &[String], events: &dyn Events) -> Result<Vec<Planned>, String> {
    let apps = listed_apps(index)?;
    let has = |name: &str| databases.iter().any(|d| d == name);
    let fixed = |kind: Kind| -> Option<Planned> {
        let path = kind.facts().sqlite_pattern;
        let name = database_name(path);
        has(&name).then(|| Planned { kind, sqlite_file: path.to_string(), postgres_database: name, app_pid: None })
    };
    let mut plan: Vec<Planned> = Vec::new();
    plan.extend(fixed(Kind::Server));
    plan.extend(fixed(Kind::Service));
    for app in &apps {
        let Some(stored) = &app.data_dir else {
            events.log(Level::Info, &format!("Skip blocklet without BLOCKLET_DATA_DIR: {}", app.app_pid));
            continue;
        };
        let path = relative_app_db(stored).ok_or_else(|| {
            format!("blocklet {} has a BLOCKLET_DATA_DIR that is not an app directory: {stored}", app.app_pid)
        })?;
        let name = database_name(&path);
        if !has(&name) {
            return Err(format!(
                "blocklet {} is listed in server_db, but the PostgreSQL server has no database {name} for it",
                app.app_pid
            ));
        }
        if !plan.iter().any(|p| p.postgres_database == name) {
            plan.push(Planned {
                kind: Kind::Blocklet,
                sqlite_file: path,
                postgres_database: name,
                app_pid: Some(app.app_pid.clone()),
            });
        }
    }
    for db in databases {
        let Some(dir) = db.strip_prefix("blocklet_db_") else { continue };
        if plan.iter().any(|p| &p.postgres_database == db) {
            continue;
        }
        let path = format!("data/{dir}/blocklet.db");
        if database_name(&path) != *db {
            events.log(Level::Warn, &format!("{db} is not named after an app DID; skipped"));
            continue;
        }
        events.log(Level::Warn, &format!("{db} is not listed by any blocklet; writing it to {path} too"));
        plan.push(Planned { kind: Kind::Blocklet, sqlite_file: path, postgres_database: db.clone(), app_pid: None });
    }
    plan.extend(fixed(Kind::CertificateManager));
    if !plan.iter().any(|p| p.kind == Kind::Server) {
        return Err("the PostgreSQL server has no server_db: nothing to migrate".into());
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_data_dir_in_environments() {
        let env =
            r#"[{"key":"A","value":"1"},{"key":"BLOCKLET_DATA_DIR","value":"/srv/x/.blocklet-server/data/zApp"}]"#;
        assert_eq!(data_dir_of(env).as_deref(), Some("/srv/x/.blocklet-server/data/zApp"));
        assert_eq!(data_dir_of("[]"), None);
        assert_eq!(data_dir_of("not json"), None);
    }

    #[test]
    fn stored_paths_resolve_inside_the_actual_data_dir() {
        assert_eq!(relative_app_db("/srv/old/.blocklet-server/data/zApp/").as_deref(), Some("data/zApp/blocklet.db"));
        assert_eq!(relative_app_db("/"), None);
        assert!(matches_pattern("data/*/blocklet.db", "data/zApp/blocklet.db"));
        assert!(!matches_pattern("data/*/blocklet.db", "data/a/b/blocklet.db"));
    }
}
