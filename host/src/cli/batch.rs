//! `blocklet-migrate batch JOBS.toml`: many tenants' migrations in one process.
//!
//! One engine (pooling allocator, shared epoch ticker) serves every job; each job runs in its
//! own store with its own limits and only its own database connections, so a failing or
//! hostile job cannot disturb the others. Components are compiled once per distinct file.
//!
//! ```toml
//! parallel = 4                         # optional; --parallel wins
//!
//! [[job]]
//! name = "tenant-a"                    # used to prefix its output lines
//! data_dir = "/srv/a/.blocklet-server"
//! postgres_url = "postgres://user:pw@db:5432/postgres"
//! dialect = "postgres"                 # or "sqlite"; default postgres
//! component = "/opt/migrations/x.wasm" # optional; default: the bundled one (a file must be signed
//!                                      # by a trusted key: `batch --trusted-key`, the key directory,
//!                                      # or `batch --allow-unsigned`, as for one migration)
//! force = false                        # optional
//! memory_limit_mib = 256               # optional
//! cpu_limit_seconds = 30               # optional
//! timeout_seconds = 43200              # optional
//! stall_limit_seconds = 60             # optional
//! databases = ["server_db", "app_*"]   # optional: the only PostgreSQL databases it may use
//! report = "/var/log/a.json"           # optional per-job report
//! ```

use super::{Dialect, EXIT_FAILED, EXIT_SUCCESS, EXIT_USAGE, TrustArgs};
use crate::job::{ComponentChoice, JobOptions, JobSpec, OutputOptions, admit, console};
use crate::sandbox::signature::BUNDLED_SIGNATURE;
use crate::sandbox::{
    BUNDLED_COMPONENT, Cancel, DEFAULT_CPU_SECONDS, DEFAULT_MEMORY_LIMIT, DEFAULT_STALL_SECONDS,
    DEFAULT_TIMEOUT_SECONDS, Limits, Runtime, pooled_engine,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct JobsFile {
    parallel: Option<usize>,
    #[serde(rename = "job", default)]
    jobs: Vec<TenantJob>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct TenantJob {
    name: String,
    data_dir: PathBuf,
    postgres_url: String,
    #[serde(default = "default_dialect")]
    dialect: String,
    component: Option<PathBuf>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    skip_rejects: bool,
    memory_limit_mib: Option<u64>,
    cpu_limit_seconds: Option<u64>,
    timeout_seconds: Option<u64>,
    stall_limit_seconds: Option<u64>,
    databases: Option<Vec<String>>,
    report: Option<PathBuf>,
}

fn default_dialect() -> String {
    "postgres".into()
}

/// Jobs run at once, unless the file or `--parallel` says otherwise.
pub const DEFAULT_JOBS_AT_ONCE: usize = 4;

/// A component compiled for the shared engine, where it came from, and who vouches for it.
type Compiled = (Arc<Runtime>, String, String);

/// One job's outcome, for the summary.
#[derive(Serialize, Debug)]
pub struct TenantOutcome {
    pub name: String,
    pub exit_code: u8,
    pub seconds: f64,
}

#[derive(Serialize, Debug)]
struct BatchReport {
    report_version: u32,
    jobs: Vec<TenantOutcome>,
    failed: usize,
    peak_rss_mib: Option<u64>,
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
pub fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Run every job of `file`, at most `parallel` at a time. Exit code 0 when all succeeded.
pub async fn run(file: &Path, parallel: usize, report: Option<&Path>, trust: &TrustArgs) -> u8 {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            console::error(&format!("cannot read {}: {e}", file.display()));
            return EXIT_USAGE;
        }
    };
    let spec: JobsFile = match toml::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            console::error(&format!("invalid jobs file {}: {e}", file.display()));
            return EXIT_USAGE;
        }
    };
    if spec.jobs.is_empty() {
        console::error(&format!("{} lists no [[job]]", file.display()));
        return EXIT_USAGE;
    }
    let policy = match trust.policy() {
        Ok(p) => p,
        Err(e) => {
            console::error(&e.to_string());
            return EXIT_USAGE;
        }
    };
    let parallel = spec.parallel.unwrap_or(parallel).max(1);
    let max_memory = spec
        .jobs
        .iter()
        .map(|j| j.memory_limit_mib.unwrap_or((DEFAULT_MEMORY_LIMIT >> 20) as u64))
        .max()
        .unwrap_or(512);
    let engine = match pooled_engine(
        // Each job holds its planning instance plus one per database it migrates at a time.
        (spec.jobs.len().min(parallel) * 3 + 2) as u32,
        (max_memory as usize) << 20,
    ) {
        Ok(e) => e,
        Err(e) => {
            console::error(&format!("cannot start the wasm engine: {e:#}"));
            return EXIT_FAILED;
        }
    };
    // Check and compile each distinct component once.
    let mut runtimes: BTreeMap<Option<PathBuf>, Result<Compiled, String>> = BTreeMap::new();
    for job in &spec.jobs {
        runtimes.entry(job.component.clone()).or_insert_with(|| {
            let (wasm, source, signature) = match &job.component {
                Some(p) => match std::fs::read(p) {
                    Ok(b) => {
                        let signature = admit(&policy, p, &b)?;
                        (b, p.display().to_string(), signature)
                    }
                    Err(e) => return Err(format!("cannot read component {}: {e}", p.display())),
                },
                None => (BUNDLED_COMPONENT.to_vec(), "bundled".to_string(), BUNDLED_SIGNATURE.to_string()),
            };
            Runtime::with_engine(&engine, &wasm).map(|r| (Arc::new(r), source, signature)).map_err(|e| format!("{e:#}"))
        });
    }
    let runtimes = Arc::new(runtimes);
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel));
    // Ctrl-C or SIGTERM cancels every job: each removes what it created.
    let cancel = Cancel::default();
    crate::job::signals::cancel_on_signals(
        cancel.clone(),
        "cancelling: ending the job's work and removing what it created (again to quit at once)",
    );
    let mut tasks = Vec::new();
    for job in spec.jobs.clone() {
        let (runtimes, permits, cancel) = (runtimes.clone(), permits.clone(), cancel.clone());
        tasks.push(tokio::spawn(console::JOB_NAME.scope(job.name.clone(), async move {
            let _permit = permits.acquire().await;
            let started = std::time::Instant::now();
            let code = match &runtimes[&job.component] {
                Err(e) => {
                    console::error(e);
                    EXIT_USAGE
                }
                Ok((runtime, source, signature)) => {
                    let spec = JobSpec {
                        direction: Dialect::direction(Some(&job.dialect)),
                        data_dir: Some(job.data_dir.clone()),
                        postgres_url: job.postgres_url.clone(),
                        // One database at a time: the jobs are the parallelism.
                        options: JobOptions {
                            force: job.force,
                            skip_rejects: job.skip_rejects,
                            parallel: 1,
                            databases: job.databases.clone(),
                            ..JobOptions::default()
                        },
                        component: ComponentChoice::Compiled {
                            runtime,
                            source: source.clone(),
                            signature: signature.clone(),
                        },
                        limits: Limits {
                            memory_bytes: (job.memory_limit_mib.unwrap_or((DEFAULT_MEMORY_LIMIT >> 20) as u64)
                                as usize)
                                << 20,
                            cpu_seconds: job.cpu_limit_seconds.unwrap_or(DEFAULT_CPU_SECONDS),
                            timeout_seconds: job.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                            stall_seconds: job.stall_limit_seconds.unwrap_or(DEFAULT_STALL_SECONDS),
                        },
                        output: OutputOptions {
                            report: job.report.clone(),
                            shares_terminal: true,
                            ..Default::default()
                        },
                        cancel: cancel.clone(),
                        gate: None,
                    };
                    crate::job::run(spec).await.exit_code
                }
            };
            TenantOutcome { name: job.name, exit_code: code, seconds: started.elapsed().as_secs_f64() }
        })));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        match task.await {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                console::error(&format!("a job panicked: {e}"));
                outcomes.push(TenantOutcome { name: "?".into(), exit_code: EXIT_FAILED, seconds: 0.0 });
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.exit_code != EXIT_SUCCESS).count();
    println!();
    for o in &outcomes {
        let mark = if o.exit_code == EXIT_SUCCESS { "✔" } else { "✖" };
        println!("{mark} {:<24} exit {}  {:.1}s", o.name, o.exit_code, o.seconds);
    }
    let peak = peak_rss_mib();
    println!(
        "{} job(s), {} succeeded, {failed} failed; peak memory of this process: {} MiB",
        outcomes.len(),
        outcomes.len() - failed,
        peak.map_or("?".into(), |p| p.to_string())
    );
    if let Some(path) = report {
        let summary = BatchReport { report_version: 1, jobs: outcomes, failed, peak_rss_mib: peak };
        if let Err(e) = serde_json::to_vec_pretty(&summary)
            .map_err(|e| e.to_string())
            .and_then(|j| std::fs::write(path, j).map_err(|e| e.to_string()))
        {
            console::error(&format!("cannot write {}: {e}", path.display()));
        }
    }
    if failed == 0 { EXIT_SUCCESS } else { EXIT_FAILED }
}
