//! Shared harness for the `blocklet-migrate` end-to-end tests.
//!
//! The test file pulls it in with `#[path = "common/mod.rs"] mod common;`. It uses only std,
//! `tempfile`, `sha2` and `serde_json`, plus these external programs:
//!
//! * PostgreSQL server binaries (`initdb`, `pg_ctl`, `psql`, `pg_dump`) from
//!   `/usr/lib/postgresql/15/bin`, or else the newest `/usr/lib/postgresql/*/bin`;
//! * the `sqlite3` command-line shell (`/usr/bin/sqlite3`, otherwise whatever is on `PATH`);
//! * `runuser` and `chown` when the tests run as root, because `initdb` refuses to run as root.
//!
//! What is here:
//!
//! * **Fixture.** [`fixture_copy`] copies `tests/fixtures/blocklet-1.17.12-demo` into a fresh temp dir,
//!   including the SQLite `-wal`/`-shm` files. Tests only ever touch that copy.
//! * **PostgreSQL.** [`PgCluster`] is a throwaway PostgreSQL cluster for one test. The product uses
//!   fixed database names (`server_db`, `service_db`, `module_db`, `blocklet_db_<appDid>`) and tests run
//!   in parallel, so every test needs its own cluster. The system cluster on port 5432 is never touched.
//! * **Running the CLI.** [`run_migrate`] runs the `blocklet-migrate` binary with a timeout and returns
//!   an [`Output`]. Its `Debug` impl prints everything, so pass `{:?}` of it to assertion messages.
//! * **Schema comparison.** [`normalize_pg_schema`] and [`assert_same_schema`] compare `pg_dump --schema-only`
//!   output with the reference dumps in `tests/reference/blocklet-1.17.12/pg-*.sql`.
//! * **Row comparison.** [`compare_table`] and [`compare_all`] check every row, independently of the tool's own checks.
//!   Both sides are read with plain SQL (the `sqlite3` CLI, `psql`) and turned into one canonical JSON array per row.
//!   Column types come from the reference `schema-facts.json`. See [`ColKind`] for the canonical forms.
//! * **Source integrity.** [`hash_tree`] takes the sha256 of every file in a tree, to prove that the tool left
//!   the SQLite source unchanged.
//! * **PostgreSQL → SQLite.** [`compare_sqlite_files`] compares two SQLite files table by table in the same
//!   canonical form; [`value_form_problems`] checks that values are stored the way the server writes them;
//!   [`normalize_sqlite_schema`] / [`sqlite_schema_diff`] compare `.schema` output with the reference
//!   `sqlite-*.sql`; [`PgCluster::table_dump`] and [`PgCluster::sequences`] compare two clusters;
//!   [`run_migrate_killed_after`] SIGKILLs a run; [`SqliteHolder`] keeps a file open from another process
//!   like a live server.
//!
//! SQLite files are always read through a [`SqliteSnapshot`]: a private copy of `<db>` and `<db>-wal`.
//! The file under test is never opened in place, so reading it can't checkpoint the WAL or change
//! anything the tool is about to read (or that [`hash_tree`] is about to compare).
//! [`sqlite_exec`] is the one exception, and it is meant for tests that deliberately change
//! their own fixture copy *before* running the tool.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// ------------------------------------------------------------------------------------------------
// Paths and constants
// ------------------------------------------------------------------------------------------------

/// The app DIDs in the demo fixture. For both apps appDid == appPid == meta.name.
pub const APP_DIDS: [&str; 2] = ["zNKqXjErsgbHZH5rW1nusSm7raAyFE94jM64", "zNKrYWaSmXbK1xanN7G2rSU9ak7JUVXrHD9G"];

/// Where the tool writes its success marker, relative to the data dir.
pub const LOCK_REL: &str = "core/sqlite-to-postgres.lock";

/// The database kinds, named as in `schema-facts.json` and `sequelize-meta/<kind>.txt`.
pub const KINDS: [&str; 4] = ["server", "service", "certificate-manager", "blocklet"];

/// Upper bound for one run of the CLI. A hung tool fails the test instead of blocking the suite forever.
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);

/// `<repo>/tests`. The integration test is compiled as part of `host/`, so it is `$CARGO_MANIFEST_DIR/../tests`.
pub fn tests_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests");
    fs::canonicalize(&dir).unwrap_or(dir)
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

// ------------------------------------------------------------------------------------------------
// Fixture
// ------------------------------------------------------------------------------------------------

/// Copies `tests/fixtures/blocklet-1.17.12-demo` recursively into a fresh temp dir and returns it.
///
/// Every file is copied, including the `-wal`/`-shm` files and the hidden `.blocklet-server` and `.sock`.
/// The data dir is then `<tmp>/.blocklet-server`; see [`data_dir`].
/// The fixture in the repo is read-only (mode `r--r--r--`), so the copies are made writable
/// (files 0644, dirs 0755). The tool and SQLite need that to create `-shm` files and lock files,
/// and the temp dir can then be removed as a non-root user.
pub fn fixture_copy() -> TempDir {
    let src = fixture_dir();
    assert!(src.join(".blocklet-server").join("config.yml").is_file(), "demo fixture not found at {}", src.display());
    let tmp = tempfile::Builder::new().prefix("bm-fixture-").tempdir().expect("create temp dir for fixture copy");
    copy_tree(&src, tmp.path());
    tmp
}

/// The canonical (symlink-free, absolute) data dir of a fixture copy: `<tmp>/.blocklet-server`.
/// The tool reports paths derived from `getcwd()`, which are canonical. Compare against this path.
pub fn data_dir(tmp_root: &Path) -> PathBuf {
    fs::canonicalize(tmp_root)
        .unwrap_or_else(|e| panic!("canonicalize {}: {e}", tmp_root.display()))
        .join(".blocklet-server")
}

/// Recursive copy of regular files, directories and symlinks. Copies are made writable (see [`fixture_copy`]).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap_or_else(|e| panic!("mkdir {}: {e}", dst.display()));
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(src)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", src.display()))
        .map(|e| e.expect("dir entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ft = entry.file_type().expect("file type");
        if ft.is_symlink() {
            let target = fs::read_link(&from).expect("read_link");
            std::os::unix::fs::symlink(&target, &to).unwrap_or_else(|e| panic!("symlink {}: {e}", to.display()));
        } else if ft.is_dir() {
            copy_tree(&from, &to);
            fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod dir");
        } else if ft.is_file() {
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
            fs::set_permissions(&to, fs::Permissions::from_mode(0o644)).expect("chmod file");
        } else {
            panic!("unexpected special file in fixture: {}", from.display());
        }
    }
}

/// Asserts that the lock file exists and holds exactly one ISO-8601 UTC timestamp with milliseconds
/// (`2026-11-25T18:56:32.947Z`, JavaScript `toISOString()`), optionally followed by a newline.
/// The time must fall between `not_before` and `not_after`, with one second of slack for rounding.
#[track_caller]
pub fn assert_lock_file(data_dir: &Path, not_before: SystemTime, not_after: SystemTime) {
    let path = data_dir.join(LOCK_REL);
    let raw =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("lock file {} missing or unreadable: {e}", path.display()));
    let text = raw.strip_suffix('\n').unwrap_or(&raw);
    let b = text.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "lock file content {raw:?} is not like 2026-11-25T18:56:32.947Z");
    let micros = parse_timestamp_micros(text).unwrap_or_else(|| panic!("unparsable lock timestamp {raw:?}"));
    let lo = micros_since_epoch(not_before) - 1_000_000;
    let hi = micros_since_epoch(not_after) + 1_000_000;
    assert!((lo..=hi).contains(&micros), "lock timestamp {text} is not within the tool's run time");
}

fn micros_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).expect("time after epoch").as_micros() as i64
}

/// Asserts that the lock file does not exist (a failed migration must not write it).
#[track_caller]
pub fn assert_no_lock_file(data_dir: &Path) {
    let path = data_dir.join(LOCK_REL);
    assert!(!path.exists(), "lock file {} must not exist after a failed run", path.display());
}

// ------------------------------------------------------------------------------------------------
// Source-tree hashing
// ------------------------------------------------------------------------------------------------

/// sha256 (hex) of every file under `dir`, keyed by path relative to `dir`. Symlinks are recorded
/// by their target, not followed.
///
/// `*-shm` files are **excluded**. They hold SQLite's WAL index: shared memory backed by a file,
/// which holds no data of its own and can be rebuilt from the `-wal` at any time. Any connection,
/// even a read-only one, may rewrite it. The first connection to open a WAL database truncates and
/// rebuilds it. So a correct read-only reader still changes `-shm`. Everything else, including the
/// `.db` and `-wal` files, must be byte-identical after a migration.
pub fn hash_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    hash_walk(dir, dir, &mut map);
    map
}

fn hash_walk(root: &Path, dir: &Path, map: &mut BTreeMap<PathBuf, String>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in rd {
        let entry = entry.expect("dir entry");
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("under root").to_path_buf();
        let ft = entry.file_type().expect("file type");
        if ft.is_symlink() {
            let target = fs::read_link(&path).expect("read_link");
            map.insert(rel, format!("symlink:{}", target.display()));
        } else if ft.is_dir() {
            hash_walk(root, &path, map);
        } else if ft.is_file() {
            if path.to_string_lossy().ends_with("-shm") {
                continue;
            }
            map.insert(rel, sha256_file(&path));
        } else {
            map.insert(rel, "special-file".to_string());
        }
    }
}

/// Hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> String {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Panics with a list of added, removed and changed files if the two [`hash_tree`] results differ.
#[track_caller]
pub fn assert_same_tree(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>, what: &str) {
    let mut problems = Vec::new();
    for (p, h) in before {
        match after.get(p) {
            None => problems.push(format!("  removed: {}", p.display())),
            Some(h2) if h2 != h => problems.push(format!("  changed: {}", p.display())),
            _ => {}
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            problems.push(format!("  added:   {}", p.display()));
        }
    }
    assert!(problems.is_empty(), "{what}: file tree changed:\n{}", problems.join("\n"));
}

// ------------------------------------------------------------------------------------------------
// Running the CLI
// ------------------------------------------------------------------------------------------------

/// Result of one CLI run. `Debug` prints the exit code and both streams in full, so pass `{:?}` of
/// it to assertion messages.
pub struct Output {
    /// Exit code; `128 + signal` if the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "\n===== blocklet-migrate exit code: {} =====", self.code)?;
        writeln!(f, "----- stdout -----")?;
        writeln!(f, "{}", self.stdout)?;
        writeln!(f, "----- stderr -----")?;
        writeln!(f, "{}", self.stderr)?;
        write!(f, "------------------")
    }
}

impl Output {
    /// The stderr lines that start with `✖` (the error lines of the CLI contract).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| l.trim_start().starts_with('✖')).collect()
    }

    /// Whether some `✖` line in stderr contains `needle`.
    pub fn has_error_line(&self, needle: &str) -> bool {
        self.error_lines().iter().any(|l| l.contains(needle))
    }
}

/// Path of the binary under test.
pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_blocklet-migrate"))
}

/// Runs `blocklet-migrate <args>` in `cwd`. `ABT_NODE_POSTGRES_URL` is removed from the inherited
/// environment, so only `env` can set it. Other `env` pairs are added as given.
/// `NO_COLOR=1` is set, and ANSI escape sequences are removed from what is captured, so assertions
/// can match the plain `ℹ`/`✔`/`✖` lines. If the run takes longer than [`MIGRATE_TIMEOUT`], the
/// process is killed and the function panics with its partial output.
pub fn run_migrate(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    let (out, killed) = run_migrate_killed_after(args, cwd, env, MIGRATE_TIMEOUT);
    if killed {
        panic!("blocklet-migrate {args:?} did not finish within {MIGRATE_TIMEOUT:?} and was killed: {out:?}");
    }
    out
}

/// Like [`run_migrate`], but sends SIGKILL (`Child::kill`) once `after` has passed, as a crash or
/// `kill -9` would. Returns the output captured until then (the exit code is then `128 + 9`) and
/// whether the process was killed (`false`: it exited by itself before `after`).
pub fn run_migrate_killed_after(args: &[&str], cwd: &Path, env: &[(&str, &str)], after: Duration) -> (Output, bool) {
    let mut cmd = Command::new(bin_path());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("ABT_NODE_POSTGRES_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin_path().display()));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let (status, killed) = loop {
        if let Some(st) = child.try_wait().expect("wait for blocklet-migrate") {
            break (st, false);
        }
        let elapsed = start.elapsed();
        if elapsed >= after {
            let _ = child.kill();
            // It may have exited on its own just before the signal: then it was not killed.
            let st = child.wait().expect("wait after kill");
            break (st, st.signal() == Some(9));
        }
        thread::sleep((after - elapsed).min(Duration::from_millis(5)));
    };
    let stdout = strip_ansi(&String::from_utf8_lossy(&out_t.join().unwrap_or_default()));
    let stderr = strip_ansi(&String::from_utf8_lossy(&err_t.join().unwrap_or_default()));
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    (Output { code, stdout, stderr }, killed)
}

/// Removes ANSI CSI escape sequences (`ESC [ ... final-byte`) and OSC sequences.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                for c2 in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c2) {
                        break;
                    }
                }
            }
            Some(']') => {
                chars.next();
                while let Some(c2) = chars.next() {
                    if c2 == '\u{7}' {
                        break;
                    }
                    if c2 == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Asserts exit code 0, no `✖` line in stderr, and the final `✔ Migration postgres completed` line.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    assert!(out.error_lines().is_empty(), "successful run printed ✖ lines: {out:?}");
    assert!(out.stdout.contains("✔ Migration postgres completed"), "missing completion message: {out:?}");
}

/// Asserts a non-zero exit, at least one stderr line starting with `✖`, and no completion message.
#[track_caller]
pub fn assert_failure(out: &Output) {
    assert_ne!(out.code, 0, "expected a non-zero exit code: {out:?}");
    assert!(!out.error_lines().is_empty(), "expected a stderr line starting with ✖: {out:?}");
    assert!(!out.stdout.contains("Migration postgres completed"), "failed run claims completion: {out:?}");
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL: a throwaway cluster per test
// ------------------------------------------------------------------------------------------------

/// Directory of the PostgreSQL server binaries: `/usr/lib/postgresql/15/bin` (the reference dumps were
/// made with 15), or else the newest `/usr/lib/postgresql/<major>/bin`.
pub fn pg_bin_dir() -> PathBuf {
    let preferred = Path::new("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").is_file() {
        return preferred.to_path_buf();
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(major) = name.split('.').next().and_then(|m| m.parse::<u32>().ok()) else {
                continue;
            };
            let bin = e.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
                best = Some((major, bin));
            }
        }
    }
    best.map(|(_, p)| p)
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (need initdb, pg_ctl, psql, pg_dump)")
}

/// Whether the effective uid is 0. Reads the `Uid:` line of `/proc/self/status` (real, effective,
/// saved, fs); falls back to `id -u`.
pub fn running_as_root() -> bool {
    if let Ok(s) = fs::read_to_string("/proc/self/status") {
        for line in s.lines() {
            if let Some(rest) = line.strip_prefix("Uid:")
                && let Some(euid) = rest.split_whitespace().nth(1)
            {
                return euid == "0";
            }
        }
    }
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// A private PostgreSQL cluster that lives as long as this value.
///
/// The data dir, socket dir and logs live in a temp dir. The server listens only on
/// `127.0.0.1:<free port>`, with `trust` authentication for user `postgres`, and with fsync and
/// synchronous commit off for speed. As root, the temp dir is chowned to `postgres`, and
/// `initdb`/`pg_ctl` run via `runuser -u postgres --`. `Drop` stops the server (`-m immediate`)
/// and removes the directory.
pub struct PgCluster {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    // Dropped after `Drop::drop` has stopped the server.
    _dir: TempDir,
}

impl PgCluster {
    /// initdb + start. Panics with initdb's output or the server log on failure. If the port picked
    /// was taken by someone else in the meantime, it retries up to 5 times with a new port.
    pub fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("bm-pg-").tempdir().expect("create temp dir for PostgreSQL cluster");
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let sock = root.join("sock");
        fs::create_dir(&sock).expect("create socket dir");
        if as_postgres {
            let out = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root).output().expect("run chown");
            assert!(
                out.status.success(),
                "chown -R postgres:postgres {} failed (need a `postgres` user when running as root): {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cluster = PgCluster { bin, root, data, port: 0, as_postgres, running: false, _dir: dir };

        let out = cluster
            .server_cmd("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let mut last_log = String::new();
        for attempt in 1..=5 {
            let port = free_port();
            let log = cluster.root.join(format!("postgres-{attempt}.log"));
            let opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                sock.display()
            );
            let out = cluster
                .server_cmd("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&cluster.data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(&opts)
                .arg("start")
                .output()
                .expect("run pg_ctl start");
            if out.status.success() {
                cluster.port = port;
                cluster.running = true;
                return cluster;
            }
            last_log = format!(
                "{}{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&log).unwrap_or_default()
            );
            let collision = last_log.contains("Address already in use")
                || last_log.contains("could not bind")
                || last_log.contains("could not create any TCP/IP sockets");
            if !collision {
                break;
            }
        }
        panic!("could not start a PostgreSQL cluster in {}:\n{last_log}", cluster.root.display());
    }

    /// A command for a server-side binary (initdb, pg_ctl), run as `postgres` when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        // The test's cwd may be unreadable for `postgres`.
        cmd.current_dir(&self.root).stdin(Stdio::null());
        clean_pg_env(&mut cmd);
        cmd
    }

    /// A command for a client binary (psql, pg_dump), run as the current user over TCP.
    fn client_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.stdin(Stdio::null());
        clean_pg_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// TCP port of this cluster.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the value for `ABT_NODE_POSTGRES_URL`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` in database `db` with `psql -X -A -t -q -v ON_ERROR_STOP=1`. Returns stdout without
    /// trailing newlines (one line per row, columns separated by `|`), or stderr on failure.
    /// Several statements may be given. They then run as one implicit transaction, and only the
    /// last result is printed.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let out = self
            .client_cmd("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
        } else {
            Err(format!(
                "psql exit {:?}: {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ))
        }
    }

    /// Like [`PgCluster::try_psql`], but panics with psql's stderr and the SQL on failure.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(e) => panic!("psql on database {db:?} failed: {e}\nSQL: {sql}"),
        }
    }

    /// Runs a query that returns one integer.
    #[track_caller]
    pub fn psql_i64(&self, db: &str, sql: &str) -> i64 {
        let s = self.psql(db, sql);
        s.trim().parse().unwrap_or_else(|_| panic!("expected an integer from {sql:?} on {db}, got {s:?}"))
    }

    /// Non-template databases except `postgres`, sorted.
    #[track_caller]
    pub fn databases(&self) -> Vec<String> {
        let s =
            self.psql("postgres", "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'");
        let mut v: Vec<String> = s.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    }

    /// Base tables in schema `public` of `db`, sorted.
    #[track_caller]
    pub fn tables(&self, db: &str) -> Vec<String> {
        let s = self.psql(
            db,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        );
        let mut v: Vec<String> = s.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        v.sort();
        v
    }

    /// `count(*)` of a table in `public`.
    #[track_caller]
    pub fn count(&self, db: &str, table: &str) -> i64 {
        self.psql_i64(db, &format!("SELECT count(*) FROM public.{}", quote_ident(table)))
    }

    /// `(database, table, rows)` for every base table of every non-template database.
    pub fn row_counts(&self) -> Vec<(String, String, i64)> {
        let mut v = Vec::new();
        for db in self.databases() {
            for t in self.tables(&db) {
                let n = self.count(&db, &t);
                v.push((db.clone(), t, n));
            }
        }
        v
    }

    /// Asserts that no table in any database of the cluster has rows, `SequelizeMeta` included.
    /// This is how a failed run has to leave the target.
    #[track_caller]
    pub fn assert_no_rows_anywhere(&self) {
        let non_empty: Vec<String> = self
            .row_counts()
            .into_iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(db, t, n)| format!("  {db}.{t}: {n} rows"))
            .collect();
        assert!(non_empty.is_empty(), "a failed migration left data behind:\n{}", non_empty.join("\n"));
    }

    /// `pg_dump --schema-only -O -x` of `db`, made the same way as the reference `pg-*.sql` files.
    pub fn pg_dump_schema(&self, db: &str) -> String {
        let port = self.port.to_string();
        let out = self
            .client_cmd("pg_dump")
            .args(["--schema-only", "-O", "-x", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db])
            .output()
            .expect("run pg_dump");
        assert!(out.status.success(), "pg_dump of {db} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("pg_dump output is UTF-8")
    }

    /// For every column whose default is `nextval(...)` in every database, asserts that the next
    /// sequence value is past the column's current maximum. Otherwise the next insert by the
    /// server would collide with a migrated id. Calls `nextval`, so it consumes one value per sequence.
    #[track_caller]
    pub fn assert_sequences_past_max_ids(&self) {
        let mut problems = Vec::new();
        let mut checked = 0;
        for db in self.databases() {
            let rows = self.psql(
                &db,
                "SELECT table_name, column_name, column_default FROM information_schema.columns \
                 WHERE table_schema = 'public' AND column_default LIKE 'nextval(%' ORDER BY 1, 2",
            );
            for line in rows.lines().filter(|l| !l.is_empty()) {
                let parts: Vec<&str> = line.splitn(3, '|').collect();
                assert_eq!(parts.len(), 3, "unexpected row {line:?}");
                let (table, column, default) = (parts[0], parts[1], parts[2]);
                let seq = default
                    .strip_prefix("nextval('")
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or_else(|| panic!("cannot parse sequence from default {default:?}"));
                let res = self.psql(
                    &db,
                    &format!(
                        "SELECT coalesce(max({c})::bigint, 0), nextval('{seq}') FROM public.{t}",
                        c = quote_ident(column),
                        t = quote_ident(table)
                    ),
                );
                let nums: Vec<i64> = res.split('|').map(|s| s.trim().parse().expect("integer")).collect();
                checked += 1;
                if nums[1] <= nums[0] {
                    problems.push(format!(
                        "  {db}: {table}.{column} max = {}, but nextval('{seq}') = {}",
                        nums[0], nums[1]
                    ));
                }
            }
        }
        assert!(checked > 0, "no serial columns found at all: was anything migrated?");
        assert!(problems.is_empty(), "sequences behind their max ids:\n{}", problems.join("\n"));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .server_cmd("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
        // `_dir` (the TempDir) is removed after this returns.
    }
}

fn clean_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
        "PGTZ",
        "PGCLIENTENCODING",
    ] {
        cmd.env_remove(var);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Double-quotes an SQL identifier (same rule for PostgreSQL and SQLite).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ------------------------------------------------------------------------------------------------
// Schema comparison
// ------------------------------------------------------------------------------------------------

/// Turns `pg_dump --schema-only` text into a sorted list of normalised statements. Two dumps of the same
/// schema then compare equal, whatever their statement order, comments or pg_dump version header.
///
/// * drops blank lines and `--` comment lines (the `-- Name: …; Type: …` headers, the version banner)
/// * drops psql meta-commands (`\restrict KEY` / `\unrestrict KEY`, which pg_dump ≥ 15.14 emits with a random key)
/// * joins the lines of each statement (a statement ends with a line ending in `;`) and collapses whitespace runs to one space
/// * drops the session preamble: `SET …;` and `SELECT pg_catalog.set_config(…);`
/// * strips the trailing `;` and sorts
pub fn normalize_pg_schema(sql: &str) -> Vec<String> {
    let mut stmts = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with("--") || (cur.is_empty() && t.starts_with('\\')) {
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(t);
        if t.ends_with(';') {
            stmts.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        stmts.push(cur);
    }
    let mut out: Vec<String> = stmts
        .into_iter()
        .map(|s| {
            let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
            collapsed.trim_end_matches(';').trim_end().to_string()
        })
        .filter(|s| !s.is_empty())
        .filter(|s| !s.starts_with("SET ") && !s.starts_with("SELECT pg_catalog.set_config("))
        .collect();
    out.sort();
    out
}

/// Compares two `pg_dump --schema-only` texts after [`normalize_pg_schema`]. On failure it panics and
/// lists the statements found on only one side (a multiset difference, so duplicates count).
#[track_caller]
pub fn assert_same_schema(actual: &str, expected: &str, what: &str) {
    let a = normalize_pg_schema(actual);
    let e = normalize_pg_schema(expected);
    if a == e {
        return;
    }
    let (only_a, only_e) = multiset_diff(&a, &e);
    let mut msg = format!("schema of {what} differs from the reference ({} vs {} statements)\n", a.len(), e.len());
    msg.push_str(&format!("--- only in actual ({}):\n", only_a.len()));
    for s in &only_a {
        msg.push_str(&format!("  + {s}\n"));
    }
    msg.push_str(&format!("--- only in reference ({}):\n", only_e.len()));
    for s in &only_e {
        msg.push_str(&format!("  - {s}\n"));
    }
    panic!("{msg}");
}

/// Elements of `a` not matched in `b`, and the reverse, counting duplicates.
fn multiset_diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for s in a {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    for s in b {
        *counts.entry(s.as_str()).or_default() -= 1;
    }
    let mut only_a = Vec::new();
    let mut only_b = Vec::new();
    for (s, n) in counts {
        for _ in 0..n.max(0) {
            only_a.push(s.to_string());
        }
        for _ in 0..(-n).max(0) {
            only_b.push(s.to_string());
        }
    }
    (only_a, only_b)
}

// ------------------------------------------------------------------------------------------------
// Reference schema facts
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// Canonical row form
// ------------------------------------------------------------------------------------------------

/// How a column's values are canonicalised so that SQLite and PostgreSQL values can be compared.
/// The kind is taken from the *PostgreSQL* type in schema-facts.json. SQL NULL is always JSON `null`.
///
/// | kind | PostgreSQL types | SQLite storage accepted | canonical JSON |
/// |---|---|---|---|
/// | `Bool` | boolean | integer 0/1, text "0"/"1"/"true"/"false" | `false`/`true` |
/// | `Int` | smallint, integer, bigint | integer, integral real, numeric text | integer |
/// | `Float` | double precision, real, numeric | real (read as `%!.17g`), integer, numeric text | f64 number (PG read as `::text`) |
/// | `Timestamp` | timestamptz, timestamp, date | text `YYYY-MM-DD[ T]HH:MM[:SS[.f]][ ][Z|±HH[:MM]]` (no offset = UTC); integer = epoch ms | **epoch microseconds** (integer); PG side is `extract(epoch …)*1e6`. This is stricter than ms, and SQLite has ms precision |
/// | `Json` | json, jsonb | text parsed as JSON, integer/real (JSON affinity is NUMERIC), UTF-8 blob | the parsed value with object keys sorted and every number as f64; PG read as `::text`, so jsonb `'null'` ≠ SQL NULL |
/// | `Uuid` | uuid | text | lower-case string |
/// | `Text` | varchar, text, enum (USER-DEFINED) | text (integer/real as their decimal text, UTF-8 blob as text) | string |
///
/// A value that cannot be converted becomes a string `<<unconvertible …>>`. It can't equal any real
/// value, so the mismatch report shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    Bool,
    Int,
    Float,
    Timestamp,
    Json,
    Uuid,
    Text,
}

impl ColKind {
    /// From information_schema `data_type` / `udt_name`.
    pub fn from_pg(data_type: &str, udt_name: &str) -> ColKind {
        match data_type {
            "boolean" => ColKind::Bool,
            "smallint" | "integer" | "bigint" => ColKind::Int,
            "double precision" | "real" | "numeric" => ColKind::Float,
            "timestamp with time zone" | "timestamp without time zone" | "date" => ColKind::Timestamp,
            "json" | "jsonb" => ColKind::Json,
            "uuid" => ColKind::Uuid,
            _ => match udt_name {
                "bool" => ColKind::Bool,
                "int2" | "int4" | "int8" => ColKind::Int,
                "float4" | "float8" | "numeric" => ColKind::Float,
                "timestamptz" | "timestamp" | "date" => ColKind::Timestamp,
                "json" | "jsonb" => ColKind::Json,
                "uuid" => ColKind::Uuid,
                _ => ColKind::Text,
            },
        }
    }

    /// From a SQLite declared type, following Sequelize's mapping (`TINYINT(1)` = BOOLEAN, `DATETIME` = DATE, …).
    /// Used only for tables that schema-facts.json does not know.
    pub fn from_sqlite_decl(decl: &str) -> ColKind {
        let d = decl.trim().to_ascii_uppercase();
        if d.starts_with("TINYINT(1)") || d == "BOOLEAN" || d == "BOOL" {
            ColKind::Bool
        } else if d.starts_with("DATETIME") || d.starts_with("TIMESTAMP") || d == "DATE" {
            ColKind::Timestamp
        } else if d.starts_with("JSON") {
            ColKind::Json
        } else if d.contains("INT") {
            ColKind::Int
        } else if d.starts_with("FLOAT")
            || d.starts_with("DOUBLE")
            || d.starts_with("REAL")
            || d.starts_with("DECIMAL")
            || d.starts_with("NUMERIC")
        {
            ColKind::Float
        } else if d == "UUID" {
            ColKind::Uuid
        } else {
            ColKind::Text
        }
    }
}

fn unconvertible(side: &str, storage: &str, kind: ColKind, raw: &str) -> Value {
    Value::String(format!("<<unconvertible {side} {storage} as {kind:?}: {raw}>>"))
}

fn num_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or_else(|| Value::String(format!("float:{x}")))
}

/// Canonical JSON: object keys sorted (whatever serde_json's `preserve_order` feature says), numbers as f64.
pub fn canonical_json(v: &Value) -> Value {
    match v {
        Value::Number(n) => num_f64(n.as_f64().unwrap_or(f64::NAN)),
        Value::Array(a) => Value::Array(a.iter().map(canonical_json).collect()),
        Value::Object(o) => {
            let sorted: BTreeMap<&String, Value> = o.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let mut m = Map::new();
            for (k, v) in sorted {
                m.insert(k.clone(), v);
            }
            Value::Object(m)
        }
        other => other.clone(),
    }
}

/// Canonical value of one SQLite cell. `storage` is its `typeof()`. `v` is what the snapshot query
/// returned: blobs come as hex text and reals as `%!.17g` text.
pub fn canonical_sqlite_value(kind: ColKind, storage: &str, v: &Value) -> Value {
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match storage {
        "null" => Value::Null,
        "integer" => {
            let Some(i) = v.as_i64().or_else(|| raw.parse().ok()) else {
                return unconvertible("sqlite", storage, kind, &raw);
            };
            match kind {
                ColKind::Bool => match i {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    _ => unconvertible("sqlite", storage, kind, &raw),
                },
                ColKind::Int => Value::from(i),
                ColKind::Float | ColKind::Json => num_f64(i as f64),
                ColKind::Timestamp => Value::from(i.saturating_mul(1000)),
                ColKind::Uuid | ColKind::Text => Value::String(i.to_string()),
            }
        }
        "real" => {
            let Ok(x) = raw.trim().parse::<f64>() else {
                return unconvertible("sqlite", storage, kind, &raw);
            };
            match kind {
                ColKind::Bool if x == 0.0 => Value::Bool(false),
                ColKind::Bool if x == 1.0 => Value::Bool(true),
                ColKind::Int if x.fract() == 0.0 && x.abs() < 9.0e18 => Value::from(x as i64),
                ColKind::Float | ColKind::Json => num_f64(x),
                ColKind::Timestamp => Value::from((x * 1000.0).round() as i64),
                ColKind::Text | ColKind::Uuid => Value::String(raw),
                _ => unconvertible("sqlite", storage, kind, &raw),
            }
        }
        "text" => match kind {
            ColKind::Bool => match raw.as_str() {
                "0" | "false" => Value::Bool(false),
                "1" | "true" => Value::Bool(true),
                _ => unconvertible("sqlite", storage, kind, &raw),
            },
            ColKind::Int => raw
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Float => {
                raw.trim().parse::<f64>().map(num_f64).unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw))
            }
            ColKind::Timestamp => parse_timestamp_micros(&raw)
                .map(Value::from)
                .unwrap_or_else(|| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Json => serde_json::from_str::<Value>(&raw)
                .map(|j| canonical_json(&j))
                .unwrap_or_else(|_| unconvertible("sqlite", storage, kind, &raw)),
            ColKind::Uuid => Value::String(raw.to_ascii_lowercase()),
            ColKind::Text => Value::String(raw),
        },
        "blob" => match hex_decode(&raw).map(String::from_utf8) {
            Some(Ok(s)) => canonical_sqlite_value(kind, "text", &Value::String(s)),
            _ => unconvertible("sqlite", storage, kind, &format!("x'{raw}'")),
        },
        other => unconvertible("sqlite", other, kind, &raw),
    }
}

/// Canonical value of one PostgreSQL cell, as fetched by [`pg_rows`]. Bool/Int come as JSON
/// bool/number, Timestamp as integer epoch µs, everything else as `::text` strings.
pub fn canonical_pg_value(kind: ColKind, v: &Value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    let raw = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match kind {
        ColKind::Bool => match v {
            Value::Bool(b) => Value::Bool(*b),
            _ => unconvertible("pg", "value", kind, &raw),
        },
        ColKind::Int | ColKind::Timestamp => {
            v.as_i64().map(Value::from).unwrap_or_else(|| unconvertible("pg", "value", kind, &raw))
        }
        ColKind::Float => raw.parse::<f64>().map(num_f64).unwrap_or_else(|_| unconvertible("pg", "value", kind, &raw)),
        ColKind::Json => serde_json::from_str::<Value>(&raw)
            .map(|j| canonical_json(&j))
            .unwrap_or_else(|_| unconvertible("pg", "value", kind, &raw)),
        ColKind::Uuid => Value::String(raw.to_ascii_lowercase()),
        ColKind::Text => Value::String(raw),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.fraction]]][ ][Z|±HH[:MM|MM]]` into microseconds since the
/// Unix epoch. This covers Sequelize's SQLite text (`2026-11-25 18:55:01.750 +00:00`), ISO-8601 and
/// PostgreSQL's text output. Without an offset the value counts as UTC. Fractions are cut to µs.
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    fn num(b: &[u8], from: usize, len: usize) -> Option<i64> {
        let digits = b.get(from..from + len)?;
        let mut n = 0i64;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    }
    let s = s.trim();
    let b = s.as_bytes();
    let year = num(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = num(b, 5, 2)?;
    let day = num(b, 8, 2)?;
    let mut i = 10;
    let (mut hh, mut mm, mut ss, mut micros) = (0i64, 0i64, 0i64, 0i64);
    if matches!(b.get(i), Some(b' ') | Some(b'T') | Some(b't')) && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) {
        i += 1;
        hh = num(b, i, 2)?;
        if b.get(i + 2) != Some(&b':') {
            return None;
        }
        mm = num(b, i + 3, 2)?;
        i += 5;
        if b.get(i) == Some(&b':') {
            ss = num(b, i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                let mut frac: String = s[start..i].chars().take(6).collect();
                while frac.len() < 6 {
                    frac.push('0');
                }
                micros = frac.parse().ok()?;
            }
        }
    }
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    let mut offset_secs = 0i64;
    match b.get(i) {
        None => {}
        Some(b'Z') | Some(b'z') => i += 1,
        Some(&c) if c == b'+' || c == b'-' => {
            let sign = if c == b'-' { -1 } else { 1 };
            i += 1;
            let oh = num(b, i, 2)?;
            i += 2;
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            let mut om = 0;
            if i < b.len() {
                om = num(b, i, 2)?;
                i += 2;
            }
            offset_secs = sign * (oh * 3600 + om * 60);
        }
        _ => return None,
    }
    if i != b.len() {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hh > 24 || mm > 59 || ss > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ------------------------------------------------------------------------------------------------
// SQLite access (always through a private snapshot)
// ------------------------------------------------------------------------------------------------

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
    let out = Command::new(sqlite3_bin())
        .args(["-batch", "-bail", "-cmd", ".timeout 5000"])
        .arg(db_file)
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .expect("run sqlite3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "sqlite3 {} failed: {stderr}\nSQL: {sql}",
        db_file.display()
    );
    String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
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
        let out = Command::new(sqlite3_bin())
            .args(["-batch", "-bail", "-json"])
            .arg(&self.file)
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .expect("run sqlite3");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "sqlite3 -json on a snapshot of {} failed: {stderr}\nSQL: {sql}",
            self.source.display()
        );
        let text = String::from_utf8_lossy(&out.stdout);
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

/// Every row of `public.table` in PostgreSQL database `db`, in the same canonical form as
/// [`SqliteSnapshot::rows`], for the given columns. Rows are sorted. Errors (missing table or column)
/// come back as `Err(psql stderr)`.
pub fn try_pg_rows(pg: &PgCluster, db: &str, table: &str, cols: &[(String, ColKind)]) -> Result<Vec<String>, String> {
    let select: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| {
            let q = quote_ident(name);
            let expr = match kind {
                ColKind::Bool | ColKind::Int => q,
                ColKind::Timestamp => format!("(extract(epoch FROM {q}) * 1000000)::bigint"),
                ColKind::Float | ColKind::Json | ColKind::Uuid | ColKind::Text => {
                    format!("{q}::text")
                }
            };
            format!("{expr} AS v{i}")
        })
        .collect();
    if select.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT coalesce(json_agg(t), '[]'::json) FROM (SELECT {} FROM public.{}) t",
        select.join(", "),
        quote_ident(table)
    );
    let text = pg.try_psql(db, &sql)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("psql output is not JSON ({e}): {text}"))?;
    let arr = v.as_array().ok_or_else(|| format!("expected a JSON array, got {text}"))?;
    let mut rows: Vec<String> = arr
        .iter()
        .map(|r| {
            let vals: Vec<Value> = cols
                .iter()
                .enumerate()
                .map(|(i, (_, kind))| canonical_pg_value(*kind, &r[format!("v{i}").as_str()]))
                .collect();
            Value::Array(vals).to_string()
        })
        .collect();
    rows.sort();
    Ok(rows)
}

/// Like [`try_pg_rows`], but panics on error.
#[track_caller]
pub fn pg_rows(pg: &PgCluster, db: &str, table: &str, cols: &[(String, ColKind)]) -> Vec<String> {
    match try_pg_rows(pg, db, table, cols) {
        Ok(rows) => rows,
        Err(e) => panic!("reading {db}.{table}: {e}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Independent row comparison
// ------------------------------------------------------------------------------------------------

/// Compares every row of `table` between a SQLite file and a PostgreSQL database, using independent
/// SQL on both sides and the canonical form of [`ColKind`]. The columns (and their kinds) are the
/// reference PostgreSQL columns of the table's kind, which comes from the database name.
/// Panics with the rows found on only one side.
#[track_caller]
pub fn compare_table(sqlite_file: &Path, pg: &PgCluster, pg_db: &str, table: &str) {
    let snap = SqliteSnapshot::new(sqlite_file);
    if let Err(msg) = compare_table_in(&snap, pg, pg_db, table) {
        panic!("{msg}");
    }
}

/// [`compare_table`] on an existing snapshot. Returns the number of rows compared, or a report.
/// A table that the SQLite file lacks must be empty in PostgreSQL.
pub fn compare_table_in(snap: &SqliteSnapshot, pg: &PgCluster, pg_db: &str, table: &str) -> Result<usize, String> {
    let kind = kind_for_pg_db(pg_db);
    let cols = facts_columns(kind, table);
    let sqlite = if snap.has_table(table) { snap.rows(table, &cols) } else { Vec::new() };
    let pgr = try_pg_rows(pg, pg_db, table, &cols).map_err(|e| format!("{pg_db}.{table}: {e}"))?;
    if sqlite == pgr {
        return Ok(sqlite.len());
    }
    let (only_sqlite, only_pg) = multiset_diff(&sqlite, &pgr);
    let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
    let mut msg = format!(
        "rows differ: {} {table} (SQLite {} rows) vs {pg_db}.{table} (PostgreSQL {} rows)\n  columns: {names:?}\n",
        snap.source().display(),
        sqlite.len(),
        pgr.len()
    );
    msg.push_str(&format!("  only in SQLite ({}):\n", only_sqlite.len()));
    for r in only_sqlite.iter().take(5) {
        msg.push_str(&format!("    {r}\n"));
    }
    msg.push_str(&format!("  only in PostgreSQL ({}):\n", only_pg.len()));
    for r in only_pg.iter().take(5) {
        msg.push_str(&format!("    {r}\n"));
    }
    if let (Some(a), Some(b)) = (only_sqlite.first(), only_pg.first()) {
        let a: Vec<Value> = serde_json::from_str(a).unwrap_or_default();
        let b: Vec<Value> = serde_json::from_str(b).unwrap_or_default();
        let diffs: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| a.get(*i) != b.get(*i))
            .map(|(i, n)| {
                format!("{n}: sqlite={} pg={}", a.get(i).unwrap_or(&Value::Null), b.get(i).unwrap_or(&Value::Null))
            })
            .collect();
        msg.push_str(&format!("  first pair differs in: {}\n", diffs.join("; ")));
    }
    Err(msg)
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

/// Runs [`compare_table_in`] for every table of every database kind (see [`migration_targets`]). The
/// tables are those that schema-facts.json lists for the kind, without `SequelizeMeta`.
/// Collects every mismatch and then panics with all of them.
/// Returns `(database, table, rows compared)`.
#[track_caller]
pub fn compare_all(data_dir: &Path, pg: &PgCluster) -> Vec<(String, String, usize)> {
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for (file, db) in migration_targets(data_dir) {
        let kind = kind_for_pg_db(&db);
        let snap = SqliteSnapshot::new(&file);
        for table in facts_tables(kind) {
            match compare_table_in(&snap, pg, &db, &table) {
                Ok(n) => summary.push((db.clone(), table, n)),
                Err(msg) => failures.push(msg),
            }
        }
    }
    assert!(failures.is_empty(), "{} table(s) differ:\n{}", failures.len(), failures.join("\n"));
    summary
}

/// The set of `(database, table)` names a [`compare_all`] summary covered; handy for asserts.
pub fn summary_tables(summary: &[(String, String, usize)]) -> BTreeSet<(String, String)> {
    summary.iter().map(|(d, t, _)| (d.clone(), t.clone())).collect()
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL → SQLite (`--dialect sqlite`)
// ------------------------------------------------------------------------------------------------

/// What a successful `--dialect sqlite` run prints last.
pub const SQLITE_COMPLETED: &str = "✔ Migration sqlite completed";

/// The hint a successful `--dialect sqlite` run prints after [`SQLITE_COMPLETED`].
pub const SQLITE_START_HINT: &str =
    "ℹ Please start server, will use SQLite database: unset ABT_NODE_POSTGRES_URL && blocklet server start";

/// The name part every temporary file of a `--dialect sqlite` run has: `.<name>.blocklet-migrate.tmp`.
pub const TMP_MARK: &str = ".blocklet-migrate.tmp";

/// The name part of the backups a `--dialect sqlite` run keeps: `<file>.bak-<UTCSTAMP>`.
pub const BAK_MARK: &str = ".bak-";

/// Asserts exit code 0, no `✖` line, and the `--dialect sqlite` completion and start-hint lines, in that order.
#[track_caller]
pub fn assert_sqlite_success(out: &Output) {
    assert_eq!(out.code, 0, "expected success: {out:?}");
    assert!(out.error_lines().is_empty(), "successful run printed ✖ lines: {out:?}");
    let done = out.stdout.find(SQLITE_COMPLETED);
    let hint = out.stdout.find(SQLITE_START_HINT);
    assert!(done.is_some(), "missing {SQLITE_COMPLETED:?}: {out:?}");
    assert!(hint.is_some(), "missing {SQLITE_START_HINT:?}: {out:?}");
    assert!(done < hint, "completion must come before the start hint: {out:?}");
}

/// Asserts exit code `code`, at least one `✖` line, and no completion message of either direction.
#[track_caller]
pub fn assert_sqlite_failure(out: &Output, code: i32) {
    assert_eq!(out.code, code, "expected exit code {code}: {out:?}");
    assert!(!out.error_lines().is_empty(), "expected a stderr line starting with ✖: {out:?}");
    assert!(!out.stdout.contains("Migration sqlite completed"), "failed run claims completion: {out:?}");
    assert!(!out.stdout.contains("Migration postgres completed"), "failed run claims completion: {out:?}");
}

/// Every path under `dir` (files, dirs, symlinks) whose file name contains `needle`, sorted.
pub fn paths_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, needle: &str, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().contains(needle) {
                out.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&path, needle, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, needle, &mut out);
    out.sort();
    out
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

/// Turns `sqlite3 FILE .schema` text into a sorted list of normalised statements: the lines of each
/// statement (a statement ends with a line ending in `;`) are joined, whitespace runs collapse to one
/// space, the trailing `;` is dropped, and the list is sorted. Nothing else is changed: quoting,
/// declared types, defaults and SQLite's own `sqlite_sequence` / `sqlite_stat1` tables all count.
pub fn normalize_sqlite_schema(sql: &str) -> Vec<String> {
    let mut stmts = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(t);
        if t.ends_with(';') {
            stmts.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        stmts.push(cur);
    }
    let mut out: Vec<String> = stmts
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ").trim_end_matches(';').trim_end().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out
}

/// Compares two `.schema` texts after [`normalize_sqlite_schema`]: `None` when equal, otherwise a
/// report of the statements found on only one side.
pub fn sqlite_schema_diff(actual: &str, expected: &str, what: &str) -> Option<String> {
    let a = normalize_sqlite_schema(actual);
    let e = normalize_sqlite_schema(expected);
    if a == e {
        return None;
    }
    let (only_a, only_e) = multiset_diff(&a, &e);
    let mut msg =
        format!("SQLite schema of {what} differs from the reference ({} vs {} statements)\n", a.len(), e.len());
    msg.push_str(&format!("--- only in actual ({}):\n", only_a.len()));
    for s in &only_a {
        msg.push_str(&format!("  + {s}\n"));
    }
    msg.push_str(&format!("--- only in reference ({}):\n", only_e.len()));
    for s in &only_e {
        msg.push_str(&format!("  - {s}\n"));
    }
    Some(msg)
}

/// [`sqlite_schema_diff`], panicking with the report.
#[track_caller]
pub fn assert_same_sqlite_schema(actual: &str, expected: &str, what: &str) {
    if let Some(msg) = sqlite_schema_diff(actual, expected, what) {
        panic!("{msg}");
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

impl SqliteSnapshot {
    /// Runs a dot-command or statement with the plain `sqlite3` CLI (no `-json`) and returns stdout.
    pub fn cli(&self, command: &str) -> String {
        let out = Command::new(sqlite3_bin())
            .args(["-batch", "-bail"])
            .arg(&self.file)
            .arg(command)
            .stdin(Stdio::null())
            .output()
            .expect("run sqlite3");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "sqlite3 on a snapshot of {} failed: {stderr}\ncommand: {command}",
            self.source.display()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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

/// The columns used to compare `table` of a SQLite file of `kind`: the reference PostgreSQL columns
/// from schema-facts.json when it knows the table, otherwise the file's own columns with kinds from
/// their declared types.
fn sqlite_compare_columns(snap: &SqliteSnapshot, kind: &str, table: &str) -> Vec<(String, ColKind)> {
    if schema_facts()[kind]["postgres"].get(table).is_some() {
        facts_columns(kind, table)
    } else {
        snap.columns(table).into_iter().map(|(n, t)| (n.clone(), ColKind::from_sqlite_decl(&t))).collect()
    }
}

/// Compares two SQLite files of the same `kind` table by table: the same user tables, the same column
/// names in the same order, and the same rows (a multiset, in the canonical form of [`ColKind`], with
/// column kinds from schema-facts.json: timestamps as instants, JSON canonically, booleans, numbers,
/// text). Returns `(table, rows)` for every table, or a report of every difference.
pub fn try_compare_sqlite_files(a: &Path, b: &Path, kind: &str) -> Result<Vec<(String, usize)>, String> {
    let sa = SqliteSnapshot::new(a);
    let sb = SqliteSnapshot::new(b);
    let (ta, tb) = (sa.tables(), sb.tables());
    let mut problems = Vec::new();
    if ta != tb {
        let (only_a, only_b) = multiset_diff(&ta, &tb);
        problems.push(format!(
            "tables differ: only in {}: {only_a:?}; only in {}: {only_b:?}",
            a.display(),
            b.display()
        ));
    }
    let mut summary = Vec::new();
    for table in ta.iter().filter(|t| tb.contains(t)) {
        let names_a: Vec<String> = sa.columns(table).into_iter().map(|(n, _)| n).collect();
        let names_b: Vec<String> = sb.columns(table).into_iter().map(|(n, _)| n).collect();
        if names_a != names_b {
            problems.push(format!("{table}: columns differ: {names_a:?} vs {names_b:?}"));
            continue;
        }
        let cols = sqlite_compare_columns(&sa, kind, table);
        let ra = sa.rows(table, &cols);
        let rb = sb.rows(table, &cols);
        if ra == rb {
            summary.push((table.clone(), ra.len()));
            continue;
        }
        let (only_a, only_b) = multiset_diff(&ra, &rb);
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let mut msg = format!("{table}: rows differ ({} vs {} rows)\n  columns: {names:?}\n", ra.len(), rb.len());
        msg.push_str(&format!("  only in {} ({}):\n", a.display(), only_a.len()));
        for r in only_a.iter().take(5) {
            msg.push_str(&format!("    {r}\n"));
        }
        msg.push_str(&format!("  only in {} ({}):\n", b.display(), only_b.len()));
        for r in only_b.iter().take(5) {
            msg.push_str(&format!("    {r}\n"));
        }
        if let (Some(x), Some(y)) = (only_a.first(), only_b.first()) {
            let x: Vec<Value> = serde_json::from_str(x).unwrap_or_default();
            let y: Vec<Value> = serde_json::from_str(y).unwrap_or_default();
            let diffs: Vec<String> = names
                .iter()
                .enumerate()
                .filter(|(i, _)| x.get(*i) != y.get(*i))
                .map(|(i, n)| {
                    format!("{n}: {} vs {}", x.get(i).unwrap_or(&Value::Null), y.get(i).unwrap_or(&Value::Null))
                })
                .collect();
            msg.push_str(&format!("  first pair differs in: {}\n", diffs.join("; ")));
        }
        problems.push(msg);
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(format!("{} vs {} ({kind}):\n{}", a.display(), b.display(), problems.join("\n")))
    }
}

/// [`try_compare_sqlite_files`], panicking with the report.
#[track_caller]
pub fn compare_sqlite_files(a: &Path, b: &Path, kind: &str) -> Vec<(String, usize)> {
    match try_compare_sqlite_files(a, b, kind) {
        Ok(summary) => summary,
        Err(msg) => panic!("{msg}"),
    }
}

/// Values of a SQLite file of `kind` that are not in the representation a 1.17.12 server writes
/// (column kinds from schema-facts.json): booleans must be integer 0/1, timestamps text
/// `YYYY-MM-DD HH:MM:SS.SSS +00:00`, JSON valid minified text (SQLite's `json()` leaves it as is),
/// integers integer, floats real or integer, text and UUIDs text. NULL is always fine.
/// Returns one line per offending column: table, column, count and one example (`quote()`d).
pub fn value_form_problems(db_file: &Path, kind: &str) -> Vec<String> {
    let snap = SqliteSnapshot::new(db_file);
    let mut problems = Vec::new();
    for table in snap.tables() {
        if schema_facts()[kind]["postgres"].get(&table).is_none() {
            problems.push(format!("{table}: not a table of the 1.17.12 {kind} schema"));
            continue;
        }
        let present: HashSet<String> = snap.columns(&table).into_iter().map(|(n, _)| n).collect();
        let cols: Vec<(String, ColKind)> =
            facts_columns(kind, &table).into_iter().filter(|(n, _)| present.contains(n)).collect();
        if cols.is_empty() {
            continue;
        }
        let select: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, (name, k))| {
                let q = quote_ident(name);
                let bad = match k {
                    ColKind::Bool => format!("typeof({q}) <> 'null' AND NOT (typeof({q}) = 'integer' AND {q} IN (0, 1))"),
                    ColKind::Timestamp => format!(
                        "typeof({q}) <> 'null' AND NOT (typeof({q}) = 'text' AND {q} GLOB \
                         '[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9] +00:00')"
                    ),
                    ColKind::Json => format!(
                        "typeof({q}) <> 'null' AND NOT (typeof({q}) = 'text' AND json_valid({q}) AND json({q}) = {q})"
                    ),
                    ColKind::Int => format!("typeof({q}) NOT IN ('null', 'integer')"),
                    ColKind::Float => format!("typeof({q}) NOT IN ('null', 'real', 'integer')"),
                    ColKind::Uuid | ColKind::Text => format!("typeof({q}) NOT IN ('null', 'text')"),
                };
                format!("sum(CASE WHEN {bad} THEN 1 ELSE 0 END) AS n{i}, min(CASE WHEN {bad} THEN quote({q}) END) AS e{i}")
            })
            .collect();
        let rows = snap.query_json(&format!("SELECT {} FROM {}", select.join(", "), quote_ident(&table)));
        let Some(r) = rows.first() else { continue };
        for (i, (name, k)) in cols.iter().enumerate() {
            let n = r[&format!("n{i}")].as_i64().unwrap_or(0);
            if n > 0 {
                let example = r[&format!("e{i}")].as_str().unwrap_or("").chars().take(120).collect::<String>();
                problems.push(format!(
                    "{table}.{name} ({k:?}): {n} value(s) not as the server writes them, e.g. {example}"
                ));
            }
        }
    }
    problems
}

/// Another process holding a SQLite file open, as a live server does: a `sqlite3` CLI that reads
/// its script from a pipe and then waits for more input.
/// * [`SqliteHolder::begin_exclusive`]: holds `BEGIN EXCLUSIVE`, like a server in the middle of a write;
/// * [`SqliteHolder::idle`]: has read once and keeps the connection open, like a server between requests.
///
/// [`SqliteHolder::release`] ends it cleanly; `Drop` kills it if still running.
/// Note: the holder opens the file in place, and when it quits as the last connection SQLite may
/// checkpoint the WAL. Take file hashes while it holds the file, not after the release.
pub struct SqliteHolder {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    end: &'static str,
    dir: TempDir,
}

impl SqliteHolder {
    /// Holds `BEGIN EXCLUSIVE` on `db_file`; returns once the lock is held.
    pub fn begin_exclusive(db_file: &Path) -> SqliteHolder {
        SqliteHolder::start(db_file, "BEGIN EXCLUSIVE;", "ROLLBACK;\n.quit\n")
    }

    /// Keeps an idle connection to `db_file` that has read from it (so it takes part in the WAL);
    /// returns once the read is done.
    pub fn idle(db_file: &Path) -> SqliteHolder {
        SqliteHolder::start(db_file, "SELECT count(*) FROM sqlite_master;", ".quit\n")
    }

    fn start(db_file: &Path, setup: &str, end: &'static str) -> SqliteHolder {
        use std::io::Write;
        let dir = tempfile::Builder::new().prefix("bm-holder-").tempdir().expect("temp dir for the holder");
        let marker = dir.path().join("ready");
        let err_log = fs::File::create(dir.path().join("stderr")).expect("create stderr log");
        let mut child = Command::new(sqlite3_bin())
            .args(["-batch", "-bail"])
            .arg(db_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(err_log)
            .spawn()
            .expect("spawn sqlite3 holder");
        let mut stdin = child.stdin.take().expect("stdin pipe");
        // The marker is written (and closed, so flushed) only after `setup` succeeded.
        let script =
            format!(".timeout 10000\n{setup}\n.output '{}'\nSELECT 'ready';\n.output stdout\n", marker.display());
        stdin.write_all(script.as_bytes()).expect("write to the holder");
        stdin.flush().expect("flush the holder's stdin");
        let mut holder = SqliteHolder { child, stdin: Some(stdin), end, dir };
        let start = Instant::now();
        loop {
            if fs::read_to_string(&marker).is_ok_and(|s| s.contains("ready")) {
                return holder;
            }
            if let Some(st) = holder.child.try_wait().expect("wait for the holder") {
                let err = fs::read_to_string(holder.dir.path().join("stderr")).unwrap_or_default();
                panic!("sqlite3 holder on {} exited ({st}) before `{setup}` was done: {err}", db_file.display());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "sqlite3 did not get `{setup}` done on {}",
                db_file.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ends the holder's transaction (if any), quits and waits for the process.
    pub fn release(mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(self.end.as_bytes());
        }
        let st = self.child.wait().expect("wait for the holder");
        let err = fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default();
        assert!(st.success() && err.trim().is_empty(), "sqlite3 holder failed ({st}): {err}");
    }
}

impl Drop for SqliteHolder {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl PgCluster {
    /// A psql command on `db` with the session time zone fixed to UTC.
    fn psql_utc_cmd(&self, db: &str) -> Command {
        let port = self.port.to_string();
        let mut cmd = self.client_cmd("psql");
        cmd.env("PGTZ", "UTC")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", "postgres", "-d", db]);
        cmd
    }

    /// Every table of `db` (schema `public`), as `table → rows`: each row one line of
    /// `COPY (SELECT * FROM t) TO STDOUT` text (tab-separated, newlines escaped, `\N` for NULL,
    /// timestamps in UTC), sorted. Nothing is left out: `SequelizeMeta` and empty tables included.
    #[track_caller]
    pub fn table_dump(&self, db: &str) -> BTreeMap<String, Vec<String>> {
        let mut dump = BTreeMap::new();
        for table in self.tables(db) {
            let sql = format!("COPY (SELECT * FROM public.{}) TO STDOUT", quote_ident(&table));
            let out = self.psql_utc_cmd(db).args(["-c", &sql]).output().expect("run psql");
            assert!(out.status.success(), "COPY {db}.{table} failed: {}", String::from_utf8_lossy(&out.stderr));
            let text = String::from_utf8(out.stdout).expect("COPY output is UTF-8");
            let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
            rows.sort();
            dump.insert(table, rows);
        }
        dump
    }

    /// Every sequence of `db` (schema `public`) as `name → (last_value, is_called)`.
    #[track_caller]
    pub fn sequences(&self, db: &str) -> BTreeMap<String, (i64, bool)> {
        let names = self.psql(db, "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1");
        names
            .lines()
            .filter(|l| !l.is_empty())
            .map(|seq| {
                let row = self.psql(db, &format!("SELECT last_value, is_called FROM public.{}", quote_ident(seq)));
                let (last, called) = row.split_once('|').unwrap_or_else(|| panic!("unexpected row {row:?}"));
                (seq.to_string(), (last.trim().parse().expect("last_value"), called.trim() == "t"))
            })
            .collect()
    }
}

/// The value `nextval` would return for a sequence state `(last_value, is_called)`.
pub fn next_sequence_value((last, called): (i64, bool)) -> i64 {
    if called { last + 1 } else { last }
}

/// `YYYYMMDDTHHMMSSZ` (UTC) for a time in seconds since the Unix epoch: the stamp format of the
/// `.bak-<UTCSTAMP>` backups.
pub fn utc_compact_stamp(secs: i64) -> String {
    // Days → civil date: H. Hinnant's algorithm, the inverse of `days_from_civil`.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// ------------------------------------------------------------------------------------------------
// Bad input and faults (tests/bad_input.rs, tests/faults.rs)
// ------------------------------------------------------------------------------------------------

impl PgCluster {
    /// `count(*)` of every base table in schema `public` of `db`, in one psql call
    /// (`query_to_xml` runs the counts server-side).
    #[track_caller]
    pub fn table_counts(&self, db: &str) -> BTreeMap<String, i64> {
        let sql = "SELECT table_name, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM public.%I', \
                   table_name), false, true, '')))[1]::text FROM information_schema.tables \
                   WHERE table_schema = 'public' AND table_type = 'BASE TABLE'";
        self.psql(db, sql)
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (t, n) = l.rsplit_once('|').unwrap_or_else(|| panic!("unexpected row {l:?}"));
                (t.to_string(), n.trim().parse().unwrap_or_else(|_| panic!("unexpected count in {l:?}")))
            })
            .collect()
    }

    /// [`PgCluster::table_counts`] of every database [`PgCluster::databases`] lists, keyed by `(database, table)`.
    #[track_caller]
    pub fn all_table_counts(&self) -> BTreeMap<(String, String), i64> {
        let mut all = BTreeMap::new();
        for db in self.databases() {
            for (t, n) in self.table_counts(&db) {
                all.insert((db.clone(), t), n);
            }
        }
        all
    }

    /// Like [`PgCluster::assert_no_rows_anywhere`], with one psql call per database.
    #[track_caller]
    pub fn assert_all_tables_empty(&self, what: &str) {
        let non_empty: Vec<String> = self
            .all_table_counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((db, t), n)| format!("  {db}.{t}: {n} rows"))
            .collect();
        assert!(non_empty.is_empty(), "{what}: data left behind:\n{}", non_empty.join("\n"));
    }

    /// Runs `sql` in `db` as `user` (with `password`, if any, through `PGPASSWORD`); never prompts.
    pub fn try_psql_as(&self, user: &str, password: Option<&str>, db: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let mut cmd = self.client_cmd("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", user, "-d", db, "-c", sql]);
        if let Some(pw) = password {
            cmd.env("PGPASSWORD", pw);
        }
        let out = cmd.output().expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Replaces the cluster's `pg_hba.conf` with `rules` and reloads the configuration.
    /// The reload is asynchronous: callers should check the effect (see [`PgCluster::try_psql_as`]).
    #[track_caller]
    pub fn set_hba(&self, rules: &str) {
        let hba = self.data.join("pg_hba.conf");
        // Written in place, so the file keeps its owner (`postgres` when the tests run as root).
        fs::write(&hba, rules).unwrap_or_else(|e| panic!("write {}: {e}", hba.display()));
        let out =
            self.server_cmd("pg_ctl").arg("reload").arg("-D").arg(&self.data).output().expect("run pg_ctl reload");
        assert!(out.status.success(), "pg_ctl reload failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Overwrites every byte of `file` after the first `keep` bytes with deterministic pseudo-random
/// bytes (xorshift), keeping the file's length.
pub fn scramble_after(file: &Path, keep: usize, seed: u64) {
    let mut bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mut x = seed | 1;
    for b in bytes.iter_mut().skip(keep) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 32) as u8;
    }
    fs::write(file, bytes).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
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

/// sha256 of zero bytes.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// [`assert_same_tree`] for a source data dir whose databases a test changed with [`sqlite_exec`]:
/// the `sqlite3` CLI checkpoints and deletes the `-wal` when it closes, and the next connection
/// to the WAL-mode database, even a read-only one, creates an empty `-wal` again. An added
/// **empty** `-wal` holds no data and is not counted as a change; anything else is.
#[track_caller]
pub fn assert_same_source(before: &BTreeMap<PathBuf, String>, data_dir: &Path, what: &str) {
    let mut after = hash_tree(data_dir);
    after.retain(|p, h| before.contains_key(p) || !(h == EMPTY_SHA256 && p.to_string_lossy().ends_with("-wal")));
    assert_same_tree(before, &after, what);
}

// ------------------------------------------------------------------------------------------------
// Components, sandbox and multi-tenant hosting (tests/sandbox.rs, lifecycle.rs, multi_tenant.rs)
// ------------------------------------------------------------------------------------------------

/// The workspace root (`host/..`).
pub fn workspace_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    fs::canonicalize(&dir).unwrap_or(dir)
}

/// Runs `cargo <args>` (the `CARGO` that runs the tests, else `cargo`) in the workspace root,
/// without the settings meant for the host build (`RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS`,
/// `RUSTC_WORKSPACE_WRAPPER`, `CARGO_TARGET_DIR`), plus `env`. Panics with cargo's output on
/// failure; returns how long it took.
#[track_caller]
pub fn cargo_build(args: &[&str], env: &[(&str, &str)]) -> Duration {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(args).current_dir(workspace_root()).stdin(Stdio::null());
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("run cargo {args:?}: {e}"));
    assert!(
        out.status.success(),
        "cargo {args:?} failed (is the wasm32-wasip2 target installed?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Builds the test components of `tests/components` (the hostile corpus and `wit-v2`) once per
/// test binary, into `<workspace>/target/hostile-components`, and returns the directory that
/// holds `hostile_<name>.wasm`.
pub fn test_components_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = workspace_root().join("target").join("hostile-components");
        let manifest = tests_dir().join("components").join("Cargo.toml");
        let took = cargo_build(
            &[
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
                manifest.to_str().expect("utf-8 path"),
                "--target-dir",
                target.to_str().expect("utf-8 path"),
            ],
            &[],
        );
        eprintln!("test components built in {:.1}s", took.as_secs_f64());
        target.join("wasm32-wasip2").join("release")
    })
}

/// The built test component of crate directory `name` (`infinite-loop` →
/// `hostile_infinite_loop.wasm`).
pub fn test_component(name: &str) -> PathBuf {
    let path = test_components_dir().join(format!("hostile_{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// What a target cluster holds: every database (`postgres` included) with every table's row count
/// (`(database, table) → rows`; a database without tables appears as `(database, "")` → 0).
#[track_caller]
pub fn target_state(pg: &PgCluster) -> BTreeMap<(String, String), i64> {
    let mut state = BTreeMap::new();
    let mut dbs = pg.databases();
    dbs.push("postgres".into());
    for db in dbs {
        state.insert((db.clone(), String::new()), 0);
        for (t, n) in pg.table_counts(&db) {
            state.insert((db.clone(), t), n);
        }
    }
    state
}

/// Runs `blocklet-migrate <args>` like [`run_migrate_killed_after`], and also reports how long it
/// took. Panics with the partial output when it had to be killed after `limit`: a sandboxed
/// failure must end the process by itself.
#[track_caller]
pub fn run_migrate_within(args: &[&str], cwd: &Path, env: &[(&str, &str)], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let (out, killed) = run_migrate_killed_after(args, cwd, env, limit);
    let took = start.elapsed();
    assert!(!killed, "blocklet-migrate {args:?} did not exit by itself within {limit:?} and was killed: {out:?}");
    (out, took)
}

impl PgCluster {
    /// Starts `n` clusters at once, one thread each ([`PgCluster::start`] is safe to call
    /// concurrently: each has its own temp dir and socket dir, and a port taken in the meantime
    /// is retried with another).
    pub fn start_many(n: usize) -> Vec<PgCluster> {
        let threads: Vec<_> = (0..n).map(|_| thread::spawn(PgCluster::start)).collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| panic!("starting a PostgreSQL cluster failed")))
            .collect()
    }
}

/// A CLI run's exit code and output exactly as written (ANSI escapes and all).
pub struct RawOutput {
    /// Exit code; `128 + signal` if the process was killed by a signal.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RawOutput {
    /// The [`Output`] [`run_migrate`] would have returned: lossy UTF-8, ANSI escapes removed.
    pub fn output(&self) -> Output {
        Output {
            code: self.code,
            stdout: strip_ansi(&String::from_utf8_lossy(&self.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&self.stderr)),
        }
    }
}

/// Like [`run_migrate_within`] (same environment handling), but keeps the output as written.
/// Panics with the partial output when the process had to be killed after `limit`.
#[track_caller]
pub fn run_migrate_raw(args: &[&str], cwd: &Path, env: &[(&str, &str)], limit: Duration) -> (RawOutput, Duration) {
    let mut cmd = Command::new(bin_path());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("ABT_NODE_POSTGRES_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin_path().display()));
    let mut out_pipe = child.stdout.take().expect("stdout pipe");
    let mut err_pipe = child.stderr.take().expect("stderr pipe");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let (status, killed) = loop {
        if let Some(st) = child.try_wait().expect("wait for blocklet-migrate") {
            break (st, false);
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let st = child.wait().expect("wait after kill");
            break (st, st.signal() == Some(9));
        }
        thread::sleep(Duration::from_millis(5));
    };
    let took = start.elapsed();
    let raw = RawOutput {
        code: status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    };
    assert!(
        !killed,
        "blocklet-migrate {args:?} did not exit by itself within {limit:?} and was killed: {:?}",
        raw.output()
    );
    (raw, took)
}
