//! A throwaway PostgreSQL cluster that lives as long as its value: `initdb` in a fresh directory,
//! `pg_ctl start` on a free port of 127.0.0.1, stopped (`-m immediate`) and removed on drop, also on
//! panic.
//!
//! The product uses fixed database names (`server_db`, `service_db`, `module_db`,
//! `blocklet_db_<appDid>`), and tests run in parallel, so every test (and every bench run) gets a
//! cluster of its own; the system cluster on port 5432 is never touched. `initdb` refuses to run as
//! root, so as root the directory is chowned to `postgres` and the server binaries run through
//! `runuser -u postgres --`. Starting and querying return errors ([`PgCluster::try_start`],
//! [`PgCluster::try_psql`]) for the bench; the tests' forms panic with the same message.

mod cpu;
mod inspect;
mod storage;

pub use cpu::{pin_current_thread, process_cpu_time};
pub use inspect::{next_sequence_value, target_state};
pub use storage::{default_parent, describe_storage};

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// Server settings every cluster runs with: durability off, which a throwaway cluster does not need.
pub const SETTINGS: [(&str, &str); 3] = [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")];

/// How to start a cluster; the default is what a test wants.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// The directory the cluster's own directory is made in; `None`: the temp dir.
    pub parent: Option<PathBuf>,
    /// Run the postmaster, and every backend it forks, on CPU 0 only.
    pub pin_to_cpu0: bool,
}

/// A private PostgreSQL cluster: data dir, socket dir and logs in one temp dir, listening only on
/// `127.0.0.1:<port>` with `trust` authentication for user `postgres` and [`SETTINGS`].
pub struct PgCluster {
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    // Dropped after `Drop::drop` has stopped the server.
    _dir: TempDir,
}

impl PgCluster {
    /// A cluster with the default options. Panics with initdb's output or the server log on failure.
    #[track_caller]
    pub fn start() -> PgCluster {
        PgCluster::try_start(&ClusterOptions::default()).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts `n` clusters at once, one thread each (each has its own directory, and a port taken
    /// in the meantime is retried with another).
    pub fn start_many(n: usize) -> Vec<PgCluster> {
        let threads: Vec<_> = (0..n).map(|_| thread::spawn(PgCluster::start)).collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|_| panic!("starting a PostgreSQL cluster failed")))
            .collect()
    }

    /// initdb + start. If the port picked was taken by someone else in the meantime, it retries up
    /// to 5 times with a new port.
    pub fn try_start(options: &ClusterOptions) -> Result<PgCluster> {
        let bin = pg_bin_dir()?;
        let as_postgres = running_as_root();
        let parent = options.parent.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("bm-pg-")
            .tempdir_in(&parent)
            .with_context(|| format!("create the cluster's directory in {}", parent.display()))?;
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        fs::create_dir(root.join("sock")).context("create the socket dir")?;
        if as_postgres {
            let out =
                Command::new("chown").arg("-R").arg("postgres:postgres").arg(&root).output().context("run chown")?;
            if !out.status.success() {
                bail!(
                    "chown -R postgres:postgres {} failed (need a `postgres` user when running as root): {}",
                    root.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut cluster = PgCluster { bin, root, data, port: 0, as_postgres, running: false, _dir: dir };

        let out = cluster
            .server_cmd("initdb")
            .arg("-D")
            .arg(&cluster.data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }

        let mut last_log = String::new();
        for attempt in 1..=5 {
            let port = free_port()?;
            let log = cluster.root.join(format!("postgres-{attempt}.log"));
            let mut opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1", cluster.socket_dir().display());
            for (k, v) in SETTINGS {
                opts.push_str(&format!(" -c {k}={v}"));
            }
            let mut pg_ctl = cluster.server_cmd("pg_ctl");
            if options.pin_to_cpu0 {
                cpu::pin_children_to_cpu0(&mut pg_ctl);
            }
            let out = pg_ctl
                .args(["-w", "-t", "60", "-D"])
                .arg(&cluster.data)
                .arg("-l")
                .arg(&log)
                .arg("-o")
                .arg(&opts)
                .arg("start")
                .output()
                .context("run pg_ctl start")?;
            if out.status.success() {
                cluster.port = port;
                cluster.running = true;
                return Ok(cluster);
            }
            last_log = format!(
                "{}{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&log).unwrap_or_default()
            );
            let collision = last_log.contains("Address already in use")
                || last_log.contains("could not bind")
                || last_log.contains("could not create any TCP/IP sockets");
            if !collision {
                break;
            }
        }
        bail!("could not start a PostgreSQL cluster in {}:\n{last_log}", cluster.root.display())
    }

    /// A command for a server-side binary (initdb, pg_ctl), run as `postgres` when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        // The caller's cwd may be unreadable for `postgres`.
        cmd.current_dir(&self.root).stdin(Stdio::null());
        clean_pg_env(&mut cmd);
        cmd
    }

    /// A command for a client binary (psql, pg_dump), run as the current user over TCP.
    fn client_cmd(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.stdin(Stdio::null());
        clean_pg_env(&mut cmd);
        cmd.env("PGCONNECT_TIMEOUT", "10");
        cmd
    }

    /// TCP port of this cluster.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the value for `ABT_NODE_POSTGRES_URL`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` in database `db` with `psql -X -A -t -q -v ON_ERROR_STOP=1`. Returns stdout without
    /// trailing newlines (one line per row, columns separated by `|`), or an error with psql's
    /// output and the SQL. Several statements may be given. They then run as one implicit
    /// transaction, and only the last result is printed.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String> {
        let port = self.port.to_string();
        let out = self
            .client_cmd("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port])
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .output()
            .context("run psql")?;
        if !out.status.success() {
            bail!(
                "psql on database {db:?} failed: psql exit {:?}: {}{}\nSQL: {sql}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
    }

    /// Like [`PgCluster::try_psql`], but panics with psql's output and the SQL on failure.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Non-template databases except `postgres`, sorted.
    pub fn try_databases(&self) -> Result<Vec<String>> {
        let s = self.try_psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'",
        )?;
        let mut v: Vec<String> = s.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        v.sort();
        Ok(v)
    }

    /// Drops every database but `postgres` (they are all the caller's: the cluster is private) and
    /// checkpoints, so the next measurement starts from the same state.
    pub fn reset(&self) -> Result<()> {
        for db in self.try_databases()? {
            self.try_psql("postgres", &format!("DROP DATABASE {} WITH (FORCE)", crate::sql::quote_ident(&db)))?;
        }
        self.try_psql("postgres", "CHECKPOINT")?;
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .server_cmd("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
        // `_dir` (the TempDir) is removed after this returns.
    }
}

/// Directory of the PostgreSQL server binaries: `/usr/lib/postgresql/15/bin` (the reference dumps were
/// made with 15), or else the newest `/usr/lib/postgresql/<major>/bin`.
pub fn pg_bin_dir() -> Result<PathBuf> {
    let preferred = Path::new("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").is_file() {
        return Ok(preferred.to_path_buf());
    }
    let mut best: Option<(u32, PathBuf)> = None;
    if let Ok(rd) = fs::read_dir("/usr/lib/postgresql") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(major) = name.split('.').next().and_then(|m| m.parse::<u32>().ok()) else {
                continue;
            };
            let bin = e.path().join("bin");
            if bin.join("initdb").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
                best = Some((major, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
        .context(
            "no PostgreSQL server binaries (initdb, pg_ctl, psql, pg_dump) in /usr/lib/postgresql/*/bin or on PATH: \
             install them (Debian/Ubuntu: apt-get install postgresql)",
        )
}

/// Whether the effective uid is 0.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn clean_pg_env(cmd: &mut Command) {
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGSSLMODE",
        "PGDATA",
        "PGTZ",
        "PGCLIENTENCODING",
    ] {
        cmd.env_remove(var);
    }
}

fn free_port() -> Result<u16> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("bind 127.0.0.1:0 to find a free port")?
        .port();
    Ok(port)
}
