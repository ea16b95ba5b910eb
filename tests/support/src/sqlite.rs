//! SQLite files as the tests read them: always through a [`SqliteSnapshot`], a private copy of
//! `<db>` and `<db>-wal`, so reading can't checkpoint the WAL or change anything the tool is about
//! to read (or that [`crate::hash_tree`] is about to compare). [`sqlite_exec`] is the one exception,
//! meant for tests that deliberately change their own fixture copy *before* running the tool.
//!
//! Everything goes through the `sqlite3` command-line shell, independent of the tool's rusqlite.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};
use tempfile::TempDir;

use crate::canonical::{ColKind, canonical_sqlite_value};
use crate::facts::{facts_columns, kind_for_sqlite_file, schema_facts};
use crate::paths::with_suffix;
use crate::sql::quote_ident;

/// The `sqlite3` CLI: `/usr/bin/sqlite3` if present, otherwise the one on `PATH`.
pub fn sqlite3_bin() -> PathBuf {
    let p = Path::new("/usr/bin/sqlite3");
    if p.is_file() { p.to_path_buf() } else { PathBuf::from("sqlite3") }
}

/// Runs `sql` **in place** on `db_file` with the `sqlite3` CLI (`-bail`, 5 s busy timeout) and returns
/// stdout. Use it only on a test's own fixture copy, to set up data before running the tool.
/// Closing the CLI usually checkpoints the WAL into the main file, which is harmless for a copy.
#[track_caller]
pub fn sqlite_exec(db_file: &Path, sql: &str) -> String {
    let what = format!("sqlite3 {}", db_file.display());
    run_sqlite3(&["-batch", "-bail", "-cmd", ".timeout 5000"], db_file, sql, &what).trim_end_matches('\n').to_string()
}

/// Runs the `sqlite3` CLI with `flags` on `file` and `input` (SQL or a dot-command); its stdout.
/// Panics, naming `what` and `input`, when it fails or writes to stderr.
#[track_caller]
fn run_sqlite3(flags: &[&str], file: &Path, input: &str, what: &str) -> String {
    let out = Command::new(sqlite3_bin())
        .args(flags)
        .arg(file)
        .arg(input)
        .stdin(Stdio::null())
        .output()
        .expect("run sqlite3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{what} failed: {stderr}\nran: {input}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Folds a SQLite file's WAL into the main file and removes the `-wal`/`-shm`, so that the
/// main file alone holds the database (for tests that damage the file's bytes).
#[track_caller]
pub fn sqlite_checkpoint_alone(db_file: &Path) {
    sqlite_exec(db_file, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode=DELETE;");
    for suffix in ["-wal", "-shm"] {
        let p = with_suffix(db_file, suffix);
        if p.exists() {
            fs::remove_file(&p).unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
        }
    }
}

/// Whether the file's header says WAL (bytes 18 and 19, the write/read format versions, are 2).
/// Reads the first 100 bytes only; the file is not opened as a database.
pub fn sqlite_header_is_wal(db_file: &Path) -> bool {
    let mut f = fs::File::open(db_file).unwrap_or_else(|e| panic!("open {}: {e}", db_file.display()));
    let mut header = [0u8; 100];
    f.read_exact(&mut header).unwrap_or_else(|e| panic!("read the header of {}: {e}", db_file.display()));
    assert!(header.starts_with(b"SQLite format 3\0"), "{} is not a SQLite database", db_file.display());
    header[18] == 2 && header[19] == 2
}

/// A private copy of a SQLite database (`<db>` and `<db>-wal`, not `-shm`) in its own temp dir.
/// All reads go here, so the file under test is never opened.
/// SQLite rebuilds the WAL index from the copied `-wal` when it opens the copy.
pub struct SqliteSnapshot {
    file: PathBuf,
    source: PathBuf,
    _dir: TempDir,
}

impl SqliteSnapshot {
    /// Copies `db_file` (and its `-wal`, if there is one) into a fresh temp dir.
    pub fn new(db_file: &Path) -> SqliteSnapshot {
        assert!(db_file.is_file(), "SQLite file {} does not exist", db_file.display());
        let dir = tempfile::Builder::new().prefix("bm-sqlite-").tempdir().expect("create temp dir for SQLite snapshot");
        let file = dir.path().join(db_file.file_name().expect("file name"));
        fs::copy(db_file, &file).unwrap_or_else(|e| panic!("copy {}: {e}", db_file.display()));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod snapshot");
        let wal = with_suffix(db_file, "-wal");
        if wal.is_file() {
            let to = with_suffix(&file, "-wal");
            fs::copy(&wal, &to).unwrap_or_else(|e| panic!("copy {}: {e}", wal.display()));
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).expect("chmod snapshot wal");
        }
        SqliteSnapshot { file, source: db_file.to_path_buf(), _dir: dir }
    }

    /// The file this snapshot was taken from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Runs a query with `sqlite3 -json` and returns the rows as JSON objects (empty result → empty vec).
    pub fn query_json(&self, sql: &str) -> Vec<Map<String, Value>> {
        let what = format!("sqlite3 -json on a snapshot of {}", self.source.display());
        let text = run_sqlite3(&["-batch", "-bail", "-json"], &self.file, sql, &what);
        if text.trim().is_empty() {
            return Vec::new();
        }
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("sqlite3 -json output is not JSON ({e}): {text}"));
        match v {
            Value::Array(rows) => rows
                .into_iter()
                .map(|r| match r {
                    Value::Object(m) => m,
                    other => panic!("unexpected sqlite3 -json row {other}"),
                })
                .collect(),
            other => panic!("unexpected sqlite3 -json output {other}"),
        }
    }

    /// User tables (excluding SQLite's own `sqlite_*` tables such as `sqlite_sequence` and `sqlite_stat1`), sorted.
    pub fn tables(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .query_json(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )
            .into_iter()
            .map(|r| r["name"].as_str().expect("name").to_string())
            .collect();
        v.sort();
        v
    }

    /// Whether a table of that name exists.
    pub fn has_table(&self, table: &str) -> bool {
        self.tables().iter().any(|t| t == table)
    }

    /// `(column name, declared type)` in table order (`PRAGMA table_info`).
    pub fn columns(&self, table: &str) -> Vec<(String, String)> {
        self.query_json(&format!(
            "SELECT name, type FROM pragma_table_info('{}') ORDER BY cid",
            table.replace('\'', "''")
        ))
        .into_iter()
        .map(|r| (r["name"].as_str().expect("name").to_string(), r["type"].as_str().unwrap_or("").to_string()))
        .collect()
    }

    /// `count(*)` of a table.
    pub fn count(&self, table: &str) -> i64 {
        let rows = self.query_json(&format!("SELECT count(*) AS n FROM {}", quote_ident(table)));
        rows[0]["n"].as_i64().expect("count")
    }

    /// Every row of `table` in canonical form: one JSON array per row, values in the order of `cols`
    /// (converted per [`ColKind`]), rows sorted. A column in `cols` that the SQLite table lacks reads as NULL.
    pub fn rows(&self, table: &str, cols: &[(String, ColKind)]) -> Vec<String> {
        let present: HashSet<String> = self.columns(table).into_iter().map(|(n, _)| n).collect();
        let select: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                if present.contains(name) {
                    let q = quote_ident(name);
                    format!(
                        "typeof({q}) AS t{i}, CASE typeof({q}) WHEN 'blob' THEN hex({q}) \
                         WHEN 'real' THEN printf('%!.17g', {q}) ELSE {q} END AS v{i}"
                    )
                } else {
                    format!("'null' AS t{i}, NULL AS v{i}")
                }
            })
            .collect();
        if select.is_empty() {
            return Vec::new();
        }
        let sql = format!("SELECT {} FROM {}", select.join(", "), quote_ident(table));
        let mut rows: Vec<String> = self
            .query_json(&sql)
            .into_iter()
            .map(|r| {
                let vals: Vec<Value> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, kind))| {
                        let storage = r[&format!("t{i}")].as_str().unwrap_or("null");
                        canonical_sqlite_value(*kind, storage, &r[&format!("v{i}")])
                    })
                    .collect();
                Value::Array(vals).to_string()
            })
            .collect();
        rows.sort();
        rows
    }

    /// Runs a dot-command or statement with the plain `sqlite3` CLI (no `-json`) and returns stdout.
    pub fn cli(&self, command: &str) -> String {
        run_sqlite3(
            &["-batch", "-bail"],
            &self.file,
            command,
            &format!("sqlite3 on a snapshot of {}", self.source.display()),
        )
    }

    /// `sqlite3 FILE .schema`.
    pub fn schema(&self) -> String {
        self.cli(".schema")
    }

    /// `PRAGMA journal_mode`, as SQLite reports it for the (copied) file.
    pub fn journal_mode(&self) -> String {
        self.cli("PRAGMA journal_mode;").trim().to_string()
    }

    /// `PRAGMA integrity_check` output (`ok` when the file is sound).
    pub fn integrity_check(&self) -> String {
        self.cli("PRAGMA integrity_check;").trim().to_string()
    }

    /// `sqlite_sequence` as `name → seq` (empty if the table does not exist).
    pub fn sqlite_sequence(&self) -> BTreeMap<String, i64> {
        let exists = !self.query_json("SELECT 1 AS x FROM sqlite_master WHERE name = 'sqlite_sequence'").is_empty();
        if !exists {
            return BTreeMap::new();
        }
        self.query_json("SELECT name, seq FROM sqlite_sequence")
            .into_iter()
            .map(|r| (r["name"].as_str().expect("name").to_string(), r["seq"].as_i64().expect("seq")))
            .collect()
    }

    /// `count(*)` of every user table.
    pub fn row_counts(&self) -> BTreeMap<String, i64> {
        self.tables().into_iter().map(|t| (t.clone(), self.count(&t))).collect()
    }

    /// Sorted names in `SequelizeMeta`.
    pub fn sequelize_meta(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .query_json("SELECT name FROM \"SequelizeMeta\"")
            .into_iter()
            .map(|r| r["name"].as_str().expect("name").to_string())
            .collect();
        v.sort();
        v
    }
}

/// User tables of a SQLite file (read from a snapshot), sorted. SQLite's internal `sqlite_*` tables are left out.
pub fn sqlite_tables(db_file: &Path) -> Vec<String> {
    SqliteSnapshot::new(db_file).tables()
}

/// Every row of `table` in `db_file` in canonical form (see [`SqliteSnapshot::rows`]). Column kinds come from
/// schema-facts.json when the file name gives a known kind and the table is known there. Otherwise they
/// come from the SQLite declared types ([`ColKind::from_sqlite_decl`]).
pub fn sqlite_rows(db_file: &Path, table: &str) -> Vec<String> {
    let snap = SqliteSnapshot::new(db_file);
    let cols = match kind_for_sqlite_file(db_file) {
        Some(kind) if schema_facts()[kind]["postgres"].get(table).is_some() => facts_columns(kind, table),
        _ => snap
            .columns(table)
            .into_iter()
            .map(|(n, t)| {
                let k = ColKind::from_sqlite_decl(&t);
                (n, k)
            })
            .collect(),
    };
    snap.rows(table, &cols)
}
