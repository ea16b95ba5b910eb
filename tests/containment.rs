//! A job touches only its own databases, its time limits and cancellation end its work on the
//! server too, and its connections stay in step after every kind of failed call. The hostile
//! components `other-database`, `stall-loop`, `runaway-query` and `out-of-step` (what each does
//! is in `tests/components/README.md`) run as a job's `--component`, each against its own
//! throwaway cluster and fixture copy; a batch job runs the bundled component under a bound on
//! the databases it may use. Every hostile run is also checked for what every contained run must
//! leave (see `tests/support/src/hostile.rs`): its own exit, the target unchanged, no session of
//! the job left on the server. `sqlite-target-query` checks, going back to SQLite, that `query` on
//! a SQLite target passes the authorizer `execute` does.

use std::path::Path;
use std::time::Duration;

use blocklet_migrate_test_support::*;
use tempfile::TempDir;

/// A cluster with `tenant_secrets`, another application's database: its `users` table (a name the
/// Blocklet plan also writes) with one secret row and, with `ledger`, a table the plan does not
/// write.
fn cluster_with_secrets(ledger: bool) -> PgCluster {
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE tenant_secrets");
    pg.psql(
        "tenant_secrets",
        "CREATE TABLE users (did text); INSERT INTO users VALUES ('another application''s secret')",
    );
    if ledger {
        pg.psql("tenant_secrets", "CREATE TABLE ledger (amount integer); INSERT INTO ledger VALUES (42)");
    }
    pg
}

/// Runs `other-database` (its plan: `core/server.db` → `tenant_secrets`) against `pg`, with
/// `extra` flags; stdout and stderr together.
fn run_other_database(pg: &PgCluster, data_dir: &Path, extra: &[&str]) -> (Output, String) {
    let component = test_component("other-database");
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let mut args = vec!["--dialect", "postgres", "--data-dir", path_str(data_dir)];
    args.extend(["--component", path_str(&component), "--allow-unsigned", "--timeout", TIMEOUT]);
    args.extend(extra);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", path_str(cache.path()))];
    let (out, took) = run_migrate_within(&args, data_dir, &env, HANG);
    eprintln!("other-database {extra:?}: exit {} after {:.1}s", out.code, took.as_secs_f64());
    let all = format!("{}{}", out.stdout, out.stderr);
    (out, all)
}

#[test]
fn a_database_holding_anything_the_plan_does_not_write_is_refused_before_the_component_runs() {
    let pg = cluster_with_secrets(true);
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let before = target_state(&pg);
    for extra in [&[][..], &["--force"]] {
        let (out, all) = run_other_database(&pg, &data_dir, extra);
        assert_eq!(out.code, 2, "{extra:?}: a usage error, as for any target that is not empty: {out:?}");
        assert!(
            out.has_error_line(
                "PostgreSQL database tenant_secrets already exists and holds public.ledger, which this migration does not write"
            ),
            "{extra:?}: {out:?}"
        );
        assert!(!all.contains("the host let me in"), "{extra:?}: the component ran: {out:?}");
        assert_eq!(target_state(&pg), before, "{extra:?}: tenant_secrets changed");
        assert_eq!(job_sessions_left(&pg), 0);
        assert_no_lock_file(&data_dir);
    }
}

#[test]
fn a_target_handle_reads_only_the_tables_its_job_created() {
    // `users` is a table the plan writes, so the database is admitted; its row is not the job's.
    let pg = cluster_with_secrets(false);
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let before = target_state(&pg);
    for extra in [&[][..], &["--force"]] {
        let (out, all) = run_other_database(&pg, &data_dir, extra);
        assert!(all.contains("the host let me in"), "{extra:?}: {out:?}");
        assert!(!all.contains("READ"), "{extra:?}: the component read another application's rows: {out:?}");
        for refused in ["read users: refused", "query users: refused"] {
            assert!(all.contains(refused), "{extra:?}: no {refused:?}: {out:?}");
        }
        assert!(
            all.contains(
                "refused to read users: a PostgreSQL target reads only the tables and sequences this job created in it"
            ),
            "{extra:?}: {out:?}"
        );
        if extra.is_empty() {
            assert!(all.contains("drop users: refused: DROP is only allowed"), "{out:?}");
        }
        // Whatever it did in the transaction (with --force it dropped `users`) is rolled back:
        // the host's own count accounts for no source row.
        assert_eq!(out.code, 4, "{extra:?}: {out:?}");
        assert!(out.has_error_line("the host's own count does not account for every source row"), "{out:?}");
        assert_eq!(target_state(&pg), before, "{extra:?}: tenant_secrets changed");
        assert_eq!(
            pg.psql("tenant_secrets", "SELECT did FROM users"),
            "another application's secret",
            "{extra:?}: the row is gone"
        );
        assert_eq!(job_sessions_left(&pg), 0);
    }
}

#[test]
fn a_batch_job_uses_only_the_databases_its_tenant_may() {
    let pg = PgCluster::start();
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let before = target_state(&pg);
    let work = TempDir::with_prefix("bm-batch-").expect("work dir");
    let jobs = format!(
        "[[job]]\nname = \"tenant-a\"\ndata_dir = {:?}\npostgres_url = {:?}\ndatabases = [\"tenant_a_*\"]\n",
        path_str(&data_dir),
        pg.url()
    );
    let jobs_file = work.path().join("jobs.toml");
    std::fs::write(&jobs_file, jobs).expect("write jobs.toml");
    let (out, _) = run_migrate_within(&["batch", path_str(&jobs_file)], work.path(), &[], HANG);
    assert_eq!(out.code, 1, "{out:?}");
    // A batch prints each job's errors on stderr, under the job's name.
    assert!(
        out.stderr.contains("[tenant-a] ✖ the migration component planned to use database server_db, which this job may not use (it may use: tenant_a_*)"),
        "the refusal does not name the database and the bound: {out:?}"
    );
    assert_eq!(target_state(&pg), before, "the target changed");
    assert_no_lock_file(&data_dir);
}

#[test]
fn cheap_calls_without_progress_are_ended_by_the_stall_limit() {
    let run = run_hostile("stall-loop", &[("--stall-limit", "3")]);
    assert_job_error(
        &run,
        "stall-loop",
        "the migration component made no progress for 3 s: no rows moved and no long-running statement (--stall-limit)",
    );
    assert!(run.took >= Duration::from_secs(3), "stall-loop: ended after {:?}, before its 3 s limit", run.took);
    assert!(run.took < Duration::from_secs(12), "stall-loop: took {:?} for a 3 s stall limit", run.took);
}

#[test]
fn the_time_limit_ends_the_statement_on_the_server_too() {
    // The cross join is one long statement: progress for the stall limit, not for the time limit.
    let run = run_hostile("runaway-query", &[("--timeout", "6"), ("--stall-limit", "2")]);
    assert_job_error(&run, "runaway-query", "the migration job exceeded its time limit of 6 s (--timeout)");
    assert!(run.took < Duration::from_secs(14), "runaway-query: took {:?} for a 6 s limit", run.took);
}

#[test]
fn ctrl_c_cancels_the_job_and_ends_its_work_on_the_server() {
    let run = run_hostile_interrupted("runaway-query", &[], Duration::from_secs(4));
    assert_job_error(&run, "runaway-query", "the migration job was cancelled");
    assert!(run.took < Duration::from_secs(12), "runaway-query: took {:?} to stop after Ctrl-C at 4 s", run.took);
}

#[test]
fn query_on_a_sqlite_target_passes_the_same_authorizer_as_execute() {
    let component = test_component("sqlite-target-query");
    let pg = PgCluster::start();
    pg.psql("postgres", "CREATE DATABASE server_db");
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let source_before = hash_tree(&data_dir);
    let before = target_state(&pg);
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let mut args = vec!["--dialect", "sqlite", "--data-dir", path_str(&data_dir)];
    args.extend(["--component", path_str(&component), "--allow-unsigned", "--timeout", TIMEOUT]);
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", path_str(cache.path()))];
    let (out, _) = run_migrate_within(&args, &data_dir, &env, HANG);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.has_error_line("sqlite-target-query: all 5 refused"), "{out:?}");
    assert_same_source(&source_before, &data_dir, "sqlite-target-query");
    assert_eq!(target_state(&pg), before, "the server changed");
    assert!(!Path::new("/tmp/blocklet-migrate-attached.db").exists(), "ATTACH created a file");
    assert_eq!(job_sessions_left(&pg), 0);
}

#[test]
fn every_answer_is_right_after_every_kind_of_failed_call() {
    let run = run_hostile("out-of-step", &[]);
    assert_job_error(&run, "out-of-step", "out-of-step: all 36 answers right after 8 failed calls");
}
