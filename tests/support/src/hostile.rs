//! Running a hostile component of `tests/components` as a job's `--component` against its own
//! throwaway cluster and fixture copy, with tight limits, and checking what every contained run
//! must leave: its own exit, a `✖` line, bounded output, the target and the source unchanged, no
//! lock file. `tests/sandbox.rs` and `tests/containment.rs` run the corpus through it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tempfile::TempDir;

use crate::{
    Output, PgCluster, RawOutput, assert_no_lock_file, assert_same_source, data_dir, fixture_copy, hash_tree,
    run_migrate_interrupted_after, run_migrate_raw, target_state, test_component,
};

/// The limits every hostile run gets, unless a case says otherwise.
pub const CPU_LIMIT: &str = "2";
pub const MEMORY_LIMIT: &str = "64";
pub const TIMEOUT: &str = "20";

/// A run that has not ended by itself after this long (the 20 s timeout, and time to roll back and
/// clean up) is a hang: the test kills it and fails.
pub const HANG: Duration = Duration::from_secs(45);

/// The most output a contained run may produce (stdout and stderr together).
pub const MAX_OUTPUT_BYTES: usize = 2 << 20;

/// The host's log budget (`runtime.rs`): a burst, then a steady rate; lines cut to a maximum.
pub const LOG_BURST: usize = 200;
pub const LOG_PER_SECOND: f64 = 50.0;
pub const LOG_MAX_BYTES: usize = 2048;

/// One hostile run and what it left.
pub struct Run {
    pub out: Output,
    /// The output as written (terminal escapes included).
    pub raw: RawOutput,
    pub took: Duration,
    /// The fixture copy and the cluster, kept alive for extra checks.
    pub fixture: TempDir,
    pub cwd: TempDir,
    pub pg: PgCluster,
}

/// Runs component `name` against a fresh cluster and fixture copy with the default tight limits,
/// `overrides` replacing any of them (`("--memory-limit", "256")`), and checks everything every
/// hostile run must satisfy.
pub fn run_hostile(name: &str, overrides: &[(&str, &str)]) -> Run {
    run_hostile_with(name, overrides, |_| {})
}

/// [`run_hostile`], with `setup` called on the fixture copy's root (the directory holding
/// `.blocklet-server`) first.
pub fn run_hostile_with(name: &str, overrides: &[(&str, &str)], setup: impl FnOnce(&Path)) -> Run {
    run_hostile_ending(name, overrides, setup, 1)
}

/// [`run_hostile_with`], expecting exit code `code` (4: the host's own verification refused it).
pub fn run_hostile_ending(name: &str, overrides: &[(&str, &str)], setup: impl FnOnce(&Path), code: i32) -> Run {
    run_hostile_until(name, overrides, setup, code, None)
}

/// [`run_hostile`], interrupted (SIGINT, as Ctrl-C) `after` its start: it must exit with code 130.
pub fn run_hostile_interrupted(name: &str, overrides: &[(&str, &str)], after: Duration) -> Run {
    run_hostile_until(name, overrides, |_| {}, 130, Some(after))
}

fn run_hostile_until(
    name: &str,
    overrides: &[(&str, &str)],
    setup: impl FnOnce(&Path),
    code: i32,
    interrupt: Option<Duration>,
) -> Run {
    let component = test_component(name);
    let pg = PgCluster::start();
    let fixture = fixture_copy();
    setup(fixture.path());
    let data_dir = data_dir(fixture.path());
    let cache = TempDir::with_prefix("bm-cache-").expect("cache dir");
    let cwd = TempDir::with_prefix("bm-cwd-").expect("working dir");
    let source_before = hash_tree(&data_dir);
    let before = target_state(&pg);

    let mut limits: BTreeMap<&str, &str> =
        [("--cpu-limit", CPU_LIMIT), ("--memory-limit", MEMORY_LIMIT), ("--timeout", TIMEOUT)].into();
    limits.extend(overrides.iter().copied());
    let mut args: Vec<&str> = vec!["--dialect", "postgres", "--data-dir", data_dir.to_str().expect("utf-8 path")];
    args.extend(["--component", component.to_str().expect("utf-8 path"), "--allow-unsigned"]);
    for (flag, value) in &limits {
        args.push(flag);
        // A flag without a value (`("--force", "")`).
        if !value.is_empty() {
            args.push(value);
        }
    }
    let url = pg.url();
    let env = [("ABT_NODE_POSTGRES_URL", url.as_str()), ("BLOCKLET_MIGRATE_CACHE_DIR", path_str(cache.path()))];
    let (raw, took) = match interrupt {
        Some(after) => run_migrate_interrupted_after(&args, cwd.path(), &env, after, HANG),
        None => run_migrate_raw(&args, cwd.path(), &env, HANG),
    };
    let out = raw.output();
    eprintln!("{name}: exit {} after {:.1}s, {} bytes of output", out.code, took.as_secs_f64(), output_bytes(&out));

    assert_eq!(out.code, code, "{name}: expected exit code {code}: {out:?}");
    assert!(!out.error_lines().is_empty(), "{name}: no ✖ line: {out:?}");
    // (log-spoof forges exactly this line: its own test reports that, with the rest.)
    if name != "log-spoof" {
        assert!(!out.stdout.contains("Migration postgres completed"), "{name}: claims completion: {out:?}");
    }
    assert!(output_bytes(&out) < MAX_OUTPUT_BYTES, "{name}: {} bytes of output", output_bytes(&out));
    assert_eq!(job_sessions_left(&pg), 0, "{name}: the job left sessions running on the server: {out:?}");
    let after = target_state(&pg);
    assert_eq!(after, before, "{name}: the target changed (databases, tables or row counts): {out:?}");
    pg.assert_all_tables_empty(name);
    assert_no_lock_file(&data_dir);
    assert_same_source(&source_before, &data_dir, name);
    Run { out, raw, took, fixture, cwd, pg }
}

/// How many sessions `blocklet-migrate` jobs (their `application_name`) still have on `pg`, after
/// waiting up to 3 s for ended ones to go.
pub fn job_sessions_left(pg: &PgCluster) -> i64 {
    let sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'blocklet-migrate %'";
    let started = std::time::Instant::now();
    loop {
        let left = pg.psql_i64("postgres", sql);
        if left == 0 || started.elapsed() > Duration::from_secs(3) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn output_bytes(out: &Output) -> usize {
    out.stdout.len() + out.stderr.len()
}

/// The last `✖` line: the job's error (component log lines at level error come before it).
pub fn job_error(out: &Output) -> &str {
    out.error_lines().last().copied().unwrap_or("")
}

#[track_caller]
pub fn assert_job_error(run: &Run, name: &str, fragment: &str) {
    let error = job_error(&run.out);
    assert!(
        error.contains(fragment),
        "{name}: expected the error to contain {fragment:?}, got {error:?}: {:?}",
        run.out
    );
}
