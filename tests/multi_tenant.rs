//! Multi-tenant hosting: 16 tenants migrate in ONE `blocklet-migrate batch` process, 8 at a time,
//! each into its own throwaway PostgreSQL cluster (so their `server_db`s cannot collide), one of
//! them running the hostile `infinite-loop` component with a 2 s CPU limit. The hostile job fails
//! alone (exit 1, its cluster left without a row); the other 15 complete and verify; the batch
//! exits non-zero and reports the peak memory of the host process.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use blocklet_migrate_test_support::*;
use serde_json::Value;
use tempfile::TempDir;

const TENANTS: usize = 16;
const PARALLEL: usize = 8;
/// The tenant that runs the hostile component.
const HOSTILE: usize = 5;

fn tenant_name(i: usize) -> String {
    format!("tenant-{i:02}")
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a JSON string is a TOML basic string")
}

#[test]
fn sixteen_tenants_in_one_process_one_hostile() {
    let hostile = test_component("infinite-loop");
    let started = Instant::now();
    let clusters = PgCluster::start_many(TENANTS);
    let setup = started.elapsed();
    let fixtures: Vec<TempDir> = (0..TENANTS).map(|_| fixture_copy()).collect();
    let data_dirs: Vec<PathBuf> = fixtures.iter().map(|f| data_dir(f.path())).collect();
    eprintln!("{TENANTS} clusters started in {:.1}s, fixtures copied", setup.as_secs_f64());
    let hostile_before = target_state(&clusters[HOSTILE]);

    let work = TempDir::with_prefix("bm-batch-").expect("work dir");
    let mut jobs = format!("parallel = {PARALLEL}\n");
    for (i, (pg, dd)) in clusters.iter().zip(&data_dirs).enumerate() {
        write!(
            jobs,
            "\n[[job]]\nname = {}\ndata_dir = {}\npostgres_url = {}\ndialect = \"postgres\"\ntimeout_seconds = 150\n",
            toml_str(&tenant_name(i)),
            toml_str(dd.to_str().expect("utf-8 path")),
            toml_str(&pg.url()),
        )
        .unwrap();
        if i == HOSTILE {
            write!(jobs, "component = {}\ncpu_limit_seconds = 2\n", toml_str(hostile.to_str().expect("utf-8 path")))
                .unwrap();
        }
    }
    let jobs_file = work.path().join("jobs.toml");
    std::fs::write(&jobs_file, &jobs).expect("write jobs.toml");
    let report_file = work.path().join("report.json");
    let cache = work.path().join("cache");

    let (out, took) = run_migrate_within(
        &["batch", jobs_file.to_str().unwrap(), "--report", report_file.to_str().unwrap(), "--allow-unsigned"],
        work.path(),
        &[("BLOCKLET_MIGRATE_CACHE_DIR", cache.to_str().unwrap())],
        Duration::from_secs(170),
    );
    eprintln!("batch of {TENANTS} jobs ({PARALLEL} at a time): exit {} after {:.1}s", out.code, took.as_secs_f64());
    assert_ne!(out.code, 0, "a batch with a failed job must exit non-zero: {out:?}");

    // The summary and the report agree: exactly the hostile job failed, with exit 1.
    let peak_line = out
        .stdout
        .lines()
        .find(|l| l.contains("peak memory of this process:"))
        .unwrap_or_else(|| panic!("no peak memory in the summary: {out:?}"));
    eprintln!("summary: {peak_line}");
    assert!(peak_line.contains(&format!("{TENANTS} job(s), {} succeeded, 1 failed", TENANTS - 1)), "{peak_line}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_file).expect("read the batch report")).expect("JSON report");
    assert_eq!(report["failed"], 1, "{report:#}");
    let peak = report["peak_rss_mib"].as_u64().unwrap_or_else(|| panic!("no peak_rss_mib: {report:#}"));
    assert!(peak > 0, "{report:#}");
    assert!(peak_line.contains(&format!("peak memory of this process: {peak} MiB")), "{peak_line} vs {peak}");
    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), TENANTS, "{report:#}");
    for (i, pg) in clusters.iter().enumerate() {
        let name = tenant_name(i);
        let job = jobs.iter().find(|j| j["name"] == name.as_str()).unwrap_or_else(|| panic!("{name} missing"));
        let expected = if i == HOSTILE { 1 } else { 0 };
        assert_eq!(job["exit_code"], expected, "{name}: {job} {out:?}");
        eprintln!(
            "{name}: exit {} in {:.1}s (port {})",
            job["exit_code"],
            job["seconds"].as_f64().unwrap_or(0.0),
            pg.port()
        );
    }

    // The hostile tenant: the CPU limit named, under its own prefix; its cluster untouched.
    let hostile_prefix = format!("[{}] ", tenant_name(HOSTILE));
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with(&hostile_prefix) && l.contains("exceeded its CPU limit: 2 s of computation")),
        "the hostile job's error does not name the CPU limit: {out:?}"
    );
    assert_eq!(target_state(&clusters[HOSTILE]), hostile_before, "the hostile tenant's cluster changed");
    clusters[HOSTILE].assert_all_tables_empty("hostile tenant");
    assert_no_lock_file(&data_dirs[HOSTILE]);

    // The other 15: every database there, users as in the fixture, the lock written.
    let fixture_users = SqliteSnapshot::new(&fixture_dir().join(".blocklet-server/core/server.db")).count("users");
    for (i, (pg, dd)) in clusters.iter().zip(&data_dirs).enumerate().filter(|(i, _)| *i != HOSTILE) {
        let name = tenant_name(i);
        assert_eq!(pg.databases(), expected_databases(), "{name}: databases");
        assert_eq!(pg.count("server_db", "users"), fixture_users, "{name}: server_db.users");
        assert!(dd.join(LOCK_REL).is_file(), "{name}: no lock file");
        let prefix = format!("[{name}] ");
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&prefix) && l.contains("✔ Migration postgres completed")),
            "{name}: no completion line: {out:?}"
        );
        assert!(!out.stderr.lines().any(|l| l.starts_with(&prefix)), "{name} printed errors: {out:?}");
    }
    // Row-by-row comparison of two of them, independent of the tool's own verification.
    for i in [0, TENANTS - 1] {
        let summary = compare_all(&data_dirs[i], &clusters[i]);
        eprintln!("{}: {} tables compared row by row", tenant_name(i), summary.len());
    }
    eprintln!("whole test: {:.1}s", started.elapsed().as_secs_f64());
}
