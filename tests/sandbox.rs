//! The sandbox, end to end: every hostile component of `tests/components` runs as a job's
//! `--component` against its own throwaway PostgreSQL cluster and fixture copy, with tight limits
//! (`--cpu-limit 2 --memory-limit 64 --timeout 20`). For each one:
//!
//! * the run ends by itself (the host is alive enough to print the error and exit) with exit
//!   code 1 and the specific contained error;
//! * the target is exactly as before: the same databases (the one the run created is removed),
//!   the same tables with the same row counts, no product database holds a row, no lock file;
//! * the source data dir is unchanged, and the output stays small.
//!
//! Beyond the corpus: `forbidden-sql` again with `--force` (the SQL guard, not the DROP
//! gate, must refuse `DROP DATABASE`); `path-escape` (a plan naming files outside the data dir,
//! to read and to write); `foreign-target` (a plan naming `template1` as the target); `log-spoof`
//! (component text passing for the host's own output). What each must produce, and the host bugs
//! the corpus found, are in `tests/components/README.md`.
//!
//! The components are built once per test run (see [`test_components_dir`]).

use std::path::PathBuf;
use std::time::Duration;

use blocklet_migrate_test_support::*;
use tempfile::TempDir;

#[test]
fn infinite_loop_is_stopped_by_the_cpu_limit() {
    let run = run_hostile("infinite-loop", &[]);
    assert_job_error(
        &run,
        "infinite-loop",
        "the migration component exceeded its CPU limit: 2 s of computation without calling the host (--cpu-limit)",
    );
    assert!(run.took < Duration::from_secs(15), "infinite-loop: took {:?} for a 2 s CPU limit", run.took);
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_limit() {
    let run = run_hostile("memory-bomb", &[]);
    assert_job_error(
        &run,
        "memory-bomb",
        "the migration component exceeded its memory limit of 64 MiB (--memory-limit)",
    );
    assert!(run.out.stdout.contains("memory-bomb: holding 0 MiB, asking for 64 more"), "{:?}", run.out);
    assert!(!run.out.stdout.contains("holding 64 MiB"), "memory-bomb held 64 MiB under a 64 MiB cap: {:?}", run.out);
}

#[test]
fn wasi_escape_finds_no_way_out() {
    let outside = PathBuf::from("/tmp/blocklet-migrate-wasi-escape");
    // Left by someone else? Then its absence afterwards proves nothing: remove it first.
    let _ = std::fs::remove_file(&outside);
    let run = run_hostile("wasi-escape", &[]);
    assert!(!run.out.stderr.contains("SUCCEEDED"), "wasi-escape got out: {:?}", run.out);
    assert_job_error(&run, "wasi-escape", "wasi-escape: nothing succeeded (tried 13 ways out)");
    assert!(!outside.exists(), "wasi-escape wrote {}", outside.display());
    let inside = run.cwd.path().join("blocklet-migrate-wasi-escape");
    assert!(!inside.exists(), "wasi-escape created {}", inside.display());
    assert_eq!(std::fs::read_dir(run.cwd.path()).expect("read cwd").count(), 0, "the working dir is not empty");
}

/// `events.log` does not count as calling the host for the CPU limit (a loop that only logs is a
/// hang), so the flood ends at the CPU limit, and the rate limit keeps the output small.
#[test]
fn log_flood_is_rate_limited_and_stopped() {
    let run = run_hostile("log-flood", &[]);
    let error = job_error(&run.out);
    let contained = ["exceeded its CPU limit", "exceeded its time limit", "log-flood: sent 10000000 log lines"];
    assert!(contained.iter().any(|c| error.contains(c)), "log-flood: unexpected error {error:?}: {:?}", run.out);
    eprintln!("log-flood ended with: {error}");
    let lines: Vec<&str> =
        run.out.stderr.lines().chain(run.out.stdout.lines()).filter(|l| l.contains("log-flood log-flood")).collect();
    let allowed = LOG_BURST + (LOG_PER_SECOND * run.took.as_secs_f64()).ceil() as usize + 1;
    assert!(lines.len() <= allowed, "log-flood: {} lines printed, at most {allowed} allowed", lines.len());
    assert!(!lines.is_empty(), "log-flood: not one line shown: {:?}", run.out.stderr.len());
    // A 64 KiB message is cut to LOG_MAX_BYTES (plus `✖ ` and the `…` mark).
    let longest = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    assert!(longest <= LOG_MAX_BYTES + 16, "log-flood: a line of {longest} bytes got through");
    assert!(run.took < Duration::from_secs(25), "log-flood took {:?}", run.took);
}

#[test]
fn forbidden_sql_is_all_refused_by_the_host() {
    let probe = PathBuf::from("/tmp/blocklet-migrate-forbidden-sql");
    let _ = std::fs::remove_file(&probe);
    let run = run_hostile("forbidden-sql", &[]);
    assert_job_error(&run, "forbidden-sql", "forbidden-sql: all 14 refused");
    let refusals: Vec<&str> = run.out.stdout.lines().filter(|l| l.contains(": refused: ")).collect();
    assert_eq!(refusals.len(), 14, "forbidden-sql: expected 14 refusals logged: {:?}", run.out);
    for (sql, reason) in [
        ("TO PROGRAM", "COPY"),
        ("ALTER SYSTEM", "ALTER SYSTEM"),
        ("CREATE EXTENSION", "CREATE EXTENSION"),
        ("DROP DATABASE", "DROP"),
        ("SET ROLE", "SET ROLE"),
        ("execute SELECT pg_read_file", "pg_read_file"),
        ("query SELECT pg_read_file", "pg_read_file"),
        ("setval", "setval"),
        ("DROP TABLE y", "statement"),
        ("GRANT", "GRANT"),
        ("DO $$", "DO"),
        // Printed with the separator escaped: `\u{1}`.
        ("(a int)\\u{1}ALTER SYSTEM", "ALTER SYSTEM"),
        ("(a int)\\u{1}DROP DATABASE", "DROP"),
    ] {
        let line = refusals.iter().find(|l| l.contains(sql)).unwrap_or_else(|| panic!("no refusal of {sql}"));
        let message = line.split(": refused: ").nth(1).unwrap_or("");
        assert!(message.contains(reason), "forbidden-sql: refusal of {sql} does not name {reason:?}: {line}");
    }
    assert!(!probe.exists(), "forbidden-sql: PostgreSQL wrote {}", probe.display());
    // Nothing it tried reached the server: no extension, no changed setting, no role change.
    assert_eq!(run.pg.psql_i64("postgres", "SELECT count(*) FROM pg_extension WHERE extname = 'dblink'"), 0);
    assert_eq!(run.pg.psql_i64("postgres", "SELECT count(*) FROM pg_file_settings WHERE name = 'archive_command'"), 0);
}

/// With `--force` the host's DROP gate opens; the SQL guard still refuses `DROP DATABASE`.
#[test]
fn forbidden_sql_is_refused_by_the_sql_guard_even_with_force() {
    let run = run_hostile("forbidden-sql", &[("--force", "")]);
    assert_job_error(&run, "forbidden-sql", "forbidden-sql: all 14 refused");
    let drop = run.out.stdout.lines().find(|l| l.contains("execute DROP DATABASE postgres: refused: "));
    assert!(
        drop.is_some_and(|l| l.contains("refused DROP DATABASE")),
        "forbidden-sql --force: DROP DATABASE not refused by the SQL guard: {:?}",
        run.out
    );
    assert_eq!(run.pg.psql_i64("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"), 1);
}

#[test]
fn trap_mid_copy_rolls_the_copy_back() {
    let run = run_hostile("trap-mid-copy", &[]);
    assert!(run.out.stdout.contains("trap-mid-copy: one batch written, trapping now"), "{:?}", run.out);
    assert_job_error(&run, "trap-mid-copy", "the migration component failed:");
    assert_job_error(&run, "trap-mid-copy", "unreachable");
    // The database the run created (and its `users` table with two rows) is gone.
    assert!(!run.pg.databases().contains(&"server_db".to_string()), "server_db left behind");
}

/// A component that copies nothing and reports every table copied: the host's own counts (each
/// source table in the snapshot, each target table before commit) refuse it, whatever it claims.
#[test]
fn made_up_counts_are_not_believed() {
    let run = run_hostile_ending("lying-report", &[], |_| {}, 4);
    assert!(run.out.stdout.contains("lying-report: claiming"), "{:?}", run.out);
    assert_job_error(&run, "lying-report", "the host's own count does not account for every source row");
    assert!(
        run.out.stderr.contains("server_db.users:") || run.out.stdout.contains("server_db.users:"),
        "{:?}",
        run.out
    );
    assert!(!run.out.stdout.contains("✅ Table"), "per-table success lines before the host's check: {:?}", run.out);
    assert!(!run.pg.databases().contains(&"server_db".to_string()), "server_db left behind");
}

/// A component that ignores a failed statement (its transaction is aborted) and reports success:
/// the host does not commit on its word, and says why.
#[test]
fn a_transaction_aborted_by_the_component_is_not_reported_as_success() {
    let run = run_hostile_ending("aborted-transaction", &[], |_| {}, 4);
    assert!(run.out.stdout.contains("aborted-transaction: ignoring"), "{:?}", run.out);
    assert_job_error(&run, "aborted-transaction", "nothing committed");
    assert!(!run.pg.databases().contains(&"server_db".to_string()), "server_db left behind");
}

/// Tables created one after another in the job's transaction: stopped at the host's object limit
/// (the whole transaction rolled back), long before PostgreSQL's lock table fills.
#[test]
fn a_job_cannot_fill_the_servers_lock_table() {
    let run = run_hostile("table-flood", &[]);
    assert_job_error(&run, "table-flood", "refused after 500 tables");
    assert_job_error(&run, "table-flood", "the limit is 500");
    assert!(!run.pg.databases().contains(&"server_db".to_string()), "server_db left behind");
}

/// Each malformed write is refused by the host (kind `invalid-input` or `limit`), and a refused
/// batch leaves the load as it was (the component then finishes it: 0 rows).
#[test]
fn malformed_batches_are_all_refused() {
    let run = run_hostile("malformed-batch", &[]);
    assert_job_error(&run, "malformed-batch", "malformed-batch: all 11 refused");
    let refusals: Vec<&str> = run.out.stdout.lines().filter(|l| l.contains(": refused: ")).collect();
    assert_eq!(refusals.len(), 11, "malformed-batch: expected 11 refusals logged: {:?}", run.out);
    for expected in [
        "one column for two: refused: batch has 1 columns, expected 2",
        "three columns for two: refused: batch has 3 columns, expected 2",
        "tags, numbers and ends of different lengths: refused: column 0 of the batch does not have 2 rows",
        "rows says 5, columns hold 1: refused: column 0 of the batch does not have 5 rows",
        "ends beyond bytes: refused: column 0 of the batch has inconsistent byte offsets",
        "ends going backwards: refused: column 0 of the batch has inconsistent byte offsets",
        "text tag into an integer column: refused: server_db.tags: row 1 of the batch, column id: ",
        "integer tag into a text column: refused: server_db.users: row 1 of the batch, column did: ",
        "blob tag into a text column: refused: server_db.users: row 1 of the batch, column did: ",
        "invalid UTF-8 in a text value: refused: server_db.users: row 1 of the batch, column did: text is not valid UTF-8",
        "two rows of 5 MiB, over the batch byte cap: refused: server_db.users: a batch of 2 rows and ",
    ] {
        assert!(refusals.iter().any(|l| l.contains(expected)), "malformed-batch: no {expected:?} in {refusals:#?}");
    }
}

/// A component asleep in a WASI call runs no wasm, so no CPU limit can see it: the job's
/// wall-clock limit ends it.
#[test]
fn sleep_forever_is_ended_by_the_time_limit() {
    let run = run_hostile("sleep-forever", &[("--timeout", "5")]);
    assert_job_error(&run, "sleep-forever", "the migration job exceeded its time limit of 5 s (--timeout)");
    assert!(run.took >= Duration::from_secs(5), "sleep-forever: ended after {:?}, before its 5 s limit", run.took);
    assert!(run.took < Duration::from_secs(20), "sleep-forever: took {:?} for a 5 s limit", run.took);
}

/// A loop that only calls `events.log` is computing, not migrating: the CPU limit ends it.
#[test]
fn busy_host_calls_are_stopped_by_the_cpu_limit() {
    let run = run_hostile("busy-host-calls", &[]);
    assert_job_error(&run, "busy-host-calls", "exceeded its CPU limit");
    assert!(run.took < Duration::from_secs(15), "busy-host-calls: took {:?} for a 2 s CPU limit", run.took);
}

/// The plan names the files the host opens: a plan naming a file outside the data dir (here
/// `../secret.db`, standing for another tenant's data) must be refused before anything opens it.
#[test]
fn a_plan_cannot_read_files_outside_the_data_dir() {
    let run = run_hostile_with("path-escape", &[], |root| {
        sqlite_exec(
            &root.join("secret.db"),
            "CREATE TABLE secrets (value TEXT); INSERT INTO secrets VALUES ('another tenant''s secret');",
        );
    });
    let error = job_error(&run.out);
    assert!(
        !run.out.stderr.contains("path-escape: READ") && !run.out.stderr.contains("another tenant's secret"),
        "path-escape: the host opened a file outside the data dir for the component: {:?}",
        run.out
    );
    assert!(error.contains("../secret.db"), "path-escape: the refusal does not name the file: {:?}", run.out);
}

/// The same for writing (`--dialect sqlite`): a plan naming `../escaped.db` must not make the
/// host create, or move into place, a file outside the data dir.
#[test]
fn a_plan_cannot_write_files_outside_the_data_dir() {
    let component = test_component("path-escape");
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE server_db");
    let fixture = fixture_copy();
    let root = std::fs::canonicalize(fixture.path()).expect("canonical fixture root");
    let data_dir = data_dir(fixture.path());
    let source_before = hash_tree(&data_dir);
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let args = [
        "--dialect",
        "sqlite",
        "--data-dir",
        path_str(&data_dir),
        "--component",
        path_str(&component),
        "--allow-unsigned",
        "--cpu-limit",
        CPU_LIMIT,
        "--memory-limit",
        MEMORY_LIMIT,
        "--timeout",
        TIMEOUT,
    ];
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", path_str(cache.path()))];
    let (out, took) = run_migrate_within(&args, &root, &env, HANG);
    eprintln!("path-escape (sqlite): exit {} after {:.1}s", out.code, took.as_secs_f64());
    let outside: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("read fixture root")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains("escaped")))
        .collect();
    assert!(outside.is_empty(), "path-escape: the host wrote {outside:?} outside the data dir: {out:?}");
    assert_ne!(out.code, 0, "path-escape: a plan out of the data dir succeeded: {out:?}");
    assert!(out.has_error_line("../escaped.db"), "path-escape: the refusal does not name the file: {out:?}");
    assert_same_source(&source_before, &data_dir, "path-escape (sqlite)");
}

/// What a component logs or fails with cannot pass for the host's own output: no forged line
/// (a newline, then the host's success line or a batch job's prefix), no terminal escape, and a
/// failure message cut short like log lines are.
#[test]
fn component_text_cannot_forge_the_hosts_output() {
    let run = run_hostile("log-spoof", &[]);
    let mut problems = Vec::new();
    for (stream, text) in [("stdout", &run.out.stdout), ("stderr", &run.out.stderr)] {
        for line in text.lines() {
            if line.starts_with("✔ Migration postgres completed") || line.starts_with("[tenant-00]") {
                problems.push(format!("{stream}: a forged line: {:?}", line.chars().take(80).collect::<String>()));
            }
        }
    }
    // NO_COLOR is set: the host itself writes no escape at all.
    for (stream, bytes) in [("stdout", &run.raw.stdout), ("stderr", &run.raw.stderr)] {
        if bytes.contains(&0x1b) {
            problems.push(format!("{stream}: a raw terminal escape (ESC) got through"));
        }
    }
    if run.out.stderr.len() > 64 << 10 {
        problems.push(format!("stderr: {} bytes: the 1 MiB failure message was printed in full", run.out.stderr.len()));
    }
    assert!(problems.is_empty(), "log-spoof:\n  {}", problems.join("\n  "));
}

/// The plan also names the target database: `template1` (what every later `CREATE DATABASE`
/// copies) is not a Blocklet database, and a plan naming it must be refused before anything is
/// written there.
#[test]
fn a_plan_cannot_target_a_database_that_is_not_a_blocklet_one() {
    let component = test_component("foreign-target");
    let pg = PgCluster::start();
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let before = target_state(&pg);
    let args = [
        "--dialect",
        "postgres",
        "--data-dir",
        path_str(&data_dir),
        "--component",
        path_str(&component),
        "--allow-unsigned",
        "--cpu-limit",
        CPU_LIMIT,
        "--memory-limit",
        MEMORY_LIMIT,
        "--timeout",
        TIMEOUT,
    ];
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", path_str(cache.path()))];
    let (out, took) = run_migrate_within(&args, fixture.path(), &env, HANG);
    eprintln!("foreign-target: exit {} after {:.1}s", out.code, took.as_secs_f64());
    assert_eq!(
        pg.tables("template1"),
        Vec::<String>::new(),
        "foreign-target: the host let the component commit tables into template1: {out:?}"
    );
    assert_ne!(out.code, 0, "foreign-target: {out:?}");
    assert!(out.has_error_line("template1"), "foreign-target: the refusal does not name template1: {out:?}");
    assert_eq!(target_state(&pg), before, "foreign-target: the target changed");
}
