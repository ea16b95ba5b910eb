//! `run`: every contender on the same data, in one run, on one throwaway cluster.
//!
//! Contenders: the ceiling (pre-encoded binary COPY, keys and indexes after the data; with 1 and
//! with several connections, the faster one is *the* ceiling), our CLI end to end, pgloader on
//! `server.db` when installed, and the original `blocklet server migrate` as a fixed reference
//! rate (it is not runnable here). Every measurement starts on an empty, checkpointed cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::ceiling::{self, CeilingPlan, CeilingTimes, Prepared};
use crate::measure;
use crate::schema::Schemas;
use blocklet_migrate_test_support::{
    ClusterOptions, PgCluster, SETTINGS, default_parent, describe_storage, pin_current_thread, quote_ident,
    workspace_root,
};

pub struct RunArgs {
    pub rows: u64,
    pub seed: u64,
    pub data_dir: Option<PathBuf>,
    pub repeat: usize,
    pub ceiling_jobs: Vec<usize>,
    pub bin: PathBuf,
    pub pgloader: bool,
    pub original_rows_per_sec: f64,
    pub min_ceiling_ratio: f64,
    pub min_original_ratio: f64,
    pub min_pgloader_ratio: f64,
    pub max_rss_mb: f64,
    pub min_reverse_ratio: f64,
    pub max_first_row_ms: f64,
    /// Also measure PostgreSQL → SQLite against the bare rusqlite insert loop.
    pub reverse: bool,
    /// Leave Nagle's algorithm on for the ceiling's connections (a reproducer, not a ceiling).
    pub ceiling_nagle: bool,
    /// Also run our CLI over the cluster's Unix socket (shows the cost of TCP stalls).
    pub socket_diagnostic: bool,
    /// PostgreSQL on CPU 0, every client on the other CPUs (a diagnostic, see `run --help`).
    pub pin_postgres: bool,
    /// Where the cluster lives; `None`: [`default_parent`].
    pub cluster_dir: Option<PathBuf>,
    /// Another build of our CLI to measure in every round beside ours (a before/after check).
    pub baseline_bin: Option<PathBuf>,
}

/// The ceiling's plans: each connection count with the server's default parallel index
/// workers, and the largest count also without them.
fn ceiling_plans(jobs: &[usize]) -> Vec<CeilingPlan> {
    let mut plans: Vec<CeilingPlan> = jobs.iter().map(|&jobs| CeilingPlan { jobs, index_workers: true }).collect();
    if let Some(&most) = jobs.iter().max() {
        plans.push(CeilingPlan { jobs: most, index_workers: false });
    }
    plans
}

/// One contender's samples.
#[derive(Default)]
struct Samples {
    walls: Vec<Duration>,
    rss: Vec<u64>,
    /// The contender's own CPU time (user + sys): our CLI, pgloader, or the bench's own process
    /// for the in-process contenders (ceiling client, rusqlite loop).
    cpu: Vec<Duration>,
    /// What the PostgreSQL server spent meanwhile ([`PgCluster::cpu_time`]).
    pg_cpu: Vec<Duration>,
    phases: Vec<CeilingTimes>,
    /// From our CLI's report: ms from process start to the first row sent to a target.
    first_row_ms: Vec<u64>,
    /// From our CLI's report: ms from process start to the component being instantiated.
    ready_ms: Vec<u64>,
}

/// `(component_ready_ms, first_row_ms)` from a report our CLI wrote.
fn timeline_of(report: &Path) -> Result<(u64, u64)> {
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(report).with_context(|| report.display().to_string())?)?;
    let t = &r["timeline"];
    let get = |k: &str| t[k].as_u64().with_context(|| format!("{}: no timeline.{k}", report.display()));
    Ok((get("component_ready_ms")?, get("first_row_ms")?))
}

/// Run `work` and return its result with the CPU time (user + sys) this bench process spent
/// meanwhile: the client's CPU when the client is the bench itself (the ceiling, the rusqlite loop).
fn with_own_cpu<T>(work: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let before = own_cpu();
    let out = work()?;
    Ok((out, own_cpu() - before))
}

/// CPU time (user + sys) this bench process has used so far.
fn own_cpu() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// CPU time of this process (`RUSAGE_SELF`) or of its reaped children (`RUSAGE_CHILDREN`).
pub fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The median of `v` (the upper one of an even count); `None` when empty.
fn median_of<T: Ord + Copy>(v: &[T]) -> Option<T> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// Run `f`, returning also the CPU the PostgreSQL server spent meanwhile.
fn with_server_cpu<T>(cluster: &PgCluster, f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let before = cluster.cpu_time()?;
    let out = f()?;
    Ok((out, cluster.cpu_time()? - before))
}

impl Samples {
    fn median(&self) -> Duration {
        median_of(&self.walls).expect("samples")
    }
    /// Median CPU of the contender itself and of the PostgreSQL server.
    fn median_cpu(&self) -> (Duration, Duration) {
        (median_of(&self.cpu).unwrap_or_default(), median_of(&self.pg_cpu).unwrap_or_default())
    }
    /// Their sum, in seconds: the CPU the contender needed in all.
    fn total_cpu(&self) -> f64 {
        let (client, server) = self.median_cpu();
        (client + server).as_secs_f64()
    }
    fn min(&self) -> Duration {
        *self.walls.iter().min().expect("samples")
    }
    fn max(&self) -> Duration {
        *self.walls.iter().max().expect("samples")
    }
    fn peak_rss(&self) -> Option<u64> {
        self.rss.iter().copied().max()
    }
}

/// The cached data dir for (rows, seed), generated when missing.
fn cached_data(rows: u64, seed: u64) -> Result<PathBuf> {
    let dir = workspace_root().join("target").join("bench-data").join(format!("rows-{rows}-seed-{seed}"));
    fs::create_dir_all(dir.parent().expect("parent"))?;
    let g = blocklet_migrate_test_support::generate::generate(rows, seed, &dir)?;
    if g.reused {
        println!("data: reusing {}", dir.display());
    } else {
        println!("data: generated {rows} rows (seed {seed}) in {:.1} s into {}", g.seconds, dir.display());
    }
    Ok(dir)
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64())
}

fn fmt_int(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Check a load against the rows the source has. Returns the mismatches.
fn check_counts(cluster: &PgCluster, p: &Prepared) -> Result<Vec<String>> {
    let mut by_db: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (db, t, n) in &p.expected {
        by_db.entry(db.as_str()).or_default().push((t.as_str(), *n));
    }
    let mut bad = Vec::new();
    for (db, tables) in by_db {
        let got = cluster.try_table_counts(db)?;
        for (t, n) in tables {
            match got.get(t) {
                Some(&g) if g as u64 == n => {}
                Some(g) => bad.push(format!("{db}.{t}: {g} rows, source has {n}")),
                None => bad.push(format!("{db}.{t}: missing")),
            }
        }
    }
    Ok(bad)
}

/// Copy `server.db` (+ WAL) for pgloader, without the two `json_extract` expression indexes it
/// cannot read. Returns (file, rows of its tables).
fn pgloader_source(data_dir: &Path, work: &Path) -> Result<(PathBuf, u64)> {
    let src = data_dir.join("core");
    fs::create_dir_all(work)?;
    for name in ["server.db", "server.db-wal"] {
        let from = src.join(name);
        let to = work.join(name);
        let _ = fs::remove_file(&to);
        if from.is_file() {
            fs::copy(&from, &to)?;
        }
    }
    let file = work.join("server.db");
    let db = rusqlite::Connection::open(&file)?;
    let expr: Vec<String> = {
        let mut st = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%json_extract%'")?;
        st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    for idx in &expr {
        db.execute_batch(&format!("DROP INDEX {}", quote_ident(idx)))?;
    }
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let tables: Vec<String> = {
        let mut st = db.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )?;
        st.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
    };
    let mut rows = 0u64;
    for t in tables {
        let n: i64 = db.query_row(&format!("SELECT count(*) FROM {}", quote_ident(&t)), [], |r| r.get(0))?;
        rows += n as u64;
    }
    db.close().map_err(|(_, e)| e)?;
    Ok((file, rows))
}

/// The 1-minute load average, from /proc/loadavg.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()))
}

fn tail(path: &Path, lines: usize) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Returns the process exit code: 0 when every goal is met.
pub fn run(args: RunArgs) -> Result<i32> {
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    ensure!(
        args.bin.is_file(),
        "{} not found: build it first (cargo build --release -p blocklet-migrate)",
        args.bin.display()
    );
    let repo = workspace_root();
    let root = match &args.data_dir {
        Some(d) => d.clone(),
        None => cached_data(args.rows, args.seed)?,
    };
    let data_dir = if root.join("config.yml").is_file() { root.clone() } else { root.join(".blocklet-server") };
    ensure!(data_dir.join("config.yml").is_file(), "{} is not a Blocklet Server data dir", data_dir.display());
    let logs = repo.join("target").join("bench-data").join("logs");
    fs::create_dir_all(&logs)?;

    let schemas = Schemas::load(&repo)?;
    let t = Instant::now();
    let prepared = ceiling::prepare(&data_dir, &schemas)?;
    println!(
        "source: {} databases, {} tables, {} rows, {:.1} MB of SQLite values ({:.1} MB as binary COPY, encoded in {:.1} s, not timed)",
        prepared.dbs.len(),
        prepared.tables,
        fmt_int(prepared.rows as f64),
        mb(prepared.source_bytes),
        mb(prepared.copy_bytes()),
        t.elapsed().as_secs_f64()
    );
    for (_, name, rows) in ceiling::rows_by_kind(&prepared) {
        println!("  {name}: {} rows", fmt_int(rows as f64));
    }
    if !prepared.skipped.is_empty() {
        println!("  not in the PostgreSQL schema (not sent by the ceiling): {}", prepared.skipped.join(", "));
    }

    let load_before = loadavg();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pinning = if args.pin_postgres {
        ensure!(cpus >= 2, "--pin-postgres needs at least 2 CPUs");
        // Before any thread starts: the ceiling's and the loop's threads, and every child
        // (launcher, our CLI, pgloader), inherit the bench's affinity.
        pin_current_thread(1..cpus)?;
        Some(format!("pinned: PostgreSQL on CPU 0, every client on CPU 1–{} (diagnostic)", cpus - 1))
    } else {
        None
    };
    let cluster_parent = match &args.cluster_dir {
        Some(d) => d.clone(),
        None => default_parent(args.rows),
    };
    let cluster =
        PgCluster::try_start(&ClusterOptions { parent: Some(cluster_parent.clone()), pin_to_cpu0: args.pin_postgres })?;
    let version = cluster.try_psql("postgres", "SHOW server_version")?;
    let storage = describe_storage(&cluster_parent);
    let settings = SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
    println!(
        "cluster: PostgreSQL {version} on 127.0.0.1:{} (throwaway, {storage}), {settings}; the same for every contender",
        cluster.port()
    );
    if let Some(p) = &pinning {
        println!("{p}");
    }

    measure::install_launcher(&logs)?;
    // A private copy of the binary: a rebuild during the run must not change what is measured.
    let bin = logs.join("blocklet-migrate.under-test");
    let _ = fs::remove_file(&bin);
    fs::copy(&args.bin, &bin).with_context(|| format!("copy {}", args.bin.display()))?;
    println!("binary: {} ({:.1} MB)", args.bin.display(), mb(fs::metadata(&bin)?.len()));
    let baseline_bin = match &args.baseline_bin {
        Some(path) => {
            let copy = logs.join("blocklet-migrate.baseline");
            let _ = fs::remove_file(&copy);
            fs::copy(path, &copy).with_context(|| format!("copy {}", path.display()))?;
            println!("baseline build: {} ({:.1} MB)", path.display(), mb(fs::metadata(&copy)?.len()));
            Some(copy)
        }
        None => None,
    };

    let cli_cmd = |bin: &Path, url: String, report: &Path| {
        let mut c = Command::new(bin);
        c.args(["--dialect", "postgres", "--data-dir"])
            .arg(&data_dir)
            .arg("--force")
            .arg("--report")
            .arg(report)
            .env("ABT_NODE_POSTGRES_URL", url)
            .current_dir(&root);
        c
    };
    let ours_cmd = |url: String, report: &Path| cli_cmd(&bin, url, report);
    let tcp_url = cluster.url();
    let socket_url =
        format!("postgres://postgres@localhost:{}/postgres?host={}", cluster.port(), cluster.socket_dir().display());

    // Validation and warm-up: our CLI must migrate this data dir with exit 0.
    cluster.reset()?;
    let warm = measure::run(ours_cmd(tcp_url.clone(), &logs.join("ours-validate.json")), &logs.join("ours-validate"))?;
    if warm.code != 0 {
        bail!(
            "validation: blocklet-migrate exited {} on {} (logs in {}):\n{}\n{}",
            warm.code,
            data_dir.display(),
            logs.display(),
            tail(&logs.join("ours-validate.out"), 15),
            tail(&logs.join("ours-validate.err"), 30)
        );
    }
    let bad = check_counts(&cluster, &prepared)?;
    ensure!(bad.is_empty(), "validation: blocklet-migrate exited 0 but row counts differ:\n  {}", bad.join("\n  "));
    println!(
        "validation: blocklet-migrate migrated and verified the data dir (exit 0, {:.2} s, row counts match)",
        warm.wall.as_secs_f64()
    );

    let pgloader = if args.pgloader { which("pgloader") } else { None };
    let pgl_source = match &pgloader {
        Some(_) => Some(pgloader_source(&data_dir, &logs.join("pgloader-src"))?),
        None => None,
    };

    let mut ceil: BTreeMap<CeilingPlan, Samples> = BTreeMap::new();
    let plans = ceiling_plans(&args.ceiling_jobs);
    let mut ours = Samples::default();
    let mut baseline = Samples::default();
    let mut socket = Samples::default();
    let mut warm = Samples::default();
    let mut pgl = Samples::default();
    let mut pgl_failures: Vec<String> = Vec::new();
    let mut warnings = Vec::new();
    for round in 1..=args.repeat {
        for &plan in &plans {
            cluster.reset()?;
            let ((times, pg_cpu), own) = with_own_cpu(|| {
                with_server_cpu(&cluster, || ceiling::load(cluster.port(), &prepared, plan, "", !args.ceiling_nagle))
            })?;
            if round == 1 {
                let bad = check_counts(&cluster, &prepared)?;
                ensure!(bad.is_empty(), "ceiling load is incomplete:\n  {}", bad.join("\n  "));
            }
            println!(
                "round {round}: ceiling ({plan}) {:.2} s  [create dbs {:.2}, pre-data DDL {:.2}, COPY {:.2}, keys/indexes/FKs {:.2}], PostgreSQL CPU {:.2} s",
                times.total.as_secs_f64(),
                times.create_dbs.as_secs_f64(),
                times.pre_ddl.as_secs_f64(),
                times.copy.as_secs_f64(),
                times.post_ddl.as_secs_f64(),
                pg_cpu.as_secs_f64()
            );
            let s = ceil.entry(plan).or_default();
            s.walls.push(times.total);
            s.cpu.push(own);
            s.pg_cpu.push(pg_cpu);
            s.phases.push(times);
        }

        let mut variants: Vec<(&str, &str, &String, &Path)> = vec![("ours", "", &tcp_url, &bin)];
        if args.socket_diagnostic {
            variants.push(("socket", " over a Unix socket", &socket_url, &bin));
        }
        if let Some(baseline) = &baseline_bin {
            variants.push(("baseline", " (baseline build)", &tcp_url, baseline));
        }
        for &(tag, label, url, variant_bin) in &variants {
            cluster.reset()?;
            let report_file = logs.join(format!("{tag}-{round}.json"));
            let (r, pg_cpu) = with_server_cpu(&cluster, || {
                measure::run(cli_cmd(variant_bin, url.clone(), &report_file), &logs.join(format!("{tag}-{round}")))
            })?;
            if r.code != 0 {
                bail!(
                    "round {round}: blocklet-migrate{label} exited {}:\n{}",
                    r.code,
                    tail(&logs.join(format!("{tag}-{round}.err")), 30)
                );
            }
            let bad = check_counts(&cluster, &prepared)?;
            if !bad.is_empty() {
                warnings.push(format!("round {round}: blocklet-migrate{label}: {}", bad.join("; ")));
            }
            println!(
                "round {round}: blocklet-migrate{label} {:.2} s, peak RSS {:.1} MB, CPU {:.2} s user+sys, PostgreSQL CPU {:.2} s",
                r.wall.as_secs_f64(),
                mb(r.max_rss),
                (r.user + r.sys).as_secs_f64(),
                pg_cpu.as_secs_f64()
            );
            let s = match tag {
                "ours" => &mut ours,
                "socket" => &mut socket,
                _ => &mut baseline,
            };
            let (ready, first_row) = timeline_of(&report_file)?;
            s.ready_ms.push(ready);
            s.first_row_ms.push(first_row);
            s.walls.push(r.wall);
            s.rss.push(r.max_rss);
            s.cpu.push(r.user + r.sys);
            s.pg_cpu.push(pg_cpu);
        }

        // Warm start: the same run into databases that already exist (empty), so that the first
        // row is not behind PostgreSQL's own CREATE DATABASE (~0.1–0.4 s each here).
        cluster.reset()?;
        for db in &prepared.dbs {
            cluster.try_psql("postgres", &format!("CREATE DATABASE \"{}\"", db.source.pg_name))?;
        }
        // Like every measurement: start on a checkpointed cluster, not behind the flush of
        // what these CREATE DATABASEs wrote.
        cluster.try_psql("postgres", "CHECKPOINT")?;
        let warm_report = logs.join(format!("warm-{round}.json"));
        let r = measure::run(ours_cmd(tcp_url.clone(), &warm_report), &logs.join(format!("warm-{round}")))?;
        ensure!(
            r.code == 0,
            "round {round}: warm-start run exited {}:\n{}",
            r.code,
            tail(&logs.join(format!("warm-{round}.err")), 30)
        );
        let (ready, first_row) = timeline_of(&warm_report)?;
        println!(
            "round {round}: blocklet-migrate into existing empty databases {:.2} s: component ready at {ready} ms, first row at {first_row} ms",
            r.wall.as_secs_f64()
        );
        warm.ready_ms.push(ready);
        warm.first_row_ms.push(first_row);

        if let (Some(bin), Some((file, server_rows))) = (&pgloader, &pgl_source) {
            cluster.reset()?;
            cluster.try_psql("postgres", "CREATE DATABASE pgloader_server_db")?;
            let mut c = Command::new(bin);
            c.arg(format!("sqlite://{}", file.display()))
                .arg(format!("postgresql://postgres@127.0.0.1:{}/pgloader_server_db", cluster.port()));
            let (r, pg_cpu) = with_server_cpu(&cluster, || measure::run(c, &logs.join(format!("pgloader-{round}"))))?;
            let loaded: u64 = cluster.try_table_counts("pgloader_server_db")?.values().map(|&n| n as u64).sum();
            println!(
                "round {round}: pgloader (server.db) {:.2} s, exit {}, {} of {} rows loaded, peak RSS {:.1} MB",
                r.wall.as_secs_f64(),
                r.code,
                fmt_int(loaded as f64),
                fmt_int(*server_rows as f64),
                mb(r.max_rss)
            );
            if r.code != 0 || loaded != *server_rows {
                let why = tail(&logs.join(format!("pgloader-{round}.err")), 200)
                    .lines()
                    .find(|l| l.contains("exhausted") || l.contains("ERROR") || l.contains("FATAL"))
                    .map(|l| format!(": {}", l.trim()))
                    .unwrap_or_default();
                pgl_failures.push(format!(
                    "round {round}: exit {}, {} of {} rows{why}",
                    r.code,
                    fmt_int(loaded as f64),
                    fmt_int(*server_rows as f64)
                ));
            }
            pgl.walls.push(r.wall);
            pgl.rss.push(r.max_rss);
            pgl.cpu.push(r.user + r.sys);
            pgl.pg_cpu.push(pg_cpu);
        }
    }
    // ---- PostgreSQL → SQLite, from what our CLI loaded (validated above)
    let mut rev_base = Samples::default();
    let mut rev_ours = Samples::default();
    let mut rev_baseline_build = Samples::default();
    let mut rev_rows = 0u64;
    if args.reverse {
        let files = crate::reverse::load_sources(&data_dir)?;
        rev_rows = files.iter().map(|f| f.rows).sum();
        cluster.reset()?;
        let fill =
            measure::run(ours_cmd(tcp_url.clone(), &logs.join("reverse-fill.json")), &logs.join("reverse-fill"))?;
        ensure!(
            fill.code == 0,
            "loading PostgreSQL for the reverse run failed:\n{}",
            tail(&logs.join("reverse-fill.err"), 30)
        );
        cluster.try_psql("postgres", "CHECKPOINT")?;
        let base_dir = logs.join("reverse-baseline");
        let ours_dir = logs.join("reverse-ours");
        for round in 1..=args.repeat {
            let _ = fs::remove_dir_all(&base_dir);
            let (t, own) = with_own_cpu(|| crate::reverse::insert_loop(&files, &base_dir))?;
            println!(
                "round {round}: PostgreSQL → SQLite baseline (rusqlite insert loop) {:.2} s, CPU {:.2} s",
                t.as_secs_f64(),
                own.as_secs_f64()
            );
            rev_base.walls.push(t);
            rev_base.cpu.push(own);

            let mut builds: Vec<(&str, &Path)> = vec![("", &bin)];
            if let Some(baseline) = &baseline_bin {
                builds.push(("-baseline-build", baseline));
            }
            for &(tag, build) in &builds {
                crate::reverse::empty_data_dir(&data_dir, &ours_dir)?;
                let mut c = Command::new(build);
                c.args(["--dialect", "sqlite", "--data-dir"])
                    .arg(&ours_dir)
                    .arg("--report")
                    .arg(logs.join(format!("reverse{tag}-{round}.json")))
                    .env("ABT_NODE_POSTGRES_URL", &tcp_url)
                    .current_dir(&ours_dir);
                let log = logs.join(format!("reverse{tag}-{round}"));
                let (r, pg_cpu) = with_server_cpu(&cluster, || measure::run(c, &log))?;
                if r.code != 0 {
                    bail!(
                        "round {round}: blocklet-migrate{tag} --dialect sqlite exited {}:\n{}",
                        r.code,
                        tail(&logs.join(format!("reverse{tag}-{round}.err")), 30)
                    );
                }
                let written = crate::reverse::count_rows(&ours_dir, &files)?;
                if written != rev_rows {
                    warnings.push(format!(
                        "round {round}: PostgreSQL → SQLite{tag} wrote {written} rows, the source files have {rev_rows}"
                    ));
                }
                println!(
                    "round {round}: blocklet-migrate{tag} --dialect sqlite {:.2} s, peak RSS {:.1} MB, CPU {:.2} s user+sys, PostgreSQL CPU {:.2} s",
                    r.wall.as_secs_f64(),
                    mb(r.max_rss),
                    (r.user + r.sys).as_secs_f64(),
                    pg_cpu.as_secs_f64()
                );
                let s = if tag.is_empty() { &mut rev_ours } else { &mut rev_baseline_build };
                s.walls.push(r.wall);
                s.rss.push(r.max_rss);
                s.cpu.push(r.user + r.sys);
                s.pg_cpu.push(pg_cpu);
            }
        }
        let _ = fs::remove_dir_all(&base_dir);
        let _ = fs::remove_dir_all(&ours_dir);
    }
    cluster.reset()?;

    // ---- report
    let rows = prepared.rows as f64;
    let src_mb = mb(prepared.source_bytes);
    let best_ceiling =
        ceil.iter().min_by_key(|(_, s)| s.median()).map(|(j, s)| (*j, s.median())).context("no ceiling measured")?;
    let ours_rate = rows / ours.median().as_secs_f64();
    let ceiling_rate = rows / best_ceiling.1.as_secs_f64();
    let mut report = String::new();
    writeln!(
        report,
        "\n== blocklet-migrate bench: {} rows ({}), {} CPUs, PostgreSQL {version} ({settings}; {storage}) ==",
        fmt_int(rows),
        match &args.data_dir {
            Some(d) => format!("data dir {}", d.display()),
            None => format!("{} generated rows, seed {}", fmt_int(args.rows as f64), args.seed),
        },
        cpus
    )?;
    writeln!(
        report,
        "source {:.1} MB of SQLite values in {} tables of {} databases; median of {} run(s), [min–max]; \
         load average {load_before} at the start, {} at the end (other work on the machine skews times)",
        src_mb,
        prepared.tables,
        prepared.dbs.len(),
        args.repeat,
        loadavg()
    )?;
    if let Some(p) = &pinning {
        writeln!(report, "{p}: not how the goals are judged")?;
    }
    writeln!(report, "\n| contender | seconds | rows/s | MB/s | vs ceiling | peak RSS |\n|---|---|---|---|---|---|")?;
    for (plan, s) in &ceil {
        let m = s.median().as_secs_f64();
        writeln!(
            report,
            "| ceiling: binary COPY, {plan} | {} [{}–{}] | {} | {:.1} | {:.2}× | – |",
            fmt_secs(s.median()),
            fmt_secs(s.min()),
            fmt_secs(s.max()),
            fmt_int(rows / m),
            src_mb / m,
            (rows / m) / ceiling_rate
        )?;
    }
    // Our CLI's rows: the same columns for this build, the baseline build and the socket run.
    let mut cli_rows = vec![("**blocklet-migrate** (end to end)", &ours)];
    if !baseline.walls.is_empty() {
        cli_rows.push(("blocklet-migrate, baseline build (`--baseline-bin`)", &baseline));
    }
    if !socket.walls.is_empty() {
        cli_rows.push(("blocklet-migrate over a Unix socket (diagnostic: no TCP delayed-ACK stalls)", &socket));
    }
    for (name, s) in cli_rows {
        let m = s.median().as_secs_f64();
        writeln!(
            report,
            "| {name} | {} [{}–{}] | {} | {:.1} | {:.2}× | {:.1} MB |",
            fmt_secs(s.median()),
            fmt_secs(s.min()),
            fmt_secs(s.max()),
            fmt_int(rows / m),
            src_mb / m,
            (rows / m) / ceiling_rate,
            mb(s.peak_rss().unwrap_or(0))
        )?;
    }
    let pgl_rate = match (&pgl_source, pgl.walls.is_empty()) {
        (Some((_, server_rows)), false) if pgl_failures.is_empty() => {
            let r = *server_rows as f64 / pgl.median().as_secs_f64();
            writeln!(
                report,
                "| pgloader (server.db only: {} rows) | {} [{}–{}] | {} | – | {:.2}× | {:.1} MB |",
                fmt_int(*server_rows as f64),
                fmt_secs(pgl.median()),
                fmt_secs(pgl.min()),
                fmt_secs(pgl.max()),
                fmt_int(r),
                r / ceiling_rate,
                mb(pgl.peak_rss().unwrap_or(0))
            )?;
            Some(r)
        }
        (Some((_, server_rows)), false) => {
            writeln!(
                report,
                "| pgloader (server.db only: {} rows) | **failed** in {} of {} runs | – | – | – | {:.1} MB |",
                fmt_int(*server_rows as f64),
                pgl_failures.len(),
                pgl.walls.len(),
                mb(pgl.peak_rss().unwrap_or(0))
            )?;
            None
        }
        _ => None,
    };
    writeln!(
        report,
        "| original `blocklet server migrate` (not runnable here: fixed reference from issue 6) | – | {} | – | {:.3}× | – |",
        fmt_int(args.original_rows_per_sec),
        args.original_rows_per_sec / ceiling_rate
    )?;
    if !rev_ours.walls.is_empty() {
        writeln!(
            report,
            "\n| PostgreSQL → SQLite ({} rows) | seconds | rows/s | vs baseline | peak RSS |\n|---|---|---|---|---|",
            fmt_int(rev_rows as f64)
        )?;
        let base = rev_base.median().as_secs_f64();
        let mut contenders = vec![
            ("baseline: rusqlite prepared-insert loop, rows in memory", &rev_base),
            ("**blocklet-migrate --dialect sqlite** (end to end)", &rev_ours),
        ];
        if !rev_baseline_build.walls.is_empty() {
            contenders
                .push(("blocklet-migrate --dialect sqlite, baseline build (`--baseline-bin`)", &rev_baseline_build));
        }
        for (name, s) in contenders {
            let m = s.median().as_secs_f64();
            writeln!(
                report,
                "| {name} | {} [{}–{}] | {} | {:.2}× | {} |",
                fmt_secs(s.median()),
                fmt_secs(s.min()),
                fmt_secs(s.max()),
                fmt_int(rev_rows as f64 / m),
                base / m,
                s.peak_rss().map_or("–".into(), |b| format!("{:.1} MB", mb(b)))
            )?;
        }
    }
    if let (Some(path), false) = (&args.baseline_bin, baseline.walls.is_empty()) {
        let ratio = |base: &Samples, ours: &Samples| base.median().as_secs_f64() / ours.median().as_secs_f64();
        let mut line = format!(
            "\nthis build / the baseline build ({}), same run, speed (baseline's median time over ours): \
             SQLite → PostgreSQL {:.3}×, peak RSS {:.1} vs {:.1} MB",
            path.display(),
            ratio(&baseline, &ours),
            mb(ours.peak_rss().unwrap_or(0)),
            mb(baseline.peak_rss().unwrap_or(0))
        );
        if let (Some(ours_first), Some(base_first)) = (median_of(&ours.first_row_ms), median_of(&baseline.first_row_ms))
        {
            line += &format!(", first row {ours_first} vs {base_first} ms");
        }
        if !rev_baseline_build.walls.is_empty() {
            line += &format!("; PostgreSQL → SQLite {:.3}×", ratio(&rev_baseline_build, &rev_ours));
        }
        writeln!(report, "{line}")?;
    }
    let (bj, _) = best_ceiling;
    let ph = &ceil[&bj].phases;
    let avg = |f: fn(&CeilingTimes) -> Duration| ph.iter().map(|t| f(t).as_secs_f64()).sum::<f64>() / ph.len() as f64;
    writeln!(
        report,
        "\nceiling = the fastest plan ({bj}): create databases {:.2} s, pre-data DDL {:.2} s, COPY {:.2} s, keys/indexes/FKs {:.2} s (mean)",
        avg(|t| t.create_dbs),
        avg(|t| t.pre_ddl),
        avg(|t| t.copy),
        avg(|t| t.post_ddl)
    )?;
    writeln!(
        report,
        "best run vs best ceiling run: {:.2}×",
        ceil.values().map(|s| s.min()).min().unwrap_or_default().as_secs_f64() / ours.min().as_secs_f64()
    )?;
    // Where the cores went: on a machine with few cores, the client's CPU and PostgreSQL's
    // share them, so the total CPU a contender needs bounds its wall time.
    writeln!(
        report,
        "\n| CPU, median | client s | PostgreSQL s | total s | wall s | cores busy |\n|---|---|---|---|---|---|"
    )?;
    let ceiling_name = format!("ceiling, {bj} (client: the bench's own process)");
    let mut cpu_rows: Vec<(&str, &Samples)> = vec![(&ceiling_name, &ceil[&bj]), ("blocklet-migrate", &ours)];
    if !pgl.pg_cpu.is_empty() {
        cpu_rows.push(("pgloader (server.db only)", &pgl));
    }
    if !rev_ours.walls.is_empty() {
        cpu_rows.push(("PostgreSQL → SQLite baseline (rusqlite loop)", &rev_base));
        cpu_rows.push(("blocklet-migrate --dialect sqlite", &rev_ours));
    }
    for (name, s) in cpu_rows {
        let (client, server) = s.median_cpu();
        let total = s.total_cpu();
        writeln!(
            report,
            "| {name} | {:.2} | {:.2} | {total:.2} | {} | {:.2} of {cpus} |",
            client.as_secs_f64(),
            server.as_secs_f64(),
            fmt_secs(s.median()),
            total / s.median().as_secs_f64()
        )?;
    }
    writeln!(
        report,
        "CPU the ceiling needs / CPU we need: {:.2} (the wall-time ratio when both keep every core busy)",
        ceil[&bj].total_cpu() / ours.total_cpu()
    )?;
    // What the server alone spends on us (our data, indexes and verification read-back) bounds
    // the ratio even if our client cost nothing, as long as both share these cores.
    let ours_server = ours.median_cpu().1.as_secs_f64();
    if ours_server > 0.0 {
        writeln!(
            report,
            "CPU the ceiling needs / PostgreSQL's CPU for us alone: {:.2} (the most the cores allow, even with a client that cost nothing)",
            ceil[&bj].total_cpu() / ours_server
        )?;
    }

    // ---- goals
    let mut missed = 0;
    let mut goal = |name: &str, value: String, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "ok",
            Some(false) => {
                missed += 1;
                "MISSED"
            }
            None => "skipped",
        };
        format!("| {name} | {value} | {verdict} |")
    };
    let mut lines = Vec::new();
    let r = ours_rate / ceiling_rate;
    lines.push(goal(
        &format!("ours / ceiling ≥ {}", args.min_ceiling_ratio),
        format!("{r:.2}"),
        Some(r >= args.min_ceiling_ratio),
    ));
    let r = ours_rate / args.original_rows_per_sec;
    lines.push(goal(
        &format!("ours / original ≥ {}", args.min_original_ratio),
        format!("{r:.1}"),
        Some(r >= args.min_original_ratio),
    ));
    match pgl_rate {
        Some(p) => {
            let r = ours_rate / p;
            lines.push(goal(
                &format!("ours / pgloader ≥ {}", args.min_pgloader_ratio),
                format!("{r:.2}"),
                Some(r >= args.min_pgloader_ratio),
            ));
        }
        None => lines.push(goal(
            &format!("ours / pgloader ≥ {}", args.min_pgloader_ratio),
            if !pgl_failures.is_empty() {
                format!("pgloader failed ({})", pgl_failures.join("; "))
            } else if args.pgloader {
                "pgloader not on PATH (apt-get install pgloader)".into()
            } else {
                "--no-pgloader".into()
            },
            None,
        )),
    }
    let rss = mb(ours.peak_rss().unwrap_or(0));
    lines.push(goal(
        &format!("peak RSS ≤ {} MB", args.max_rss_mb),
        format!("{rss:.1} MB"),
        Some(rss <= args.max_rss_mb),
    ));
    match (median_of(&warm.first_row_ms), median_of(&warm.ready_ms), median_of(&ours.first_row_ms)) {
        (Some(first), Some(ready), Some(created)) => lines.push(goal(
            &format!("warm start to first row ≤ {} ms", args.max_first_row_ms),
            format!(
                "{first} ms into existing databases (component ready at {ready} ms); {created} ms when the run creates them \
                 (medians, from the report's timeline)"
            ),
            Some(first as f64 <= args.max_first_row_ms),
        )),
        _ => lines.push(goal("warm start to first row", "no timeline".into(), None)),
    }
    if rev_ours.walls.is_empty() {
        lines.push(goal("PostgreSQL → SQLite ≥ 0.8 × rusqlite insert loop", "--no-reverse".into(), None));
    } else {
        let r = rev_base.median().as_secs_f64() / rev_ours.median().as_secs_f64();
        lines.push(goal(
            &format!("PostgreSQL → SQLite ≥ {} × rusqlite insert loop", args.min_reverse_ratio),
            format!("{r:.2}"),
            Some(r >= args.min_reverse_ratio),
        ));
    }
    writeln!(report, "\n| goal | measured | |\n|---|---|---|")?;
    for l in lines {
        writeln!(report, "{l}")?;
    }
    for w in &warnings {
        writeln!(report, "warning: {w}")?;
    }
    writeln!(report, "logs: {}", logs.display())?;
    print!("{report}");
    fs::write(logs.join("report.md"), &report)?;
    drop(cluster);
    if missed > 0 {
        println!("{missed} goal(s) missed");
        Ok(1)
    } else {
        println!("all measured goals met");
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_also_tries_its_largest_connection_count_without_index_workers() {
        let plan = |jobs, index_workers| CeilingPlan { jobs, index_workers };
        assert_eq!(ceiling_plans(&[1, 2]), [plan(1, true), plan(2, true), plan(2, false)]);
        assert_eq!(ceiling_plans(&[1]), [plan(1, true), plan(1, false)]);
        assert_eq!(plan(2, false).to_string(), "2 connections, no parallel index workers");
        assert_eq!(plan(1, true).to_string(), "1 connection");
    }
}
