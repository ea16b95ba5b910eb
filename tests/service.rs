//! The hosting service end to end: real `blocklet-migrate serve` processes sharing a queue on a
//! throwaway NATS server, real HTTP, each tenant's own throwaway PostgreSQL cluster (a Blocklet
//! component plans fixed database names, so two tenants on one server would collide).
//!
//! - 20 tenants through two worker processes, one tenant running the hostile `infinite-loop`, and
//!   one of them back to SQLite;
//! - `kill -9` of the worker holding a job mid-COPY: the other worker finishes it, every row
//!   exactly once;
//! - cancel mid-job: nothing left in the target;
//! - SIGTERM: a running job finishes within the grace period, or goes back to the queue and a
//!   restarted worker completes it;
//! - a frozen worker cannot undo the attempt that took its job over; a tenant's jobs_at_once holds
//!   across workers; a database file linked out of the tenant's root is refused;
//! - every refusal with its status, changing nothing.

use blocklet_migrate_test_support::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Rows added to a tenant whose job must still be copying when the test acts on it.
const BIG_ROWS: u64 = 150_000;

/// The servers' password in the service's configuration.
const SECRET: &str = "s3cret-pw-in-config";

/// The service's configuration for these tests: 3 s leases, a timeout per tenant, and every
/// server's URL carrying a password the clusters ignore (trust) and no response or log may show.
fn write_config(
    dir: &Path,
    nats: &NatsServer,
    head: &str,
    servers: &[(&str, &PgCluster)],
    components: &[&Path],
    tenants: &[&TenantSetup],
) -> PathBuf {
    let servers: Vec<(&str, String)> = servers
        .iter()
        .map(|(name, pg)| {
            (*name, pg.url().replacen("postgres://postgres@", &format!("postgres://postgres:{SECRET}@"), 1))
        })
        .collect();
    assert!(servers.iter().all(|(_, url)| url.contains(SECRET)));
    write_service_config(dir, nats, &format!("lease_seconds = 3\n{head}"), &servers, components, tenants)
}

fn to_postgres(server: &str) -> Value {
    json!({ "direction": "to-postgres", "data_dir": "site", "server": server })
}

fn submitted(client: &Client, request: &Value) -> String {
    let r = client.submit(request);
    assert_eq!(r.status, 202, "submit {request}: {r:?}");
    r.json()["id"].as_str().expect("an id").to_string()
}

/// Follow the job's events until rows are on their way to a target.
fn wait_for_rows(client: &Client, id: &str) {
    let events = client.follow(id, Duration::from_secs(120), |name, data| {
        name == "rows" && data["rows"].as_u64().unwrap_or(0) > 0 || name == "job-finished"
    });
    let last = events.last().map(|(n, _)| n.as_str()).unwrap_or("");
    assert_eq!(last, "rows", "the job was to be copying rows by now: {events:?}");
}

fn assert_target_is_source(name: &str, data_dir: &Path, pg: &PgCluster) {
    assert_eq!(pg.databases(), expected_databases(), "{name}: databases");
    let summary = compare_all(data_dir, pg);
    assert!(!summary.is_empty(), "{name}: nothing compared");
    assert!(data_dir.join(LOCK_REL).is_file(), "{name}: no lock file");
}

#[test]
fn twenty_tenants_on_two_workers_one_hostile() {
    const TENANTS: usize = 20;
    const HOSTILE: usize = 7;
    let started = Instant::now();
    let hostile = test_component("infinite-loop");
    let hostile_sha = sha256_hex(&std::fs::read(&hostile).unwrap());
    let nats = NatsServer::start();
    let clusters = PgCluster::start_many(TENANTS);
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let mut tenants = Vec::new();
    let mut data_dirs = Vec::new();
    for i in 0..TENANTS {
        let (mut t, dd) =
            TenantSetup::new(&work.path().join("roots"), &format!("tenant-{i:02}"), &format!("pg-{i:02}"))
                .with_demo_site();
        if i == HOSTILE {
            t.components.push(hostile_sha.clone());
            t.extra = "cpu_limit_seconds = 2\n".into();
        }
        tenants.push(t);
        data_dirs.push(dd);
    }
    let names: Vec<String> = (0..TENANTS).map(|i| format!("pg-{i:02}")).collect();
    let servers: Vec<(&str, &PgCluster)> = names.iter().map(String::as_str).zip(&clusters).collect();
    let config = write_config(work.path(), &nats, "", &servers, &[&hostile], &tenants.iter().collect::<Vec<_>>());
    let workers = [
        ServiceProcess::start(&config, "worker-a", &["--jobs-at-once", "4"], work.path()),
        ServiceProcess::start(&config, "worker-b", &["--jobs-at-once", "4"], work.path()),
    ];
    eprintln!("setup {:.1}s", started.elapsed().as_secs_f64());
    let submitting = Instant::now();
    let mut ids = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        let client = workers[i % 2].client(&t.token);
        let mut request = to_postgres(&t.server);
        if i == HOSTILE {
            request["component"] = json!(hostile_sha);
        }
        ids.push(submitted(&client, &request));
    }
    let mut ran_on = std::collections::BTreeSet::new();
    for (i, t) in tenants.iter().enumerate() {
        let job = workers[i % 2].client(&t.token).wait_final(&ids[i], Duration::from_secs(300));
        ran_on.insert(job["worker"].as_str().unwrap_or("").to_string());
        eprintln!(
            "{}: {} on {} in {} ms (submitted {}, started {}, finished {})",
            t.name,
            job["state"],
            job["worker"],
            job["report"]["duration_ms"],
            job["submitted_at"],
            job["started_at"],
            job["finished_at"]
        );
        if i == HOSTILE {
            assert_eq!(job["state"], "failed", "{job:#}");
            let error = job["error"].as_str().unwrap_or("");
            assert!(error.contains("exceeded its CPU limit: 2 s"), "{error}");
            clusters[i].assert_all_tables_empty("the hostile tenant");
            assert!(!data_dirs[i].join(LOCK_REL).exists());
        } else {
            assert_eq!(job["state"], "succeeded", "{}: {job:#}", t.name);
            assert!(job["rows_migrated"].as_u64().unwrap_or(0) > 0, "{job:#}");
            assert_eq!(job["report"]["postgres"], t.server.as_str(), "the report names the server, not its URL");
            assert!(!job.to_string().contains(SECRET));
            assert_target_is_source(&t.name, &data_dirs[i], &clusters[i]);
        }
    }
    eprintln!("20 jobs in {:.1}s after submission", submitting.elapsed().as_secs_f64());
    // The way back through the service: tenant-00's PostgreSQL into its data dir again.
    let client = workers[0].client(&tenants[0].token);
    let back = json!({ "direction": "to-sqlite", "data_dir": "site", "server": tenants[0].server });
    let job = client.wait_final(&submitted(&client, &back), Duration::from_secs(120));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["report"]["direction"], "postgres-to-sqlite");
    for (file, kind, _) in sqlite_targets(&data_dirs[0]) {
        compare_sqlite_files(&pristine_fixture_file(&data_dirs[0], &file), &file, kind);
    }
    assert!(!data_dirs[0].join(LOCK_REL).exists(), "the way back removes the lock file");
    assert_eq!(ran_on.len(), 2, "both workers ran jobs: {ran_on:?}");
    let cpu_limits: u64 = workers
        .iter()
        .map(|w| {
            let text = w.client("").request("GET", "/metrics", None).body;
            let line = text.lines().find(|l| l.starts_with("blocklet_migrate_sandbox_limits_hit_total{limit=\"cpu\"}"));
            line.and_then(|l| l.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0)
        })
        .sum();
    assert_eq!(cpu_limits, 1, "one CPU limit hit across the two workers");
    for w in &workers {
        assert!(!w.log_text().contains(SECRET), "a log shows a server's password:\n{}", w.log_text());
    }
}

#[test]
fn a_job_whose_worker_is_killed_mid_copy_completes_on_the_other() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (tenant, dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg").with_big_site(BIG_ROWS);
    let config = write_config(work.path(), &nats, "", &[("pg", &pg)], &[], &[&tenant]);
    let mut workers = [
        ServiceProcess::start(&config, "worker-a", &["--jobs-at-once", "2"], work.path()),
        ServiceProcess::start(&config, "worker-b", &["--jobs-at-once", "2"], work.path()),
    ];
    let id = submitted(&workers[0].client(&tenant.token), &to_postgres("pg"));
    wait_for_rows(&workers[0].client(&tenant.token), &id);
    let holder = workers[0].client(&tenant.token).job(&id)["worker"].as_str().unwrap().to_string();
    let (dead, alive) = if holder == "worker-a" { (0, 1) } else { (1, 0) };
    let killed_at = Instant::now();
    workers[dead].kill();
    eprintln!("killed {holder} mid-copy");
    let job = workers[alive].client(&tenant.token).wait_final(&id, Duration::from_secs(180));
    eprintln!("completed {:.1}s after the kill", killed_at.elapsed().as_secs_f64());
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 2, "{job:#}");
    assert_eq!(job["worker"], workers[alive].name.as_str(), "{job:#}");
    assert_target_is_source("acme", &dd, &pg);
    let users = pg.count("server_db", "users");
    assert_eq!(users, SqliteSnapshot::new(&dd.join("core/server.db")).count("users"));
}

#[test]
fn a_frozen_worker_loses_its_job_and_cannot_undo_the_work_of_the_one_that_took_it() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (tenant, dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg").with_big_site(BIG_ROWS);
    let config = write_config(work.path(), &nats, "", &[("pg", &pg)], &[], &[&tenant]);
    let workers = [
        ServiceProcess::start(&config, "worker-a", &["--jobs-at-once", "2"], work.path()),
        ServiceProcess::start(&config, "worker-b", &["--jobs-at-once", "2"], work.path()),
    ];
    let id = submitted(&workers[0].client(&tenant.token), &to_postgres("pg"));
    wait_for_rows(&workers[0].client(&tenant.token), &id);
    let holder = workers[0].client(&tenant.token).job(&id)["worker"].as_str().unwrap().to_string();
    let (frozen, alive) = if holder == "worker-a" { (0, 1) } else { (1, 0) };
    // Frozen mid-COPY, its transactions and source files open: its lease runs out and the other
    // worker takes the job; it ends the frozen attempt's sessions (which hold the tables it is
    // about to create), finds the source still open by that process and waits for it.
    workers[frozen].signal(libc::SIGSTOP);
    let client = workers[alive].client(&tenant.token);
    let started = Instant::now();
    while !workers[alive].log_text().contains("a source file is still open elsewhere; trying again later") {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", workers[alive].log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Woken, the old attempt finds its sessions gone and its lease taken: it may neither drop
    // the databases it created nor settle the job; it lets the files go and the job runs on, as
    // attempt 2 on whichever worker takes it next (the woken one is a healthy worker again).
    workers[frozen].signal(libc::SIGCONT);
    let job = client.wait_final(&id, Duration::from_secs(180));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["attempts"], 2, "{job:#}");
    let started = Instant::now();
    while !workers[frozen].log_text().contains("a later attempt took this job over") {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", workers[frozen].log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = client.job(&id);
    assert_eq!(
        (&after["state"], &after["attempts"], &after["worker"]),
        (&job["state"], &job["attempts"], &job["worker"])
    );
    assert_target_is_source("acme", &dd, &pg);
}

#[test]
fn a_tenant_runs_no_more_jobs_at_once_than_its_limit_whatever_the_workers_could_take() {
    let nats = NatsServer::start();
    let clusters = PgCluster::start_many(2);
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (mut acme, first_dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg-1").with_demo_site();
    copy_tree(&fixture_dir(), &acme.root.join("site2"));
    acme.more_servers = vec!["pg-2".into()];
    let config = write_config(work.path(), &nats, "", &[("pg-1", &clusters[0]), ("pg-2", &clusters[1])], &[], &[&acme]);
    // Room for four jobs at once; the tenant's limit is one (the default).
    let workers = [
        ServiceProcess::start(&config, "worker-a", &["--jobs-at-once", "2"], work.path()),
        ServiceProcess::start(&config, "worker-b", &["--jobs-at-once", "2"], work.path()),
    ];
    let client = workers[0].client(&acme.token);
    let second = json!({ "direction": "to-postgres", "data_dir": "site2", "server": "pg-2" });
    let ids = [submitted(&client, &to_postgres("pg-1")), submitted(&client, &second)];
    let jobs: Vec<Value> = ids.iter().map(|id| client.wait_final(id, Duration::from_secs(120))).collect();
    for job in &jobs {
        assert_eq!(job["state"], "succeeded", "{job:#}");
    }
    let span =
        |j: &Value| (j["started_at"].as_str().unwrap().to_string(), j["finished_at"].as_str().unwrap().to_string());
    let (a, b) = (span(&jobs[0]), span(&jobs[1]));
    assert!(a.1 <= b.0 || b.1 <= a.0, "the two jobs ran at the same time: {a:?} {b:?}");
    assert_target_is_source("acme site", &first_dd, &clusters[0]);
    assert_target_is_source("acme site2", &data_dir(&acme.root.join("site2")), &clusters[1]);
}

#[test]
fn a_database_file_that_leads_outside_the_tenant_s_root_is_refused() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let roots = work.path().join("roots");
    let (acme, acme_dd) = TenantSetup::new(&roots, "acme", "pg").with_demo_site();
    let (_other, other_dd) = TenantSetup::new(&roots, "other", "pg-other").with_demo_site();
    // acme's server.db is a link to the other tenant's: the data dir itself is inside acme's root.
    let server_db = acme_dd.join("core/server.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", server_db.display()));
    }
    std::os::unix::fs::symlink(other_dd.join("core/server.db"), &server_db).unwrap();
    let before = hash_tree(&other_dd);
    let config = write_config(work.path(), &nats, "", &[("pg", &pg)], &[], &[&acme]);
    let worker = ServiceProcess::start(&config, "worker", &[], work.path());
    let client = worker.client(&acme.token);
    let job = client.wait_final(&submitted(&client, &to_postgres("pg")), Duration::from_secs(60));
    assert_eq!(job["state"], "failed", "{job:#}");
    let error = job["error"].as_str().unwrap_or("");
    assert!(error.contains("outside") && error.contains("server.db"), "{error}");
    assert!(pg.databases().iter().all(|d| !expected_databases().contains(d)), "{:?}", pg.databases());
    assert_same_tree(&before, &hash_tree(&other_dd), "the other tenant's data dir");
}

#[test]
fn cancelling_a_running_job_leaves_its_target_empty() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (tenant, dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg").with_big_site(BIG_ROWS);
    let config = write_config(work.path(), &nats, "", &[("pg", &pg)], &[], &[&tenant]);
    let worker = ServiceProcess::start(&config, "worker", &[], work.path());
    let client = worker.client(&tenant.token);
    let id = submitted(&client, &to_postgres("pg"));
    wait_for_rows(&client, &id);
    let r = client.request("POST", &format!("/v1/jobs/{id}/cancel"), None);
    assert_eq!(r.status, 202, "{r:?}");
    let job = client.wait_final(&id, Duration::from_secs(60));
    assert_eq!(job["state"], "cancelled", "{job:#}");
    assert_eq!(job["outcome"], "cancelled", "{job:#}");
    let left: Vec<String> = pg.databases().into_iter().filter(|d| expected_databases().contains(d)).collect();
    assert!(left.is_empty(), "the cancelled job left databases behind: {left:?}\n{job:#}\n{}", worker.log_text());
    assert!(!dd.join(LOCK_REL).exists());
    let again = client.request("POST", &format!("/v1/jobs/{id}/cancel"), None);
    assert_eq!(again.status, 409, "{again:?}");
    assert_eq!(again.json()["error"]["code"], "conflict");
}

#[test]
fn sigterm_hands_a_running_job_back_and_a_restarted_worker_completes_it() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (tenant, dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg").with_big_site(BIG_ROWS);
    let config = write_config(work.path(), &nats, "drain_seconds = 1", &[("pg", &pg)], &[], &[&tenant]);
    let api = ServiceProcess::start(&config, "api", &["--jobs-at-once", "0"], work.path());
    let client = api.client(&tenant.token);
    let mut worker = ServiceProcess::start(&config, "worker-1", &["--no-api"], work.path());
    let id = submitted(&client, &to_postgres("pg"));
    wait_for_rows(&client, &id);
    let code = worker.terminate(Duration::from_secs(60));
    assert_eq!(code, Some(0), "the worker exits cleanly after draining:\n{}", worker.log_text());
    assert!(worker.log_text().contains("handing 1 unfinished job(s) back to the queue"), "{}", worker.log_text());
    let job = client.job(&id);
    assert_eq!(job["state"], "queued", "{job:#}");
    assert_eq!(job["attempts"], 0, "a handed-back attempt is not spent: {job:#}");
    let left: Vec<String> = pg.databases().into_iter().filter(|d| expected_databases().contains(d)).collect();
    assert!(left.is_empty(), "the handed-back attempt left databases behind: {left:?}");
    let _restarted = ServiceProcess::start(&config, "worker-1-restarted", &["--no-api"], work.path());
    let job = client.wait_final(&id, Duration::from_secs(180));
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["worker"], "worker-1-restarted");
    assert_target_is_source("acme", &dd, &pg);
}

#[test]
fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let (tenant, dd) = TenantSetup::new(&work.path().join("roots"), "acme", "pg").with_big_site(BIG_ROWS);
    let config = write_config(work.path(), &nats, "drain_seconds = 60", &[("pg", &pg)], &[], &[&tenant]);
    let api = ServiceProcess::start(&config, "api", &["--jobs-at-once", "0"], work.path());
    let client = api.client(&tenant.token);
    let mut worker = ServiceProcess::start(&config, "worker", &["--no-api"], work.path());
    let id = submitted(&client, &to_postgres("pg"));
    let events =
        client.follow(&id, Duration::from_secs(60), |name, _| name == "component-ready" || name == "job-finished");
    assert_eq!(events.last().map(|(n, _)| n.as_str()), Some("component-ready"), "{events:?}");
    let code = worker.terminate(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{}", worker.log_text());
    assert!(worker.log_text().contains("draining: 1 running job(s) may finish within 60 s"), "{}", worker.log_text());
    let job = client.job(&id);
    assert_eq!((job["state"].as_str(), job["attempts"].as_u64()), (Some("succeeded"), Some(1)), "{job:#}");
    assert_target_is_source("acme", &dd, &pg);
}

#[test]
fn refusals_have_their_status_and_change_nothing() {
    let nats = NatsServer::start();
    let pg = PgCluster::start();
    let work = TempDir::with_prefix("bm-service-").unwrap();
    let roots = work.path().join("roots");
    let (acme, _) = TenantSetup::new(&roots, "acme", "pg-acme").with_demo_site();
    let (other, _) = TenantSetup::new(&roots, "other", "pg-other").with_demo_site();
    let (mut limited, _) = TenantSetup::new(&roots, "limited", "pg-limited").with_demo_site();
    copy_tree(&fixture_dir(), &limited.root.join("site2"));
    limited.extra = "submits_per_hour = 1\n".into();
    std::os::unix::fs::symlink(other.root.join("site"), acme.root.join("escape")).unwrap();
    let hostile = test_component("infinite-loop");
    let hostile_sha = sha256_hex(&std::fs::read(&hostile).unwrap());
    let config = write_config(
        work.path(),
        &nats,
        "max_body_bytes = 4096",
        &[("pg-acme", &pg), ("pg-other", &pg), ("pg-limited", &pg)],
        &[&hostile],
        &[&acme, &other, &limited],
    );
    // An API without a worker: accepted jobs stay queued.
    let service = ServiceProcess::start(&config, "api", &["--jobs-at-once", "0"], work.path());
    let as_acme = service.client(&acme.token);
    let as_other = service.client(&other.token);
    let status = |client: &Client, method: &str, path: &str, body: Option<&str>| {
        let r = client.request(method, path, body);
        if r.status != 200 && r.status != 202 {
            let e = r.json();
            assert_eq!(e["error"]["status"], r.status, "a JSON error body: {r:?}");
            assert!(!e["error"]["message"].as_str().unwrap_or("").is_empty(), "{r:?}");
        }
        r.status
    };
    let submit = |client: &Client, request: Value| status(client, "POST", "/v1/jobs", Some(&request.to_string()));
    let good = to_postgres("pg-acme");

    assert_eq!(submit(&service.client(""), good.clone()), 401, "no token");
    assert_eq!(submit(&service.client("bmt_wrong"), good.clone()), 401, "a wrong token");
    assert_eq!(status(&as_acme, "POST", "/v1/jobs", Some("{not json")), 400);
    assert_eq!(submit(&as_acme, json!({ "direction": "sideways", "data_dir": "site", "server": "pg-acme" })), 400);
    assert_eq!(
        submit(&as_acme, json!({ "direction": "to-postgres", "data_dir": "site", "server": "pg-acme", "x": 1 })),
        400
    );
    assert_eq!(
        submit(&as_acme, json!({ "direction": "to-postgres", "data_dir": "missing", "server": "pg-acme" })),
        400
    );
    for outside in ["../other/site", other.root.join("site").to_str().unwrap(), "escape", "site/../../other/site"] {
        let request = json!({ "direction": "to-postgres", "data_dir": outside, "server": "pg-acme" });
        assert_eq!(submit(&as_acme, request), 403, "data dir {outside}");
    }
    assert_eq!(submit(&as_acme, to_postgres("pg-other")), 403, "another tenant's server");
    assert_eq!(submit(&as_acme, to_postgres("nope")), 403, "an unknown server");
    for component in [hostile_sha.as_str(), &"f".repeat(64), "latest"] {
        let mut request = good.clone();
        request["component"] = json!(component);
        assert_eq!(submit(&as_acme, request), 403, "component {component}");
    }
    let mut large = good.clone();
    large["data_dir"] = json!("x".repeat(5000));
    assert_eq!(submit(&as_acme, large), 413);
    let listed = as_acme.request("GET", "/v1/jobs", None);
    assert_eq!(listed.json().as_array().map(Vec::len), Some(0), "nothing was queued by refusals: {listed:?}");

    let id = submitted(&as_acme, &good);
    assert_eq!(submit(&as_acme, good.clone()), 409, "its data dir is in use");
    let busy = as_acme.submit(&good);
    assert!(
        busy.json()["error"]["message"].as_str().unwrap_or("").contains(&format!("in use by job {id}")),
        "{busy:?}"
    );
    let inside = json!({ "direction": "to-sqlite", "data_dir": "site/.blocklet-server", "server": "pg-acme" });
    assert_eq!(submit(&as_acme, inside), 409, "the same site, named by its data dir");
    for path in [format!("/v1/jobs/{id}"), format!("/v1/jobs/{id}/events")] {
        assert_eq!(status(&as_other, "GET", &path, None), 404, "another tenant's job: {path}");
    }
    assert_eq!(status(&as_other, "POST", &format!("/v1/jobs/{id}/cancel"), None), 404);
    assert_eq!(status(&as_acme, "GET", &format!("/v1/jobs/{}", "0".repeat(32)), None), 404);
    assert_eq!(status(&as_acme, "GET", "/v1/jobs/..%2F..%2Fetc", None), 404);
    assert_eq!(as_acme.job(&id)["state"], "queued");

    let as_limited = service.client(&limited.token);
    let first = submitted(&as_limited, &to_postgres("pg-limited"));
    assert_eq!(status(&as_limited, "POST", &format!("/v1/jobs/{first}/cancel"), None), 202);
    // The quota counts submissions, cancelled ones too.
    let second = json!({ "direction": "to-postgres", "data_dir": "site2", "server": "pg-limited" });
    assert_eq!(submit(&as_limited, second), 429);

    // A cancelled queued job lets its data dir go.
    assert_eq!(status(&as_acme, "POST", &format!("/v1/jobs/{id}/cancel"), None), 202);
    assert_eq!(as_acme.job(&id)["state"], "cancelled");
    assert_eq!(submit(&as_acme, good.clone()), 202);
    assert_eq!(as_acme.request("GET", "/v1/jobs", None).json().as_array().map(Vec::len), Some(2));
    assert_eq!(as_other.request("GET", "/v1/jobs", None).json().as_array().map(Vec::len), Some(0));

    let metrics = service.client("").request("GET", "/metrics", None);
    assert!(metrics.body.contains("blocklet_migrate_requests_refused_total{status=\"401\"} 2"), "{}", metrics.body);
    assert!(metrics.body.contains("blocklet_migrate_queue_depth{state=\"waiting\"} 3"), "{}", metrics.body);
    assert_eq!(service.client("").request("GET", "/health", None).status, 200);
    let served = service.client("").request("GET", "/openapi.json", None);
    let checked_in = std::fs::read_to_string(workspace_root().join("docs/openapi.json")).unwrap();
    assert_eq!(served.body, checked_in, "the served OpenAPI document is the checked-in one");
    assert!(pg.databases().is_empty() || pg.databases().iter().all(|d| !expected_databases().contains(d)));
}
