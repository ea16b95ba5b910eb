//! Bad input for `blocklet-migrate --dialect postgres`: every item of issue 5's "Bad input" list
//! that the tool handles, plus `--dry-run`, `--skip-rejects`, `--report` and password hygiene.
//!
//! Every test gets its own fixture copy and, when it needs a server, its own throwaway cluster.
//! Bad values are injected into the copy with `sqlite3` (SQLite accepts them all). A value test
//! asserts, for each injected value, the `✖ <pgdb>.<table> [<key>] column <col>: <reason>` line, the
//! matching JSON line in the rejects file, exit code 3, the report's outcome, and that nothing was
//! committed: no database left behind, no lock file, the source unchanged.
//!
//! Not tested here, and why:
//! * **NaN**: SQLite cannot store it (any NaN result or bound NaN becomes NULL, which
//!   [`faithful_unusual_values_migrate`] checks), so no data dir can hold one. ±Infinity can be
//!   stored and is tested.
//! * **PostgreSQL too old**: every server binary on this machine is supported (the tool accepts 12
//!   and newer); an old server can't be started here.
//! * **Initialised but never started server**: `never_started_data_dir_gives_hint` in
//!   `sqlite_to_postgres.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use blocklet_migrate_test_support::*;
use serde_json::Value;
use tempfile::TempDir;

const SERVER: &str = "server_db";

fn app_db(did: &str) -> String {
    format!("blocklet_db_{did}")
}

fn app_file(data_dir: &Path, did: &str) -> PathBuf {
    data_dir.join("data").join(did).join("blocklet.db")
}

fn server_file(data_dir: &Path) -> PathBuf {
    data_dir.join("core").join("server.db")
}

/// One run of the CLI with `--report` and `--rejects` pointing into a private temp dir.
struct Run {
    out: Output,
    report_path: PathBuf,
    rejects_path: PathBuf,
    _files: TempDir,
}

impl Run {
    fn report_text(&self) -> String {
        fs::read_to_string(&self.report_path)
            .unwrap_or_else(|e| panic!("report {} not written ({e}): {:?}", self.report_path.display(), self.out))
    }

    /// The report, parsed; panics if it is missing or not JSON.
    fn report(&self) -> Value {
        let text = self.report_text();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("report is not valid JSON ({e}):\n{text}\n{:?}", self.out))
    }

    fn rejects_text(&self) -> String {
        fs::read_to_string(&self.rejects_path).unwrap_or_default()
    }

    /// Every line of the rejects file, parsed (none if it was not written).
    fn rejects(&self) -> Vec<Value> {
        self.rejects_text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("rejects line is not JSON ({e}): {l}")))
            .collect()
    }
}

/// Runs `blocklet-migrate <args> --report R --rejects J` in `cwd`, with `ABT_NODE_POSTGRES_URL=url` if given.
fn run_with_files(url: Option<&str>, cwd: &Path, args: &[&str]) -> Run {
    let files = tempfile::Builder::new().prefix("bm-run-").tempdir().expect("temp dir for report");
    let report_path = files.path().join("report.json");
    let rejects_path = files.path().join("rejects.jsonl");
    let (rp, jp) = (report_path.to_str().unwrap().to_string(), rejects_path.to_str().unwrap().to_string());
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--report", rp.as_str(), "--rejects", jp.as_str()]);
    let env: Vec<(&str, &str)> = url.map(|u| vec![("ABT_NODE_POSTGRES_URL", u)]).unwrap_or_default();
    let out = run_migrate(&all, cwd, &env);
    Run { out, report_path, rejects_path, _files: files }
}

/// `--dialect postgres --data-dir <data_dir> <extra>` from the data dir's parent.
fn migrate(url: Option<&str>, data_dir: &Path, extra: &[&str]) -> Run {
    let dd = data_dir.to_str().expect("utf-8 path");
    let mut args = vec!["--dialect", "postgres", "--data-dir", dd];
    args.extend_from_slice(extra);
    run_with_files(url, data_dir.parent().expect("parent"), &args)
}

/// A rejected value the tool must report.
struct Expected {
    db: String,
    table: String,
    key: String,
    column: String,
    reason: String,
}

fn rej(db: &str, table: &str, key: &str, column: &str, reason: &str) -> Expected {
    Expected { db: db.into(), table: table.into(), key: key.into(), column: column.into(), reason: reason.into() }
}

fn reject_lines(out: &Output) -> Vec<&str> {
    out.error_lines().into_iter().filter(|l| l.contains("] column ")).collect()
}

/// Asserts exit 3 and that each expected value — and nothing else — is reported on stderr, in the
/// rejects file and in the report's count.
#[track_caller]
fn assert_rejected(run: &Run, expected: &[Expected]) {
    let out = &run.out;
    assert_eq!(out.code, 3, "expected exit 3 (rows rejected): {out:?}");
    assert!(!out.stdout.contains("Migration postgres completed"), "a rejected run claims completion: {out:?}");
    let lines = reject_lines(out);
    let rejects = run.rejects();
    for e in expected {
        let prefix = format!("✖ {}.{} [{}] column {}: ", e.db, e.table, e.key, e.column);
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with(&prefix) && l.contains(&e.reason) && l.contains("(value: ")),
            "no stderr line `{prefix}…{}… (value: …)`: {out:?}",
            e.reason
        );
        assert!(
            rejects.iter().any(|r| r["database"] == e.db.as_str()
                && r["table"] == e.table.as_str()
                && r["primary_key"] == e.key.as_str()
                && r["column"] == e.column.as_str()
                && r["reason"].as_str().is_some_and(|s| s.contains(&e.reason))
                && r["value_excerpt"].is_string()),
            "rejects file lacks {}.{} [{}] {} ({}):\n{}",
            e.db,
            e.table,
            e.key,
            e.column,
            e.reason,
            run.rejects_text()
        );
    }
    assert_eq!(lines.len(), expected.len(), "unexpected rejections on stderr: {lines:#?}\n{out:?}");
    assert_eq!(rejects.len(), expected.len(), "unexpected lines in the rejects file:\n{}", run.rejects_text());
    let report = run.report();
    assert_eq!(report["outcome"], "rejected", "report: {report:#}");
    assert_eq!(report["exit_code"], 3, "report: {report:#}");
    assert_eq!(report["rejected_rows"], expected.len() as u64, "report: {report:#}");
    assert_eq!(report["rejects_file"], run.rejects_path.to_str().unwrap(), "report: {report:#}");
}

/// After a failed run on a cluster that held nothing before: no database left, no lock, source unchanged.
#[track_caller]
fn assert_nothing_committed(pg: &PgCluster, data_dir: &Path, before: &BTreeMap<PathBuf, String>, out: &Output) {
    pg.assert_all_tables_empty("after a failed run");
    assert_eq!(pg.databases(), Vec::<String>::new(), "databases created by the failed run were not removed: {out:?}");
    assert_no_lock_file(data_dir);
    assert_same_source(before, data_dir, "source after a failed run");
}

/// The value of `sql` (one row, one column) in a SQLite file of a fixture copy.
fn sqlite_value(db_file: &Path, sql: &str) -> String {
    let v = sqlite_exec(db_file, sql);
    assert!(!v.is_empty(), "{sql} returned nothing on {}", db_file.display());
    v
}

/// The primary keys of `table` in a SQLite file, sorted.
fn sqlite_keys(db_file: &Path, table: &str, key: &str) -> Vec<String> {
    sqlite_exec(db_file, &format!("SELECT {key} FROM {table} ORDER BY {key}")).lines().map(str::to_string).collect()
}

// ------------------------------------------------------------------------------------------------
// Files and config
// ------------------------------------------------------------------------------------------------

#[test]
fn no_blocklet_server_dir_is_a_usage_error() {
    let empty = tempfile::tempdir().expect("temp dir");
    let cwd = fs::canonicalize(empty.path()).unwrap();
    for dir in cwd.ancestors() {
        assert!(
            !dir.join(".blocklet-server").exists(),
            "{} has a .blocklet-server; need a clean ancestry",
            dir.display()
        );
    }
    // The URL is never used: nothing listens on port 1, and the data dir is looked for first.
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    let run = run_with_files(Some(url), &cwd, &["--dialect", "postgres"]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("Cannot find config file for Blocklet Server"), "{:?}", run.out);
    assert_eq!(run.report()["outcome"], "usage-error");

    let missing = cwd.join("nowhere");
    let run = run_with_files(Some(url), &cwd, &["--dialect", "postgres", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line(missing.to_str().unwrap()), "should name the dir it looked in: {:?}", run.out);
}

#[test]
fn invalid_config_yml_is_a_usage_error() {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let config = data_dir.join("config.yml");
    for (what, text) in [("broken YAML", "node: [unclosed\n  did: x\n"), ("not a mapping", "- just\n- a list\n")] {
        fs::write(&config, text).unwrap();
        let before = hash_tree(&data_dir);
        let run = migrate(Some("postgres://postgres@127.0.0.1:1/postgres"), &data_dir, &[]);
        assert_eq!(run.out.code, 2, "{what}: {:?}", run.out);
        let line = format!("Invalid config file {}", config.display());
        assert!(run.out.has_error_line(&line), "{what}: expected {line:?}: {:?}", run.out);
        assert_eq!(run.report()["outcome"], "usage-error", "{what}");
        assert_same_source(&before, &data_dir, what);
    }
}

/// Runs the CLI as an unprivileged user when the tests run as root (root ignores file modes), else as is.
/// Returns `None` (after printing why) when that is not possible here.
fn run_unprivileged(args: &[&str], cwd: &Path, url: &str) -> Option<Output> {
    let mut cmd = if running_as_root() {
        let has_nobody = Command::new("id").arg("nobody").output().is_ok_and(|o| o.status.success());
        if !has_nobody {
            eprintln!("NOTE: running as root without a `nobody` user: the unreadable-data-dir test is skipped");
            return None;
        }
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(bin_path());
        c
    } else {
        Command::new(bin_path())
    };
    let out = cmd
        .args(args)
        .current_dir(cwd)
        .env("ABT_NODE_POSTGRES_URL", url)
        .env("NO_COLOR", "1")
        .env("BLOCKLET_MIGRATE_CACHE_DIR", "")
        .stdin(Stdio::null())
        .output()
        .expect("run blocklet-migrate");
    Some(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: strip_ansi(&String::from_utf8_lossy(&out.stdout)),
        stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    })
}

/// A fixture copy whose parent an unprivileged user can reach.
fn reachable_fixture_copy() -> (TempDir, PathBuf) {
    let tmp = fixture_copy();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dd = data_dir(tmp.path());
    (tmp, dd)
}

/// Runs the migration of `data_dir` unprivileged with `dir` at mode 000, restoring the mode after.
fn run_with_dir_unreadable(pg: &PgCluster, data_dir: &Path, dir: &Path) -> Option<Output> {
    let dd = data_dir.to_str().unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o000)).unwrap();
    let out = run_unprivileged(&["--dialect", "postgres", "--data-dir", dd], data_dir.parent().unwrap(), &pg.url());
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    out
}

#[test]
fn unreadable_data_dir_is_a_clear_error() {
    let pg = PgCluster::start();
    let (_tmp, data_dir) = reachable_fixture_copy();
    let Some(out) = run_with_dir_unreadable(&pg, &data_dir, &data_dir) else { return };
    let dd = data_dir.to_str().unwrap();
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.error_lines().iter().any(|l| l.contains(dd) && l.to_lowercase().contains("permission denied")),
        "the error should name {dd} and say permission was denied (not that no config exists): {out:?}"
    );
    assert_eq!(pg.databases(), Vec::<String>::new());
}

#[test]
fn unreadable_core_dir_is_a_clear_error() {
    let pg = PgCluster::start();
    let (_tmp, data_dir) = reachable_fixture_copy();
    let core = data_dir.join("core");
    let Some(out) = run_with_dir_unreadable(&pg, &data_dir, &core) else { return };
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.error_lines().iter().any(|l| l.contains(core.to_str().unwrap()) && l.to_lowercase().contains("permission")),
        "the error should name {} and the permission problem: {out:?}",
        core.display()
    );
    assert!(!out.stderr.contains("start once"), "an unreadable core/ is not a never-started server: {out:?}");
    pg.assert_all_tables_empty("after an unreadable core/");
    assert_eq!(pg.databases(), Vec::<String>::new());
}

/// The common checks of a source file the tool cannot read as a Blocklet database.
#[track_caller]
fn assert_bad_file_refused(pg: &PgCluster, data_dir: &Path, file: &Path, what: &str) {
    let before = hash_tree(data_dir);
    let run = migrate(Some(&pg.url()), data_dir, &[]);
    let out = &run.out;
    assert_failure(out);
    assert!(
        out.error_lines().iter().any(|l| l.contains(file.to_str().unwrap())),
        "{what}: the error should name {}: {out:?}",
        file.display()
    );
    let report = run.report();
    assert_eq!(report["exit_code"], out.code, "{what}: {report:#}");
    assert!(report["error"].is_string(), "{what}: {report:#}");
    assert_nothing_committed(pg, data_dir, &before, out);
}

#[test]
fn corrupt_sqlite_file_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let file = server_file(&data_dir);
    sqlite_checkpoint_alone(&file);
    // Keep the 100-byte header ("SQLite format 3"), scramble every page after it.
    scramble_after(&file, 100, 0x5eed);
    assert_bad_file_refused(&pg, &data_dir, &file, "corrupt server.db");
}

#[test]
fn truncated_sqlite_file_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    // An app's database, so the failure comes after other databases were created: they must be removed.
    let file = app_file(&data_dir, APP_DIDS[1]);
    sqlite_checkpoint_alone(&file);
    let len = fs::metadata(&file).unwrap().len();
    assert!(len > 8192, "checkpointed {} is only {len} bytes", file.display());
    fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len / 2).unwrap();
    assert_bad_file_refused(&pg, &data_dir, &file, "truncated blocklet.db");
}

#[test]
fn non_sqlite_file_named_server_db_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let file = server_file(&data_dir);
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(with_suffix(&file, suffix));
    }
    fs::write(&file, "this is a text file, not a database\n".repeat(200)).unwrap();
    assert_bad_file_refused(&pg, &data_dir, &file, "text file as server.db");
}

#[test]
fn sqlite_file_of_another_app_is_refused() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let file = server_file(&data_dir);
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(with_suffix(&file, suffix));
    }
    sqlite_exec(
        &file,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes (body) VALUES ('hi');",
    );
    assert_bad_file_refused(&pg, &data_dir, &file, "another app's server.db");
}

#[test]
fn listed_blocklet_data_dir_missing_names_the_app() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let gone = APP_DIDS[0];
    fs::remove_dir_all(data_dir.join("data").join(gone)).unwrap();
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_failure(&run.out);
    assert!(run.out.has_error_line(gone), "the error should name app {gone}: {:?}", run.out);
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

// ------------------------------------------------------------------------------------------------
// Connection
// ------------------------------------------------------------------------------------------------

#[test]
fn no_url_is_a_usage_error() {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let run = migrate(None, &data_dir, &[]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("ABT_NODE_POSTGRES_URL"), "should name the variable: {:?}", run.out);
    assert_no_lock_file(&data_dir);
}

#[test]
fn malformed_urls_are_usage_errors() {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    for url in [
        "not a url",
        "mysql://u:p@127.0.0.1:3306/db",
        "postgres://u:p@/postgres",
        "postgres://u:p@127.0.0.1:99999/postgres",
        "postgres://u:p@127.0.0.1:5432/postgres?sslmode=sometimes",
    ] {
        let run = migrate(Some(url), &data_dir, &[]);
        assert_eq!(run.out.code, 2, "{url}: {:?}", run.out);
        assert!(run.out.has_error_line("ABT_NODE_POSTGRES_URL"), "{url}: should name the variable: {:?}", run.out);
        assert_eq!(run.report()["outcome"], "usage-error", "{url}");
    }
    assert_no_lock_file(&data_dir);
}

#[test]
fn unreachable_server_is_a_usage_error() {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let run = migrate(Some("postgres://postgres@127.0.0.1:1/postgres"), &data_dir, &[]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("127.0.0.1:1"), "should name the address: {:?}", run.out);
    assert_eq!(run.report()["outcome"], "usage-error");
    assert_no_lock_file(&data_dir);
}

#[test]
fn wrong_password_is_refused() {
    let pg = PgCluster::start();
    pg.psql(
        "postgres",
        "SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN CREATEDB PASSWORD 'Right-Pw-7'",
    );
    pg.set_hba("host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n");
    // The reload is asynchronous: wait until the server asks alice for her password.
    let start = std::time::Instant::now();
    loop {
        match pg.try_psql_as("alice", Some("wrong"), "postgres", "SELECT 1") {
            Err(e) if e.contains("password authentication failed") => break,
            other => {
                assert!(start.elapsed().as_secs() < 10, "pg_hba.conf change not in effect: {other:?}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    assert_eq!(pg.try_psql_as("alice", Some("Right-Pw-7"), "postgres", "SELECT 1").as_deref(), Ok("1"));

    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let bad = format!("postgres://alice:Wr0ng-Pw-9@127.0.0.1:{}/postgres", pg.port());
    let run = migrate(Some(&bad), &data_dir, &[]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("refused the login of user alice"), "{:?}", run.out);
    for text in [&run.out.stdout, &run.out.stderr, &run.report_text()] {
        assert!(!text.contains("Wr0ng-Pw-9"), "password leaked: {text}");
    }
    assert_eq!(run.report()["outcome"], "usage-error");
    assert_eq!(pg.databases(), Vec::<String>::new());

    // The right password works: the refusal above was the password, not the setup.
    let good = format!("postgres://alice:Right-Pw-7@127.0.0.1:{}/postgres", pg.port());
    let run = migrate(Some(&good), &data_dir, &[]);
    assert_success(&run.out);
    assert_eq!(pg.databases(), expected_databases());
}

#[test]
fn no_permission_to_create_databases() {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE ROLE bob LOGIN NOCREATEDB");
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&format!("postgres://bob@127.0.0.1:{}/postgres", pg.port())), &data_dir, &[]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("may not create database"), "{:?}", run.out);
    assert!(run.out.has_error_line("CREATEDB"), "should say what to grant: {:?}", run.out);
    assert_eq!(run.report()["outcome"], "usage-error");
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

#[test]
fn sslmode_require_against_a_server_without_tls() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let url = format!("{}?sslmode=require", pg.url());
    let run = migrate(Some(&url), &data_dir, &[]);
    assert_eq!(run.out.code, 2, "{:?}", run.out);
    assert!(run.out.has_error_line("TLS"), "should say TLS failed: {:?}", run.out);
    assert_eq!(pg.databases(), Vec::<String>::new());
    assert_no_lock_file(&data_dir);
}

// ------------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------------

#[test]
fn json_and_integer_values_are_each_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let (server, app0, app1) =
        (server_file(&data_dir), app_file(&data_dir, APP_DIDS[0]), app_file(&data_dir, APP_DIDS[1]));
    let (db0, db1) = (app_db(APP_DIDS[0]), app_db(APP_DIDS[1]));
    let owner = sqlite_value(&server, "SELECT did FROM users");
    let log = sqlite_value(&server, "SELECT id FROM audit_logs");
    let u = sqlite_keys(&app0, "users", "did");
    let acct = sqlite_keys(&app1, "connected_accounts", "did");
    let pass = sqlite_keys(&app1, "passports", "id");
    sqlite_exec(
        &server,
        &format!(
            "UPDATE users SET extra = '{{not json' WHERE did = '{owner}';\
             UPDATE audit_logs SET env = '[1, 2' WHERE id = '{log}';"
        ),
    );
    sqlite_exec(
        &app0,
        &format!(
            "UPDATE users SET passkeyCount = 'abc' WHERE did = '{}';\
             UPDATE users SET passkeyCount = 3000000000 WHERE did = '{}';\
             UPDATE users SET generation = 40000 WHERE did = '{}';\
             UPDATE users SET metadata = 9e999 WHERE did = '{}';\
             UPDATE users SET passkeyCount = -9e999 WHERE did = '{}';",
            u[0], u[1], u[2], u[3], u[4]
        ),
    );
    sqlite_exec(
        &app1,
        &format!(
            "UPDATE connected_accounts SET counter = 'many' WHERE did = '{}';\
             UPDATE passports SET type = '' WHERE id = '{}';",
            acct[0], pass[0]
        ),
    );
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_rejected(
        &run,
        &[
            rej(SERVER, "users", &format!("did={owner}"), "extra", "invalid JSON"),
            rej(SERVER, "audit_logs", &format!("id={log}"), "env", "invalid JSON"),
            rej(&db0, "users", &format!("did={}", u[0]), "passkeyCount", "text value in a column of type integer"),
            rej(&db0, "users", &format!("did={}", u[1]), "passkeyCount", "out of range for integer"),
            rej(&db0, "users", &format!("did={}", u[2]), "generation", "out of range for smallint"),
            rej(&db0, "users", &format!("did={}", u[3]), "metadata", "not a JSON number"),
            rej(&db0, "users", &format!("did={}", u[4]), "passkeyCount", "not a whole number"),
            rej(
                &db1,
                "connected_accounts",
                &format!("did={}", acct[0]),
                "counter",
                "text value in a column of type bigint",
            ),
            rej(&db1, "passports", &format!("id={}", pass[0]), "type", "invalid JSON"),
        ],
    );
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

#[test]
fn timestamp_and_enum_values_are_each_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let (server, app0) = (server_file(&data_dir), app_file(&data_dir, APP_DIDS[0]));
    let db0 = app_db(APP_DIDS[0]);
    let note = sqlite_value(&server, "SELECT id FROM notifications");
    let owner = sqlite_value(&server, "SELECT did FROM users");
    let u = sqlite_keys(&app0, "users", "did");
    let pass = sqlite_keys(&app0, "passports", "id");
    sqlite_exec(
        &app0,
        &format!(
            "UPDATE users SET createdAt = 'Invalid date' WHERE did = '{}';\
             UPDATE users SET lastLoginAt = '' WHERE did = '{}';\
             UPDATE users SET firstLoginAt = 'next tuesday' WHERE did = '{}';\
             UPDATE users SET updatedAt = -9e999 WHERE did = '{}';\
             UPDATE passports SET issuanceDate = '2026-02-30 10:00:00.000 +00:00' WHERE id = '{}';\
             UPDATE passports SET expirationDate = '25/11/2026' WHERE id = '{}';\
             INSERT INTO notifications (id, sender, title, severity, \"read\", type, feedType) \
             VALUES ('n-gallery', 'zSender', 'a feed item', 'info', 0, 'feed', 'gallery');",
            u[0], u[1], u[2], u[3], pass[0], pass[1]
        ),
    );
    sqlite_exec(&server, &format!("UPDATE notifications SET severity = 'critical' WHERE id = '{note}';"));
    // A valid value in another row of the same table is not reported.
    sqlite_exec(&server, &format!("UPDATE users SET lastLoginAt = '2026-11-25T18:55:01.750Z' WHERE did = '{owner}';"));
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_rejected(
        &run,
        &[
            rej(&db0, "users", &format!("did={}", u[0]), "createdAt", "timestamp"),
            rej(&db0, "users", &format!("did={}", u[1]), "lastLoginAt", "timestamp"),
            rej(&db0, "users", &format!("did={}", u[2]), "firstLoginAt", "timestamp"),
            rej(&db0, "users", &format!("did={}", u[3]), "updatedAt", "is not a timestamp"),
            rej(&db0, "passports", &format!("id={}", pass[0]), "issuanceDate", "no such date"),
            rej(&db0, "passports", &format!("id={}", pass[1]), "expirationDate", "timestamp"),
            rej(&db0, "notifications", "id=n-gallery", "feedType", "is not a value of enum_notifications_feedType"),
            rej(
                SERVER,
                "notifications",
                &format!("id={note}"),
                "severity",
                "is not a value of enum_notifications_severity",
            ),
        ],
    );
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

#[test]
fn text_values_are_each_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let (server, app1) = (server_file(&data_dir), app_file(&data_dir, APP_DIDS[1]));
    let db1 = app_db(APP_DIDS[1]);
    let pass = sqlite_keys(&app1, "passports", "id");
    let u = sqlite_keys(&app1, "users", "did");
    let sites = sqlite_keys(&server, "sites", "id");
    assert_eq!(sites.len(), 2, "fixture sites");
    sqlite_exec(
        &app1,
        &format!(
            "UPDATE passports SET name = '{}' WHERE id = '{}';\
             UPDATE passports SET title = 'a' || char(0) || 'b' WHERE id = '{}';\
             UPDATE passports SET endpoint = CAST(x'ff41' AS TEXT) WHERE id = '{}';\
             UPDATE passports SET lastLoginIp = x'414243' WHERE id = '{}';\
             UPDATE users SET email = CAST(x'c328' AS TEXT) WHERE did = '{}';",
            "x".repeat(40),
            pass[0],
            pass[1],
            pass[2],
            pass[3],
            u[0]
        ),
    );
    // varchar(32) counts characters: 32 three-byte characters fit, 33 do not.
    sqlite_exec(
        &server,
        &format!(
            "UPDATE sites SET name = '{}' WHERE id = '{}'; UPDATE sites SET name = '{}' WHERE id = '{}';",
            "中".repeat(32),
            sites[0],
            "中".repeat(33),
            sites[1]
        ),
    );
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_rejected(
        &run,
        &[
            rej(&db1, "passports", &format!("id={}", pass[0]), "name", "longer than varchar(32)"),
            rej(&db1, "passports", &format!("id={}", pass[1]), "title", "NUL"),
            rej(&db1, "passports", &format!("id={}", pass[2]), "endpoint", "UTF-8"),
            rej(&db1, "passports", &format!("id={}", pass[3]), "lastLoginIp", "BLOB value"),
            rej(&db1, "users", &format!("did={}", u[0]), "email", "UTF-8"),
            rej(SERVER, "sites", &format!("id={}", sites[1]), "name", "longer than varchar(32)"),
        ],
    );
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

#[test]
fn orphan_rows_violating_foreign_keys_are_each_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let (server, app0, app1) =
        (server_file(&data_dir), app_file(&data_dir, APP_DIDS[0]), app_file(&data_dir, APP_DIDS[1]));
    sqlite_exec(
        &server,
        "INSERT INTO passports (id, userDid, type, issuer, name, title) \
         VALUES ('orphan-passport', 'zNoSuchUser', '[]', '{}', 'n', 't');",
    );
    sqlite_exec(
        &app0,
        "INSERT INTO connected_accounts (did, userDid, provider) VALUES ('zOrphanAccount', 'zNobody', 'wallet');",
    );
    let user = sqlite_keys(&app1, "users", "did").remove(0);
    sqlite_exec(
        &app1,
        &format!(
            "INSERT INTO user_followers (userDid, followerDid, createdAt) \
             VALUES ('{user}', 'zGhostFollower', '2026-11-25 19:00:00.000 +00:00');"
        ),
    );
    let before = hash_tree(&data_dir);
    // --skip-rejects skips values that cannot be converted, never rows that break a key.
    let run = migrate(Some(&pg.url()), &data_dir, &["--skip-rejects"]);
    assert_rejected(
        &run,
        &[
            rej(
                SERVER,
                "passports",
                "id=orphan-passport",
                "userDid",
                "does not exist (foreign key passports_userDid_fkey",
            ),
            rej(
                &app_db(APP_DIDS[0]),
                "connected_accounts",
                "did=zOrphanAccount",
                "userDid",
                "does not exist (foreign key connected_accounts_userDid_fkey",
            ),
            rej(
                &app_db(APP_DIDS[1]),
                "user_followers",
                &format!("userDid={user}, followerDid=zGhostFollower"),
                "followerDid",
                "does not exist (foreign key user_followers_followerDid_fkey",
            ),
        ],
    );
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

#[test]
fn duplicates_of_a_key_only_postgres_enforces_are_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    // traffic_insights.id is UUID: two spellings are two keys to SQLite, one uuid to PostgreSQL.
    sqlite_exec(
        &server,
        "INSERT INTO traffic_insights (id, did, date) VALUES \
         ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'zSiteA', '2026-11-01'), \
         ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'zSiteB', '2026-11-02');",
    );
    assert_eq!(sqlite_exec(&server, "SELECT count(*) FROM traffic_insights"), "2", "SQLite accepted both");
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    let key = "id=a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let reason = "duplicate value of unique key traffic_insights_pkey";
    assert_rejected(
        &run,
        &[rej(SERVER, "traffic_insights", key, "id", reason), rej(SERVER, "traffic_insights", key, "id", reason)],
    );
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

/// Values that look odd but have one faithful PostgreSQL form: they migrate, exactly.
#[test]
fn faithful_unusual_values_migrate() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    // NaN: SQLite has no NaN; a NaN result is stored as NULL, so no data dir can hold one.
    assert_eq!(sqlite_exec(&server, "SELECT typeof(9e999 - 9e999)"), "null");
    sqlite_exec(
        &server,
        "UPDATE users SET extra = '{\"a\":1,\"b\":{\"c\":1,\"c\":[2]},\"a\":2}';\
         UPDATE servers SET registerInfo = '{\"k\":1,\"k\":2}';\
         INSERT INTO backups (id, progress, createdAt, updatedAt) VALUES \
           ('b-ms', 9e999, 1764095902123, '2025-11-25 18:38:22.123 +00:00'),\
           ('b-s', -9e999, 1764095902, '2025-11-25T20:38:22+02:00'),\
           ('b-frac', 0.5, 1764095902.5, '2025-11-25 18:38:22.5');",
    );
    assert_eq!(
        sqlite_exec(
            &server,
            "SELECT group_concat(t) FROM (SELECT typeof(progress) || ':' || typeof(createdAt) AS t FROM backups ORDER BY id)"
        ),
        "real:real,real:integer,real:integer"
    );
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_success(&run.out);
    assert_eq!(run.report()["outcome"], "success");

    // Duplicate JSON keys: jsonb keeps the last (as JSON.parse does when the server reads SQLite);
    // json keeps the text as it is.
    assert_eq!(pg.psql(SERVER, "SELECT extra = '{\"a\": 2, \"b\": {\"c\": [2]}}'::jsonb FROM users"), "t");
    assert_eq!(pg.psql(SERVER, "SELECT \"registerInfo\"::text FROM servers"), "{\"k\":1,\"k\":2}");
    assert_eq!(pg.psql(SERVER, "SELECT \"registerInfo\"->>'k' FROM servers"), "2");
    // Epoch numbers in DATETIME columns: milliseconds from 1e11 up, seconds below; each the same
    // instant as the text beside it.
    let rows = pg.psql(
        SERVER,
        "SELECT id, progress::text, (extract(epoch FROM \"createdAt\") * 1000)::bigint, \
         \"createdAt\" = \"updatedAt\" FROM backups ORDER BY id",
    );
    assert_eq!(
        rows, "b-frac|0.5|1764095902500|t\nb-ms|Infinity|1764095902123|t\nb-s|-Infinity|1764095902000|t",
        "{:?}",
        run.out
    );
    // Every other table, compared independently (the harness reads epoch numbers as milliseconds
    // only, so backups was checked above instead).
    let mut problems = Vec::new();
    for (file, db) in migration_targets(&data_dir) {
        let snap = SqliteSnapshot::new(&file);
        for table in facts_tables(kind_for_pg_db(&db)) {
            if db == SERVER && table == "backups" {
                continue;
            }
            if let Err(e) = compare_table_in(&snap, &pg, &db, &table) {
                problems.push(e);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn ten_megabyte_json_value_migrates() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    sqlite_exec(
        &server,
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) \
         UPDATE users SET extra = (SELECT json_object('items', json_group_array(json_object('i', x, 's', \
         hex(randomblob(36)), 'u', 'ü✓' || x)), 'n', 1) FROM c);",
    );
    let len: usize = sqlite_exec(&server, "SELECT length(CAST(extra AS BLOB)) FROM users").parse().unwrap();
    assert!(len >= 10_000_000, "the JSON value is only {len} bytes");
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_success(&run.out);
    assert_eq!(pg.psql(SERVER, "SELECT jsonb_array_length(extra->'items') FROM users"), "100000");
    compare_table(&server, &pg, SERVER, "users");
}

// ------------------------------------------------------------------------------------------------
// Target state
// ------------------------------------------------------------------------------------------------

#[test]
fn non_empty_target_without_force_is_a_usage_error() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    assert_success(&migrate(Some(&pg.url()), &data_dir, &[]).out);
    let dbs = pg.databases();
    let dumps: Vec<_> = dbs.iter().map(|db| pg.table_dump(db)).collect();
    let before = hash_tree(&data_dir);

    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert!(run.out.has_error_line("--force"), "the refusal should mention --force: {:?}", run.out);
    assert_eq!(run.out.code, 2, "a non-empty target is a usage error (exit 2): {:?}", run.out);
    assert_eq!(run.report()["outcome"], "usage-error");
    assert_eq!(pg.databases(), dbs);
    for (db, dump) in dbs.iter().zip(&dumps) {
        assert_eq!(&pg.table_dump(db), dump, "{db} changed by a refused run");
    }
    assert_same_source(&before, &data_dir, "source after a refused run");
}

/// A target holding another version's Blocklet tables, without rows, and a table of the user's own.
/// The user's table is not the job's: the run is refused as a usage error naming it, `--force` or
/// not, and changes nothing. Once it is moved away, the empty Blocklet tables are either replaced by
/// the 1.17.12 schema, or the run is refused naming `--force`, and with `--force` they are replaced.
#[test]
fn target_schema_from_another_version() {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE server_db");
    pg.psql(
        SERVER,
        "CREATE TABLE users (did text PRIMARY KEY, legacy_col integer); \
         CREATE TABLE tags (id serial PRIMARY KEY, name text); \
         CREATE TABLE my_own (x integer); INSERT INTO my_own VALUES (1), (2);",
    );
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    for flags in [&[][..], &["--force"]] {
        let run = migrate(Some(&pg.url()), &data_dir, flags);
        assert_eq!(run.out.code, 2, "{flags:?}: a target holding the user's own table is refused: {:?}", run.out);
        assert!(
            run.out.has_error_line(
                "server_db already exists and holds public.my_own, which this migration does not write"
            ),
            "{flags:?}: the refusal should name the table: {:?}",
            run.out
        );
        assert_eq!(pg.databases(), vec![SERVER.to_string()], "{:?}", run.out);
        assert_eq!(pg.tables(SERVER), ["my_own", "tags", "users"], "the refused run changed server_db");
        assert_eq!(pg.psql(SERVER, "SELECT string_agg(x::text, ',' ORDER BY x) FROM my_own"), "1,2");
        assert_no_lock_file(&data_dir);
    }
    pg.psql(SERVER, "DROP TABLE my_own");
    let mut run = migrate(Some(&pg.url()), &data_dir, &[]);
    if run.out.code != 0 {
        assert_eq!(run.out.code, 2, "refusing another version's tables is a usage error: {:?}", run.out);
        assert!(run.out.has_error_line("--force"), "the refusal should name --force: {:?}", run.out);
        assert_eq!(pg.tables(SERVER), ["tags", "users"], "the refused run changed server_db");
        assert_no_lock_file(&data_dir);
        run = migrate(Some(&pg.url()), &data_dir, &["--force"]);
    }
    assert_success(&run.out);
    // Everything is exactly the 1.17.12 schema.
    let reference = fs::read_to_string(reference_schema_file(SERVER)).unwrap();
    assert_same_schema(&pg.pg_dump_schema(SERVER), &reference, SERVER);
    compare_all(&data_dir, &pg);
}

// ------------------------------------------------------------------------------------------------
// Dry run, skipping rejects, the report, passwords
// ------------------------------------------------------------------------------------------------

#[test]
fn dry_run_writes_nothing() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());

    // 1. Nothing exists yet: a dry run creates no database and no file.
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &["--dry-run"]);
    assert_eq!(run.out.code, 0, "{:?}", run.out);
    assert!(!run.out.stdout.contains("Migration postgres completed"), "{:?}", run.out);
    assert_eq!(pg.databases(), Vec::<String>::new(), "a dry run created databases: {:?}", run.out);
    assert_same_source(&before, &data_dir, "source after a dry run");
    let report = run.report();
    assert_eq!(report["outcome"], "dry-run", "{report:#}");
    assert_eq!(report["dry_run"], true);
    assert!(report["lock_file"].is_null(), "{report:#}");
    assert_eq!(report["databases"].as_array().map(Vec::len), Some(5), "the plan is reported: {report:#}");

    // 2. Over a migrated target, with --force and bad values: still nothing written anywhere.
    assert_success(&migrate(Some(&pg.url()), &data_dir, &[]).out);
    let app0 = app_file(&data_dir, APP_DIDS[0]);
    sqlite_exec(&app0, "INSERT INTO tags (title, color) VALUES ('new-tag', '#fff');");
    sqlite_exec(
        &server_file(&data_dir),
        "INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env) \
         VALUES ('bad-env', 's', 'a', 'c', 'x', '{}', '{}', '{oops');",
    );
    let before = hash_tree(&data_dir);
    let dbs = pg.databases();
    let counts = pg.all_table_counts();
    let server_dump = pg.table_dump(SERVER);
    let run = migrate(Some(&pg.url()), &data_dir, &["--dry-run", "--force"]);
    assert_eq!(run.out.code, 3, "a dry run that predicts rejects exits 3: {:?}", run.out);
    assert!(run.out.has_error_line("server_db.audit_logs [id=bad-env] column env: invalid JSON"), "{:?}", run.out);
    assert_eq!(run.report()["outcome"], "dry-run-with-rejected-rows");
    assert_eq!(pg.databases(), dbs);
    assert_eq!(pg.all_table_counts(), counts, "a dry run changed row counts");
    assert_eq!(pg.table_dump(SERVER), server_dump, "a dry run changed server_db");
    assert_same_source(&before, &data_dir, "source after a dry run");
}

#[test]
fn skip_rejects_commits_the_rest_and_says_so() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    sqlite_exec(
        &server,
        "INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env) VALUES \
         ('bad-actor', 's', 'a', 'c', 'x', '{oops', '{}', '{}'), ('good-2', 's', 'a', 'c', 'y', '{}', '{}', '{}');",
    );
    let run = migrate(Some(&pg.url()), &data_dir, &["--skip-rejects"]);
    let out = &run.out;
    assert_eq!(out.code, 5, "committed with skipped rows exits 5: {out:?}");
    assert!(out.stdout.contains("✔ Migration postgres completed"), "{out:?}");
    assert!(out.stderr.contains("1 row(s) were NOT migrated"), "the skip must be loud: {out:?}");
    assert!(out.has_error_line("server_db.audit_logs [id=bad-actor] column actor: invalid JSON"), "{out:?}");
    assert_lock_file(&data_dir, std::time::UNIX_EPOCH, std::time::SystemTime::now());

    // The row is missing, all others are there.
    let rejects = run.rejects();
    assert_eq!(rejects.len(), 1, "{}", run.rejects_text());
    assert_eq!(
        (rejects[0]["table"].as_str(), rejects[0]["primary_key"].as_str()),
        (Some("audit_logs"), Some("id=bad-actor"))
    );
    assert_eq!(pg.psql_i64(SERVER, "SELECT count(*) FROM audit_logs WHERE id = 'bad-actor'"), 0);
    let mut problems = Vec::new();
    for (file, db) in migration_targets(&data_dir) {
        let snap = SqliteSnapshot::new(&file);
        if db == SERVER {
            snap.cli("DELETE FROM audit_logs WHERE id = 'bad-actor';");
        }
        for table in facts_tables(kind_for_pg_db(&db)) {
            if let Err(e) = compare_table_in(&snap, &pg, &db, &table) {
                problems.push(e);
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let report = run.report();
    assert_eq!(report["outcome"], "success-with-skipped-rows", "{report:#}");
    assert_eq!(report["exit_code"], 5);
    assert_eq!(report["skip_rejects"], true);
    assert_eq!(report["rejected_rows"], 1);
    let audit: Vec<&Value> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["postgres_database"] == SERVER)
        .flat_map(|d| d["tables"].as_array().unwrap())
        .filter(|t| t["table"] == "audit_logs")
        .collect();
    assert_eq!(audit.len(), 1, "{report:#}");
    let rows = |f: &str| audit[0][f].as_u64();
    assert_eq!(
        (rows("source_rows"), rows("target_rows"), rows("rejected_rows")),
        (Some(3), Some(2), Some(1)),
        "{report:#}"
    );
}

const KINDS_IN_REPORT: [&str; 4] = ["server", "service", "blocklet", "certificate-manager"];

/// The fields every report has, whatever the outcome.
#[track_caller]
fn assert_report_shape(run: &Run, outcome: &str) -> Value {
    let r = run.report();
    let ctx = format!("{r:#}\n{:?}", run.out);
    assert_eq!(r["report_version"], 1, "{ctx}");
    assert_eq!(r["tool"]["name"], "blocklet-migrate", "{ctx}");
    assert!(r["tool"]["version"].as_str().is_some_and(|v| !v.is_empty()), "{ctx}");
    assert_eq!(r["direction"], "sqlite-to-postgres", "{ctx}");
    assert_eq!(r["dry_run"], false, "{ctx}");
    assert_eq!(r["skip_rejects"], false, "{ctx}");
    for f in ["started_at", "finished_at"] {
        let t = r[f].as_str().unwrap_or_else(|| panic!("{f} missing: {ctx}"));
        assert!(parse_timestamp_micros(t).is_some(), "{f} {t:?} is not a timestamp: {ctx}");
    }
    assert!(r["duration_ms"].is_u64(), "{ctx}");
    assert_eq!(r["outcome"], outcome, "{ctx}");
    assert_eq!(r["exit_code"], run.out.code, "{ctx}");
    assert!(r["databases"].is_array(), "{ctx}");
    assert!(r["rejected_rows"].is_u64(), "{ctx}");
    for f in ["error", "rejects_file", "lock_file", "postgres", "data_dir"] {
        assert!(r[f].is_null() || r[f].is_string(), "{f}: {ctx}");
    }
    assert_eq!(r["error"].is_null(), outcome == "success", "error is set exactly when the run failed: {ctx}");
    r
}

#[track_caller]
fn assert_component(r: &Value) {
    let c = &r["component"];
    for f in ["name", "version", "wit_version", "source"] {
        assert!(c[f].as_str().is_some_and(|s| !s.is_empty()), "component.{f}: {r:#}");
    }
    let sha = c["sha256"].as_str().unwrap_or("");
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "component.sha256: {r:#}");
}

#[test]
fn report_is_valid_json_in_every_outcome() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let dd = data_dir.to_str().unwrap();

    // Usage error: no URL.
    let run = migrate(None, &data_dir, &[]);
    let r = assert_report_shape(&run, "usage-error");
    assert_eq!(r["exit_code"], 2);
    assert_eq!(r["data_dir"], dd);
    assert!(r["error"].as_str().unwrap().contains("ABT_NODE_POSTGRES_URL"), "{r:#}");

    // Usage error: unreachable server.
    let run = migrate(Some("postgres://postgres:pw@127.0.0.1:1/postgres"), &data_dir, &[]);
    let r = assert_report_shape(&run, "usage-error");
    assert_eq!(r["postgres"], "postgres://postgres:***@127.0.0.1:1/postgres");
    assert!(r["error"].as_str().unwrap().contains("127.0.0.1:1"), "{r:#}");

    // Rejection.
    let app0 = app_file(&data_dir, APP_DIDS[0]);
    let did = sqlite_keys(&app0, "users", "did").remove(0);
    let original = sqlite_exec(&app0, &format!("SELECT extra FROM users WHERE did = '{did}'"));
    sqlite_exec(&app0, &format!("UPDATE users SET extra = '{{bad' WHERE did = '{did}'"));
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    let r = assert_report_shape(&run, "rejected");
    assert_component(&r);
    assert_eq!((r["exit_code"].as_u64(), r["rejected_rows"].as_u64()), (Some(3), Some(1)), "{r:#}");
    assert_eq!(r["rejects_file"], run.rejects_path.to_str().unwrap());
    assert!(r["lock_file"].is_null(), "{r:#}");

    // Success.
    sqlite_exec(&app0, &format!("UPDATE users SET extra = '{}' WHERE did = '{did}'", original.replace('\'', "''")));
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_success(&run.out);
    let r = assert_report_shape(&run, "success");
    assert_component(&r);
    assert_eq!(r["postgres"], pg.url());
    assert_eq!(r["rejected_rows"], 0);
    assert_eq!(r["lock_file"], data_dir.join(LOCK_REL).to_str().unwrap());
    let dbs = r["databases"].as_array().unwrap();
    let mut names: Vec<&str> = dbs.iter().map(|d| d["postgres_database"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, expected_databases(), "{r:#}");
    for d in dbs {
        let db = d["postgres_database"].as_str().unwrap();
        let counts = pg.table_counts(db);
        let mut tables: Vec<&str> =
            d["tables"].as_array().unwrap().iter().map(|t| t["table"].as_str().unwrap()).collect();
        tables.sort();
        assert_eq!(tables, facts_tables(kind_for_pg_db(db)), "{db}: {r:#}");
        for t in d["tables"].as_array().unwrap() {
            let name = t["table"].as_str().unwrap();
            assert_eq!(t["source_rows"], t["target_rows"], "{db}.{name}: {r:#}");
            assert_eq!(t["target_rows"], counts[name], "{db}.{name}: report vs PostgreSQL");
            assert_eq!(t["rejected_rows"], 0, "{db}.{name}");
            let sum = t["checksum"].as_str().unwrap_or("");
            assert!(sum.len() == 16 && sum.bytes().all(|b| b.is_ascii_hexdigit()), "{db}.{name} checksum: {r:#}");
        }
        let file = d["sqlite_file"].as_str().unwrap();
        assert!(data_dir.join(file).is_file(), "sqlite_file {file} is not a file of the data dir");
        assert_eq!(d["app_pid"].is_string(), db.starts_with("blocklet_db_"), "{db}: {r:#}");
        assert!(
            KINDS_IN_REPORT.contains(&d["kind"].as_str().unwrap_or("")),
            "{db}: kind {} is not one of {KINDS_IN_REPORT:?}",
            d["kind"]
        );
    }
}

/// Asserts `secret` appears in none of the run's output, report or rejects file.
#[track_caller]
fn assert_no_secret(run: &Run, secret: &str) {
    for (what, text) in [
        ("stdout", run.out.stdout.as_str()),
        ("stderr", run.out.stderr.as_str()),
        ("report", run.report_text().as_str()),
        ("rejects file", run.rejects_text().as_str()),
    ] {
        assert!(!text.contains(secret), "password in {what}:\n{text}");
    }
}

#[test]
fn password_never_appears_in_output_report_or_rejects() {
    const SECRET: &str = "S3cretPw!";
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    sqlite_exec(
        &server_file(&data_dir),
        "INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env) \
         VALUES ('bad-actor', 's', 'a', 'c', 'x', '{oops', '{}', '{}');",
    );
    // Trust authentication ignores the password, so this run gets through every stage.
    let url = format!("postgres://postgres:{SECRET}@127.0.0.1:{}/postgres", pg.port());
    let run = migrate(Some(&url), &data_dir, &["--skip-rejects"]);
    assert_eq!(run.out.code, 5, "{:?}", run.out);
    assert!(!run.rejects_text().is_empty(), "the rejects file should have been written");
    assert_no_secret(&run, SECRET);
    assert_eq!(run.report()["postgres"], format!("postgres://postgres:***@127.0.0.1:{}/postgres", pg.port()));

    // Failures print the URL's parts too.
    for url in [
        format!("postgres://postgres:{SECRET}@127.0.0.1:1/postgres"),
        format!("postgres://postgres:{SECRET}@127.0.0.1:{}/no_such_db", pg.port()),
        format!("postgres://postgres:{SECRET}@127.0.0.1:{}/postgres?sslmode=require", pg.port()),
        format!("postgres://postgres:{SECRET}@127.0.0.1:{}/postgres", pg.port()),
    ] {
        let run = migrate(Some(&url), &data_dir, &[]);
        assert_ne!(run.out.code, 0, "{url}: {:?}", run.out);
        assert_no_secret(&run, SECRET);
    }
}

#[test]
fn password_in_url_query_never_appears() {
    const SECRET: &str = "S3cretPw!";
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    // libpq-style `?password=` is accepted by the driver, so it must be hidden like the userinfo one.
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres?password={SECRET}", pg.port());
    let run = migrate(Some(&url), &data_dir, &[]);
    assert_success(&run.out);
    assert_no_secret(&run, SECRET);
}

#[test]
fn timestamp_outside_postgres_range_is_rejected() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    let owner = sqlite_value(&server, "SELECT did FROM users");
    // Epoch milliseconds for about 283,000 BC: an instant, but not one PostgreSQL can hold (4713 BC on).
    sqlite_exec(&server, "UPDATE users SET createdAt = -9000000000000000;");
    let before = hash_tree(&data_dir);
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_rejected(&run, &[rej(SERVER, "users", &format!("did={owner}"), "createdAt", "range")]);
    assert_nothing_committed(&pg, &data_dir, &before, &run.out);
}

/// JSON numbers as JavaScript writes them: a bare number in a JSON column (SQLite's NUMERIC
/// affinity stores it as REAL), and large exponents (jsonb prints them without the exponent).
#[test]
fn json_numbers_in_every_spelling_migrate() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server = server_file(&data_dir);
    sqlite_exec(
        &server,
        "UPDATE users SET extra = 2019.1632305048386;\
         UPDATE audit_logs SET extra = '{\"big\":1.5874478498895484e140,\"max\":1.7976931348623157e308,\"tiny\":5e-324}';",
    );
    assert_eq!(sqlite_exec(&server, "SELECT typeof(extra) FROM users"), "real");
    let run = migrate(Some(&pg.url()), &data_dir, &[]);
    assert_success(&run.out);
    assert_eq!(pg.psql(SERVER, "SELECT extra::text FROM users"), "2019.1632305048386");
    compare_table(&server, &pg, SERVER, "audit_logs");
}
