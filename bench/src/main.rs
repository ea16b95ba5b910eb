//! `blocklet-migrate-bench`: benchmark data and the benchmark itself (issue 6).
//!
//! * `generate --rows N --seed S --out DIR`: a copy of the demo fixture with N realistic rows
//!   added (`blocklet_migrate_test_support::generate`, which the tests use too).
//! * `run --rows N --seed S`: generate (or reuse) that data dir, start a throwaway PostgreSQL
//!   cluster, measure the ceiling, our CLI, pgloader when installed, and print rows/s, MB/s,
//!   the ratios and peak RSS; exit 1 when a goal is missed (see [`run`]).
//! * `service --tenants N`: the hosting service against the CLI spawned per tenant (see
//!   [`service`]).

mod ceiling;
mod measure;
mod reverse;
mod run;
mod schema;
mod service;
mod wire;

use std::ffi::OsString;
use std::path::PathBuf;

use blocklet_migrate_test_support::workspace_root;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmark data generator and runner for blocklet-migrate")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// (internal) Run a command and write its wall time and rusage to --result; see measure.rs.
    #[command(name = "__measure", hide = true)]
    Measure {
        #[arg(long)]
        result: PathBuf,
        #[arg(last = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Copy the demo fixture to DIR and add N rows shaped like a real server's.
    Generate {
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to put the copy (must not exist, or be empty); the data dir is DIR/.blocklet-server.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the benchmark: ceiling, blocklet-migrate, pgloader (when installed), in one run.
    Run {
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Benchmark this data dir instead of generated data (it is only read).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Measurements per contender; the median is reported.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Connection counts to measure the ceiling with (the largest also without parallel
        /// index workers); the fastest plan is the ceiling.
        #[arg(long, value_delimiter = ',', default_value = "1,2")]
        ceiling_jobs: Vec<usize>,
        /// The blocklet-migrate binary.
        #[arg(long)]
        bin: Option<PathBuf>,
        /// Do not run pgloader even if it is installed.
        #[arg(long)]
        no_pgloader: bool,
        /// The original `blocklet server migrate`'s rate (issue 6: ~850–990 rows/s measured).
        #[arg(long, default_value_t = 900.0)]
        original_rows_per_sec: f64,
        #[arg(long, default_value_t = 0.85)]
        min_ceiling_ratio: f64,
        #[arg(long, default_value_t = 50.0)]
        min_original_ratio: f64,
        #[arg(long, default_value_t = 3.0)]
        min_pgloader_ratio: f64,
        #[arg(long, default_value_t = 150.0)]
        max_rss_mb: f64,
        /// PostgreSQL → SQLite: ours / the bare rusqlite insert loop must reach this.
        #[arg(long, default_value_t = 0.8)]
        min_reverse_ratio: f64,
        /// Warm start to the first row sent, in ms (from our CLI's report timeline).
        #[arg(long, default_value_t = 100.0)]
        max_first_row_ms: f64,
        /// Skip the PostgreSQL → SQLite measurements.
        #[arg(long)]
        no_reverse: bool,
        /// Leave Nagle's algorithm on in the ceiling's client (as sqlx 0.9.0 does): shows the
        /// ~40 ms delayed-ACK stall per COPY. Not a ceiling; for reproducing that cost only.
        #[arg(long)]
        ceiling_nagle: bool,
        /// Also run our CLI over the cluster's Unix socket: the difference to TCP is what
        /// TCP stalls (Nagle + delayed ACK) cost.
        #[arg(long)]
        socket_diagnostic: bool,
        /// Diagnostic: run PostgreSQL on CPU 0 and every client (ceiling, ours, pgloader, the
        /// rusqlite loop) on the other CPUs, so that the server has a core of its own. Shows how
        /// close the pipeline comes to the ingest ceiling when it does not compete with the
        /// server for cores; the goals are judged on unpinned runs.
        #[arg(long)]
        pin_postgres: bool,
        /// Where the throwaway cluster lives. Default: /dev/shm when it is a tmpfs with room
        /// for the run, else the temp dir. On ext4, creating a database just after dropping
        /// others spends up to a second in the inode allocator, a cost that lands on whichever
        /// contender comes next.
        #[arg(long, value_name = "DIR")]
        cluster_dir: Option<PathBuf>,
        /// Also measure this blocklet-migrate binary (another build, e.g. of the previous
        /// commit) in every round, both directions, right after ours: a same-run before/after
        /// comparison. Not a goal; the report gives the ratios.
        #[arg(long, value_name = "BIN")]
        baseline_bin: Option<PathBuf>,
    },
    /// The hosting service against the CLI spawned per tenant: tenants/s, the service's peak
    /// RSS after N and 2N jobs, and submission to first row (see service.rs).
    Service {
        /// Demo-size tenants, each with its own throwaway cluster.
        #[arg(long, default_value_t = 16)]
        tenants: usize,
        /// Jobs the service runs at once, and CLI processes at once.
        #[arg(long, default_value_t = 4)]
        jobs_at_once: usize,
        /// The blocklet-migrate binary.
        #[arg(long)]
        bin: Option<PathBuf>,
        #[arg(long, default_value_t = 3.0)]
        min_ratio: f64,
        #[arg(long, default_value_t = 50.0)]
        max_first_row_ms: f64,
        /// Single jobs timed for the first row, each way (creating the databases, into existing ones).
        #[arg(long, default_value_t = 5)]
        first_row_samples: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Cmd::Measure { result, cmd } => match measure::launch(&result, &cmd[0], &cmd[1..]) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("__measure: {e:#}");
                1
            }
        },
        Cmd::Generate { rows, seed, out } => {
            match blocklet_migrate_test_support::generate::generate(rows, seed, &out) {
                Ok(g) if g.reused => {
                    println!(
                        "{} already holds {rows} generated rows (seed {seed}): {}",
                        out.display(),
                        g.data_dir.display()
                    );
                    0
                }
                Ok(g) => {
                    println!(
                        "generated {} rows (seed {seed}) in {:.1} s: data dir {}",
                        g.added.values().sum::<u64>(),
                        g.seconds,
                        g.data_dir.display()
                    );
                    for ((file, table), n) in &g.added {
                        println!("  {file} {table}: +{n}");
                    }
                    0
                }
                Err(e) => {
                    eprintln!("generate failed: {e:#}");
                    1
                }
            }
        }
        Cmd::Run {
            rows,
            seed,
            data_dir,
            repeat,
            ceiling_jobs,
            bin,
            no_pgloader,
            original_rows_per_sec,
            min_ceiling_ratio,
            min_original_ratio,
            min_pgloader_ratio,
            max_rss_mb,
            min_reverse_ratio,
            max_first_row_ms,
            no_reverse,
            ceiling_nagle,
            socket_diagnostic,
            pin_postgres,
            cluster_dir,
            baseline_bin,
        } => {
            let args = run::RunArgs {
                rows,
                seed,
                data_dir,
                repeat,
                ceiling_jobs,
                bin: bin.unwrap_or_else(|| workspace_root().join("target/release/blocklet-migrate")),
                pgloader: !no_pgloader,
                original_rows_per_sec,
                min_ceiling_ratio,
                min_original_ratio,
                min_pgloader_ratio,
                max_rss_mb,
                min_reverse_ratio,
                max_first_row_ms,
                reverse: !no_reverse,
                ceiling_nagle,
                socket_diagnostic,
                pin_postgres,
                cluster_dir,
                baseline_bin,
            };
            match run::run(args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("bench failed: {e:#}");
                    2
                }
            }
        }
        Cmd::Service { tenants, jobs_at_once, bin, min_ratio, max_first_row_ms, first_row_samples } => {
            let args = service::ServiceArgs {
                tenants,
                jobs_at_once,
                bin: bin.unwrap_or_else(|| workspace_root().join("target/release/blocklet-migrate")),
                min_ratio,
                max_first_row_ms,
                first_row_samples,
            };
            match service::run(args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("bench failed: {e:#}");
                    2
                }
            }
        }
    };
    std::process::exit(code);
}
