//! Where the repository's test material lives: the read-only demo fixture, the reference data of
//! the real 1.17.12 server, and what the demo fixture holds (its apps, kinds and databases).
//!
//! Paths are found from this crate's own manifest dir (`tests/support`), so they are the same for
//! every test binary and the bench, wherever cargo runs them from.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// The app DIDs in the demo fixture. For both apps appDid == appPid == meta.name.
pub const APP_DIDS: [&str; 2] = ["zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64", "zNKrYWaSmXbK1xanN7G2rSU9ak7JUVXrHD9G"];

/// The database kinds, named as in `schema-facts.json` and `sequelize-meta/<kind>.txt`.
pub const KINDS: [&str; 4] = ["server", "service", "certificate-manager", "blocklet"];

/// The repository root.
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    fs::canonicalize(&dir).unwrap_or(dir)
}

/// `<repo>/tests`.
pub fn tests_dir() -> PathBuf {
    workspace_root().join("tests")
}

/// The read-only demo fixture: a directory that contains `.blocklet-server/`.
pub fn fixture_dir() -> PathBuf {
    let dir = tests_dir().join("fixtures").join("blocklet-1.17.12-demo");
    protect_fixture(&dir);
    dir
}

/// Make the fixture's files read-only, so nothing (a sqlite3 run that checkpoints on close, a
/// test pointed at the wrong dir) can fold its WAL into the main file: most rows live in the
/// `-wal` files on purpose, and a fresh clone checks them out writable.
fn protect_fixture(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o444));
                }
            }
        }
    });
}

/// Reference data from the real 1.17.12 migrate command.
pub fn reference_dir() -> PathBuf {
    tests_dir().join("reference").join("blocklet-1.17.12")
}

/// The databases a migration of the demo fixture has to create, sorted.
pub fn expected_databases() -> Vec<String> {
    let mut v: Vec<String> = vec!["server_db".into(), "service_db".into(), "module_db".into()];
    v.extend(APP_DIDS.iter().map(|d| format!("blocklet_db_{d}")));
    v.sort();
    v
}

/// The reference `pg_dump --schema-only` file for a database name.
pub fn reference_schema_file(pg_db: &str) -> PathBuf {
    let name = if pg_db.starts_with("blocklet_db_") {
        "pg-blocklet_db_APPDID.sql".to_string()
    } else {
        format!("pg-{pg_db}.sql")
    };
    reference_dir().join(name)
}

/// The sorted migration names the reference has in `SequelizeMeta` for a kind.
pub fn expected_sequelize_meta(kind: &str) -> Vec<String> {
    let path = reference_dir().join("sequelize-meta").join(format!("{kind}.txt"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut v: Vec<String> = text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    v.sort();
    v
}

/// Appends `suffix` to the file name: `a/b.db` + `-wal` gives `a/b.db-wal`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The same file in the pristine fixture in the repo: `<data_dir>/<rel>` → `tests/fixtures/…/.blocklet-server/<rel>`.
pub fn pristine_fixture_file(data_dir: &Path, file: &Path) -> PathBuf {
    let rel = file
        .strip_prefix(data_dir)
        .unwrap_or_else(|_| panic!("{} is not under {}", file.display(), data_dir.display()));
    fixture_dir().join(".blocklet-server").join(rel)
}

/// The reference `.schema` of a kind: `tests/reference/blocklet-1.17.12/sqlite-<kind>.sql`.
pub fn reference_sqlite_schema(kind: &str) -> String {
    let path = reference_dir().join(format!("sqlite-{kind}.sql"));
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
