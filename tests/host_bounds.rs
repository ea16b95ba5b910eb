//! Bounded host memory and disk, end to end: hostile components of `tests/components` ask the
//! host for values far larger than any migration needs, or flood the files it writes, and each
//! run must end with the named error, nothing committed, the source unchanged, in bounded wall
//! time and with the host's peak RSS within the component's memory limit plus a fixed host
//! budget ([`HOST_BUDGET_MIB`]).
//!
//! Each test has its own throwaway PostgreSQL cluster and copy of the demo fixture (the
//! test-support crate), and runs the release binary itself. The peak RSS is the `ru_maxrss` that `wait4` reports for the CLI process.

use std::fs;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use blocklet_migrate_test_support::{PgCluster, assert_same_source, data_dir, fixture_copy, hash_tree, test_component};
use tempfile::TempDir;

/// The component's memory limit in every run (`--memory-limit`, MiB).
const MEMORY_LIMIT_MIB: u64 = 64;

/// What the host itself may hold beyond the component's linear memory, whatever the component
/// asks: the engine and compiled component, the runtime's threads, the database connections
/// and their buffers, one argument lifted from the component (at most its memory limit), and
/// the batches in flight (a few of `MAX_BATCH_BYTES`, or of `MAX_ROW_BYTES` for huge rows).
const HOST_BUDGET_MIB: u64 = 320;

/// A contained run ends well within this (its own limits, rollback, cleanup).
const WALL_LIMIT: Duration = Duration::from_secs(60);

/// The host's per-job maximum of rejected rows (`MAX_REJECTS_PER_JOB` in `capability/events.rs`).
const MAX_REJECTS_PER_JOB: u64 = 10_000;

/// The longest line the rejects file may hold: the value excerpt and reason at most
/// `REJECT_FIELD_MAX_BYTES` (1 KiB) each after JSON escaping, the four names at most
/// `NAME_MAX_BYTES` (256), and the keys.
const MAX_REJECT_LINE_BYTES: usize = 2 * 1024 + 4 * 256 + 128;

/// The exit code of a job failed by its rejected rows (`EXIT_REJECTED` in `job/outcome.rs`).
const EXIT_REJECTED: i32 = 3;

/// One contained run and what it left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
    peak_rss_mib: u64,
    /// Kept alive for checks of files the run wrote.
    dir: TempDir,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |s: &str| s.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect::<String>();
        write!(
            f,
            "exit {} after {:.1} s, peak RSS {} MiB\n--- stdout (end) ---\n{}\n--- stderr (end) ---\n{}",
            self.code,
            self.took.as_secs_f64(),
            self.peak_rss_mib,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

impl Run {
    /// The job's error: the last `✖` line.
    fn error(&self) -> &str {
        self.stderr.lines().rfind(|l| l.trim_start().starts_with('✖')).unwrap_or("")
    }
}

/// Run component `name` as the job's `--component` (with `--memory-limit`
/// [`MEMORY_LIMIT_MIB`] and `extra` flags, which may name files in the run's `dir` as `{dir}`)
/// against a fresh cluster and fixture copy, and check what every contained run must leave:
/// the cluster as before, no lock file, the source unchanged, bounded wall time and RSS.
fn run_contained(name: &str, extra: &[&str]) -> Run {
    let component = test_component(name);
    let pg = PgCluster::start();
    let fixture = fixture_copy();
    let data_dir = data_dir(fixture.path());
    let dir = TempDir::with_prefix("bm-bounds-run-").unwrap();
    let (databases_before, before) = (pg.databases(), pg.row_counts());
    let source_before = hash_tree(&data_dir);

    let dir_str = dir.path().to_str().unwrap().to_string();
    let memory = MEMORY_LIMIT_MIB.to_string();
    let mut args: Vec<String> =
        ["--dialect", "postgres", "--data-dir", data_dir.to_str().unwrap()].iter().map(|s| s.to_string()).collect();
    args.extend(["--component".into(), component.to_str().unwrap().into(), "--allow-unsigned".into()]);
    args.extend(["--memory-limit".into(), memory]);
    args.extend(extra.iter().map(|a| a.replace("{dir}", &dir_str)));
    let started = Instant::now();
    // Reaped by `wait_with_usage` (`wait4`, for the peak RSS), not by `Child::wait`.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(env!("CARGO_BIN_EXE_blocklet-migrate"))
        .args(&args)
        .current_dir(dir.path())
        .env("ABT_NODE_POSTGRES_URL", pg.url())
        .env("BLOCKLET_MIGRATE_CACHE_DIR", dir.path().join("cache"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let pid = child.id() as libc::pid_t;
    let (status, usage) = wait_with_usage(pid, WALL_LIMIT * 2);
    let took = started.elapsed();
    let run = Run {
        code: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) },
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took,
        peak_rss_mib: usage.ru_maxrss as u64 / 1024,
        dir,
    };
    eprintln!("{name}: exit {} after {:.1} s, peak RSS {} MiB", run.code, took.as_secs_f64(), run.peak_rss_mib);

    assert!(!run.error().is_empty(), "{name}: no ✖ line: {run:?}");
    assert!(!run.stdout.contains("Migration postgres completed"), "{name}: claims completion: {run:?}");
    assert!(took < WALL_LIMIT, "{name}: took {took:?}: {run:?}");
    assert!(
        run.peak_rss_mib <= MEMORY_LIMIT_MIB + HOST_BUDGET_MIB,
        "{name}: peak RSS {} MiB, over the memory limit ({MEMORY_LIMIT_MIB}) plus the host budget ({HOST_BUDGET_MIB}): {run:?}",
        run.peak_rss_mib
    );
    assert_eq!(pg.databases(), databases_before, "{name}: a database was left behind: {run:?}");
    assert_eq!(pg.row_counts(), before, "{name}: the cluster changed: {run:?}");
    assert!(!data_dir.join("core/sqlite-to-postgres.lock").exists(), "{name}: lock file written");
    assert_same_source(&source_before, &data_dir, &format!("{name}: the source data dir"));
    run
}

/// Wait for child `pid` and return its status and resource usage (its peak RSS); a child still
/// running after `limit` is killed (a hang fails the test instead of blocking the suite).
fn wait_with_usage(pid: libc::pid_t, limit: Duration) -> (i32, libc::rusage) {
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is this process's child, not yet reaped; both pointers are valid.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            return (status, usage);
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        if started.elapsed() > limit {
            // SAFETY: the child is not reaped yet, so `pid` is still ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn assert_error(run: &Run, fragments: &[&str]) {
    for fragment in fragments {
        assert!(
            run.error().contains(fragment),
            "expected the error to contain {fragment:?}, got {:?}: {run:?}",
            run.error()
        );
    }
}

// ------------------------------------------------------------------------------------------------
// The cases
// ------------------------------------------------------------------------------------------------

/// Two rows of 24 MiB built by the server from 2 MiB the component sent: refused by size.
#[test]
fn a_huge_query_result_is_refused_by_its_size() {
    let run = run_contained("huge-query", &["--timeout", "40"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_error(&run, &["huge-query: refused:", "server_db: a query result of more than 4194304 bytes"]);
}

/// A read naming one 24 MiB column 12 times is refused before it runs; the same row read once
/// (within the single-row limit) still arrives whole.
#[test]
fn a_read_naming_a_column_twice_is_refused_and_a_huge_row_still_arrives() {
    let run = run_contained("wide-read", &["--timeout", "40"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_error(
        &run,
        &["wide-read: duplicate refused:", "column v is named twice", "single read: 1 row of 25165824 bytes"],
    );
}

/// 50 MiB table names to describe-table and count-rows, 64-byte names everywhere else.
#[test]
fn names_longer_than_postgres_identifiers_are_refused_before_use() {
    let run = run_contained("huge-names", &["--timeout", "40"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_error(&run, &["huge-names: all 9 refused"]);
    assert!(run.stderr.len() + run.stdout.len() < 64 << 10, "the refusals echo the names: {run:?}");
    assert!(
        run.stdout.contains("a table name of 52428800 bytes: the limit is 63 bytes"),
        "the refusal names the size and the limit: {run:?}"
    );
}

/// Rejected rows with 1 KiB fields that grow when escaped, in a loop: the rejects file keeps a
/// bounded line per row and the job fails at the per-job maximum, with exit code 3.
#[test]
fn rejected_rows_are_bounded_per_row_and_per_job() {
    let run =
        run_contained("reject-flood", &["--rejects", "{dir}/rejects.jsonl", "--cpu-limit", "30", "--timeout", "40"]);
    assert_eq!(run.code, EXIT_REJECTED, "{run:?}");
    assert_error(&run, &[&format!("more than {MAX_REJECTS_PER_JOB} rejected rows")]);
    let rejects = fs::read_to_string(run.dir.path().join("rejects.jsonl")).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    let longest = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    eprintln!("rejects file: {} lines, {} bytes, longest line {longest} bytes", lines.len(), rejects.len());
    assert_eq!(lines.len() as u64, MAX_REJECTS_PER_JOB, "one line per kept rejected row");
    assert!(longest <= MAX_REJECT_LINE_BYTES, "a line of {longest} bytes");
    let row: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(row["value_excerpt"].as_str().unwrap().ends_with('…'), "the excerpt is cut: {}", lines[0]);
}

/// Zero-row writes, then one-row writes, in a loop until the time limit: no event for an empty
/// write, a few per second for the rest.
#[test]
fn progress_events_are_coalesced() {
    let run = run_contained("empty-writes", &["--progress-events", "{dir}/events.jsonl", "--timeout", "8"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_error(&run, &["exceeded its time limit of 8 s"]);
    let events = fs::read_to_string(run.dir.path().join("events.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["event"] == "rows")
        .collect();
    eprintln!("events file: {} bytes, {} rows events", events.len(), rows.len());
    assert!(rows.iter().all(|e| e["rows"].as_u64() > Some(0)), "an event for an empty write: {events}");
    // At most 4 a second for the one table, over at most 8 s of writes, and a final one.
    assert!(rows.len() <= 4 * 8 + 2, "{} rows events: {events}", rows.len());
    assert!(events.len() < 16 << 10, "{} bytes of events", events.len());
}
