//! `service`: the hosting service against the CLI spawned once per tenant, in one run.
//!
//! N tenants, each a copy of the demo fixture and its own throwaway PostgreSQL cluster (the
//! bundled component plans fixed database names). First every tenant is migrated by spawning
//! the CLI, `jobs_at_once` processes at a time (the same concurrency the service gets); then the
//! databases are dropped and the same tenants are submitted over HTTP to one `serve` process
//! (API and worker, `jobs_at_once` jobs at once), twice in a row, so that the process's peak RSS
//! after N and after 2N jobs can be compared; last, single jobs to the warm idle service give the
//! time from submission to the first row, both when the job creates its databases and when
//! they exist (empty), as the CLI's warm-start figure is measured.

use anyhow::{Context, Result, bail, ensure};
use blocklet_migrate_test_support::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct ServiceArgs {
    pub tenants: usize,
    pub jobs_at_once: usize,
    pub bin: PathBuf,
    pub min_ratio: f64,
    pub max_first_row_ms: f64,
    pub first_row_samples: usize,
}

struct Tenant {
    setup: TenantSetup,
    data_dir: PathBuf,
    pg: PgCluster,
}

/// Drop every database a migration made and the lock file, so the tenant can be migrated again.
fn reset(t: &Tenant) -> Result<()> {
    t.pg.reset()?;
    let lock = t.data_dir.join(LOCK_REL);
    if lock.exists() {
        std::fs::remove_file(&lock)?;
    }
    Ok(())
}

/// CPU time of this process's reaped children (the CLI runs).
fn children_cpu() -> Duration {
    crate::run::rusage_cpu(libc::RUSAGE_CHILDREN)
}

/// CPU time the service process has used so far.
fn process_cpu(pid: u32) -> Duration {
    process_cpu_time(pid).unwrap_or_default()
}

/// CPU time every tenant's PostgreSQL has used so far.
fn servers_cpu(tenants: &[Tenant]) -> Result<Duration> {
    tenants.iter().map(|t| t.pg.cpu_time()).sum()
}

/// Peak resident memory of process `pid` (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: ServiceArgs) -> Result<i32> {
    ensure!(args.tenants >= 1 && args.jobs_at_once >= 1, "--tenants and --jobs-at-once must be at least 1");
    let work = tempfile::Builder::new().prefix("bm-bench-service-").tempdir()?;
    let started = Instant::now();
    let nats = NatsServer::try_start()?;
    // In the run bench's place for clusters (a tmpfs when there is one): on ext4, creating a
    // database just after dropping others can stall in the inode allocator, and every round
    // here drops and creates each tenant's databases.
    let parent = default_parent(0);
    let clusters: Vec<PgCluster> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..args.tenants)
            .map(|_| {
                let options = ClusterOptions { parent: Some(parent.clone()), pin_to_cpu0: false };
                scope.spawn(move || PgCluster::try_start(&options))
            })
            .collect();
        starting
            .into_iter()
            .map(|s| s.join().map_err(|_| anyhow::anyhow!("a cluster start panicked"))?)
            .collect::<Result<_>>()
    })?;
    let mut tenants = Vec::new();
    for (i, pg) in clusters.into_iter().enumerate() {
        let (setup, data_dir) =
            TenantSetup::new(&work.path().join("roots"), &format!("tenant-{i:03}"), &format!("pg-{i:03}"))
                .with_demo_site();
        tenants.push(Tenant { setup, data_dir, pg });
    }
    eprintln!("{} tenants set up in {:.1} s", args.tenants, started.elapsed().as_secs_f64());

    // The CLI, once per tenant, `jobs_at_once` at a time; one run first warms its compile cache.
    let cache = work.path().join("cache");
    let cli = |t: &Tenant| -> Result<()> {
        let out = Command::new(&args.bin)
            .args(["--dialect", "postgres", "--quiet", "--data-dir"])
            .arg(&t.data_dir)
            .env("ABT_NODE_POSTGRES_URL", t.pg.url())
            .env("BLOCKLET_MIGRATE_CACHE_DIR", &cache)
            .output()?;
        ensure!(out.status.success(), "the CLI failed for {}: {}", t.setup.name, String::from_utf8_lossy(&out.stderr));
        Ok(())
    };
    cli(&tenants[0])?;
    reset(&tenants[0])?;
    let (cli_cpu_before, cli_pg_before) = (children_cpu(), servers_cpu(&tenants)?);
    let cli_started = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..args.jobs_at_once)
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(t) = tenants.get(i) else { return Ok(()) };
                        cli(t)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow::anyhow!("a CLI thread panicked"))??;
        }
        Ok(())
    })?;
    let cli_seconds = cli_started.elapsed().as_secs_f64();
    let cli_cpu = (children_cpu() - cli_cpu_before).as_secs_f64() * 1000.0 / args.tenants as f64;
    let cli_pg = (servers_cpu(&tenants)? - cli_pg_before).as_secs_f64() * 1000.0 / args.tenants as f64;
    let cli_rate = args.tenants as f64 / cli_seconds;
    eprintln!("CLI: {} tenants in {cli_seconds:.2} s ({cli_rate:.2} tenants/s)", args.tenants);
    for t in &tenants {
        reset(t)?;
    }

    // The service: one process, the same tenants twice.
    let servers: Vec<(String, String)> = tenants.iter().map(|t| (t.setup.server.clone(), t.pg.url())).collect();
    let servers: Vec<(&str, String)> = servers.iter().map(|(n, u)| (n.as_str(), u.clone())).collect();
    let setups: Vec<&TenantSetup> = tenants.iter().map(|t| &t.setup).collect();
    let config = write_service_config(
        work.path(),
        &nats,
        &format!("jobs_at_once = {}", args.jobs_at_once),
        &servers,
        &[],
        &setups,
    );
    let service = ServiceProcess::start_binary(&args.bin, &config, "bench", &[], work.path());
    let submit = |t: &Tenant| -> Result<String> {
        let request = json!({ "direction": "to-postgres", "data_dir": "site", "server": t.setup.server });
        let r = service.client(&t.setup.token).submit(&request);
        ensure!(r.status == 202, "submit for {}: {r:?}", t.setup.name);
        Ok(r.json()["id"].as_str().context("no id")?.to_string())
    };
    let await_success = |t: &Tenant, id: &str| -> Result<()> {
        let job = service.client(&t.setup.token).wait_final(id, Duration::from_secs(600));
        ensure!(job["state"] == "succeeded", "{}: {job:#}", t.setup.name);
        Ok(())
    };
    // Warm up: the first job of the process.
    let id = submit(&tenants[0])?;
    await_success(&tenants[0], &id)?;
    reset(&tenants[0])?;
    let mut rounds = Vec::new();
    let mut service_cpu = 0.0;
    let mut service_pg = 0.0;
    for round in 1..=2 {
        let (cpu_before, pg_before) = (process_cpu(service.pid()), servers_cpu(&tenants)?);
        let round_started = Instant::now();
        let ids: Vec<String> = tenants.iter().map(&submit).collect::<Result<_>>()?;
        for (t, id) in tenants.iter().zip(&ids) {
            await_success(t, id)?;
        }
        let seconds = round_started.elapsed().as_secs_f64();
        if round == 1 {
            service_cpu = (process_cpu(service.pid()) - cpu_before).as_secs_f64() * 1000.0 / args.tenants as f64;
            service_pg = (servers_cpu(&tenants)? - pg_before).as_secs_f64() * 1000.0 / args.tenants as f64;
        }
        let peak = peak_rss_mib(service.pid()).unwrap_or(0.0);
        eprintln!(
            "service round {round}: {} tenants in {seconds:.2} s ({:.2} tenants/s), peak RSS {peak:.0} MiB",
            args.tenants,
            args.tenants as f64 / seconds
        );
        rounds.push((seconds, peak));
        for t in &tenants {
            reset(t)?;
        }
    }

    // First row after submission, warm and idle.
    let t = &tenants[0];
    let client = service.client(&t.setup.token);
    let mut first_rows = [Vec::new(), Vec::new()];
    for sample in 0..args.first_row_samples * 2 {
        let existing = sample % 2 == 1;
        if existing {
            for db in expected_databases() {
                t.pg.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
            }
        }
        let submitted = Instant::now();
        let id = submit(t)?;
        let mut at = None;
        client.follow(&id, Duration::from_secs(60), |name, _| {
            if name == "first-row" && at.is_none() {
                at = Some(submitted.elapsed());
            }
            name == "first-row" || name == "job-finished"
        });
        await_success(t, &id)?;
        reset(t)?;
        let Some(at) = at else { bail!("job {id} sent no first-row event") };
        first_rows[existing as usize].push(at.as_secs_f64() * 1000.0);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (first_created, first_existing) = (median(&mut first_rows[0]), median(&mut first_rows[1]));

    let service_rate = args.tenants as f64 / rounds[0].0;
    let ratio = service_rate / cli_rate;
    let growth = rounds[1].1 - rounds[0].1;
    println!(
        "\nThe hosting service: {} demo-size tenants, {} jobs at once, each tenant its own cluster",
        args.tenants, args.jobs_at_once
    );
    println!("  CLI spawned per tenant:  {cli_seconds:>6.2} s  {cli_rate:>6.2} tenants/s");
    println!("  one serve process:       {:>6.2} s  {service_rate:>6.2} tenants/s  ({ratio:.2}× the CLI)", rounds[0].0);
    println!("  again, same process:     {:>6.2} s  {:>6.2} tenants/s", rounds[1].0, args.tenants as f64 / rounds[1].0);
    println!(
        "  CPU per tenant: blocklet-migrate {cli_cpu:.0} ms as a CLI, {service_cpu:.0} ms in the service; \
         PostgreSQL {cli_pg:.0} ms (CLI round), {service_pg:.0} ms (service round)"
    );
    let bound = (cli_cpu + cli_pg) / (service_cpu + service_pg).max(1.0);
    println!(
        "  the most a CPU-bound machine allows: (CLI + its PostgreSQL) / (service + its PostgreSQL) = {bound:.2}×"
    );
    println!(
        "  serve peak RSS: {:.0} MiB after {} jobs, {:.0} MiB after {} (+{growth:.0} MiB)",
        rounds[0].1,
        args.tenants + 1,
        rounds[1].1,
        2 * args.tenants + 1
    );
    println!(
        "  submission to first row (median of {}): {first_created:.0} ms creating the databases, {first_existing:.0} ms into existing empty ones",
        args.first_row_samples
    );
    let goals = [
        (format!("tenants/s ≥ {}× the CLI's", args.min_ratio), ratio >= args.min_ratio),
        // "Does not grow with N": the second N jobs may not raise the peak by more than a tenth.
        ("peak RSS flat from N to 2N jobs (≤ +10 %)".to_string(), growth <= rounds[0].1 * 0.10),
        (
            format!("warm first row ≤ {} ms (existing databases)", args.max_first_row_ms),
            first_existing <= args.max_first_row_ms,
        ),
    ];
    let mut missed = 0;
    for (goal, met) in &goals {
        println!("  {} {goal}", if *met { "met   " } else { "MISSED" });
        missed += usize::from(!met);
    }
    Ok(if missed == 0 { 0 } else { 1 })
}
