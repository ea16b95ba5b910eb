//! Faults during `blocklet-migrate --dialect postgres`: the tool killed with SIGKILL at many
//! moments of a run, its COPY connection terminated by the server, and a source file held open
//! by another process (a running server).
//!
//! After every fault: no product database holds a row (databases a killed run created may be
//! left, empty), no lock file claims a migration, the source is unchanged, and a re-run
//! completes and verifies. The reverse direction's kill -9 is in `postgres_to_sqlite.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use blocklet_migrate_test_support::*;
use tempfile::TempDir;

/// Generated `audit_logs` rows: enough for the copy itself to take a while.
const GENERATED_ROWS: i64 = 150_000;

/// Kill moments spread over one run.
const KILLS: u32 = 20;

/// A fixture copy whose `server.db` has [`GENERATED_ROWS`] more `audit_logs` rows, with JSON columns.
fn big_fixture() -> (TempDir, PathBuf) {
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    sqlite_exec(
        &data_dir.join("core").join("server.db"),
        &format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {GENERATED_ROWS}) \
             INSERT INTO audit_logs (id, scope, action, category, content, actor, extra, env, ip, ua, createdAt, updatedAt) \
             SELECT 'gen-' || x, 'scope-' || (x % 7), 'act', 'cat', 'generated row ' || x, \
             json_object('did', 'z' || hex(randomblob(16)), 'role', 'owner', 'n', x), \
             json_object('k', x, 'arr', json_array(x, x * 2, 'é')), '{{\"browser\":{{}},\"os\":{{}}}}', '127.0.0.1', 'node', \
             strftime('%Y-%m-%d %H:%M:%f +00:00', 1764095902 + x, 'unixepoch'), \
             strftime('%Y-%m-%d %H:%M:%f +00:00', 1764095902 + x, 'unixepoch') FROM c;"
        ),
    );
    (tmp, data_dir)
}

fn migrate_args(data_dir: &Path) -> Vec<String> {
    ["--dialect", "postgres", "--data-dir", data_dir.to_str().expect("utf-8 path")].map(String::from).to_vec()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Waits until no client backend but the caller's is left: after a SIGKILL, the server finishes
/// (or aborts) what the dead client's connections were doing only when it notices they are gone.
fn wait_for_backends_to_go(pg: &PgCluster) {
    let start = Instant::now();
    loop {
        let n = pg.psql_i64(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        if n == 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{n} backends of a killed run still there after 60 s");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Drops every product database (even with connections left over) and the lock file.
fn reset(pg: &PgCluster, data_dir: &Path) {
    for db in pg.databases() {
        pg.psql("postgres", &format!("DROP DATABASE {} WITH (FORCE)", quote_ident(&db)));
    }
    let _ = fs::remove_file(data_dir.join(LOCK_REL));
}

#[test]
fn kill_9_at_many_moments_leaves_nothing_and_a_rerun_completes() {
    let pg = PgCluster::start();
    let (_tmp, data_dir) = big_fixture();
    let before = hash_tree(&data_dir);
    let args = migrate_args(&data_dir);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str())];
    let cwd = data_dir.parent().expect("parent").to_path_buf();

    // One undisturbed run: how long a run takes, and what a complete target holds.
    let t0 = Instant::now();
    let out = run_migrate(&refs(&args), &cwd, &env);
    let full = t0.elapsed();
    assert_success(&out);
    let complete = pg.all_table_counts();
    assert_eq!(complete.get(&("server_db".to_string(), "audit_logs".to_string())), Some(&(GENERATED_ROWS + 1)));
    assert!(full > Duration::from_secs(2), "a run took only {full:?}: too short to kill at {KILLS} moments");
    reset(&pg, &data_dir);
    assert_same_source(&before, &data_dir, "source after the undisturbed run");

    // Kill moments are fractions of `span`, the shortest run seen: a run that ends before its
    // moment (later runs skip CREATE DATABASE) shortens `span`, and its moment is tried again.
    let mut span = full;
    let (mut killed, mut attempts) = (0, 0);
    while killed < KILLS {
        attempts += 1;
        assert!(attempts <= KILLS + 10, "{attempts} runs for {killed} kills: the runs keep finishing first");
        let at = span.mul_f64((f64::from(killed) + 0.5) / f64::from(KILLS));
        let started = Instant::now();
        let (out, was_killed) = run_migrate_killed_after(&refs(&args), &cwd, &env, at);
        let took = started.elapsed();
        wait_for_backends_to_go(&pg);
        let counts = pg.all_table_counts();
        let with_rows = counts.values().any(|n| *n > 0);
        let ctx = format!("kill {killed} at {at:?} (killed: {was_killed}, after {took:?}): {out:?}");
        if with_rows {
            // Each database commits in one transaction: it is complete or empty. (The databases
            // of a job commit together but separately; a kill in that instant may leave some
            // complete and others empty — never a partial database.)
            let dbs: std::collections::BTreeSet<&String> = complete.keys().map(|(db, _)| db).collect();
            for db in dbs {
                let of = |m: &std::collections::BTreeMap<(String, String), i64>| -> Vec<i64> {
                    m.iter().filter(|((d, _), _)| d == db).map(|(_, n)| *n).collect()
                };
                let (now, full) = (of(&counts), of(&complete));
                assert!(
                    now == full || now.iter().all(|n| *n == 0),
                    "a partial migration of {db} was left behind: {now:?} vs {full:?}; {ctx}"
                );
            }
        } else {
            assert_no_lock_file(&data_dir);
        }
        if was_killed {
            killed += 1;
        } else {
            assert_eq!(out.code, 0, "a run that was not killed must succeed; {ctx}");
            span = span.min(took.mul_f64(0.95));
        }
        let _ = fs::remove_file(data_dir.join(LOCK_REL));
        assert_same_source(&before, &data_dir, &format!("source after {ctx}"));
        if with_rows {
            reset(&pg, &data_dir);
        }
    }

    // Databases the killed runs created may still be there, empty: a plain re-run completes.
    let out = run_migrate(&refs(&args), &cwd, &env);
    assert_success(&out);
    assert_eq!(pg.databases(), expected_databases(), "{out:?}");
    assert_eq!(pg.all_table_counts(), complete);
    compare_all(&data_dir, &pg);
    assert!(data_dir.join(LOCK_REL).is_file(), "no lock file after the re-run: {out:?}");
    let _ = fs::remove_file(data_dir.join(LOCK_REL));
    assert_same_source(&before, &data_dir, "source after the re-run");
}

/// Runs the CLI and sends SIGKILL `delay` after the first stdout line containing `needle`.
/// Returns the output and whether the process was killed (rather than exiting first).
fn run_killed_after_line(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
    needle: &str,
    delay: Duration,
) -> (Output, bool) {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin_path())
        .args(args)
        .current_dir(cwd)
        .env_remove("ABT_NODE_POSTGRES_URL")
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn blocklet-migrate");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let err_t = thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = String::new();
    let mut killed = false;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.unwrap_or_default();
        stdout.push_str(&line);
        stdout.push('\n');
        if line.contains(needle) {
            let t = Instant::now();
            while t.elapsed() < delay {
                std::hint::spin_loop();
            }
            killed = child.kill().is_ok();
            break;
        }
    }
    for line in lines {
        stdout.push_str(&line.unwrap_or_default());
        stdout.push('\n');
    }
    let status = child.wait().expect("wait");
    let killed = killed && status.signal() == Some(9);
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let stderr = err_t.join().unwrap_or_default();
    (Output { code, stdout: strip_ansi(&stdout), stderr: strip_ansi(&stderr) }, killed)
}

/// The moment the targets commit is the narrowest and the most dangerous: kill just after the last
/// database was migrated, at a few delays, so that some kills land between two databases' COMMITs.
/// Every database is either complete or empty, and the lock file only follows a complete set.
#[test]
fn kill_9_while_committing_leaves_all_or_nothing() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let before = hash_tree(&data_dir);
    let args = migrate_args(&data_dir);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str())];
    let cwd = data_dir.parent().expect("parent").to_path_buf();
    // The plan's last database; its line is printed just before all targets commit.
    let last = "certificate-manager schema successfully migrated";

    let mut outcomes = Vec::new();
    for micros in [0u64, 250, 500, 750, 1000, 1500, 2000, 3000, 5000] {
        let (out, killed) = run_killed_after_line(&refs(&args), &cwd, &env, last, Duration::from_micros(micros));
        wait_for_backends_to_go(&pg);
        let committed: Vec<String> =
            pg.databases().into_iter().filter(|db| pg.table_counts(db).values().any(|n| *n > 0)).collect();
        let lock = data_dir.join(LOCK_REL).exists();
        outcomes.push(format!(
            "kill {micros} µs after the last database (killed: {killed}): committed {committed:?}, lock file: {lock}"
        ));
        if !killed {
            assert_success(&out);
        }
        // Each database commits in one transaction: it is either empty or complete. Databases are
        // separate transactions, so a kill between their COMMITs may leave some committed and
        // others empty (no lock file then; a re-run with --force completes the job).
        for db in &committed {
            let (file, _) = migration_targets(&data_dir)
                .into_iter()
                .find(|(_, name)| name == db)
                .unwrap_or_else(|| panic!("{db} is not a database of this data dir"));
            let snapshot = SqliteSnapshot::new(&file);
            for (table, rows) in pg.table_counts(db) {
                if table == "SequelizeMeta" || !snapshot.has_table(&table) {
                    continue;
                }
                assert_eq!(
                    rows,
                    snapshot.count(&table),
                    "{db}.{table} holds part of its rows after a kill during the commit:\n{}\n{out:?}",
                    outcomes.join("\n")
                );
            }
        }
        assert!(
            !lock || committed == expected_databases(),
            "a lock file although not every database committed:\n{}\n{out:?}",
            outcomes.join("\n")
        );
        assert!(!lock || !committed.is_empty(), "a lock file without a committed migration: {out:?}");
        reset(&pg, &data_dir);
        assert_same_source(&before, &data_dir, &format!("source after {}", outcomes.last().unwrap()));
    }
    eprintln!("{}", outcomes.join("\n"));
}

#[test]
fn backend_terminated_mid_copy_commits_nothing_and_a_rerun_completes() {
    let pg = PgCluster::start();
    let (_tmp, data_dir) = big_fixture();
    let before = hash_tree(&data_dir);
    let args = migrate_args(&data_dir);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str())];
    let cwd = data_dir.parent().expect("parent").to_path_buf();
    let report = tempfile::Builder::new().prefix("bm-report-").tempdir().expect("temp dir");
    let report_path = report.path().join("report.json");

    let done = AtomicBool::new(false);
    let (out, terminated) = thread::scope(|s| {
        let watcher = s.spawn(|| {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(300) {
                let pid = pg.psql(
                    "postgres",
                    "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'COPY %audit_logs%' LIMIT 1",
                );
                if !pid.is_empty() {
                    pg.psql("postgres", &format!("SELECT pg_terminate_backend({pid})"));
                    return Some(pid);
                }
                thread::sleep(Duration::from_millis(5));
            }
            None
        });
        let mut all = refs(&args);
        all.extend(["--report", report_path.to_str().unwrap()]);
        let out = run_migrate(&all, &cwd, &env);
        done.store(true, Ordering::Relaxed);
        (out, watcher.join().expect("watcher thread"))
    });
    assert!(terminated.is_some(), "never saw the COPY into server_db.audit_logs to terminate it: {out:?}");
    assert_failure(&out);
    pg.assert_all_tables_empty("after the COPY backend was terminated");
    assert_eq!(pg.databases(), Vec::<String>::new(), "databases the failed run created are left: {out:?}");
    assert_no_lock_file(&data_dir);
    assert_same_source(&before, &data_dir, "source after the terminated run");
    let text = fs::read_to_string(&report_path).expect("report written");
    let r: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    assert_eq!(r["outcome"], "failed", "{r:#}");
    assert_eq!(r["exit_code"], out.code, "{r:#}");

    let out = run_migrate(&refs(&args), &cwd, &env);
    assert_success(&out);
    assert_eq!(pg.count("server_db", "audit_logs"), GENERATED_ROWS + 1);
    compare_all(&data_dir, &pg);
}

#[test]
fn source_in_use_is_refused_unless_allowed() {
    let pg = PgCluster::start();
    let tmp = fixture_copy();
    let data_dir = data_dir(tmp.path());
    let server_db = data_dir.join("core").join("server.db");
    let app_db = data_dir.join("data").join(APP_DIDS[1]).join("blocklet.db");
    let args = migrate_args(&data_dir);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str())];
    let cwd = data_dir.parent().expect("parent").to_path_buf();

    type Hold = fn(&Path) -> SqliteHolder;
    let cases: [(&str, &Path, Hold); 2] = [
        ("a write transaction on server.db", &server_db, SqliteHolder::begin_exclusive),
        ("an idle connection to an app's blocklet.db", &app_db, SqliteHolder::idle),
    ];
    for (what, file, hold) in cases {
        let holder = hold(file);
        let out = run_migrate(&refs(&args), &cwd, &env);
        holder.release();
        assert_eq!(out.code, 2, "{what}: {out:?}");
        let line = format!("{} is in use by process", file.display());
        assert!(out.has_error_line(&line), "{what}: expected {line:?}: {out:?}");
        assert!(out.has_error_line("--allow-running-server"), "{what}: should name the override: {out:?}");
        assert_eq!(pg.databases(), Vec::<String>::new(), "{what}: {out:?}");
        assert_no_lock_file(&data_dir);
    }

    // With the override the run goes ahead, from one consistent snapshot, and says so.
    let holder = SqliteHolder::idle(&server_db);
    let mut all = refs(&args);
    all.push("--allow-running-server");
    let out = run_migrate(&all, &cwd, &env);
    holder.release();
    assert_success(&out);
    assert!(out.stderr.contains("going ahead because of --allow-running-server"), "{out:?}");
    compare_all(&data_dir, &pg);
}
